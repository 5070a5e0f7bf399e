"""Continuous data -> picks: preprocessing, windows, combination, extraction, MC, stage.

Unit tests of the windowing/combination logic use :class:`FakePicker`, a stand-in that reads
its "probabilities" off the input (E -> P, N -> S, Z envelope -> detector), so the expected
picks are known exactly. The real EQTransformer runs on the real O2.WILZ record at the end.
"""

from __future__ import annotations

from datetime import UTC, date, timedelta

import numpy as np
import pandas as pd
import pytest
from obspy import Stream, Trace, UTCDateTime, read
from scipy.ndimage import maximum_filter1d

from pipeline.picking.extract import (
    FATES,
    detections_of,
    extract_picks,
    find_detections,
    pick_candidate_fates,
    pick_candidates,
    run_means,
    runs,
    subsample_peaks,
    thin,
)
from pipeline.picking.params import PickerConfig
from pipeline.picking.preprocess import Record, preprocess_stream
from pipeline.picking.stage import (
    PICKS_SCHEMA,
    PickingError,
    SpanStats,
    day_window,
    eqt_record_picks,
    merge_picks,
    pick_all,
    pick_span,
    pick_station_day,
    record_windows,
    station_day_path,
)
from pipeline.picking.windows import (
    CONTEXT_MIN_DATA,
    OUTPUTS,
    WINDOW,
    add_context,
    cleared_windows,
    combine,
    combined_passes,
    context_blind,
    context_passes,
    context_windows,
    effective_blind,
    standardised_windows,
    window_starts,
    window_step,
    windows_covering,
)
from pipeline.rundir import RunDir
from pipeline.waveforms.reader import read_station
from pipeline.waveforms.sds import write_channel_day

FS = 100.0
DAY = date(2024, 2, 3)
T0 = UTCDateTime(2024, 2, 3, 0, 0, 0)
#: Lower bounds for the O2.WILZ 2 h record: about 70 % of the 163 P and 162 S picks measured
#: with the conservative model, Keras-3 hard-sigmoid gates and the then default thresholds
#: 0.5/0.3/0.3, overlap 0.3 (the bounds also hold at today's defaults, 0.5/0.2/0.2 and
#: overlap 0.3).
P_MIN, S_MIN = 114, 113


class FakePicker:
    """Reads probabilities off standardised windows: E -> P, N -> S, detector = 1.2 times
    the larger of them within ±2 s.

    With ``mc_samples=1`` (one stochastic pass per element) each element's outputs are shifted
    by a random -3..3 samples and scaled by 0.8-1.0, mimicking dropout noise.
    """

    name = "fake"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.calls: list[tuple[int, int]] = []

    def predict_windows(self, x, mc_samples=0, batch_size=500):
        self.calls.append((len(x), mc_samples))
        p, s = np.clip(x[:, :, 0] / 40.0, 0, 1), np.clip(x[:, :, 1] / 40.0, 0, 1)
        detector = np.clip(1.2 * maximum_filter1d(np.maximum(p, s), 401, axis=1), 0, 1)
        out = {"picker_P": p, "picker_S": s, "detector": detector}
        if mc_samples:
            for k, v in out.items():
                for i in range(len(v)):
                    v[i] = np.roll(v[i], self.rng.integers(-3, 4)) * self.rng.uniform(0.8, 1.0)
                out[k] = v
        return {k: v.astype(np.float32) for k, v in out.items()}

    def predict_passes(self, x, passes, batch_size=500):
        """(N, passes, window) stochastic passes, as ``predict_windows(mc_samples=1)``."""
        self.calls.append((len(x), -passes))
        result = self.predict_windows(np.repeat(x, passes, axis=0), mc_samples=1)
        self.calls.pop()
        return {k: v.reshape(len(x), passes, -1) for k, v in result.items()}


class ReproduciblePasses(FakePicker):
    """A :class:`FakePicker` whose pass ``m`` of a window is the deterministic output
    shifted by ``m % 5 - 2`` samples and scaled by ``1 - 0.02 m``: the same whatever the
    windows are run with."""

    def predict_passes(self, x, passes, batch_size=500):
        self.calls.append((len(x), -passes))
        det = self.predict_windows(x)
        self.calls.pop()
        return {
            k: np.stack([np.roll(v, m % 5 - 2, axis=1) * (1 - 0.02 * m) for m in range(passes)], 1)
            for k, v in det.items()
        }


def _event_data(n: int, events: list[tuple[float, float]]) -> np.ndarray:
    """(n, 3) E, N, Z: unit noise, Gaussian bumps at P (E) and S (N), a 5 Hz burst on Z."""
    t = np.arange(n) / FS
    data = np.random.default_rng(n).normal(size=(n, 3))
    for p, s in events:
        data[:, 0] += 1000 * np.exp(-0.5 * ((t - p) * FS / 3) ** 2)
        data[:, 1] += 1000 * np.exp(-0.5 * ((t - s) * FS / 3) ** 2)
        burst = (t >= p - 0.2) & (t <= s + 3)
        data[burst, 2] += 100 * np.sin(2 * np.pi * 5 * t[burst])
    return data


def _stream(data: np.ndarray, start: UTCDateTime = T0, prefix: str = "HH", sta="TEST") -> Stream:
    return Stream(
        [
            Trace(
                data[:, i].copy(),
                header={
                    "network": "XX",
                    "station": sta,
                    "location": "",
                    "channel": prefix + c,
                    "starttime": start,
                    "sampling_rate": FS,
                },
            )
            for i, c in enumerate("ENZ")
        ]
    )


def _record(data: np.ndarray) -> Record:
    return Record(
        "XX.TEST.", T0, FS, data.astype(np.float32), np.zeros(len(data), bool), ("E", "N", "Z")
    )


# ------------------------------------------------------------------ windows and combination


def test_window_starts_cover_the_record_on_a_global_grid():
    step = window_step(0.3)
    assert step == 4175  # an odd multiple of a quarter second (pipeline.picking.windows)
    starts = window_starts(100_000, T0.timestamp, FS, step)
    assert starts[0] == 0 and starts[-1] == 100_000 - WINDOW
    assert np.all(np.diff(starts) <= step) and np.all(np.diff(starts) > 0)
    # a record starting 1000 samples later places the same windows (in absolute time)
    later = window_starts(100_000, T0.timestamp + 10.0, FS, step) + 1000
    shared = np.intersect1d(starts[1:-1], later[1:-1])
    assert len(shared) >= len(starts) - 4
    # grid windows sit at multiples of the step since the epoch
    assert np.allclose(((T0.timestamp + starts[1:-1] / FS) / 41.75) % 1, 0)
    assert window_starts(4000, T0.timestamp, FS, step).tolist() == [0]


