"""The association stage: picks + stations in, events + assignments out.

Reads ``<run>/picks/picks.parquet`` and ``<run>/waveforms/stations.csv``, runs the configured
associator and writes, whichever associator ran:

``<run>/association/events.parquet``, one row per event:
    event_id (str, "ev000001"… in origin-time order, unique per run), origin_time
    (datetime64[ns, UTC]), latitude, longitude (degrees), depth_km (km below sea level; NaN
    when not given), n_p, n_s, n_stations (assigned picks), associator ("time" | "pyocto").

``<run>/association/assignments.parquet``, one row per assigned pick:
    event_id, pick_id, phase ("P" | "S"), residual_s (observed - predicted, s; NaN when
    unknown).

Every pick is either assigned to exactly one event or left unassigned; the manifest counts both
(``assigned``, ``unassigned``, and among the unassigned ``duplicates``, copies of another pick
of the same station and phase within one sample, and ``rejected_uncertain``, picks over the
MC-dropout std gate; duplicates reach the report as a skipped unit). Rules applied to both
associators' output: a pick claimed by several events stays with the one where its |residual|
is smallest; an event keeps at most one P and one S pick per station (the higher weight wins,
weight = probability - std_weight × probability_std); events left with fewer than
``min_stations`` stations are dissolved (their picks become unassigned). With ``leftover`` set
(PyOcto only), a second PyOcto pass with its own minimums adds events among the unassigned
picks, and with ``merge_window_s`` > 0, events that are halves of one event are then merged
(both in :mod:`.refine`), each followed by the same rules.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.association.core import AssociationInputError, PickArrays, RawAssociation
from pipeline.association.geometry import StationGeometry
from pipeline.association.octo import associate_pyocto
from pipeline.association.params import AssociationConfig
from pipeline.association.refine import add_leftover_events, merge_split_events
from pipeline.association.timebased import OriginGrid, associate_time
from pipeline.picking.params import MODEL_RATE
from pipeline.rundir import RunDir, read_run_table, sha256_file, write_parquet_atomic
from pipeline.velocity import VelocityModel
from pipeline.waveforms.params import elevation_problem

log = logging.getLogger(__name__)

PICK_COLUMNS = ("pick_id", "network", "station", "location", "phase", "time", "probability")
STATION_COLUMNS = ("network", "station", "location", "latitude", "longitude", "elevation_m")
EVENT_SCHEMA = {
    "event_id": "object",
    "origin_time": "datetime64[ns, UTC]",
    "latitude": "float64",
    "longitude": "float64",
    "depth_km": "float64",
    "n_p": "int64",
    "n_s": "int64",
    "n_stations": "int64",
    "associator": "object",
}
ASSIGNMENT_SCHEMA = {
    "event_id": "object",
    "pick_id": "object",
    "phase": "object",
    "residual_s": "float64",
}


def _station_id(table: pd.DataFrame) -> pd.Series:
    """'NET.STA.LOC' per row (empty location when missing)."""
    location = table["location"].fillna("").astype(str)
    return table["network"].astype(str) + "." + table["station"].astype(str) + "." + location


def read_stations(path: Path) -> pd.DataFrame:
    """The station table (``stations.csv``) as id, latitude, longitude, elevation_m.

    Several channel prefixes of one station collapse to one row (the first).

    Raises:
        AssociationInputError: missing columns, a non-numeric coordinate, or an elevation no
            station can have (:data:`pipeline.waveforms.params.STATION_ELEVATION_RANGE_M`; the
            download skips such stations, so this is a table written otherwise).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"station table {path} not found (written by the waveform stage)")
    table = pd.read_csv(
        path, dtype={"network": str, "station": str, "location": str}, keep_default_na=False
    )
    missing = [c for c in STATION_COLUMNS if c not in table.columns]
    if missing:
        raise AssociationInputError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in ("latitude", "longitude", "elevation_m"):
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any():
            bad = _station_id(table[values.isna()]).tolist()
            raise AssociationInputError(f"{path}: non-numeric {column} for station(s) {bad}")
        table[column] = values
    table["id"] = _station_id(table)
    for row in table.itertuples(index=False):
        problem = elevation_problem(row.elevation_m)
        if problem:
            raise AssociationInputError(f"{path}: station {row.id}: {problem}")
    return table.drop_duplicates("id")[["id", "latitude", "longitude", "elevation_m"]]


def _refuse_rows(picks: pd.DataFrame, bad: np.ndarray, label: str, what: str) -> None:
    """Raise :class:`AssociationInputError` naming how many picks are ``bad`` (a boolean
    mask, shape (N,)) and the first three pick ids, when any is."""
    if bad.any():
        ids = picks.loc[bad, "pick_id"].astype(str).head(3).tolist()
        raise AssociationInputError(f"{label}: {int(bad.sum())} pick(s) with {what}, e.g. {ids}")


