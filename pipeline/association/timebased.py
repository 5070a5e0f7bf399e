"""Time-based phase association (the approach of the EQTransformer Tottori study).

Picks of different stations belong to one event when their times fit within windows that the
station spacing and the velocity model allow. The algorithm is a sweep over the P picks in
time order:

1. **Seed and windows.** The earliest P pick not yet assigned is a seed. The unassigned P
   picks of its moving window ``[t_seed - p_tolerance, t_seed + W]`` (``W`` defaults to the
   largest inter-station distance / slowest P velocity + pair tolerance) must come from at
   least ``min_stations`` stations that also fit the seed's *pair windows*
   ``|t_k - t_seed| <= d(seed, k) / v_min_P + pair_tolerance``; otherwise the seed stays
   unassigned.
2. **Anchored coarse-grid check.** Each P pick of the window (the seed first, at most
   ``max_anchors``) is tried as an event's first arrival: on a coarse grid of trial
   hypocentres (``grid_spacing_km`` × ``grid_depths_km``, restricted to nodes that have the
   anchor's station among their ``anchor_nearest_stations`` nearest), the origin time is
   ``t_anchor - T_P(node, anchor station)`` and a pick of the anchor's pair windows fits when
   its P residual is within ``p_tolerance_s``. Among the anchors whose node fits P picks of
   ``min_stations`` or more stations, the one whose source also fits the most S picks (within
   ``s_tolerance_s``; stations with a fitting P plus stations with a fitting S) wins, so a
   false pick or a pick of an overlapping event that happens to be earlier does not capture
   the event: its origin time puts the S picks in the wrong place. The winner collects every
   unassigned P pick that fits its source (a station contributes its highest-weight fitting
   pick). Then, ``relocations`` rounds: the unused S picks that fit its source within
   ``s_tolerance_s`` join, the event is relocated on the grid with its P and S picks (L1
   misfit, robust to a few picks off by seconds), and both phases are collected again from
   the new source. The S picks pin the origin time and distance, so an event first located
   on a P pick of a neighbouring event (or on a late P pick) moves to where its S picks put
   it and the P picks that do not fit drop out. When its picks reach past the window, the anchors
   up to its last P pick are tried too. With ``min_stations`` or more stations with a P pick
   it becomes an event (its P picks are used; its S picks are not offered to later events)
   and the sweep retries the seed.
3. **S picks.** After all events exist, each S pick goes to the event whose predicted S time
   (origin + T_S from the node found in step 2) is nearest within ``s_tolerance_s``, so an S
   pick that located one event goes to a later, overlapping event where it fits that one
   better; per event and station the highest-weight S pick wins, the others stay
   unassigned.
4. **Preliminary origin.** Each event is relocated on the same grid with its P and S picks
   (origin time = median of pick time - travel time; the node with the smallest sum of
   weight × |residual|); latitude/longitude/depth are that node's, so their precision is the
   grid spacing.

Picks over the MC-dropout std gate never reach the associator; a pick's weight (used where
a station has several fitting picks) is probability - std_weight × probability_std
(:mod:`.stage`).

Cost: sorting is O(n log n); each seed costs O(nodes × picks in its window), which is bounded
by the pick rate, so the sweep is linear in the number of picks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.association.core import PickArrays, RawAssociation
from pipeline.association.geometry import StationGeometry, station_travel_times
from pipeline.association.params import AssociationConfig
from pipeline.velocity import VelocityModel

log = logging.getLogger(__name__)

#: Largest nodes × stations of the origin grid (two float64 tables of this size are kept).
MAX_GRID_ENTRIES = 20_000_000


@dataclass(frozen=True)
class OriginGrid:
    """Trial hypocentres and their travel times.

    Attributes:
        x_km, y_km, depth_km: node coordinates, shape (G,).
        tt_p, tt_s: travel times (s) node -> station, shape (G, S).
    """

    x_km: np.ndarray
    y_km: np.ndarray
    depth_km: np.ndarray
    tt_p: np.ndarray
    tt_s: np.ndarray
    near_nodes: tuple[np.ndarray, ...]

    @classmethod
    def build(
        cls,
        stations: StationGeometry,
        model: VelocityModel,
        spacing_km: float,
        margin_km: float,
        depths_km: list[float],
        nearest: int,
    ) -> OriginGrid:
        """A regular grid over the stations' bounding box widened by ``margin_km``.

        ``near_nodes[s]`` lists the nodes that have station ``s`` among their ``nearest``
        closest stations (where an event whose first P pick is at ``s`` can lie).
        """
        (x0, x1), (y0, y1) = stations.bounds(margin_km)
        xs = np.arange(x0, x1 + spacing_km / 2, spacing_km)
        ys = np.arange(y0, y1 + spacing_km / 2, spacing_km)
        n_nodes = xs.size * ys.size * len(depths_km)
        if n_nodes * len(stations) > MAX_GRID_ENTRIES:
            raise ValueError(
                f"time associator grid of {n_nodes} nodes x {len(stations)} stations is too "
                f"large (limit {MAX_GRID_ENTRIES:.0e} entries): raise time.grid_spacing_km "
                f"(now {spacing_km}) or lower time.grid_margin_km, or use associator: pyocto"
            )
        gx, gy, gz = np.meshgrid(xs, ys, np.asarray(depths_km, dtype=float), indexing="ij")
        gx, gy, gz = gx.ravel(), gy.ravel(), gz.ravel()
        distance = np.hypot(gx[:, None] - stations.x_km, gy[:, None] - stations.y_km)
        rank = np.argsort(np.argsort(distance, axis=1), axis=1)
        near = rank < nearest
        return cls(
            x_km=gx,
            y_km=gy,
            depth_km=gz,
            tt_p=station_travel_times(model, "P", stations, gx, gy, gz),
            tt_s=station_travel_times(model, "S", stations, gx, gy, gz),
            near_nodes=tuple(np.flatnonzero(near[:, k]) for k in range(len(stations))),
        )


def _best_per_station(stations: np.ndarray, weight: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Indices (into the inputs) of the highest-weight masked entry per station."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return idx
    order = idx[np.lexsort((-weight[idx], stations[idx]))]
    first = np.ones(order.size, dtype=bool)
    first[1:] = stations[order[1:]] != stations[order[:-1]]
    return order[first]


def _anchored_fit(
    grid: OriginGrid,
    times: np.ndarray,
    stations: np.ndarray,
    anchor: int,
    tolerance_s: float,
) -> tuple[int, int]:
    """Best grid node for candidate P picks when pick ``anchor`` is the first arrival.

    Only nodes near the anchor's station are tried (``grid.near_nodes``).

    Args:
        grid: the origin grid.
        times, stations: candidate P picks, shape (C,), sorted by station.
        anchor: position of the anchor pick in the candidates.
        tolerance_s: largest |residual| for a fitting pick.

    Returns:
        (node, number of stations with a fitting pick).
    """
    nodes = grid.near_nodes[stations[anchor]]
    tt = grid.tt_p[np.ix_(nodes, stations)]  # (G', C)
    with np.errstate(invalid="ignore"):  # inf - inf: stations out of the table's reach
        residual = (times - times[anchor])[None, :] - (tt - tt[:, anchor : anchor + 1])
    fits = np.abs(residual) <= tolerance_s
    starts = np.flatnonzero(np.r_[True, stations[1:] != stations[:-1]])
    n_stations = np.logical_or.reduceat(fits, starts, axis=1).sum(axis=1)
    best_count = n_stations.max()
    top = np.flatnonzero(n_stations == best_count)
    fits, residual = fits[top], residual[top]
    misfit = np.where(fits, np.abs(residual), 0.0).sum(axis=1) / np.maximum(fits.sum(axis=1), 1)
    return int(nodes[top[int(np.argmin(misfit))]]), int(best_count)


def _collect(
    t: np.ndarray,
    sta: np.ndarray,
    w: np.ndarray,
    used: np.ndarray,
    tt_node: np.ndarray,
    origin: float,
    tolerance_s: float,
) -> np.ndarray:
    """Unused P picks (indices into the time-sorted arrays) that fit a located source.

    A pick fits when |t - origin - tt_node[station]| <= ``tolerance_s``; per station the
    highest-weight fitting pick is returned.
    """
    lo = np.searchsorted(t, origin + tt_node.min() - tolerance_s, side="left")
    hi = np.searchsorted(t, origin + tt_node.max() + tolerance_s, side="right")
    idx = np.arange(lo, hi)
    idx = idx[~used[idx]]
    fits = np.abs(t[idx] - origin - tt_node[sta[idx]]) <= tolerance_s
    return idx[_best_per_station(sta[idx], w[idx], fits)]


def _form_events(
    picks: PickArrays,
    p_index: np.ndarray,
    s_index: np.ndarray,
    grid: OriginGrid,
    stations: StationGeometry,
    model: VelocityModel,
    cfg: AssociationConfig,
) -> tuple[list[int], list[float], list[np.ndarray]]:
    """Sweep over P picks (steps 1-2).

    Args:
        picks: all usable picks.
        p_index, s_index: indices into ``picks`` of the P and the S picks, each time-sorted.

    Returns:
        Per event: node, origin (s), indices into ``picks`` of its P picks (the S picks that
        located it are matched again in step 3, with every other S pick).
    """
    tcfg = cfg.time
    t = picks.time_s[p_index]
    sta = picks.station[p_index]
    w = picks.weight[p_index]
    ts = picks.time_s[s_index]
    sta_s = picks.station[s_index]
    w_s = picks.weight[s_index]
    used_s = np.zeros(ts.size, dtype=bool)
    v_min = float(np.min(model.vp_km_s))
    pair_window = stations.interstation_km() / v_min + tcfg.pair_tolerance_s
    window = tcfg.moving_window_s or float(pair_window.max())
    lo_all = np.searchsorted(t, t - tcfg.p_tolerance_s, side="left")
    hi_all = np.searchsorted(t, t + window, side="right")
    used = np.zeros(t.size, dtype=bool)

    def candidates(anchor: int) -> np.ndarray:
        """Unused picks in the anchor's moving and pair windows, by station then time."""
        cand = np.arange(lo_all[anchor], hi_all[anchor])
        cand = cand[~used[cand]]
        cand = cand[np.abs(t[cand] - t[anchor]) <= pair_window[sta[anchor], sta[cand]]]
        return cand[np.lexsort((t[cand], sta[cand]))]

    def collect_p(node: int, origin: float) -> np.ndarray:
        return _collect(t, sta, w, used, grid.tt_p[node], origin, tcfg.p_tolerance_s)

    def collect_s(node: int, origin: float) -> np.ndarray:
        return _collect(ts, sta_s, w_s, used_s, grid.tt_s[node], origin, tcfg.s_tolerance_s)

    def best_event(seed: int) -> tuple[int, float, np.ndarray, np.ndarray]:
        """(node, origin, chosen P, chosen S) of the best event among anchors near ``seed``.

        Anchors are the unused picks from the seed to the end of its moving window, and on
        to the latest pick of the best event so far (whose picks may reach further).
        """
        best = ((False, 0), 0, -1, np.nan)  # (rank, P stations, node, origin)
        tried: set[int] = set()
        span_end = t[seed] + window
        chosen = np.empty(0, dtype=np.int64)
        while True:
            span = np.arange(lo_all[seed], np.searchsorted(t, span_end, side="right"))
            span = [int(a) for a in span[~used[span]] if a not in tried]
            for anchor in ([seed] if seed not in tried else []) + span:
                if len(tried) >= tcfg.max_anchors:
                    break
                tried.add(anchor)
                cand = candidates(anchor)
                pos = int(np.flatnonzero(cand == anchor)[0])
                node, count = _anchored_fit(grid, t[cand], sta[cand], pos, tcfg.p_tolerance_s)
                origin = float(t[anchor] - grid.tt_p[node, sta[anchor]])
                rank = (count >= cfg.min_stations, count + collect_s(node, origin).size)
                if rank > best[0]:
                    best = (rank, count, node, origin)
            _, count, node, origin = best
            if count < cfg.min_stations:
                return node, origin, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
            chosen = collect_p(node, origin)
            for _ in range(tcfg.relocations):  # relocate on P and S picks, collect again
                chosen_s = collect_s(node, origin)
                node, origin, _ = relocate_on_grid(
                    grid,
                    np.concatenate([t[chosen], ts[chosen_s]]),
                    np.concatenate([sta[chosen], sta_s[chosen_s]]),
                    np.r_[np.ones(chosen.size, bool), np.zeros(chosen_s.size, bool)],
                    np.concatenate([w[chosen], w_s[chosen_s]]),
                )
                chosen = collect_p(node, origin)
            chosen_s = collect_s(node, origin)
            if chosen.size == 0 or t[chosen].max() <= span_end or len(tried) >= tcfg.max_anchors:
                return node, origin, chosen, chosen_s
            span_end = float(t[chosen].max())

    nodes: list[int] = []
    origins: list[float] = []
    members: list[np.ndarray] = []
    seed = 0
    while seed < t.size:
        if used[seed] or np.unique(sta[candidates(seed)]).size < cfg.min_stations:
            seed += 1
            continue
        node, origin, chosen, chosen_s = best_event(seed)
        if np.unique(sta[chosen]).size < cfg.min_stations:
            seed += 1
            continue
        used[chosen] = True  # the seed is tried again unless the event took it
        used_s[chosen_s] = True
        nodes.append(node)
        origins.append(origin)
        members.append(p_index[chosen])
    return nodes, origins, members


