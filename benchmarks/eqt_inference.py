"""EQTransformer inference speed: windows per second, plain and with MC dropout, and peak memory.

Run: ``.venv/bin/python benchmarks/eqt_inference.py [--weights original] [--windows 64]
[--mc 20] [--repeats 3] [--batch-size 500]``. ``--weights`` is a named model (default: the
picking default, ``original``) or a weights file. The inputs are the 16 real preprocessed
O2.WILZ windows of ``../shared/reference/eqt_parity_o2wilz.npz`` repeated to ``--windows``.
Each mode is run once to compile (reported as "first call") and then ``--repeats`` times; the
min and median times are printed, rates use the min, and the least CPU time (all threads) per
window is shown too. "x real time" is the
data a window adds at 30% overlap (42 s) times windows/s. Peak RSS is the process's maximum
resident memory after all runs.
"""

from __future__ import annotations

import argparse
import os
import resource
from pathlib import Path

import numpy as np
from timing import timed

from pipeline.cli import positive
from pipeline.weights import DEFAULT_MODEL

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EQCAT_SHARED", REPO_ROOT.parent / "shared"))
SECONDS_PER_WINDOW_AT_30_PERCENT = 42.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=DEFAULT_MODEL, help="named model or file")
    parser.add_argument("--windows", type=positive(int), default=64)
    parser.add_argument("--mc", type=positive(int), default=20, help="MC-dropout passes")
    parser.add_argument("--repeats", type=positive(int), default=3)
    parser.add_argument("--batch-size", type=positive(int), default=500)
    args = parser.parse_args()
    import tensorflow as tf  # after argument checks: its start-up lines are slow and noisy

    from pipeline.picking import load_eqt

    model = load_eqt(args.weights)
    reference = np.load(SHARED / "reference/eqt_parity_o2wilz.npz")["x"]
    x = np.resize(reference, (args.windows, *reference.shape[1:])).astype(np.float32)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "default (all)"
    print(
        f"model={model.name} device={model.device} cpus={os.cpu_count()} "
        f"intra-op threads={threads} windows={args.windows} batch_size={args.batch_size}"
    )
    rows = []
    for label, passes in (("plain", 0), (f"MC M={args.mc}", args.mc)):

        def predict(p: int = passes) -> dict[str, np.ndarray]:
            return model.predict_windows(x, mc_samples=p, batch_size=args.batch_size)

        first = timed(predict, 1).walls[0]  # compiles
        walls, cpus, _ = timed(predict, args.repeats)
        best, median, cpu = min(walls), float(np.median(walls)), min(cpus)
        rate = args.windows / best
        rows.append((label, first, best, median, rate, max(passes, 1), cpu / args.windows))
    print(
        f"{'mode':<10} {'first call s':>12} {'min s':>8} {'median s':>9} {'windows/s':>10} "
        f"{'passes/s':>9} {'x real time':>12} {'CPU ms/window':>14}"
    )
    for label, first, best, median, rate, passes, cpu_per_window in rows:
        print(
            f"{label:<10} {first:>12.2f} {best:>8.3f} {median:>9.3f} {rate:>10.1f} "
            f"{rate * passes:>9.1f} "
            f"{rate * SECONDS_PER_WINDOW_AT_30_PERCENT:>12.0f} {1e3 * cpu_per_window:>14.1f}"
        )
    print(f"MC/plain time ratio: {rows[1][2] / rows[0][2]:.1f}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
