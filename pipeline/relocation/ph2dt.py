"""Catalog differential times: what HypoDD's ``ph2dt`` does, from tables in memory.

The rules follow the HypoDD 2 manual (Waldhauser 2001, section "Data preprocessing using
ph2dt"): each event, taken in catalog order, is linked to its nearest neighbours within MAXSEP
until MAXNGH *strong* neighbours (>= MINLNK phase pairs) are found; weak neighbours are kept
when they have >= MINOBS phase pairs but do not count; a pair formed earlier from the other
event's side is not formed again but counts toward MAXNGH when it was strong. Phase pairs are
the picks of the same phase at the same station; pairs of stations farther than MAXDIST from
the event pair are skipped, outliers ``|t1 - t2| > separation / v + 0.5 s`` (v = 4 km/s for P,
2.3 km/s for S) are removed, and of the remaining pairs those with a negative weight in either
event (the "always use" flag) are all kept, plus up to MAXOBS positive-weight pairs taken from
the nearest station outwards. A pair's weight is the mean of the two absolute pick weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from pipeline.relocation.hypodd_formats import empty_dt_ct
from pipeline.relocation.params import Ph2dtConfig

log = logging.getLogger(__name__)

#: km per degree of latitude (spherical Earth, R = 6371 km).
KM_PER_DEG = 111.19


@dataclass
class Ph2dtStats:
    """Counters as ``ph2dt.log`` reports them."""

    events: int = 0
    phases: int = 0
    phases_unknown_station: int = 0
    phases_below_min_weight: int = 0
    p_pairs_total: int = 0
    s_pairs_total: int = 0
    outliers: int = 0
    beyond_max_dist: int = 0
    p_pairs_selected: int = 0
    s_pairs_selected: int = 0
    weakly_linked_events: int = 0
    linked_pairs: int = 0
    strong_offsets_km: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, float]:
        """The counters plus mean / max offset of strongly linked pairs (km)."""
        out = {k: v for k, v in self.__dict__.items() if k != "strong_offsets_km"}
        offs = self.strong_offsets_km
        out["mean_offset_strong_km"] = float(np.mean(offs)) if offs else float("nan")
        out["max_offset_strong_km"] = float(np.max(offs)) if offs else float("nan")
        return out


def _local_xy(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    """Equirectangular projection (km) about (lat0, lon0), shape (n, 2)."""
    x = (lon - lon0) * KM_PER_DEG * np.cos(np.radians(lat0))
    y = (lat - lat0) * KM_PER_DEG
    return np.column_stack([x, y])


def _offsets_km(lat, lon, dep, i: int, others: np.ndarray) -> np.ndarray:
    """Hypocentral separation (km) of event ``i`` from events ``others`` (mid-latitude scale)."""
    mid = np.radians(0.5 * (lat[i] + lat[others]))
    dx = (lon[others] - lon[i]) * KM_PER_DEG * np.cos(mid)
    dy = (lat[others] - lat[i]) * KM_PER_DEG
    return np.sqrt(dx**2 + dy**2 + (dep[others] - dep[i]) ** 2)


class _Catalog:
    """Events and their picks indexed for pairing."""

    def __init__(self, events: pd.DataFrame, phases: pd.DataFrame, stations: pd.DataFrame):
        self.ids = events["hypodd_id"].to_numpy(dtype=np.int64)
        self.lat = events["latitude"].to_numpy(dtype=float)
        self.lon = events["longitude"].to_numpy(dtype=float)
        self.dep = events["depth_km"].to_numpy(dtype=float)
        self.sta_lat = stations["latitude"].to_numpy(dtype=float)
        self.sta_lon = stations["longitude"].to_numpy(dtype=float)
        self.labels = stations["station"].to_numpy(dtype=object)
        row_of = {eid: k for k, eid in enumerate(self.ids)}
        self.picks: list[dict[tuple[int, str], tuple[float, float]]] = [{} for _ in self.ids]
        for eid, sidx, pha, tt, w in zip(
            phases["hypodd_id"],
            phases["station_index"],
            phases["phase"],
            phases["travel_time_s"],
            phases["weight"],
            strict=True,
        ):
            k = row_of.get(eid)
            if k is not None:
                self.picks[k].setdefault((int(sidx), pha), (float(tt), float(w)))

    def station_distances(self, i: int, j: int, sidx: np.ndarray) -> np.ndarray:
        """Epicentral distance (km) from the pair's mid-point to stations ``sidx``."""
        lat = 0.5 * (self.lat[i] + self.lat[j])
        lon = 0.5 * (self.lon[i] + self.lon[j])
        dx = (self.sta_lon[sidx] - lon) * KM_PER_DEG * np.cos(np.radians(lat))
        dy = (self.sta_lat[sidx] - lat) * KM_PER_DEG
        return np.hypot(dx, dy)


def _phase_pairs(cat: _Catalog, i: int, j: int, offset: float, cfg: Ph2dtConfig, stats):
    """Selected phase pairs of events i, j as a list of (sidx, t1, t2, weight, phase)."""
    common = cat.picks[i].keys() & cat.picks[j].keys()
    if not common:
        return []
    keys = sorted(common)
    sidx = np.fromiter((k[0] for k in keys), dtype=np.int64, count=len(keys))
    dist = cat.station_distances(i, j, sidx)
    negative, positive = [], []
    for key, d in zip(keys, dist, strict=True):
        t1, w1 = cat.picks[i][key]
        t2, w2 = cat.picks[j][key]
        phase = key[1]
        if phase == "P":
            stats.p_pairs_total += 1
            v = cfg.outlier_vp_km_s
        else:
            stats.s_pairs_total += 1
            v = cfg.outlier_vs_km_s
        if d > cfg.max_dist_km:
            stats.beyond_max_dist += 1
            continue
        if abs(t1 - t2) > offset / v + cfg.outlier_slack_s:
            stats.outliers += 1
            continue
        row = (d, key[0], t1, t2, 0.5 * (abs(w1) + abs(w2)), phase)
        (negative if (w1 < 0 or w2 < 0) else positive).append(row)
    negative.sort()
    positive.sort()
    return [r[1:] for r in negative + positive[: cfg.max_obs]]


