"""Waveform cross-correlation differential times (``dt.cc``).

For every event pair linked in ``dt.ct`` and every station where both events have a pick of
the same phase, a window around the pick of the first event (the template, ``before`` s
before to ``after`` s after the pick) is correlated with a window of the second event that is
``max_lag`` longer on each side. The normalised (Pearson) coefficient is computed in the time
domain for every integer lag over the components used together (P: vertical; S: the two
horizontals; cross products and energies summed over the components), and its peak is
refined to a fraction of a sample by fitting a parabola through the peak and its two
neighbours. Pairs whose refined coefficient reaches ``min_cc`` are kept;
a peak at the edge of the lag range is rejected (the true lag may lie outside it).

Differential travel time of a kept measurement, from the window start times ``s1`` (template)
and ``s2`` (search) actually cut (sample-exact) and the refined lag ``tau`` (s)::

    dt = t1 - t2 = (o2 - o1) - (s2 + tau - s1)

with ``o1, o2`` the origin times written in event.dat, so dt.cc and dt.ct share origin times
(dt.cc headers carry no origin-time correction). Work is spread over stations with a thread
pool; the numerical kernels are vectorised over all pairs of a station.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from obspy import UTCDateTime
from scipy.signal import butter, sosfiltfilt

from pipeline.relocation.hypodd_formats import empty_dt_cc
from pipeline.relocation.params import CrossCorrelationConfig
from pipeline.waveforms.reader import conform_rate, nominal_rate, read_station

log = logging.getLogger(__name__)

#: Extra samples (s) cut on both sides of a window so filter edge effects stay outside it.
FILTER_PAD_S = 1.0
#: Pairs correlated per vectorised batch (bounds memory: batch × components × lags × samples).
BATCH = 512
_COMPONENTS = {"P": ("Z", "3"), "S": ("N", "E", "1", "2")}


def _cc_terms(template: np.ndarray, search: np.ndarray):
    """Cross products, template energies and search-window energies (about their means) of
    :func:`normalised_cc`: shapes (..., L), (..., 1), (..., L)."""
    n = template.shape[-1]
    t = template - template.mean(axis=-1, keepdims=True)
    t_energy = (t**2).sum(axis=-1, keepdims=True)
    windows = sliding_window_view(search, n, axis=-1)  # (..., L, n), a view
    num = np.einsum("...n,...ln->...l", t, windows)
    csum = np.cumsum(np.pad(search, [(0, 0)] * (search.ndim - 1) + [(1, 0)]), axis=-1)
    csum2 = np.cumsum(np.pad(search**2, [(0, 0)] * (search.ndim - 1) + [(1, 0)]), axis=-1)
    s1 = csum[..., n:] - csum[..., :-n]
    s2 = csum2[..., n:] - csum2[..., :-n]
    return num, t_energy, np.clip(s2 - s1**2 / n, 0.0, None)


def _ratio(num: np.ndarray, t_energy: np.ndarray, s_energy: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        cc = num / np.sqrt(t_energy * s_energy)
    cc[~np.isfinite(cc)] = np.nan
    return cc


def normalised_cc(template: np.ndarray, search: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of templates with longer search windows.

    Args:
        template: shape (..., n).
        search: shape (..., n + L - 1); lag index l compares ``template`` with
            ``search[..., l:l + n]``.

    Returns:
        Coefficients in [-1, 1], shape (..., L); NaN where a window has no variance.
    """
    return _ratio(*_cc_terms(template, search))