def test_standardised_windows_per_window_and_channel():
    rng = np.random.default_rng(1)
    data = rng.normal(3.0, 5.0, (20_000, 3)).astype(np.float32)
    data[:, 2] *= np.linspace(1, 10, 20_000, dtype=np.float32)  # changing scale
    data[7000:14000, 1] = 0.0  # a dead channel in the second window
    starts = np.array([0, 7000, 14_000])
    x = standardised_windows(data, starts)
    assert x.shape == (3, WINDOW, 3) and x.dtype == np.float32
    for i, s in enumerate(starts):
        piece = data[s : s + WINDOW].astype(np.float64)
        std = piece.std(axis=0)
        expected = (piece - piece.mean(axis=0)) / np.where(std > 0, std, 1)
        assert np.allclose(x[i], expected, atol=1e-4)
    assert not x[1, :, 1].any()
    # a record shorter than one window is zero-padded; the padding counts in the statistics
    short = standardised_windows(np.ones((1234, 3)) + np.arange(1234)[:, None], np.array([0]))
    assert short.shape == (1, WINDOW, 3)
    assert short[0].mean(axis=0) == pytest.approx([0, 0, 0], abs=1e-4)
    assert np.all(short[0, 1234:] == short[0, 1234])


# ------------------------------------------------------------------ detections and picks


def _curves(n=3000):
    det, p, s = np.zeros(n), np.zeros(n), np.zeros(n)
    det[1000:1800] = 0.9
    p[995:1006] = np.hanning(11) * 0.8  # P 5 samples before the detection start: kept (margin)
    s[1400:1411] = np.hanning(11) * 0.5
    s[1600:1611] = np.hanning(11) * 0.4  # second S peak below extra_pick_threshold: dropped
    p[1700:1711] = np.hanning(11) * 0.7  # second P peak above extra_pick_threshold: kept
    p[2500:2511] = np.hanning(11) * 0.9  # far from any detection: dropped
    return {"detector": det, "picker_P": p, "picker_S": s}


def test_extract_one_p_and_s_per_detection_unless_probabilities_say_otherwise():
    picks = extract_picks(_curves(), PickerConfig(extra_pick_threshold=0.6), FS)
    assert picks["phase"].tolist() == ["P", "S", "P"]
    assert picks["sample"].tolist() == pytest.approx([1000, 1405, 1705])
    assert picks["probability"].tolist() == pytest.approx([0.8, 0.5, 0.7])
    assert (picks["detection_start"] == 1000).all() and (picks["detection_end"] == 1800).all()
    assert picks["detection_probability"].tolist() == pytest.approx([0.9] * 3)
    assert picks["probability_std"].eq(0).all() and picks["time_std_s"].isna().all()


def test_candidate_fates_say_why_a_peak_is_not_a_pick():
    curves = _curves()
    curves["picker_S"][1420:1431] = np.hanning(11) * 0.45  # 0.2 s after the first S: thinned
    curves["picker_S"][1415:1420] = 0.0  # (a separate candidate run)
    cfg = PickerConfig(extra_pick_threshold=0.4)
    detections = detections_of(curves, cfg, FS)
    fates = pick_candidate_fates(curves, detections, cfg, FS)
    got = {(r.phase, round(r.sample)): r.fate for r in fates.itertuples()}
    assert got == {
        ("P", 1000): "kept",
        ("P", 1705): "kept",
        ("P", 2505): "no_detection",
        ("S", 1405): "kept",
        ("S", 1425): "thinned",
        ("S", 1605): "kept",
    }
    looser = pick_candidate_fates(curves, detections, PickerConfig(extra_pick_threshold=0.6), FS)
    assert looser.loc[looser["sample"].round() == 1605, "fate"].item() == "weaker_in_detection"
    assert set(fates["fate"]) <= set(FATES)
    kept = fates[fates["fate"] == "kept"].sort_values("sample")
    picks = extract_picks(curves, cfg, FS)
    assert picks["sample"].tolist() == pytest.approx(kept["sample"].tolist())


def test_extract_makes_no_pick_inside_a_gap():
    gap = np.zeros(3000, bool)
    gap[1350:1500] = True
    picks = extract_picks(_curves(), PickerConfig(), FS, blocked=gap)
    # the detection is split by the gap; the S inside it is gone, the S at 1605 remains
    assert not ((picks["sample"] >= 1350) & (picks["sample"] < 1500)).any()
    assert (picks["phase"] == "P").sum() == 2


def test_candidates_subsample_peak_and_thinning():
    prob = np.zeros(100)
    prob[40:43] = [0.5, 0.9, 0.7]
    cand = pick_candidates(prob, 0.3)
    assert len(cand) == 1 and 41 < cand["sample"].iloc[0] < 41.5
    kept = thin(np.array([10.0, 10.3, 11.0, 30.0]), np.array([0.5, 0.9, 0.4, 0.6]), 0.5)
    assert kept.tolist() == [1, 2, 3]
    assert find_detections(np.r_[np.zeros(5), np.ones(3) * 0.6, np.zeros(5)], 0.5, 5).size == 0
    assert runs(np.array([0, 1, 1, 0, 1], bool))[0].tolist() == [1, 4]


def test_subsample_peaks_stay_at_the_ends_and_on_flat_tops():
    prob = np.array([0.9, 0.5, 0.6, 0.6, 0.2, 0.4, 0.8])
    peaks = subsample_peaks(prob, np.array([0, 2, 6]))
    assert peaks[0] == 0.0 and peaks[2] == 6.0
    assert peaks[1] == pytest.approx(2 + 0.5 * (0.5 - 0.6) / (0.5 - 1.2 + 0.6))
    assert subsample_peaks(prob, np.zeros(0, np.int64)).shape == (0,)


def test_run_means_of_detections():
    values = np.arange(10, dtype=np.float32)
    assert run_means(values, np.array([[0, 4], [5, 6]])).tolist() == [1.5, 5.0]
    assert run_means(values, np.zeros((0, 2), np.int64)).shape == (0,)


# ------------------------------------------------------------------ record / span with the fake


def test_fake_picks_land_on_the_events_and_mc_runs_only_where_detected():
    events = [(100.0, 103.0), (250.0, 254.5), (430.0, 431.5)]
    record = _record(_event_data(60_000, events))
    model = FakePicker()
    stats = SpanStats()
    # regular windows only: the context windows (always near a detection) are gated below
    cfg = PickerConfig(mc_samples=8, context_windows=False)
    picks = eqt_record_picks(record, model, cfg, stats)
    for phase, col in (("P", 0), ("S", 1)):
        got = picks.loc[picks["phase"] == phase, "sample"].to_numpy() / FS
        assert got == pytest.approx([e[col] for e in events], abs=0.02)
    # stochastic passes only for windows used around the picks, 8 passes per window
    mc_windows = sum(n for n, m in model.calls if m == -8)
    assert stats.mc_windows == mc_windows and 0 < stats.mc_windows < stats.windows / 2
    assert (picks["probability_std"] > 0).all()
    assert ((picks["time_std_s"] > 0.002) & (picks["time_std_s"] < 0.05)).all()
    assert (picks["detection_probability_std"] >= 0).all()