def _candidates(cat: _Catalog, tree: cKDTree, xyz: np.ndarray, i: int, k: int, cfg):
    """Neighbours of event ``i`` within MAXSEP, nearest first: (rows, offsets km, exhausted)."""
    k = min(k, len(cat.ids))
    _, rows = tree.query(xyz[i], k=k, distance_upper_bound=cfg.max_sep_km * 1.05 + 0.1)
    rows = np.atleast_1d(rows)
    rows = rows[(rows < len(cat.ids)) & (rows != i)]
    offsets = _offsets_km(cat.lat, cat.lon, cat.dep, i, rows)
    keep = offsets <= cfg.max_sep_km
    order = np.argsort(offsets[keep], kind="stable")
    complete = len(rows) < k - 1 or k == len(cat.ids)
    return rows[keep][order], offsets[keep][order], complete


def catalog_differential_times(
    events: pd.DataFrame,
    phases: pd.DataFrame,
    stations: pd.DataFrame,
    cfg: Ph2dtConfig,
) -> tuple[pd.DataFrame, Ph2dtStats]:
    """Form the catalog differential times of ``dt.ct``.

    Args:
        events: events table (hypodd_id, latitude, longitude, depth_km; catalog order is the
            order events are processed in, as ph2dt reads its phase file).
        phases: phases table (hypodd_id, station, phase, travel_time_s, weight).
        stations: stations table (station, latitude, longitude).
        cfg: the ph2dt parameters.

    Returns:
        (dt table with columns id1, id2, station, t1, t2, weight, phase in pair order,
        counters).
    """
    stats = Ph2dtStats(events=len(events), phases=len(phases))
    stations = stations.drop_duplicates("station").reset_index(drop=True)
    index = pd.Series(np.arange(len(stations)), index=stations["station"])
    phases = phases.assign(station_index=phases["station"].map(index))
    unknown = phases["station_index"].isna()
    stats.phases_unknown_station = int(unknown.sum())
    w = phases["weight"]
    low = (w >= 0) & (w < cfg.min_weight) & ~unknown
    stats.phases_below_min_weight = int(low.sum())
    phases = phases[~unknown & ~low]
    if stats.phases_unknown_station:
        log.warning(
            "ph2dt: %d phase(s) at stations missing from the station list were skipped",
            stats.phases_unknown_station,
        )
    cat = _Catalog(events.reset_index(drop=True), phases, stations)
    n = len(cat.ids)
    if n < 2:
        return empty_dt_ct(), stats
    lat0, lon0 = float(np.mean(cat.lat)), float(np.mean(cat.lon))
    xyz = np.column_stack([_local_xy(cat.lat, cat.lon, lat0, lon0), cat.dep])
    tree = cKDTree(xyz)
    strong_pairs: set[tuple[int, int]] = set()
    formed: set[tuple[int, int]] = set()
    out_rows: list[tuple] = []
    k0 = 3 * cfg.max_neighbours + 1
    for i in range(n):
        n_strong = 0
        k = k0
        done = 0  # candidates already examined
        while n_strong < cfg.max_neighbours:
            rows, offsets, complete = _candidates(cat, tree, xyz, i, k, cfg)
            for j, off in zip(rows[done:], offsets[done:], strict=True):
                pair = (min(i, j), max(i, j))
                if pair in formed:
                    n_strong += pair in strong_pairs
                else:
                    formed.add(pair)
                    obs = _phase_pairs(cat, i, int(j), float(off), cfg, stats)
                    if len(obs) >= cfg.min_obs:
                        stats.linked_pairs += 1
                        out_rows.extend((cat.ids[i], cat.ids[j], *o) for o in obs)
                    if len(obs) >= cfg.min_links:
                        strong_pairs.add(pair)
                        stats.strong_offsets_km.append(float(off))
                        n_strong += 1
                if n_strong >= cfg.max_neighbours:
                    break
            done = len(rows)
            if complete:
                break
            k *= 4
        if n_strong < cfg.max_neighbours:
            stats.weakly_linked_events += 1
    dt = pd.DataFrame(out_rows, columns=["id1", "id2", "sidx", "t1", "t2", "weight", "phase"])
    if dt.empty:
        return empty_dt_ct(), stats
    dt.insert(2, "station", cat.labels[dt.pop("sidx").to_numpy()])
    stats.p_pairs_selected = int((dt["phase"] == "P").sum())
    stats.s_pairs_selected = int((dt["phase"] == "S").sum())
    return dt, stats


def format_log(stats: Ph2dtStats, cfg: Ph2dtConfig) -> str:
    """A ``ph2dt.log``-like text summary."""
    d = stats.as_dict()
    lines = [
        "eqcat ph2dt-equivalent",
        "(minwght, maxdist, maxsep, maxngh, minlnk, minobs, maxobs) = "
        f"({cfg.min_weight}, {cfg.max_dist_km}, {cfg.max_sep_km}, {cfg.max_neighbours}, "
        f"{cfg.min_links}, {cfg.min_obs}, {cfg.max_obs})",
    ]
    lines += [f"> {k} = {v}" for k, v in d.items()]
    return "\n".join(lines) + "\n"
