"""Bad data through the whole pipeline: changed, empty, dead, truncated, gapped, off-rate.

The data are real small sets: a 30-minute, 5-station cut of the demo replica (the generator
of ``station_configs/demo.yaml``, same seed and start, shorter and fewer stations), read as a
local SDS archive with its StationXML, and the real O2.WILZ record from ``../shared``. Each
case copies the archive, damages it the way the field does (a dead channel, a truncated
component, a 10-minute gap, a station without files, one channel at 200 Hz, an archive
replaced under the same run name) and builds with the STA/LTA picker, the real HypoInverse
and the HypoDD engine. Stage functions are called directly where orchestration does not
matter; the cache and staleness cases run real Prefect builds.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from obspy import UTCDateTime, read
from test_flows import run_build, state_counts

from pipeline.config import load_config, write_resolved_config
from pipeline.relocation.xcorr import StationInfo, _Archive
from pipeline.rundir import RunDir
from pipeline.synthetic import ScenarioConfig, generate_scenario
from pipeline.velocity import load_velocity_model
from pipeline.waveforms import download_waveforms, waveform_root
from pipeline.waveforms.inventory import read_stations_csv
from pipeline.waveforms.reader import read_station
from pipeline.waveforms.sds import days_in_span

START = "2000-10-08T05:00:00"  # the demo replica's start (station_configs/demo.yaml)
END = "2000-10-08T05:30:00"
T0 = UTCDateTime(START)
N_STATIONS = 5


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The demo replica, cut to 30 min and 5 stations: an SDS archive with inventory.xml."""
    out = tmp_path_factory.mktemp("replica")
    cfg = ScenarioConfig(seed=2000, start_time=START, duration_s=1800, max_stations=N_STATIONS)
    generate_scenario(out, cfg)
    return out / "waveforms"


def copy_archive(archive: Path, dest: Path) -> Path:
    """A copy of the SDS archive (with inventory.xml) to damage."""
    shutil.copytree(archive, dest, ignore=shutil.ignore_patterns("units", "*.csv", "*.parquet"))
    return dest


def network_dir(root: Path) -> Path:
    """``<root>/2000/<NET>``: the one network of the replica (its code is the generator's)."""
    (folder,) = (root / "2000").iterdir()
    return folder


def station_codes(root: Path) -> list[str]:
    return sorted(p.name for p in network_dir(root).iterdir())


def day_file(root: Path, station: str, channel: str) -> Path:
    net = network_dir(root).name
    return network_dir(root) / f"{station}/{channel}.D/{net}.{station}..{channel}.D.2000.282"


def rewrite(path: Path, change) -> None:
    """Apply ``change`` to the stream of one day file and write it back (miniSEED)."""
    stream = change(read(str(path)))
    for trace in stream:
        trace.data = np.require(trace.data, np.int32)
    stream.write(str(path), format="MSEED", encoding="STEIM2")


