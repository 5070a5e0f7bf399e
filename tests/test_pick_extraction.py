"""Combination of overlapping windows (pipeline.picking.windows): odd quarter-second steps, the P
output of each sample is the mean over the windows that use it, the detector and S outputs keep
the maximum; the original model's whole-second P bias that this answers is checked on the real
model."""

from __future__ import annotations

import numpy as np
import pytest
from obspy import UTCDateTime

from pipeline.picking.params import PickerConfig
from pipeline.picking.preprocess import Record
from pipeline.picking.stage import eqt_record_picks, record_curves
from pipeline.picking.windows import (
    WINDOW,
    combine,
    coverage,
    effective_blind,
    stack,
    used_bounds,
    window_starts,
    window_step,
)

FS = 100.0
T0 = UTCDateTime(2024, 2, 3)
STEP = window_step(PickerConfig().overlap)


def test_window_step_is_an_odd_quarter_second():
    assert [window_step(o) for o in (0.0, 0.3, 0.5, 0.7, 0.9)] == [5975, 4175, 2975, 1775, 575]
    assert all(window_step(o) % 50 == 25 for o in np.linspace(0, 0.9, 37))
    assert all(window_step(o) <= WINDOW * (1 - o) + 1e-6 for o in np.linspace(0, 0.9, 37))


