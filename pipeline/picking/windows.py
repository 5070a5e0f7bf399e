"""60 s windows of a continuous record: placement, standardisation, prediction, combination.

Windows start on a global grid (multiples of the window step since the Unix epoch), so two
overlapping chunks of a day place the same windows where they overlap and give the same
outputs there. One extra window is aligned with each end of the record so both ends are
covered.

Where windows overlap, the P output of each sample is taken from the window that began
earliest, i.e. the one with the most data before the sample: EQTransformer needs the data
before an arrival (the noise before an onset, the P before its S) to call it a P and, near the
start of a window, calls the first arrival it sees a P. On the 6-h demo replica with the
original model, single-window P picks in the first 3-6 s of a window were 44 % correct, 62-72 %
at 6-21 s and about 80 % beyond 21 s; combining overlapping windows by their maximum let those
early outputs through (P pick precision 0.74 instead of 0.78). For P only the last ``blind``
samples of a window are never used (nothing after them); its first ``window - step - blind``
samples are covered by its predecessor, so the used parts of consecutive windows tile the
record. S picks were 98-100 % correct at every position but the last 6 s (75-93 %), so the
detector and S outputs are combined by their maximum, ignoring ``blind`` samples at both edges
(at most half the overlap, so the used parts still touch). Edges that are ends of the record
are always used; where used parts overlap (near the ends) the maximum is kept.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

#: Samples per model window (60 s at 100 Hz).
WINDOW = 6000
#: Output traces of the model.
OUTPUTS = ("detector", "picker_P", "picker_S")


class WindowPredictor(Protocol):
    """What the picker needs from a model (see :func:`pipeline.picking.load_eqt`)."""

    name: str

    def predict_windows(
        self, x: np.ndarray, mc_samples: int = 0, batch_size: int = 500
    ) -> dict[str, np.ndarray]: ...

    def predict_passes(
        self, x: np.ndarray, passes: int, batch_size: int = 500
    ) -> dict[str, np.ndarray]: ...


def window_step(overlap: float, window: int = WINDOW) -> int:
    """Samples between window starts for an overlap fraction (at least 1)."""
    return max(1, int(round(window * (1.0 - overlap))))


def effective_blind(blind: int, step: int, window: int = WINDOW) -> dict[str, tuple[int, int]]:
    """Samples ignored at the (start, end) of each window, per output (module docstring).

    ``picker_P``: the end ``blind``, at most the overlap ``window - step``, and the rest of the
    overlap at the start, so that its used parts (``step`` samples) tile the record.
    ``detector`` and ``picker_S``: ``blind`` at both edges, at most half the overlap.
    """
    tail = max(0, min(blind, window - step))
    both = max(0, min(blind, (window - step) // 2))
    return {
        "detector": (both, both),
        "picker_P": (max(0, window - step - tail), tail),
        "picker_S": (both, both),
    }


def window_starts(
    n_samples: int, start_timestamp: float, sampling_rate: float, step: int, window: int = WINDOW
) -> np.ndarray:
    """Start samples of the windows covering a record of ``n_samples``.

    Args:
        n_samples: record length (samples).
        start_timestamp: time of sample 0 (s since the Unix epoch).
        sampling_rate: samples per second.
        step: samples between grid windows.

    Returns:
        Sorted unique int64 starts; ``[0]`` for a record shorter than one window.
    """
    if n_samples <= window:
        return np.array([0], dtype=np.int64)
    step_s = step / sampling_rate
    first_k = int(np.ceil(start_timestamp / step_s - 1e-9))
    first = int(np.ceil((first_k * step_s - start_timestamp) * sampling_rate - 1e-3))
    grid = np.arange(first, n_samples - window + 1, step, dtype=np.int64)
    return np.unique(np.concatenate(([0], grid, [n_samples - window])))


def standardised_windows(data: np.ndarray, starts: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Windows of ``data`` (n, C) at ``starts``, each standardised per channel: (N, window, C).

    Per window and channel the mean is subtracted and the result divided by the standard
    deviation (EQTransformer's "std" normalisation); an all-zero channel stays zero. A record
    shorter than one window is zero-padded at the end (the padding counts in the statistics,
    as in EQTransformer). Means and variances come from running sums (float64) over the
    record, so the cost is one pass over the data plus one copy per window. Returns float32.
    """
    n, channels = data.shape
    if n < window:
        data = np.vstack([data, np.zeros((window - n, channels), dtype=data.dtype)])
    starts = np.asarray(starts, dtype=np.int64)
    sums = np.zeros((len(data) + 1, channels))
    squares = np.zeros((len(data) + 1, channels))
    np.cumsum(data, axis=0, dtype=np.float64, out=sums[1:])
    np.cumsum(np.square(data, dtype=np.float64), axis=0, out=squares[1:])
    mean = (sums[starts + window] - sums[starts]) / window
    power = (squares[starts + window] - squares[starts]) / window
    variance = power - mean**2
    std = np.sqrt(np.where(variance > 1e-12 * power, variance, 0.0))
    scale = 1.0 / np.where(std > 0, std, 1.0)
    view = np.lib.stride_tricks.sliding_window_view(data, (window, channels))[:, 0]
    out = view[starts].astype(np.float32)
    out -= mean[:, None, :].astype(np.float32)
    out *= scale[:, None, :].astype(np.float32)
    return out


