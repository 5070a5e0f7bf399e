"""Benchmark of the relocation stage: dt.ct + dt.cc + HypoDD engine on generated clusters.

    .venv/bin/python benchmarks/relocation.py                       # 1,000 and 10,000 events
    .venv/bin/python benchmarks/relocation.py --sizes 1000 --engine-timeout 300
    .venv/bin/python benchmarks/relocation.py --example1             # official example 1 only

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
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.relocation import hypodd_formats as fmt
from pipeline.relocation.engine import HypoDDError, relocate_dir, run_engine
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


def bench_example1(shared: Path, workdir: Path, engine: str) -> dict:
    """Time the engine on the official HypoDD example 1 and compare with its reference."""
    folder = workdir / "example1"
    folder.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_INPUTS:
        shutil.copy(shared / "data" / "hypodd_example1" / name, folder / name)
    t = time.perf_counter()
    reloc = fmt.read_reloc(relocate_dir(folder, RelocationConfig(engine=engine)))
    wall = time.perf_counter() - t
    ref = fmt.read_reloc(shared / "data" / "hypodd_example1" / "hypoDD.reloc")
    both = reloc.merge(ref, on="hypodd_id", suffixes=("", "_ref"))
    kx = 111.19e3 * np.cos(np.radians(both.latitude_ref))
    dh = np.hypot(
        (both.latitude - both.latitude_ref) * 111.19e3, (both.longitude - both.longitude_ref) * kx
    )
    dz = (both.depth_km - both.depth_km_ref).abs() * 1e3
    return {
        "example1_engine_s": round(wall, 2),
        "events": len(both),
        "max_horizontal_diff_m": round(float(dh.max()), 3),
        "max_vertical_diff_m": round(float(dz.max()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--engine-timeout", type=float, default=600.0)
    parser.add_argument("--engine", choices=["auto", "binary", "python"], default="auto")
    parser.add_argument("--example1", action="store_true", help="time example 1 only")
    parser.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("EQCAT_SHARED", "../shared"))
    )
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        if args.example1:
            print(json.dumps(bench_example1(args.shared, workdir, args.engine)), flush=True)
            return
        for n in args.sizes:
            print(json.dumps(bench_size(n, workdir, args.engine_timeout, args.engine)), flush=True)


if __name__ == "__main__":
    main()
