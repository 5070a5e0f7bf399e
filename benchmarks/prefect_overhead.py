"""Prefect start-up and orchestration overhead of a local build (ephemeral mode).

    .venv/bin/python benchmarks/prefect_overhead.py                    # 6 stations, 40 min
    .venv/bin/python benchmarks/prefect_overhead.py --stations 12 --minutes 60 --picker eqt
    .venv/bin/python benchmarks/prefect_overhead.py --repeats 5

Generates a small synthetic build config (a scenario across midnight, so 2 station-days per
station; scenario seed 7, ``tottori`` velocity model, ``--picker`` ``stalta`` (default) or
``eqt`` with the picking default model, the ``time`` associator, build-config defaults
otherwise) in a temporary folder and times, each in a fresh Python process (interpreter
start and imports included, as for ``eqcat build``), with its own temporary ``PREFECT_HOME``
and no Prefect server running, so Prefect starts its ephemeral server:

- ``direct``: the stage functions called directly (the tasks' undecorated ``.fn``), no
  Prefect run at all: the work itself;
- ``first_build``: ``build_catalog`` on a fresh run directory: the same work plus Prefect;
- ``cached_build``: ``build_catalog`` again on the finished run: every task is a cache hit,
  so this is Prefect's start-up (ephemeral server) plus per-flow/per-task overhead.

Inside each process the time to import the flows, to start the ephemeral server (first API
call) and of the build call itself are reported separately.

The three run ``--repeats`` times (default 3), in this order, each round in a fresh folder
(configs, run directories, ``PREFECT_HOME``), so that every ``cached_build`` follows the
``first_build`` of its own config. Prints one JSON line: for each of the three, every timing
(s) as ``{"min": ..., "median": ...}`` over the rounds; likewise the derived
``prefect_overhead_first_build_s`` (``first_build`` minus ``direct`` process wall time, per
round) and ``prefect_startup_and_cached_build_s`` (the ``cached_build`` process wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from pipeline.cli import positive

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The scenario is centred on this midnight (four days after the Tottori mainshock).
MIDNIGHT = datetime(2000, 10, 11, tzinfo=UTC)
#: The timed cases of a round, in the order they run.
PARTS = ("direct", "first_build", "cached_build")


def write_config(folder: Path, name: str, stations: int, minutes: float, picker: str) -> Path:
    """A build config of a synthetic scenario centred on a UTC midnight; its path."""
    begin = MIDNIGHT - timedelta(minutes=minutes / 2)
    spec = {
        "name": name,
        "starttime": begin.isoformat(),
        "endtime": (begin + timedelta(minutes=minutes)).isoformat(),
        "velocity_model": "tottori",
        "output_dir": str(folder / "runs"),
        "scenario": {
            "seed": 7,
            "start_time": begin.isoformat(),
            "duration_s": minutes * 60,
            "max_stations": stations,
        },
        "picking": {"picker": picker},
        "association": {"associator": "time"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_direct(config_path: str) -> dict:
    """Every stage through the tasks' plain functions (no Prefect engine); seconds per stage."""
    began = time.perf_counter()
    from flows.build import _stage_task, download_task, pick_station_day_task
    from pipeline.config import load_config, write_resolved_config
    from pipeline.picking.stage import finish_picking
    from pipeline.waveforms.inventory import read_stations_csv
    from pipeline.waveforms.sds import days_in_span

    timings = {"import_s": time.perf_counter() - began}
    cfg = load_config(config_path)
    run = write_resolved_config(cfg)
    t = time.perf_counter()
    download_task.fn(config_path, cache={})
    timings["download_s"] = time.perf_counter() - t
    t = time.perf_counter()
    stations = read_stations_csv(run.root / "waveforms" / "stations.csv")
    units = [
        (row, day)
        for day in days_in_span(cfg.starttime, cfg.endtime)
        for row in stations.drop_duplicates(["network", "station"]).itertuples(index=False)
    ]
    summaries = [
        pick_station_day_task.fn(
            config_path, r.network, r.station, r.location, r.channel_prefix, day, cache={}
        )
        for r, day in units
    ]
    finish_picking(run, cfg.picking, summaries, {}, cfg.picking.picker, len(units), t)
    timings["pick_s"] = time.perf_counter() - t
    for stage in ("associate", "locate", "relocate", "magnitude", "report"):
        t = time.perf_counter()
        _stage_task(stage, config_path)
        timings[f"{stage}_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - began
    return timings


def run_build(config_path: str) -> dict:
    """``build_catalog`` as ``eqcat build`` runs it; import and build-call seconds."""
    began = time.perf_counter()
    from prefect import get_client

    from flows.build import build_catalog

    timings = {"import_s": time.perf_counter() - began}
    t = time.perf_counter()
    with get_client(sync_client=True) as client:  # starts the ephemeral server
        client.api_healthcheck()
    timings["server_start_s"] = time.perf_counter() - t
    t = time.perf_counter()
    build_catalog(config_path)
    timings["build_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - began
    return timings


def in_fresh_process(step: str, config_path: Path, prefect_home: Path) -> dict:
    """Run ``step`` in a new interpreter; its inner timings plus the process wall time."""
    env = dict(
        os.environ,
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    env.pop("PREFECT_API_URL", None)  # ephemeral mode, as `eqcat build` without a server
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--step", step, "--config", str(config_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        check=False,
    )
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{step} failed:\n{done.stderr[-4000:]}")
    timings = json.loads(done.stdout.strip().splitlines()[-1])
    return {"process_wall_s": wall, **timings}


def one_round(folder: Path, stations: int, minutes: float, picker: str) -> dict[str, dict]:
    """``direct``, ``first_build`` and ``cached_build`` of new configs in the new ``folder``.

    Args:
        folder: this round's configs, run directories and ``PREFECT_HOME`` (must not exist).
        stations: scenario stations.
        minutes: scenario length (min).
        picker: ``"stalta"`` or ``"eqt"``.

    Returns:
        The timings (s) of each of :data:`PARTS`, by part.
    """
    folder.mkdir()
    direct = write_config(folder, "direct", stations, minutes, picker)
    built = write_config(folder, "flow", stations, minutes, picker)
    return {
        "direct": in_fresh_process("direct", direct, folder / "prefect"),
        "first_build": in_fresh_process("build", built, folder / "prefect"),
        "cached_build": in_fresh_process("build", built, folder / "prefect"),
    }


def spread(seconds: list[float]) -> dict[str, float]:
    """Min and median of the times (s) of the rounds, rounded to 0.01 s."""
    return {"min": round(min(seconds), 2), "median": round(statistics.median(seconds), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=positive(int), default=6, help="scenario stations")
    parser.add_argument(
        "--minutes", type=positive(float), default=40.0, help="scenario length (min)"
    )
    parser.add_argument("--picker", choices=("stalta", "eqt"), default="stalta")
    parser.add_argument("--repeats", type=positive(int), default=3, help="rounds of the three")
    parser.add_argument("--step", choices=("direct", "build"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:  # child process
        step = run_direct if args.step == "direct" else run_build
        print(json.dumps({k: round(v, 2) for k, v in step(args.config).items()}))
        return
    with tempfile.TemporaryDirectory(prefix="eqcat-prefect-overhead-") as tmp:
        rounds = [
            one_round(Path(tmp) / f"round{i}", args.stations, args.minutes, args.picker)
            for i in range(args.repeats)
        ]
    result = {
        "stations": args.stations,
        "minutes": args.minutes,
        "picker": args.picker,
        "repeats": args.repeats,
    }
    for part in PARTS:
        result[part] = {key: spread([r[part][key] for r in rounds]) for key in rounds[0][part]}
    result["prefect_overhead_first_build_s"] = spread(
        [r["first_build"]["process_wall_s"] - r["direct"]["process_wall_s"] for r in rounds]
    )
    result["prefect_startup_and_cached_build_s"] = result["cached_build"]["process_wall_s"]
    print(json.dumps(result))


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
