"""What the quality classes keep out, measured against the truth of a synthetic scenario.

Every event of ``<run>/catalog/catalog_all.parquet`` (all classes) is matched one-to-one to
the true catalog with the tolerances of ``eqcat score`` (:func:`pipeline.score.match_events`,
2 s and 10 km); the default catalog (classes :data:`pipeline.catalog.RELIABLE_CLASSES`) is
matched the same way on its own. Per event:

``failing``
    the class-B limits (:func:`pipeline.catalog.limit_checks`, names
    :data:`pipeline.catalog.LIMIT_NAMES`) a class-C event fails, joined by ``+``
    (e.g. ``gap+erh``); ``unlocated`` for class D; empty for A and B.
``true``
    it matches a true event (its position and time are right).
``adds``
    it matches a true event at/above ``m_min`` that the default catalog does not match: what
    admitting it to the default catalog would add to the recall at/above ``m_min``.

The summary (:func:`summarize`) counts, per class and failing limits, the events, the true
ones and their share, and ``adds``; admitting a group to the default catalog would add about
``adds`` true events at/above ``m_min`` and ``n - n_true`` false ones.

Command line (prints the summary)::

    python -m pipeline.catalog_diagnose RUN [--m-min 0.75] [--csv FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.catalog import LIMIT_NAMES, RELIABLE_CLASSES, limit_checks
from pipeline.cli import finite, output_file
from pipeline.errors import EqcatInputError
from pipeline.rundir import read_run_table, require_run_dir
from pipeline.score import RUN_EVENT_COLUMNS, match_events, read_truth, truth_in_span

#: Matching tolerances of ``eqcat score`` (origin time s, epicentre km).
TOLERANCES = (2.0, 10.0)
#: Columns of catalog_all besides the event's time and place that the diagnosis reads.
CLASS_COLUMNS = (
    "quality_class",
    "magnitude",
    "n_p",
    "n_s",
    "n_stations",
    "azimuthal_gap_deg",
    "rms_s",
    "horizontal_error_km",
    "vertical_error_km",
)


def failing_limits(catalog: pd.DataFrame) -> np.ndarray:
    """The class-B limits each row fails, joined by "+" (module docstring), shape (N,)."""
    checks = limit_checks(catalog, "B")
    failing = [
        "+".join(name for name in LIMIT_NAMES if not checks[name][k]) for k in range(len(catalog))
    ]
    out = np.asarray(failing, dtype=object)
    classes = catalog["quality_class"].to_numpy()
    out[np.isin(classes, RELIABLE_CLASSES)] = ""
    out[classes == "D"] = "unlocated"
    return out


def _matched(events: pd.DataFrame, truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per event the row of the true event it matches (-1 none); per true event, matched."""
    matches = match_events(events, truth, *TOLERANCES)
    true_row = np.full(len(events), -1, dtype=np.int64)
    true_row[matches["run"].to_numpy(int)] = matches["truth"].to_numpy(int)
    detected = np.zeros(len(truth), dtype=bool)
    detected[matches["truth"].to_numpy(int)] = True
    return true_row, detected


def diagnose_classes(catalog: pd.DataFrame, truth: pd.DataFrame, m_min: float) -> pd.DataFrame:
    """Per event of ``catalog`` (a ``catalog_all`` table) its class, failing limits and truth.

    Args:
        catalog: catalog_all rows (columns of :data:`pipeline.catalog.CATALOG_COLUMNS`).
        truth: true events (origin_time UTC, latitude, longitude, magnitude) in the run's span.
        m_min: magnitude from which a matched true event counts in ``adds``.

    Returns:
        event_id, quality_class, failing, magnitude, true, true_magnitude (NaN when not
        true), adds (module docstring); one row per event of ``catalog``.
    """
    catalog = catalog.reset_index(drop=True)
    true_row, _ = _matched(catalog, truth)
    default = np.isin(catalog["quality_class"].to_numpy(), RELIABLE_CLASSES)
    _, in_default = _matched(catalog[default].reset_index(drop=True), truth)
    true = true_row >= 0
    true_m = np.where(true, truth["magnitude"].to_numpy(float)[np.maximum(true_row, 0)], np.nan)
    adds = true & ~default & (true_m >= m_min) & ~in_default[np.maximum(true_row, 0)]
    return pd.DataFrame(
        {
            "event_id": catalog["event_id"].astype(str),
            "quality_class": catalog["quality_class"].astype(str),
            "failing": failing_limits(catalog),
            "magnitude": catalog["magnitude"].astype(float),
            "true": true,
            "true_magnitude": true_m,
            "adds": adds,
        }
    )


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per (quality_class, failing): n, n_true, true_share, adds; then a row per class (all)."""
    groups = [
        table.assign(failing=table["failing"].where(table["failing"] != "", "-")),
        table.assign(failing="all"),
    ]
    out = (
        pd.concat(groups)
        .groupby(["quality_class", "failing"])
        .agg(n=("true", "size"), n_true=("true", "sum"), adds=("adds", "sum"))
        .reset_index()
    )
    out["true_share"] = out["n_true"] / out["n"]
    return out[["quality_class", "failing", "n", "n_true", "true_share", "adds"]]


def diagnose_run(run: Path, m_min: float) -> pd.DataFrame:
    """:func:`diagnose_classes` of ``run``'s catalog_all against ``run/truth`` (its span)."""
    path = require_run_dir(run) / "catalog" / "catalog_all.parquet"
    if not path.is_file():
        raise EqcatInputError("not found (run `eqcat build` first)", path=path)
    catalog = read_run_table(path, (*RUN_EVENT_COLUMNS, *CLASS_COLUMNS))
    catalog["origin_time"] = pd.to_datetime(catalog["origin_time"], utc=True)
    catalog = catalog[catalog[["latitude", "longitude"]].notna().all(axis=1)]
    truth, _, scenario = read_truth(Path(run) / "truth")
    return diagnose_classes(catalog, truth_in_span(truth, scenario), m_min)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("run", type=Path, help="run directory of a synthetic scenario")
    parser.add_argument("--m-min", type=finite, default=0.75, help="magnitude counted in adds")
    parser.add_argument("--csv", type=output_file, help="write the per-event table here")
    args = parser.parse_args(argv)
    try:
        table = diagnose_run(args.run, args.m_min)
    except (EqcatInputError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.csv:
        table.to_csv(args.csv, index=False)
    if table.empty:
        print(f"{args.run}: catalog_all has no located event; nothing to diagnose")
        return 0
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(summarize(table).to_string(index=False, float_format="%.2f"))
    return 0


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
