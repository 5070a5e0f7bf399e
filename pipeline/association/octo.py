"""PyOcto association (Münchmeyer 2024, ``pyocto``) on the build's 1-D velocity model.

Stations go to PyOcto in the local frame of :mod:`.geometry` (x, y km; z = -elevation km).
A one-layer model becomes :class:`pyocto.VelocityModel0D`; a layered model becomes
:class:`pyocto.VelocityModel1D` over a travel-time table in PyOcto's binary format
(``int32 nx, int32 nz, float64 delta``, then P and S times as float64 arrays of shape
(nx, nz) in C order: horizontal distance × depth below sea level, node spacing ``delta`` km).
The table is filled from :func:`pipeline.velocity.travel_time`, so PyOcto, the time-based
associator and the locators share one set of travel times, and is cached next to the outputs
under a name that hashes the model and the table extent. PyOcto adds the elevation term
``elevation / v_surface`` itself; the surface velocities are the model's top layer. With a
station below sea level (ocean-bottom, borehole), where that term is wrong (negative times
for sources above the station), PyOcto's station-specific 1-D model runs instead, on one
table per station of :func:`.geometry.receiver_times` (the time-based associator's times).

The octree's pick-in-node test can be limited to nearby stations (PyOcto's
``association_cutoff_distance``): a far station's pick fits almost every large node, so it
keeps many nodes alive that no event explains. The distance is chosen by rule from the station
geometry (:func:`association_cutoff_km`); locating and pick matching still use all stations.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pyocto
from scipy.spatial import cKDTree

from pipeline import velocity
from pipeline.association import geometry
from pipeline.association.core import AssociationInputError, PickArrays, RawAssociation
from pipeline.association.geometry import StationGeometry, receiver_times
from pipeline.association.params import PyOctoConfig
from pipeline.rundir import atomic_write
from pipeline.velocity import TABLE_MAX_DEPTH_KM, TABLE_MAX_DISTANCE_KM, VelocityModel, travel_time

log = logging.getLogger(__name__)


def _search_volume(stations: StationGeometry, cfg: PyOctoConfig):
    """(xlim, ylim, zlim) of the search volume, km."""
    xlim, ylim = stations.bounds(cfg.margin_km)
    return xlim, ylim, tuple(cfg.zlim_km)


def _max_horizontal_km(stations: StationGeometry, cfg: PyOctoConfig) -> float:
    """Largest horizontal distance (km) between a point of the search volume and a station."""
    (x0, x1), (y0, y1) = stations.bounds(cfg.margin_km)
    return float(np.hypot(x1 - x0, y1 - y0))


def association_cutoff_km(stations: StationGeometry, n_stations: int | None) -> float | None:
    """Smallest distance (km) within which every point of the stations' bounding box has
    ``n_stations`` stations (horizontal distance); None when ``n_stations`` is None or more
    than the network has.

    The box is sampled on a 101 x 101 grid; half a cell diagonal is added so that points
    between grid nodes are covered too.
    """
    if n_stations is None or n_stations > len(stations):
        return None
    (x0, x1), (y0, y1) = stations.bounds(0.0)
    gx, gy = np.meshgrid(np.linspace(x0, x1, 101), np.linspace(y0, y1, 101))
    tree = cKDTree(np.column_stack([stations.x_km, stations.y_km]))
    distance, _ = tree.query(np.column_stack([gx.ravel(), gy.ravel()]), k=[n_stations])
    return float(distance.max() + 0.5 * np.hypot(x1 - x0, y1 - y0) / 100)


#: Hash of the code that computes and writes the tables (this module, :mod:`.geometry`,
#: :mod:`pipeline.velocity`): part of a cached table's name, so a changed ray tracer or format
#: never reuses an old one.
TABLE_CODE_VERSION = hashlib.sha256(
    Path(__file__).read_bytes()
    + Path(geometry.__file__).read_bytes()
    + Path(velocity.__file__).read_bytes()
).hexdigest()[:16]


def table_shape(spacing_km: float, max_distance_km: float, max_depth_km: float) -> tuple[int, int]:
    """Grid nodes (distance, depth) of the travel-time table reaching the given extent (km)."""
    nx = int(np.ceil(max_distance_km / spacing_km)) + 2
    nz = int(np.ceil(max_depth_km / spacing_km)) + 2
    return nx, nz


def table_is_whole(path: Path, nx: int, nz: int, spacing_km: float) -> bool:
    """Whether ``path`` holds a complete table of this shape (header and size; PyOcto's
    compiled reader trusts both)."""
    header = struct.calcsize("iid")
    try:
        with open(path, "rb") as fh:
            head = fh.read(header)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return False
    return (
        len(head) == header
        and struct.unpack("iid", head) == (nx, nz, float(spacing_km))
        and size == header + 2 * nx * nz * 8
    )


def _digest(parts: list[bytes]) -> str:
    """A cached table's name part: 16 hex digits of the SHA-256 of ``parts``."""
    return hashlib.sha256(b"".join(parts)).hexdigest()[:16]