def combine(
    outputs: np.ndarray,
    starts: np.ndarray,
    n_samples: int,
    blind: tuple[int, int],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Combine per-window outputs into one trace (module docstring).

    Each window contributes all but its first ``blind[0]`` and last ``blind[1]`` samples (all
    of the first at the start of the record, all of the last at its end); where contributions
    overlap (near the ends of the record) the maximum is kept. Combining subsets of the
    windows into the same ``out`` gives the same trace as combining them all at once.

    Args:
        outputs: (N, ..., window) values of N windows (extra axes, e.g. MC passes, are kept).
        starts: (N,) window start samples.
        n_samples: record length; samples beyond it (zero padding) are dropped.
        blind: (start, end) samples ignored in each window (one output's entry of
            :func:`effective_blind`).
        out: (..., n_samples) float32 array to combine into (in place); None = new zeros.

    Returns:
        (..., n_samples) float32 (``out`` when given).
    """
    if out is None:
        out = np.zeros(outputs.shape[1:-1] + (n_samples,), dtype=np.float32)
    lows, highs = used_bounds(starts, n_samples, blind, outputs.shape[-1])
    for values, s, lo, hi in zip(outputs, starts, lows, highs, strict=True):
        target = out[..., s + lo : s + hi]
        np.maximum(target, values[..., lo:hi], out=target)
    return out


def used_bounds(
    starts: np.ndarray, n_samples: int, blind: tuple[int, int], window: int = WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) int64 arrays: the samples ``[lo, hi)`` of each window that :func:`combine` uses.

    Offsets inside the window (samples); the first window of the record keeps its start, one
    reaching the end of the record its end, and nothing beyond ``n_samples`` is used.
    """
    starts = np.asarray(starts, dtype=np.int64)
    head, tail = blind
    lo = np.where(starts == 0, 0, head)
    hi = np.where(starts + window >= n_samples, window, window - tail)
    return lo, np.minimum(hi, n_samples - starts)


def windows_covering(
    starts: np.ndarray,
    n_samples: int,
    blind: tuple[int, int],
    intervals: np.ndarray,
    window: int = WINDOW,
) -> np.ndarray:
    """(N,) bool: windows whose used samples (:func:`used_bounds`) meet any interval.

    Args:
        starts: (N,) window start samples.
        n_samples: record length.
        blind: one output's entry of :func:`effective_blind`.
        intervals: (K, 2) record samples ``[start, end)``.

    Combining only the marked windows gives, on every sample of the intervals, the same
    value as combining all windows (the others contribute nothing there).
    """
    intervals = np.asarray(intervals, dtype=np.int64).reshape(-1, 2)
    lo, hi = used_bounds(starts, n_samples, blind, window)
    first, last = np.asarray(starts) + lo, np.asarray(starts) + hi
    meets = (first[:, None] < intervals[None, :, 1]) & (intervals[None, :, 0] < last[:, None])
    return meets.any(axis=1)


def predict(model: WindowPredictor, windows: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Deterministic outputs (N, window) of standardised windows (N, window, 3)."""
    if len(windows) == 0:
        return {k: np.zeros((0, windows.shape[1]), dtype=np.float32) for k in OUTPUTS}
    result = model.predict_windows(windows, mc_samples=0, batch_size=batch_size)
    return {k: np.asarray(result[k], dtype=np.float32) for k in OUTPUTS}


def combined_passes(
    model: WindowPredictor,
    windows: np.ndarray,
    starts: np.ndarray,
    n_samples: int,
    blind: dict[str, tuple[int, int]],
    passes: int,
    batch_size: int,
    out: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Combine ``passes`` MC-dropout passes of each window into ``out[k]`` (passes, n_samples).

    :meth:`~pipeline.picking.model.EQTransformer.predict_passes` runs the deterministic
    encoder stem once per window and draws an independent dropout mask per pass; windows go
    in groups of ``batch_size // passes`` so the (group, passes, window) outputs stay near one
    batch in memory.
    """
    group = max(1, batch_size // passes)
    for g in range(0, len(windows), group):
        result = model.predict_passes(windows[g : g + group], passes, batch_size=batch_size)
        for k in OUTPUTS:
            values = np.asarray(result[k], dtype=np.float32)
            combine(values, starts[g : g + group], n_samples, blind[k], out=out[k])
    return out
