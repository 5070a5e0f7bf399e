"""Waveform stage pieces without a server: codes, SDS paths, channel choice, quality, config."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
from obspy import Inventory, Stream, Trace, UTCDateTime
from obspy.core.inventory import Channel, Network, Station
from pydantic import TypeAdapter, ValidationError

from pipeline.picking.preprocess import is_dead
from pipeline.rundir import RunDir, sha256_file
from pipeline.waveforms import StationSourceConfig, WaveformConfig, download_waveforms
from pipeline.waveforms.download import Unit, UnitLedger, plan_units
from pipeline.waveforms.inventory import (
    inline_inventory,
    read_stations_csv,
    select_channels,
    stations_table,
    write_stations_csv,
)
from pipeline.waveforms.params import (
    FDSNSource,
    FDSNStationQuery,
    InlineStations,
    QualityConfig,
    SDSSource,
    check_code,
)
from pipeline.waveforms.quality import assess_file, assess_stream, quality_reason, quality_table
from pipeline.waveforms.reader import read_station
from pipeline.waveforms.sds import (
    archive_files,
    days_in_span,
    remove_stale_temporaries,
    sds_relpath,
    write_channel_day,
)

T0 = datetime(2024, 2, 3, tzinfo=UTC)
T1 = datetime(2024, 2, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("network", "../"),
        ("station", "A/B"),
        ("station", "wilz"),
        ("channel", "HH"),
        ("location", "0"),
        ("network", "ABC"),
    ],
)
def test_bad_codes_never_become_paths(kind, value):
    with pytest.raises(ValueError, match=f"invalid {kind} code"):
        check_code(kind, value)
    codes = {"network": "XX", "station": "AAA", "location": "", "channel": "HHZ", kind: value}
    with pytest.raises(ValueError):
        sds_relpath(
            codes["network"],
            codes["station"],
            codes["location"],
            codes["channel"],
            date(2024, 2, 3),
        )


def test_sds_path_layout():
    path = sds_relpath("O2", "WILZ", "--", "EHZ", date(2024, 2, 3))
    assert path.as_posix() == "2024/O2/WILZ/EHZ.D/O2.WILZ..EHZ.D.2024.034"
    assert sds_relpath("XX", "A1", "00", "HHN", date(2024, 12, 31)).name.endswith(".2024.366")


def test_days_in_span_excludes_an_end_at_midnight():
    assert days_in_span(datetime(2024, 2, 2, 22, tzinfo=UTC), T1) == [
        date(2024, 2, 2),
        date(2024, 2, 3),
    ]
    assert days_in_span(T0, datetime(2024, 2, 3, 0, 0, 1, tzinfo=UTC)) == [date(2024, 2, 3)]


def _station(code, channels, end=None):
    sta = Station(code, 35.0, 135.0, 10.0, start_date=UTCDateTime(2020, 1, 1), end_date=end)
    for loc, cha, rate in channels:
        sta.channels.append(Channel(cha, loc, 35.0, 135.0, 10.0, 0.0, sample_rate=rate))
    return sta


def test_channel_then_location_priority(caplog):
    inv = Inventory(
        networks=[
            Network(
                "XX",
                stations=[
                    _station(
                        "A",
                        [
                            ("00", "BHZ", 40),
                            ("00", "BHN", 40),
                            ("10", "HHZ", 100),
                            ("10", "HHE", 100),
                            ("20", "HHZ", 100),
                        ],
                    ),
                    _station("B", [("", "EHZ", 100), ("00", "EHZ", 100)]),
                    _station("C", [("", "LHZ", 1)]),  # nothing matches: skipped
                    _station("D", [("", "HHZ", 100)], end=UTCDateTime(2021, 1, 1)),  # closed
                    _station("BAD_1", [("", "HHZ", 100)]),  # invalid code: skipped
                ],
            )
        ]
    )
    caplog.set_level(logging.WARNING)
    choices = select_channels(inv, ["HH?", "BH?", "EH?"], ["", "00", "10", "*"], T0, T1)
    by_station = {c.station: c for c in choices}
    assert set(by_station) == {"A", "B"}
    assert (by_station["A"].location, by_station["A"].channels) == ("10", ("HHE", "HHZ"))
    assert by_station["A"].sampling_rate == 100
    assert (by_station["B"].location, by_station["B"].channel_prefix) == ("", "EH")
    assert "XX.C skipped" in caplog.text and "'XX.BAD_1' skipped" in caplog.text


def test_stations_csv_round_trip_keeps_codes(tmp_path):
    cfg = TypeAdapter(StationSourceConfig).validate_python(
        {
            "kind": "inline",
            "stations": [
                {"network": "XX", "station": "AAA", "latitude": 35.1, "longitude": 133.4},
                {
                    "network": "XX",
                    "station": "BBB",
                    "location": "00",
                    "latitude": 35.2,
                    "longitude": 133.5,
                    "elevation_m": 120.0,
                    "channel_prefix": "EH",
                    "sampling_rate": 200.0,
                },
            ],
        }
    )
    assert isinstance(cfg, InlineStations)
    choices = select_channels(inline_inventory(cfg, T0), ["HH?", "EH?"], ["*"], T0, T1)
    path = write_stations_csv(stations_table(choices), tmp_path / "stations.csv")
    table = read_stations_csv(path)
    assert list(table["location"]) == ["", "00"]
    assert list(table["channel_prefix"]) == ["HH", "EH"]
    assert table.loc[1, ["elevation_m", "sampling_rate"]].tolist() == [120.0, 200.0]


def _trace(data, start=None, rate=100.0, channel="HHZ"):
    return Trace(
        np.asarray(data),
        header={
            "network": "XX",
            "station": "AAA",
            "channel": channel,
            "sampling_rate": rate,
            "starttime": start or UTCDateTime(T0),
        },
    )


def test_quality_flags():
    cfg = QualityConfig()
    rng = np.random.default_rng(1)
    noise = rng.integers(-1000, 1000, 6000).astype(np.int32)

    clean = assess_stream(Stream([_trace(noise)]), 100.0, 60.0, cfg)
    assert clean["coverage"] == 1.0 and not (clean["flat"] or clean["clipped"])
    assert clean["n_gaps"] == clean["n_overlaps"] == 0 and not clean["rate_mismatch"]

    flat = assess_stream(Stream([_trace(np.full(6000, 7, np.int32))]), 100.0, 60.0, cfg)
    assert flat["flat"] and not flat["clipped"]

    clipped_data = noise.copy()
    clipped_data[100:110] = 5000
    clipped_data[3000:3006] = -5000
    clipped = assess_stream(Stream([_trace(clipped_data)]), 100.0, 60.0, cfg)
    assert clipped["clipped"] and clipped["clipped_samples"] == 16
    by_level = assess_stream(
        Stream([_trace(clipped_data)]), 100.0, 60.0, QualityConfig(clip_level=4000)
    )
    assert by_level["clipped_samples"] == 16

    t = UTCDateTime(T0)
    pieces = Stream(
        [_trace(noise[:1000], t), _trace(noise[:1000], t + 15.0), _trace(noise[:1000], t + 20.0)]
    )
    gaps = assess_stream(pieces, 100.0, 60.0, cfg)
    assert (gaps["n_gaps"], gaps["n_overlaps"]) == (1, 1)
    assert gaps["gap_s"] == pytest.approx(5.0) and gaps["overlap_s"] == pytest.approx(5.0)
    assert gaps["coverage"] == pytest.approx(0.5)

    mixed = Stream([_trace(noise[:1000]), _trace(noise[:500], t + 10.0, rate=50.0)])
    assert assess_stream(mixed, 100.0, 60.0, cfg)["rate_mismatch"]
    assert assess_stream(Stream([_trace(noise)]), 40.0, 60.0, cfg)["rate_mismatch"]


def _reason(stream: Stream, rate: float = 100.0, cfg: QualityConfig | None = None) -> str:
    """The quality ``reason`` of one channel-day ``stream`` (a 60-s span, nothing missing)."""
    cfg = cfg or QualityConfig()
    row = {"status": "ok", "error": "", **assess_stream(stream, rate, 60.0, cfg)}
    return quality_reason(pd.Series(row), cfg)


def test_full_scale_int32_samples_are_not_flat():
    """Peak-to-peak in int32 wrapped around: a channel reaching both int32 extremes was
    reported flat (dead) and the picker dropped it as a missing component."""
    data = np.random.default_rng(2).integers(-1000, 1000, 6000).astype(np.int32)
    data[1000:1010:2], data[1001:1011:2] = np.iinfo(np.int32).max, np.iinfo(np.int32).min
    trace = _trace(data)
    figures = assess_stream(Stream([trace]), 100.0, 60.0, QualityConfig())
    assert not figures["flat"] and figures["clipped_samples"] == 10  # full scale, no runs
    assert not is_dead([trace])
    at_level = assess_stream(Stream([trace]), 100.0, 60.0, QualityConfig(clip_level=2**31 - 1))
    assert at_level["clipped_samples"] == 10  # abs() of the int32 minimum wrapped too


def test_quality_reasons_name_mixed_rates_overlaps_and_the_inventory_rate():
    noise = np.random.default_rng(3).integers(-1000, 1000, 6000).astype(np.int32)
    t = UTCDateTime(T0)
    mixed = Stream(
        [_trace(noise[:2000], t), _trace(np.tile(noise, 2)[:8000], t + 20.0, rate=200.0)]
    )
    assert _reason(mixed) == "mixed sampling rates (100, 200 Hz) within the day"
    assert _reason(Stream([_trace(noise, rate=20.0)]), 100.0).endswith(
        "sampling rate 20 Hz, not the inventory's 100 Hz"
    )
    overlapping = Stream([_trace(noise), _trace(noise[:1000], t + 30.0)])
    assert _reason(overlapping) == "1 overlap(s), 10 s (the later segment's samples are used)"


def test_day_file_that_is_a_folder_a_broken_link_or_another_station(tmp_path, monkeypatch):
    window = (UTCDateTime(T0), UTCDateTime(T0) + 60)
    cfg = QualityConfig()
    folder = tmp_path / "XX.AAA..HHZ.D.2024.034"
    folder.mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    for path, why in ((folder, "a folder, not a miniSEED file"), (link, "broken link to")):
        row = assess_file(path, 100.0, window, cfg, "XX.AAA..HHZ")
        assert row["status"] == "unreadable" and row["error"].startswith(why)
        assert quality_reason(pd.Series(row), cfg).startswith(f"unreadable file ({why}")
    assert assess_file(tmp_path / "none", 100.0, window, cfg)["status"] == "missing"
    locked = tmp_path / "locked"
    locked.write_bytes(b"")

    def refuse(path, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pipeline.waveforms.quality.read", refuse)  # chmod 000 as root reads
    row = assess_file(locked, 100.0, window, cfg)
    assert (row["status"], row["error"]) == ("unreadable", "cannot be read: Permission denied")
    monkeypatch.undo()

    other = _trace(np.arange(6000, dtype=np.int32))
    other.stats.station = "BBB"
    path = tmp_path / "day"
    Stream([other]).write(str(path), format="MSEED")
    row = assess_file(path, 100.0, window, cfg, "XX.AAA..HHZ")
    assert (row["status"], row["n_samples"], row["foreign_ids"]) == ("ok", 0, "XX.BBB..HHZ")
    reason = quality_reason(pd.Series(row), cfg)
    assert reason.startswith("file holds data of XX.BBB..HHZ, not of this channel (left out)")


def test_text_records_and_nan_samples_never_reach_a_stage(tmp_path):
    """A day file of ASCII records stopped the whole build in the quality table (ufunc
    'maximum' on bytes); NaN samples passed unflagged and blanked a component's picks."""
    window = (UTCDateTime(T0), UTCDateTime(T0) + 60)
    text = tmp_path / "2024/XX/AAA/HHN.D/XX.AAA..HHN.D.2024.034"
    text.parent.mkdir(parents=True)
    Stream([_trace(np.frombuffer(b"log line " * 100, dtype="S1"), channel="HHN")]).write(
        str(text), format="MSEED", encoding="ASCII"
    )
    row = assess_file(text, 100.0, window, QualityConfig(), "XX.AAA..HHN")
    assert (row["status"], row["error"]) == ("corrupt", "text records, not waveform samples")

    data = np.random.default_rng(4).normal(0, 100, 6000)
    data[1000:1500] = np.nan
    data[3000:3010] = 1e300  # a damaged float64 record: inf in the picker's float32
    nan_file = tmp_path / "2024/XX/AAA/HHZ.D/XX.AAA..HHZ.D.2024.034"
    nan_file.parent.mkdir(parents=True)
    Stream([_trace(data)]).write(str(nan_file), format="MSEED")
    row = assess_file(nan_file, 100.0, window, QualityConfig(), "XX.AAA..HHZ")
    assert row["nonfinite_samples"] == 510 and row["n_gaps"] == 2
    assert "510 samples not finite (NaN/inf) or beyond float32 range, used as gaps" in (
        quality_reason(pd.Series(row), QualityConfig())
    )
    stream = read_station(tmp_path, "XX", "AAA", "", "HH", *window)
    assert [tr.stats.channel for tr in stream] == ["HHZ", "HHZ", "HHZ"]
    assert all(np.abs(tr.data).max() < 1e6 for tr in stream)


