"""Where true events are lost on their way to the catalog: the per-stage loss table of a run.

Every true event (in the record span) is followed through the pipeline by its picks:

1. **picked**: run picks that match one of its true arrivals (same station and phase, within
   the pick tolerance, :func:`pipeline.score.match_picks`) come from at least
   ``min_stations`` stations. Otherwise it is lost at picking (``picks_missed``).
2. **associated**: the associated event holding the most of its picked stations holds at
   least ``min_stations`` of them, and most of that event's true-matching picks are its own.
   Otherwise it is lost at association: ``not_associated`` (its picks were left unassigned),
   ``split`` (its picks went to several events, none with ``min_stations`` stations of it)
   or ``merged`` (its picks went to an event made mostly of another true event's picks).
3. **located**: HypoInverse located that event (``location/locations.parquet``, ``located``);
   otherwise ``not_located``.
4. **in catalog**: the scored catalog matches it (origin time and epicentre within the event
   tolerances, :func:`pipeline.score.match_events`). A located event that the catalog does not
   match is ``mislocated`` when its event is in the catalog (its origin is too far off) and
   ``not_in_catalog`` otherwise (left out of the catalog, e.g. by its quality class).

Beside the funnel, ``n_enough_picks`` counts the true events whose matching picks cover at
least :data:`ENOUGH_READINGS` of their arrivals at ``min_stations`` stations or more, what
the default catalog's class B asks of a location (:mod:`pipeline.catalog`, 5 readings from
3 stations): with these picks, the default catalog's recall cannot much exceed
``n_enough_picks / n_true`` (a class-B event with 4 readings and a station within 15 km is
the exception) however well they are associated and located.

An event the catalog matches counts as in catalog whatever its path (the table's last column
equals the run's matched events); the loss of an unmatched event is the first stage it fails,
so each row satisfies ``n_true = n_in_catalog + sum(lost_*)``.

The catalog's unmatched events (false events) are classified by their picks: ``duplicate``
(most of their true-matching picks belong to a true event the catalog matches elsewhere),
``mislocated`` (they belong to a true event the catalog does not match), ``false_picks`` (most
of their picks match no true arrival) and ``no_picks`` (no assigned picks known).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Loss reasons in pipeline order (columns ``lost_<reason>`` of the table).
LOSS_REASONS = (
    "picks_missed",
    "not_associated",
    "split",
    "merged",
    "not_located",
    "mislocated",
    "not_in_catalog",
)
#: The funnel: events still present after each stage.
STAGES = ("true", "picked", "associated", "located", "in_catalog")
#: First failing stage of each loss reason (index into :data:`STAGES`).
_REASON_STAGE = {
    "picks_missed": 1,
    "not_associated": 2,
    "split": 2,
    "merged": 2,
    "not_located": 3,
    "mislocated": 4,
    "not_in_catalog": 4,
}
#: Short column labels of the printed table.
_LABELS = {
    "picks_missed": "picks",
    "not_associated": "unassoc",
    "split": "split",
    "merged": "merged",
    "not_located": "unlocated",
    "mislocated": "misloc",
    "not_in_catalog": "left out",
}
FALSE_EVENT_CLASSES = ("duplicate", "mislocated", "false_picks", "no_picks")


@dataclass(frozen=True)
class RunTables:
    """The run's tables the loss table reads (None where the stage did not run).

    Attributes:
        pick_truth: per run pick (index = pick_id as str) the position in the true picks table
            of the arrival it matches, -1 when none.
        assignments: association/assignments.parquet (event_id, pick_id).
        locations: location/locations.parquet (event_id, located).
        catalog: the scored event table (event_id, ...), rows in the order of the matches.
    """

    pick_truth: pd.Series | None
    assignments: pd.DataFrame | None
    locations: pd.DataFrame | None
    catalog: pd.DataFrame | None


#: Correct readings (true arrivals matched by a pick) an event needs for ``n_enough_picks``.
ENOUGH_READINGS = 5


def enough_picks(
    n_true: int,
    truth_picks: pd.DataFrame,
    true_event_index: np.ndarray,
    pick_truth: pd.Series | None,
    min_stations: int,
) -> np.ndarray:
    """Per true event, whether run picks match >= :data:`ENOUGH_READINGS` of its arrivals at
    >= ``min_stations`` stations (module docstring). Shape (n_true,), bool; all False
    without picks.

    Args:
        truth_picks: the true arrivals (network, station); ``pick_truth`` indexes its rows.
        true_event_index: per true arrival, its event's row (-1 outside the span), (P,).
        pick_truth: per run pick, the row of the true arrival it matches (-1 none).
    """
    out = np.zeros(n_true, dtype=bool)
    if pick_truth is None:
        return out
    arrivals = np.unique(pick_truth.to_numpy()[pick_truth.to_numpy() >= 0])
    event = true_event_index[arrivals]
    station = truth_picks["network"].astype(str) + "." + truth_picks["station"].astype(str)
    station = pd.factorize(station)[0][arrivals]
    inside = event >= 0
    readings = np.bincount(event[inside], minlength=n_true)
    stations = _station_counts(event, station).reindex(range(n_true), fill_value=0).to_numpy()
    return (readings >= ENOUGH_READINGS) & (stations >= min_stations)


def _station_counts(event: np.ndarray, station: np.ndarray) -> pd.Series:
    """Number of distinct stations per event label (labels < 0 ignored)."""
    keep = event >= 0
    frame = pd.DataFrame({"event": event[keep], "station": station[keep]})
    return frame.drop_duplicates().groupby("event").size()


def classify_true_events(
    n_true: int,
    truth_picks: pd.DataFrame,
    true_event_index: np.ndarray,
    tables: RunTables,
    detected: np.ndarray,
    min_stations: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Furthest stage and loss reason of every true event.

    Args:
        n_true: number of true events (rows of the scored true catalog).
        truth_picks: true picks (network, station); row positions are those of
            ``tables.pick_truth``.
        true_event_index: per true pick, the row of its event in the true catalog (-1 when
            outside the scored span), shape (P,).
        tables: the run's tables.
        detected: per true event, matched by the catalog, shape (n_true,).
        min_stations: stations an event needs (the association stage's minimum).

    Returns:
        (stage reached: index into :data:`STAGES`, loss reason or "" when in catalog), each
        shape (n_true,).
    """
    reached = np.full(n_true, len(STAGES) - 1, dtype=np.int64)
    reason = np.full(n_true, "", dtype=object)
    lost = ~detected
    if tables.pick_truth is None:
        reason[lost] = "picks_missed"
        reached[lost] = 0
        return reached, reason
    station_key = truth_picks["network"].astype(str) + "." + truth_picks["station"].astype(str)
    station_code = pd.factorize(station_key)[0]
    pick_truth = tables.pick_truth.to_numpy()
    matched = pick_truth >= 0
    pick_event = np.full(len(pick_truth), -1, dtype=np.int64)
    pick_event[matched] = true_event_index[pick_truth[matched]]
    pick_station = np.full(len(pick_truth), -1, dtype=np.int64)
    pick_station[matched] = station_code[pick_truth[matched]]
    picked_stations = _station_counts(pick_event, pick_station).reindex(range(n_true), fill_value=0)
    picked = picked_stations.to_numpy() >= min_stations

    run_event_of, majority, holds = _association_view(tables, pick_event, pick_station)
    best_event = np.full(n_true, "", dtype=object)
    best_count = np.zeros(n_true, dtype=np.int64)
    assigned_total = np.zeros(n_true, dtype=np.int64)
    if holds is not None and len(holds):
        ordered = holds.sort_values(["true", "n_stations"], ascending=[True, False])
        first = ordered.drop_duplicates("true")
        best_event[first["true"].to_numpy()] = first["event_id"].to_numpy()
        best_count[first["true"].to_numpy()] = first["n_stations"].to_numpy()
        per_true = run_event_of[run_event_of.true >= 0].drop_duplicates(["true", "station"])
        totals = per_true.groupby("true").size()
        assigned_total[totals.index.to_numpy()] = totals.to_numpy()
    associated = best_count >= min_stations
    own = np.array(
        [bool(e) and majority.get(e, -1) == k for k, e in enumerate(best_event)], dtype=bool
    )

    located_ids = _located_ids(tables.locations)
    catalog_ids = (
        set(tables.catalog["event_id"].astype(str)) if tables.catalog is not None else set()
    )
    for k in np.flatnonzero(lost):
        if not picked[k]:
            reason[k] = "picks_missed"
        elif not associated[k]:
            reason[k] = "split" if assigned_total[k] >= min_stations else "not_associated"
        elif not own[k]:
            reason[k] = "merged"
        elif located_ids is not None and best_event[k] not in located_ids:
            reason[k] = "not_located"
        elif best_event[k] in catalog_ids:
            reason[k] = "mislocated"
        else:
            reason[k] = "not_in_catalog"
        reached[k] = _REASON_STAGE[reason[k]] - 1
    return reached, reason