def write_travel_time_table(
    model: VelocityModel, spacing_km: float, max_distance_km: float, max_depth_km: float, path: Path
) -> Path:
    """Write PyOcto's binary 1-D travel-time table for ``model`` (format: module docstring)."""
    nx, nz = table_shape(spacing_km, max_distance_km, max_depth_km)
    distance = np.minimum(np.arange(nx) * spacing_km, TABLE_MAX_DISTANCE_KM)
    depth = np.minimum(np.arange(nz) * spacing_km, TABLE_MAX_DEPTH_KM)
    d, z = np.meshgrid(distance, depth, indexing="ij")
    with atomic_write(path, "wb") as fh:
        fh.write(struct.pack("iid", nx, nz, float(spacing_km)))
        for phase in ("P", "S"):
            fh.write(np.ascontiguousarray(travel_time(model, phase, d, z), dtype="<f8").tobytes())
    return path


def station_table_shape(
    stations: StationGeometry, spacing_km: float, max_distance_km: float, zlim_km: tuple
) -> tuple[int, int, int]:
    """(nx, nz, n_padding) of the station-specific tables (:func:`write_station_tables`):
    distance nodes, depth nodes, and depth nodes above the station, as many as sources of
    ``zlim_km`` (km below sea level) above the deepest station need."""
    depth_below = -stations.elevation_km
    n_padding = int(np.ceil(max(depth_below.max() - zlim_km[0], 0.0) / spacing_km)) + 1
    nx = int(np.ceil(max_distance_km / spacing_km)) + 2
    nz = n_padding + int(np.ceil((zlim_km[1] - depth_below.min()) / spacing_km)) + 2
    return nx, nz, n_padding


def station_tables_are_whole(
    folder: Path, stations: StationGeometry, shape: tuple[int, int, int], spacing_km: float
) -> bool:
    """Whether ``folder`` holds every station's whole table of ``shape`` (nx, nz, n_padding;
    :func:`table_is_whole`) and the ``n_padding`` file."""
    nx, nz, n_padding = shape
    try:
        padding = (folder / "n_padding").read_bytes()
    except OSError:
        return False
    return padding == struct.pack("i", n_padding) and all(
        table_is_whole(folder / f"{station_id}.pyocto", nx, nz, spacing_km)
        for station_id in stations.ids
    )


def write_station_tables(
    model: VelocityModel,
    stations: StationGeometry,
    spacing_km: float,
    max_distance_km: float,
    zlim_km: tuple[float, float],
    folder: Path,
) -> Path:
    """Write the tables of PyOcto's station-specific 1-D model into ``folder``.

    One file ``<station id>.pyocto`` per station (the format of the module docstring; depth
    index ``iz`` is the source depth ``iz * spacing - n_padding * spacing`` below the
    station, :func:`.geometry.receiver_times` fills it), then ``n_padding`` (int32: the
    nodes above the deepest station that sources of ``zlim_km`` can reach).
    """
    folder.mkdir(parents=True, exist_ok=True)
    depth_below = -stations.elevation_km
    nx, nz, n_padding = station_table_shape(stations, spacing_km, max_distance_km, zlim_km)
    distance = np.minimum(np.arange(nx) * spacing_km, TABLE_MAX_DISTANCE_KM)
    relative = (np.arange(nz) - n_padding) * spacing_km
    for k, station_id in enumerate(stations.ids):
        depths = np.clip(relative + depth_below[k], 0.0, TABLE_MAX_DEPTH_KM)
        with atomic_write(folder / f"{station_id}.pyocto", "wb") as fh:
            fh.write(struct.pack("iid", nx, nz, float(spacing_km)))
            for phase in ("P", "S"):
                times = np.column_stack(
                    [
                        receiver_times(model, phase, stations.elevation_km[k], distance, z)
                        for z in depths
                    ]
                )
                fh.write(np.ascontiguousarray(times, dtype="<f8").tobytes())
    with atomic_write(folder / "n_padding", "wb") as fh:
        fh.write(struct.pack("i", n_padding))
    return folder


