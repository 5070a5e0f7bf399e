"""Why true events are lost at association: a ground-truth diagnosis of an association result.

For a run of a synthetic scenario (``<run>/truth``), every true event is followed through the
association stage by its picks (run picks matching one of its true arrivals,
:func:`pipeline.score.match_picks`) and classified as in :mod:`pipeline.score_losses`
(``picks_missed``, ``not_associated``, ``split``, ``merged`` or associated, reason ``""``).
Each event lost at association also gets a **cause**:

``below_minimums``
    its matched picks alone fail the associator's minimums (PyOcto: ``n_picks``,
    ``n_p_picks``, ``n_s_picks``, ``n_p_and_s_picks``; time-based: P picks on ``min_stations``
    stations; both: ``min_stations`` stations): no associator setting short of lowering them
    can find it. ``failing`` names the minimums it fails. With a leftover pass
    (``association.leftover``) an event meeting that pass's minimums is not below them.
``picks_taken``
    some of its matched picks went to an event made mostly of another true event's picks or
    of false picks (a neighbour in time, or a false event, took them).
``missed``
    it meets the minimums and none of its picks went elsewhere, yet no event holds
    ``min_stations`` of its stations (the search did not find it, or found it with too few of
    its picks).

Columns of the per-event table (:func:`diagnose_association`): event_id, origin_time,
magnitude, n_p, n_s, n_p_and_s, n_stations (stations with matched P / S / both / any picks),
reason, cause, failing, n_unassigned (matched picks left unassigned), n_taken (matched picks
held by events of another true event or of false picks), max_abs_pick_error_s (largest
|run - true| time of its matched picks, s), neighbour_dt_s (time to the nearest other true
event, s, any magnitude).

Command line (prints the summary and the lost events at/above a magnitude)::

    python -m pipeline.association.diagnose RUN [--association DIR] [--m-min 0.75]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.association.params import AssociationConfig, minimums
from pipeline.cli import finite, output_file
from pipeline.errors import EqcatInputError
from pipeline.rundir import read_run_table, require_run_dir
from pipeline.score import PICK_COLUMNS, match_picks, read_truth, truth_in_span
from pipeline.score_losses import RunTables, classify_true_events

#: Reasons of :mod:`pipeline.score_losses` that belong to the association stage.
ASSOCIATION_LOSSES = ("not_associated", "split", "merged")
CAUSES = ("below_minimums", "picks_taken", "missed")


def leftover_minimums(cfg: AssociationConfig) -> dict[str, int] | None:
    """The per-event minimums of the leftover pass (names as :func:`minimums`), None without."""
    if cfg.leftover is None:
        return None
    return cfg.leftover.model_dump() | {"min_stations": cfg.min_stations}


def _failing(row: pd.Series, need: dict[str, int]) -> str:
    have = {
        "n_picks": row.n_p + row.n_s,
        "n_p_picks": row.n_p,
        "n_s_picks": row.n_s,
        "n_p_and_s_picks": row.n_p_and_s,
        "min_stations": row.n_stations,
    }
    return ",".join(name for name, value in need.items() if have[name] < value)


def _seconds(times: pd.Series) -> np.ndarray:
    """Times as float seconds since 1970 (UTC), shape (N,)."""
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    return (pd.to_datetime(times, utc=True) - epoch).dt.total_seconds().to_numpy()


def _neighbour_dt(origin_s: np.ndarray) -> np.ndarray:
    """Time (s) from each origin to the nearest other origin (inf when alone), shape (N,)."""
    out = np.full(origin_s.size, np.inf)
    if origin_s.size < 2:
        return out
    order = np.argsort(origin_s, kind="stable")
    gaps = np.diff(origin_s[order])
    out[order] = np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf])
    return out


def diagnose_association(
    picks: pd.DataFrame,
    assignments: pd.DataFrame,
    truth: pd.DataFrame,
    truth_picks: pd.DataFrame,
    need: dict[str, int],
    pick_tol_s: float = 0.5,
    need_leftover: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Per true event, how far its picks got through association (columns: module docstring).

    Args:
        picks: the run's picks (pick_id, network, station, phase, time).
        assignments: association/assignments.parquet (event_id, pick_id).
        truth: true catalog (event_id, origin_time, magnitude), the events to diagnose.
        truth_picks: true arrivals (event_id, network, station, phase, time), RangeIndex.
        need: the associator's minimums (:func:`minimums`).
        pick_tol_s: largest |run - true| time (s) for a run pick to match a true arrival.
        need_leftover: the leftover pass's minimums (:func:`leftover_minimums`); an event
            meeting them is not ``below_minimums``.
    """
    truth = truth.reset_index(drop=True)
    truth_picks = truth_picks.reset_index(drop=True)
    picks = picks.reset_index(drop=True)
    matched = match_picks(picks, truth_picks, pick_tol_s)
    event_row = pd.Series(np.arange(len(truth)), index=truth["event_id"].astype(str))
    true_event_index = (
        truth_picks["event_id"].astype(str).map(event_row).fillna(-1).to_numpy(dtype=np.int64)
    )
    pick_truth = pd.Series(matched, index=picks["pick_id"].astype(str))
    tables = RunTables(pick_truth, assignments, None, None)
    _, reason = classify_true_events(
        len(truth),
        truth_picks,
        true_event_index,
        tables,
        np.zeros(len(truth), dtype=bool),
        need["min_stations"],
    )
    reason = np.where(reason == "not_in_catalog", "", reason)

    ok = matched >= 0
    run_event = (
        picks["pick_id"]
        .astype(str)
        .map(assignments.set_index(assignments["pick_id"].astype(str))["event_id"].astype(str))
    )
    frame = pd.DataFrame(
        {
            "true": np.where(ok, true_event_index[np.maximum(matched, 0)], -1),
            "station": picks["network"].astype(str) + "." + picks["station"].astype(str),
            "is_p": picks["phase"].astype(str).str.upper().to_numpy() == "P",
            "run_event": run_event.to_numpy(dtype=object),
        }
    )
    t_run, t_true = _seconds(picks["time"]), _seconds(truth_picks["time"])
    frame["error_s"] = np.where(ok, t_run - t_true[np.maximum(matched, 0)], np.nan)
    assigned = frame[frame["run_event"].notna()]
    majority = assigned.groupby("run_event")["true"].agg(lambda s: s.value_counts().index[0])
    frame["run_majority"] = frame["run_event"].map(majority)
    mine = frame[frame["true"] >= 0]
    group = mine.groupby("true")
    p_st = mine[mine.is_p].groupby("true")["station"].apply(set)
    s_st = mine[~mine.is_p].groupby("true")["station"].apply(set)
    both = pd.concat([p_st, s_st], axis=1, keys=["p", "s"]).dropna()
    taken = mine["run_event"].notna() & (mine["run_majority"] != mine["true"])
    per = pd.DataFrame(
        {
            "n_p": p_st.map(len),
            "n_s": s_st.map(len),
            "n_p_and_s": both.apply(lambda r: len(r.p & r.s), axis=1),
            "n_stations": group["station"].nunique(),
            "n_unassigned": mine["run_event"].isna().groupby(mine["true"]).sum(),
            "n_taken": taken.groupby(mine["true"]).sum(),
            "max_abs_pick_error_s": group["error_s"].agg(lambda e: e.abs().max()),
        }
    ).reindex(range(len(truth)))
    counts = ["n_p", "n_s", "n_p_and_s", "n_stations", "n_unassigned", "n_taken"]
    per[counts] = per[counts].fillna(0).astype(np.int64)
    origin_s = _seconds(truth["origin_time"])
    out = pd.DataFrame(
        {
            "event_id": truth["event_id"].astype(str).to_numpy(),
            "origin_time": truth["origin_time"].to_numpy(),
            "magnitude": truth["magnitude"].to_numpy(dtype=float),
        }
    )
    out = pd.concat([out, per.reset_index(drop=True)], axis=1)
    out["reason"] = reason
    out["failing"] = [
        "" if need_leftover and not _failing(row, need_leftover) else _failing(row, need)
        for row in out.itertuples()
    ]
    lost = out["reason"].isin(ASSOCIATION_LOSSES)
    out["cause"] = ""
    out.loc[lost, "cause"] = np.select(
        [out.loc[lost, "failing"] != "", out.loc[lost, "n_taken"] > 0],
        ["below_minimums", "picks_taken"],
        "missed",
    )
    out.loc[~lost, "failing"] = ""
    out["neighbour_dt_s"] = _neighbour_dt(origin_s)
    return out


