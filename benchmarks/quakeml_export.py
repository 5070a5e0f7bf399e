"""Peak memory and wall time of the catalog export (Parquet, CSV, QuakeML) on generated runs.

Run: ``.venv/bin/python benchmarks/quakeml_export.py [--sizes 2000 8000 30000] [--repeats 3]
[--picked-stations 8] [--code CHECKOUT]``.

Each size is a run of N events made by ``make_run`` of ``tests/test_catalog_report.py`` (30
days, picks at ``--picked-stations`` stations: P and S, the last P only, so 15 picks per event
at 8, each with a HypoInverse residual), to which this script adds a station magnitude with
its amplitude at every station with an S pick (7 per event at 8 stations), as the magnitude
stage writes them. Generating the run is not timed. Then
:func:`pipeline.catalog.export_catalog` (the ``eqcat build`` report stage's catalog step)
runs ``--repeats`` times, each in a fresh Python process under GNU ``time``, and the line per
size gives the min / median of: the export's wall time (s, measured in that process, without
the interpreter's start and imports), the process's peak resident memory (MiB, GNU time's
maximum RSS, imports included), and its resident memory before the export (imports, MiB).

``--code`` names an eqcat checkout whose ``pipeline`` package is timed (default: this one),
e.g. a worktree of an older commit, to compare before and after a change; the settings line
says which QuakeML batch size it has ("none" for a code that writes one ObsPy Catalog).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from timing import min_median

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_export_run(root: Path, n_events: int, picked_stations: int) -> dict[str, int]:
    """Write a run of ``n_events`` events (module docstring) under ``root``; its table sizes."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from test_catalog_report import make_run

    run = make_run(root, n_events=n_events, picked_stations=picked_stations)
    picks = pd.read_parquet(run.root / "picks" / "picks.parquet")
    assignments = pd.read_parquet(run.root / "association" / "assignments.parquet")
    mags = pd.read_parquet(run.root / "magnitude" / "magnitudes.parquet")
    s_picks = assignments[assignments["phase"] == "S"].merge(picks, on=["pick_id", "phase"])
    station_mags = s_picks.merge(mags[["event_id", "magnitude"]], on="event_id")
    rng = np.random.default_rng(1)
    pd.DataFrame(
        {
            "event_id": station_mags["event_id"],
            "network": station_mags["network"],
            "station": station_mags["station"],
            "location": station_mags["location"],
            "pick_id": station_mags["pick_id"],
            "distance_km": rng.uniform(5, 60, len(station_mags)),
            "amplitude": rng.uniform(0.01, 2.0, len(station_mags)),
            "amplitude_unit": "mm",
            "amplitude_time": station_mags["time"] + pd.Timedelta(seconds=0.5),
            "n_components": 2,
            "station_magnitude": station_mags["magnitude"] + rng.normal(0, 0.1, len(station_mags)),
        }
    ).to_parquet(run.root / "magnitude" / "station_magnitudes.parquet", index=False)
    return {"events": n_events, "picks": len(assignments), "station_magnitudes": len(station_mags)}


def export_once(run_dir: Path) -> dict:
    """Run the catalog export of ``run_dir`` in this process: its wall time (s), the RSS
    before it (MiB), the batch size of the code and the manifest's counts."""
    from pipeline import catalog
    from pipeline.rundir import RunDir

    before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    began = time.perf_counter()
    entry = catalog.export_catalog(RunDir(run_dir))
    return {
        "wall_s": time.perf_counter() - began,
        "rss_before_mib": before_mib,
        "batch_events": getattr(catalog, "QUAKEML_BATCH_EVENTS", "none"),
        "events": entry["counts"]["events"],
        "picks_in_quakeml": entry["counts"]["picks_in_quakeml"],
    }


def timed_child(script: str, target: Path, code: Path) -> dict:
    """``script --one target`` in a fresh process (``pipeline`` of ``code``) under GNU time:
    the dict the child prints on its ``RESULT`` line plus peak_rss_mib, the process's maximum
    RSS (GNU time measures its own child, so no page of this process counts)."""
    gnu_time = shutil.which("time")
    if gnu_time is None:
        raise SystemExit(f"{Path(script).name} needs GNU time (apt-get install time)")
    with tempfile.TemporaryDirectory(prefix="usage_") as scratch:
        usage = Path(scratch) / "usage"
        done = subprocess.run(
            [gnu_time, "-f", "%M", "-o", str(usage), sys.executable, script, "--one", str(target)],
            env={**os.environ, "PYTHONPATH": str(code)},
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        if done.returncode or not lines:
            raise RuntimeError(f"{Path(script).name} on {target} failed:\n{done.stderr[-3000:]}")
        peak_mib = int(usage.read_text().split()[-1]) / 1024.0
    return {**json.loads(lines[-1][len("RESULT ") :]), "peak_rss_mib": peak_mib}


def main() -> None:
    from pipeline.cli import positive

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=positive(int), nargs="+", default=[2000, 8000, 30000])
    parser.add_argument("--repeats", type=positive(int), default=3)
    parser.add_argument("--picked-stations", type=int, choices=range(1, 9), default=8)
    parser.add_argument("--code", type=Path, default=REPO_ROOT, help="eqcat checkout to time")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child: one export
    args = parser.parse_args()
    if args.one is not None:
        print("RESULT " + json.dumps(export_once(args.one)), flush=True)
        return
    print(
        f"cpus={os.cpu_count()} load average at start={os.getloadavg()}; settings: code "
        f"{args.code.resolve()}, sizes {args.sizes}, {args.picked_stations} picked stations, "
        f"repeats={args.repeats}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="quakeml_export_") as workdir:
        for n_events in args.sizes:
            run_dir = Path(workdir) / f"run_{n_events}"
            sizes = make_export_run(run_dir, n_events, args.picked_stations)
            runs = [timed_child(__file__, run_dir, args.code) for _ in range(args.repeats)]
            print(
                f"{sizes['events']} events ({sizes['picks']} picks, "
                f"{sizes['station_magnitudes']} station magnitudes; QuakeML: {runs[0]['events']} "
                f"events, {runs[0]['picks_in_quakeml']} picks), QuakeML batch "
                f"{runs[0]['batch_events']}: export wall min/median="
                f"{min_median([r['wall_s'] for r in runs], '.1f')} s, peak RSS min/median="
                f"{min_median([r['peak_rss_mib'] for r in runs], '.0f')} MiB, RSS before the "
                f"export {min_median([r['rss_before_mib'] for r in runs], '.0f')} MiB "
                f"({args.repeats} runs; load average now {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            shutil.rmtree(run_dir)


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
