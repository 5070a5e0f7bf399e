"""Benchmark of the relocation stage: dt.ct + dt.cc + HypoDD engine on generated clusters.

    .venv/bin/python benchmarks/relocation.py                       # 1,000 and 10,000 events
    .venv/bin/python benchmarks/relocation.py --sizes 1000 --engine-timeout 300
    .venv/bin/python benchmarks/relocation.py --examples 1 2         # official examples 1-2

``--examples`` runs the python engine and, when a ``hypoDD`` program is on PATH, the Fortran
one (``--engine`` picks one), ``--repeats`` times each in fresh folders, and prints per
example and engine the min / median of wall time, CPU time (user + system) and peak resident
memory of the engine process (GNU ``time``), then the last run against the example's
reference hypoDD.reloc: horizontal p90 and largest 3-D distance (m), events over 10 m, and
the median (p5, p95) ratio of EX/EY/EZ to the reference's.

Each size generates a cluster (``pipeline.relocation.synthetic``: 12 stations on a 30-km
ring, hypocentres in a sphere whose radius grows with the catalog so the event density stays
that of a 30-event, 1-km cluster, events 10 s apart, P + S picks with 0.03 / 0.05 s noise,
three-component 100 Hz waveforms in SDS), then times the three steps separately: the
ph2dt-equivalent (incl. writing dt.ct), cross-correlation (incl. reading the archive and
writing dt.cc) and the engine. When the engine exceeds ``--engine-timeout`` the time is
reported as a lower bound. Generating the scenario is not timed. Prints one JSON line per
run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.cli import positive
from pipeline.relocation import hypodd_formats as fmt
from pipeline.relocation.engine import HypoDDError, engine_command, run_engine
from pipeline.relocation.params import RelocationConfig
from pipeline.relocation.stage import prepare_inputs
from pipeline.relocation.synthetic import make_cluster, relative_errors_km, write_run
from pipeline.rundir import RunDir
from pipeline.velocity import load_velocity_model

EXAMPLE_INPUTS = ("hypoDD.inp", "dt.cc", "dt.ct", "event.sel", "station.sel")


def bench_size(n_events: int, workdir: Path, engine_timeout: float, engine: str) -> dict:
    """Generate a cluster of ``n_events`` and time dt.ct, dt.cc and the engine."""
    model = load_velocity_model("tottori")
    radius = max(1.0, (n_events / 30) ** (1 / 3))
    t = time.perf_counter()
    scenario = make_cluster(
        model, n_events=n_events, n_stations=12, seed=11, radius_km=radius, spacing_s=10.0
    )
    run = RunDir(workdir / f"run_{n_events}")
    write_run(run, scenario)
    generate_s = time.perf_counter() - t
    cfg = RelocationConfig(engine=engine, timeout_s=engine_timeout)
    prep = prepare_inputs(run, cfg, model)
    result = {
        "events": n_events,
        "cluster_radius_km": round(radius, 2),
        "generate_s (untimed step)": round(generate_s, 1),
        "dt_ct_s": prep.timings_s["dt_ct_s"],
        "dt_cc_s": prep.timings_s["dt_cc_s"],
        "event_pairs": int(len(prep.dt_ct[["id1", "id2"]].drop_duplicates())),
        "dt_ct_rows": len(prep.dt_ct),
        "dt_cc_rows": len(prep.dt_cc),
        "cc_workers": cfg.cross_correlation.workers or min(4, os.cpu_count() or 1),
    }
    t = time.perf_counter()
    try:
        record = run_engine(prep.folder, cfg)
        result["engine"] = record.engine
        result["engine_s"] = round(time.perf_counter() - t, 1)
        reloc = fmt.read_reloc(record.reloc_path)
        ids = pd.read_csv(prep.folder / "event_ids.csv")
        moved = reloc.merge(ids, on="hypodd_id")
        start = scenario.locations[scenario.locations.event_id.isin(moved.event_id)]
        sample = np.random.default_rng(0).choice(len(moved), min(len(moved), 2000), replace=False)
        result["relocated"] = len(moved)
        result["median_rel_error_start_km"] = round(
            float(np.median(relative_errors_km(scenario.truth, start.iloc[sample]))), 4
        )
        result["median_rel_error_relocated_km"] = round(
            float(np.median(relative_errors_km(scenario.truth, moved.iloc[sample]))), 4
        )
    except HypoDDError as exc:
        result["engine_s"] = f"> {engine_timeout:.0f} (not finished: {exc})"
    return result


def _engine_run(folder: Path, engine: str) -> dict:
    """Run one engine in ``folder``: wall (s), CPU user+system (s) and peak RSS (MB) of it.

    Measured by GNU ``time`` around the engine process (``os.wait4`` from this process would
    count the pages a forked child shares with this benchmark before ``exec``).
    """
    gnu_time = shutil.which("time")
    if gnu_time is None:
        raise SystemExit(
            "benchmarks/relocation.py --examples needs GNU time (apt-get install time)"
        )
    _, command = engine_command(RelocationConfig(engine=engine))
    usage = folder / "engine.usage"
    with open(folder / "engine.out", "w") as out:
        proc = subprocess.run(
            [gnu_time, "-f", "%e %U %S %M", "-o", str(usage), *command],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode != 0:
        raise HypoDDError(f"{engine} engine failed in {folder}; see {folder / 'engine.out'}")
    wall, user, system, peak_kib = usage.read_text().split()[-4:]
    return {
        "wall_s": float(wall),
        "cpu_s": float(user) + float(system),
        "peak_rss_mb": int(peak_kib) / 1024,
    }


def _against_reference(reloc_path: Path, reference: Path) -> dict:
    """Distances (m) and error ratios of a hypoDD.reloc to the example's reference."""
    ours, ref = fmt.read_reloc(reloc_path), fmt.read_reloc(reference)
    both = ours.merge(ref, on="hypodd_id", suffixes=("", "_ref"))
    kx = 111.19e3 * np.cos(np.radians(both.latitude_ref))
    dh = np.hypot(
        (both.latitude - both.latitude_ref) * 111.19e3, (both.longitude - both.longitude_ref) * kx
    )
    dz = (both.depth_km - both.depth_km_ref) * 1e3
    d3 = np.hypot(dh, dz)
    out = {
        "events": len(both),
        "events_ref": len(ref),
        "horizontal_p90_m": round(float(np.quantile(dh, 0.9)), 2),
        "max_3d_m": round(float(d3.max()), 1),
        "events_over_10m": int((d3 > 10).sum()),
    }
    for axis in ("ex_m", "ey_m", "ez_m"):
        ratio = both[axis] / both[f"{axis}_ref"].where(both[f"{axis}_ref"] > 0)
        out[f"{axis}_ratio_median"] = round(float(ratio.median()), 3)
        out[f"{axis}_ratio_p5_p95"] = [round(float(q), 3) for q in ratio.quantile([0.05, 0.95])]
    return out