def _association_view(
    tables: RunTables, pick_event: np.ndarray, pick_station: np.ndarray
) -> tuple[pd.DataFrame, dict[str, int], pd.DataFrame | None]:
    """Assigned picks with their true event, each run event's majority true event, and holdings.

    Returns:
        (per assigned pick: event_id, true (-1 none), station; {event_id: majority true event
        (-1 when most of its picks match no true arrival)}; per (event_id, true) the number of
        stations of that true event's picks the run event holds (None without assignments)).
    """
    empty = pd.DataFrame({"event_id": [], "true": [], "station": []})
    if tables.assignments is None or tables.pick_truth is None:
        return empty, {}, None
    position = pd.Series(np.arange(len(tables.pick_truth)), index=tables.pick_truth.index)
    a = tables.assignments[["event_id", "pick_id"]].astype(str)
    pos = a["pick_id"].map(position)
    a = a[pos.notna()]
    pos = pos[pos.notna()].to_numpy(dtype=np.int64)
    view = pd.DataFrame(
        {
            "event_id": a["event_id"].to_numpy(),
            "true": pick_event[pos],
            "station": pick_station[pos],
        }
    )
    counts = view.groupby(["event_id", "true"]).size().rename("n").reset_index()
    counts = counts.sort_values(["event_id", "n"], ascending=[True, False])
    majority = dict(counts.drop_duplicates("event_id")[["event_id", "true"]].to_numpy())
    holds = (
        view[view.true >= 0]
        .drop_duplicates(["event_id", "true", "station"])
        .groupby(["event_id", "true"])
        .size()
        .rename("n_stations")
        .reset_index()
    )
    return view, {str(k): int(v) for k, v in majority.items()}, holds


