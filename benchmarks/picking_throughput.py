"""Picking throughput: real-time factor of continuous-data picking, plain and with MC dropout.

Run: ``.venv/bin/python benchmarks/picking_throughput.py [--models original conservative]
[--mc 20] [--repeats 3] [--quiet-hours 24] [--quiet-events 40] [--overlap 0.3]
[--context-windows on|off] [--workers 2] [--cases wilz wilz-mc quiet quiet-mc wilz-x2]``.

Models: ``original`` (the default picking model) and ``conservative``, as installed by set-up,
or weights files; each runs with the picking defaults (``PickerConfig``: thresholds 0.5/0.3/0.3,
1 h chunks, batch 500, overlap 0.3, context windows on) but ``--overlap``,
``--context-windows`` and ``--mc``.

Cases, each in a fresh Python process (so its peak memory is its own):

- ``wilz`` / ``wilz-mc``: the 2 h real O2.WILZ record (``../shared/data/continuous``), read once
  into memory, picked by :func:`pipeline.picking.stage.pick_span` in 1 h chunks: preprocessing,
  windows at ``--overlap``, prediction, combination, extraction (everything but file I/O).
- ``quiet`` / ``quiet-mc``: a generated quiet day: band-limited Gaussian noise at O2.WILZ's
  background level with ``--quiet-events`` real O2.WILZ event records (30 s each, from P - 5 s)
  pasted in at random times, so that only a few percent of the windows hold a detection.
- ``wilz-x2``: the O2.WILZ record picked twice, as two station-days, one after the other and
  then by ``--workers`` threads sharing the model (as :func:`pipeline.picking.stage.pick_all`);
  the two must give identical picks.

Each process loads the model and warms it up (graph tracing of both paths) before the timed
runs; each case is timed ``--repeats`` times and min / median wall times are printed (the
rates, "x real time", from the min). "MC windows" are the windows the MC-dropout passes ran on.
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
from pathlib import Path

import numpy as np
from obspy import Stream, Trace, UTCDateTime, read
from timing import min_median, timed

from pipeline.cli import positive

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EQCAT_SHARED", REPO_ROOT.parent / "shared"))
WILZ = SHARED / "data" / "continuous" / "O2.WILZ"
CASES = ("wilz", "wilz-mc", "quiet", "quiet-mc", "wilz-x2")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _quiet_day(wilz: Stream, model, hours: float, events: int, seed: int = 7) -> Stream:
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
    # event records: the strongest P picks of the record (regular windows only, so that the
    # data do not depend on the settings benchmarked), 30 s from P - 5 s
    picks = pick_span(lambda a, b: wilz.slice(a, b).copy(), ("O2", "WILZ", ""),
                      wilz[0].stats.starttime, wilz[0].stats.endtime,
                      PickerConfig(context_windows=False), model)  # fmt: skip
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


def run_case(case: str, args: argparse.Namespace) -> dict:
    """One timed case in this process; returns its figures."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.picking import load_eqt
    from pipeline.picking.params import PickerConfig
    from pipeline.picking.stage import SpanStats, pick_span

    model = load_eqt(args.model)
    wilz = read(str(WILZ / "*.mseed"))
    quiet = case.startswith("quiet")
    stream = _quiet_day(wilz, model, args.quiet_hours, args.quiet_events) if quiet else wilz
    mc = args.mc if case.endswith("-mc") else 0
    overlap = {} if args.overlap is None else {"overlap": args.overlap}
    context = (
        {} if args.context_windows is None else {"context_windows": args.context_windows == "on"}
    )
    cfg = PickerConfig(mc_samples=mc, batch_size=args.batch_size, **overlap, **context)
    start, end = stream[0].stats.starttime, stream[0].stats.endtime
    codes = ("O2", "WILZ", "")
    read_span = lambda a, b: stream.slice(a, b).copy()  # noqa: E731
    warm = np.random.default_rng(0).normal(size=(2, 6000, 3)).astype(np.float32)
    model.predict_windows(warm)  # graph tracing of the deterministic and the stochastic path
    model.predict_passes(warm, 2)
    pick_span(read_span, codes, start, start + 120, cfg, model)
    rss_before = _rss_mb()
    stats = SpanStats()
    once = lambda: pick_span(read_span, codes, start, end, cfg, model)  # noqa: E731
    walls = timed(once, args.repeats).walls
    picks = pick_span(read_span, codes, start, end, cfg, model, stats)  # the counts, untimed
    figures = {}
    if case == "wilz-x2":
        with ThreadPoolExecutor(args.workers) as pool:
            both = lambda: list(pool.map(lambda _: once(), range(2)))  # noqa: E731
            seq_walls = timed(lambda: [once(), once()], args.repeats).walls
            par_walls, _, results = timed(both, args.repeats)
        identical = all(r.equals(picks) for r in results)
        figures = {"sequential_s": seq_walls, "parallel_s": par_walls, "identical": identical}
    return {
        "case": case,
        "model": model.name,
        "data_s": stats.data_seconds,
        "walls": walls,
        "windows": stats.windows,
        "mc_windows": stats.mc_windows,
        "picks_p": int((picks["phase"] == "P").sum()),
        "picks_s": int((picks["phase"] == "S").sum()),
        "peak_rss_mb": _rss_mb(),
        "rss_added_mb": _rss_mb() - rss_before,
        "device": getattr(model, "device", "?"),
        **figures,
    }


