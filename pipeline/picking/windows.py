"""60 s windows of a continuous record: placement, standardisation, prediction, combination.

Windows start on a global grid (multiples of the window step since the Unix epoch), so two
overlapping chunks of a day place the same windows where they overlap and give the same
outputs there. One extra window is aligned with each end of the record so both ends are
covered.

The step is an odd multiple of a quarter second (:func:`window_step`). The original model's P
output is biased towards whole seconds of its window: weak P arrivals are drawn to window
offsets that are multiples of 100 samples (measured on the demo replica, seed 2000, station
X01, one hour: 19-24 % of the model's P peaks >= 0.1 sit on such an offset against 1 % by
chance, whatever the window's start, and on white noise too), as if learned from training
windows cut with the P on a whole second. With a step of whole seconds every window puts the
bias on the same samples: 25 % of the demo's P picks fell on whole seconds (P pick precision
0.78, MAE 0.110 s). With odd quarter-second steps, the windows over a sample pull towards
instants a quarter second apart.

Where windows overlap, the P output of a sample is the **mean** over the windows that use it,
so one window's bias or mistake is diluted by the others; the detector and S outputs keep the
**maximum** (S picks were 98-100 % correct at every window position but the last 6 s). Each
window leaves ``blind`` samples unused at both edges (at most half the overlap, so the used
parts still cover the record): near its start EQTransformer calls the first arrival it sees a
P (single-window P picks in the first 3-6 s of a window were 44 % correct), near its end it
lacks the data after an arrival. Edges that are ends of the record are always used.

Measured on the demo replica (seed 2000, original model, all 18 stations; pick = within 0.5 s
of a true arrival; events = true events >= M 0.8 with such picks at >= 3 stations):

    overlap, step, P combination        P precision  P MAE   S picks matched  events
    0.3, 4200, earliest window          0.780        0.110   6759             519 / 599
    0.5, 2950, earliest window          0.813        0.105   7032             523
    0.5, 2950, mean                     0.795        0.104   7032             523
    0.7, 1825, earliest window          0.827        0.103   7386             539
    0.7, 1825, mean                     0.865        0.087   7386             540

More overlap lets a window that does not hold a neighbouring, larger event see a small one;
with four windows per sample at four quarter-second phases the mean also removes most of the
whole-second bias.

**Context windows** (``picking.context_windows``). A larger event later in a window hides the
smaller arrivals before it: EQTransformer then gives them (almost) no probability, and not
because of the window's standardisation. Measured on the demo replica (seed 2000, original
model, random samples of the true arrivals with SNR >= 5 of events >= M 0.8 picked at < 3
stations, missed by the picker: 103 S / 44 P and 172 S / 74 P): scaling the standardised
window by 0.1-30 found 8-17 % of the S; windows ending 1-4 s after the arrival, so that the
following data are cut off, found 37-47 % of the S (ending 4-6 s after it, 22-24 % of the
P), and where the strongest other arrival within 30 s comes 5-30 s *after* the missed one,
67-86 % of the S and 40-71 % of the P. Windows holding the arrival 5 s from their start
found 9 % of the S; the conservative model found fewer (best of 11 window positions: 15 % of
the S, 16 % of the P; the original 36 % and 27 %). So after the regular windows are
combined and picked, one more window is run per detection that has picks: it ends
:data:`CONTEXT_MARGIN` samples before the detection's first pick, so that the detected
event is cut off, and its detector and S outputs join the combined traces by the maximum
(the first ``blind`` and the last :data:`CONTEXT_TAIL` samples unused). Demo replica, seed
2000, overlap 0.3 (pick stage; events = true events >= M 0.8 picked at >= 3 stations):

    context windows            windows  events  P precision  S precision  matched arrivals
    none                         9,756     518        0.781        0.988            11,683
    detector, S                 17,401     559        0.779        0.979            12,541
    detector, S, P >= 0.6       17,401     559        0.761        0.979            12,871
    detector, S, P (any)        17,401     560        0.724        0.979            13,192
    overlap 0.7, no context     22,536     537        0.885        0.983            11,943

Its P is left out: the new P picks it gave were right in 63 % (35-58 % below 0.7), and
through the whole build (seed 2000, ``--mc-ref 0.8``) joining its P where >= 0.6 found the
same events (catalog recall 0.79 either way) with 12 instead of 6 false events (catalog_all
precision 0.86 instead of 0.90). A second window per detection, starting 1 s after its last
pick (for small events in a larger one's coda), found 3 more events for 2.6 times the
windows instead of 1.8.

**Cleared heads.** The arrivals still missed then mostly follow a larger event: of the 317
missed S (true SNR >= 5) of the 42 events >= M 0.8 picked at < 3 stations (seed 2000, the
context windows above), 232 of the 306 with another event's arrival within 30 s have the
strongest such arrival *before* them (median 6 times their SNR); half lie inside that
event's detection, 0-8 s after its last pick, the others 2-30 s after it and mostly more
than 10 s before the next detection. A window starting after the larger event still holds
the next one: windows starting at each detection's end (or 1 s after its last pick) found
2 more events (seed 2000) for twice the extra windows. So a context window's data before
:data:`CONTEXT_MARGIN` samples after the previous detection's last pick (the latest last
pick of the detections starting earlier) are replaced by zeros (the kept data demeaned, the
standard deviation taken over the whole window with the zeros, as for a record padded to one
window), and only the kept samples are used; a window keeping under
:data:`CONTEXT_MIN_DATA` samples is not run. The window then holds only the stretch between
two detections: one window per detection as before. Demo replica, pick stage, true events
>= M 0.8 picked at >= 3 stations, seeds 2000 / 2001 / 2002 (context windows, picks only):

    context windows                       extra windows            events          S false
    plain (before)                        7,643 / 8,056 / 7,339    559 / 538 / 567  173 / 178 / 171
    cleared (this)                        7,644 / 8,054 / 7,331    563 / 545 / 571  239 / 242 / 241
    plain + cleared                      13,517 / 14,299 / 12,566  568 / 550 / 575  213 / 219 / 208
    cleared + plain where a pick >= 0.7  10,520 / 11,408 /  9,669  568 / 549 / 573  206 / 208 / 204

Running both kinds finds a few more events for 1.7 times the extra windows, which would take
the throughput below SeisBench's, so only the cleared ones are run. The zeros make the
model read more noise as S (64-70 more false S picks per seed, S pick precision 0.98 ->
0.97); 23-46 fewer P picks per seed (22-32 of them false: detections change; P is not
joined). Their detector also joins neighbouring events' detections, whose weaker S picks then
went (correct S picks -221 to -357 per seed in full builds, recall down on two seeds), so the
default ``extra_pick_threshold`` is 0.4 (:mod:`pipeline.picking.params`): full builds then
picked 573/551/586 true events and the default catalog recall >= M 0.8 rose from
0.80/0.82/0.79 to 0.82/0.84/0.80 (README "Cleared context windows").

**Fewer context windows by amplitude: tried, not kept.** Running a context window only when
the peak amplitude of the 10 s after it (its detection) is at least r times that of the data
it keeps (only a louder event should hide arrivals) cost events in proportion to the windows
it saved, so amplitude does not tell the useful windows (demo replica, pick stage, true
events >= M 0.75 picked at >= 3 stations; seed 2000, then 2002):

    r      windows (regular + context)    events
    0      17,373 / 17,072                573 / 586
    0.5    16,533                         566
    1      15,156                         557
    2      12,785 / 12,708                547 / 561
    3      11,759                         543
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

#: Samples per model window (60 s at 100 Hz).
WINDOW = 6000
#: Output traces of the model.
OUTPUTS = ("detector", "picker_P", "picker_S")
#: How overlapping windows are combined per output (module docstring).
STACKING = {"detector": "max", "picker_P": "mean", "picker_S": "max"}
#: Window steps are odd multiples of this many samples (a quarter second at 100 Hz).
QUARTER_SECOND = 25
#: A context window ends this many samples (1 s) before the first pick of its detection.
CONTEXT_MARGIN = 100
#: The last samples (0.5 s) of a context window are not used.
CONTEXT_TAIL = 50
#: A context window whose head is cleared keeps at least this many samples (2 s) of data.
CONTEXT_MIN_DATA = 200
#: Outputs of a context window joined into the combined traces (module docstring: its P
#: picks were less often right than the regular windows').
CONTEXT_OUTPUTS = ("detector", "picker_S")


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
    """Samples between window starts for an overlap fraction (module docstring).

    The largest odd multiple of :data:`QUARTER_SECOND` not above ``window * (1 - overlap)``
    (at least :data:`QUARTER_SECOND`): 0.3 -> 4175, 0.5 -> 2975, 0.7 -> 1775 samples.
    """
    target = window * (1.0 - overlap)
    k = int(np.floor((target / QUARTER_SECOND - 1) / 2 + 1e-9))
    return QUARTER_SECOND * (2 * max(k, 0) + 1)


def effective_blind(blind: int, step: int, window: int = WINDOW) -> dict[str, tuple[int, int]]:
    """Samples ignored at the (start, end) of each window, per output (module docstring).

    ``blind`` at both edges, at most half the overlap ``window - step``, so that the used
    parts of consecutive windows cover the record.
    """
    both = max(0, min(blind, (window - step) // 2))
    return {k: (both, both) for k in OUTPUTS}


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
    stacking: str = "max",
) -> np.ndarray:
    """Combine per-window outputs into one trace (module docstring).

    Each window contributes all but its first ``blind[0]`` and last ``blind[1]`` samples (all
    of the first at the start of the record, all of the last at its end). ``stacking="max"``
    keeps the maximum of the contributions; ``"sum"`` adds them (divide by :func:`coverage`
    for the mean, :func:`stack`). Combining subsets of the windows into the same ``out`` gives
    the same trace as combining them all at once.

    Args:
        outputs: (N, ..., window) values of N windows (extra axes, e.g. MC passes, are kept).
        starts: (N,) window start samples.
        n_samples: record length; samples beyond it (zero padding) are dropped.
        blind: (start, end) samples ignored in each window (one output's entry of
            :func:`effective_blind`).
        out: (..., n_samples) float32 array to combine into (in place); None = new zeros.
        stacking: "max" or "sum".

    Returns:
        (..., n_samples) float32 (``out`` when given).
    """
    if stacking not in ("max", "sum"):
        raise ValueError(f"stacking must be 'max' or 'sum', got {stacking!r}")
    if out is None:
        out = np.zeros(outputs.shape[1:-1] + (n_samples,), dtype=np.float32)
    lows, highs = used_bounds(starts, n_samples, blind, outputs.shape[-1])
    for values, s, lo, hi in zip(outputs, starts, lows, highs, strict=True):
        target = out[..., s + lo : s + hi]
        if stacking == "max":
            np.maximum(target, values[..., lo:hi], out=target)
        else:
            target += values[..., lo:hi]
    return out


def coverage(
    starts: np.ndarray, n_samples: int, blind: tuple[int, int], window: int = WINDOW
) -> np.ndarray:
    """(n_samples,) float32: how many windows use each sample (:func:`used_bounds`)."""
    lo, hi = used_bounds(starts, n_samples, blind, window)
    edges = np.zeros(n_samples + 1, dtype=np.int64)
    np.add.at(edges, np.asarray(starts) + lo, 1)
    np.add.at(edges, np.asarray(starts) + hi, -1)
    return np.cumsum(edges[:-1]).astype(np.float32)


def stack(
    outputs: np.ndarray, starts: np.ndarray, n_samples: int, blind: tuple[int, int], how: str
) -> np.ndarray:
    """One output combined over windows by ``how`` ("max" or "mean", :data:`STACKING`)."""
    if how == "max":
        return combine(outputs, starts, n_samples, blind)
    total = combine(outputs, starts, n_samples, blind, stacking="sum")
    return total / np.maximum(coverage(starts, n_samples, blind, outputs.shape[-1]), 1.0)


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


def context_windows(
    first_picks: np.ndarray, last_picks: np.ndarray, window: int = WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """Starts and cleared heads of the context windows (module docstring).

    Args:
        first_picks: (K,) sample of the first pick of each detection (may be fractional).
        last_picks: (K,) sample of its last pick.

    Returns:
        ``(starts, clear)``, int64, sorted by start, one row per distinct window: each window
        ends :data:`CONTEXT_MARGIN` samples before its detection's first pick (rounded
        down); ``clear`` is how many of its first samples are replaced by zeros, those
        before :data:`CONTEXT_MARGIN` samples after the latest last pick of the detections
        whose first pick comes earlier (0 when that lies before the window). Windows that
        would start before the record, or keep fewer than :data:`CONTEXT_MIN_DATA` samples
        of data, are left out.
    """
    first = np.floor(np.asarray(first_picks, dtype=float)).astype(np.int64)
    last = np.floor(np.asarray(last_picks, dtype=float)).astype(np.int64)
    order = np.argsort(first, kind="stable")
    first, last = first[order], last[order]
    starts = first - CONTEXT_MARGIN - window
    previous = np.maximum.accumulate(np.concatenate(([np.iinfo(np.int64).min // 2], last)))[:-1]
    clear = np.clip(previous + CONTEXT_MARGIN - starts, 0, window)
    keep = (starts >= 0) & (window - clear >= CONTEXT_MIN_DATA)
    pairs = np.unique(np.stack([starts[keep], clear[keep]], axis=1).reshape(-1, 2), axis=0)
    return pairs[:, 0], pairs[:, 1]


def cleared_windows(
    data: np.ndarray, starts: np.ndarray, clear: np.ndarray, window: int = WINDOW
) -> np.ndarray:
    """Standardised windows (N, window, C) whose first ``clear[i]`` samples are zeros.

    As :func:`standardised_windows` (which a window with ``clear == 0`` equals), but the
    mean is that of the kept samples and the standard deviation is taken over the whole
    window with the zeros counted, as for a record zero-padded to one window.
    """
    starts = np.asarray(starts, dtype=np.int64)
    view = np.lib.stride_tricks.sliding_window_view(data, (window, data.shape[1]))[:, 0]
    x = view[starts].astype(np.float64)  # (N, window, C)
    kept = np.arange(window)[None, :] >= np.asarray(clear, dtype=np.int64)[:, None]
    n_kept = np.maximum(kept.sum(axis=1), 1)[:, None]
    x *= kept[:, :, None]
    x -= (x.sum(axis=1) / n_kept)[:, None, :]
    x *= kept[:, :, None]
    std = np.sqrt(np.square(x).sum(axis=1) / window)
    x /= np.where(std > 0, std, 1.0)[:, None, :]
    return x.astype(np.float32)


def context_blind(blind: int, window: int = WINDOW) -> tuple[int, int]:
    """(start, end) samples ignored in each context window: ``blind`` and :data:`CONTEXT_TAIL`."""
    return min(blind, window // 2), CONTEXT_TAIL


def add_context(
    outputs: dict[str, np.ndarray],
    starts: np.ndarray,
    n_samples: int,
    blind: tuple[int, int],
    out: dict[str, np.ndarray],
    clear: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Combine context windows' outputs into the combined traces ``out`` by the maximum.

    ``outputs[k]``: (N, ..., window) of the windows at ``starts`` (extra axes such as MC
    passes are kept, as in :func:`combine`); only :data:`CONTEXT_OUTPUTS` are joined. A
    window with a cleared head (``clear[i] > 0``, :func:`context_windows`) is used from its
    first kept sample on, the others from ``blind[0]``; all but their last ``blind[1]``.
    ``out[k]`` is updated in place and returned.
    """
    starts = np.asarray(starts, dtype=np.int64)
    clear = np.zeros(len(starts), dtype=np.int64) if clear is None else np.asarray(clear)
    head = np.where(clear > 0, clear, np.where(starts == 0, 0, blind[0]))
    for k in CONTEXT_OUTPUTS:
        values = np.asarray(outputs[k], dtype=np.float32)
        offset = np.arange(values.shape[-1])
        used = offset >= head.reshape((-1,) + (1,) * (values.ndim - 1))
        combine(np.where(used, values, 0.0), starts, n_samples, (0, blind[1]), out[k], "max")
    return out


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

    Outputs are stacked as :data:`STACKING` says (mean: over the given windows).
    :meth:`~pipeline.picking.model.EQTransformer.predict_passes` runs the deterministic
    encoder stem once per window and draws an independent dropout mask per pass; windows go
    in groups of ``batch_size // passes`` so the (group, passes, window) outputs stay near one
    batch in memory.
    """
    for part, result in _passes_in_groups(model, windows, passes, batch_size):
        for k in OUTPUTS:
            values = np.asarray(result[k], dtype=np.float32)
            how = "sum" if STACKING[k] == "mean" else "max"
            combine(values, starts[part], n_samples, blind[k], out[k], how)
    for k in OUTPUTS:
        if STACKING[k] == "mean":
            out[k] /= np.maximum(coverage(starts, n_samples, blind[k], windows.shape[1]), 1.0)
    return out


def context_passes(
    model: WindowPredictor,
    windows: np.ndarray,
    starts: np.ndarray,
    n_samples: int,
    blind: tuple[int, int],
    passes: int,
    batch_size: int,
    out: dict[str, np.ndarray],
    clear: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """MC-dropout passes of context windows joined into ``out[k]`` (passes, n_samples).

    As :func:`combined_passes`, but each pass is combined as :func:`add_context` combines the
    deterministic outputs (call it after :func:`combined_passes` of the regular windows).
    """
    clear = np.zeros(len(starts), dtype=np.int64) if clear is None else np.asarray(clear)
    for part, result in _passes_in_groups(model, windows, passes, batch_size):
        add_context(result, starts[part], n_samples, blind, out, clear[part])
    return out


def _passes_in_groups(model, windows, passes, batch_size):
    """(slice of the windows, ``predict_passes`` result) in groups of ``batch_size // passes``.

    The (group, passes, window) outputs stay near one batch in memory.
    """
    group = max(1, batch_size // passes)
    for g in range(0, len(windows), group):
        part = slice(g, g + group)
        yield part, model.predict_passes(windows[part], passes, batch_size)