def test_day_file_cut_inside_a_record_is_flagged(tmp_path):
    """A file cut mid-record lost its last record's samples with at most an
    InternalMSEEDWarning that named no file (none at all for a cut of 128 bytes or more)."""
    window = (UTCDateTime(T0), UTCDateTime(T0) + 60)
    path = tmp_path / "day"
    data = np.random.default_rng(5).integers(-1000, 1000, 6000).astype(np.int32)
    Stream([_trace(data)]).write(str(path), format="MSEED", reclen=512)
    path.write_bytes(path.read_bytes()[:-100])
    row = assess_file(path, 100.0, window, QualityConfig(), "XX.AAA..HHZ")
    assert row["partial_bytes"] == 412
    reason = quality_reason(pd.Series(row), QualityConfig())
    assert reason.startswith("file ends in a cut record (412 bytes not read)")


def test_quality_assesses_the_channels_the_picker_reads(tmp_path):
    """An inline station (inventory channels HHZ/HHN/HHE) over an archive of HHZ/HH1/HH2 was
    reported with HHN and HHE missing on every day while the picker used HH1/HH2."""
    cfg = InlineStations(
        stations=[{"network": "XX", "station": "AAA", "latitude": 1, "longitude": 2}]
    )
    (choice,) = select_channels(inline_inventory(cfg, T0), ["HH?"], ["*"], T0, T1)
    assert sorted(choice.channels) == ["HHE", "HHN", "HHZ"]
    data = np.random.default_rng(6).integers(-1000, 1000, 6000).astype(np.int32)
    for channel in ("HHZ", "HH1"):
        write_channel_day(Stream([_trace(data, channel=channel)]), tmp_path, T0.date())
    window = (UTCDateTime(T0), UTCDateTime(T1))
    table = quality_table(tmp_path, [choice], [T0.date()], window, QualityConfig())
    status = dict(zip(table.channel, table.status, strict=True))
    # HH1 stands in for HHN (the picker's N column); nothing stands in for HHE
    assert status == {"HH1": "ok", "HHE": "missing", "HHZ": "ok"}