def velocity_model_for(
    model: VelocityModel, stations: StationGeometry, cfg: PyOctoConfig, table_dir: Path
) -> pyocto.VelocityModel0D | pyocto.VelocityModel1D:
    """PyOcto's model: 0-D for one layer, else a cached 1-D table in ``table_dir``."""
    cutoff = association_cutoff_km(stations, cfg.association_cutoff_stations)
    if cutoff is not None:
        log.info(
            "pyocto: octree uses stations within %.1f km of a node (%d stations everywhere)",
            cutoff,
            cfg.association_cutoff_stations,
        )
    if len(model.layer_tops_km) == 1:
        return pyocto.VelocityModel0D(
            p_velocity=float(model.vp_km_s[0]),
            s_velocity=float(model.vs_km_s[0]),
            tolerance=cfg.tolerance_s,
            association_cutoff_distance=cutoff,
        )
    max_distance = min(_max_horizontal_km(stations, cfg) + 2 * cfg.table_spacing_km, 400.0)
    max_depth = min(cfg.zlim_km[1] + 2 * cfg.table_spacing_km, 60.0)
    parts = [
        model.layer_tops_km.tobytes(),
        model.vp_km_s.tobytes(),
        model.vs_km_s.tobytes(),
        struct.pack("ddd", cfg.table_spacing_km, max_distance, max_depth),
        TABLE_CODE_VERSION.encode(),
    ]
    if (stations.elevation_km < 0).any():  # the elevation term would be wrong for them
        parts += [stations.ids.astype(str).tobytes(), stations.elevation_km.tobytes()]
        folder = Path(table_dir) / f"pyocto_tt_stations_{_digest(parts)}"
        shape = station_table_shape(stations, cfg.table_spacing_km, max_distance, cfg.zlim_km)
        if not station_tables_are_whole(folder, stations, shape, cfg.table_spacing_km):
            if folder.exists():
                log.warning("PyOcto station travel-time tables %s are damaged; rewritten", folder)
            write_station_tables(
                model, stations, cfg.table_spacing_km, max_distance, cfg.zlim_km, folder
            )
            log.debug("wrote PyOcto station travel-time tables %s", folder)
        return pyocto.StationSpecificVelocityModel1D(
            path=str(folder), tolerance=cfg.tolerance_s, association_cutoff_distance=cutoff
        )
    path = Path(table_dir) / f"pyocto_tt_{_digest(parts)}.bin"
    shape = table_shape(cfg.table_spacing_km, max_distance, max_depth)
    if not table_is_whole(path, *shape, cfg.table_spacing_km):
        if path.exists():
            log.warning("PyOcto travel-time table %s is damaged (size or header); rewritten", path)
        write_travel_time_table(model, cfg.table_spacing_km, max_distance, max_depth, path)
        log.debug("wrote PyOcto travel-time table %s", path)
    return pyocto.VelocityModel1D(
        path=str(path),
        tolerance=cfg.tolerance_s,
        association_cutoff_distance=cutoff,
        surface_p_velocity=float(model.vp_km_s[0]),
        surface_s_velocity=float(model.vs_km_s[0]),
    )


def automatic_time_before(model: VelocityModel, distance_km: float, cfg: PyOctoConfig) -> float:
    """PyOcto's ``time_before`` (s) for a search volume whose points lie at most
    ``distance_km`` (horizontal) from a station: the S travel time there from the volume's
    deepest point, plus 10% (PyOcto's documentation: "roughly the maximum S travel time
    between any station and the boundary of the study zone")."""
    distance = min(distance_km, TABLE_MAX_DISTANCE_KM)
    return 1.1 * float(travel_time(model, "S", distance, cfg.zlim_km[1]))


def time_before_range(model: VelocityModel, cfg: PyOctoConfig) -> tuple[float, float]:
    """(smallest, largest) ``time_before`` (s) any station set can give ``cfg``.

    ``cfg.time_before_s`` when set; else from a network of no extent (the search volume is
    the 2 ``margin_km`` square around it) and from the travel-time table's reach.
    """
    if cfg.time_before_s is not None:
        return cfg.time_before_s, cfg.time_before_s
    smallest = automatic_time_before(model, 2 * np.sqrt(2) * cfg.margin_km, cfg)
    return smallest, automatic_time_before(model, TABLE_MAX_DISTANCE_KM, cfg)


