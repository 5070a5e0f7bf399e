"""Waveform stage against a REAL fdsnws-dataselect server on 127.0.0.1.

The server is ``portable-fdsnws-dataselect`` with an ``mseedindex`` SQLite index (see
``tests/fdsn_server.py``). It serves miniSEED generated here (three synthetic stations, 20 Hz,
22:00-02:00 UTC across a day boundary) and the real O2.WILZ record from ``../shared``.
Station metadata: the client is given a local StationXML file written by the test (the server
has no station service). Downloads go through eqcat's normal FDSN path, some through a small
proxy on 127.0.0.1 that counts requests, delays them, or answers 503.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fdsn_server import DataselectServer, FlakyProxy
from obspy import Inventory, Stream, Trace, UTCDateTime, read
from obspy.clients.filesystem.sds import Client as SDSClient
from obspy.core.inventory import Channel, Network, Station

from pipeline.errors import EqcatInputError
from pipeline.rundir import RunDir, sha256_file
from pipeline.waveforms import download_waveforms, waveform_root
from pipeline.waveforms.download import units_to_retry
from pipeline.waveforms.fdsn import CutBody, NoData, parse_body
from pipeline.waveforms.params import (
    FDSNSource,
    FDSNStationQuery,
    SDSSource,
    StationXMLStations,
    WaveformConfig,
)
from pipeline.waveforms.sds import archive_files

START = datetime(2024, 2, 2, 22, 0, tzinfo=UTC)
END = datetime(2024, 2, 3, 8, 0, tzinfo=UTC)
RATE = 20.0
DAY1, DAY2 = "2024.033", "2024.034"
UNITS = 8  # 4 stations x 2 days
# Station coordinates used in the test StationXML (WILZ's are approximate, test-only).
COORDS = {
    ("XX", "AAA"): (35.10, -97.50, 300.0),
    ("XX", "BBB"): (35.20, -97.40, 310.0),
    ("XX", "CCC"): (35.30, -97.30, 320.0),
    ("O2", "WILZ"): (35.65, -97.02, 330.0),
}


def _segment(network, station, channel, start, seconds, seed) -> Trace:
    rng = np.random.default_rng(seed)
    data = rng.integers(-500, 500, int(seconds * RATE)).astype(np.int32)
    header = {
        "network": network,
        "station": station,
        "location": "",
        "channel": channel,
        "sampling_rate": RATE,
        "starttime": UTCDateTime(start),
    }
    return Trace(data, header=header)


def _write_synthetic(folder: Path) -> list[Path]:
    """AAA: 22:00-02:00; BBB: same with a 10-min gap at 23:30; CCC: 22:00-24:00 only."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = UTCDateTime(START)
    paths = []
    for k, comp in enumerate("ZNE"):
        segments = {
            "AAA": [(t0, 4 * 3600)],
            "BBB": [(t0, 5400), (t0 + 6000, 4 * 3600 - 6000)],
            "CCC": [(t0, 2 * 3600)],
        }
        for s, (station, parts) in enumerate(segments.items()):
            stream = Stream(
                [
                    _segment("XX", station, f"HH{comp}", start, secs, seed=100 * s + 10 * k + i)
                    for i, (start, secs) in enumerate(parts)
                ]
            )
            path = folder / f"XX.{station}..HH{comp}.mseed"
            stream.write(str(path), format="MSEED", reclen=512, encoding="STEIM2")
            paths.append(path)
    return paths


