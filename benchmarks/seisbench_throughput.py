"""SeisBench's EQTransformer on the same record as ``picking_throughput.py``: the yardstick.

Run (``make bench-seisbench`` sets up ``.venv-seisbench`` with SeisBench and PyTorch, apart
from eqcat's TensorFlow environment, then runs this)::

    .venv-seisbench/bin/python benchmarks/seisbench_throughput.py [--repeats 3]

The 2 h O2.WILZ record (``../shared/data/continuous``, read once into memory) is picked by
``EQTransformer.classify`` at SeisBench's defaults (windows overlapping by 3,000 samples,
outputs stacked by the maximum, thresholds 0.1 / 0.3), which covers preprocessing,
prediction, stacking and pick extraction, as eqcat's ``pick_span`` does. SeisBench fetches
its pretrained weights from its server, which this machine cannot reach, so without them the
network keeps its initial weights and is labelled so: the compute per window (the same
architecture and window count) is what the timing measures; the picks are not meaningful.
Each run is timed ``--repeats`` times after one warm-up; min / median wall times are
printed, the rate (x real time = seconds of 3-component data / wall seconds) from the min.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EQCAT_SHARED", REPO_ROOT.parent / "shared"))
WILZ = SHARED / "data" / "continuous" / "O2.WILZ"


def load_model(weights: str):
    """SeisBench's EQTransformer with ``weights`` pretrained, or untrained; (model, label)."""
    import seisbench.models as sbm

    try:
        return sbm.EQTransformer.from_pretrained(weights), f"pretrained '{weights}'"
    except Exception as exc:  # noqa: BLE001 - offline: any download failure means no weights
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}" if str(exc) else ""
        return sbm.EQTransformer(), f"untrained (pretrained '{weights}' unavailable: {reason})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (at least 1)")
    parser.add_argument("--weights", default="original", help="SeisBench pretrained name")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    files = sorted(WILZ.glob("*.mseed"))
    if not files:
        parser.exit(2, f"error: {WILZ}: no miniSEED files (set EQCAT_SHARED to the shared data)\n")

    import seisbench
    import torch
    from obspy import Stream, read

    stream = Stream()
    for path in files:
        stream += read(str(path))
    stream.merge()
    data_s = stream[0].stats.npts / stream[0].stats.sampling_rate
    model, label = load_model(args.weights)
    model.eval()
    print(
        f"cpus={os.cpu_count()} torch threads={torch.get_num_threads()} load average at "
        f"start={os.getloadavg()}; SeisBench {seisbench.__version__}, torch "
        f"{torch.__version__}, EQTransformer {label}; classify() defaults",
        flush=True,
    )
    model.classify(stream.slice(stream[0].stats.starttime, stream[0].stats.starttime + 300))
    walls = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        output = model.classify(stream)
        walls.append(time.perf_counter() - began)
    best, median = min(walls), statistics.median(walls)
    print(
        f"wilz     data={data_s:6.0f}s wall min/median={best:6.2f}/{median:6.2f}s "
        f"x real time={data_s / best:6.0f}  picks={len(output.picks)}"
    )
    print(f"load average now={os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