def test_span_in_chunks_finds_each_event_once_across_seams():
    n = int(900 * FS)
    events = [(120.0, 123.0), (299.95, 302.0), (598.0, 600.02), (700.0, 707.0)]
    stream = _stream(_event_data(n, events))
    cfg = PickerConfig(chunk_s=300)
    stats = SpanStats()
    picks = pick_span(
        lambda a, b: stream.slice(a, b).copy(), ("XX", "TEST", ""), T0, T0 + 900, cfg,
        FakePicker(), stats,
    )  # fmt: skip
    assert stats.chunks == 3
    times = (picks["time"] - pd.Timestamp(T0.datetime, tz="UTC")).dt.total_seconds()
    for phase, col in (("P", 0), ("S", 1)):
        got = np.sort(times[picks["phase"] == phase].to_numpy())
        assert got == pytest.approx([e[col] for e in events], abs=0.02)
    assert picks["pick_id"].is_unique
    assert picks["pick_id"].iloc[0].startswith("XX.TEST..P.2024-02-03T00:02:00.")
    assert dict(picks.dtypes.astype(str)) == PICKS_SCHEMA | {"pick_id": "object"}


def test_span_std_gate_drops_uncertain_picks():
    stream = _stream(_event_data(int(300 * FS), [(100.0, 103.0), (200.0, 201.0)]))
    reader = lambda a, b: stream.slice(a, b).copy()  # noqa: E731
    codes = ("XX", "TEST", "")
    kept = pick_span(reader, codes, T0, T0 + 300, PickerConfig(mc_samples=6), FakePicker())
    gate = float(kept["probability_std"].median())
    stats = SpanStats()
    gated = pick_span(
        reader, codes, T0, T0 + 300, PickerConfig(mc_samples=6, max_probability_std=gate),
        FakePicker(), stats,
    )  # fmt: skip
    assert (gated["probability_std"] <= gate).all()
    assert stats.rejected_uncertain == len(kept) - len(gated) > 0


def test_span_gap_yields_no_pick_inside_it():
    n = int(600 * FS)
    events = [(100.0, 103.0), (300.0, 303.0), (500.0, 503.0)]
    stream = _stream(_event_data(n, events))
    gapped = stream.copy().cutout(T0 + 280, T0 + 320)
    stats = SpanStats()
    picks = pick_span(
        lambda a, b: gapped.slice(a, b).copy(), ("XX", "TEST", ""), T0, T0 + 600,
        PickerConfig(), FakePicker(), stats,
    )  # fmt: skip
    times = (picks["time"] - pd.Timestamp(T0.datetime, tz="UTC")).dt.total_seconds()
    assert not ((times >= 280) & (times < 320)).any()
    assert sorted(times[picks["phase"] == "P"].round(1)) == [100.0, 500.0]
    assert stats.gap_seconds == pytest.approx(40, abs=0.05)


def test_mc_gate_gives_the_statistics_of_mc_on_every_window():
    """Passes only on the windows used around the picks: the same table as passes on all.

    Regular and context windows alike (an event 20 s after another makes the context window
    before it hold the first one).
    """
    events = [(100.0, 103.0), (250.0, 254.5), (270.0, 273.0), (430.0, 431.5), (541.0, 545.0)]
    record = _record(_event_data(60_000, events))
    cfg = PickerConfig(mc_samples=5, overlap=0.7)  # 4 windows over a sample: the gate saves
    stats = SpanStats()
    gated = eqt_record_picks(record, ReproduciblePasses(), cfg, stats)
    # reference: every window through the passes, then the same extraction
    model, prepared = ReproduciblePasses(), record_windows(record, cfg)
    n, starts = record.n_samples, prepared.starts
    blind = effective_blind(cfg.blind_samples, window_step(cfg.overlap))
    outputs = model.predict_windows(prepared.windows)
    curves = {k: combine(outputs[k], starts, n, blind[k]) for k in OUTPUTS}
    first = extract_picks({k: v.copy() for k, v in curves.items()}, cfg, FS)
    spans = first.groupby("detection_start")["sample"].agg(["min", "max"])
    extra, clear = context_windows(spans["min"].to_numpy(), spans["max"].to_numpy())
    extra_windows = cleared_windows(record.data, extra, clear)
    outputs = model.predict_windows(extra_windows)
    add_context(outputs, extra, n, context_blind(500), curves, clear)
    passes = {k: np.zeros((5, n), np.float32) for k in OUTPUTS}
    combined_passes(model, prepared.windows, starts, n, blind, 5, 500, out=passes)
    context_passes(model, extra_windows, extra, n, context_blind(500), 5, 500, passes, clear)
    everywhere = extract_picks(curves, cfg, FS, record.near_gaps(cfg.gap_guard_s), passes)
    pd.testing.assert_frame_equal(gated, everywhere)
    # 10 true picks and one S in the 2.5 s kept by the window cleared up to 1 s after the
    # second event's P (the fake picker reads the noise, scaled up by the zeros, as an S)
    assert len(gated) == 11 and (gated["time_std_s"] > 0).all()
    # one per detection, ending 1 s before its first pick (the fake detector splits the
    # second event's P and S, 4.5 s apart, into two detections); the windows of the S half
    # and of the third event 20 s later are cleared up to 1 s after the previous pick
    assert extra.tolist() == [3899, 18899, 19350, 20899, 36900, 47999]
    assert clear.tolist() == [0, 0, 24999 + 100 - 19350, 25450 + 100 - 20899, 0, 0]
    assert stats.windows == len(starts) + len(extra)
    assert 0 < stats.mc_windows < 0.6 * stats.windows  # 22 of 39: the gate saves


class LargestEventPicker(FakePicker):
    """A :class:`FakePicker` that, like EQTransformer on the demo replica, gives a window's
    smaller arrivals nothing when a larger one is in it: values below half the window's
    largest P or S value are zeroed."""

    def predict_windows(self, x, mc_samples=0, batch_size=500):
        out = super().predict_windows(x, mc_samples, batch_size)
        top = np.maximum(out["picker_P"], out["picker_S"]).max(axis=1, keepdims=True)
        return {k: np.where(v >= 0.5 * top, v, 0).astype(np.float32) for k, v in out.items()}


