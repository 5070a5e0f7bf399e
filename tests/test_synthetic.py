"""The synthetic scenario generator: sequence statistics, files, truth and amplitudes."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from obspy import UTCDateTime, read, read_inventory
from obspy.clients.filesystem.sds import Client as SDSClient

from pipeline.magnitude import AmplitudeMeter, MagnitudeConfig, hutton_boore_ml
from pipeline.synthetic import ScenarioConfig, generate_scenario, preset
from pipeline.synthetic.noise import station_noise
from pipeline.synthetic.picks import arrival_picks, generated_stations, picks_table
from pipeline.synthetic.sequence import (
    Fault,
    degrees_to_offsets,
    fault_hypocentres,
    omori_cumulative,
    simulate_sequence,
    spaced_times_s,
)
from pipeline.synthetic.stations import epicentral_km, scenario_stations
from pipeline.synthetic.waveforms import LEAD_S, synthesize_pairs
from pipeline.velocity import load_velocity_model, travel_time
from pipeline.waveforms.inventory import STATION_COLUMNS, read_stations_csv


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """30 minutes on the 8 stations nearest the fault, one day after the mainshock."""
    out = tmp_path_factory.mktemp("scenario")
    cfg = preset("smoke", duration_s=1800.0, max_stations=8)
    summary = generate_scenario(out, cfg)
    return out, cfg, summary


def test_sequence_follows_omori_gr_and_fault():
    cfg = ScenarioConfig(
        start_time=datetime(2000, 10, 6, 6, 0, tzinfo=UTC), duration_s=20 * 86400, omori_k=500
    )
    cat = simulate_sequence(cfg)
    t = (cat.origin_time - pd.Timestamp(cfg.mainshock_time)).dt.total_seconds() / 86400
    t_end = (cfg.end_time - cfg.mainshock_time).total_seconds() / 86400
    edges = np.array([t.min(), 0.5, 2.0, 6.0, t_end])
    expected = np.diff(omori_cumulative(edges, cfg.omori_k, cfg.omori_c_days, cfg.omori_p))
    observed = np.histogram(t, edges)[0]
    assert np.all(np.abs(observed - expected) < 4 * np.sqrt(expected) + 1)
    m = cat.magnitude.to_numpy()
    b = math.log10(math.e) / (m.mean() - cfg.magnitude_min)  # Aki (continuous magnitudes)
    assert b == pytest.approx(cfg.b_value, abs=0.05)
    assert m.min() >= cfg.magnitude_min and m.max() <= cfg.magnitude_max
    assert cat.depth_km.between(cfg.depth_min_km, cfg.depth_max_km).all()
    # epicentres lie along the N150°E strike: across-strike spread << along-strike spread
    east = (cat.longitude - cfg.fault_longitude) * 111.195 * math.cos(math.radians(35.27))
    north = (cat.latitude - cfg.fault_latitude) * 111.195
    strike = math.radians(cfg.fault_strike_deg)
    along = east * math.sin(strike) + north * math.cos(strike)
    across = east * math.cos(strike) - north * math.sin(strike)
    assert along.abs().max() < cfg.fault_length_km / 2 + 4 * cfg.scatter_km
    assert across.std() == pytest.approx(cfg.scatter_km, rel=0.2)


def test_generated_picks_are_model_arrivals_plus_bounded_errors():
    """The shared pieces of the association / relocation generators."""
    rng = np.random.default_rng(0)
    model = load_velocity_model("tottori")
    east, north = rng.uniform(-30, 30, (2, 10))
    stations = generated_stations(35.27, 133.35, east, north, rng.uniform(0, 500, 10))
    assert list(stations.columns) == STATION_COLUMNS
    assert stations.station.is_unique and (stations.network == "SY").all()
    assert np.allclose(
        degrees_to_offsets(35.27, 133.35, stations.latitude, stations.longitude), [east, north]
    )
    origin_s = spaced_times_s(rng, 200, 10.0, 8.0)
    assert origin_s[0] == 0 and np.all(np.diff(origin_s) >= 0)
    assert np.mean(np.diff(origin_s)) == pytest.approx(10.0, rel=0.05)
    events = fault_hypocentres(rng, 200, Fault(35.27, 133.35, 150.0, 90.0, 30.0, 2.0, 16.0, 1.0))
    events["origin_time"] = pd.Timestamp("2000-10-06", tz="UTC") + pd.to_timedelta(origin_s, "s")
    rows = arrival_picks(rng, events, stations, model, (0.03, 0.05))
    assert len(rows) == 2 * 200 * 10
    row = rows.iloc[2 * 10 * 17 + 2 * 4 + 1]  # event 17, station 4, S
    assert (row.event, row.station, row.phase) == (17, 4, "S")
    ev, sta = events.iloc[17], stations.iloc[4]
    dist = epicentral_km(ev.latitude, ev.longitude, sta.latitude, sta.longitude)
    expected = travel_time(model, "S", dist, ev.depth_km) + sta.elevation_m / 1e3 / model.vs_km_s[0]
    assert (row.arrival - ev.origin_time).total_seconds() == pytest.approx(expected, abs=1e-6)
    for phase, sigma in (("P", 0.03), ("S", 0.05)):
        of = rows[rows.phase == phase]
        error = (of.time - of.arrival).dt.total_seconds()
        assert error.std() == pytest.approx(sigma, rel=0.1)
        assert error.abs().max() <= 4 * sigma + 1e-9 and (of.time_std_s == sigma).all()
    picks = picks_table(
        rows.assign(probability=0.7, probability_std=0.0, detection_probability=0.9), stations
    )
    assert picks.pick_id.is_unique and str(picks.time.dtype) == "datetime64[ns, UTC]"
    assert (picks.station.to_numpy() == stations.station.to_numpy()[rows.station]).all()
    assert (picks.detection_start < picks.time).all() and (picks.time < picks.detection_end).all()


def test_files_layout_and_metadata(scenario):
    out, cfg, summary = scenario
    stations = read_stations_csv(out / "waveforms" / "stations.csv")
    assert list(stations.columns) == STATION_COLUMNS
    assert len(stations) == 8 == summary.n_stations
    assert set(stations.network) == {"XX"} and (stations.channel_prefix == "HH").all()
    inv = read_inventory(str(out / "waveforms" / "inventory.xml"))
    assert len(inv.get_contents()["channels"]) == 24
    sens = inv.get_response("XX.X02..HHZ", UTCDateTime(cfg.start_time)).instrument_sensitivity
    assert sens.value == pytest.approx(cfg.sensitivity) and sens.input_units == "M/S"
    files = sorted((out / "waveforms" / "2000" / "XX").glob("*/*.D/*"))
    assert len(files) == 24 and files[0].name.endswith(".2000.281")  # 2000-10-07
    st = read(str(files[0]))
    assert st[0].stats.sampling_rate == 100.0 and st[0].data.dtype == np.int32
    assert not list((out / "waveforms").rglob(".*"))  # no temporaries left behind
    record = json.loads((out / "truth" / "scenario.json").read_text())
    assert record["config"]["seed"] == cfg.seed and record["summary"]["n_events"] > 100
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["synthetic"]["counts"]["events"] == summary.n_events


def test_truth_picks_are_model_arrivals(scenario):
    out, cfg, _ = scenario
    cat = pd.read_csv(out / "truth" / "catalog.csv", parse_dates=["origin_time"])
    picks = pd.read_csv(out / "truth" / "picks.csv", parse_dates=["time"])
    stations = scenario_stations(cfg).set_index("station")
    model = load_velocity_model("tottori")
    assert len(picks) == 2 * len(cat) * len(stations)
    sample = picks.sample(50, random_state=0).merge(cat, on="event_id")
    for row in sample.itertuples():
        sta = stations.loc[row.station]
        depth = row.depth_km
        tt = travel_time(model, row.phase, row.distance_km, depth)
        v_top = model.vp_km_s[0] if row.phase == "P" else model.vs_km_s[0]
        tt += sta.elevation_m / 1000 / v_top
        got = (row.time - row.origin_time).total_seconds()
        assert got == pytest.approx(float(tt), abs=2e-3)


def test_same_seed_same_bytes(tmp_path):
    cfg = preset("smoke", duration_s=300.0, max_stations=2, gaps_per_day=0)
    a = generate_scenario(tmp_path / "a", cfg)
    b = generate_scenario(tmp_path / "b", cfg, workers=2)  # stations in two processes
    assert a.n_events == b.n_events
    for name in ("truth/catalog.csv", "truth/picks.csv", "waveforms/inventory.xml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    fa = sorted((tmp_path / "a" / "waveforms").rglob("*.D/*"))
    fb = sorted((tmp_path / "b" / "waveforms").rglob("*.D/*"))
    assert [p.read_bytes() for p in fa] == [p.read_bytes() for p in fb]


def test_interrupted_generation_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    from pipeline.synthetic import scenario as scenario_module

    cfg = preset(  # two UTC days (chunks) on two stations
        "smoke",
        start_time=datetime(2000, 10, 7, 23, 40, tzinfo=UTC),
        duration_s=1800.0,
        max_stations=2,
    )
    generate_scenario(tmp_path / "a", cfg)
    write_day = scenario_module._write_station_day
    calls = []

    def crash_on_fourth(*args):
        calls.append(args[2])
        if len(calls) == 4:
            raise RuntimeError("simulated crash")
        return write_day(*args)

    monkeypatch.setattr(scenario_module, "_write_station_day", crash_on_fourth)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_scenario(tmp_path / "b", cfg)
    monkeypatch.setattr(scenario_module, "_write_station_day", write_day)
    done = sorted((tmp_path / "b" / "waveforms").rglob("*.D/*"))
    assert len(done) == 9  # three station-days of three channels before the crash
    mtimes = [p.stat().st_mtime_ns for p in done]
    generate_scenario(tmp_path / "b", cfg)
    assert [p.stat().st_mtime_ns for p in done] == mtimes  # loaded, not generated again
    assert not (tmp_path / "b" / "truth" / "partial").exists()
    for name in ("truth/catalog.csv", "truth/picks.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    fa = sorted((tmp_path / "a" / "waveforms").rglob("*.D/*"))
    fb = sorted((tmp_path / "b" / "waveforms").rglob("*.D/*"))
    assert len(fa) == 12
    assert [p.read_bytes() for p in fa] == [p.read_bytes() for p in fb]


def test_onsets_are_causal_and_p_on_vertical():
    cfg = ScenarioConfig()
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame(
        {
            "magnitude": [1.0, 2.5, 3.5],
            "hypo_km": [15.0, 30.0, 50.0],
            "azimuth_deg": [30.0, 120.0, 250.0],
            "t_p": [2.6, 5.2, 8.4],
            "t_s": [4.5, 8.9, 14.4],
        }
    )
    vel, p_peak, s_peak = synthesize_pairs(rng, pairs, 8192, cfg)
    onset = int(LEAD_S * cfg.sampling_rate)
    assert np.all(vel[:, :, :onset] == 0)  # nothing before the true P arrival
    assert np.all(np.abs(vel[:, :, onset + 2 : onset + 50]).max(axis=-1) > 0)
    i_s = (LEAD_S + pairs.t_s - pairs.t_p).to_numpy() * cfg.sampling_rate
    for k in range(3):
        p_part = np.abs(vel[k, :, onset : int(i_s[k])]).max(axis=-1)
        assert p_part[2] > p_part[0] and p_part[2] > p_part[1]  # P strongest on Z
    assert np.all(s_peak > p_peak)  # S larger than P


def test_noise_diurnal_and_level():
    cfg = ScenarioConfig(glitches_per_day=0)
    rng = np.random.default_rng(1)
    n = 60_000
    day = station_noise(rng, datetime(2000, 10, 7, 5, 0, tzinfo=UTC), n, 1e-7, cfg)  # 14 h JST
    night = station_noise(rng, datetime(2000, 10, 7, 17, 0, tzinfo=UTC), n, 1e-7, cfg)  # 02 h
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [1.0, 45.0], "bandpass", fs=100.0, output="sos")
    rms_day = np.sqrt(np.mean(sosfiltfilt(sos, day[2]) ** 2))
    rms_night = np.sqrt(np.mean(sosfiltfilt(sos, night[2]) ** 2))
    assert rms_day == pytest.approx(1.3e-7, rel=0.15)
    assert rms_day / rms_night == pytest.approx(1.3 / 0.7, rel=0.15)


def test_magnitudes_recoverable_by_the_ml_stage(scenario):
    """The ML stage's own amplitude meter recovers the true magnitudes of clear events."""
    out, cfg, _ = scenario
    mcfg = MagnitudeConfig()
    meter = AmplitudeMeter(read_inventory(str(out / "waveforms" / "inventory.xml")), mcfg)
    sds = SDSClient(str(out / "waveforms"))
    cat = pd.read_csv(out / "truth" / "catalog.csv").set_index("event_id")
    picks = pd.read_csv(out / "truth" / "picks.csv")
    s_picks = picks[(picks.phase == "S") & (picks.snr > 20) & ~picks.in_gap]
    s_picks = s_picks[s_picks.event_id.map(cat.magnitude) >= 1.3]
    diffs = []
    for p in s_picks.itertuples():
        t_s = UTCDateTime(p.time)
        st = sds.get_waveforms(p.network, p.station, "", "HH?", t_s - 21, t_s + 31)
        amp, _, n = meter.station_amplitude(st, (t_s - 1, t_s + 10))
        if n == 2:
            ev = cat.loc[p.event_id]
            r = math.hypot(p.distance_km, ev.depth_km)
            diffs.append(float(hutton_boore_ml(amp, r, mcfg)) - ev.magnitude)
    assert len(diffs) >= 20
    assert np.median(diffs) == pytest.approx(0.0, abs=0.15)  # noise adds ~0.1 near M 1.5
    assert np.std(diffs) < 2.5 * cfg.magnitude_scatter