def test_ledger_redoes_a_unit_whose_file_changed(tmp_path):
    cfg = InlineStations(
        stations=[{"network": "XX", "station": "AAA", "latitude": 1, "longitude": 2}]
    )
    (choice,) = select_channels(inline_inventory(cfg, T0), ["HH?"], ["*"], T0, T1)
    (unit,) = plan_units([choice], T0, T1)
    assert isinstance(unit, Unit) and unit.unit_id == "XX.AAA..HH.2024.034"
    written = write_channel_day(
        Stream([_trace(np.arange(100, dtype=np.int32))]), tmp_path, unit.day
    )
    assert list(written.values()) == [100]
    (path,) = written
    ledger = UnitLedger(tmp_path)
    record = {
        "unit": unit.unit_id,
        "start": str(unit.start),
        "end": str(unit.end),
        "status": "ok",
        "files": [{"path": path.relative_to(tmp_path).as_posix(), "sha256": sha256_file(path)}],
    }
    ledger.write(unit, record)
    assert ledger.is_finished(unit, tmp_path)
    (shorter,) = plan_units([choice], T0, datetime(2024, 2, 3, 12, tzinfo=UTC))
    assert not ledger.is_finished(shorter, tmp_path)  # same day, other window
    path.write_bytes(path.read_bytes()[:-10])
    assert not ledger.is_finished(unit, tmp_path)


