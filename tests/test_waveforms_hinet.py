"""Hi-net source without the network: HinetPy is MOCKED at the boundary.

What is mocked, and why: the Hi-net service needs an account and the internet, and the
win32 -> SAC conversion needs the win32tools C programs, which are not on the package index.
So ``pipeline.waveforms.hinet._hinetpy_client`` is replaced by :class:`MockHinetClient` (writes
a placeholder win32 file and a real-format Hi-net channel table) and
``pipeline.waveforms.hinet._extract_sac`` by :func:`mock_extract_sac` (writes SAC files of
generated traces, in JST, named like win2sac/HinetPy name them). Two stub executables named
``catwin32`` / ``win2sac_32`` are put on PATH so the tools check passes; they are never run.
Everything after the boundary — credentials handling, JST->UTC, SEED renaming, SDS writing,
inventory, stations table, quality, manifest — is the product code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from obspy import Trace, UTCDateTime, read, read_inventory
from pydantic import ValidationError

from pipeline.errors import is_retryable
from pipeline.rundir import RunDir
from pipeline.waveforms import download_waveforms
from pipeline.waveforms import hinet as hinet_mod
from pipeline.waveforms.download import units_to_retry
from pipeline.waveforms.hinet import (
    HinetCredentialsError,
    Win32ToolsMissing,
    hinet_credentials,
    read_channel_table,
)
from pipeline.waveforms.params import HinetSource, WaveformConfig

PASSWORD = "s3cret-Pw-42"
# Two real Hi-net stations as HinetPy's documentation records them (seisman/HinetPy, commit
# 7198856c): N.WNNH from docs/tutorial/get-started.md (get_station_list output), N.AAKH from
# the channel-table example of docs/appendix/channeltable.md.
CTABLE = {
    "N.WNNH": (45.4883, 141.885, -159.06),
    "N.AAKH": (36.3726, 137.9203, 483.0),
}
# A span across midnight UTC: two Hi-net requests, one per UTC day.
START = datetime(2000, 10, 5, 23, 55, tzinfo=UTC)
END = datetime(2000, 10, 6, 0, 5, tzinfo=UTC)
RATE = 100.0


class MockHinetClient:
    """MOCK of ``HinetPy.Client``: records its credentials and requests, writes placeholders."""

    instances: list[MockHinetClient] = []

    def __init__(self, user: str, password: str):
        self.user, self.password = user, password
        self.requests: list[tuple[str, datetime, int]] = []
        self.selected: list[tuple[str, list[str]]] = []
        MockHinetClient.instances.append(self)

    def select_stations(self, code, stations):
        self.selected.append((code, list(stations)))

    def get_continuous_waveform(self, code, starttime, span, max_span=None, outdir="."):
        self.requests.append((code, starttime, span))
        out = Path(outdir)
        data = out / f"{code}_{starttime:%Y%m%d%H%M}_{span}.cnt"
        data.write_text(json.dumps({"jst_start": starttime.isoformat(), "minutes": span}))
        ctable = out / f"{code}_{starttime:%Y%m%d}.ch"
        lines = ["# mock Hi-net channel table"]
        for i, (station, (lat, lon, elev)) in enumerate(CTABLE.items()):
            for j, comp in enumerate("UNE"):
                lines.append(
                    f"{0x3000 + 3 * i + j:04X} 1 0 {station} {comp} 6 27 1.785000E+02 m/s "
                    f"1.00 0.700 54 1.023000E-07 {lat:.4f} {lon:.4f} {elev:g} 0.00 0.00 X"
                )
        ctable.write_text("\n".join(lines) + "\n")
        return str(data), str(ctable)


def mock_extract_sac(data: str, ctable: str, outdir: Path) -> list[Path]:
    """MOCK of win2sac: generated 100 Hz traces starting at the request's JST time."""
    request = json.loads(Path(data).read_text())
    start = UTCDateTime(request["jst_start"])  # JST wall-clock, as win2sac writes it
    npts = int(request["minutes"] * 60 * RATE)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, station in enumerate(CTABLE):
        for j, comp in enumerate("UNE"):
            rng = np.random.default_rng(10 * k + j)
            trace = Trace(
                rng.normal(0, 50, npts).astype(np.float32),
                header={
                    "station": station[:8],
                    "channel": comp,
                    "sampling_rate": RATE,
                    "starttime": start,
                },
            )
            path = outdir / f"{station}.{comp}.SAC"
            trace.write(str(path), format="SAC")
            paths.append(path)
    return paths