def false_events(
    picks: pd.DataFrame,
    assignments: pd.DataFrame,
    truth: pd.DataFrame,
    truth_picks: pd.DataFrame,
    pick_tol_s: float = 0.5,
) -> dict[str, int]:
    """Associated events by what their picks are: events, ``false`` (most picks match no true
    arrival) and ``duplicate`` (most picks belong to a true event that another event with more
    stations of it also holds)."""
    truth_picks = truth_picks.reset_index(drop=True)
    picks = picks.reset_index(drop=True)
    matched = match_picks(picks, truth_picks, pick_tol_s)
    truth_id = truth_picks["event_id"].astype(str).to_numpy()
    frame = pd.DataFrame(
        {
            "pick_id": picks["pick_id"].astype(str),
            "true": np.where(matched >= 0, truth_id[np.maximum(matched, 0)], ""),
            "station": picks["station"].astype(str),
        }
    ).merge(assignments[["event_id", "pick_id"]].astype(str), on="pick_id")
    majority = frame.groupby("event_id")["true"].agg(lambda s: s.value_counts().index[0])
    n_false = int((majority == "").sum())
    real = majority[majority != ""]
    return {
        "events": int(len(majority)),
        "false": n_false,
        "duplicate": int(real.duplicated().sum()),
    }