def _validate_picks(picks: pd.DataFrame, label: str) -> None:
    """Refuse a picks table the associators cannot use, naming the column and the picks:
    missing columns, phases other than P and S, repeated pick ids, times that are missing
    or not times, probabilities that are not numbers within 0-1, and a negative or
    non-numeric ``probability_std`` (missing is 0)."""
    missing = [c for c in PICK_COLUMNS if c not in picks.columns]
    if missing:
        raise AssociationInputError(f"{label}: missing column(s) {', '.join(missing)}")
    bad_phase = sorted(set(picks["phase"].astype(str)) - {"P", "S"})
    if bad_phase:
        raise AssociationInputError(f"{label}: column 'phase' must be 'P' or 'S', got {bad_phase}")
    if picks["pick_id"].duplicated().any():
        dup = picks.loc[picks["pick_id"].duplicated(), "pick_id"].head(5).tolist()
        raise AssociationInputError(f"{label}: pick_id values are not unique, e.g. {dup}")
    times = pd.to_datetime(picks["time"], utc=True, errors="coerce")
    _refuse_rows(picks, times.isna().to_numpy(), label, "no time in column 'time'")
    probability = pd.to_numeric(picks["probability"], errors="coerce")
    outside = ~probability.between(0.0, 1.0).to_numpy()
    _refuse_rows(picks, outside, label, "column 'probability' not a number within 0-1")
    if "probability_std" in picks.columns:
        std = pd.to_numeric(picks["probability_std"], errors="coerce")
        bad = (std < 0) | (std.isna() & picks["probability_std"].notna())
        _refuse_rows(picks, bad.to_numpy(), label, "column 'probability_std' negative or no number")


#: Two picks of one station (NET.STA.LOC) and phase at most this far apart (s) are one arrival
#: reported twice: one sample of the data every picker works on
#: (:data:`pipeline.picking.params.MODEL_RATE`, 100 Hz), the resolution of a pick time. The
#: picker itself never keeps two picks of one phase closer than ``min_pick_separation_s``.
DUPLICATE_TOLERANCE_S = 1.0 / MODEL_RATE


def duplicate_picks(picks: pd.DataFrame, tolerance_s: float = DUPLICATE_TOLERANCE_S) -> np.ndarray:
    """Rows (positions) of ``picks`` that repeat another pick: same station id and phase,
    within ``tolerance_s`` of it (chains of such picks count as one arrival).

    Of each group the pick with the highest probability stays (ties: the lower
    ``probability_std``, then the earlier time); the others are returned, shape (D,), sorted.
    An associator would otherwise take each copy as a pick of its own (the time-based one made
    every event twice; PyOcto ran 40x longer and left the copies unassigned).
    """
    if len(picks) < 2:
        return np.zeros(0, dtype=np.int64)
    times = pd.to_datetime(picks["time"], utc=True)
    seconds = (times - times.min()).dt.total_seconds().to_numpy()
    key = (_station_id(picks) + "|" + picks["phase"].astype(str)).to_numpy()
    std = (
        picks["probability_std"].fillna(0.0).to_numpy(dtype=float)
        if "probability_std" in picks.columns
        else np.zeros(len(picks))
    )
    order = np.lexsort((seconds, key))
    same_key = key[order][1:] == key[order][:-1]
    close = np.diff(seconds[order]) <= tolerance_s + 1e-9
    group = np.empty(len(picks), dtype=np.int64)
    group[order] = np.cumsum(np.r_[True, ~(same_key & close)])
    probability = picks["probability"].to_numpy(dtype=float)
    best = np.lexsort((seconds, std, -probability, group))
    first = np.r_[True, group[best][1:] != group[best][:-1]]
    return np.sort(best[~first])


def duplicates_note(n: int) -> str:
    """The report's words for ``n`` duplicate picks left out of the association."""
    return (
        f"{n} duplicate pick(s) not associated: the same station and phase within "
        f"{DUPLICATE_TOLERANCE_S:g} s of another pick, which was used (the higher probability)"
    )


def _empty_outputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    events = pd.DataFrame({c: pd.Series(dtype=t) for c, t in EVENT_SCHEMA.items()})
    assignments = pd.DataFrame({c: pd.Series(dtype=t) for c, t in ASSIGNMENT_SCHEMA.items()})
    return events, assignments