def test_context_window_finds_a_small_event_before_a_larger_one():
    """Small event (P 100 s, S 102 s), larger one 8 s later: the regular windows all hold
    both; the window ending 1 s before the larger one's P holds the small one alone."""
    n = 30_000
    t = np.arange(n) / FS
    data = np.random.default_rng(3).normal(size=(n, 3))
    for p, s, amplitude in ((100.0, 102.0, 300.0), (108.0, 111.0, 3000.0)):
        data[:, 0] += amplitude * np.exp(-0.5 * ((t - p) * FS / 3) ** 2)
        data[:, 1] += amplitude * np.exp(-0.5 * ((t - s) * FS / 3) ** 2)
    record = _record(data)
    found = {}
    for context in (False, True):
        picks = eqt_record_picks(
            record, LargestEventPicker(), PickerConfig(context_windows=context)
        )
        found[context] = sorted((picks["sample"] / FS).round(2).tolist())
    assert found[False] == pytest.approx([108.0, 111.0], abs=0.02)
    # the context window gives the small event's S (its P is not taken from it)
    assert found[True] == pytest.approx([102.0, 108.0, 111.0], abs=0.02)


def test_cleared_context_window_finds_a_small_event_after_a_larger_one():
    """Large event (P 100 s, S 103 s), small one 15 s later, a medium one 40 s later: every
    window holding the small event holds the large one; the medium one's context window,
    cleared up to 1 s after the large one's S, holds the small one alone."""
    n = 30_000
    t = np.arange(n) / FS
    data = np.random.default_rng(5).normal(size=(n, 3))
    for p, s, amplitude in ((100.0, 103.0, 3000.0), (115.0, 117.0, 300.0), (140.0, 143.0, 1000.0)):
        data[:, 0] += amplitude * np.exp(-0.5 * ((t - p) * FS / 3) ** 2)
        data[:, 1] += amplitude * np.exp(-0.5 * ((t - s) * FS / 3) ** 2)
    record = _record(data)
    found = {}
    for context in (False, True):
        picks = eqt_record_picks(
            record, LargestEventPicker(), PickerConfig(context_windows=context)
        )
        found[context] = sorted((picks["sample"] / FS).round(2).tolist())
    assert found[False] == pytest.approx([100.0, 103.0, 140.0, 143.0], abs=0.02)
    # the cleared window gives the small event's S (its P is not taken from it)
    assert found[True] == pytest.approx([100.0, 103.0, 117.0, 140.0, 143.0], abs=0.02)


def test_context_windows_end_before_each_detection_and_clear_the_previous_one():
    first = np.array([9000.4, 20000.0, 9200.0, 20150.0, 5000.0])
    last = np.array([9300.0, 20100.0, 9700.9, 20400.0, 5100.0])
    starts, clear = context_windows(first, last)
    # 5000 would start before the record; 9000 is cleared up to 1 s after 5100; 9200 lies
    # inside the previous detection, 20150 keeps nothing after 20100 + 100: left out;
    # 20000: the previous last pick (9700) is before its window, nothing cleared
    assert starts.tolist() == [9000 - 100 - WINDOW, 20000 - 100 - WINDOW]
    assert clear.tolist() == [5100 + 100 - (9000 - 100 - WINDOW), 0]
    # at least CONTEXT_MIN_DATA (2 s) of data kept
    for second, kept in ((10300.0, False), (10400.0, True)):
        starts, clear = context_windows(np.array([10000.0, second]), np.array([10000.0, second]))
        assert (len(starts) == 2) is kept
        if kept:
            assert WINDOW - clear[1] == CONTEXT_MIN_DATA


def test_cleared_windows_zero_the_head_and_standardise_the_rest():
    data = np.random.default_rng(2).normal(3.0, 2.0, size=(20_000, 3))
    starts, clear = np.array([1000, 7000]), np.array([0, 4500])
    x = cleared_windows(data, starts, clear)
    np.testing.assert_allclose(x[0], standardised_windows(data, starts[:1])[0], atol=1e-5)
    assert not x[1, :4500].any()
    kept = x[1, 4500:].astype(np.float64)
    np.testing.assert_allclose(kept.mean(axis=0), 0, atol=1e-6)
    # unit std over the whole window, zeros counted
    np.testing.assert_allclose(np.sqrt((kept**2).sum(axis=0) / WINDOW), 1, rtol=1e-5)


def test_add_context_uses_a_cleared_window_from_its_first_kept_sample():
    n = 20_000
    ones = {k: np.ones((2, WINDOW), np.float32) for k in OUTPUTS}
    out = {k: np.zeros(n, np.float32) for k in OUTPUTS}
    add_context(ones, np.array([1000, 10000]), n, (500, 50), out, np.array([0, 3000]))
    used = np.flatnonzero(out["picker_S"])
    expected = np.r_[1500 : 1000 + WINDOW - 50, 13000 : 10000 + WINDOW - 50]
    assert used.tolist() == expected.tolist()
    assert not out["picker_P"].any()  # P is not joined


def test_windows_covering_marks_exactly_the_windows_used_there():
    starts = np.array([0, 4200, 8400, 12600])
    blind = (500, 500)
    n = 18_600
    # used samples: [0, 5500), [4700, 9700), [8900, 13900), [13100, 18600)
    hits = windows_covering(starts, n, blind, np.array([[5000, 5001], [14000, 14100]]))
    assert hits.tolist() == [True, True, False, True]
    assert windows_covering(starts, n, blind, np.zeros((0, 2))).tolist() == [False] * 4
    assert windows_covering(starts, n, blind, np.array([[9700, 9800]])).tolist() == [
        False, False, True, False
    ]  # fmt: skip


def test_chunks_sharing_one_model_call_give_the_same_picks():
    """The GPU path gathers chunks into one call; on the CPU it can be forced."""
    n = int(1800 * FS)
    events = [(120.0, 123.0), (299.95, 302.0), (598.0, 600.02), (1500.0, 1507.0)]
    stream = _stream(_event_data(n, events))
    reader = lambda a, b: stream.slice(a, b).copy()  # noqa: E731
    # regular windows only: context windows are run per record after the shared call
    cfg = PickerConfig(chunk_s=300, overlap=0.3, context_windows=False)
    codes = ("XX", "TEST", "")
    one, gathered = FakePicker(), FakePicker()
    alone = pick_span(reader, codes, T0, T0 + 1800, cfg, one, group_windows=1)
    together = pick_span(reader, codes, T0, T0 + 1800, cfg, gathered, group_windows=10_000)
    pd.testing.assert_frame_equal(alone, together)
    assert len(alone) == 8
    assert len(one.calls) == 6 and len(gathered.calls) == 1
    assert gathered.calls[0][0] == sum(c[0] for c in one.calls) >= 60
    # gathered in groups of >= 20 windows: 6 chunks of 11 windows -> 3 calls
    grouped = FakePicker()
    pick_span(reader, codes, T0, T0 + 1800, cfg, grouped, group_windows=20)
    assert [c[0] >= 20 for c in grouped.calls] == [True] * 3


