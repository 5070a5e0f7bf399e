"""Waveform download throughput: station-days per second against a local FDSN server.

Run: ``.venv/bin/python benchmarks/download_throughput.py [--stations 12] [--days 2]
[--rate 20] [--workers 1 4 8] [--latency 0 0.2] [--repeats 3]``. Generates ``--stations`` x
``--days`` full station-days of 3-component miniSEED (``--rate`` Hz, STEIM2), serves them with
portable-fdsnws-dataselect (index by mseedindex) on 127.0.0.1, and downloads them with
:func:`pipeline.waveforms.download_waveforms` (quality table included; ``WaveformConfig``
defaults but an FDSN source with a 60 s timeout and ``max_workers`` = the worker count) into
a fresh run directory per run. ``--latency`` > 0 puts the test proxy of
``tests/fdsn_server.py`` in front of the server, adding that many seconds per request, like a
remote data centre.

Each latency / worker count is downloaded ``--repeats`` times, one run after the other; the
min / median wall times (s) are printed, and the rates (station-days/s, MB/s written) at the
median wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
from obspy import Inventory, Stream, Trace, UTCDateTime
from obspy.core.inventory import Channel, Network, Station
from timing import min_median, timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fdsn_server import DataselectServer, FlakyProxy  # noqa: E402

from pipeline.cli import positive
from pipeline.rundir import RunDir  # noqa: E402
from pipeline.waveforms import download_waveforms  # noqa: E402
from pipeline.waveforms.params import FDSNSource, StationXMLStations, WaveformConfig  # noqa: E402

START = datetime(2024, 2, 3, tzinfo=UTC)


def make_data(folder: Path, n_stations: int, n_days: int, rate: float) -> tuple[list, Path]:
    """One miniSEED file per channel (all days) and a StationXML for the stations."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    network = Network("BM")
    files = []
    for i in range(n_stations):
        code = f"S{i:03d}"
        station = Station(code, 35 + 0.01 * i, 133.0, 100.0, start_date=UTCDateTime(2020, 1, 1))
        for comp in "ZNE":
            npts = int(n_days * 86400 * rate)
            data = np.cumsum(rng.integers(-20, 21, npts)).astype(np.int32)
            header = {
                "network": "BM",
                "station": code,
                "channel": f"HH{comp}",
                "sampling_rate": rate,
                "starttime": UTCDateTime(START),
            }
            path = folder / f"BM.{code}..HH{comp}.mseed"
            Stream([Trace(data, header=header)]).write(
                str(path), format="MSEED", encoding="STEIM2", reclen=4096
            )
            files.append(path)
            station.channels.append(
                Channel(f"HH{comp}", "", 35.0, 133.0, 100.0, 0.0, sample_rate=rate)
            )
        network.stations.append(station)
    stationxml = folder / "stations.xml"
    Inventory(networks=[network], source="benchmark").write(str(stationxml), "STATIONXML")
    return files, stationxml


def run_once(base_url: str, stationxml: Path, workers: int, days: int, folder: Path) -> dict:
    """Download everything once into a new run directory; the download summary."""
    cfg = WaveformConfig(source=FDSNSource(base_url=base_url, timeout_s=60), max_workers=workers)
    return download_waveforms(
        RunDir(folder / f"run-w{workers}-{time.monotonic_ns()}"),
        StationXMLStations(path=stationxml),
        cfg,
        START,
        START + timedelta(days=days),
        progress=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=positive(int), default=12)
    parser.add_argument("--days", type=positive(int), default=2)
    parser.add_argument("--rate", type=positive(float), default=20.0, help="Hz")
    parser.add_argument("--workers", nargs="+", type=positive(int), default=[1, 4, 8])
    parser.add_argument(
        "--latency",
        nargs="+",
        type=float,
        default=[0.0],
        help="seconds added per request by a local proxy",
    )
    parser.add_argument("--repeats", type=positive(int), default=3, help="timed runs per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        files, stationxml = make_data(folder / "data", args.stations, args.days, args.rate)
        print(
            f"data: {args.stations} stations x {args.days} days x 3 channels at {args.rate:g} Hz "
            f"({sum(f.stat().st_size for f in files) / 1e6:.1f} MB) in "
            f"{time.perf_counter() - t:.1f} s; {args.repeats} runs per case"
        )
        with DataselectServer(files, folder / "server") as server:
            for latency in args.latency:
                proxy = FlakyProxy(server.base_url, delay_s=latency) if latency > 0 else None
                url = proxy.__enter__().base_url if proxy else server.base_url
                try:
                    for workers in args.workers:
                        download = partial(run_once, url, stationxml, workers, args.days, folder)
                        walls, _, s = timed(download, args.repeats)
                        units, median = s["units_downloaded"], statistics.median(walls)
                        print(
                            f"latency={latency:.2f}s workers={workers:2d} "
                            f"station-days={units:3d} wall min/median={min_median(walls, '6.2f')}s "
                            f"rate at median={units / median:6.2f} station-days/s "
                            f"({s['bytes_downloaded'] / 1e6 / median:.1f} MB/s written)"
                        )
                finally:
                    if proxy:
                        proxy.__exit__(None, None, None)


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