def _clean(raw: RawAssociation, arrays: PickArrays, min_stations: int) -> RawAssociation:
    """The shared rules of the module docstring (one event per pick, one P/S per station)."""
    a = raw.assignments.copy()
    a["abs_res"] = a["residual_s"].abs().fillna(np.inf)
    a = a.sort_values(["pick", "abs_res"], kind="stable").drop_duplicates("pick")
    a["station"] = arrays.station[a["pick"]]
    a["is_p"] = arrays.is_p[a["pick"]]
    a["weight"] = arrays.weight[a["pick"]]
    a = a.sort_values(["event", "station", "is_p", "weight"], ascending=[True, True, True, False])
    a = a.drop_duplicates(["event", "station", "is_p"])
    n_stations = a.groupby("event")["station"].nunique()
    keep_events = n_stations.index[n_stations >= min_stations]
    a = a[a["event"].isin(keep_events)]
    return RawAssociation(
        events=raw.events,
        assignments=a[["event", "pick", "residual_s"]].reset_index(drop=True),
    )


def _associate_refined(
    arrays: PickArrays,
    geometry: StationGeometry,
    model: VelocityModel,
    cfg: AssociationConfig,
    table_dir: Path,
) -> RawAssociation:
    """The configured associator, then the leftover pass and the merging of split events
    (:mod:`.refine`), each followed by the clean-up."""
    if cfg.associator == "time":
        raw = associate_time(arrays, geometry, model, cfg)
    else:
        raw = associate_pyocto(arrays, geometry, model, cfg.pyocto, table_dir)
    raw = _clean(raw, arrays, cfg.min_stations)
    if cfg.leftover is not None:
        second = cfg.pyocto.model_copy(update=cfg.leftover.model_dump())
        raw = add_leftover_events(
            raw, arrays, lambda rest: associate_pyocto(rest, geometry, model, second, table_dir)
        )
        raw = _clean(raw, arrays, cfg.min_stations)
    if cfg.merge_window_s > 0 and len(raw.assignments):
        t = cfg.time
        grid = OriginGrid.build(
            geometry, model, t.grid_spacing_km, t.grid_margin_km, t.grid_depths_km, 1
        )
        raw = merge_split_events(
            raw, arrays, grid, cfg.merge_window_s, cfg.merge_tolerance_s, cfg.merge_max_outliers
        )
        raw = _clean(raw, arrays, cfg.min_stations)
    return raw