def _located_ids(locations: pd.DataFrame | None) -> set[str] | None:
    if locations is None:
        return None
    located = locations["located"].astype(bool) if "located" in locations else True
    return set(locations.loc[located, "event_id"].astype(str))


def classify_false_events(
    tables: RunTables,
    true_event_index: np.ndarray,
    matched_run: np.ndarray,
    detected: np.ndarray,
) -> np.ndarray:
    """Class (:data:`FALSE_EVENT_CLASSES`) of each catalog event; "" for matched ones.

    Args:
        tables: the run's tables (``catalog`` rows are the scored events).
        true_event_index: per true pick, the row of its event (-1 outside the span).
        matched_run: per catalog row, matched to a true event.
        detected: per true event, matched by the catalog.
    """
    n = 0 if tables.catalog is None else len(tables.catalog)
    out = np.full(n, "", dtype=object)
    if n == 0:
        return out
    majority: dict[str, int] = {}
    if tables.pick_truth is not None and tables.assignments is not None:
        pick_truth = tables.pick_truth.to_numpy()
        pick_event = np.where(pick_truth >= 0, true_event_index[np.maximum(pick_truth, 0)], -1)
        _, majority, _ = _association_view(tables, pick_event, np.zeros_like(pick_event))
    for row, event_id in enumerate(tables.catalog["event_id"].astype(str)):
        if matched_run[row]:
            continue
        true = majority.get(event_id)
        if true is None:
            out[row] = "no_picks"
        elif true < 0:
            out[row] = "false_picks"
        else:
            out[row] = "duplicate" if detected[true] else "mislocated"
    return out