def test_eqtransformer_picks_the_scenario_events(shared, tmp_path):
    """The pretrained EQTransformer, run by the picking stage, finds the clear arrivals.

    Measured on this scenario (30 min, 8 stations, 3 days after the mainshock, ~2 events per
    minute; the tottori model's JMA2001 layers): recall of true arrivals with snr >= 50 (peak
    velocity over noise rms) 1.0 for P (7 arrivals) and 0.79 for S (43), 0.79 / 0.61 at snr
    20–50; precision 0.87 / 1.0; picks 0.01 s (P) and 0.03 s (S) late on average. P precision
    in three such windows (05:00, 06:00, 07:00) 0.87–0.94, with the previous hand-rounded model
    0.90–0.94: the unmatched P picks lie 0.6–1.1 s from weak true P arrivals (snr < 11),
    outside the 0.5 s match tolerance. Missed clear S arrivals belong to events
    whose P is weak (snr 7–17) and that overlap other aftershocks; isolated events are found
    at ~97 % from S snr 50 (and real NCEDC events scaled into this noise at ~90 %).
    """
    from pipeline.picking.params import PickerConfig
    from pipeline.picking.stage import pick_all
    from pipeline.rundir import RunDir
    from pipeline.score import score_run

    weights = shared("models", "eqt", "EqT_conservative.keras")
    cfg = preset(
        "smoke",
        start_time=datetime(2000, 10, 9, 5, 0, tzinfo=UTC),
        duration_s=1800.0,
        max_stations=8,
    )
    generate_scenario(tmp_path, cfg)
    stations = read_stations_csv(tmp_path / "waveforms" / "stations.csv")
    pick_all(RunDir(tmp_path), PickerConfig(weights=weights), stations, [cfg.start_time.date()])
    score = score_run(tmp_path, tmp_path / "truth")
    p, s = score["picks"]["P"], score["picks"]["S"]
    high = p["n_true_high_snr"] + s["n_true_high_snr"]
    assert high >= 40
    pooled = (
        p["recall_high_snr"] * p["n_true_high_snr"] + s["recall_high_snr"] * s["n_true_high_snr"]
    ) / high
    assert pooled >= 0.55  # measured 0.82
    mid_p = next(b for b in p["recall_by_snr"] if b["snr_low"] == 20.0)
    assert mid_p["recall"] >= 0.45  # measured 0.79
    assert 0.0 <= p["mean_s"] < 0.06 and p["mae_s"] < 0.08  # measured 0.007, 0.043
    assert 0.0 <= s["mean_s"] < 0.1 and s["mae_s"] < 0.1  # measured 0.029, 0.033
    assert p["precision"] > 0.85 and s["precision"] > 0.9  # measured 0.87, 1.0


def test_neighbouring_events_have_similar_waveforms():
    """Events of one source cell correlate at a station (for dt.cc); others do not."""
    cfg = ScenarioConfig(magnitude_scatter=0)
    pairs = pd.DataFrame(
        {
            "magnitude": [1.5, 1.7, 1.6],
            "hypo_km": [15.0, 15.3, 15.0],
            "azimuth_deg": [30.0, 31.0, 30.0],
            "t_p": [2.6, 2.65, 2.6],
            "t_s": [4.5, 4.58, 4.5],
            "station": [0, 0, 0],
            "cell": [1, 1, 2],
        }
    )
    vel, _, _ = synthesize_pairs(np.random.default_rng(0), pairs, 4096, cfg)

    def max_cc(a, b):
        return max(
            float(np.dot(a[10:-10], np.roll(b, k)[10:-10]) / np.linalg.norm(a) / np.linalg.norm(b))
            for k in range(-10, 11)
        )

    p = slice(200, 380)  # P window on Z (onset at LEAD_S = 2 s)
    assert max_cc(vel[0, 2, p], vel[1, 2, p]) > 0.6
    assert max_cc(vel[0, 2, p], vel[2, 2, p]) < 0.45