# ------------------------------------------------------------------ preprocessing


def test_preprocess_orders_12z_and_resamples_to_100_hz():
    t = np.arange(0, 120, 1 / 200.0)
    traces = []
    for cha, freq in (("HHZ", 5.0), ("HH1", 10.0), ("HH2", 20.0)):
        traces.append(
            Trace(
                np.sin(2 * np.pi * freq * t),
                header={
                    "network": "XX",
                    "station": "A",
                    "channel": cha,
                    "sampling_rate": 200.0,
                    "starttime": T0,
                },
            )  # fmt: skip
        )
    record = preprocess_stream(Stream(traces), "XX.A.")
    assert record.sampling_rate == 100 and record.n_samples == pytest.approx(12000, abs=1)
    assert record.channels == ("HH2", "HH1", "HHZ") and not record.gap_mask.any()  # 1 as N
    spectrum = np.abs(np.fft.rfft(record.data[2000:10000], axis=0))
    freqs = np.fft.rfftfreq(8000, 0.01)
    assert freqs[spectrum.argmax(axis=0)].tolist() == pytest.approx([20.0, 10.0, 5.0])
    # amplitudes kept (rms * sqrt 2): the 1-45 Hz pass band and the resampling are flat
    amplitude = record.data[2000:10000].std(axis=0) * np.sqrt(2)
    assert amplitude == pytest.approx([1.0, 1.0, 1.0], abs=0.03)


def test_preprocess_missing_component_and_gap():
    rng = np.random.default_rng(2)
    z = Trace(rng.normal(size=60_000), header={"station": "A", "channel": "EHZ", "starttime": T0,
                                               "sampling_rate": FS})  # fmt: skip
    stream = Stream([z]).cutout(T0 + 200, T0 + 210)
    record = preprocess_stream(stream, "XX.A.")
    assert record.channels == (None, None, "EHZ") and record.missing_components == ["E", "N"]
    assert "E, N missing" in record.notes[0]
    assert not record.data[:, :2].any()
    starts, ends = runs(record.gap_mask)
    assert len(starts) == 1 and (ends[0] - starts[0]) / FS == pytest.approx(10, abs=0.02)
    assert not record.data[starts[0] : ends[0]].any()
    assert preprocess_stream(Stream(), "XX.A.") is None


def test_near_gaps_guards_data_edges():
    gap = np.zeros(2000, bool)
    gap[1000:1100] = True
    record = Record("XX.A.", T0, FS, np.zeros((2000, 3), np.float32), gap, ("E", "N", "Z"))
    blocked = record.near_gaps(1.5)
    starts, ends = runs(blocked)
    assert starts.tolist() == [0, 850, 1850] and ends.tolist() == [150, 1250, 2000]
    assert (record.near_gaps(0.0) == gap).all()


def test_preprocess_names_a_channel_sampled_too_slowly_for_the_band():
    slow = _stream(np.random.default_rng(6).normal(size=(600, 3)))
    for trace in slow:
        trace.stats.sampling_rate = 1.0
    # the channel's id once (was "XX.TEST.: XX.TEST..HHE is sampled ...")
    with pytest.raises(
        ValueError, match=r"^XX\.TEST\.\.HH[ENZ] is sampled at 1 Hz, too slow .*1-45"
    ):
        preprocess_stream(slow, "XX.TEST.")


def test_a_channel_whose_rate_changes_within_the_day_is_read_and_preprocessed(tmp_path):
    data = np.random.default_rng(7).normal(size=(6000, 3))
    first = _stream(data[:3000])
    second = _stream(np.repeat(data[3000:], 2, axis=0), start=T0 + 30.0)
    for trace in second:
        trace.stats.sampling_rate = 200.0
    record = preprocess_stream(first + second, "XX.TEST.")
    assert record is not None and not record.missing_components
    assert record.data.shape[0] == pytest.approx(6000, abs=2)
    archive = tmp_path / "sds"
    for part in (first, second):  # two records of one day file, at 100 and 200 Hz
        write_channel_day(part, archive / str(part[0].stats.sampling_rate), DAY)
    for path in (archive / "100.0").rglob("HH?.D/*"):
        other = archive / "200.0" / path.relative_to(archive / "100.0")
        target = archive / path.relative_to(archive / "100.0")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes() + other.read_bytes())
    stream = read_station(archive, "XX", "TEST", "", "HH", T0, T0 + 60)
    assert sorted({tr.stats.sampling_rate for tr in stream}) == [100.0, 200.0]


def test_preprocess_refuses_mixed_channel_prefixes():
    stream = _stream(np.zeros((1000, 3))) + _stream(np.zeros((1000, 3)), prefix="EH")
    with pytest.raises(ValueError, match=r"XX\.TEST\..*several location/channel prefixes"):
        preprocess_stream(stream, "XX.TEST.")


# ------------------------------------------------------------------ stage


def _run_with_archive(tmp_path, stream: Stream) -> RunDir:
    run = RunDir(tmp_path / "run")
    write_channel_day(stream, run.stage_dir("waveforms"), DAY)
    pd.DataFrame(
        [{"network": "XX", "station": s, "location": "", "channel_prefix": "HH", "latitude": 35.0,
          "longitude": 133.0, "elevation_m": 0.0, "sampling_rate": 100.0}
         for s in ("TEST", "EMPTY")]
    ).to_csv(run.path("waveforms", "stations.csv"), index=False)  # fmt: skip
    return run


def test_station_day_stage_writes_tables_and_manifest(tmp_path):
    stream = _stream(_event_data(int(1200 * FS), [(10.0, 13.0), (500.0, 502.0)]),
                     start=T0 + 3600 * 5)  # fmt: skip
    run = _run_with_archive(tmp_path, stream)
    summary = pick_station_day(run.root, "XX", "TEST", DAY, PickerConfig(), FakePicker())
    path = station_day_path(run.root, "XX", "TEST", DAY)
    assert summary["path"] == str(path) and path.name == "XX.TEST.2024-02-03.parquet"
    assert (summary["n_p"], summary["n_s"]) == (2, 2)
    assert summary["data_seconds"] == pytest.approx(1200, abs=0.1)
    table = pd.read_parquet(path)
    assert dict(table.dtypes.astype(str)) == PICKS_SCHEMA
    result = pick_all(run, PickerConfig(), pd.read_csv(run.path("waveforms", "stations.csv"),
                      keep_default_na=False), [DAY], model=FakePicker())  # fmt: skip
    assert result["counts"]["picks"] == 4 and result["counts"]["failed"] == 0
    merged = pd.read_parquet(run.path("picks", "picks.parquet"))
    assert len(merged) == 4 and merged["time"].is_monotonic_increasing
    empty = pd.read_parquet(station_day_path(run.root, "XX", "EMPTY", DAY))
    assert empty.empty and list(empty.columns) == list(PICKS_SCHEMA)
    assert run.read_manifest()["picks"]["counts"]["station_days"] == 2