def multichannel_cc(template: np.ndarray, search: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of multi-component windows, one coefficient per lag.

    The components' cross products and energies are summed before normalising (the
    coefficient of the concatenated components), so a component with little signal counts
    with its little energy instead of pulling an average of per-component coefficients
    down. Channels without data (NaN) are left out.

    Args:
        template: shape (..., C, n).
        search: shape (..., C, n + L - 1).

    Returns:
        Coefficients in [-1, 1], shape (..., L); NaN where no component has variance.
    """
    num, t_energy, s_energy = _cc_terms(template, search)
    ok = np.isfinite(num) & np.isfinite(s_energy) & np.isfinite(t_energy)
    total = [np.where(ok, x, 0.0).sum(axis=-2) for x in (num, t_energy, s_energy)]
    return _ratio(*total)


def parabolic_peak(cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-sample peak of each row of ``cc`` (shape (P, L)).

    Returns:
        (peak position in samples, float, NaN when the maximum lies on the first or last lag
        or the row is all NaN; refined peak value), each shape (P,).
    """
    p, length = cc.shape
    filled = np.where(np.isnan(cc), -np.inf, cc)
    k = np.argmax(filled, axis=1)
    rows = np.arange(p)
    inner = (k > 0) & (k < length - 1) & np.isfinite(filled[rows, k])
    kc = np.clip(k, 1, length - 2)
    y0, y1, y2 = cc[rows, kc - 1], cc[rows, kc], cc[rows, kc + 1]
    denom = y0 - 2.0 * y1 + y2
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(denom < 0, 0.5 * (y0 - y2) / denom, 0.0)
    delta = np.clip(delta, -0.5, 0.5)
    value = y1 - 0.25 * (y0 - y2) * delta
    pos = np.where(inner, kc + delta, np.nan)
    return pos, np.where(inner, value, np.nan)


@dataclass(frozen=True)
class StationInfo:
    """Where a station's data lie: its HypoDD label and SEED codes."""

    label: str
    network: str
    station: str
    location: str
    channel_prefix: str
    sampling_rate: float | None = None  # Hz every channel is read at; None: the most common


@dataclass(frozen=True)
class _Channel:
    """One channel's samples: epoch time (s) of the first, sampling rate (Hz), data (gaps
    filled with zeros), and where the gaps are (bool, same length; None: no gap)."""

    start: float
    rate: float
    data: np.ndarray
    gaps: np.ndarray | None = None

    def gap_mask(self) -> np.ndarray:
        """``gaps`` as an array (all False when there is no gap)."""
        return np.zeros(len(self.data), bool) if self.gaps is None else self.gaps


def _utc_date(epoch_s: float) -> date:
    return datetime.fromtimestamp(epoch_s, UTC).date()


class _Archive:
    """Channel-day reader for one station of an SDS archive (at most two days cached)."""

    def __init__(self, root: Path, info: StationInfo):
        self.root = root
        self.info = info
        self._days: dict[date, dict[str, _Channel]] = {}

    def _day(self, day: date) -> dict[str, _Channel]:
        if day not in self._days:
            if len(self._days) >= 2:
                self._days.pop(min(self._days))
            self._days[day] = self._read_day(day)
        return self._days[day]

    def _read_day(self, day: date) -> dict[str, _Channel]:
        """The station's channels of ``day``, all at one rate, gaps filled with zeros."""
        i = self.info
        start = UTCDateTime(datetime(day.year, day.month, day.day, tzinfo=UTC))
        stream = read_station(
            self.root, i.network, i.station, i.location, i.channel_prefix, start, start + 86400
        )
        rate = i.sampling_rate or nominal_rate(stream)
        if rate is None:
            return {}
        conform_rate(stream, rate, i.label)
        stream.trim(start, start + 86400 - 0.5 / rate)
        channels = {}
        for cha in sorted({tr.stats.channel for tr in stream}):
            tr = stream.select(channel=cha).merge(method=1)[0]
            gaps = np.ma.getmaskarray(tr.data) if np.ma.is_masked(tr.data) else None
            data = np.ma.filled(tr.data, 0)
            channels[cha] = _Channel(tr.stats.starttime.timestamp, rate, np.asarray(data), gaps)
        return channels

    def _channels(self, start: float, end: float) -> dict[str, _Channel]:
        days = sorted({_utc_date(start), _utc_date(end)})
        if len(days) == 1:
            return self._day(days[0])
        first, second = self._day(days[0]), self._day(days[1])
        joined = {}
        for cha in first.keys() & second.keys():
            a, b = first[cha], second[cha]
            if a.rate == b.rate and abs(a.start + len(a.data) / a.rate - b.start) < 0.5 / a.rate:
                gaps = None
                if a.gaps is not None or b.gaps is not None:
                    gaps = np.concatenate([a.gap_mask(), b.gap_mask()])
                joined[cha] = _Channel(a.start, a.rate, np.concatenate([a.data, b.data]), gaps)
        return joined

    def cut(self, start: float, end: float, components: tuple[str, ...]):
        """(data (C, N) float64, actual start (epoch s), rate) or None when data lack.

        ``start``, ``end`` are epoch seconds; N = round((end - start) × rate). Uses the
        vertical for P and the two horizontals (N/E or 1/2, else the vertical) for S. A
        window overlapping a gap lacks data: the zeros filling it, filtered, make a step that
        correlates with another window's step, not with the waveform.
        """
        channels = self._channels(start, end)
        chosen = _choose_channels(set(channels), components)
        if not chosen:
            return None
        out, t0, rate = [], None, None
        for cha in chosen:
            ch = channels[cha]
            rate = ch.rate
            npts = int(round((end - start) * rate))
            i0 = int(round((start - ch.start) * rate))
            if i0 < 0 or i0 + npts > len(ch.data):
                return None
            if ch.gaps is not None and ch.gaps[i0 : i0 + npts].any():
                return None
            first = ch.start + i0 / rate
            if t0 is not None and abs(first - t0) > 0.5 / rate:
                return None
            t0 = first
            out.append(np.asarray(ch.data[i0 : i0 + npts], dtype=float))
        return np.stack(out), t0, rate