def write_config(folder: Path, sds: Path, name: str, **sections) -> Path:
    """A build config reading ``sds`` in place (StationXML stations, STA/LTA picker)."""
    spec = {
        "name": name,
        "starttime": START,
        "endtime": END,
        "velocity_model": "tottori",
        "output_dir": str(folder / "runs"),
        "stations": {"kind": "stationxml", "path": str(sds / "inventory.xml")},
        "waveforms": {"source": {"kind": "sds", "path": str(sds)}, "channel_priority": ["HH?"]},
        "picking": {"picker": "stalta"},
        "association": {"associator": "time"},
        "dask": {"local_workers": 2},
        **sections,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def build_direct(config: Path) -> RunDir:
    """Every stage of a build, called as plain functions (no Prefect); the run directory."""
    from pipeline.association import associate
    from pipeline.catalog import export_catalog
    from pipeline.location import locate
    from pipeline.magnitude import compute_magnitudes
    from pipeline.picking.stage import pick_all
    from pipeline.relocation.stage import relocate
    from pipeline.report.html import write_report

    cfg = load_config(config)
    run = write_resolved_config(cfg)
    model = load_velocity_model(cfg.velocity_model)
    sds = waveform_root(run, cfg.waveforms)
    download_waveforms(run, cfg.stations, cfg.waveforms, cfg.starttime, cfg.endtime, progress=False)
    stations = read_stations_csv(run.root / "waveforms" / "stations.csv")
    days = days_in_span(cfg.starttime, cfg.endtime)
    pick_all(
        run,
        cfg.picking,
        stations,
        days,
        sds_root=sds,
        flat_max_ptp=cfg.waveforms.quality.flat_max_ptp,
    )
    associate(run, cfg.association, model)
    locate(run, cfg.location, model)
    relocate(run, cfg.relocation, model, sds)
    compute_magnitudes(run, cfg.magnitude, sds)
    export_catalog(run)
    write_report(run, cfg.report)
    return run


def report_text(run: RunDir) -> str:
    return (run.root / "report" / "index.html").read_text(encoding="utf-8")


def summary_of(run: RunDir) -> dict:
    return json.loads((run.root / "report" / "completeness.json").read_text())["summary"]


# ------------------------------------------------------------------ 3: empty and thin data


def _zero(st):
    for tr in st:
        tr.data = np.zeros_like(tr.data)
    return st


def _empty(root: Path) -> None:
    shutil.rmtree(root / "2000")


def _one_station(root: Path) -> None:
    for folder in sorted(network_dir(root).iterdir())[1:]:
        shutil.rmtree(folder)


def _all_zero(root: Path) -> None:
    for path in sorted(root.glob("2000/*/*/*.D/*")):
        rewrite(path, _zero)


@pytest.mark.parametrize(
    "damage, why",
    [
        (_empty, "no waveform data in the requested span"),
        (_one_station, "associator formed no event"),
        (_all_zero, "flat (dead: constant value)"),
    ],
    ids=["empty-archive", "one-station", "all-zero"],
)
def test_build_without_events_finishes_with_an_empty_catalog_and_says_why(
    archive, tmp_path, damage, why
):
    sds = copy_archive(archive, tmp_path / "sds")
    damage(sds)
    run = build_direct(write_config(tmp_path, sds, "thin"))
    catalog = pd.read_csv(run.root / "catalog" / "catalog.csv")
    assert catalog.empty
    manifest = run.read_manifest()
    for stage in ("picks", "association", "location", "relocation", "magnitude", "catalog"):
        assert manifest[stage]["counts"]["events" if stage != "picks" else "picks"] >= 0
    assert manifest["relocation"]["counts"]["events"] == 0
    text = report_text(run)
    assert "No events:" in text and why in text
    assert summary_of(run)["data_quality"]["empty_reason"]


# ------------------------------------------------------------------ 4 and 5: bad channels


def _clip(st):
    for tr in st:
        limit = int(0.3 * np.abs(tr.data).max())
        tr.data = np.clip(tr.data, -limit, limit)
    return st


def _to_200_hz(st):
    for tr in st:
        tr.resample(200.0)
    return st


def test_bad_channels_are_flagged_in_quality_and_report(archive, tmp_path):
    sds = copy_archive(archive, tmp_path / "sds")
    stations = station_codes(sds)
    dead, short, gapped, absent, clipped = stations
    for channel in ("HHE", "HHN", "HHZ"):  # every component dead: the day is not picked
        rewrite(day_file(sds, dead, channel), _zero)
    rewrite(day_file(sds, short, "HHN"), lambda st: st.trim(T0, T0 + 600))
    for channel in ("HHE", "HHN", "HHZ"):
        rewrite(day_file(sds, gapped, channel), lambda st: st.cutout(T0 + 600, T0 + 1200))
    shutil.rmtree(network_dir(sds) / absent)
    rewrite(day_file(sds, clipped, "HHE"), _clip)

    net = network_dir(sds).name
    run = build_direct(write_config(tmp_path, sds, "bad"))
    quality = pd.read_parquet(run.root / "waveforms" / "quality.parquet").set_index(
        ["station", "channel"]
    )
    reason = quality["reason"]
    assert all("flat" in reason[(dead, c)] for c in ("HHE", "HHN", "HHZ"))
    assert "truncated: data cover 33 %" in reason[(short, "HHN")]
    assert all("1 gap(s), 600 s" in reason[(gapped, c)] for c in ("HHE", "HHN", "HHZ"))
    assert all(reason[(absent, c)] == "no data file" for c in ("HHE", "HHN", "HHZ"))
    assert "clipped" in reason[(clipped, "HHE")]
    flagged = quality[quality["flagged"]].index
    assert set(flagged) == {
        *((dead, c) for c in ("HHE", "HHN", "HHZ")),
        (short, "HHN"),
        *((gapped, c) for c in ("HHE", "HHN", "HHZ")),
        *((absent, c) for c in ("HHE", "HHN", "HHZ")),
        (clipped, "HHE"),
    }

    text = report_text(run)
    assert "<h2>Data quality</h2>" in text
    assert "<tr><th>Failures and data problems</th><td>" in text
    assert "<tr><th>Failures and data problems</th><td>none</td></tr>" not in text
    assert "data problems at 5 station(s)" in text
    skipped = f"{net}.{dead}.2000-10-08"
    assert run.read_manifest()["picks"]["details"]["skipped"] == {
        skipped: "every component dead (flat); not picked"
    }
    assert f"{skipped}: picks: every component dead (flat); not picked" in text
    assert summary_of(run)["data_gaps"][skipped].startswith("picks: every component dead")
    rows = pd.DataFrame(summary_of(run)["data_quality"]["stations"]).set_index("station")
    assert rows.loc[f"{net}.{dead}", "flat"] == "HHE, HHN, HHZ"
    assert rows.loc[f"{net}.{dead}", "picks"] == 0
    assert rows.loc[f"{net}.{short}", "truncated"] == "HHN"
    assert rows.loc[f"{net}.{gapped}", "gap_s"] == pytest.approx(600, abs=0.1)
    assert rows.loc[f"{net}.{absent}", "missing"] == "HHE, HHN, HHZ"
    assert rows.loc[f"{net}.{absent}", "data_s"] == 0
    assert rows.loc[f"{net}.{clipped}", "clipped"].startswith("HHE (")
    assert rows.loc[f"{net}.{clipped}", "picks_per_hour"] > 0


def _jitter(st):
    """A dead sensor behind a live digitiser: a constant offset and ±1 count of noise."""
    rng = np.random.default_rng(0)
    for tr in st:
        tr.data = 1234 + rng.integers(0, 2, tr.stats.npts)
    return st


def test_dead_component_is_picked_as_a_missing_one(archive, tmp_path):
    """EQTransformer (the original model) on a 10-minute cut: a dead vertical (±1 count of
    jitter, flat at ``flat_max_ptp`` 1) gives exactly the picks of a vertical with no file,
    as EQTransformer's predictor fills a missing channel with zeros; fed as data (threshold
    0) the jitter would be standardised into the network's input."""
    from pipeline.picking import PickerConfig, load_eqt
    from pipeline.picking.preprocess import preprocess_stream
    from pipeline.picking.stage import pick_span
    from pipeline.picking.windows import standardised_windows

    station = station_codes(archive)[0]
    net = network_dir(archive).name
    dead_sds = copy_archive(archive, tmp_path / "dead")
    rewrite(day_file(dead_sds, station, "HHZ"), _jitter)
    missing_sds = copy_archive(archive, tmp_path / "missing")
    day_file(missing_sds, station, "HHZ").unlink()

    def reader(sds):
        return lambda t0, t1: read_station(sds, net, station, "", "HH", t0, t1)

    raw = reader(dead_sds)(T0, T0 + 600)
    fed = preprocess_stream(raw.copy(), station)
    assert fed.dead == () and np.std(standardised_windows(fed.data, np.array([0]))[0, :, 2]) > 0.5
    record = preprocess_stream(raw, station, flat_max_ptp=1)
    assert record.dead == ("Z",) and record.channels[2] is None and record.live
    assert not record.data[:, 2].any() and "HHZ dead (flat)" in record.notes[0]

    cfg = PickerConfig(mc_samples=0)
    model = load_eqt()
    codes = (net, station, "")
    dead = pick_span(reader(dead_sds), codes, T0, T0 + 600, cfg, model, flat_max_ptp=1)
    missing = pick_span(reader(missing_sds), codes, T0, T0 + 600, cfg, model)
    assert len(missing) > 0
    pd.testing.assert_frame_equal(dead, missing)


def _dead_between(t0: UTCDateTime, t1: UTCDateTime):
    """A dead sensor from ``t0`` to ``t1``: those samples hold one constant value."""

    def change(st):
        for tr in st:
            i0, i1 = (
                int(round((t - tr.stats.starttime) * tr.stats.sampling_rate)) for t in (t0, t1)
            )
            tr.data[max(i0, 0) : max(i1, 0)] = 4321
        return st

    return change


@pytest.mark.parametrize("live_side", ["before", "after"])
def test_dead_span_beside_live_data_is_not_picked(archive, tmp_path, live_side):
    """A station dead for a whole chunk (a dead day) beside live data (the day before or
    after): the padding read around the chunk holds that live data, and deadness was judged
    with it, so the dead span was filtered and picked (STA/LTA triggers on the filtered
    edge of the live data) and not reported as skipped. Now it is judged on the chunk's own
    span: no chunk picked, one counted dead, no pick."""
    from pipeline.picking import PickerConfig
    from pipeline.picking.stage import SpanStats, pick_span

    station = station_codes(archive)[0]
    net = network_dir(archive).name
    sds = copy_archive(archive, tmp_path / "sds")
    span = (T0 + 900, T0 + 1800) if live_side == "before" else (T0, T0 + 900)
    for channel in ("HHE", "HHN", "HHZ"):
        rewrite(day_file(sds, station, channel), _dead_between(*span))

    def read(t0, t1):
        return read_station(sds, net, station, "", "HH", t0, t1)

    stats = SpanStats()
    picks = pick_span(read, (net, station, ""), *span, PickerConfig(picker="stalta"), stats=stats)
    assert (stats.chunks, stats.dead_chunks) == (0, 1)
    assert picks.empty
    assert any("every component dead" in note for note in stats.notes)


def test_off_rate_channel_is_resampled_wherever_waveforms_are_read(archive, tmp_path):
    sds = copy_archive(archive, tmp_path / "sds")
    # One horizontal of every station at 200 Hz: relocation (dt.cc) and magnitudes read them.
    for path in sorted(sds.glob("2000/*/*/HHE.D/*")):
        rewrite(path, _to_200_hz)
    run = build_direct(write_config(tmp_path, sds, "rate"))
    manifest = run.read_manifest()
    assert manifest["relocation"]["counts"]["dt_ct_s"] > 0  # relocation ran with S data
    assert manifest["magnitude"]["counts"]["events_with_magnitude"] > 0
    # Cross-correlation cuts S windows from both horizontals together, at the station rate.
    station = station_codes(sds)[0]
    net = network_dir(sds).name
    cut = _Archive(sds, StationInfo(station, net, station, "", "HH", 100.0)).cut(
        (T0 + 300).timestamp, (T0 + 305).timestamp, ("N", "E", "1", "2")
    )
    assert cut is not None
    data, _, rate = cut
    assert data.shape == (2, 500) and rate == 100.0
    quality = pd.read_parquet(run.root / "waveforms" / "quality.parquet")
    off = quality[quality["channel"] == "HHE"]
    assert off["reason"].str.contains("sampling rate 200 Hz").all()


def test_reader_brings_the_real_wilz_record_to_one_rate(shared, tmp_path):
    """O2.WILZ with its E channel at 200 Hz and its N channel at 50 Hz reads back aligned."""
    src = shared("data", "continuous", "O2.WILZ")
    stream = read(str(src / "*.mseed"))
    start = max(tr.stats.starttime for tr in stream) + 60
    for tr in stream:
        tr.trim(start, start + 600)
        if tr.stats.channel == "EHE":
            tr.resample(200.0)
        elif tr.stats.channel == "EHN":
            tr.resample(50.0, no_filter=False)
        day = tr.stats.starttime
        folder = tmp_path / f"{day.year}/O2/WILZ/{tr.stats.channel}.D"
        folder.mkdir(parents=True, exist_ok=True)
        tr.data = np.require(np.round(tr.data), np.int32)
        tr.write(
            str(folder / f"O2.WILZ..{tr.stats.channel}.D.{day.year}.{day.julday:03d}"), "MSEED"
        )
    got = read_station(tmp_path, "O2", "WILZ", "", "EH", start + 10, start + 300, 100.0)
    assert sorted(tr.stats.channel for tr in got) == ["EHE", "EHN", "EHZ"]
    assert {tr.stats.sampling_rate for tr in got} == {100.0}
    assert all(abs(tr.stats.starttime - (start + 10)) < 0.01 for tr in got)
    assert np.ptp([tr.stats.npts for tr in got]) <= 1  # the same span, sample for sample
    as_recorded = read_station(tmp_path, "O2", "WILZ", "", "EH", start + 10, start + 300)
    assert {tr.stats.sampling_rate for tr in as_recorded} == {50.0, 100.0, 200.0}
    with pytest.raises(ValueError, match="station code"):
        read_station(tmp_path, "O2", "../X", "", "EH", start, start + 10)


# ------------------------------------------------------------------ 1 and 2: cache, staleness


def _replace_keeping_size_and_mtime(path: Path) -> None:
    """Other data in the same file name, with the same size and modification time."""
    before = path.stat()
    stream = read(str(path))
    for tr in stream:
        tr.data = tr.data[::-1].copy()
    stream.write(str(path), format="MSEED")
    assert path.stat().st_size == before.st_size  # fixed-size records
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_changed_archive_repicks_exactly_the_changed_station_day(
    prefect_server,
    archive,
    tmp_path,
):
    sds = copy_archive(archive, tmp_path / "sds")
    config = str(write_config(tmp_path, sds, "cache"))
    first, _, _ = run_build(config)
    run = RunDir(tmp_path / "runs" / "cache")
    picks_before = pd.read_parquet(run.root / "picks" / "picks.parquet")

    changed = station_codes(sds)[0]
    _replace_keeping_size_and_mtime(day_file(sds, changed, "HHZ"))
    second, runs, _ = run_build(config)
    assert state_counts(runs, "pick_station_day_task") == {
        "Completed": 1,
        "Cached": N_STATIONS - 1,
    }
    picks_after = pd.read_parquet(run.root / "picks" / "picks.parquet")
    same = picks_before["station"] != changed
    assert (
        picks_after[picks_after["station"] != changed]
        .reset_index(drop=True)
        .equals(picks_before[same].reset_index(drop=True))
    )
    assert (
        not picks_after[picks_after["station"] == changed]
        .reset_index(drop=True)
        .equals(picks_before[~same].reset_index(drop=True))
    )
    # Every later stage reran on the new picks and the manifest says all are current.
    assert state_counts(runs, "stage_task") == {"Completed": 5}
    manifest = run.read_manifest()
    assert {manifest[s]["status"] for s in manifest} == {"current"}
    catalog_picks = pd.read_parquet(run.root / "magnitude" / "picks.parquet")
    assert set(catalog_picks["pick_id"]) == set(picks_after["pick_id"])


def test_failed_rebuild_leaves_no_stale_catalog_or_report(
    prefect_server,
    archive,
    tmp_path,
    monkeypatch,
):
    import pipeline.location

    sds = copy_archive(archive, tmp_path / "sds")
    config = str(write_config(tmp_path, sds, "stale"))
    run_build(config)
    run = RunDir(tmp_path / "runs" / "stale")
    assert (run.root / "catalog" / "catalog.csv").is_file()

    def broken(*args, **kwargs):
        raise RuntimeError("locator broke")

    import flows.build
    from flows.build import build_catalog

    monkeypatch.setattr(pipeline.location, "locate", broken)
    # The broken locator is retried once, as any stage is, 0.1 s later instead of 5 s.
    short_delay = flows.build.stage_task.with_options(retry_delay_seconds=0.1)
    monkeypatch.setattr(flows.build, "stage_task", short_delay)
    station = station_codes(sds)[1]
    rewrite(day_file(sds, station, "HHZ"), _zero)

    state = build_catalog(config, return_state=True)
    assert state.is_failed()
    for rel in (
        "location/locations.parquet",
        "relocation/relocations.parquet",
        "magnitude/magnitudes.parquet",
        "catalog/catalog.csv",
        "catalog/catalog.xml",
        "report/index.html",
    ):
        assert not (run.root / rel).exists(), rel
    manifest = run.read_manifest()
    assert manifest["picks"]["status"] == manifest["association"]["status"] == "current"
    for stage in ("location", "relocation", "magnitude", "catalog", "report"):
        assert manifest[stage]["status"] == "stale", stage
    # A later stage alone refuses the stale inputs and names the stage to rebuild from.
    monkeypatch.undo()
    state = build_catalog(config, stage="report", return_state=True)
    assert state.is_failed()
    message = str(state.message)
    assert "stage 'location' is stale" in message and "--from locate" in message, message
    resumed, _, _ = run_build(config, from_stage="locate")
    assert (run.root / "report" / "index.html").is_file()
    assert {m["status"] for m in run.read_manifest().values()} == {"current"}
    assert resumed["report"]["counts"]["events"] >= 0


def test_a_sensor_dead_for_part_of_a_chunk_is_a_gap_there(archive, tmp_path):
    """Every component of a station holds one value for 10 minutes inside a 30-minute chunk
    (it died and came back). The chunk as a whole is live, so the dead stretch was filtered
    with the live data around it (a step that rings through the band-pass) and picked as data
    (STA/LTA triggered at its edges). Now a stretch at least one model window long that is
    flat by the dead-channel rule is cut out like a gap: no pick in it, and a note names it."""
    from pipeline.picking import PickerConfig
    from pipeline.picking.stage import SpanStats, pick_span

    station = station_codes(archive)[0]
    net = network_dir(archive).name
    sds = copy_archive(archive, tmp_path / "sds")
    dead = (T0 + 600, T0 + 1200)
    for channel in ("HHE", "HHN", "HHZ"):
        rewrite(day_file(sds, station, channel), _dead_between(*dead))

    def read(t0, t1):
        return read_station(sds, net, station, "", "HH", t0, t1)

    stats = SpanStats()
    cfg = PickerConfig(picker="stalta")
    picks = pick_span(read, (net, station, ""), T0, T0 + 1800, cfg, stats=stats)
    times = pd.to_datetime(picks["time"], utc=True)
    inside = (times >= pd.Timestamp(dead[0].datetime, tz="UTC")) & (
        times <= pd.Timestamp(dead[1].datetime, tz="UTC")
    )
    assert not picks.empty and not inside.any(), picks[inside]
    flat_notes = [n for n in stats.notes if "dead (flat) within the data" in n]
    assert len(flat_notes) == 3 and all("600 s" in n for n in flat_notes), stats.notes