def test_station_day_picks_only_inside_the_build_span(tmp_path):
    """A 1-hour build picked (and catalogued) its whole UTC day; the span now bounds the
    picks, and a span that misses the day is an error naming the day."""
    stream = _stream(_event_data(int(1200 * FS), [(10.0, 13.0), (500.0, 502.0)]),
                     start=T0 + 3600 * 5)  # fmt: skip
    run = _run_with_archive(tmp_path, stream)
    t0 = T0.datetime.replace(tzinfo=UTC) + timedelta(hours=5)
    span = (t0 + timedelta(seconds=300), t0 + timedelta(hours=1))
    assert day_window(DAY, span) == (UTCDateTime(span[0]), UTCDateTime(span[1]))
    summary = pick_station_day(run.root, "XX", "TEST", DAY, PickerConfig(), FakePicker(),
                               span=span)  # fmt: skip
    assert (summary["n_p"], summary["n_s"]) == (1, 1)  # the event at 10 s is outside
    times = pd.read_parquet(station_day_path(run.root, "XX", "TEST", DAY))["time"]
    assert (times >= pd.Timestamp(span[0])).all() and (times < pd.Timestamp(span[1])).all()
    with pytest.raises(PickingError, match="does not overlap 2024-02-04"):
        pick_station_day(run.root, "XX", "TEST", date(2024, 2, 4), PickerConfig(),
                         FakePicker(), span=span)  # fmt: skip


def test_pick_all_workers_give_the_same_tables(tmp_path):
    stream = _stream(_event_data(int(1200 * FS), [(10.0, 13.0), (500.0, 502.0)]),
                     start=T0 + 3600 * 5)  # fmt: skip
    tables = []
    for workers in (1, 3):
        run = _run_with_archive(tmp_path / str(workers), stream)
        stations = pd.read_csv(run.path("waveforms", "stations.csv"), keep_default_na=False)
        extra = stations.assign(station="OTHER")  # no data: an empty table
        stations = pd.concat([stations, extra], ignore_index=True)
        result = pick_all(run, PickerConfig(), stations, [DAY, date(2024, 2, 4)],
                          model=FakePicker(), workers=workers)  # fmt: skip
        assert result["counts"]["station_days"] == 6 and result["counts"]["failed"] == 0
        assert [s["station_day"] for s in result["station_days"]] == [
            f"XX.{sta}.{day}" for day in ("2024-02-03", "2024-02-04")
            for sta in ("TEST", "EMPTY", "OTHER")
        ]  # fmt: skip
        tables.append(pd.read_parquet(run.path("picks", "picks.parquet")))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert len(tables[0]) == 4
    with pytest.raises(ValueError, match="workers"):
        pick_all(run, PickerConfig(), stations, [DAY], model=FakePicker(), workers=0)


def test_bad_station_day_error_names_it(tmp_path):
    run = _run_with_archive(tmp_path, _stream(np.zeros((1000, 3))))
    with pytest.raises(PickingError, match=r"station-day XX\.\.\./x\.2024-02-03: .*station"):
        pick_station_day(run.root, "XX", "../x", DAY, PickerConfig(), FakePicker())
    with pytest.raises(PickingError, match=r"station-day XX\.NOPE\.2024-02-03: .*not in"):
        pick_station_day(run.root, "XX", "NOPE", DAY, PickerConfig(), FakePicker())
    pd.DataFrame({"pick_id": ["a"]}).to_parquet(run.path("picks", "XX.TEST.2024-02-03.parquet"))
    with pytest.raises(PickingError, match="missing column"):
        merge_picks(run)
    with pytest.raises(PickingError, match="stations table: missing column.*channel_prefix"):
        pick_all(run, PickerConfig(), pd.DataFrame({"network": ["XX"], "station": ["TEST"],
                 "location": [""]}), [DAY], model=FakePicker())  # fmt: skip


def test_a_build_where_no_station_day_could_be_picked_stops_naming_the_first_failure(tmp_path):
    """Every station with data fails (here: sampled at 1 Hz, too slow for the band): the
    stages after picking made an empty catalog and the build exited 0."""
    slow = _stream(np.random.default_rng(8).normal(size=(600, 3)), start=T0 + 3600)
    for trace in slow:
        trace.stats.sampling_rate = 1.0
    run = _run_with_archive(tmp_path, slow)
    stations = pd.read_csv(run.path("waveforms", "stations.csv"), keep_default_na=False)
    expected = (
        r"no station-day could be picked: 1 of 2 failed, the other 1 had no data; "
        r"first failure: station-day XX\.TEST\.2024-02-03: .*1 Hz, too slow"
    )
    with pytest.raises(PickingError, match=expected):
        pick_all(run, PickerConfig(), stations, [DAY], model=FakePicker())
    failures = run.read_manifest()["picks"]["details"]["failures"]
    assert list(failures) == ["XX.TEST.2024-02-03"]  # recorded before the stop
    fine = _stream(_event_data(int(600 * FS), [(10.0, 13.0)]), start=T0 + 3600)
    write_channel_day(fine.copy(), run.stage_dir("waveforms"), DAY)  # TEST picks again
    result = pick_all(run, PickerConfig(), stations, [DAY], model=FakePicker())
    assert result["counts"]["failed"] == 0 and result["counts"]["picks"] == 2


def test_config_validation():
    with pytest.raises(ValueError, match="mc_samples"):
        PickerConfig(mc_samples=1)
    # MC pass buffers of a day-long chunk at 200 passes: 20.8 GB per station-day
    with pytest.raises(ValueError, match=r"mc_samples = 200: with chunk_s 86400 needs 19\.3 GiB"):
        PickerConfig(mc_samples=200, chunk_s=86400)
    assert PickerConfig(mc_samples=200).mc_buffer_bytes() < 2**30  # the default chunk
    with pytest.raises(ValueError, match="Extra inputs"):
        PickerConfig(thresholds=0.2)
    assert PickerConfig().model_dump()["detection_threshold"] == 0.5


# ------------------------------------------------------------------ the real model, real data


_CACHE: dict[str, object] = {}


