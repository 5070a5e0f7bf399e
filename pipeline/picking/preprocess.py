"""Continuous waveforms -> a gap-aware, band-passed 100 Hz E/N/Z record for the picker.

The steps follow the EQTransformer continuous-data predictor: detrend, band-pass 1-45 Hz
(2 corners, zero phase), resample to 100 Hz, order the components E, N, Z (SEED's 2 and 1
horizontals in E's and N's places, :data:`pipeline.waveforms.reader.COMPONENT_SLOT`). Each
contiguous segment is detrended, tapered and filtered on its own before gaps are filled with
zeros, so a gap never becomes a step that rings through the filter; the gap samples are
remembered (:attr:`Record.gap_mask`) and no pick is made inside them. Where only some
components lack data (one ends early, starts late or has a gap of its own) the others are
picked with zeros in its place, as a station without that component is; only the edges of its
data are guarded (:meth:`Record.near_gaps`). Such a span used to count as a gap of the
station: a horizontal that stopped at noon cost the station every pick of the afternoon.

A dead component (peak-to-peak of its raw data in the record at most ``flat_max_ptp``, 0 by
default: a constant value, the quality table's "flat (dead)" rule) is treated as a missing
one: zeros, left out of the gap mask, and noted. That is what EQTransformer's own
continuous-data predictor does with a missing channel (``mseed_predictor.py`` of
smousavi05/EQTransformer fills its column with zeros, and the per-channel normalisation
leaves an all-zero column at zero); without the rule, a dead channel with a little digitiser
jitter would be standardised to unit variance and fed to the network as if it were signal.
When every component is dead, the record has no live component (:attr:`Record.live`) and
the picker skips it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage
import scipy.signal
from obspy import Stream, Trace, UTCDateTime

from pipeline.picking.params import MODEL_RATE
from pipeline.waveforms.quality import peak_to_peak
from pipeline.waveforms.reader import COMPONENT_SLOT

log = logging.getLogger(__name__)

#: Component order of the model input.
COMPONENTS = ("E", "N", "Z")
#: Segments shorter than this (s) are treated as missing data.
MIN_SEGMENT_S = 1.0
#: Longest cosine taper (s) at each end of a segment.
TAPER_S = 1.0
#: A run of raw samples at least this long (s) whose peak-to-peak stays within the dead-channel
#: rule (``flat_max_ptp``) is a dead stretch, treated as a gap: one EQTransformer window, so a
#: run that long holds nothing the network could pick, and live data never repeats one value
#: that long.
FLAT_RUN_S = 60.0


@dataclass
class Record:
    """Preprocessed 3-component data of one station on a regular 100 Hz grid.

    Attributes:
        label: 'NET.STA.LOC' (for messages).
        starttime: time of sample 0.
        sampling_rate: samples per second (always :data:`MODEL_RATE`).
        data: (n, 3) float32, columns E, N, Z; zeros where a component has no data.
        gap_mask: (n,) bool, True where no component that the station has has data.
        channels: channel code used per column (None where the component is missing or dead).
        dead: components ('E', 'N', 'Z') whose data are flat (dead), treated as missing.
        component_gaps: (n, 3) bool, True where a column has no data (all True for a
            missing or dead one); None: ``gap_mask`` in every column.
    """

    label: str
    starttime: UTCDateTime
    sampling_rate: float
    data: np.ndarray
    gap_mask: np.ndarray
    channels: tuple[str | None, str | None, str | None]
    notes: list[str] = field(default_factory=list)
    dead: tuple[str, ...] = ()
    component_gaps: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def endtime(self) -> UTCDateTime:
        """Time just after the last sample."""
        return self.starttime + self.n_samples / self.sampling_rate

    def near_gaps(self, guard_s: float) -> np.ndarray:
        """(n,) bool: gap samples plus ``guard_s`` seconds either side of every data edge.

        Data edges are the gap edges, the edges of each component's own gaps (where it starts,
        stops or pauses while others go on) and the two ends of the record. The tapered data
        next to an edge rises from zero like an emergent onset, so picks there are not trusted.
        """
        guard = int(round(guard_s * self.sampling_rate))
        blocked = self.gap_mask.copy()
        if guard == 0:
            return blocked
        blocked[:guard] = True
        blocked[-guard:] = True
        edges = [np.flatnonzero(np.diff(gaps.astype(np.int8))) + 1 for gaps in self._gap_columns()]
        for e in np.unique(np.concatenate([np.zeros(0, np.int64), *edges])):
            blocked[max(0, e - guard) : e + guard] = True
        return blocked

    def component_gap(self, column: int) -> np.ndarray:
        """(n,) bool: samples where column ``column`` (0 E, 1 N, 2 Z) has no data."""
        if self.component_gaps is None:
            return self.gap_mask
        return self.component_gaps[:, column]

    def _gap_columns(self) -> list[np.ndarray]:
        """The gap mask and the gaps of each column with data (:meth:`component_gap`)."""
        live = [k for k, channel in enumerate(self.channels) if channel is not None]
        return [self.gap_mask, *(self.component_gap(k) for k in live)]

    @property
    def missing_components(self) -> list[str]:
        """Components ('E', 'N', 'Z') without any data or dead (filled with zeros)."""
        return [c for c, ch in zip(COMPONENTS, self.channels, strict=True) if ch is None]

    @property
    def live(self) -> bool:
        """Whether any component has data that are not dead (else nothing to pick)."""
        return len(self.missing_components) < len(COMPONENTS)


def _slot_traces(stream: Stream, label: str) -> dict[int, list[Trace]]:
    """Traces per model-input column; 'E'/'N' win over '1'/'2' when both exist.

    Raises:
        ValueError: traces of several channel prefixes or location codes are mixed.
    """
    ids = {(tr.stats.location, tr.stats.channel[:2]) for tr in stream}
    if len(ids) > 1:
        raise ValueError(
            f"{label}: traces of several location/channel prefixes {sorted(ids)}; "
            "select one before picking"
        )
    by_channel: dict[str, list[Trace]] = {}
    for tr in stream:
        by_channel.setdefault(tr.stats.channel, []).append(tr)
    slots: dict[int, list[Trace]] = {}
    for channel in sorted(by_channel, key=lambda c: c[-1] in "12"):
        slot = COMPONENT_SLOT.get(channel[-1])
        if slot is None:
            log.warning("%s: channel %s ignored (not E/N/Z/1/2)", label, channel)
            continue
        slots.setdefault(slot, by_channel[channel])
    return slots


@functools.lru_cache(maxsize=16)
def _bandpass(sampling_rate: float, freqmin: float, freqmax: float) -> np.ndarray:
    """Butterworth band-pass, 2 corners (ObsPy's ``corners=2``), as second-order sections."""
    return scipy.signal.butter(2, [freqmin, freqmax], "bandpass", fs=sampling_rate, output="sos")


def condition(y: np.ndarray, sampling_rate: float, freqmin: float, freqmax: float) -> np.ndarray:
    """Detrend, taper and band-pass one contiguous segment (float64 copy of ``y``).

    Removes the least-squares line, applies a half-cosine taper over ``min(1 s, n/4)`` at
    each end, then the band-pass forwards and backwards (zero phase, as ObsPy's
    ``filter(..., zerophase=True)``).
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    t = np.arange(n) - 0.5 * (n - 1)
    y = y - y.mean()
    y -= (t @ y) / max(t @ t, 1e-300) * t
    m = int(min(TAPER_S * sampling_rate, 0.25 * n))
    if m > 1:
        ramp = 0.5 * (1.0 - np.cos(np.pi * np.arange(m) / m))
        y[:m] *= ramp
        y[-m:] *= ramp[::-1]
    sos = _bandpass(sampling_rate, freqmin, freqmax)
    y = scipy.signal.sosfilt(sos, y)
    return scipy.signal.sosfilt(sos, y[::-1])[::-1].copy()


def _runs(flags: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """(start, end) index pairs (end excluded) of the runs of True in ``flags`` at least
    ``min_length`` long."""
    edges = np.flatnonzero(np.diff(np.r_[0, flags.astype(np.int8), 0]))
    starts, ends = edges[0::2], edges[1::2]
    keep = ends - starts >= min_length
    return list(zip(starts[keep].tolist(), ends[keep].tolist(), strict=True))


def mask_flat_runs(tr: Trace, flat_max_ptp: float, min_run_s: float = FLAT_RUN_S) -> float:
    """Mask, in place, the samples of ``tr`` that lie in a run of at least ``min_run_s``
    seconds whose peak-to-peak is at most ``flat_max_ptp`` (counts): a channel that died
    (or stopped moving) for part of the span. Masked samples become a gap of the trace.

    A run that flat has no step between neighbours above ``flat_max_ptp``, so only stretches
    of such small steps are searched (with ``flat_max_ptp`` 0 they are the runs themselves);
    live data rarely has any, and a day of it costs a few tens of milliseconds.

    Returns:
        the seconds masked (0.0 when none).
    """
    width = int(round(min_run_s * tr.stats.sampling_rate))
    if width < 2 or tr.stats.npts < width:
        return 0.0
    data = np.ma.getdata(tr.data)
    gap = np.ma.getmaskarray(tr.data)
    if flat_max_ptp == 0:
        small = data[1:] == data[:-1]
    else:
        small = np.abs(np.diff(data.astype(np.float64))) <= flat_max_ptp
    if gap.any():
        small &= ~gap[1:] & ~gap[:-1]  # a run never spans a gap
    flat = np.zeros(len(data), dtype=bool)
    for a, b in _runs(small, width - 1):  # samples a .. b (b - a + 1 >= width)
        if flat_max_ptp == 0:
            flat[a : b + 1] = True
            continue
        stretch = data[a : b + 1].astype(np.float64)
        ahead = -(width // 2)  # window k .. k + width - 1
        ptp = scipy.ndimage.maximum_filter1d(
            stretch, width, origin=ahead
        ) - scipy.ndimage.minimum_filter1d(stretch, width, origin=ahead)
        cover = np.zeros(len(stretch) + 1, dtype=np.int32)
        starts = np.flatnonzero(ptp[: len(stretch) - width + 1] <= flat_max_ptp)
        np.add.at(cover, starts, 1)
        np.add.at(cover, starts + width, -1)
        flat[a : b + 1] = np.cumsum(cover[:-1]) > 0
    if not flat.any():
        return 0.0
    tr.data = np.ma.masked_array(data, mask=gap | flat)
    return float(flat.sum() / tr.stats.sampling_rate)


def _filtered_segments(
    traces: list[Trace],
    freqmin: float,
    freqmax: float,
    label: str,
    flat_max_ptp: float = 0.0,
    notes: list[str] | None = None,
) -> list[Trace]:
    """Contiguous segments, each conditioned (:func:`condition`) and resampled to 100 Hz.

    Traces are merged per sampling rate, so a channel whose rate changes within the read
    (100 Hz, then 200 Hz) gives segments at each rate instead of ObsPy's "Sampling rate
    differs" TypeError, which failed the station-day. Dead stretches of at least
    :data:`FLAT_RUN_S` (:func:`mask_flat_runs`) are cut out like gaps (a channel that dies
    at noon is not filtered across the step and fed to the network as data); each one is
    noted in ``notes``.

    Raises:
        ValueError: a trace's rate leaves no room for the band (its Nyquist frequency is
            at or below ``freqmin``); the message names the trace and the rate.
    """
    segments = Stream()
    for rate in sorted({tr.stats.sampling_rate for tr in traces}):  # merge() needs one rate
        group = Stream([tr.copy() for tr in traces if tr.stats.sampling_rate == rate])
        group.merge(method=1, fill_value=None)
        for tr in group:
            seconds = mask_flat_runs(tr, flat_max_ptp)
            if seconds and notes is not None:
                notes.append(
                    f"{tr.id}: {seconds:.0f} s dead (flat) within the data, taken as a gap"
                )
        segments += group.split()
    out = []
    for tr in sorted(segments, key=lambda tr: tr.stats.starttime):
        if tr.stats.npts * tr.stats.delta < MIN_SEGMENT_S:
            continue
        fs = tr.stats.sampling_rate
        high = min(freqmax, 0.9 * 0.5 * fs)
        if high <= freqmin:  # scipy's "Wn[0] must be less than Wn[1]" named nothing
            raise ValueError(
                f"{tr.id} is sampled at {fs:g} Hz, too slow for the picker's "
                f"{freqmin:g}-{freqmax:g} Hz band (needs more than {freqmin / 0.45:.3g} Hz)"
            )
        if high < freqmax:
            log.info("%s: %s at %.1f Hz: band-pass upper corner lowered to %.1f Hz",
                     label, tr.id, fs, high)  # fmt: skip
        tr.data = condition(tr.data, fs, freqmin, high)
        if fs != MODEL_RATE:
            tr.resample(MODEL_RATE, window=None)  # already band-limited by the filter
        out.append(tr)
    return out


def is_dead(
    traces: list[Trace],
    flat_max_ptp: float = 0.0,
    core: tuple[UTCDateTime, UTCDateTime] | None = None,
) -> bool:
    """Whether the raw data of ``traces`` (one component) have peak-to-peak amplitude at
    most ``flat_max_ptp`` (counts; 0: constant) — the quality table's flat (dead) rule.

    ``core``: judge the samples from ``core[0]`` to ``core[1]`` (the part a chunk picks; the
    padding read around it may hold the live data of the day before or after), or all of
    them when none lies there.
    """
    if core is not None:
        start, end = core  # end excluded: it is the next chunk's first sample
        inside = [tr.slice(start, end - tr.stats.delta / 2, nearest_sample=False) for tr in traces]
        traces = inside if any(tr.stats.npts for tr in inside) else traces
    data = [np.asarray(tr.data) for tr in traces if tr.stats.npts]
    return bool(data) and peak_to_peak(np.concatenate(data)) <= flat_max_ptp


#: Horizontal azimuths within this many degrees of north (N slot) and east (E slot) are
#: taken as north and east (no rotation).
AZIMUTH_TOLERANCE_DEG = 1.0
#: Two horizontals closer than this to parallel (|sin| of their angle) cannot be rotated.
MIN_HORIZONTAL_SINE = 0.5


def _off_by_deg(azimuth: float, nominal: float) -> float:
    """Smallest angle (degrees) between ``azimuth`` and ``nominal``."""
    return abs((azimuth - nominal + 180.0) % 360.0 - 180.0)


def rotate_to_north_east(
    data: np.ndarray,
    covered: np.ndarray,
    channels: tuple[str | None, str | None, str | None],
    azimuths: dict[str, float],
    label: str,
) -> str | None:
    """Rotate the horizontal columns of ``data`` in place onto east (0) and north (1).

    A horizontal channel at azimuth ``a`` records ``N cos a + E sin a``; with the azimuths
    ``a_n`` (the channel in north's column) and ``a_e`` (east's) both known, north and east
    follow from the two records by inverting that 2 x 2 system. Rows where either horizontal
    lacks data are left as they are. Nothing is done when both azimuths are within
    :data:`AZIMUTH_TOLERANCE_DEG` of north and east, when an azimuth is not known, or when
    the two horizontals are too close to parallel to separate (:data:`MIN_HORIZONTAL_SINE`).

    Args:
        data: (n, 3) float32 columns E, N, Z.
        covered: (n, 3) bool, True where a column has data.
        channels: channel code per column (None: missing or dead).
        azimuths: channel code -> azimuth, degrees clockwise from north.
        label: names the station in the returned note.

    Returns:
        A note saying what was done (or why not), None when nothing was to be done.
    """
    east, north = channels[0], channels[1]
    if east is None or north is None or east not in azimuths or north not in azimuths:
        return None
    a_e, a_n = azimuths[east], azimuths[north]
    if max(_off_by_deg(a_n, 0.0), _off_by_deg(a_e, 90.0)) <= AZIMUTH_TOLERANCE_DEG:
        return None
    e_rad, n_rad = np.radians(a_e), np.radians(a_n)
    det = np.sin(e_rad - n_rad)
    if abs(det) < MIN_HORIZONTAL_SINE:
        return (
            f"{label}: horizontals {north} ({a_n:g}°) and {east} ({a_e:g}°) are too close to "
            "parallel to rotate onto north and east; used as they are"
        )
    both = covered[:, 0] & covered[:, 1]
    h_e, h_n = data[both, 0].astype(np.float64), data[both, 1].astype(np.float64)
    data[both, 1] = (h_n * np.sin(e_rad) - h_e * np.sin(n_rad)) / det
    data[both, 0] = (h_e * np.cos(n_rad) - h_n * np.cos(e_rad)) / det
    return f"{label}: horizontals {north} ({a_n:g}°) and {east} ({a_e:g}°) rotated onto N and E"


def preprocess_stream(
    stream: Stream,
    label: str,
    freqmin: float = 1.0,
    freqmax: float = 45.0,
    flat_max_ptp: float = 0.0,
    azimuths: dict[str, float] | None = None,
    core: tuple[UTCDateTime, UTCDateTime] | None = None,
) -> Record | None:
    """Turn the raw traces of one station into a :class:`Record` (None when no data).

    Components map E/2 -> column 0, N/1 -> column 1, Z -> column 2
    (:data:`~pipeline.waveforms.reader.COMPONENT_SLOT`); where ``azimuths`` (channel code ->
    degrees clockwise from north, from the station metadata) says the two horizontals are
    not north and east, they are rotated onto north and east where both have data
    (:func:`rotate_to_north_east`). A missing or dead
    (:func:`is_dead` with ``flat_max_ptp``, judged on the ``core`` part of the stream when
    given: a chunk's own span, not its padding) component becomes zeros and is logged and
    listed in :attr:`Record.notes`. Segments are placed on the grid of the earliest sample
    by nearest-sample rounding (sub-sample offsets between components are ignored). A sample
    is a gap only where no live component has data (:attr:`Record.gap_mask`). When
    every component with data is dead, the record spans their data, is all zeros, all gap,
    and not :attr:`~Record.live`.

    Raises:
        ValueError: mixed location/channel prefixes (message names ``label``).
    """
    slots = _slot_traces(stream, label)
    dead = {slot: traces for slot, traces in slots.items() if is_dead(traces, flat_max_ptp, core)}
    flat_notes: list[str] = []
    segments = {
        slot: _filtered_segments(traces, freqmin, freqmax, label, flat_max_ptp, flat_notes)
        for slot, traces in slots.items()
        if slot not in dead
    }
    segments = {slot: segs for slot, segs in segments.items() if segs}
    if not segments and not dead:
        return None
    spanned = [tr for segs in (*segments.values(), *dead.values()) for tr in segs]
    start = min(tr.stats.starttime for tr in spanned)
    end = max(tr.stats.endtime for tr in spanned)
    n = int(round((end - start) * MODEL_RATE)) + 1
    data = np.zeros((n, 3), dtype=np.float32)
    covered = np.zeros((n, 3), dtype=bool)
    for slot, segs in segments.items():
        for tr in segs:
            i0 = int(round((tr.stats.starttime - start) * MODEL_RATE))
            i1 = min(n, i0 + tr.stats.npts)
            data[i0:i1, slot] = tr.data[: i1 - i0]
            covered[i0:i1, slot] = True
    gap_mask = ~covered.any(axis=1)
    channels = tuple(segments[s][0].stats.channel if s in segments else None for s in range(3))
    dead_components = tuple(COMPONENTS[s] for s in sorted(dead))
    record = Record(label, start, MODEL_RATE, data, gap_mask, channels, dead=dead_components,
                    component_gaps=~covered)  # fmt: skip
    for note in flat_notes:
        log.warning(note)
        record.notes.append(note)
    rotated = rotate_to_north_east(data, covered, channels, azimuths or {}, label)
    if rotated:
        log.info(rotated)
        record.notes.append(rotated)
    absent = [c for c in record.missing_components if c not in dead_components]
    if absent:
        note = f"{label}: component(s) {', '.join(absent)} missing (zeros)"
        log.warning(note)
        record.notes.append(note)
    if dead:
        codes = ", ".join(dead[s][0].stats.channel for s in sorted(dead))
        note = f"{label}: {codes} dead (flat), treated as missing (zeros)"
        if not record.live:
            note = f"{label}: every component dead (flat: {codes}); not picked"
        log.warning(note)
        record.notes.append(note)
    return record