@pytest.fixture
def win32tools_stubs(tmp_path, monkeypatch):
    """Stub executables named like the win32tools on PATH (never executed: extract is mocked)."""
    folder = tmp_path / "stub-bin"
    folder.mkdir()
    for name in ("catwin32", "win2sac_32"):
        stub = folder / name
        stub.write_text("#!/bin/sh\necho 'test stub, must not run' >&2\nexit 1\n")
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")


@pytest.fixture
def mocked_hinet(monkeypatch):
    MockHinetClient.instances = []
    monkeypatch.setattr(hinet_mod, "_hinetpy_client", lambda c: MockHinetClient(c.user, c.password))
    monkeypatch.setattr(hinet_mod, "_extract_sac", mock_extract_sac)


def test_hinet_download_to_sds_with_env_credentials(
    tmp_path, monkeypatch, caplog, win32tools_stubs, mocked_hinet
):
    monkeypatch.setenv("HINET_USER", "tottori-user")
    monkeypatch.setenv("HINET_PASSWORD", PASSWORD)
    caplog.set_level("DEBUG")
    run = RunDir(tmp_path / "run")
    source = HinetSource(network_code="0101", stations=list(CTABLE))
    cfg = WaveformConfig(source=source, max_workers=2)
    summary = download_waveforms(run, None, cfg, START, END, progress=False)

    (client,) = MockHinetClient.instances
    assert (client.user, client.password) == ("tottori-user", PASSWORD)
    assert client.selected == [("0101", ["N.WNNH", "N.AAKH"])]
    # Requests are in JST (UTC+9), one per UTC day of the span.
    assert client.requests == [
        ("0101", datetime(2000, 10, 6, 8, 55), 5),
        ("0101", datetime(2000, 10, 6, 9, 0), 5),
    ]
    root = run.root / "waveforms"
    first = read(str(root / "2000/N/AAKH/EHZ.D/N.AAKH..EHZ.D.2000.279"))
    second = read(str(root / "2000/N/AAKH/EHZ.D/N.AAKH..EHZ.D.2000.280"))
    assert first[0].stats.starttime == UTCDateTime(START)  # shifted from JST to UTC
    assert second[0].stats.starttime == UTCDateTime(2000, 10, 6)
    assert first[0].stats.npts == second[0].stats.npts == 5 * 60 * RATE
    assert first[0].data.dtype == np.float32

    stations = pd.read_csv(root / "stations.csv", keep_default_na=False)
    aakh = stations[stations["station"] == "AAKH"].iloc[0]
    assert (aakh["network"], aakh["channel_prefix"], aakh["sampling_rate"]) == ("N", "EH", 100.0)
    assert (aakh["latitude"], aakh["longitude"], aakh["elevation_m"]) == CTABLE["N.AAKH"]
    inventory = read_inventory(str(root / "inventory.xml"))
    response = inventory.select(station="AAKH", channel="EHZ")[0][0][0].response
    assert response.instrument_sensitivity.value == pytest.approx(1e9, rel=1e-3)
    # a Hi-net unit is a day of the network (2 days), not a station-day
    assert (summary["units_total"], summary["units_downloaded"]) == (2, 2)
    assert summary["channel_days_ok"] == 12 and summary["bytes_downloaded"] > 0

    quality = pd.read_parquet(root / "quality.parquet")
    assert (quality["status"] == "ok").all() and not quality["flat"].any()

    # The password never reaches a log record or any file of the run.
    assert PASSWORD not in caplog.text
    for path in run.root.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in repr(hinet_credentials(cfg.source))

    # A rerun requests nothing (each day is a finished unit).
    download_waveforms(run, None, cfg, START, END, progress=False)
    assert len(MockHinetClient.instances) == 1


def test_hinet_secret_loader_takes_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("HINET_USER", raising=False)
    source = HinetSource(secret_block="hinet-account")
    creds = hinet_credentials(source, lambda name: {"hinet-account": "alice:pw:with:colons"}[name])
    assert (creds.user, creds.password) == ("alice", "pw:with:colons")
    with pytest.raises(HinetCredentialsError, match="no secret loader"):
        hinet_credentials(source)
    with pytest.raises(HinetCredentialsError, match="must hold 'user:password'"):
        hinet_credentials(source, lambda name: "no-separator")


def test_hinet_missing_credentials_and_tools_are_clear_errors(tmp_path, monkeypatch, mocked_hinet):
    monkeypatch.delenv("HINET_USER", raising=False)
    monkeypatch.delenv("HINET_PASSWORD", raising=False)
    cfg = WaveformConfig(source=HinetSource())
    with pytest.raises(HinetCredentialsError, match="HINET_USER and HINET_PASSWORD"):
        download_waveforms(RunDir(tmp_path / "a"), None, cfg, START, END, progress=False)

    monkeypatch.setenv("HINET_USER", "u")
    monkeypatch.setenv("HINET_PASSWORD", PASSWORD)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(Win32ToolsMissing, match="catwin32, win2sac_32") as err:
        download_waveforms(RunDir(tmp_path / "b"), None, cfg, START, END, progress=False)
    assert PASSWORD not in str(err.value)
    assert MockHinetClient.instances == []  # fails before any request