def bench_example(shared: Path, workdir: Path, example: int, engine: str, repeats: int) -> dict:
    """Time ``repeats`` engine runs on official HypoDD example 1 or 2; compare with reference."""
    source = shared / "data" / f"hypodd_example{example}"
    runs = []
    for k in range(repeats):
        folder = workdir / f"example{example}_{engine}_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for name in EXAMPLE_INPUTS:
            shutil.copy(source / name, folder / name)
        runs.append(_engine_run(folder, engine))
    result = {"example": example, "engine": engine, "repeats": repeats}
    for key in ("wall_s", "cpu_s", "peak_rss_mb"):
        values = [r[key] for r in runs]
        result[f"{key}_min"] = round(min(values), 2)
        result[f"{key}_median"] = round(float(np.median(values)), 2)
    result.update(_against_reference(folder / "hypoDD.reloc", source / "hypoDD.reloc"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=positive(int), nargs="*", default=[1000, 10000])
    parser.add_argument("--engine-timeout", type=positive(float), default=600.0)
    parser.add_argument("--engine", choices=["auto", "binary", "python"], default="auto")
    parser.add_argument(
        "--examples", type=int, nargs="*", choices=[1, 2], help="official examples only"
    )
    parser.add_argument(
        "--repeats", type=positive(int), default=3, help="runs per example and engine"
    )
    parser.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("EQCAT_SHARED", "../shared"))
    )
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        if args.examples:
            engines = ["python", "binary"] if args.engine == "auto" else [args.engine]
            for example in args.examples:
                for engine in engines:
                    if engine == "binary" and not shutil.which(RelocationConfig().binary):
                        print(json.dumps({"example": example, "engine": engine,
                                          "skipped": "no hypoDD program on PATH"}))  # fmt: skip
                        continue
                    row = bench_example(args.shared, workdir, example, engine, args.repeats)
                    print(json.dumps(row), flush=True)
            return
        for n in args.sizes:
            print(json.dumps(bench_size(n, workdir, args.engine_timeout, args.engine)), flush=True)


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
