"""Association throughput: picks per second for 1e4, 1e5, 1e6 generated picks (18 stations).

Run: ``.venv/bin/python benchmarks/association.py [--sizes 1e4 1e5 1e6]
[--associators time pyocto] [--repeat 3] [--pyocto-max 1e6] [--pyocto KEY=VALUE ...]``.
Picks come from :func:`pipeline.association.synthetic.generate` (Tottori 1-D model, one event
per 10 s, 10% false picks, seed 11); each associator runs ``--repeat`` times on the same picks
and the line reports min / median wall time, picks/s at both, the process CPU time (all
threads) and the event/pick scores against the truth; the PyOcto / time-based ratio is given
by wall time and by CPU time (PyOcto runs on all cores, the time-based associator on one).
``--pyocto KEY=VALUE`` overrides a :class:`~pipeline.association.params.PyOctoConfig` field
(e.g. ``time_slicing_s=600``); the settings used are printed first. PyOcto runs above
``--pyocto-max`` picks are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import pandas as pd

from pipeline.association import AssociationConfig, associate_picks
from pipeline.association.stage import read_stations
from pipeline.association.synthetic import generate, score
from pipeline.cli import positive
from pipeline.velocity import load_velocity_model

PICKS_PER_EVENT = 29.8  # measured mean of the default scenario (incl. 10% false picks), seed 11


def _overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` strings to a dict, values parsed as JSON where possible."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _run(scenario, stations, model, cfg, table_dir, repeat: int) -> dict:
    """Wall and CPU seconds of ``repeat`` runs, and the scores of the last one."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        events, assignments, _ = associate_picks(scenario.picks, stations, model, cfg, table_dir)
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    return {
        "walls": walls,
        "cpus": cpus,
        "events": len(events),
        **score(scenario, events, assignments),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=positive(float), default=[1e4, 1e5, 1e6])
    parser.add_argument("--associators", nargs="+", default=["time", "pyocto"])
    parser.add_argument("--repeat", type=positive(int), default=3)
    parser.add_argument("--pyocto-max", type=positive(float), default=1e6)
    parser.add_argument("--pyocto", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    model = load_velocity_model("tottori")
    cfgs = {
        name: AssociationConfig(
            associator=name, pyocto=_overrides(args.pyocto) if name == "pyocto" else {}
        )
        for name in args.associators
    }
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs, repeat {args.repeat}")
    for name, cfg in cfgs.items():
        section = cfg.pyocto if name == "pyocto" else cfg.time
        print(f"{name} settings: {section.model_dump(mode='json')}")
    with tempfile.TemporaryDirectory() as tmp:
        best: dict[str, tuple[float, float]] = {}
        for size in args.sizes:
            scenario = generate(model, int(size / PICKS_PER_EVENT), seed=11)
            csv = f"{tmp}/stations.csv"
            scenario.stations.to_csv(csv, index=False)
            stations = read_stations(csv)
            n = len(scenario.picks)
            for name, cfg in cfgs.items():
                if name == "pyocto" and n > args.pyocto_max:
                    print(f"{name:6s} picks={n:>8d} skipped (> --pyocto-max {args.pyocto_max:.0e})")
                    continue
                r = _run(scenario, stations, model, cfg, tmp, args.repeat)
                low, mid = min(r["walls"]), statistics.median(r["walls"])
                best[name] = (low, min(r["cpus"]))
                print(
                    f"{name:6s} picks={n:>8d} events={r['events']:>6d} wall min/median="
                    f"{low:7.2f}/{mid:7.2f}s picks/s={n / low:8.0f}/{n / mid:8.0f} "
                    f"cpu min={min(r['cpus']):7.2f}s  event P/R={r['event_precision']:.3f}/"
                    f"{r['event_recall']:.3f}  pick P/R={r['pick_precision']:.3f}/"
                    f"{r['pick_recall']:.3f}",
                    flush=True,
                )
            if {"time", "pyocto"} <= best.keys():
                (wall_t, cpu_t), (wall_o, cpu_o) = best["time"], best["pyocto"]
                print(
                    f"pyocto / time at picks={n}: {wall_t / wall_o:.1f}x (min wall), "
                    f"{cpu_t / cpu_o:.1f}x (min CPU)"
                )
            best.clear()
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    pd.set_option("display.width", 120)
    from pipeline.cli import script_main

    script_main(main)