def test_a_station_day_downloaded_incomplete_soon_after_its_end_is_asked_again(tmp_path):
    """Late data: a scheduled build downloading yesterday's data at 00:30 got what the data
    centre held by then, and never asked again."""
    cfg = InlineStations(
        stations=[{"network": "XX", "station": "AAA", "latitude": 1, "longitude": 2}]
    )
    (choice,) = select_channels(inline_inventory(cfg, T0), ["HH?"], ["*"], T0, T1)
    (unit,) = plan_units([choice], T0, T1)
    ledger, source = UnitLedger(tmp_path), FDSNSource(base_url="http://127.0.0.1:9999")
    window = {"unit": unit.unit_id, "start": str(unit.start), "end": str(unit.end), "files": []}

    def finished(hours_after_end: float | None, status: str = "ok", coverage: float = 0.5):
        record = {**window, "status": status, "coverage": coverage}
        if hours_after_end is not None:
            record["downloaded_at"] = str(UTCDateTime(T1) + hours_after_end * 3600)
        ledger.write(unit, record)
        return ledger.is_finished(unit, tmp_path, source)

    assert not finished(0.5)  # half the samples, 30 min after the day's end
    assert not finished(0.5, status="nodata", coverage=0.0)
    assert finished(0.5, coverage=1.0)  # complete
    assert finished(49.0)  # asked again 49 h after its end: what it got is final
    assert finished(None)  # a record of an older eqcat
    source = FDSNSource(base_url="http://127.0.0.1:9999", recheck_recent_hours=0)
    assert finished(0.5)


