"""Association throughput: picks per second for 1e4, 1e5, 1e6 generated picks (18 stations).

Run: ``.venv/bin/python benchmarks/association.py [--sizes 1e4 1e5 1e6]
[--associators time pyocto] [--pyocto-max 1e5]``. Picks come from
:func:`pipeline.association.synthetic.generate` (Tottori model, one event per 10 s, 10% false
picks); each line reports wall time, picks/s and the event/pick scores. PyOcto runs above
``--pyocto-max`` picks are skipped (slow on a shared 2-core machine) and reported as such.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd

from pipeline.association import AssociationConfig, associate_picks
from pipeline.association.stage import read_stations
from pipeline.association.synthetic import generate, score
from pipeline.velocity import load_velocity_model

PICKS_PER_EVENT = 29.8  # measured mean of the default scenario (incl. 10% false picks), seed 11


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e4, 1e5, 1e6])
    parser.add_argument("--associators", nargs="+", default=["time", "pyocto"])
    parser.add_argument("--pyocto-max", type=float, default=1e6)
    args = parser.parse_args()
    model = load_velocity_model("tottori")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            scenario = generate(model, int(size / PICKS_PER_EVENT), seed=11)
            csv = f"{tmp}/stations.csv"
            scenario.stations.to_csv(csv, index=False)
            stations = read_stations(csv)
            for name in args.associators:
                n = len(scenario.picks)
                if name == "pyocto" and n > args.pyocto_max:
                    print(f"{name:6s} picks={n:>8d} skipped (> --pyocto-max {args.pyocto_max:.0e})")
                    continue
                cfg = AssociationConfig(associator=name)
                start = time.perf_counter()
                events, assignments, counts = associate_picks(
                    scenario.picks, stations, model, cfg, tmp
                )
                wall = time.perf_counter() - start
                s = score(scenario, events, assignments)
                print(
                    f"{name:6s} picks={n:>8d} events={len(events):>6d} wall={wall:8.2f}s "
                    f"picks/s={n / wall:9.0f}  event P/R={s['event_precision']:.3f}/"
                    f"{s['event_recall']:.3f}  pick P/R={s['pick_precision']:.3f}/"
                    f"{s['pick_recall']:.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    pd.set_option("display.width", 120)
    main()
