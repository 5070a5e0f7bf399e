"""Combination of overlapping windows (pipeline.picking.windows): the P output of each sample
comes from the window with the most data before it, so a window that begins between an event's
P and S cannot turn the S into a P pick; the detector and S outputs keep the maximum."""

from __future__ import annotations

import numpy as np
import pytest
from obspy import UTCDateTime

from pipeline.picking.params import PickerConfig
from pipeline.picking.preprocess import Record
from pipeline.picking.stage import eqt_record_picks
from pipeline.picking.windows import (
    WINDOW,
    combine,
    effective_blind,
    window_starts,
    window_step,
)

FS = 100.0
T0 = UTCDateTime(2024, 2, 3)
STEP = window_step(0.3)


def test_effective_blind_per_output():
    assert STEP == 4200
    assert effective_blind(500, STEP) == {
        "detector": (500, 500),
        "picker_P": (1300, 500),  # the rest of the overlap at the start
        "picker_S": (500, 500),
    }
    wide = effective_blind(5000, STEP)  # at most the overlap (P), half of it (detector, S)
    assert wide["picker_P"] == (0, 1800) and wide["picker_S"] == (900, 900)
    assert set(effective_blind(500, WINDOW).values()) == {(0, 0)}  # no overlap: all samples


def test_used_parts_tile_the_record_earliest_window_first():
    n = 60_000
    starts = window_starts(n, T0.timestamp, FS, STEP)
    head, tail = effective_blind(500, STEP)["picker_P"]
    index = np.arange(1, len(starts) + 1, dtype=np.float32)
    outputs = np.repeat(index[:, None], WINDOW, axis=1)
    combined = combine(outputs, starts, n, (head, tail))
    # every sample after the first window and before the last comes from the earliest window
    # that covers it at least `tail` samples before the window's end
    for t in range(WINDOW, n - WINDOW, 37):
        earliest = np.flatnonzero((starts <= t) & (t < starts + WINDOW - tail))[0]
        assert combined[t] == index[earliest]
    assert combined.min() >= 1  # no sample left uncovered


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