def summarize(table: pd.DataFrame, m_min: float | None = None) -> dict:
    """Counts of ``table`` rows (events with magnitude >= ``m_min``) by reason and cause."""
    if m_min is not None:
        table = table[table["magnitude"] >= m_min - 1e-9]
    lost = table[table["reason"].isin(ASSOCIATION_LOSSES)]
    failing = lost.loc[lost["cause"] == "below_minimums", "failing"].str.split(",").explode()
    return {
        "n_true": int(len(table)),
        "picked": int((table["reason"] != "picks_missed").sum()),
        "associated": int((table["reason"] == "").sum()),
        "lost": {r: int((lost["reason"] == r).sum()) for r in ASSOCIATION_LOSSES},
        "cause": {c: int((lost["cause"] == c).sum()) for c in CAUSES},
        "failing": {str(k): int(v) for k, v in failing.value_counts().items()},
    }


def diagnose_run(
    run: Path, association_dir: Path | None = None, cfg: AssociationConfig | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """:func:`diagnose_association` and :func:`false_events` of a run of a synthetic scenario.

    Reads ``RUN/picks/picks.parquet``, ``RUN/truth`` (events within the scenario's span),
    the assignments of ``association_dir`` (default ``RUN/association``) and the association
    section of ``RUN/config.resolved.yaml`` unless ``cfg`` is given.
    """
    run = require_run_dir(run)
    truth, truth_picks, scenario = read_truth(run / "truth")
    truth = truth_in_span(truth, scenario)
    if cfg is None:
        resolved = yaml.safe_load((run / "config.resolved.yaml").read_text(encoding="utf-8"))
        cfg = AssociationConfig(**resolved.get("association", {}))
    picks = read_run_table(run / "picks" / "picks.parquet", PICK_COLUMNS)
    assignments = read_run_table(
        Path(association_dir or run / "association") / "assignments.parquet",
        ("event_id", "pick_id"),
    )
    need = minimums(cfg)
    table = diagnose_association(
        picks, assignments, truth, truth_picks, need, need_leftover=leftover_minimums(cfg)
    )
    return table, false_events(picks, assignments, truth, truth_picks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("run", type=Path, help="run directory of a synthetic scenario")
    parser.add_argument("--association", type=Path, help="folder of assignments.parquet")
    parser.add_argument("--m-min", type=finite, default=0.75, help="smallest magnitude listed")
    parser.add_argument("--csv", type=output_file, help="write the per-event table here")
    args = parser.parse_args(argv)
    try:
        table, false = diagnose_run(args.run, args.association)
    except (EqcatInputError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.csv:
        table.to_csv(args.csv, index=False)
    s = summarize(table, args.m_min)
    lost = table[table["reason"].isin(ASSOCIATION_LOSSES) & (table["magnitude"] >= args.m_min)]
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(lost.drop(columns=["origin_time"]).to_string(index=False, float_format="%.2f"))
    print(f"M >= {args.m_min}: {s}")
    print(f"associated events: {false}")
    return 0


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