def _choose_channels(present: set[str], components: tuple[str, ...]) -> list[str]:
    if components[0] == "Z":
        for comp in components:
            for cha in present:
                if cha.endswith(comp):
                    return [cha]
        return []
    for pair in (("N", "E"), ("1", "2")):
        chans = [c for c in present for comp in pair if c.endswith(comp)]
        if len(chans) == 2:
            return sorted(chans)
    return _choose_channels(present, ("Z", "3"))


def _windows(
    archive: _Archive, picks: pd.DataFrame, cfg: CrossCorrelationConfig, phase: str
) -> dict[int, tuple[np.ndarray, float, float]]:
    """Filtered windows of one phase at one station: hypodd_id -> (data (C, n + 2m), start
    time (epoch s), rate)."""
    before, after = cfg.p_window_s if phase == "P" else cfg.s_window_s
    components = _COMPONENTS[phase]
    raw: dict[int, tuple[np.ndarray, float, float]] = {}
    rates = set()
    for eid, t in zip(picks["hypodd_id"], picks["time"], strict=True):
        pick = pd.Timestamp(t).value / 1e9
        reach = cfg.max_lag_s + FILTER_PAD_S
        got = archive.cut(pick - before - reach, pick + after + reach, components)
        if got is None:
            continue
        data, t0, rate = got
        raw[int(eid)] = (data, t0, rate)
        rates.add(rate)
    if len(rates) > 1:
        log.warning("%s: several sampling rates %s; cross-correlation skipped", archive.info, rates)
        return {}
    if not raw:
        return {}
    rate = rates.pop()
    nyquist = 0.5 * rate
    sos = butter(
        4, [cfg.freqmin_hz / nyquist, min(cfg.freqmax_hz / nyquist, 0.95)], "bandpass", output="sos"
    )
    pad = int(round(FILTER_PAD_S * rate))
    ids = list(raw)
    shapes = {raw[i][0].shape for i in ids}
    out = {}
    for shape in shapes:
        group = [i for i in ids if raw[i][0].shape == shape]
        block = np.stack([raw[i][0] for i in group])
        block = block - block.mean(axis=-1, keepdims=True)
        block = sosfiltfilt(sos, block, axis=-1)[..., pad:-pad]
        for i, data in zip(group, block, strict=True):
            out[i] = (data, raw[i][1] + pad / rate, rate)
    return out