def _line(r: dict) -> str:
    best = min(r["walls"])
    share = 100 * r["mc_windows"] / max(1, r["windows"])
    text = (
        f"{r['case']:8s} data={r['data_s']:6.0f}s "
        f"wall min/median={min_median(r['walls'], '6.2f')}s "
        f"x real time={r['data_s'] / best:6.0f}  windows={r['windows']:5d} "
        f"MC windows={r['mc_windows']:5d} ({share:5.1f}%) P/S={r['picks_p']}/{r['picks_s']} "
        f"peak RSS={r['peak_rss_mb']:5.0f} MB"
    )
    if "parallel_s" in r:
        seq, par = min(r["sequential_s"]), min(r["parallel_s"])
        text += (
            f"\n{'':8s} 2 station-days: one at a time min/median="
            f"{min_median(r['sequential_s'])}s, {len(r['parallel_s'])} runs of 2 workers "
            f"min/median={min_median(r['parallel_s'])}s -> {seq / par:.2f}x; "
            f"identical picks: {r['identical']}"
        )
    return text


def check_settings(args: argparse.Namespace) -> None:
    """Refuse, before any case starts, picking settings and models the cases would refuse.

    Each case runs in its own process and loads a model first (seconds): ``--overlap 5``,
    ``--mc 1`` or a misspelt model used to fail every case that way, printing its traceback,
    and the script still exited 0.

    Raises:
        EqcatInputError: naming the option, the value and what is allowed.
    """
    from pipeline.cli import validated_override
    from pipeline.errors import EqcatInputError
    from pipeline.picking.params import PickerConfig
    from pipeline.weights import resolve_weights

    settings = {"overlap": args.overlap, "batch_size": args.batch_size}
    validated_override(PickerConfig(), "--overlap/--batch-size", **settings)
    if any(case.endswith("-mc") for case in args.cases):
        validated_override(PickerConfig(), "--mc", mc_samples=args.mc)
    for name in args.models:
        try:
            path = resolve_weights(name)
        except ValueError as exc:  # a WeightsUnavailableError, or not a model name
            raise EqcatInputError(str(exc), field="--models") from None
        if not path.is_file():
            raise EqcatInputError(f"weights file {path} not found", field="--models")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["original", "conservative"])
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--mc", type=positive(int), default=20)
    parser.add_argument("--repeats", type=positive(int), default=3)
    parser.add_argument("--quiet-hours", type=positive(float), default=24.0)
    parser.add_argument("--quiet-events", type=positive(int), default=40)
    parser.add_argument(
        "--overlap", type=float, default=None, help="window overlap (default: the picking default)"
    )
    parser.add_argument(
        "--context-windows",
        choices=("on", "off"),
        default=None,
        help="picking.context_windows (default: the picking default)",
    )
    parser.add_argument("--batch-size", type=positive(int), default=500)
    parser.add_argument("--workers", type=positive(int), default=2)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--one", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_case(args.one, args)), flush=True)
        return
    from pipeline.picking.params import PickerConfig

    if args.overlap is None:
        args.overlap = PickerConfig().overlap
    if args.context_windows is None:
        args.context_windows = "on" if PickerConfig().context_windows else "off"
    check_settings(args)
    print(
        f"cpus={os.cpu_count()} load average at start={os.getloadavg()}; settings: "
        f"PickerConfig defaults, overlap={args.overlap}, context windows {args.context_windows}, "
        f"batch={args.batch_size}, MC M={args.mc}, "
        f"repeats={args.repeats}, quiet day {args.quiet_hours} h with {args.quiet_events} events",
        flush=True,
    )
    forwarded = [
        f"--mc={args.mc}",
        f"--repeats={args.repeats}",
        f"--quiet-hours={args.quiet_hours}",
        f"--quiet-events={args.quiet_events}",
        f"--overlap={args.overlap}",
        f"--context-windows={args.context_windows}",
        f"--batch-size={args.batch_size}",
        f"--workers={args.workers}",
    ]
    failed = 0
    for name in args.models:
        results = {}
        for case in args.cases:
            out = subprocess.run(
                [sys.executable, __file__, *forwarded, f"--model={name}", "--one", case],
                capture_output=True,
                text=True,
                check=False,
            )
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if out.returncode or not line:
                print(f"{name} {case}: failed\n{out.stderr[-2000:]}", flush=True)
                failed += 1
                continue
            results[case] = r = json.loads(line[0][len("RESULT ") :])
            if len(results) == 1:
                print(f"model {r['model']} ({name}), device {r['device']}", flush=True)
            print(_line(r), flush=True)
        for data in ("wilz", "quiet"):
            if data in results and f"{data}-mc" in results:
                ratio = min(results[f"{data}-mc"]["walls"]) / min(results[data]["walls"])
                print(f"{name} {data}: MC({args.mc})/plain wall-time ratio (min) = {ratio:.2f}")
        print(f"load average now={os.getloadavg()}", flush=True)
    if failed:
        raise RuntimeError(f"{failed} case(s) failed (their errors are printed above)")


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