def _inventory() -> Inventory:
    networks = {}
    for (net, sta), (lat, lon, elev) in COORDS.items():
        prefix, rate = ("EH", 100.0) if sta == "WILZ" else ("HH", RATE)
        station = Station(sta, lat, lon, elev, start_date=UTCDateTime(2020, 1, 1))
        for comp in "ZNE":
            station.channels.append(
                Channel(f"{prefix}{comp}", "", lat, lon, elev, 0.0, sample_rate=rate)
            )
        networks.setdefault(net, Network(net)).stations.append(station)
    return Inventory(networks=list(networks.values()), source="eqcat test")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Generated miniSEED files and the test StationXML (made once per module)."""
    folder = tmp_path_factory.mktemp("synthetic")
    stationxml = folder / "stations.xml"
    _inventory().write(str(stationxml), format="STATIONXML")
    return _write_synthetic(folder / "data"), stationxml


@pytest.fixture
def served(synthetic, shared, tmp_path):
    """A running server with the synthetic files and the real O2.WILZ record."""
    files, stationxml = synthetic
    wilz = sorted(shared("data", "continuous", "O2.WILZ").glob("*.mseed"))
    assert len(wilz) == 3
    with DataselectServer(files + wilz, tmp_path / "server") as server:
        yield {"url": server.base_url, "stationxml": stationxml, "wilz": wilz}


def _configs(served, base_url, **source):
    stations = StationXMLStations(path=served["stationxml"])
    source = {"backoff_s": 0.01, "timeout_s": 20.0, **source}
    waveforms = WaveformConfig(source=FDSNSource(base_url=base_url, **source), max_workers=2)
    return stations, waveforms


def _archive_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in archive_files(root)}


def _ledger(run_root: Path) -> dict[str, dict]:
    folder = run_root / "waveforms" / "units"
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def test_clean_download_rerun_and_no_data(served, tmp_path):
    with FlakyProxy(served["url"]) as proxy:
        stations, waveforms = _configs(served, proxy.base_url)
        run = RunDir(tmp_path / "run")
        summary = download_waveforms(run, stations, waveforms, START, END, progress=False)

        assert summary["units_total"] == UNITS
        assert summary["units_downloaded"] == 6
        assert summary["units_nodata"] == 2  # CCC on day 2, WILZ on day 1
        assert summary["units_failed"] == 0 and summary["corrupt_files"] == []
        ledger = _ledger(run.root)
        assert ledger[f"XX.CCC..HH.{DAY2}"]["status"] == "nodata"
        assert ledger[f"O2.WILZ..EH.{DAY1}"]["status"] == "nodata"

        root = waveform_root(run, waveforms)
        assert root == run.root / "waveforms"
        day_file = root / "2024/XX/AAA/HHZ.D" / f"XX.AAA..HHZ.D.{DAY1}"
        assert sum(tr.stats.npts for tr in read(str(day_file))) == 2 * 3600 * RATE
        assert ledger[f"XX.AAA..HH.{DAY1}"]["samples"] == 3 * 2 * 3600 * RATE
        for entry in ledger[f"XX.AAA..HH.{DAY1}"]["files"]:
            assert sha256_file(root / entry["path"]) == entry["sha256"]

        # ObsPy's SDS client reads the archive across the day boundary.
        sds = SDSClient(str(root))
        t0 = UTCDateTime(START)
        across = sds.get_waveforms("XX", "AAA", "", "HHZ", t0, t0 + 4 * 3600 - 1 / RATE)
        assert len(across.merge()) == 1 and across[0].stats.npts == 4 * 3600 * RATE

        # The real WILZ record arrives sample for sample.
        for original in served["wilz"]:
            want = read(str(original)).merge()[0]
            cha = want.stats.channel
            got = read(str(root / f"2024/O2/WILZ/{cha}.D/O2.WILZ..{cha}.D.{DAY2}")).merge()[0]
            assert got.stats.starttime == want.stats.starttime
            np.testing.assert_array_equal(got.data, want.data)

        table = pd.read_csv(root / "stations.csv", dtype={"location": str}, keep_default_na=False)
        assert list(table["station"]) == ["WILZ", "AAA", "BBB", "CCC"]
        wilz = table[table["station"] == "WILZ"].iloc[0]
        assert (wilz["channel_prefix"], wilz["sampling_rate"]) == ("EH", 100.0)
        assert (wilz["latitude"], wilz["longitude"]) == COORDS[("O2", "WILZ")][:2]
        assert (root / "inventory.xml").is_file()

        quality = pd.read_parquet(root / "quality.parquet")
        assert str(quality["day"].dtype) == "datetime64[ns, UTC]"
        bbb = quality[(quality["station"] == "BBB") & (quality["channel"] == "HHZ")]
        bbb = bbb.sort_values("day")
        assert list(bbb["n_gaps"]) == [1, 0]
        assert bbb["gap_s"].iloc[0] == pytest.approx(600.0, abs=0.1)
        assert (quality.loc[quality["status"] == "ok", "flat"] == False).all()  # noqa: E712
        missing = quality[quality["status"] == "missing"]
        assert set(zip(missing["station"], missing["day"].dt.strftime("%j"), strict=True)) == {
            ("CCC", "034"),
            ("WILZ", "033"),
        }
        stage = run.read_manifest()["waveforms"]
        assert stage["counts"]["units_downloaded"] == 6
        assert stage["inputs"]["stations"] == f"sha256:{sha256_file(served['stationxml'])}"

        # A rerun sends no request and changes nothing.
        before = _archive_hashes(root)
        n_requests = len(proxy.requests)
        again = download_waveforms(run, stations, waveforms, START, END, progress=False)
        assert len(proxy.requests) == n_requests
        assert again["units_skipped"] == UNITS and again["units_downloaded"] == 0
        assert _archive_hashes(root) == before


def test_server_error_is_retried_then_succeeds(served, tmp_path):
    with FlakyProxy(served["url"]) as proxy:
        proxy.fail_first["AAA"] = 2
        stations, waveforms = _configs(served, proxy.base_url, retries=3)
        run = RunDir(tmp_path / "run")
        summary = download_waveforms(run, stations, waveforms, START, END, progress=False)
    assert summary["units_failed"] == 0
    assert [s for s, status in proxy.requests if status == 503] == ["AAA", "AAA"]
    ledger = _ledger(run.root)
    attempts = [ledger[f"XX.AAA..HH.{day}"]["attempts"] for day in (DAY1, DAY2)]
    assert sorted(attempts) == [1, 3] and all(
        ledger[f"XX.AAA..HH.{day}"]["status"] == "ok" for day in (DAY1, DAY2)
    )


def test_persistent_server_error_fails_the_unit_not_the_build(served, tmp_path):
    with FlakyProxy(served["url"]) as proxy:
        proxy.fail_first["BBB"] = 100
        stations, waveforms = _configs(served, proxy.base_url, retries=1)
        run = RunDir(tmp_path / "run")
        summary = download_waveforms(run, stations, waveforms, START, END, progress=False)
        assert summary["units_failed"] == 2
        assert all("gave up after 2 attempts" in f for f in summary["failures"])
        assert summary["units_downloaded"] == 4
        assert f"XX.BBB..HH.{DAY1}" not in _ledger(run.root)  # failed units are not recorded
        proxy.fail_first["BBB"] = 0
        resumed = download_waveforms(run, stations, waveforms, START, END, progress=False)
    assert resumed["units_downloaded"] == 2 and resumed["units_skipped"] == 6


_CHILD = """
import sys
from datetime import datetime
from pydantic import TypeAdapter
from pipeline.rundir import RunDir
from pipeline.waveforms import StationSourceConfig, WaveformConfig, download_waveforms
stations = TypeAdapter(StationSourceConfig).validate_json(sys.argv[1])
waveforms = WaveformConfig.model_validate_json(sys.argv[2])
download_waveforms(RunDir(sys.argv[3]), stations, waveforms,
                   datetime.fromisoformat(sys.argv[4]), datetime.fromisoformat(sys.argv[5]),
                   progress=False)