def loss_rows(
    true_m: np.ndarray,
    reached: np.ndarray,
    reason: np.ndarray,
    edges: np.ndarray,
    enough: np.ndarray | None = None,
) -> list[dict]:
    """Rows of the loss table per magnitude bin ``[edges[i], edges[i+1])`` plus "all".

    Each row: m_low, m_high (None for "all"), ``n_<stage>`` for :data:`STAGES`,
    ``lost_<reason>`` for :data:`LOSS_REASONS` and, when ``enough`` (:func:`enough_picks`,
    shape of ``true_m``) is given, ``n_enough_picks``.
    """
    rows = []
    bins = [(float(lo), float(hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    for lo, hi in [*bins, (None, None)]:
        inside = (
            np.ones(true_m.size, dtype=bool)
            if lo is None
            else (true_m >= lo - 1e-9) & (true_m < hi - 1e-9)
        )
        if lo is not None and not inside.any():
            continue
        row: dict = {"m_low": lo if lo is None else round(lo, 2)}
        row["m_high"] = hi if hi is None else round(hi, 2)
        for k, stage in enumerate(STAGES):
            row[f"n_{stage}"] = int((inside & (reached >= k)).sum())
        for name in LOSS_REASONS:
            row[f"lost_{name}"] = int((inside & (reason == name)).sum())
        if enough is not None:
            row["n_enough_picks"] = int((inside & enough).sum())
        rows.append(row)
    return rows


def format_loss_table(losses: dict) -> list[str]:
    """The loss table as text lines (one per magnitude bin, then all, then at/above Mc)."""
    header = "  M bin        true picked assoc located catalog | lost: " + " ".join(
        f"{_LABELS[name]:>9}" for name in LOSS_REASONS
    )
    header += " | enough picks"
    lines = [
        f"  where true events are lost (stage counts; picked/associated = >= "
        f"{losses['min_stations']} stations)",
        f"  enough picks: >= {ENOUGH_READINGS} of its arrivals picked at >= "
        f"{losses['min_stations']} stations, what a class-B location needs",
        header,
    ]
    rows = list(losses["by_magnitude"]) + [losses["all"]]
    if losses.get("above_mc_true"):
        rows.append(losses["above_mc_true"])
    for row in rows:
        if row.get("label"):
            label = row["label"]
        elif row["m_low"] is None:
            label = "all"
        else:
            label = f"[{row['m_low']:3.1f},{row['m_high']:3.1f})"
        counts = " ".join(
            f"{row[f'n_{s}']:>{w}d}" for s, w in zip(STAGES, (5, 6, 5, 7, 7), strict=True)
        )
        lost = " ".join(f"{row[f'lost_{name}']:>9d}" for name in LOSS_REASONS)
        enough = row.get("n_enough_picks")
        tail = f" | {enough:>12d}" if enough is not None else " |            -"
        lines.append(f"  {label:<11s} {counts} |       {lost}{tail}")
    false = losses.get("false_events")
    if false:
        lines.append(
            f"  false catalog events {false['n']}: "
            + ", ".join(f"{name.replace('_', ' ')} {false[name]}" for name in FALSE_EVENT_CLASSES)
        )
    return lines