def test_hinet_config_never_holds_credentials():
    with pytest.raises(ValidationError, match="password"):
        HinetSource(password="x")
    with pytest.raises(ValidationError, match="network_code"):
        HinetSource(network_code="01/01")
    assert HinetSource(network_code="0103A").network_code == "0103A"  # F-net
    with pytest.raises(ValidationError, match="expected a name like 'N.AAKH'"):
        HinetSource(stations=["AAKH"])


def test_channel_table_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.ch"
    MockHinetClient("u", "p").get_continuous_waveform(
        "0101", datetime(2000, 1, 1), 1, outdir=tmp_path
    )
    table = read_channel_table(next(tmp_path.glob("*.ch")))
    assert len(table) == 6 and set(table["component"]) == {"U", "N", "E"}
    bad.write_text("3001 1 0 N.AAKH U 6 27\n")
    with pytest.raises(ValueError, match=r"bad.ch:1: not a Hi-net channel-table line"):
        read_channel_table(bad)


def test_refused_login_is_one_clear_error_not_retried(tmp_path, monkeypatch, win32tools_stubs):
    """HinetPy says "Unauthorized" through a connection error, which a retry would repeat."""
    attempts = []

    def refuse(credentials):
        attempts.append(credentials.user)
        raise requests.ConnectionError("Unauthorized. Check your username and password!")

    monkeypatch.setattr(hinet_mod, "_hinetpy_client", refuse)
    monkeypatch.setenv("HINET_USER", "tottori-user")
    monkeypatch.setenv("HINET_PASSWORD", PASSWORD)
    cfg = WaveformConfig(source=HinetSource(stations=list(CTABLE)))
    with pytest.raises(HinetCredentialsError) as err:
        download_waveforms(RunDir(tmp_path / "run"), None, cfg, START, END, progress=False)
    message = str(err.value)
    assert "refused the login of user 'tottori-user' (from HINET_USER/HINET_PASSWORD)" in message
    assert PASSWORD not in message and "\n" not in message
    assert not is_retryable(err.value) and attempts == ["tottori-user"]


def test_unreadable_secret_is_a_credentials_error():
    def missing(name: str) -> str:
        raise ValueError(f"Unable to find block document named {name} for block type secret")

    with pytest.raises(HinetCredentialsError, match="'hinet-account' .* could not be read: Unable"):
        hinet_credentials(HinetSource(secret_block="hinet-account"), missing)


def test_a_failed_day_is_reported_and_asked_again(tmp_path, monkeypatch, win32tools_stubs):
    """One day without data does not stop the other; a rerun asks only for the failed day."""

    class OneDayMissing(MockHinetClient):
        def get_continuous_waveform(self, code, starttime, span, max_span=None, outdir="."):
            if starttime.hour == 9 and not self.heal:
                self.requests.append((code, starttime, span))
                return None, None
            return super().get_continuous_waveform(code, starttime, span, max_span, outdir)

    OneDayMissing.heal = False
    MockHinetClient.instances = []
    monkeypatch.setattr(hinet_mod, "_hinetpy_client", lambda c: OneDayMissing(c.user, c.password))
    monkeypatch.setattr(hinet_mod, "_extract_sac", mock_extract_sac)
    monkeypatch.setenv("HINET_USER", "u")
    monkeypatch.setenv("HINET_PASSWORD", PASSWORD)
    run = RunDir(tmp_path / "run")
    cfg = WaveformConfig(source=HinetSource(stations=list(CTABLE)))
    summary = download_waveforms(run, None, cfg, START, END, progress=False)
    assert summary["failures"] == [
        "hinet.0101.2000.280: RuntimeError: Hi-net returned no data for 0101 at "
        "2000-10-06 09:00:00 JST"
    ]
    assert summary["channel_days_ok"] == 6 and units_to_retry(run) == ["hinet.0101.2000.280"]
    assert [summary[f"units_{k}"] for k in ("total", "downloaded", "failed")] == [2, 1, 1]

    OneDayMissing.heal = True
    again = download_waveforms(run, None, cfg, START, END, progress=False)
    assert again["failures"] == [] and again["channel_days_ok"] == 12
    assert [again[f"units_{k}"] for k in ("total", "downloaded", "skipped")] == [2, 1, 1]
    assert [r[1].hour for r in MockHinetClient.instances[-1].requests] == [9]
