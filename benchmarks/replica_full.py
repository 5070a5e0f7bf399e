"""The full Tottori replica built end to end, stage by stage, with wall time and peak memory.

Run: ``.venv/bin/python benchmarks/replica_full.py --out DIR [--stages S1,S2,...]
[--weights W] [--days N] [--skip-days D] [--span-days N] [--stage-limit STAGE=SECONDS]``.

Copies ``station_configs/tottori_replica.yaml`` (18 stations, 2000-10-06 05:00 –
2000-11-17, 61,548 true events with M >= 0.5) to ``DIR/replica.yaml`` with
``output_dir: DIR`` and runs ``eqcat build DIR/replica.yaml --stage NAME`` for each stage
in order (download = generation of the scenario, pick, associate, locate, relocate,
magnitude, report), each in its own process. After every stage it records, atomically, in
``DIR/benchmark.json``: wall time, peak resident memory of the largest process
(``ru_maxrss``) and of the whole process tree (sampled every 2 s, MiB), CPU time, the load
average (the wall time of a shared machine depends on it), the exit code, the
manifest counts the stage wrote and the size of the run directory. A rerun skips stages
already recorded complete; an interrupted stage resumes through the product's own caches
(generation per station-day, picking per station-day). A stage that runs past its limit
(``--stage-limit relocate=3600``) is stopped and recorded as such, with its elapsed time,
and the build goes on (magnitudes and the catalog fall back to the HypoInverse locations
when there are no relocations); a failed stage ends the build, and the script exits with
the stage's exit status and its last error line.

Options that shrink the run: ``--days N`` (and ``--skip-days D``) generate and build only N
days of the replica starting D days after its start (``--days 0.25`` = the densest first 6
hours, ~18,000 events); ``--span-days N`` generates the whole replica but builds the
catalog (pick → report) from its first N UTC days only (the first from 05:00), recorded
in ``DIR/benchmark_spanNd.json``.
``--weights`` sets ``picking.weights`` (a path or a weights name); the record names the
model and the picking settings the build ran with (``picking``, from the run's
``config.resolved.yaml``). The run is scored against the ground truth at the end (``eqcat
score``; ``DIR/<name>/score.json``).

Unlike the other benchmarks, a stage is measured once, not repeated (a stage of the full
replica takes up to hours): its figures are single measurements, recorded with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import yaml

from pipeline.cli import positive
from pipeline.errors import EqcatInputError

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "station_configs" / "tottori_replica.yaml"
STAGES = ("download", "pick", "associate", "locate", "relocate", "magnitude", "report")
#: Seconds between samples of the process tree's resident memory.
SAMPLE_S = 2.0
#: Seconds a stopped stage gets between SIGTERM and SIGKILL.
KILL_GRACE_S = 60.0


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path)


def replica_config(
    out: Path,
    base: Path,
    weights: str | None,
    days: float | None,
    skip_days: float,
    span_days: int | None,
) -> Path:
    """Write the replica config with ``output_dir: out`` and the options; return its path.

    ``out/replica.yaml``, or ``out/replica_spanNd.yaml`` for a span build (both can share
    the run directory).

    Raises:
        EqcatInputError: ``skip_days`` reaches past the end of the replica.
    """
    cfg = yaml.safe_load(base.read_text())
    cfg["output_dir"] = str(out)
    if weights:
        cfg.setdefault("picking", {})["weights"] = weights
    start = datetime.fromisoformat(str(cfg["starttime"]))
    end = datetime.fromisoformat(str(cfg["endtime"]))
    if days is not None or skip_days:
        start = start + timedelta(days=skip_days)
        if start >= end:
            raise EqcatInputError(
                f"--skip-days {skip_days:g}: the replica ({base}) spans "
                f"{(end - start).total_seconds() / 86400 + skip_days:g} days"
            )
        if days is not None:
            end = min(end, start + timedelta(days=days))
        cfg["scenario"]["start_time"] = start.isoformat()
        cfg["scenario"]["duration_s"] = (end - start).total_seconds()
    if span_days is not None:  # whole UTC days, the first one from the start time on
        midnight = datetime(start.year, start.month, start.day, tzinfo=start.tzinfo)
        end = min(end, midnight + timedelta(days=span_days))
    cfg["starttime"], cfg["endtime"] = start.isoformat(), end.isoformat()
    path = out / ("replica.yaml" if span_days is None else f"replica_span{span_days}d.yaml")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _manifest(run_dir: Path) -> dict:
    path = run_dir / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of ``proc`` and its descendants (0 once it is gone)."""
    total = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        return 0
    return total


