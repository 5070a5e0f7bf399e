"""Local magnitudes on generated waveforms whose Wood–Anderson peaks follow Hutton & Boore."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from obspy import Stream, Trace, UTCDateTime, read, read_inventory
from obspy.core.inventory import Channel, Inventory, Network, Response, Station

from pipeline.magnitude import (
    WOOD_ANDERSON_POLES,
    WOOD_ANDERSON_ZEROS,
    AmplitudeMeter,
    MagnitudeConfig,
    censored_median,
    compute_magnitudes,
    event_magnitudes,
    has_responses,
    hutton_boore_ml,
    median_mad,
    read_events,
    watanabe_m,
)
from pipeline.rundir import RunDir

FS = 100.0
VP, VS = 6.0, 3.5
# Broadband-like seismometer: flat to ground velocity above ~0.02 Hz.
INST_POLES = [-0.037 + 0.037j, -0.037 - 0.037j]
INST_GAIN = 1.0e9  # counts per m/s
WA_GAIN = 2080.0
START = UTCDateTime("2000-10-06T00:00:00")
STATIONS = {  # code: (lat, lon)
    "ST01": (35.30, 133.35),
    "ST02": (35.40, 133.20),
    "ST03": (35.10, 133.60),
    "ST04": (35.70, 133.00),
    "ST05": (34.90, 133.90),
    "ST06": (35.95, 133.40),
}
EVENTS = [  # origin offset s, lat, lon, depth km, magnitude
    (60.0, 35.27, 133.35, 10.0, 1.2),
    (360.0, 35.30, 133.30, 8.0, 2.1),
    (660.0, 35.25, 133.40, 12.0, 2.9),
    (960.0, 35.35, 133.33, 9.0, 3.6),
    (1260.0, 35.28, 133.38, 11.0, 1.7),
]


def _h(freqs: np.ndarray, poles: list[complex], n_zeros: int, gain: float) -> np.ndarray:
    """Laplace-domain response gain * s^n_zeros / prod(s - p) at ``freqs`` (Hz)."""
    s = 2j * np.pi * freqs
    out = gain * s**n_zeros
    for p in poles:
        out = out / (s - p)
    return out


def _wavelet(t: np.ndarray, t_s: float, freq: float) -> np.ndarray:
    """Ground displacement (arbitrary units): a Gabor pulse starting at S."""
    return np.exp(-(((t - t_s - 1.0) / 0.6) ** 2)) * np.sin(2 * np.pi * freq * (t - t_s))


def _distance_km(ev, lat, lon) -> float:
    from obspy.geodetics import gps2dist_azimuth

    epi = gps2dist_azimuth(ev[1], ev[2], lat, lon)[0] / 1000.0
    return math.hypot(epi, ev[3])


def build_run(
    root, drop_s_station: str = "ST03", noise: dict[str, float] | None = None
) -> tuple[RunDir, dict]:
    """A run directory with SDS waveforms, inventory, stations, picks, events, assignments.

    White noise is added with a standard deviation of ``noise[station]`` (default 1e-3)
    times the peak counts of the station's weakest event signal.

    Returns the run and the true peak horizontal ground velocity (cm/s, mean of E and N)
    per (event index, station).
    """
    run = RunDir(root)
    n = int(1600 * FS)
    t = np.arange(n) / FS
    freqs = np.fft.rfftfreq(n, 1 / FS)
    h_wa = _h(freqs, WOOD_ANDERSON_POLES, 2, WA_GAIN)  # displacement -> WA displacement
    h_inst = _h(freqs, INST_POLES, 3, INST_GAIN)  # displacement -> counts (velocity-flat)
    rng = np.random.default_rng(0)
    channels, picks, assignments, true_vel = [], [], [], {}
    stream = Stream()
    for code, (lat, lon) in STATIONS.items():
        counts = {c: np.zeros(n) for c in "ENZ"}
        smallest = []  # peak counts of each event's signal: the noise is 1e-3 of the least
        for k, ev in enumerate(EVENTS):
            r = _distance_km(ev, lat, lon)
            t_p, t_s = ev[0] + r / VP, ev[0] + r / VS
            target_mm = 10 ** (ev[4] - 3.0 - 1.110 * math.log10(r / 100) - 0.00189 * (r - 100))
            vel_peaks = []
            for comp, f0 in (("E", 3.0), ("N", 5.0)):
                u = np.fft.rfft(_wavelet(t, t_s, f0))
                wa_peak = np.abs(np.fft.irfft(u * h_wa, n)).max() * 1000.0  # mm
                u *= target_mm / wa_peak
                signal = np.fft.irfft(u * h_inst, n)
                smallest.append(np.abs(signal).max())
                counts[comp] += signal
                vel_peaks.append(np.abs(np.fft.irfft(u * 2j * np.pi * freqs, n)).max() * 100)
            true_vel[(k, code)] = float(np.mean(vel_peaks))
            eid = f"ev{k:03d}"
            for phase, when in (("P", t_p), ("S", t_s)):
                if phase == "S" and code == drop_s_station:
                    continue
                pid = f"{code}-{k}-{phase}"
                picks.append(
                    {
                        "pick_id": pid,
                        "network": "XX",
                        "station": code,
                        "location": "",
                        "phase": phase,
                        "time": pd.Timestamp((START + when).datetime, tz="UTC"),
                        "probability": 0.9,
                        "time_std_s": 0.05,
                    }
                )
                assignments.append({"event_id": eid, "pick_id": pid, "phase": phase})
        noise_std = (noise or {}).get(code, 1e-3) * min(smallest)
        for comp, data in counts.items():
            header = {
                "network": "XX",
                "station": code,
                "location": "",
                "channel": f"HH{comp}",
                "sampling_rate": FS,
                "starttime": START,
            }
            stream.append(Trace(data + noise_std * rng.standard_normal(n), header=header))
        channels.append(
            Station(
                code,
                lat,
                lon,
                100.0,
                channels=[
                    Channel(
                        f"HH{comp}",
                        "",
                        lat,
                        lon,
                        100.0,
                        0.0,
                        azimuth={"E": 90.0, "N": 0.0, "Z": 0.0}[comp],
                        dip=-90.0 if comp == "Z" else 0.0,
                        sample_rate=FS,
                        response=Response.from_paz(
                            [0j, 0j],
                            INST_POLES,
                            INST_GAIN,
                            input_units="M/S",
                            output_units="COUNTS",
                        ),
                    )
                    for comp in "ENZ"
                ],
            )
        )
    for tr in stream:
        s = tr.stats
        folder = run.stage_dir("waveforms") / "2000" / "XX" / s.station / f"{s.channel}.D"
        folder.mkdir(parents=True, exist_ok=True)
        tr.write(
            str(folder / f"XX.{s.station}..{s.channel}.D.2000.280"),
            format="MSEED",
            encoding="FLOAT64",
        )
    inv = Inventory(networks=[Network("XX", stations=channels)], source="test")
    inv.write(str(run.path("waveforms", "inventory.xml")), format="STATIONXML")
    pd.DataFrame(
        [
            {
                "network": "XX",
                "station": c,
                "location": "",
                "channel_prefix": "HH",
                "latitude": la,
                "longitude": lo,
                "elevation_m": 0.0,
                "sampling_rate": FS,
            }
            for c, (la, lo) in STATIONS.items()
        ]
    ).to_csv(run.path("waveforms", "stations.csv"), index=False)
    pd.DataFrame(picks).to_parquet(run.path("picks", "picks.parquet"), index=False)
    pd.DataFrame(assignments).to_parquet(run.path("association", "assignments.parquet"))
    events = pd.DataFrame(
        [
            {
                "event_id": f"ev{k:03d}",
                "origin_time": pd.Timestamp((START + ev[0]).datetime, tz="UTC"),
                "latitude": ev[1],
                "longitude": ev[2],
                "depth_km": ev[3],
            }
            for k, ev in enumerate(EVENTS)
        ]
    )
    events.to_parquet(run.path("location", "locations.parquet"), index=False)
    return run, true_vel


def test_formulas():
    # Definition of ML: 1 mm at 100 km is ML 3; Hutton & Boore at 17 km, 0.1 mm.
    assert hutton_boore_ml(1.0, 100.0) == pytest.approx(3.0)
    expected = math.log10(0.1) + 1.110 * math.log10(0.17) + 0.00189 * (17 - 100) + 3.0
    assert hutton_boore_ml(0.1, 17.0) == pytest.approx(expected)
    # Watanabe (1971): 0.85 M - 2.50 = log A + 1.73 log r.
    m = watanabe_m(1e-3, 50.0)
    assert 0.85 * m - 2.50 == pytest.approx(-3.0 + 1.73 * math.log10(50.0))
    assert median_mad(np.array([1.0, 2.0, 4.0, np.nan])) == (2.0, 1.0)


@pytest.mark.parametrize(
    "values, n_below, expected",
    [
        ([1.0, 2.0, 3.0], 0, 2.0),
        ([1.0, 2.0, 3.0], 1, 1.5),  # sorted: (c, 1, 2, 3) -> (1 + 2) / 2
        ([1.0, 2.0, 3.0], 2, 1.0),  # (c, c, 1, 2, 3) -> 1
        ([1.0, 2.0, 3.0], 3, math.nan),  # the median falls on a censored value
        ([], 0, math.nan),
    ],
)
def test_censored_median(values, n_below, expected):
    got = censored_median(np.array(values), n_below)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_event_magnitude_counts_stations_below_the_noise():
    """A station below the noise pulls the median down ('censor'), is left out ('drop'),
    and an event mostly below the noise keeps the median of its measured stations."""
    rows = [("a", m, True) for m in (1.0, 1.2, 1.4)] + [("a", np.nan, False)]
    rows += [("b", 2.0, True), ("b", np.nan, False), ("b", np.nan, False)]
    measured = pd.DataFrame(rows, columns=["event_id", "station_magnitude", "used"])
    censor = event_magnitudes(measured, MagnitudeConfig()).set_index("event_id")
    drop = event_magnitudes(measured, MagnitudeConfig(below_noise="drop")).set_index("event_id")
    assert censor.loc["a", "magnitude"] == pytest.approx(1.1)
    assert drop.loc["a", "magnitude"] == pytest.approx(1.2)
    assert censor.loc["b", "magnitude"] == drop.loc["b", "magnitude"] == 2.0
    assert censor["n_below_noise"].to_dict() == {"a": 1, "b": 2}
    assert censor["n_stations"].to_dict() == {"a": 3, "b": 1}


def test_watanabe_worked_numbers():
    """Worked by hand from log10 A = 0.85 M - 2.50 - 1.73 log10 r (A cm/s, r km), the form
    of Watanabe (1971) in AI4EPS/GaMMA gamma/seismic_ops.py (commit f6b1ac7)."""
    # M 1.0 at 10 km: 0.85 - 2.50 - 1.73 = -3.38; M 3.0 at 100 km: 2.55 - 2.50 - 3.46 = -3.41;
    # M 2.0 at 20 km: 1.70 - 2.50 - 1.73 x 1.30103 = -3.050782.
    worked = [(10**-3.38, 10.0, 1.0), (10**-3.41, 100.0, 3.0), (10**-3.050782, 20.0, 2.0)]
    for amplitude_cm_s, r_km, magnitude in worked:
        assert watanabe_m(amplitude_cm_s, r_km) == pytest.approx(magnitude, abs=1e-6)


def test_recovers_magnitudes(tmp_path):
    run, _ = build_run(tmp_path / "run")
    entry = compute_magnitudes(run, MagnitudeConfig(vp_vs=VP / VS))
    mags = pd.read_parquet(run.root / "magnitude" / "magnitudes.parquet")
    truth = pd.Series({f"ev{k:03d}": ev[4] for k, ev in enumerate(EVENTS)})
    errors = (mags.set_index("event_id")["magnitude"] - truth).abs()
    assert len(mags) == len(EVENTS) and entry["counts"]["events_with_magnitude"] == len(EVENTS)
    assert errors.median() <= 0.1, errors.to_dict()
    assert errors.max() <= 0.02, errors.to_dict()
    assert (mags["n_stations"] == len(STATIONS)).all()
    assert (mags["magnitude_type"] == "ML").all()
    assert (mags["magnitude_mad"] < 0.02).all()

    stations = pd.read_parquet(run.root / "magnitude" / "station_magnitudes.parquet")
    assert len(stations) == len(EVENTS) * len(STATIONS)
    assert (stations["amplitude_unit"] == "mm").all()
    # ST03 has no S picks: its amplitude sits on the P pick, S predicted from P.
    st03 = stations[stations["station"] == "ST03"]
    assert st03["pick_id"].str.endswith("-P").all()
    picks = pd.read_parquet(run.root / "magnitude" / "picks.parquet")
    with_amp = picks.dropna(subset=["amplitude"])
    assert len(with_amp) == len(stations)
    assert set(with_amp["pick_id"]) == set(stations["pick_id"])


def test_velocity_amplitudes_match_ground_truth(tmp_path):
    """JMA-style option: the measured peak velocity is the generated ground velocity."""
    run, true_vel = build_run(tmp_path / "run")
    compute_magnitudes(run, MagnitudeConfig(method="watanabe", vp_vs=VP / VS))
    stations = pd.read_parquet(run.root / "magnitude" / "station_magnitudes.parquet")
    assert (stations["amplitude_unit"] == "cm/s").all()
    ratios = [
        row.amplitude / true_vel[(int(row.event_id[2:]), row.station)]
        for row in stations.itertuples()
    ]
    assert np.median(ratios) == pytest.approx(1.0, abs=0.01)
    assert np.all(np.abs(np.array(ratios) - 1) < 0.02)
    mags = pd.read_parquet(run.root / "magnitude" / "magnitudes.parquet")
    assert (mags["magnitude_type"] == "MJMA-vel").all()


def test_missing_inputs_named(tmp_path):
    run = RunDir(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="locations.parquet"):
        compute_magnitudes(run)


def test_wood_anderson_matches_obspy_remove_response_and_simulate(tmp_path):
    """The cached frequency-domain path equals ObsPy's remove_response + simulate."""
    run, _ = build_run(tmp_path / "run")
    inv = read_inventory(str(run.root / "waveforms" / "inventory.xml"))
    path = run.root / "waveforms" / "2000" / "XX" / "ST02" / "HHN.D" / "XX.ST02..HHN.D.2000.280"
    t_s = START + EVENTS[2][0] + 8.0
    raw = read(str(path), starttime=t_s - 25, endtime=t_s + 35)[0]
    cfg = MagnitudeConfig()
    ours = AmplitudeMeter(inv, cfg).convert(raw)
    ref = raw.copy()
    ref.detrend("demean")
    ref.detrend("linear")
    ref.remove_response(inventory=inv, output="DISP", pre_filt=cfg.pre_filt_hz, water_level=None)
    wa = {
        "poles": WOOD_ANDERSON_POLES,
        "zeros": WOOD_ANDERSON_ZEROS,
        "gain": 1.0,
        "sensitivity": cfg.wood_anderson_gain,
    }
    ref.simulate(paz_simulate=wa, taper=False)
    middle = slice(len(ours) // 4, 3 * len(ours) // 4)
    peak = np.abs(ref.data[middle]).max() * 1000.0
    assert np.abs(ours[middle]).max() == pytest.approx(peak, rel=0.01)
    assert np.abs(ours[middle] - ref.data[middle] * 1000.0).max() < 0.02 * peak


def test_transfer_caches_stay_bounded(tmp_path, monkeypatch):
    """Windows of many lengths keep at most CACHE_SIZE transfer functions, results unchanged."""
    run, _ = build_run(tmp_path / "run")
    inv = read_inventory(str(run.root / "waveforms" / "inventory.xml"))
    path = run.root / "waveforms" / "2000" / "XX" / "ST02" / "HHN.D" / "XX.ST02..HHN.D.2000.280"
    raw = read(str(path))[0]
    monkeypatch.setattr(AmplitudeMeter, "CACHE_SIZE", 3)
    meter = AmplitudeMeter(inv, MagnitudeConfig())
    windows = [raw.slice(raw.stats.starttime, raw.stats.starttime + s) for s in range(20, 80, 7)]
    first = [meter.convert(w) for w in windows]
    assert len(meter._transfers) == 3 and len(meter._responses) == 1
    again = [meter.convert(w) for w in windows]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_reads_an_archive_outside_the_run(tmp_path):
    """A build with a local SDS source keeps its waveforms elsewhere: they are read in place."""
    import shutil

    run, _ = build_run(tmp_path / "run")
    archive = tmp_path / "archive"
    shutil.move(run.root / "waveforms" / "2000", archive / "2000")
    entry = compute_magnitudes(run, MagnitudeConfig(vp_vs=VP / VS), sds_root=archive)
    assert entry["counts"]["events_with_magnitude"] == len(EVENTS)
    assert (
        compute_magnitudes(run, MagnitudeConfig(vp_vs=VP / VS))["counts"]["events_with_magnitude"]
        == 0
    )  # without the archive there is nothing to measure


def test_inventory_without_any_response_is_one_skipped_entry(tmp_path):
    """An inline station list has no responses: one line says so, not one per station
    (which filled the build's data: line and hid the real data problems)."""
    run, _ = build_run(tmp_path / "run")
    path = run.root / "waveforms" / "inventory.xml"
    inv = read_inventory(str(path))
    assert has_responses(inv)
    for channel in (ch for net in inv for sta in net for ch in sta):
        channel.response = None
    inv.write(str(path), format="STATIONXML")
    entry = compute_magnitudes(run, MagnitudeConfig(vp_vs=VP / VS))
    assert entry["counts"]["events_with_magnitude"] == 0
    skipped = entry["details"]["skipped"]
    assert list(skipped) == ["all stations"] and "no instrument response" in skipped["all stations"]


def test_response_evalresp_refuses_skips_its_station_and_keeps_the_terminal_clean(tmp_path, capfd):
    """A zero stage gain made evalresp raise ValueError: the magnitude stage (and the
    build) stopped, after evalresp had printed its messages straight to the terminal."""
    run, _ = build_run(tmp_path / "run")
    path = run.root / "waveforms" / "inventory.xml"
    inv = read_inventory(str(path))
    zero_gain, sensitivity_only = inv[0][0], inv[0][1]
    for channel in zero_gain:
        channel.response.response_stages[0].stage_gain = 0.0
    for channel in sensitivity_only:  # ObsPyException: no stages for evalresp
        channel.response.response_stages = []
    inv.write(str(path), format="STATIONXML")
    entry = compute_magnitudes(run, MagnitudeConfig(vp_vs=VP / VS))
    skipped = entry["details"]["skipped"]
    assert entry["counts"]["events_with_magnitude"] == len(EVENTS)
    assert sorted(skipped) == sorted(f"{inv[0].code}.{s.code}" for s in inv[0][:2])
    assert "unusable response" in skipped[f"{inv[0].code}.{zero_gain.code}"]
    assert "zero stage gain" in skipped[f"{inv[0].code}.{zero_gain.code}"]
    assert "no response stages" in skipped[f"{inv[0].code}.{sensitivity_only.code}"]
    assert "EVRESP" not in capfd.readouterr().err


def test_noise_is_corrected_and_noise_dominated_amplitudes_are_not_used(tmp_path):
    """A noisy station: its raw peaks of small events are noise (ML too large)."""
    run, _ = build_run(tmp_path / "run", noise={"ST06": 3.0})
    truth = {f"ev{k:03d}": ev[4] for k, ev in enumerate(EVENTS)}

    def st06(**kwargs) -> tuple[pd.DataFrame, dict]:
        entry = compute_magnitudes(run, MagnitudeConfig(vp_vs=VP / VS, **kwargs))
        table = pd.read_parquet(run.root / "magnitude" / "station_magnitudes.parquet")
        table = table[table["station"] == "ST06"].set_index("event_id")
        return table.assign(error=table["station_magnitude"] - table.index.map(truth)), entry

    raw, _ = st06(min_snr=0, noise_correction=False)
    assert raw.loc["ev000", "error"] > 0.3 and raw.loc["ev004", "error"] > 0.15
    assert 1.0 < raw.loc["ev000", "snr"] < 1.1 and raw.loc["ev003", "snr"] > 20

    corrected, entry = st06()  # defaults: sqrt(A² - N²) wherever A > N
    assert entry["counts"]["amplitudes_below_min_snr"] == 0
    assert len(corrected) == len(EVENTS) and corrected["error"].abs().max() < 0.1
    assert (corrected["error"].abs() <= raw["error"].abs() + 1e-9).all()
    mags = pd.read_parquet(run.root / "magnitude" / "magnitudes.parquet").set_index("event_id")
    assert (mags["magnitude"] - mags.index.map(truth)).abs().max() < 0.02

    strict, entry = st06(min_snr=1.5)
    assert entry["counts"]["amplitudes_measured"] == len(EVENTS) * len(STATIONS)
    assert entry["counts"]["amplitudes_below_min_snr"] == 2  # ev000 and ev004 at ST06
    assert sorted(strict.index) == ["ev001", "ev002", "ev003"] and (strict["snr"] >= 1.5).all()
    assert strict["error"].abs().max() < 0.05
    mags = pd.read_parquet(run.root / "magnitude" / "magnitudes.parquet").set_index("event_id")
    assert mags.loc["ev000", "n_stations"] == len(STATIONS) - 1

    _, entry = st06(min_snr=1e9)
    assert entry["counts"]["events_with_magnitude"] == 0  # nothing rises above the noise


def test_noise_amplitude_ignores_an_event_in_one_noise_window(tmp_path):
    """The noise amplitude is the median of the pre-P window peaks: one burst does not count."""
    run, _ = build_run(tmp_path / "run")
    inv = read_inventory(str(run.root / "waveforms" / "inventory.xml"))
    folder = run.root / "waveforms" / "2000" / "XX" / "ST01"
    r = _distance_km(EVENTS[1], *STATIONS["ST01"])
    t_p, t_s = START + EVENTS[1][0] + r / VP, START + EVENTS[1][0] + r / VS
    stream = Stream(
        [read(str(folder / f"HH{c}.D" / f"XX.ST01..HH{c}.D.2000.280"))[0] for c in "EN"]
    ).slice(t_p - 90, t_s + 35)
    meter = AmplitudeMeter(inv, MagnitudeConfig())
    window, noise_end = (t_s - 1, t_s + 10), t_p - 1
    quiet = meter.measure(stream, window, noise_end)
    assert quiet.n_components == 2 and 0 < quiet.noise < 1e-2 * quiet.amplitude
    assert quiet.snr == pytest.approx(quiet.amplitude / quiet.noise)
    for tr in stream:  # a 5 Hz burst 30x the noise in the earliest of the four noise windows
        i = int((noise_end - 40 - tr.stats.starttime) * FS)
        tr.data[i : i + 200] += 30 * np.std(tr.data[:1000]) * np.sin(np.arange(200) / 3)
    burst = meter.measure(stream, window, noise_end)
    in_burst_window = meter.measure(stream, (noise_end - 44, noise_end - 33))
    assert in_burst_window.amplitude > 10 * quiet.noise
    assert burst.noise == pytest.approx(quiet.noise, rel=0.3)
    assert burst.amplitude == pytest.approx(quiet.amplitude, rel=1e-6)
    assert math.isnan(meter.measure(stream, window).noise)  # no noise window asked for


def test_events_take_the_best_hypocentre_available(tmp_path):
    """As in the catalog: relocated, else located, else the associator's origin."""
    run, _ = build_run(tmp_path / "run")
    located = pd.read_parquet(run.root / "location" / "locations.parquet")
    reloc = located.copy()
    reloc.loc[1, ["latitude", "longitude", "depth_km"]] = np.nan  # HypoDD dropped ev001
    reloc.loc[0, "depth_km"] += 1.0
    reloc.to_parquet(run.path("relocation", "relocations.parquet"))
    located.iloc[:2].assign(depth_km=50.0).to_parquet(run.path("location", "locations.parquet"))
    located.iloc[2:].to_parquet(run.path("association", "events.parquet"))  # not located

    events, paths = read_events(run)
    assert [p.parent.name for p in paths] == ["relocation", "location", "association"]
    depth = events.set_index("event_id")["depth_km"]
    assert depth["ev000"] == EVENTS[0][3] + 1.0 and depth["ev001"] == 50.0
    assert sorted(events["event_id"]) == [f"ev{k:03d}" for k in range(len(EVENTS))]
    entry = compute_magnitudes(run, MagnitudeConfig(vp_vs=VP / VS))
    assert entry["counts"]["events_with_magnitude"] == len(EVENTS)
    assert "association/events.parquet" in entry["inputs"]


def test_a_clipped_amplitude_window_gives_no_station_magnitude(tmp_path):
    """The largest event clips one station's horizontals (flat at 30 % of its peak counts):
    that station is left out of the event's magnitude and named in the report's entries."""
    run, _ = build_run(tmp_path / "run")
    folder = run.root / "waveforms" / "2000" / "XX" / "ST01"
    r = _distance_km(EVENTS[3], *STATIONS["ST01"])
    t_s = START + EVENTS[3][0] + r / VS
    for comp in "EN":
        path = folder / f"HH{comp}.D" / f"XX.ST01..HH{comp}.D.2000.280"
        tr = read(str(path))[0]
        i0, i1 = int((t_s - 5 - START) * FS), int((t_s + 20 - START) * FS)
        level = 0.3 * np.abs(tr.data[i0:i1]).max()
        tr.data[i0:i1] = np.clip(tr.data[i0:i1], -level, level)
        tr.write(str(path), format="MSEED", encoding="FLOAT64")
    entry = compute_magnitudes(run, MagnitudeConfig(vp_vs=VP / VS))
    mags = pd.read_parquet(run.root / "magnitude" / "magnitudes.parquet").set_index("event_id")
    assert mags.loc["ev003", "n_stations"] == len(STATIONS) - 1
    assert mags.loc["ev003", "magnitude"] == pytest.approx(EVENTS[3][4], abs=0.05)
    assert (mags.drop(index="ev003")["n_stations"] == len(STATIONS)).all()
    note = entry["details"]["skipped"]["XX.ST01 clipped"]
    assert "clipped on every horizontal for 1 event(s) (ev003)" in note
    assert entry["counts"]["stations_clipped"] == 1 and entry["counts"]["stations_skipped"] == 0


@pytest.mark.parametrize(
    "data, problem",
    [
        (np.r_[np.zeros(50), [3, 3, 3, 3, 3, 3], np.zeros(50)].astype(np.int32), ""),
        (np.r_[np.zeros(50), [3000] * 5, -np.ones(50)].astype(np.int32), "clipped"),
        (np.r_[np.zeros(50), [3000] * 4, -np.ones(50)].astype(np.int32), ""),
        (np.clip(np.sin(np.arange(100) / 5.0), -0.5, 0.5), "clipped"),  # float counts
        (1000 * np.sin(np.arange(200) / 5.0), ""),
        (np.zeros(100, np.int32), "dead"),
        (np.full(100, 2.5e4), "dead"),
    ],
)
def test_window_problem_finds_dead_and_clipped_windows(data, problem):
    """Clipped: five equal samples at the window's maximum or minimum (small integer counts
    repeat by quantisation and are not taken for clipping); dead: one value throughout."""
    from pipeline.magnitude import window_problem

    tr = Trace(np.asarray(data), header={"sampling_rate": FS, "starttime": START})
    assert window_problem(tr, (START, tr.stats.endtime)) == problem


def test_a_dead_horizontal_does_not_halve_the_station_amplitude():
    """A dead E (zeros) beside a live N: its zero peak went into the mean of components
    (-0.30 in ML); the station amplitude is now the N peak alone."""
    response = Response.from_paz([0j, 0j], INST_POLES, INST_GAIN, input_units="M/S",
                                 output_units="COUNTS")  # fmt: skip
    channels = [Channel(f"HH{c}", "", 35.0, 133.0, 0.0, 0.0, sample_rate=FS, response=response)
                for c in "EN"]  # fmt: skip
    inv = Inventory([Network("XX", [Station("ST1", 35.0, 133.0, 0.0, channels=channels)])])
    t = np.arange(int(60 * FS)) / FS
    live = 1e4 * np.exp(-(((t - 30) / 0.5) ** 2)) * np.sin(2 * np.pi * 4 * t)
    header = {"network": "XX", "station": "ST1", "sampling_rate": FS, "starttime": START}
    window = (START + 25, START + 35)
    meter = AmplitudeMeter(inv, MagnitudeConfig(amplitude_combination="mean"))
    north = Trace(live.copy(), header={**header, "channel": "HHN"})
    alone = meter.measure(Stream([north]), window)
    dead = Trace(np.zeros(live.size, np.int32), header={**header, "channel": "HHE"})
    both = meter.measure(Stream([dead, north]), window)
    assert both.n_components == 1 and both.n_clipped == 0
    assert both.amplitude == pytest.approx(alone.amplitude, rel=1e-9)


def test_a_blank_station_elevation_is_sea_level_not_a_nan_distance():
    """A blank elevation_m made the distance NaN: every station magnitude of that station
    NaN, counted as below the noise in the event's censored median."""
    from pipeline.magnitude import _Inputs, _pair_windows

    t0 = pd.Timestamp("2000-10-06 00:01:00", tz="UTC")
    events = pd.DataFrame({"event_id": ["e1"], "origin_time": [t0], "latitude": [35.0],
                           "longitude": [133.0], "depth_km": [10.0]})  # fmt: skip
    picks = pd.DataFrame({"pick_id": ["p1"], "network": ["XX"], "station": ["ST1"],
                          "location": [""], "phase": ["S"],
                          "time": [t0 + pd.Timedelta(seconds=5)]})  # fmt: skip
    stations = pd.DataFrame({"network": ["XX"], "station": ["ST1"], "location": [""],
                             "latitude": [35.0], "longitude": [133.1],
                             "elevation_m": [np.nan]})  # fmt: skip
    assignments = pd.DataFrame({"event_id": ["e1"], "pick_id": ["p1"]})
    inp = _Inputs(events, [], picks, assignments, stations, Inventory())
    distance = _pair_windows(inp, MagnitudeConfig())["distance_km"].iloc[0]
    assert distance == pytest.approx(math.hypot(9.11, 10.0), abs=0.05)
