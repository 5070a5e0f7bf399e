"""Why events are lost at picking: the picker's curves at the true arrivals of a scored run.

    python benchmarks/pick_losses.py RUN [--truth RUN/truth] [--mc 0.8] [--out table.csv]
        [--start 2000-10-06T12:00:00 --hours 2]

Re-runs the run's picker (config.resolved.yaml's ``picking`` section, its model) on the run's
SDS archive as the picking stage does, looks at every true arrival of the span
(:mod:`pipeline.picking.diagnose`) and prints, for the true events at/above ``--mc`` that
are lost at picking (matching picks at fewer than ``min_stations`` stations), the cause of
every arrival, by phase and true SNR, with the window positions and neighbour distances,
and what-ifs: how many of these events extraction alone could recover. ``--out`` writes the
per-arrival table (CSV). ``--start`` / ``--hours`` diagnose part of the run's span (a long
run, e.g. the full replica, takes as long as its picking).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from obspy import UTCDateTime

from pipeline.cli import finite, output_file, positive
from pipeline.errors import EqcatInputError
from pipeline.picking.params import PickerConfig
from pipeline.rundir import require_run_dir

SNR_EDGES = (0.0, 2.0, 5.0, 10.0, np.inf)


def lost_events(table: pd.DataFrame, min_stations: int) -> pd.Series:
    """Per true event, True when matching picks come from fewer than ``min_stations``."""
    picked = table[table["matched"]].groupby("event_id")["station"].nunique()
    counts = picked.reindex(table["event_id"].unique(), fill_value=0)
    return counts < min_stations


def recoverable(table: pd.DataFrame, causes: set[str], min_stations: int) -> int:
    """Lost events that reach ``min_stations`` when arrivals with ``causes`` count as picked."""
    ok = table["matched"] | table["cause"].isin(causes)
    counts = table[ok].groupby("event_id")["station"].nunique()
    return int((counts.reindex(table["event_id"].unique(), fill_value=0) >= min_stations).sum())


def report(table: pd.DataFrame, mc: float, min_stations: int) -> None:
    """Print the breakdown (module docstring)."""
    from pipeline.picking.diagnose import CAUSES

    above = table[table["magnitude"] >= mc - 0.05]
    lost = lost_events(above, min_stations)
    lost_ids = set(lost.index[lost])
    sub = above[above["event_id"].isin(lost_ids)]
    print(f"true events >= M{mc:.1f} in span: {len(lost)}; lost at picking: {len(lost_ids)}")
    print(f"their arrivals: {len(sub)} (P {sum(sub.phase == 'P')}, S {sum(sub.phase == 'S')})")
    snr_bin = pd.cut(sub["snr"], SNR_EDGES, right=False)
    for phase in ("P", "S"):
        part = sub[sub["phase"] == phase]
        print(f"\n{phase}: cause x true SNR (lost events >= Mc)")
        print(
            pd.crosstab(part["cause"], snr_bin[part.index], margins=True)
            .reindex([*CAUSES, "All"])
            .dropna(how="all")
            .fillna(0)
            .astype(int)
            .to_string()
        )
    print("\nphase peak probability near the arrival (lost events, not picked, SNR >= 2):")
    missed = sub[~sub["matched"] & (sub["snr"] >= 2)]
    for phase in ("P", "S"):
        peaks = missed.loc[missed["phase"] == phase, "peak"]
        q = np.quantile(peaks, [0.25, 0.5, 0.75]) if len(peaks) else [np.nan] * 3
        print(
            f"  {phase}: n={len(peaks)} quartiles {q[0]:.2f} {q[1]:.2f} {q[2]:.2f}; "
            + ", ".join(f">={t}: {(peaks >= t).sum()}" for t in (0.05, 0.1, 0.2, 0.3))
        )
    print("\nwindow offset of the arrival (s into the window used there), not picked vs picked:")
    for name, part in (
        ("not picked", sub[~sub["matched"]]),
        ("picked (all >=Mc)", above[above["matched"]]),
    ):
        off = part["window_offset_s"]
        print(
            f"  {name:18s} n={len(off)}: <3 s {np.mean(off < 3):.2f}, "
            f">55 s {np.mean(off > 55):.2f}, median {off.median():.1f} s"
        )
    print("\nnearest arrival of another event at the station (s), median:")
    print(
        f"  lost events' missed arrivals {sub.loc[~sub['matched'], 'neighbour_s'].median():.1f}; "
        f"picked arrivals >= Mc {above.loc[above['matched'], 'neighbour_s'].median():.1f}"
    )
    print("\nwhat-if (lost events >= Mc reaching the station minimum):")
    extraction = {"no_detection", "weaker_in_detection", "thinned", "peak_elsewhere"}
    print(f"  every extraction loss kept: {recoverable(sub, extraction, min_stations)}")
    for t in (0.2, 0.1, 0.05):
        lowered = sub.assign(cause=np.where(sub["peak"] >= t, "kept", sub["cause"]))
        n = recoverable(lowered, extraction | {"kept"}, min_stations)
        print(f"  + every arrival with peak >= {t}: {n}")
    print("  stations with true SNR >= 2 (upper bound): ", end="")
    print(recoverable(sub.assign(cause=np.where(sub["snr"] >= 2, "x", "")), {"x"}, min_stations))


def main() -> None:
    from pipeline.picking import load_eqt  # TensorFlow: after the logging set-up
    from pipeline.picking.diagnose import diagnose_arrivals
    from pipeline.score import read_truth

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--truth", type=Path, default=None)
    parser.add_argument("--mc", type=finite, default=0.8, help="true Mc (default 0.8)")
    parser.add_argument("--out", type=output_file, help="per-arrival table (CSV)")
    parser.add_argument("--start", type=UTCDateTime, help="start of the part (default: run's)")
    parser.add_argument("--hours", type=positive(float), help="length of the part (h)")
    args = parser.parse_args()
    resolved = require_run_dir(args.run) / "config.resolved.yaml"
    if not resolved.is_file():
        raise EqcatInputError("not found (expected a built run directory)", path=resolved)
    config = yaml.safe_load(resolved.read_text())
    cfg = PickerConfig(**config["picking"])
    min_stations = int(config["association"]["min_stations"])
    span = UTCDateTime(config["starttime"]), UTCDateTime(config["endtime"])
    start = span[0] if args.start is None else max(span[0], args.start)
    end = span[1] if args.hours is None else min(span[1], start + args.hours * 3600)
    if end <= start:
        raise EqcatInputError(
            f"--start {args.start} lies outside the run's span {span[0]} - {span[1]}"
        )
    truth = args.truth or args.run / "truth"
    read_truth(truth)  # a missing or bad truth folder fails here, before the model loads
    model = load_eqt(cfg.weights, hard_sigmoid=cfg.hard_sigmoid)
    began = time.perf_counter()
    table = diagnose_arrivals(args.run, truth, cfg, model, start, end)
    print(
        f"{args.run}: model {model.name}, {len(table)} true arrivals diagnosed in "
        f"{time.perf_counter() - began:.0f} s"
    )
    if args.out:
        table.to_csv(args.out, index=False)
    report(table, args.mc, min_stations)


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