@pytest.fixture
def eqt(shared):
    """The shared conservative model with Keras-3 gates (loaded once per session)."""
    if "eqt" not in _CACHE:
        from pipeline.picking import load_eqt

        _CACHE["eqt"] = load_eqt(
            shared("models", "eqt", "EqT_conservative.keras"), hard_sigmoid="keras3"
        )
    return _CACHE["eqt"]


@pytest.fixture
def wilz(shared):
    """The 2 h O2.WILZ record (E, N, Z at 100 Hz)."""
    if "wilz" not in _CACHE:
        _CACHE["wilz"] = read(str(shared("data", "continuous", "O2.WILZ") / "*.mseed"))
    return _CACHE["wilz"]


def _wilz_run(tmp_path, stream) -> RunDir:
    run = RunDir(tmp_path / "run")
    write_channel_day(stream, run.stage_dir("waveforms"), DAY)
    return run


def test_o2wilz_two_hours_many_picks_no_duplicates(tmp_path, eqt, wilz):
    run = _wilz_run(tmp_path, wilz)
    summary = pick_station_day(
        run.root, "O2", "WILZ", DAY, PickerConfig(), eqt, location="", channel_prefix="EH"
    )
    picks = pd.read_parquet(summary["path"])
    assert summary["n_p"] >= P_MIN and summary["n_s"] >= S_MIN, summary
    assert (
        picks["model"].eq("EqT_conservative+hard_sigmoid_keras3").all()
        and picks["picker"].eq("eqt").all()
    )
    for _, part in picks.groupby("phase"):
        assert part["time"].diff().dt.total_seconds().dropna().min() >= 0.5
    assert picks["probability"].between(0.2, 1).all()  # the P/S thresholds
    inside = (picks["time"] >= picks["detection_start"] - pd.Timedelta(seconds=1)) & (
        picks["time"] <= picks["detection_end"] + pd.Timedelta(seconds=1)
    )
    assert inside.all()


def test_o2wilz_gap_has_no_pick_and_mc_reports_spread(tmp_path, eqt, wilz):
    start = wilz[0].stats.starttime + 600
    excerpt = wilz.slice(start, start + 900).copy()
    gap = (start + 300, start + 420)
    gapped = excerpt.copy().cutout(*gap)
    reader = lambda a, b: gapped.slice(a, b).copy()  # noqa: E731
    cfg = PickerConfig(mc_samples=4)
    picks = pick_span(reader, ("O2", "WILZ", ""), start, start + 900, cfg, eqt)
    full = pick_span(lambda a, b: excerpt.slice(a, b).copy(), ("O2", "WILZ", ""), start,
                     start + 900, PickerConfig(), eqt)  # fmt: skip
    t0, t1 = (pd.Timestamp(t.datetime, tz="UTC") for t in gap)
    assert ((full["time"] >= t0) & (full["time"] < t1)).sum() >= 2  # the gap hid picks
    guard = pd.Timedelta(seconds=cfg.gap_guard_s)  # nor next to it (tapered data edges)
    assert not ((picks["time"] >= t0 - guard) & (picks["time"] < t1 + guard)).any()
    assert len(picks) >= 4
    assert (picks["probability_std"] >= 0).all() and (picks["probability_std"] > 0).any()
    assert picks["time_std_s"].notna().all() and (picks["time_std_s"] < 0.5).all()
    # MC adds statistics, never moves or drops a pick: the deterministic part is identical
    plain = pick_span(reader, ("O2", "WILZ", ""), start, start + 900, PickerConfig(), eqt)
    same = ["pick_id", "phase", "time", "detection_start", "detection_end"]
    pd.testing.assert_frame_equal(picks[same], plain[same])


@pytest.mark.parametrize("picker", ["eqt", "stalta"])
def test_o2wilz_horizontals_that_stop_cost_only_their_own_picks(eqt, wilz, picker):
    """E and N stop half-way through a 20-min span (a horizontal sensor that died): after
    that the station is picked as one without horizontals (zeros in their place). The span
    without them used to count as a gap of the station: no pick at all after the stop."""
    start = wilz[0].stats.starttime + 360
    stop = start + 600
    cut = wilz.slice(start, start + 1200).copy()
    for trace in cut.select(component="[EN]"):
        trace.trim(start, stop)
    cfg = PickerConfig(picker=picker)

    def picks_of(stream: Stream) -> pd.DataFrame:
        return pick_span(lambda a, b: stream.slice(a, b).copy(), ("O2", "WILZ", ""), start,
                         start + 1200, cfg, eqt)  # fmt: skip

    picks = picks_of(cut)
    vertical = picks_of(cut.select(component="Z"))
    full = picks_of(wilz.slice(start, start + 1200).copy())
    after = pd.Timestamp((stop + 70).datetime, tz="UTC")  # windows that saw only Z
    late, late_z = picks[picks["time"] >= after], vertical[vertical["time"] >= after]
    assert len(late) >= 10 and (late["phase"] == "P").sum() >= 3
    same = ["pick_id", "phase", "time", "probability"]
    pd.testing.assert_frame_equal(late[same].reset_index(drop=True),
                                  late_z[same].reset_index(drop=True))  # fmt: skip
    early = pd.Timestamp((stop - 70).datetime, tz="UTC")  # windows that saw all three
    pd.testing.assert_frame_equal(
        picks.loc[picks["time"] < early, same].reset_index(drop=True),
        full.loc[full["time"] < early, same].reset_index(drop=True),
    )
    if picker == "stalta":  # P from the vertical alone: every one of the full record's
        pd.testing.assert_frame_equal(
            picks.loc[picks["phase"] == "P", same].reset_index(drop=True),
            full.loc[full["phase"] == "P", same].reset_index(drop=True),
        )


def test_a_component_gap_is_guarded_at_its_edges_not_a_gap_of_the_station():
    header = {"station": "A", "channel": "EHZ", "starttime": T0, "sampling_rate": FS}
    z = Trace(np.random.default_rng(3).normal(size=60_000), header=header)
    e = z.copy()
    e.stats.channel = "EHE"
    stream = Stream([z, e]).copy()
    stream = stream.select(channel="EHZ") + stream.select(channel="EHE").cutout(T0 + 200, T0 + 210)
    record = preprocess_stream(stream, "XX.A.")
    assert not record.gap_mask.any()  # Z has data throughout
    (g0,), (g1,) = runs(record.component_gap(0))  # E's own 10 s gap
    assert (g1 - g0) / FS == pytest.approx(10, abs=0.02) and not record.component_gap(2).any()
    starts, ends = runs(record.near_gaps(1.5))  # the record's ends and E's data edges
    assert starts.tolist() == [0, g0 - 150, g1 - 150, 59_850]
    assert ends.tolist() == [150, g0 + 150, g1 + 150, 60_000]