def timing_problems(cfg: PyOctoConfig, time_before: tuple[float, float], where: str) -> list[str]:
    """Time settings out of the range ``time_before`` (s; a (smallest, largest) range where
    the stations are not known yet) leaves them, one line each naming the field, its value
    and the range; ``where`` says where the time_before comes from.

    - ``time_slicing_s`` at least ``time_before``: blocks shorter than their overlap process
      every pick more than twice (0.01 s would run for hours; PyOcto's documentation: shorter
      blocks mean "more picks being processed multiple times").
    - ``pick_match_tolerance_s`` at most half of ``time_before``: a match window
      (2 x tolerance) as long as the longest travel time in the search volume lets any pick of
      a time block match any event (10 s lost a third of 60 generated events and ran 10x
      longer; 30 s ran 40x longer).
    """
    low, high = time_before
    problems = []
    if cfg.time_slicing_s < low:
        problems.append(
            f"association.pyocto.time_slicing_s = {cfg.time_slicing_s:g} s: expected at least "
            f"{low:.1f} s, the overlap of PyOcto's time blocks ({where}); shorter blocks "
            "process every pick more than twice"
        )
    if cfg.pick_match_tolerance_s > high / 2:
        problems.append(
            f"association.pyocto.pick_match_tolerance_s = {cfg.pick_match_tolerance_s:g} s: "
            f"expected at most {high / 2:.1f} s, half the longest travel time in the search "
            f"volume ({where}); a wider match window takes any pick for any event"
        )
    return problems


def associate_pyocto(
    picks: PickArrays,
    stations: StationGeometry,
    model: VelocityModel,
    cfg: PyOctoConfig,
    table_dir: Path,
) -> RawAssociation:
    """Run PyOcto on usable picks and return its events in the local frame."""
    if len(picks) == 0:
        return RawAssociation.empty()
    time_before = cfg.time_before_s or automatic_time_before(
        model, _max_horizontal_km(stations, cfg), cfg
    )
    where = (
        "time_before_s"
        if cfg.time_before_s
        else f"the S travel time across the search volume of these {len(stations)} stations"
    )
    problems = timing_problems(cfg, (time_before, time_before), where)
    if problems:
        raise AssociationInputError("; ".join(problems))
    xlim, ylim, zlim = _search_volume(stations, cfg)
    associator = pyocto.OctoAssociator(
        xlim=xlim,
        ylim=ylim,
        zlim=zlim,
        velocity_model=velocity_model_for(model, stations, cfg, table_dir),
        time_before=time_before,
        min_node_size=cfg.min_node_size_km,
        min_node_size_location=cfg.min_node_size_location_km,
        pick_match_tolerance=cfg.pick_match_tolerance_s,
        min_interevent_time=cfg.min_interevent_time_s,
        max_pick_overlap=cfg.max_pick_overlap,
        n_picks=cfg.n_picks,
        n_p_picks=cfg.n_p_picks,
        n_s_picks=cfg.n_s_picks,
        n_p_and_s_picks=cfg.n_p_and_s_picks,
        refinement_iterations=cfg.refinement_iterations,
        location_split_depth=cfg.location_split_depth,
        location_split_return=cfg.location_split_return,
        time_slicing=cfg.time_slicing_s,
        min_pick_fraction=cfg.min_pick_fraction,
        n_threads=cfg.n_threads,
    )
    station_df = pd.DataFrame(
        {
            "id": stations.ids.astype(str),
            "x": stations.x_km,
            "y": stations.y_km,
            "z": -stations.elevation_km,
        }
    )
    pick_df = pd.DataFrame(
        {
            "station": station_df["id"].to_numpy()[picks.station],
            "time": picks.time_s,
            "phase": np.where(picks.is_p, "P", "S"),
        }
    )
    events, assignments = associator.associate(pick_df, station_df)
    log.info("pyocto: %d events, %d assignments", len(events), len(assignments))
    if len(events) == 0:
        return RawAssociation.empty()
    event_row = pd.Series(np.arange(len(events)), index=events["idx"].to_numpy())
    return RawAssociation(
        events=pd.DataFrame(
            {
                "origin_s": events["time"].to_numpy(dtype=float),
                "x_km": events["x"].to_numpy(dtype=float),
                "y_km": events["y"].to_numpy(dtype=float),
                "depth_km": events["z"].to_numpy(dtype=float),
            }
        ),
        assignments=pd.DataFrame(
            {
                "event": event_row.loc[assignments["event_idx"].to_numpy()].to_numpy(),
                "pick": assignments["pick_idx"].to_numpy(dtype=np.int64),
                "residual_s": assignments["residual"].to_numpy(dtype=float),
            }
        ),
    )
