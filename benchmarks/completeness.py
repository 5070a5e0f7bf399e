"""Accuracy and speed of the Mc / b estimators on generated Gutenberg–Richter catalogs.

Run: ``.venv/bin/python benchmarks/completeness.py [--seeds 20] [--repeats 3]``. For each
incompleteness ramp width and catalog size, prints per method (MAXC with correction 0 and
+0.2; GFT on cumulative ("cum", the default) and per-bin ("inc") counts; MBS) the mean Mc
error, the fraction of seeds with |Mc error| <= 0.1, the fraction of seeds where the method
found an Mc, and the mean / max |b error| of b at that method's Mc (truth: b = 1.0, Mc = 1.0,
bin 0.1; ``CompletenessConfig`` defaults but the method's overrides, no bootstrap).

Then it times one full analysis (:func:`pipeline.completeness.analyze_magnitudes` with
origin times, so Mc(t) and b(t) too; ``CompletenessConfig`` defaults with 200 bootstrap
resamples) of a 20,000-event catalog spread over 40 days, ``--repeats`` times, and prints the
min / median wall time (s).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from timing import min_median, timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.cli import positive
from pipeline.completeness import CompletenessConfig, analyze_magnitudes, b_value  # noqa: E402
from tests.test_completeness import TRUE_B, TRUE_MC, gr_catalog  # noqa: E402

#: (label, config overrides, result key)
VARIANTS = [
    ("maxc+0.0", {"maxc_correction": 0.0}, "maxc"),
    ("maxc+0.2", {"maxc_correction": 0.2}, "maxc"),
    ("gft90-cum", {}, "gft90"),
    ("gft95-cum", {}, "gft95"),
    ("gft90-inc", {"gft_counts": "incremental"}, "gft90"),
    ("gft95-inc", {"gft_counts": "incremental"}, "gft95"),
    ("mbs", {}, "mbs"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=positive(int), default=20)
    parser.add_argument(
        "--repeats", type=positive(int), default=3, help="timed runs of the full analysis"
    )
    args = parser.parse_args()
    header = ("ramp", "N", "method", "mean dMc", "|dMc|<=0.1", "found", "mean|db|", "max|db|")
    print("{:>5} {:>6} {:>10} {:>9} {:>10} {:>6} {:>9} {:>8}".format(*header))
    for ramp in (0.3, 0.65):
        for n in (2000, 20000):
            catalogs = [gr_catalog(n, ramp, seed=1000 + s) for s in range(args.seeds)]
            for label, overrides, key in VARIANTS:
                cfg = CompletenessConfig(n_bootstrap=0, **overrides)
                d_mc, d_b = [], []
                for mags in catalogs:
                    mc = analyze_magnitudes(mags, cfg=cfg).mc[key].mc
                    d_mc.append(mc - TRUE_MC)
                    d_b.append(
                        b_value(mags, mc, cfg.delta_m)[0] - TRUE_B if np.isfinite(mc) else np.nan
                    )
                d_mc, d_b = np.array(d_mc), np.array(d_b)
                found = np.isfinite(d_mc)
                if not found.any():
                    print(f"{ramp:5.2f} {n:6d} {label:>10}  no Mc found on any seed")
                    continue
                within = np.mean(np.abs(d_mc[found]) <= 0.1 + 1e-9)
                row = (
                    np.nanmean(d_mc),
                    within,
                    found.mean(),
                    np.nanmean(np.abs(d_b)),
                    np.nanmax(np.abs(d_b)),
                )
                print(
                    f"{ramp:5.2f} {n:6d} {label:>10} "
                    + "{:+9.3f} {:10.2f} {:6.2f} {:9.3f} {:8.3f}".format(*row)
                )
    mags = gr_catalog(20000, 0.3, seed=1)
    seconds = np.sort(np.random.default_rng(1).integers(0, 40 * 86400, mags.size))
    times = np.datetime64("2000-10-06T00:00:00") + seconds.astype("timedelta64[s]")
    cfg = CompletenessConfig(n_bootstrap=200)
    walls = timed(lambda: analyze_magnitudes(mags, times, cfg), args.repeats).walls
    print(
        "full analysis, 20000 events, 200 bootstrap, Mc(t): "
        f"wall min/median={min_median(walls)} s ({args.repeats} runs)"
    )


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
