"""Picking throughput: real-time factor of continuous-data picking, plain and with MC dropout.

Run: ``.venv/bin/python benchmarks/picking_throughput.py [--weights PATH] [--mc 20]
[--quiet-hours 24] [--quiet-events 40] [--overlap 0.3] [--cases wilz wilz-mc quiet quiet-mc]``.

Cases, each in a fresh Python process (so its peak memory is its own):

- ``wilz`` / ``wilz-mc``: the 2 h real O2.WILZ record (``../shared/data/continuous``), read once
  into memory, picked by :func:`pipeline.picking.stage.pick_span` in 1 h chunks: preprocessing,
  windows at ``--overlap``, prediction, combination, extraction (everything but file I/O).
- ``quiet`` / ``quiet-mc``: a generated quiet day: band-limited Gaussian noise at O2.WILZ's
  background level with ``--quiet-events`` real O2.WILZ event records (30 s each, from P - 5 s)
  pasted in at random times, so that only a few percent of the windows hold a detection.

Each process loads the model and warms it up (graph tracing of both paths) before the timed run.
"x real time" = seconds of 3-component data / wall seconds. "peak RSS" is the process's
maximum resident memory; "RSS added" is its growth during the timed run. The MC/plain ratio is
the wall-time ratio of the MC run to the plain run of the same data. Load average and CPU
count are printed, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from obspy import Stream, Trace, UTCDateTime, read

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EQCAT_SHARED", REPO_ROOT.parent / "shared"))
WILZ = SHARED / "data" / "continuous" / "O2.WILZ"
CASES = ("wilz", "wilz-mc", "quiet", "quiet-mc")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _quiet_day(wilz: Stream, hours: float, events: int, seed: int = 7) -> Stream:
    """Noise at O2.WILZ's background level with real O2.WILZ event records pasted in."""
    from scipy.signal import butter, sosfilt

    from pipeline.picking.params import PickerConfig
    from pipeline.picking.stage import pick_span

    rng = np.random.default_rng(seed)
    fs = wilz[0].stats.sampling_rate
    n = int(hours * 3600 * fs)
    sos = butter(2, [1.0, 20.0], "bandpass", fs=fs, output="sos")
    wilz = wilz.copy().detrend("demean")
    # background: the quietest 10 s of each component sets the noise rms
    levels = []
    for tr in wilz:
        pieces = tr.data[: len(tr.data) // 1000 * 1000].reshape(-1, 1000)
        levels.append(np.percentile(pieces.std(axis=1), 5))
    # event records: the strongest P picks of the record, 30 s from P - 5 s
    picks = pick_span(lambda a, b: wilz.slice(a, b).copy(), ("O2", "WILZ", ""),
                      wilz[0].stats.starttime, wilz[0].stats.endtime, PickerConfig(),
                      _MODEL["eqt"])  # fmt: skip
    p = picks[picks["phase"] == "P"].nlargest(events, "probability")
    starts = np.sort(rng.choice(np.arange(60, hours * 3600 - 60, 120.0), len(p), replace=False))
    t0 = UTCDateTime(2024, 3, 1)
    traces = []
    for tr, level in zip(wilz, levels, strict=True):
        data = sosfilt(sos, rng.normal(size=n))
        data *= level / data.std()
        for t_p, start in zip(p["time"], starts, strict=True):
            t_p = UTCDateTime(t_p.to_pydatetime())
            piece = tr.slice(t_p - 5, t_p + 25).data.astype(float)
            i = int(start * fs)
            data[i : i + len(piece)] += piece - piece[:200].mean()
        header = dict(tr.stats)
        header.update(starttime=t0, npts=n)
        traces.append(Trace(data, header=header))
    return Stream(traces)


_MODEL: dict[str, object] = {}


def run_case(case: str, args: argparse.Namespace) -> dict:
    """One timed case in this process; returns its figures."""
    from pipeline.picking import load_eqt
    from pipeline.picking.params import PickerConfig
    from pipeline.picking.stage import SpanStats, pick_span

    weights = args.weights or SHARED / "models" / "eqt" / "EqT_conservative.keras"
    model = _MODEL.setdefault("eqt", load_eqt(weights))
    wilz = read(str(WILZ / "*.mseed"))
    stream = (
        wilz if case.startswith("wilz") else _quiet_day(wilz, args.quiet_hours, args.quiet_events)
    )
    mc = args.mc if case.endswith("-mc") else 0
    cfg = PickerConfig(overlap=args.overlap, mc_samples=mc, batch_size=args.batch_size)
    start, end = stream[0].stats.starttime, stream[0].stats.endtime
    codes = ("O2", "WILZ", "")
    read_span = lambda a, b: stream.slice(a, b).copy()  # noqa: E731
    warm = np.random.default_rng(0).normal(size=(2, 6000, 3)).astype(np.float32)
    for passes in (0, 1):  # graph tracing of the deterministic and the stochastic path
        model.predict_windows(warm, mc_samples=passes)
    pick_span(read_span, codes, start, start + 120, cfg, model)
    rss_before = _rss_mb()
    stats = SpanStats()
    began = time.perf_counter()
    picks = pick_span(read_span, codes, start, end, cfg, model, stats)
    wall = time.perf_counter() - began
    return {
        "case": case,
        "data_s": stats.data_seconds,
        "wall_s": wall,
        "x_real_time": stats.data_seconds / wall,
        "windows": stats.windows,
        "mc_windows": stats.mc_windows,
        "picks_p": int((picks["phase"] == "P").sum()),
        "picks_s": int((picks["phase"] == "S").sum()),
        "peak_rss_mb": _rss_mb(),
        "rss_added_mb": _rss_mb() - rss_before,
        "device": getattr(model, "device", "?"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--mc", type=int, default=20)
    parser.add_argument("--quiet-hours", type=float, default=24.0)
    parser.add_argument("--quiet-events", type=int, default=40)
    parser.add_argument("--overlap", type=float, default=0.3)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--one", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_case(args.one, args)), flush=True)
        return
    print(f"cpus={os.cpu_count()} load average at start={os.getloadavg()}", flush=True)
    results = {}
    forwarded = [
        f"--mc={args.mc}",
        f"--quiet-hours={args.quiet_hours}",
        f"--quiet-events={args.quiet_events}",
        f"--overlap={args.overlap}",
        f"--batch-size={args.batch_size}",
    ] + ([f"--weights={args.weights}"] if args.weights else [])
    for case in args.cases:
        out = subprocess.run(
            [sys.executable, __file__, *forwarded, "--one", case],
            capture_output=True,
            text=True,
            check=False,
        )
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode or not line:
            print(f"{case}: failed\n{out.stderr[-2000:]}", flush=True)
            continue
        results[case] = json.loads(line[0][len("RESULT ") :])
        r = results[case]
        share = 100 * r["mc_windows"] / max(1, r["windows"])
        print(
            f"{case:9s} data={r['data_s']:8.0f}s wall={r['wall_s']:7.2f}s "
            f"x real time={r['x_real_time']:7.0f}  windows={r['windows']:5d} "
            f"MC windows={r['mc_windows']:5d} ({share:4.1f}%) "
            f"P/S picks={r['picks_p']}/{r['picks_s']}  peak RSS={r['peak_rss_mb']:6.0f} MB "
            f"(added {r['rss_added_mb']:5.0f} MB)  device={r['device']}",
            flush=True,
        )
    for data in ("wilz", "quiet"):
        if data in results and f"{data}-mc" in results:
            ratio = results[f"{data}-mc"]["wall_s"] / results[data]["wall_s"]
            print(f"{data}: MC({args.mc})/plain wall-time ratio = {ratio:.2f}")
    print(f"load average at end={os.getloadavg()}")


if __name__ == "__main__":
    main()