def span_truth(run_dir: Path, out: Path, start: datetime, end: datetime) -> Path:
    """A truth folder for a catalog built from ``[start, end)`` of the scenario only.

    ``out/truth_span``: the true catalog (linked), the true picks inside the span and
    ``scenario.json`` with the span as its summary (:func:`pipeline.score.score_run` scores
    the true events of that span).
    """
    import pandas as pd

    truth, folder = run_dir / "truth", out / "truth_span"
    folder.mkdir(exist_ok=True)
    link = folder / "catalog.csv"
    if not link.exists():
        link.symlink_to(truth / "catalog.csv")
    picks = pd.read_csv(truth / "picks.csv", dtype={"network": str, "station": str})
    when = pd.to_datetime(picks.time, utc=True)
    lo, hi = pd.Timestamp(start).tz_localize("UTC"), pd.Timestamp(end).tz_localize("UTC")
    picks[(when >= lo) & (when < hi)].to_csv(folder / "picks.csv", index=False)
    scenario = json.loads((truth / "scenario.json").read_text())
    scenario["summary"] |= {"start_time": lo.isoformat(), "end_time": hi.isoformat()}
    _write_json(folder / "scenario.json", scenario)
    return folder


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run_stage(config: Path, stage: str, log_path: Path, limit_s: float | None) -> dict:
    """Run ``eqcat build CONFIG --stage STAGE`` in a new process group; measure it.

    Returns wall_s, cpu_s (user + system time of the process and the children it waited
    for), peak_rss_mib (largest process, ``ru_maxrss``), peak_tree_rss_mib (sampled sum over
    the process tree), the load averages at the end (1, 5, 15 min: on a shared machine the
    wall time depends on them), returncode and stopped (ran past ``limit_s``).
    """
    command = [sys.executable, "-m", "pipeline.cli", "build", str(config), "--stage", stage]
    peak = [0]
    began = time.perf_counter()
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        proc = psutil.Process(child.pid)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(SAMPLE_S):
                peak[0] = max(peak[0], _tree_rss(proc))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stopped_at = None
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - began
            if limit_s is not None and elapsed > limit_s and stopped_at is None:
                os.killpg(child.pid, signal.SIGTERM)
                stopped_at = elapsed
            elif stopped_at is not None and elapsed > stopped_at + KILL_GRACE_S:
                os.killpg(child.pid, signal.SIGKILL)
            time.sleep(0.5)
        done.set()
        sampler.join()
    return {
        "wall_s": round(time.perf_counter() - began, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024.0, 1),  # Linux: KiB
        "peak_tree_rss_mib": round(peak[0] / 2**20, 1),
        "returncode": os.waitstatus_to_exitcode(status),
        "stopped": stopped_at is not None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _stage_list(text: str) -> list[str]:
    """``argparse`` type of ``--stages``: names of :data:`STAGES`, comma separated."""
    stages = [s for s in text.split(",") if s]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise argparse.ArgumentTypeError(
            f"expected stages among {', '.join(STAGES)}, comma separated, got {text!r}"
        )
    return stages


def _stage_limit(item: str) -> tuple[str, float]:
    """``argparse`` type of ``--stage-limit``: ``STAGE=SECONDS`` (seconds > 0)."""
    name, _, seconds = item.partition("=")
    try:
        limit = positive(float)(seconds)
    except argparse.ArgumentTypeError:
        limit = None
    if name not in STAGES or limit is None:
        raise argparse.ArgumentTypeError(
            f"expected STAGE=SECONDS (seconds > 0; STAGE one of {', '.join(STAGES)}), got {item!r}"
        )
    return name, limit


def _error_line(log_path: Path) -> str:
    """The last ``error:`` line of a stage's log ('' without one)."""
    lines = log_path.read_text(errors="replace").splitlines() if log_path.is_file() else []
    last = next((ln for ln in reversed(lines) if ln.startswith("error:")), "")
    return last.removeprefix("error:").strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="benchmark folder (kept)")
    parser.add_argument("--config", type=Path, default=CONFIG, help="base build config")
    parser.add_argument(
        "--stages", type=_stage_list, default=",".join(STAGES), help="comma-separated stages"
    )
    parser.add_argument("--weights", default=None, help="picking.weights (path or name)")
    parser.add_argument(
        "--days", type=positive(float), default=None, help="only N days of the replica"
    )
    parser.add_argument(
        "--skip-days", type=positive(float, or_zero=True), default=0.0, help="start N days later"
    )
    parser.add_argument(
        "--span-days",
        type=positive(int),
        default=None,
        help="build the catalog from the first N UTC days",
    )
    parser.add_argument(
        "--stage-limit",
        type=_stage_limit,
        action="append",
        default=[],
        help="STAGE=SECONDS: stop a stage after",
    )
    args = parser.parse_args()
    stages, limits = args.stages, dict(args.stage_limit)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = replica_config(
        out, args.config, args.weights, args.days, args.skip_days, args.span_days
    )
    run_dir = out / yaml.safe_load(config.read_text())["name"]
    name = "benchmark.json" if args.span_days is None else f"benchmark_span{args.span_days}d.json"
    record_path = out / name
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record.setdefault("stages", {})
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    record |= {
        "config": str(config),
        "cpus": os.cpu_count(),
        "run_dir": str(run_dir),
        "commit": commit or None,
    }
    failed = None
    for stage in stages:
        if record["stages"].get(stage, {}).get("complete"):
            print(f"{stage}: recorded complete, skipped", flush=True)
            continue
        before = _manifest(run_dir)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        result = run_stage(config, stage, out / f"{stage}.log", limits.get(stage))
        after = _manifest(run_dir)
        counts = {
            name: entry.get("counts", {})
            for name, entry in after.items()
            if before.get(name, {}).get("finished_at") != entry.get("finished_at")
        }
        result |= {
            "started": started,
            "complete": result["returncode"] == 0 and not result["stopped"],
            "counts": counts,
            "run_dir_bytes": _du(run_dir),
        }
        record["stages"][stage] = result
        _write_json(record_path, record)
        print(f"{stage}: {json.dumps(result)}", flush=True)
        if result["returncode"] != 0 and not result["stopped"]:
            failed = stage
            break  # failed: the later stages would read stale or missing tables
    resolved = run_dir / "config.resolved.yaml"
    if resolved.exists():  # the model and settings the stages ran with
        record["picking"] = yaml.safe_load(resolved.read_text()).get("picking")
        _write_json(record_path, record)
    truth = run_dir / "truth"
    if (truth / "catalog.csv").exists():
        if args.span_days is not None:
            built = yaml.safe_load(config.read_text())
            start, end = (datetime.fromisoformat(built[k]) for k in ("starttime", "endtime"))
            truth = span_truth(run_dir, out, start, end)
        score = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "score", str(run_dir), str(truth)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        record["score_returncode"] = score.returncode
        if (run_dir / "score.json").exists():
            record["score"] = json.loads((run_dir / "score.json").read_text())
        _write_json(record_path, record)
    print(json.dumps({k: v for k, v in record.items() if k != "score"}))
    if failed is None:
        return 0
    code, log_path = record["stages"][failed]["returncode"], out / f"{failed}.log"
    print(
        f"error: stage {failed} failed (exit {code}; log {log_path}): {_error_line(log_path)}",
        file=sys.stderr,
    )
    return code if code > 0 else 1


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