def test_sds_source_reads_in_place_with_inline_stations(tmp_path):
    archive = tmp_path / "archive"
    day = date(2024, 2, 3)
    for comp in "ZNE":
        write_channel_day(
            Stream([_trace(np.arange(8640, dtype=np.int32) % 50, rate=0.1, channel=f"HH{comp}")]),
            archive,
            day,
        )
    stations = InlineStations(
        stations=[
            {
                "network": "XX",
                "station": "AAA",
                "latitude": 1.0,
                "longitude": 2.0,
                "sampling_rate": 0.1,
            }
        ]
    )
    cfg = WaveformConfig(source=SDSSource(path=archive))
    run = RunDir(tmp_path / "run")
    summary = download_waveforms(run, stations, cfg, T0, T1, progress=False)
    assert summary["sds_root"] == str(archive) and summary["channel_days_ok"] == 3
    assert summary["counts"]["channel_days_ok"] == 3 and summary["counts"]["stations"] == 1
    assert not any((run.root / "waveforms").glob("2024"))
    quality = pd.read_parquet(run.root / "waveforms" / "quality.parquet")
    assert quality["coverage"].tolist() == [1.0, 1.0, 1.0]
    assert run.read_manifest()["waveforms"]["details"]["sds_root"] == str(archive)


def test_config_validation_messages(tmp_path):
    with pytest.raises(ValidationError, match="must divide 24 hours"):
        FDSNSource(chunk_hours=5)
    with pytest.raises(ValidationError, match="a box .* or a circle, not both"):
        FDSNStationQuery(min_latitude=30, latitude=35, longitude=135, max_radius_deg=1)
    with pytest.raises(ValidationError, match="needs latitude, longitude and max_radius_deg"):
        FDSNStationQuery(latitude=35)
    with pytest.raises(ValidationError, match="invalid station code"):
        InlineStations(
            stations=[{"network": "XX", "station": "../x", "latitude": 0, "longitude": 0}]
        )
    with pytest.raises(ValidationError, match="SDS archive folder not found"):
        SDSSource(path=tmp_path / "nope")
    with pytest.raises(ValidationError, match="channel pattern"):
        WaveformConfig(channel_priority=["HH?; rm"])
    assert WaveformConfig(location_priority=["--", "00"]).location_priority == ["", "00"]
    defaults = WaveformConfig()
    assert defaults.channel_priority == ["HH?", "BH?", "EH?", "HN?"]
    assert defaults.max_workers == 4 and defaults.source.chunk_hours == 24.0


def test_sections_compose_and_round_trip_through_yaml(tmp_path):
    """The sections as the build config embeds them: YAML in, resolved YAML out, same model."""
    import yaml
    from pydantic import BaseModel

    class Build(BaseModel):
        stations: StationSourceConfig | None = None
        waveforms: WaveformConfig = WaveformConfig()

    text = f"""
stations:
  kind: fdsn
  base_url: http://127.0.0.1:8080
  network: BO,N
  min_latitude: 34.5
  max_latitude: 36.0
  min_longitude: 132.5
  max_longitude: 134.5
waveforms:
  source: {{kind: sds, path: {tmp_path}}}
  channel_priority: ["HH?", "EH?"]  # quoted: a bare ? starts a YAML key
  max_workers: 8
"""
    build = Build.model_validate(yaml.safe_load(text))
    assert isinstance(build.stations, FDSNStationQuery) and build.stations.network == "BO,N"
    assert isinstance(build.waveforms.source, SDSSource) and build.waveforms.max_workers == 8
    resolved = yaml.safe_dump(build.model_dump(mode="json"))
    assert Build.model_validate(yaml.safe_load(resolved)) == build
    assert isinstance(Build().waveforms.source, FDSNSource)


def test_stale_temporaries_are_removed_and_never_listed(tmp_path):
    day = date(2024, 2, 3)
    (path,) = write_channel_day(Stream([_trace(np.arange(10, dtype=np.int32))]), tmp_path, day)
    leftover = path.parent / f".{path.stem}.abc123{path.suffix}"  # as atomic_path names it
    leftover.write_bytes(b"half a record")
    assert archive_files(tmp_path) == [path]
    assert remove_stale_temporaries(tmp_path) == 1
    assert not leftover.exists() and path.exists()