def test_effective_blind_per_output():
    assert STEP == 4175  # overlap 0.3: 1800 samples, down to an odd multiple of 25
    assert set(effective_blind(500, STEP).values()) == {(500, 500)}
    wide = effective_blind(5000, STEP)  # at most half the overlap, so the record stays covered
    assert set(wide.values()) == {((WINDOW - STEP) // 2, (WINDOW - STEP) // 2)}
    assert set(effective_blind(500, WINDOW).values()) == {(0, 0)}  # no overlap: all samples


def test_p_is_the_mean_of_the_windows_using_each_sample():
    n = 30_000
    starts = window_starts(n, T0.timestamp, FS, STEP)
    blind = effective_blind(500, STEP)["picker_P"]
    rng = np.random.default_rng(2)
    outputs = rng.uniform(size=(len(starts), WINDOW)).astype(np.float32)
    mean = stack(outputs, starts, n, blind, "mean")
    lo, hi = used_bounds(starts, n, blind)
    count = coverage(starts, n, blind)
    assert count.min() >= 1 and count[WINDOW:-WINDOW].max() <= 4  # about 4 windows at 0.7
    for t in range(0, n, 997):
        users = [k for k in range(len(starts)) if starts[k] + lo[k] <= t < starts[k] + hi[k]]
        assert len(users) == count[t]
        assert mean[t] == pytest.approx(np.mean([outputs[k, t - starts[k]] for k in users]))
    assert np.array_equal(
        stack(outputs, starts, n, blind, "max"), combine(outputs, starts, n, blind)
    )
    with pytest.raises(ValueError, match="stacking"):
        combine(outputs, starts, n, blind, stacking="median")


def test_subsets_combine_like_the_whole():
    n = 30_000
    starts = window_starts(n, T0.timestamp, FS, STEP)
    rng = np.random.default_rng(1)
    outputs = rng.uniform(size=(len(starts), 2, WINDOW)).astype(np.float32)  # 2 "MC passes"
    blind = effective_blind(500, STEP)["picker_P"]
    whole = combine(outputs, starts, n, blind)
    part = rng.uniform(size=len(starts)) < 0.5
    pieces = combine(outputs[~part], starts[~part], n, blind)
    combine(outputs[part], starts[part], n, blind, out=pieces)
    assert np.array_equal(whole, pieces)
    total = combine(outputs, starts, n, blind, stacking="sum")
    summed = combine(outputs[~part], starts[~part], n, blind, stacking="sum")
    combine(outputs[part], starts[part], n, blind, out=summed, stacking="sum")
    assert np.allclose(total, summed, atol=1e-5)


class FirstArrivalPicker:
    """Mimics EQTransformer without the data before an arrival: in each window the first onset
    (|Z| or |N| rising above 5 after at least 1 s below it) gets P probability 0.9, an onset on
    N also S probability 0.9; the detector is 0.9 from each onset for 5 s."""

    name = "first-arrival"

    def predict_windows(self, x, mc_samples=0, batch_size=500):
        out = {k: np.zeros(x.shape[:2], np.float32) for k in ("detector", "picker_P", "picker_S")}
        bump = np.hanning(21).astype(np.float32) * 0.9
        for i, window in enumerate(x):
            loud = np.maximum(np.abs(window[:, 1]), np.abs(window[:, 2])) > 5
            quiet_before = np.convolve(~loud, np.ones(100), "full")[: len(loud)] >= 100
            onsets = np.flatnonzero(loud[1:] & quiet_before[:-1]) + 1
            for k, t in enumerate(onsets[(onsets > 10) & (onsets < WINDOW - 10)]):
                if k == 0:
                    out["picker_P"][i, t - 10 : t + 11] = bump
                if np.abs(window[t : t + 10, 1]).max() > 5:
                    out["picker_S"][i, t - 10 : t + 11] = bump
                out["detector"][i, t : t + 500] = 0.9
        return out


@pytest.mark.xfail(
    strict=True,
    reason="known limitation of mean P stacking: a window that begins between P and S calls "
    "the S a P (0.9) and the window mean passes the P threshold; a longer P blind at the "
    "window start did not change real-data recall (README), cause not settled",
)
def test_window_beginning_between_p_and_s_does_not_pick_the_s_as_p():
    n = 30_000
    starts = window_starts(n, T0.timestamp, FS, STEP)
    begin = int(starts[3])  # an interior grid window begins 1 s after P and 7 s before S
    p, s = begin - 100, begin + 700
    rng = np.random.default_rng(0)
    data = rng.normal(size=(n, 3)).astype(np.float32) * 0.1
    data[p : p + 50, 2] += 40 * np.sin(np.arange(50))  # 0.5 s P on Z
    data[s : s + 300, 1] += 80 * np.sin(np.arange(300))  # 3 s S on N
    record = Record("XX.TEST.", T0, FS, data, np.zeros(n, bool), ("E", "N", "Z"))
    picks = eqt_record_picks(record, FirstArrivalPicker(), PickerConfig())
    assert picks.loc[picks["phase"] == "P", "sample"].tolist() == pytest.approx([p], abs=1)
    assert picks.loc[picks["phase"] == "S", "sample"].tolist() == pytest.approx([s], abs=1)


# ------------------------------------------------------------------ the real original model


@pytest.fixture(scope="module")
def original():
    """The authors' original EQTransformer model (the picking default), as the product loads it."""
    from pipeline.picking import load_eqt
    from pipeline.weights import WeightsUnavailableError

    try:
        return load_eqt("original")
    except WeightsUnavailableError as exc:
        pytest.fail(f"the original EQTransformer model is not installed: {exc} (make setup)")


def _whole_second_share(peaks: np.ndarray) -> float:
    """Fraction of peak positions (samples) within one sample after a whole second."""
    return float(np.isin(np.asarray(peaks) % 100, (0, 1)).mean())


def test_original_model_pulls_p_to_whole_seconds_and_the_combination_spreads_it(original):
    """On white noise the model's P peaks sit on whole seconds of its window (chance: 2 %);
    windows at odd quarter-second steps, mean-combined, spread them over four phases."""
    from scipy.signal import find_peaks

    rng = np.random.default_rng(0)
    windows = rng.normal(size=(16, WINDOW, 3)).astype(np.float32)
    per_window = original.predict_windows(windows, batch_size=16)["picker_P"]
    peaks = np.concatenate([find_peaks(v, height=0.02)[0] for v in per_window])
    assert len(peaks) > 50 and _whole_second_share(peaks) > 0.25

    n = 24_000 + 2 * WINDOW
    record = Record("XX.NOISE.", T0, FS, rng.normal(size=(n, 3)).astype(np.float32),
                    np.zeros(n, bool), ("E", "N", "Z"))  # fmt: skip
    curves = record_curves(record, original, PickerConfig())
    inner = curves["picker_P"][WINDOW:-WINDOW]
    combined = find_peaks(inner, height=0.01)[0] + WINDOW
    assert len(combined) > 20 and _whole_second_share(combined) < 0.5 * _whole_second_share(peaks)