def _station_dt(
    root: Path,
    info: StationInfo,
    picks: pd.DataFrame,
    pairs: pd.DataFrame,
    origins: dict[int, float],
    cfg: CrossCorrelationConfig,
) -> pd.DataFrame:
    """dt.cc rows of one station (columns id1, id2, station, dt, weight, phase)."""
    archive = _Archive(root, info)
    frames = []
    for phase, phase_picks in picks.groupby("phase"):
        windows = _windows(archive, phase_picks, cfg, phase)
        if not windows:
            continue
        have = pairs["id1"].isin(windows) & pairs["id2"].isin(windows)
        sub = pairs[have]
        if sub.empty:
            continue
        rate = next(iter(windows.values()))[2]
        m = int(round(cfg.max_lag_s * rate))
        for lo in range(0, len(sub), BATCH):
            chunk = sub.iloc[lo : lo + BATCH]
            id1 = chunk["id1"].to_numpy()
            id2 = chunk["id2"].to_numpy()
            full1 = np.stack([windows[i][0] for i in id1])
            search = np.stack([windows[i][0] for i in id2])
            template = full1[..., m : full1.shape[-1] - m]
            cc = multichannel_cc(template, search)
            pos, value = parabolic_peak(cc)
            keep = np.isfinite(pos) & (value >= cfg.min_cc)
            if not keep.any():
                continue
            s1 = np.array([windows[i][1] for i in id1]) + m / rate
            s2 = np.array([windows[i][1] for i in id2])
            o1 = np.array([origins[i] for i in id1])
            o2 = np.array([origins[i] for i in id2])
            dt = (o2 - o1) - (s2 + pos / rate - s1)
            frames.append(
                pd.DataFrame(
                    {
                        "id1": id1[keep],
                        "id2": id2[keep],
                        "station": info.label,
                        "dt": dt[keep],
                        "weight": np.round(np.minimum(value[keep], 1.0), 4),
                        "phase": phase,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else empty_dt_cc()


def cross_correlation_times(
    pairs: pd.DataFrame,
    picks: pd.DataFrame,
    origins: pd.Series,
    stations: list[StationInfo],
    sds_root: Path,
    cfg: CrossCorrelationConfig,
) -> pd.DataFrame:
    """Cross-correlation differential times for linked event pairs.

    Args:
        pairs: event pairs (id1, id2), e.g. the distinct pairs of dt.ct.
        picks: hypodd_id, station (label), phase, time (datetime64[ns, UTC]) — one per event,
            station and phase.
        origins: origin times (datetime64[ns, UTC]) as written to event.dat, indexed by
            hypodd_id.
        stations: where each label's data lie in the archive.
        sds_root: the SDS archive root (``<run>/waveforms``).
        cfg: the cross-correlation settings.

    Returns:
        dt.cc table (id1, id2, station, dt, weight = coefficient, phase), pairs in the order
        of ``pairs`` within each station.
    """
    pairs = pairs[["id1", "id2"]].drop_duplicates().reset_index(drop=True)
    if pairs.empty or picks.empty:
        return empty_dt_cc()
    origin_s = {int(k): v.value / 1e9 for k, v in pd.to_datetime(origins, utc=True).items()}
    by_label = {s.label: s for s in stations}
    jobs = []
    for label, station_picks in picks.groupby("station"):
        info = by_label.get(label)
        if info is None:
            continue
        ids = set(station_picks["hypodd_id"])
        sub = pairs[pairs["id1"].isin(ids) & pairs["id2"].isin(ids)]
        if not sub.empty:
            jobs.append((info, station_picks, sub))
    workers = cfg.workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            pool.map(lambda job: _station_dt(sds_root, job[0], job[1], job[2], origin_s, cfg), jobs)
        )
    frames = [r for r in results if not r.empty]
    if not frames:
        return empty_dt_cc()
    dt = pd.concat(frames, ignore_index=True)
    return dt.sort_values(["id1", "id2", "phase", "station"], kind="stable").reset_index(drop=True)
