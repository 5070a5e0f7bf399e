"""Peak memory and wall time of reading a QuakeML catalog (``eqcat mc``'s reader).

Run: ``.venv/bin/python benchmarks/quakeml_read.py [--sizes 2000 8000] [--repeats 3]
[--picked-stations 8] [--code CHECKOUT]``.

Each size is the ``catalog.xml`` that :func:`pipeline.catalog.export_catalog` writes for a
run of N events made as ``benchmarks/quakeml_export.py`` makes it (picks at
``--picked-stations`` stations, station magnitudes; not timed). Then
:func:`pipeline.catalog_io.read_catalog` reads it ``--repeats`` times, each in a fresh Python
process under GNU ``time``, and the line per size gives the min / median of: the read's wall
time (s, in that process, without the interpreter's start and imports), the process's peak
resident memory (MiB, GNU time's maximum RSS, imports included) and its resident memory
before the read (ObsPy and eqcat imported, MiB).

``--code`` names an eqcat checkout whose ``pipeline`` package is timed (default: this one),
e.g. a worktree of an older commit, to compare before and after a change; the settings line
says which QuakeML batch size its reader has ("none" for one that reads the whole file).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from quakeml_export import REPO_ROOT, make_export_run, timed_child
from timing import min_median


def read_once(catalog_xml: Path) -> dict:
    """Read ``catalog_xml`` with :func:`read_catalog` in this process: wall time (s), RSS
    before it (MiB), the reader's batch size and the number of events read."""
    import obspy  # noqa: F401  (imported before the "before" RSS, as the reader needs it)

    from pipeline import catalog_io

    before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    began = time.perf_counter()
    table = catalog_io.read_catalog(catalog_xml)
    return {
        "wall_s": time.perf_counter() - began,
        "rss_before_mib": before_mib,
        "batch_events": getattr(catalog_io, "QUAKEML_BATCH_EVENTS", "none"),
        "events": len(table),
    }


def make_catalog(root: Path, n_events: int, picked_stations: int) -> Path:
    """``catalog/catalog.xml`` of a run of ``n_events`` events made under ``root``."""
    from pipeline.catalog import export_catalog
    from pipeline.rundir import RunDir

    make_export_run(root, n_events, picked_stations)
    export_catalog(RunDir(root))
    return root / "catalog" / "catalog.xml"


def main() -> None:
    from pipeline.cli import positive

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=positive(int), nargs="+", default=[2000, 8000])
    parser.add_argument("--repeats", type=positive(int), default=3)
    parser.add_argument("--picked-stations", type=int, choices=range(1, 9), default=8)
    parser.add_argument("--code", type=Path, default=REPO_ROOT, help="eqcat checkout to time")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child: one read
    args = parser.parse_args()
    if args.one is not None:
        print("RESULT " + json.dumps(read_once(args.one)), flush=True)
        return
    print(
        f"cpus={os.cpu_count()} load average at start={os.getloadavg()}; settings: code "
        f"{args.code.resolve()}, sizes {args.sizes}, {args.picked_stations} picked stations, "
        f"repeats={args.repeats}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="quakeml_read_") as workdir:
        for n_events in args.sizes:
            run_dir = Path(workdir) / f"run_{n_events}"
            catalog_xml = make_catalog(run_dir, n_events, args.picked_stations)
            runs = [timed_child(__file__, catalog_xml, args.code) for _ in range(args.repeats)]
            print(
                f"{n_events} events in the run, catalog.xml "
                f"{catalog_xml.stat().st_size / 2**20:.0f} MiB, {runs[0]['events']} events read, "
                f"QuakeML batch {runs[0]['batch_events']}:"
                f" read wall min/median={min_median([r['wall_s'] for r in runs], '.1f')} s, peak "
                f"RSS min/median={min_median([r['peak_rss_mib'] for r in runs], '.0f')} MiB, RSS "
                f"before the read {min_median([r['rss_before_mib'] for r in runs], '.0f')} MiB "
                f"({args.repeats} runs; load average now {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            shutil.rmtree(run_dir)


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