"""


def test_killed_download_resumes_to_identical_archive(served, tmp_path):
    stations, waveforms = _configs(served, served["url"])
    reference = RunDir(tmp_path / "reference")
    download_waveforms(reference, stations, waveforms, START, END, progress=False)
    want = _archive_hashes(reference.root / "waveforms")

    run = RunDir(tmp_path / "run")
    with FlakyProxy(served["url"], delay_s=0.4) as slow:
        stations, waveforms = _configs(served, slow.base_url)
        waveforms = waveforms.model_copy(update={"max_workers": 1})
        args = [
            stations.model_dump_json(),
            waveforms.model_dump_json(),
            str(run.root),
            START.isoformat(),
            END.isoformat(),
        ]
        child = subprocess.Popen([sys.executable, "-c", _CHILD, *args], cwd=Path.cwd())
        units = run.root / "waveforms" / "units"
        deadline = time.monotonic() + 60
        while len(list(units.glob("*.json"))) < 2 and child.poll() is None:
            assert time.monotonic() < deadline, "child made no progress"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        finished = len(list(units.glob("*.json")))
        assert 2 <= finished < UNITS, "the kill must land mid-way"
        assert "waveforms" not in run.read_manifest()

        slow.delay_s = 0.0  # the same data centre (base URL), now quick
        resumed = download_waveforms(run, stations, waveforms, START, END, progress=False)
    assert resumed["units_skipped"] == finished
    assert resumed["units_downloaded"] + resumed["units_nodata"] == UNITS - finished
    assert _archive_hashes(run.root / "waveforms") == want
    assert {k: v["status"] for k, v in _ledger(run.root).items()} == {
        k: v["status"] for k, v in _ledger(reference.root).items()
    }


def test_corrupt_file_is_reported_and_repaired(served, tmp_path):
    stations, waveforms = _configs(served, served["url"])
    run = RunDir(tmp_path / "run")
    download_waveforms(run, stations, waveforms, START, END, progress=False)
    root = run.root / "waveforms"
    victim = root / "2024/XX/AAA/HHN.D" / f"XX.AAA..HHN.D.{DAY1}"
    good = sha256_file(victim)

    # The same archive read in place as a local SDS source: the corrupt file is reported.
    victim.write_bytes(b"this is not miniSEED" * 100)
    local = WaveformConfig(source=SDSSource(path=root), max_workers=2)
    summary = download_waveforms(RunDir(tmp_path / "local"), stations, local, START, END)
    assert summary["corrupt_files"] == [str(victim)]
    quality = pd.read_parquet(tmp_path / "local" / "waveforms" / "quality.parquet")
    row = quality[quality["path"] == str(victim)].iloc[0]
    assert row["status"] == "corrupt" and row["error"]
    assert (quality["status"] == "ok").sum() == 17  # every other channel-day still assessed
    assert not (tmp_path / "local" / "waveforms" / "2024").exists()  # read in place, no copy

    # In the downloading run, the hash mismatch sends the unit back for download.
    again = download_waveforms(run, stations, waveforms, START, END, progress=False)
    assert again["units_downloaded"] == 1 and again["corrupt_files"] == []
    assert sha256_file(victim) == good


def test_http_404_is_no_data_not_retried_and_rechecked_on_request(served, tmp_path):
    with FlakyProxy(served["url"]) as proxy:
        proxy.always["CCC"] = 404
        stations, waveforms = _configs(served, proxy.base_url, retries=3)
        summary = download_waveforms(
            RunDir(tmp_path / "run"), stations, waveforms, START, END, progress=False
        )
        assert summary["units_nodata"] == 3 and summary["units_failed"] == 0
        assert [s for s, _ in proxy.requests].count("CCC") == 2  # one request per day, no retry

        # Data that arrives later is fetched only when asked to recheck 'no data' units.
        del proxy.always["CCC"]
        run = RunDir(tmp_path / "run")
        again = download_waveforms(run, stations, waveforms, START, END, progress=False)
        assert again["units_downloaded"] == 0 and again["units_skipped"] == UNITS
        _, recheck = _configs(served, proxy.base_url, recheck_nodata=True)
        again = download_waveforms(run, stations, recheck, START, END, progress=False)
    assert again["units_downloaded"] == 1 and again["units_nodata"] == 2


def test_incomplete_recent_station_days_are_asked_again_by_any_rebuild(served, tmp_path):
    """Late data: station-days got incomplete (or with none) soon after their end are listed
    for the next build, which asks them again even when its span is unchanged; complete
    ones are not. (The test's 2024 data counts as recent with a window of 10^6 hours.)"""
    with FlakyProxy(served["url"]) as proxy:
        proxy.always["CCC"] = 404
        stations, waveforms = _configs(served, proxy.base_url, recheck_recent_hours=1e6)
        run = RunDir(tmp_path / "run")
        download_waveforms(run, stations, waveforms, START, END, progress=False)
        ledger = _ledger(run.root)
        incomplete = {
            unit
            for unit, record in ledger.items()
            if record["status"] == "nodata" or record["coverage"] < 0.999
        }
        assert {f"XX.CCC..HH.{DAY1}", f"XX.CCC..HH.{DAY2}", f"XX.BBB..HH.{DAY1}"} <= incomplete
        assert len(incomplete) < UNITS
        assert sorted(units_to_retry(run)) == sorted(incomplete)

        del proxy.always["CCC"]  # CCC's data arrives late
        again = download_waveforms(run, stations, waveforms, START, END, progress=False)
    assert again["units_skipped"] == UNITS - len(incomplete)
    assert _ledger(run.root)[f"XX.CCC..HH.{DAY1}"]["status"] == "ok"
    _, settled = _configs(served, served["url"], recheck_recent_hours=0)
    download_waveforms(run, stations, settled, START, END, progress=False)
    assert units_to_retry(run) == []


def test_chunked_requests_give_the_same_archive(served, tmp_path):
    stations, daily = _configs(served, served["url"])
    _, hourly = _configs(served, served["url"], chunk_hours=1.0)
    whole, chunked = RunDir(tmp_path / "daily"), RunDir(tmp_path / "hourly")
    download_waveforms(whole, stations, daily, START, END, progress=False)
    download_waveforms(chunked, stations, hourly, START, END, progress=False)
    want = _archive_hashes(whole.root / "waveforms")
    assert len(want) == 18
    assert _archive_hashes(chunked.root / "waveforms") == want


def test_station_query_through_fdsnws_station(served, tmp_path):
    """Stations from an FDSN station query (the test proxy serves the StationXML file)."""
    with FlakyProxy(served["url"], stationxml=served["stationxml"]) as proxy:
        stations = FDSNStationQuery(
            base_url=proxy.base_url,
            network="XX,O2",
            latitude=35.3,
            longitude=-97.3,
            max_radius_deg=1.0,
        )
        _, waveforms = _configs(served, proxy.base_url)
        run = RunDir(tmp_path / "run")
        summary = download_waveforms(run, stations, waveforms, START, END, progress=False)
    (query,) = proxy.station_queries
    assert query["level"] == ["response"] and query["maxradius"] == ["1.0"]
    assert query["network"] == ["XX,O2"] and query["starttime"][0].startswith("2024-02-02T22")
    assert summary["stations"] == 4 and summary["units_downloaded"] == 6
    assert (run.root / "waveforms" / "inventory.xml").is_file()


def _body(served, station: str, start: datetime, end: datetime) -> bytes:
    """The server's miniSEED answer for ``XX.<station>..HH?`` over ``[start, end)``."""
    query = (
        f"network=XX&station={station}&location=--&channel=HH?"
        f"&starttime={start:%Y-%m-%dT%H:%M:%S}&endtime={end:%Y-%m-%dT%H:%M:%S}"
    )
    url = f"{served['url']}/fdsnws/dataselect/1/query?{query}"
    with urllib.request.urlopen(url, timeout=20) as answer:
        return answer.read()


def test_parse_body_refuses_a_cut_transfer_and_takes_empty_as_no_data():
    stream = Stream([_segment("XX", "AAA", "HHZ", START, 600, seed=1)])
    buffer = io.BytesIO()
    stream.write(buffer, format="MSEED", reclen=512)
    body = buffer.getvalue()
    assert parse_body(body)[0].stats.npts == 600 * RATE
    with pytest.raises(CutBody, match="bytes of whole miniSEED records"):
        parse_body(body[:-100])  # ObsPy alone reads it, dropping the cut record
    with pytest.raises(NoData):
        parse_body(b"")


def test_cut_transfer_is_retried_then_failed_not_recorded(served, tmp_path):
    with FlakyProxy(served["url"]) as proxy:
        proxy.rewrite["AAA"] = lambda body: body[: len(body) // 2 + 100]
        stations, waveforms = _configs(served, proxy.base_url, retries=1)
        run = RunDir(tmp_path / "run")
        summary = download_waveforms(run, stations, waveforms, START, END, progress=False)
    assert summary["units_failed"] == 2
    assert all(
        "gave up after 2 attempts" in f and "(a cut transfer?)" in f for f in summary["failures"]
    )
    assert not list((run.root / "waveforms").glob("2024/XX/AAA/*/*"))  # no half day kept
    details = run.read_manifest()["waveforms"]["details"]
    assert details["retry_units"] == [f"XX.AAA..HH.{DAY1}", f"XX.AAA..HH.{DAY2}"]
    assert units_to_retry(run) == details["retry_units"]


def test_another_stations_data_is_never_written(served, tmp_path):
    """A service answering AAA's request with BBB's records must not overwrite BBB's day."""
    other = _body(served, "BBB", START, END)
    with FlakyProxy(served["url"]) as proxy:
        proxy.rewrite["AAA"] = lambda body: other
        stations, waveforms = _configs(served, proxy.base_url)
        run = RunDir(tmp_path / "run")
        summary = download_waveforms(run, stations, waveforms, START, END, progress=False)
    assert summary["units_failed"] == 2 and summary["units_downloaded"] == 4
    assert (
        "the server sent only other data: XX.BBB..HHE, XX.BBB..HHN, XX.BBB..HHZ"
        in (summary["failures"][0])
    )
    ledger = _ledger(run.root)
    for day in (DAY1, DAY2):  # BBB's files are its own download's, untouched
        for entry in ledger[f"XX.BBB..HH.{day}"]["files"]:
            assert sha256_file(run.root / "waveforms" / entry["path"]) == entry["sha256"]


def test_other_data_beside_the_stations_own_is_left_out_and_noted(served, tmp_path):
    extra = _body(served, "BBB", START, END)
    with FlakyProxy(served["url"]) as proxy:
        proxy.rewrite["AAA"] = lambda body: body + extra
        stations, waveforms = _configs(served, proxy.base_url)
        run = RunDir(tmp_path / "run")
        summary = download_waveforms(run, stations, waveforms, START, END, progress=False)
    assert summary["units_failed"] == 0 and summary["units_downloaded"] == 6
    unit = f"XX.AAA..HH.{DAY1}"
    assert _ledger(run.root)[unit]["foreign"] == ["XX.BBB..HHE", "XX.BBB..HHN", "XX.BBB..HHZ"]
    notes = run.read_manifest()["waveforms"]["details"]["station_notes"]
    assert "the server also sent XX.BBB..HHE" in notes[unit]


def test_refused_request_names_the_status_and_is_not_asked_again(served, tmp_path):
    with FlakyProxy(served["url"]) as proxy:
        proxy.always["AAA"] = 401
        proxy.always["BBB"] = 413
        stations, waveforms = _configs(served, proxy.base_url, retries=3)
        run = RunDir(tmp_path / "run")
        summary = download_waveforms(run, stations, waveforms, START, END, progress=False)
        assert [s for s, _ in proxy.requests].count("AAA") == 2  # one per day, no retry
    failures = "\n".join(summary["failures"])
    assert "HTTP 401: restricted data; set restricted: true and FDSN_USER" in failures
    assert "HTTP 413: lower waveforms.source.chunk_hours" in failures
    assert units_to_retry(run) == []  # only a changed config or account heals a 4xx


def test_station_level_metadata_is_named_as_such(tmp_path):
    """A StationXML saved at level=station lists no channels: say that, not 'none matches'."""
    inventory = _inventory()
    for network in inventory:
        for station in network:
            station.channels = []
    path = tmp_path / "stations.xml"
    inventory.write(str(path), format="STATIONXML")
    waveforms = WaveformConfig(source=FDSNSource(base_url="http://127.0.0.1:9999"))
    with pytest.raises(EqcatInputError, match=r"4 station\(s\) but no channels .*level=station"):
        download_waveforms(
            RunDir(tmp_path / "run"), StationXMLStations(path=path), waveforms, START, END
        )


def test_another_data_centre_is_asked_again(served, tmp_path):
    """Records name their base URL: 'no data' from one service is not taken for another's."""
    with FlakyProxy(served["url"]) as first:
        first.always["CCC"] = 204
        stations, waveforms = _configs(served, first.base_url)
        run = RunDir(tmp_path / "run")
        end = START + timedelta(hours=2)  # day 1 only: 4 station-days
        download_waveforms(run, stations, waveforms, START, end, progress=False)
    assert _ledger(run.root)[f"XX.CCC..HH.{DAY1}"]["status"] == "nodata"
    with FlakyProxy(served["url"]) as other:
        stations, waveforms = _configs(served, other.base_url)
        again = download_waveforms(run, stations, waveforms, START, end, progress=False)
    assert again["units_skipped"] == 0 and again["units_downloaded"] == 3
    assert _ledger(run.root)[f"XX.CCC..HH.{DAY1}"]["status"] == "ok"


def test_a_short_name_whose_server_does_not_answer_is_unreachable_not_refused(monkeypatch):
    """ObsPy's service discovery says "No FDSN services could be discovered" both when the
    server answers without FDSN services and when nothing answers (offline): the first is
    refused at once, the second is retried and ends as "unreachable" (it may heal)."""
    import http.server
    import socket
    import threading

    from obspy.clients.fdsn.header import URL_MAPPINGS, FDSNNoServiceException

    from pipeline.errors import DataSourceError
    from pipeline.waveforms.fdsn import ServiceUnreachable, fdsn_client
    from pipeline.waveforms.params import FDSNStationQuery
    from pipeline.waveforms.station_sources import query_inventory

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setitem(URL_MAPPINGS, "NOWHERE", f"http://127.0.0.1:{closed}")
    cfg = FDSNStationQuery(base_url="NOWHERE", retries=1, backoff_s=0.01, timeout_s=5)
    with pytest.raises(ServiceUnreachable, match=r"NOWHERE \(http://127.0.0.1:\d+\) did not"):
        fdsn_client(cfg)
    with pytest.raises(DataSourceError, match="unreachable after 2 attempt") as err:
        query_inventory(cfg, datetime(2024, 1, 1), datetime(2024, 1, 2))
    assert "refused the request" not in str(err.value)

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setitem(URL_MAPPINGS, "NOTFDSN", f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(FDSNNoServiceException):
            fdsn_client(cfg.model_copy(update={"base_url": "NOTFDSN"}))
        with pytest.raises(DataSourceError, match="NOTFDSN refused the request"):
            query_inventory(
                cfg.model_copy(update={"base_url": "NOTFDSN"}),
                datetime(2024, 1, 1),
                datetime(2024, 1, 2),
            )
    finally:
        server.shutdown()