def test_o2wilz_samples_beyond_float32_are_gaps_like_nan(tmp_path, eqt, wilz):
    """Ten float64 samples of 1e300 in a day file (a damaged float record) became inf in the
    picker's float32 and failed the station-day ("windows contain NaN or infinite values");
    they are now gaps, as NaN samples are, and the rest of the span is picked alike."""
    start = wilz[0].stats.starttime + 600
    damaged = {}
    for bad in (np.nan, 1e300):
        stream = wilz.slice(start, start + 600).copy()
        for trace in stream:
            trace.data = trace.data.astype(np.float64)
            trace.data[30_000:30_010] = bad
        root = tmp_path / str(bad)
        write_channel_day(stream, root, DAY)
        read = lambda a, b, r=root: read_station(r, "O2", "WILZ", "", "EH", a, b)  # noqa: E731
        damaged[bad] = pick_span(read, ("O2", "WILZ", ""), start, start + 600, PickerConfig(), eqt)
    assert len(damaged[np.nan]) >= 5
    pd.testing.assert_frame_equal(damaged[1e300], damaged[np.nan])


def _horizontal(north: np.ndarray, east: np.ndarray, azimuth_deg: float) -> np.ndarray:
    """What a horizontal sensor at ``azimuth_deg`` (clockwise from north) records."""
    a = np.radians(azimuth_deg)
    return north * np.cos(a) + east * np.sin(a)


def test_horizontals_at_other_azimuths_are_rotated_onto_north_and_east():
    from pipeline.picking.preprocess import rotate_to_north_east

    rng = np.random.default_rng(5)
    north, east = rng.normal(size=(2, 500))
    covered = np.ones((500, 3), dtype=bool)
    covered[100:120, 0] = False  # the east-slot channel pauses: those rows stay as they are
    for a_n, a_e in ((30.0, 120.0), (350.0, 80.0), (10.0, 95.0)):  # the last not orthogonal
        data = np.zeros((500, 3), dtype=np.float32)
        data[:, 1], data[:, 0] = _horizontal(north, east, a_n), _horizontal(north, east, a_e)
        before = data.copy()
        note = rotate_to_north_east(data, covered, ("HH2", "HH1", "HHZ"),
                                    {"HH1": a_n, "HH2": a_e}, "XX.A.")  # fmt: skip
        assert note == f"XX.A.: horizontals HH1 ({a_n:g}°) and HH2 ({a_e:g}°) rotated onto N and E"
        both = covered[:, 0]
        np.testing.assert_allclose(data[both, 1], north[both], atol=1e-4)
        np.testing.assert_allclose(data[both, 0], east[both], atol=1e-4)
        np.testing.assert_array_equal(data[~both], before[~both])
    data = np.ones((500, 3), dtype=np.float32)
    channels = ("HHE", "HHN", "HHZ")
    for azimuths in ({"HHN": 0.5, "HHE": 90.8}, {"HHN": 0.0}, {}):  # north/east, or unknown
        assert rotate_to_north_east(data, covered, channels, azimuths, "XX.A.") is None
    parallel = rotate_to_north_east(data, covered, channels, {"HHN": 0, "HHE": 20}, "XX.A.")
    assert "too close to parallel" in parallel and (data == 1).all()


def test_station_metadata_azimuths_of_the_chosen_horizontals(tmp_path):
    from obspy.core.inventory import Channel, Inventory, Network, Station

    from pipeline.errors import EqcatInputError
    from pipeline.waveforms.inventory import horizontal_azimuths

    def channel(code: str, azimuth: float | None) -> Channel:
        return Channel(code, "00", 35.0, 133.0, 0.0, 0.0, azimuth=azimuth, dip=0.0,
                       start_date=UTCDateTime(2000, 1, 1))  # fmt: skip

    station = Station("A", 35.0, 133.0, 0.0, channels=[
        channel("HH1", 30.0), channel("HH2", 120.0), channel("HHZ", 0.0), channel("BH1", 45.0),
        channel("EHN", None),
    ])  # fmt: skip
    path = tmp_path / "inventory.xml"
    Inventory([Network("XX", stations=[station])]).write(str(path), format="STATIONXML")
    day = date(2000, 10, 8)
    assert horizontal_azimuths(path, "XX", "A", "00", "HH", day) == {"HH1": 30.0, "HH2": 120.0}
    assert horizontal_azimuths(path, "XX", "A", "00", "EH", day) == {}  # no azimuth given
    assert horizontal_azimuths(path, "XX", "A", "", "HH", day) == {}  # another location
    assert horizontal_azimuths(tmp_path / "none.xml", "XX", "A", "00", "HH", day) == {}
    path.write_bytes(path.read_bytes()[:300])  # damaged on disk: one line naming it
    with pytest.raises(EqcatInputError, match="inventory.xml: not readable StationXML"):
        horizontal_azimuths(path, "XX", "A", "00", "HH", day)


def test_o2wilz_recorded_at_other_azimuths_gives_the_north_east_picks(eqt, wilz):
    """The real O2.WILZ record turned into 1/2 horizontals at 30° and 120° is picked as
    recorded once the azimuths are known; fed as N/E without them the picks differ."""
    start = wilz[0].stats.starttime + 360
    original = wilz.slice(start, start + 1200).copy()
    north = original.select(component="N")[0].data.astype(np.float64)
    east = original.select(component="E")[0].data.astype(np.float64)
    turned = original.copy()
    for trace, code, azimuth in zip(turned.select(component="[NE]"), ("EH1", "EH2"), (30, 120),
                                    strict=True):  # fmt: skip
        trace.stats.channel = code
        trace.data = _horizontal(north, east, azimuth)
    cfg = PickerConfig()

    def picks_of(stream: Stream, azimuths: dict[str, float] | None) -> pd.DataFrame:
        return pick_span(lambda a, b: stream.slice(a, b).copy(), ("O2", "WILZ", ""), start,
                         start + 1200, cfg, eqt, azimuths=azimuths)  # fmt: skip

    plain = picks_of(original, None)
    rotated = picks_of(turned, {"EH1": 30.0, "EH2": 120.0})
    assert len(plain) >= 20
    assert rotated["phase"].tolist() == plain["phase"].tolist()
    shift = (rotated["time"] - plain["time"]).abs().max()
    assert shift < pd.Timedelta(milliseconds=1)  # float32 rounding of the rotated samples
    np.testing.assert_allclose(rotated["probability"], plain["probability"], atol=0.01)
    unrotated = picks_of(turned, None)
    assert len(unrotated) != len(plain) or not np.allclose(
        unrotated["probability"], plain["probability"], atol=0.01
    )