def associate_picks(
    picks: pd.DataFrame,
    stations: pd.DataFrame,
    model: VelocityModel,
    cfg: AssociationConfig,
    table_dir: Path,
    picks_label: str = "picks",
    stations_label: str = "station table",
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Associate a picks table (DESIGN.md columns) in memory.

    Args:
        picks: picks table; ``probability_std`` is optional (missing/NaN = 0).
        stations: from :func:`read_stations` (id, latitude, longitude, elevation_m).
        model: the build's 1-D velocity model.
        cfg: the association section.
        table_dir: where PyOcto's travel-time table is cached.
        picks_label, stations_label: names of the inputs in error messages.

    Returns:
        (events, assignments, counts) with the columns of the module docstring; counts has
        picks, duplicates (copies of another pick, :func:`duplicate_picks`: left unassigned),
        rejected_uncertain, assigned, unassigned (duplicates included), events.

    Raises:
        AssociationInputError: missing columns, bad phases, duplicate pick ids, missing
            times, probabilities outside 0-1, a negative probability_std, or picks of
            stations that the station table lacks (all such stations named).
    """
    _validate_picks(picks, picks_label)
    events_out, assignments_out = _empty_outputs()
    duplicates = duplicate_picks(picks)
    counts = {
        "picks": len(picks),
        "duplicates": len(duplicates),
        "rejected_uncertain": 0,
        "assigned": 0,
    }
    if len(picks) == 0:
        return events_out, assignments_out, {**counts, "unassigned": 0, "events": 0}
    pick_station = _station_id(picks)
    unknown = sorted(set(pick_station) - set(stations["id"]))
    if unknown:
        raise AssociationInputError(
            f"{picks_label}: picks for {len(unknown)} station(s) not in {stations_label}: "
            + ", ".join(unknown)
        )
    used_stations = stations[stations["id"].isin(set(pick_station))].reset_index(drop=True)
    geometry = StationGeometry.from_table(used_stations)
    station_index = pd.Series(np.arange(len(used_stations)), index=used_stations["id"])

    times = pd.to_datetime(picks["time"], utc=True)
    std = (
        picks["probability_std"].fillna(0.0).to_numpy(dtype=float)
        if "probability_std" in picks.columns
        else np.zeros(len(picks))
    )
    original = np.ones(len(picks), dtype=bool)
    original[duplicates] = False
    certain = np.ones(len(picks), dtype=bool)
    if cfg.max_probability_std is not None:
        certain = std <= cfg.max_probability_std
    usable = original & certain
    counts["rejected_uncertain"] = int((original & ~certain).sum())
    rows = np.flatnonzero(usable)
    reference = times.min().floor("s")
    arrays = PickArrays(
        time_s=((times - reference).dt.total_seconds().to_numpy())[rows],
        station=station_index.loc[pick_station.to_numpy()[rows]].to_numpy(dtype=np.int64),
        is_p=(picks["phase"].to_numpy()[rows] == "P"),
        weight=picks["probability"].to_numpy(dtype=float)[rows] - cfg.std_weight * std[rows],
    )
    raw = _associate_refined(arrays, geometry, model, cfg, Path(table_dir))

    kept = raw.events.loc[np.unique(raw.assignments["event"])].copy()
    kept = kept.sort_values("origin_s", kind="stable")
    kept["event_id"] = [f"ev{i:06d}" for i in range(1, len(kept) + 1)]
    a = raw.assignments.merge(kept[["event_id"]], left_on="event", right_index=True)
    a["row"] = rows[a["pick"].to_numpy()]
    a["is_p"] = arrays.is_p[a["pick"].to_numpy()]
    a["station"] = arrays.station[a["pick"].to_numpy()]
    per_event = a.groupby("event_id").agg(
        n_p=("is_p", "sum"), n_picks=("is_p", "size"), n_stations=("station", "nunique")
    )
    lat, lon = geometry.projection.inverse(kept["x_km"].to_numpy(), kept["y_km"].to_numpy())
    events_out = pd.DataFrame(
        {
            "event_id": kept["event_id"].to_numpy(dtype=object),
            "origin_time": reference
            + pd.to_timedelta(np.round(kept["origin_s"].to_numpy() * 1e9).astype(np.int64), "ns"),
            "latitude": lat,
            "longitude": lon,
            "depth_km": kept["depth_km"].to_numpy(dtype=float),
        }
    )
    stats = per_event.loc[events_out["event_id"]]
    events_out["n_p"] = stats["n_p"].to_numpy(dtype=np.int64)
    events_out["n_s"] = (stats["n_picks"] - stats["n_p"]).to_numpy(dtype=np.int64)
    events_out["n_stations"] = stats["n_stations"].to_numpy(dtype=np.int64)
    events_out["associator"] = cfg.associator
    a = a.sort_values(["event_id", "row"])
    assignments_out = pd.DataFrame(
        {
            "event_id": a["event_id"].to_numpy(dtype=object),
            "pick_id": picks["pick_id"].to_numpy()[a["row"].to_numpy()].astype(str).astype(object),
            "phase": picks["phase"].to_numpy()[a["row"].to_numpy()].astype(object),
            "residual_s": a["residual_s"].to_numpy(dtype=float),
        }
    )
    counts["assigned"] = len(assignments_out)
    counts["unassigned"] = len(picks) - len(assignments_out)
    counts["events"] = len(events_out)
    return events_out.astype(EVENT_SCHEMA), assignments_out.astype(ASSIGNMENT_SCHEMA), counts


def associate(run: RunDir, cfg: AssociationConfig, model: VelocityModel) -> dict:
    """The stage: read picks and stations from ``run``, write the two tables, record manifest.

    Returns:
        The manifest entry of the stage (its ``counts`` hold picks, duplicates, assigned,
        unassigned, rejected_uncertain, events; ``details.skipped`` names the picks table
        with the number of duplicates when there are any, for the report).
    """
    started = time.perf_counter()
    picks_path = run.root / "picks" / "picks.parquet"
    stations_path = run.root / "waveforms" / "stations.csv"
    if not picks_path.is_file():
        raise FileNotFoundError(
            f"picks table {picks_path} not found (written by the picking stage)"
        )
    picks = read_run_table(picks_path)
    stations = read_stations(stations_path)
    out_dir = run.stage_dir("association")
    events, assignments, counts = associate_picks(
        picks, stations, model, cfg, out_dir, str(picks_path), str(stations_path)
    )
    events_path = write_parquet_atomic(events, out_dir / "events.parquet")
    assignments_path = write_parquet_atomic(assignments, out_dir / "assignments.parquet")
    picks_rel = str(picks_path.relative_to(run.root))
    skipped = {}
    if counts["duplicates"]:
        skipped[picks_rel] = duplicates_note(counts["duplicates"])
    log.info(
        "association (%s): %d events, %d picks assigned, %d unassigned",
        cfg.associator,
        counts["events"],
        counts["assigned"],
        counts["unassigned"],
    )
    return run.record_stage(
        "association",
        inputs={
            picks_rel: sha256_file(picks_path),
            str(stations_path.relative_to(run.root)): sha256_file(stations_path),
        },
        outputs=[str(p.relative_to(run.root)) for p in (events_path, assignments_path)],
        counts=counts,
        wall_time_s=round(time.perf_counter() - started, 3),
        details={
            "associator": cfg.associator,
            "velocity_model": model.name,
            "config": cfg.model_dump(mode="json"),
            "skipped": skipped,
        },
    )
