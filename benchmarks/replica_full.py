"""Generation of the full Tottori replica (18 stations × 2000-10-06 05:00 – 2000-11-17).

Run: ``.venv/bin/python benchmarks/replica_full.py [--out DIR] [--days N] [--skip-days D]
[--workers W] [--pick] [--keep]``. Generates the ``replica`` preset (or ``--days`` days of
it, starting ``--skip-days`` after its start) day by day into ``DIR`` (a temporary folder
unless given) and prints one JSON line: wall time, peak resident memory of this process and
of the worker processes (MiB), events, synthesised event–station pairs, files and bytes
written, generation rate (station-days per second). With ``--pick`` the picking stage
(EQTransformer, default settings) then runs over the archive and the line also reports its
wall time, window count and the truth-table pick scores. The first hours after the
mainshock are the densest (~18,000 events with M >= 0.5 in the first 6 hours), so
``--days 0.25`` bounds the cost per unit time from above, ``--skip-days 20 --days 1`` gives a
typical late day.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from pipeline.synthetic import generate_scenario, preset


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (kept)")
    parser.add_argument("--days", type=float, default=None, help="only N days")
    parser.add_argument(
        "--skip-days", type=float, default=0.0, help="start N days after the replica start"
    )
    parser.add_argument("--workers", type=int, default=1, help="station worker processes")
    parser.add_argument("--pick", action="store_true", help="run the picking stage too")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    full = preset("replica")
    start = full.start_time + timedelta(days=args.skip_days)
    days = args.days if args.days is not None else (full.end_time - start).total_seconds() / 86400
    cfg = preset("replica", start_time=start, duration_s=days * 86400.0)
    out = args.out or Path(tempfile.mkdtemp(prefix="eqcat-replica-"))
    began = time.perf_counter()
    summary = generate_scenario(out, cfg, workers=args.workers)
    wall = time.perf_counter() - began
    station_days = summary.n_stations * cfg.duration_s / 86400.0
    record = {
        "start": cfg.start_time.isoformat(),
        "span_days": round(cfg.duration_s / 86400.0, 3),
        "stations": summary.n_stations,
        "workers": args.workers,
        "events": summary.n_events,
        "pairs_synthesised": summary.n_pairs_synthesised,
        "files": summary.n_files,
        "bytes_written": summary.bytes_written,
        "generation_wall_s": round(wall, 1),
        "station_days_per_s": round(station_days / wall, 3),
        "peak_rss_mib_self": round(_peak_mib(resource.RUSAGE_SELF), 1),
        "peak_rss_mib_workers": round(_peak_mib(resource.RUSAGE_CHILDREN), 1),
    }
    if args.pick:
        from pipeline.picking.params import PickerConfig
        from pipeline.picking.stage import pick_all
        from pipeline.rundir import RunDir
        from pipeline.score import score_run
        from pipeline.waveforms.inventory import read_stations_csv

        stations = read_stations_csv(out / "waveforms" / "stations.csv")
        first = cfg.start_time.date()
        days = [first + timedelta(days=i) for i in range((cfg.end_time.date() - first).days + 1)]
        began = time.perf_counter()
        counts = pick_all(RunDir(out), PickerConfig(), stations, days)["counts"]
        record["picking_wall_s"] = round(time.perf_counter() - began, 1)
        record["picking_counts"] = counts
        record["pick_scores"] = score_run(out, out / "truth")["picks"]
    print(json.dumps(record))
    if args.out is None and not args.keep:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