def _assign_s(
    picks: PickArrays,
    s_index: np.ndarray,
    grid: OriginGrid,
    nodes: np.ndarray,
    origins: np.ndarray,
    tolerance_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Match S picks to events (step 3). Returns (event per S pick or -1, |residual|)."""
    n = s_index.size
    best_event = np.full(n, -1, dtype=np.int64)
    best_res = np.full(n, np.inf)
    if n == 0 or origins.size == 0:
        return best_event, best_res
    order = np.argsort(origins)
    origins_sorted = origins[order]
    t = picks.time_s[s_index]
    sta = picks.station[s_index]
    max_tt = float(grid.tt_s[np.isfinite(grid.tt_s)].max(initial=0.0))
    lo = np.searchsorted(origins_sorted, t - max_tt - tolerance_s, side="left")
    hi = np.searchsorted(origins_sorted, t + tolerance_s, side="right")
    for k in range(int((hi - lo).max(initial=0))):
        pos = lo + k
        valid = pos < hi
        ev = order[np.minimum(pos, order.size - 1)]
        res = np.abs(t - origins[ev] - grid.tt_s[nodes[ev], sta])
        better = valid & (res <= tolerance_s) & (res < best_res)
        best_event[better] = ev[better]
        best_res[better] = res[better]
    return best_event, best_res


def relocate_on_grid(
    grid: OriginGrid,
    times: np.ndarray,
    stations: np.ndarray,
    is_p: np.ndarray,
    weight: np.ndarray,
) -> tuple[int, float, np.ndarray]:
    """Grid node with the smallest weighted sum of |residual| for one event's picks (steps 2, 4).

    The L1 misfit (origin time = median of pick time - travel time) keeps a few picks that
    are off by seconds (a late P pick, a pick of another event) from dragging the source
    away from where the other picks agree; they then fail the tolerance and drop out. Each
    |residual| counts with the pick's weight (at least 0.05): on the Tottori demo the P picks
    that match no true arrival (mostly P picked 1-3 s late) have mean probability 0.49, the
    true ones 0.69.

    Args:
        grid: the origin grid.
        times, stations, is_p, weight: the event's picks, shape (K,).

    Returns:
        (node, origin (s), residuals (s) of the picks at the node, shape (K,)).
    """
    order = np.argsort(~is_p, kind="stable")  # P picks first, then S
    n_p = int(is_p.sum())
    tt = np.concatenate(
        [grid.tt_p[:, stations[order[:n_p]]], grid.tt_s[:, stations[order[n_p:]]]], axis=1
    )
    implied = times[order][None, :] - tt  # origin time implied by each pick, (G, K)
    mid = (implied.shape[1] - 1) // 2, implied.shape[1] // 2
    part = np.partition(implied, mid, axis=1)
    origin = 0.5 * (part[:, mid[0]] + part[:, mid[1]])  # median per node
    residual = np.empty(times.size)
    w = np.clip(weight[order], 0.05, None)
    with np.errstate(invalid="ignore"):
        misfit = (w * np.abs(implied - origin[:, None])).sum(axis=1)
    node = int(np.argmin(np.nan_to_num(misfit, nan=np.inf)))  # NaN: a station out of reach
    residual[order] = implied[node] - origin[node]
    return node, float(origin[node]), residual


def associate_time(
    picks: PickArrays,
    stations: StationGeometry,
    model: VelocityModel,
    cfg: AssociationConfig,
) -> RawAssociation:
    """Run the time-based associator (module docstring) on usable picks."""
    if len(picks) == 0:
        return RawAssociation.empty()
    tcfg = cfg.time
    grid = OriginGrid.build(
        stations,
        model,
        tcfg.grid_spacing_km,
        tcfg.grid_margin_km,
        tcfg.grid_depths_km,
        tcfg.anchor_nearest_stations,
    )
    p_index = np.flatnonzero(picks.is_p)
    p_index = p_index[np.argsort(picks.time_s[p_index], kind="stable")]
    s_index = np.flatnonzero(~picks.is_p)
    s_index = s_index[np.argsort(picks.time_s[s_index], kind="stable")]
    nodes, origins, members = _form_events(picks, p_index, s_index, grid, stations, model, cfg)
    log.info("time associator: %d events from %d P picks", len(nodes), p_index.size)
    if not nodes:
        return RawAssociation.empty()
    nodes_arr = np.asarray(nodes, dtype=np.int64)
    origins_arr = np.asarray(origins)
    s_event, _ = _assign_s(picks, s_index, grid, nodes_arr, origins_arr, tcfg.s_tolerance_s)
    matched = s_event >= 0
    # Per (event, station) the highest-weight S pick wins.
    keys = s_event[matched] * len(stations) + picks.station[s_index[matched]]
    keep = _best_per_station(keys, picks.weight[s_index[matched]], np.ones(keys.size, bool))
    s_members = pd.Series(s_index[matched][keep]).groupby(s_event[matched][keep]).agg(list)

    rows, assignment_parts = [], []
    for event, p_members in enumerate(members):
        idx = np.concatenate([p_members, np.asarray(s_members.get(event, []), dtype=np.int64)])
        node, origin, residual = relocate_on_grid(
            grid, picks.time_s[idx], picks.station[idx], picks.is_p[idx], picks.weight[idx]
        )
        rows.append((origin, grid.x_km[node], grid.y_km[node], grid.depth_km[node]))
        assignment_parts.append(pd.DataFrame({"event": event, "pick": idx, "residual_s": residual}))
    events = pd.DataFrame(rows, columns=["origin_s", "x_km", "y_km", "depth_km"])
    return RawAssociation(events=events, assignments=pd.concat(assignment_parts, ignore_index=True))
