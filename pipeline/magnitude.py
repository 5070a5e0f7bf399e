"""Local magnitudes from peak amplitudes around the S arrival.

Two amplitude scales (``MagnitudeConfig.method``):

- ``"hutton_boore"`` (default, ML): remove the instrument response (``inventory.xml``) to
  ground displacement, simulate a Wood–Anderson torsion seismometer (natural period 0.8 s,
  damping 0.8, static magnification ``wood_anderson_gain``: 2080 after Uhrhammer & Collins
  1990, or the nominal 2800), take the zero-to-peak amplitude ``A`` (mm) on each horizontal
  in a window around S and apply Hutton & Boore (1987)::

      ML = log10(A) + n log10(r / 100) + k (r - 100) + 3.0,   n = 1.110, k = 0.00189

  with ``r`` the hypocentral distance (km).
- ``"watanabe"`` (JMA-style velocity magnitude for short-period velocity data in Japan;
  Watanabe 1971, *Zisin* 24, 189–200): remove the response to ground velocity and use the
  peak horizontal velocity ``A`` (cm/s)::

      0.85 M - 2.50 = log10(A) + 1.73 log10(r),   r <= 200 km (hypocentral)

  Source check: the paper itself (Watanabe 1971, *Zisin* 24(3), 189–200, J-STAGE
  ``zisin1948/24/3/24_3_189``) was not available offline. The coefficients, the unit (cm/s)
  and the distance (km) agree with the published GaMMA associator, which cites that paper:
  AI4EPS/GaMMA ``gamma/seismic_ops.py`` (commit f6b1ac7), ``log10 A = 0.85 M - 2.50 -
  1.73 log10 r`` with ``A`` in cm/s (``gamma/utils.py`` converts m/s × 100). Not checked: which
  component(s) the paper measures and its distance range (``r <= 200 km`` above is from
  memory). The Tottori configs therefore use Hutton & Boore.

Both sets of coefficients are config fields. Per station the horizontal peaks are combined
(``amplitude_combination``: mean of the component peaks, or their maximum) into one
amplitude and one station magnitude (plus an optional station correction); the event
magnitude is the median of its station magnitudes, with the median absolute deviation (MAD).

**Noise.** The same peak is measured on the same converted traces before P: ``noise_windows``
consecutive windows as long as the amplitude window, the last ending ``noise_gap_s`` before
P; the station's noise amplitude ``N`` is the median of their peaks (a preceding event in one
of them does not count) and its ``snr`` is ``A / N``. Small events need this: on the Tottori
replica the Wood–Anderson peak of the 1–3 Hz noise (0.06–0.5 mm per station in 11 s) exceeds
the S peak of most M < 1 events beyond ~20 km, although the picker sees them at 10–20 Hz, and
the raw peaks made ML +0.48 (M 0.5–0.8), +0.39 (0.8–1.0), +0.22 (1.2–1.5) too large. With
``noise_correction`` the amplitude used is ``sqrt(A² - N²)`` (random signal and noise add in
power; an impulsive signal is over-corrected a little), and stations with ``snr < min_snr``
are *below the noise*: they give no station magnitude.

**Stations below the noise** (``below_noise``). Dropping them biases small events upward:
the stations left are the loud ones. On the demo replica (seed 2000, main at 55b5b57) 2,064
of 7,893 picked-station amplitudes were below the noise, and the event ML (median of the
rest) was +0.21 (true M 0.5–0.6), +0.12 (0.8–1.0), +0.07 (1.0–1.2), +0.04 (1.2–1.6), 0.00
(>= 1.6) too large. Such a bias moves the catalog's Mc up: its FMD piled events from M 0.6–0.9
into 0.9–1.2 and the catalog Mc was 1.1 where the true magnitudes of the same events gave
0.6. With ``"censor"`` (default) a station below the noise still counts in the event median,
as a value below every measured station magnitude of the event (its signal is weaker than the
noise where the measured ones are stronger): a censored median, exact while fewer than half
of the stations are censored. Same runs: ML - true +0.01 (0.8–0.9), 0.00 (0.9–1.0), -0.01
(1.0–1.1), +0.02 (0.6–0.7), within ±0.03 above; the spread grows (SD 0.16 → 0.22 at M 0.8,
the median now falls on weaker, noisier stations). An event with half or more of its stations
below the noise keeps the median of its measured stations (the old, upward-biased value; 24 %
of matched events at M 0.8–1.0) and says so in ``n_below_noise``. ``"drop"`` is the former
rule. A maximum-likelihood magnitude with censored stations (Ringdal 1976, BSSA 66, 789–802;
bound = the station magnitude of the noise amplitude) only went +0.12 → +0.09 at M 0.8–1.0:
the noise bound is far above these events' signal. The default ``min_snr`` 1 keeps every
station whose corrected power is positive; a higher threshold moves more stations below the
noise (with ``"drop"``: ML - true at M 0.5–0.8 +0.11 at 1.0, +0.24 at 1.5, +0.35 at 2.0).

Outputs (``<run>/magnitude/``):

- ``magnitudes.parquet``: event_id, magnitude, magnitude_mad, n_stations (measured),
  n_below_noise, magnitude_type ("ML" or "MJMA-vel"); events without a usable amplitude are
  absent.
- ``station_magnitudes.parquet``: the station magnitudes used (``snr >= min_snr``):
  event_id, network, station, location, pick_id (the pick the amplitude belongs to: S if
  picked, else P), distance_km (hypocentral), amplitude (noise-corrected when
  ``noise_correction``), amplitude_unit ("mm" Wood–Anderson or "cm/s"), amplitude_time (UTC),
  n_components, noise_amplitude (same unit; NaN when the record does not reach back before
  P), snr (raw peak / noise_amplitude), station_magnitude.
- ``picks.parquet``: the picks table with the amplitude columns (amplitude, amplitude_unit,
  amplitude_time, station_magnitude) set on the pick each amplitude belongs to, NaN/NaT
  elsewhere (the picking stage's own file is left as it was).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from obspy import Inventory, Stream, Trace, UTCDateTime, read_inventory
from obspy.core.util.obspy_types import ObsPyException
from obspy.geodetics import gps2dist_azimuth
from obspy.signal.invsim import cosine_sac_taper, cosine_taper
from obspy.signal.util import _npts2nfft
from pydantic import BaseModel, Field

from pipeline import progress
from pipeline.errors import OLD_RUN_HINT, EqcatInputError
from pipeline.native_stderr import rewritten_stderr
from pipeline.rundir import RunDir, read_run_table, sha256_file, write_parquet_atomic
from pipeline.sections import SECTION_CONFIG
from pipeline.waveforms.reader import conform_rate, nominal_rate, read_station

log = logging.getLogger(__name__)

#: Wood–Anderson poles (rad/s) for displacement input: T0 = 0.8 s, h = 0.8.
WOOD_ANDERSON_POLES = [-6.283 + 4.7124j, -6.283 - 4.7124j]
WOOD_ANDERSON_ZEROS = [0j, 0j]

HORIZONTAL_CODES = ("E", "N", "1", "2")
SEED_CODE = re.compile(r"^[A-Za-z0-9_-]{0,8}$")
CHANNEL_PREFIX = re.compile(r"^[A-Za-z0-9]{2}$")

#: Columns of ``magnitude/station_magnitudes.parquet``.
#: Columns of ``magnitudes.parquet`` (:func:`event_magnitudes`).
MAGNITUDE_COLUMNS = [
    "event_id",
    "magnitude",
    "magnitude_mad",
    "n_stations",
    "n_below_noise",
    "magnitude_type",
]
STATION_MAGNITUDE_COLUMNS = [
    "event_id",
    "network",
    "station",
    "location",
    "pick_id",
    "distance_km",
    "amplitude",
    "amplitude_unit",
    "amplitude_time",
    "n_components",
    "noise_amplitude",
    "snr",
    "station_magnitude",
]


class MagnitudeConfig(BaseModel):
    """Local-magnitude settings."""

    model_config = SECTION_CONFIG

    method: Literal["hutton_boore", "watanabe"] = Field(
        "hutton_boore",
        description="Wood–Anderson ML (Hutton & Boore 1987) or JMA-style velocity "
        "(Watanabe 1971; coefficients as in GaMMA, the paper itself not checked)",
    )
    wood_anderson_gain: float = Field(
        2080.0, gt=0, description="Wood–Anderson static magnification (2080 or 2800)"
    )
    hb_n: float = Field(1.110, description="Hutton & Boore geometric-spreading coefficient")
    hb_k: float = Field(0.00189, description="Hutton & Boore attenuation coefficient (1/km)")
    hb_ref_km: float = Field(100.0, gt=0, description="Hutton & Boore reference distance (km)")
    hb_ref_magnitude: float = Field(3.0, description="ML at the reference distance for A = 1 mm")
    watanabe_a: float = Field(0.85, gt=0, description="Watanabe: a in a M + b = log A + c log r")
    watanabe_b: float = Field(-2.50, description="Watanabe: b in a M + b = log A + c log r")
    watanabe_c: float = Field(1.73, description="Watanabe: c in a M + b = log A + c log r")
    window_before_s: float = Field(1.0, ge=0, description="window start before S (s)")
    window_after_s: float = Field(10.0, gt=0, description="window end after S (s)")
    vp_vs: float = Field(
        1.73, gt=1, description="predicts S from P and origin time when S is not picked"
    )
    noise_windows: int = Field(
        4, ge=1, description="pre-P noise windows (each as long as the amplitude window)"
    )
    noise_gap_s: float = Field(
        1.0, ge=0, description="last noise window ends this long before P (s)"
    )
    min_snr: float = Field(
        1.0,
        ge=0,
        description="station amplitudes below this × the noise amplitude are below the noise",
    )
    below_noise: Literal["censor", "drop"] = Field(
        "censor",
        description="stations below the noise: 'censor' = count in the event median as lower "
        "than every measured station (module docstring); 'drop' = leave them out",
    )
    noise_correction: bool = Field(
        True, description="use sqrt(A² - N²) instead of the raw peak A (N: noise amplitude)"
    )
    padding_s: float = Field(20.0, ge=0, description="extra data each side for response removal")
    pre_filt_hz: tuple[float, float, float, float] = Field(
        (0.2, 0.5, 30.0, 40.0),
        description="cosine pre-filter corners (Hz); upper two capped below Nyquist",
    )
    amplitude_combination: Literal["mean", "max"] = Field(
        "mean", description="how the two horizontal peaks make one station amplitude"
    )
    max_distance_km: float = Field(300.0, gt=0, description="ignore stations farther (km)")
    read_chunk_s: float = Field(
        3600.0, gt=0, description="waveforms are read per station in chunks of this span (s)"
    )
    min_stations: int = Field(1, ge=1, description="fewer station magnitudes: no event magnitude")
    station_corrections: dict[str, float] = Field(
        default_factory=dict, description="'NET.STA' -> magnitude correction added"
    )

    @property
    def magnitude_type(self) -> str:
        return "ML" if self.method == "hutton_boore" else "MJMA-vel"

    @property
    def amplitude_unit(self) -> str:
        return "mm" if self.method == "hutton_boore" else "cm/s"


# --------------------------------------------------------------------------------------
# Formulas


def hutton_boore_ml(
    amplitude_mm: np.ndarray, distance_km: np.ndarray, cfg: MagnitudeConfig | None = None
) -> np.ndarray:
    """Hutton & Boore (1987) ML from Wood–Anderson zero-to-peak amplitude (mm), r in km."""
    cfg = cfg or MagnitudeConfig()
    a = np.asarray(amplitude_mm, dtype=float)
    r = np.asarray(distance_km, dtype=float)
    return (
        np.log10(a)
        + cfg.hb_n * np.log10(r / cfg.hb_ref_km)
        + cfg.hb_k * (r - cfg.hb_ref_km)
        + cfg.hb_ref_magnitude
    )


def watanabe_m(
    velocity_cm_s: np.ndarray, distance_km: np.ndarray, cfg: MagnitudeConfig | None = None
) -> np.ndarray:
    """Watanabe (1971) velocity magnitude: (log10 A + c log10 r - b) / a, A in cm/s, r km."""
    cfg = cfg or MagnitudeConfig()
    a = np.asarray(velocity_cm_s, dtype=float)
    r = np.asarray(distance_km, dtype=float)
    return (np.log10(a) + cfg.watanabe_c * np.log10(r) - cfg.watanabe_b) / cfg.watanabe_a


def station_magnitude(
    amplitude: np.ndarray, distance_km: np.ndarray, cfg: MagnitudeConfig
) -> np.ndarray:
    """Station magnitude by the configured scale (amplitude in ``cfg.amplitude_unit``)."""
    if cfg.method == "hutton_boore":
        return hutton_boore_ml(amplitude, distance_km, cfg)
    return watanabe_m(amplitude, distance_km, cfg)


def median_mad(values: np.ndarray) -> tuple[float, float]:
    """Median and median absolute deviation (unscaled) of finite values; NaN when none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    med = float(np.median(v))
    return med, float(np.median(np.abs(v - med)))


# --------------------------------------------------------------------------------------
# Amplitudes


def _pre_filt(cfg: MagnitudeConfig, sampling_rate: float) -> tuple[float, float, float, float]:
    """The configured pre-filter with its upper corners kept below the Nyquist frequency."""
    f1, f2, f3, f4 = cfg.pre_filt_hz
    nyquist = sampling_rate / 2
    return f1, f2, min(f3, 0.8 * nyquist), min(f4, 0.9 * nyquist)


def wood_anderson_response(freqs: np.ndarray, gain: float = 2080.0) -> np.ndarray:
    """Wood–Anderson displacement-to-displacement response at ``freqs`` (Hz), shape (F,)."""
    s = 2j * np.pi * np.asarray(freqs, dtype=float)
    out = gain * s**2
    for pole in WOOD_ANDERSON_POLES:
        out = out / (s - pole)
    return out


def _remove_line(x: np.ndarray) -> np.ndarray:
    """``x`` (N,) minus its least-squares straight line (mean and linear trend)."""
    t = np.arange(x.size, dtype=float) - (x.size - 1) / 2.0
    slope = float(t @ x) / float(t @ t) if x.size > 1 else 0.0
    return x - x.mean() - slope * t


@dataclass
class StationAmplitude:
    """One station's measurement in ``cfg.amplitude_unit``.

    ``amplitude``: combined zero-to-peak amplitude in the window (NaN: no horizontal covers
    it); ``time``: time of the largest component peak; ``n_components``: horizontals used;
    ``noise``: combined noise amplitude before P (NaN: not measured or not covered);
    ``n_clipped``: horizontals left out because their counts are clipped in the window.
    """

    amplitude: float
    time: UTCDateTime
    n_components: int
    noise: float
    n_clipped: int = 0  # horizontals left out: clipped inside the window

    @property
    def snr(self) -> float:
        """``amplitude / noise``; NaN without a positive noise amplitude."""
        if not (math.isfinite(self.noise) and self.noise > 0):
            return math.nan
        return self.amplitude / self.noise


#: A window is clipped when this many consecutive raw samples sit at its maximum or minimum
#: count (the digitizer's limit: a waveform's true peak is not flat) ...
CLIP_RUN_SAMPLES = 5
#: ... of at least this magnitude for integer counts (smaller ones repeat by quantisation).
CLIP_MIN_COUNTS = 1024


def window_problem(tr: Trace, window: tuple[UTCDateTime, UTCDateTime]) -> str:
    """Why the raw counts of ``tr`` inside ``window`` give no amplitude ("" when they do):
    "dead" (one constant value: its peak, 0, would halve a mean of components) or "clipped"
    (flat at their maximum or minimum for :data:`CLIP_RUN_SAMPLES` samples: the peak is a
    lower bound)."""
    i0 = max(int(np.ceil((window[0] - tr.stats.starttime) / tr.stats.delta)), 0)
    i1 = int(np.floor((window[1] - tr.stats.starttime) / tr.stats.delta)) + 1
    raw = np.asarray(tr.data[i0:i1])
    if raw.size == 0:
        return ""
    if raw.max() == raw.min():
        return "dead"
    integer = np.issubdtype(raw.dtype, np.integer)
    for level in (raw.max(), raw.min()):
        if raw.size < CLIP_RUN_SAMPLES or (integer and abs(float(level)) < CLIP_MIN_COUNTS):
            continue
        runs = np.lib.stride_tricks.sliding_window_view(raw == level, CLIP_RUN_SAMPLES)
        if runs.all(axis=1).any():
            return "clipped"
    return ""


def _window_peak(
    y: np.ndarray, tr: Trace, window: tuple[UTCDateTime, UTCDateTime]
) -> tuple[float, UTCDateTime] | None:
    """Largest |y| (converted samples of ``tr``) inside ``window`` and its time; None if empty."""
    i0 = max(int(np.ceil((window[0] - tr.stats.starttime) / tr.stats.delta)), 0)
    i1 = int(np.floor((window[1] - tr.stats.starttime) / tr.stats.delta)) + 1
    segment = np.abs(y[i0:i1])
    if segment.size == 0:
        return None
    i = int(np.argmax(segment))
    return float(segment[i]), tr.stats.starttime + (i0 + i) * tr.stats.delta


class MissingResponseError(EqcatInputError):
    """A channel without a usable instrument response in the inventory (none, or one
    evalresp refuses, e.g. a zero stage gain): its station is skipped."""


def _tidy_evalresp(message: str) -> str:
    """One evalresp message on one line, without its file header and boilerplate."""
    text = " ".join(message.split())
    header = re.match(r"EVRESP ERROR \(.*?Stage: (\d*)\]\):\s*(.*)", text)
    if header:
        stage, text = header.groups()
        text = f"{text.removesuffix(', skipping to next response now')} (stage {stage})"
    text = re.sub(r"^WARNING \(\w+\):\s*", "", text)
    return text.removesuffix(" Execution continuing.").strip()


@contextmanager
def _evalresp_messages() -> Iterator[list[str]]:
    """Collect what evalresp's C code prints to file descriptor 2 inside the block.

    Its warnings ("computed and reported sensitivities differ ...") and errors went to the
    terminal as loose lines, one set per channel. The list yielded is filled on leaving with
    the collected messages, whitespace-joined each; anything else written to the descriptor
    meanwhile (another thread's output) is written back.
    """
    found: list[str] = []

    def keep_others(text: str) -> str:
        others = []
        for part in re.split(r"(?m)^(?= ?(?:WARNING \(|EVRESP ERROR))", text):
            if re.match(r" ?(WARNING \(|EVRESP ERROR)", part):
                found.append(_tidy_evalresp(part))
            elif part:
                others.append(part)
        return "".join(others)

    with rewritten_stderr(keep_others):
        yield found


class AmplitudeMeter:
    """Turns raw counts into Wood–Anderson displacement (mm) or ground velocity (cm/s).

    Per trace: demean, remove the linear trend, 5 % cosine taper each end, then in the
    frequency domain divide by the instrument response (ObsPy ``evalresp`` from the
    inventory, to displacement or velocity), apply the cosine pre-filter and, for ML,
    multiply by the Wood–Anderson response — the same operations as ObsPy's
    ``remove_response`` + ``simulate``, with the combined transfer function cached per
    channel, day, sampling interval and length (a catalog measures thousands of equal
    windows). The caches keep the ``CACHE_SIZE`` most recently used entries: windows come
    station by station in time order, and an unbounded cache grew to >11 GB on the 6-week
    replica.
    """

    CACHE_SIZE = 256

    def __init__(self, inventory: Inventory, cfg: MagnitudeConfig):
        self.inventory = inventory
        self.cfg = cfg
        self._responses: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._transfers: OrderedDict[tuple[str, str, float, int], np.ndarray] = OrderedDict()
        self._noted: set[tuple[str, str]] = set()

    def _remember(self, cache: OrderedDict, key: tuple, value: object) -> None:
        """Store ``value`` under ``key`` and drop the least recently used beyond the size."""
        cache[key] = value
        while len(cache) > self.CACHE_SIZE:
            cache.popitem(last=False)

    def _transfer(self, seed_id: str, when: UTCDateTime, delta: float, nfft: int) -> np.ndarray:
        day = when.strftime("%Y-%j")
        key = (seed_id, day)
        if key in self._responses:
            self._responses.move_to_end(key)
        else:
            try:
                response = self.inventory.get_response(seed_id, when)
            except Exception as exc:  # ObsPy raises a bare Exception when none matches
                raise MissingResponseError(
                    f"inventory.xml: no response for {seed_id} at {when}"
                ) from exc
            self._remember(self._responses, key, response)
        tkey = (seed_id, day, delta, nfft)
        if tkey in self._transfers:
            self._transfers.move_to_end(tkey)
        else:
            output = "DISP" if self.cfg.method == "hutton_boore" else "VEL"
            response, freqs = self._evalresp(key, seed_id, delta, nfft, output)
            inverse = np.zeros_like(response)
            nonzero = np.abs(response) > 0
            inverse[nonzero] = 1.0 / response[nonzero]
            inverse[0] = 0.0
            transfer = inverse * cosine_sac_taper(freqs, flimit=_pre_filt(self.cfg, 1 / delta))
            if self.cfg.method == "hutton_boore":
                transfer = transfer * wood_anderson_response(freqs, self.cfg.wood_anderson_gain)
                transfer *= 1000.0  # m -> mm
            else:
                transfer *= 100.0  # m/s -> cm/s
            self._remember(self._transfers, tkey, transfer)
        return self._transfers[tkey]

    def _evalresp(
        self, key: tuple[str, str], seed_id: str, delta: float, nfft: int, output: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """The response of ``seed_id`` at ``nfft`` frequencies, evalresp's notes logged.

        Raises:
            MissingResponseError: evalresp cannot evaluate the response (a zero stage gain,
                only an overall sensitivity and no stages, ...).
        """
        try:
            with _evalresp_messages() as notes:
                result = self._responses[key].get_evalresp_response(delta, nfft, output)
        except (ValueError, ObsPyException) as exc:  # the same response fails every time
            why = "; ".join(notes) or str(exc).rstrip(".")
            raise MissingResponseError(
                f"inventory.xml: unusable response for {seed_id} (evalresp: {why})"
            ) from exc
        for note in notes:
            if (seed_id, note) not in self._noted:  # once per channel, not per transfer
                self._noted.add((seed_id, note))
                log.warning("inventory.xml: response of %s: evalresp: %s", seed_id, note)
        return result

    def convert(self, trace: Trace) -> np.ndarray:
        """The trace in ``cfg.amplitude_unit`` (same length and start as ``trace``)."""
        x = np.asarray(trace.data, dtype=float)
        npts = x.size
        x = _remove_line(x)
        x = x * cosine_taper(npts, p=0.1)
        nfft = _npts2nfft(npts)
        transfer = self._transfer(trace.id, trace.stats.starttime, trace.stats.delta, nfft)
        return np.fft.irfft(np.fft.rfft(x, n=nfft) * transfer, n=nfft)[:npts]

    def measure(
        self,
        stream: Stream,
        window: tuple[UTCDateTime, UTCDateTime],
        noise_end: UTCDateTime | None = None,
    ) -> StationAmplitude:
        """Amplitude of the horizontal traces of ``stream`` inside ``window``, and their noise.

        ``stream`` should extend ``cfg.padding_s`` beyond the windows on both sides. Each
        horizontal's zero-to-peak amplitude inside ``window`` is measured and the peaks are
        combined per ``cfg.amplitude_combination``; traces with gaps (masked samples), not
        covering the window, or dead or clipped in it (:func:`window_problem`) are skipped. With
        ``noise_end`` the same is done in ``cfg.noise_windows`` windows of the same length
        ending at ``noise_end`` (those the trace covers), each component's noise being the
        median of its window peaks.
        """
        length = window[1] - window[0]
        peaks: list[tuple[float, UTCDateTime]] = []
        noises: list[float] = []
        n_clipped = 0
        for tr in stream:
            if not tr.stats.channel or tr.stats.channel[-1] not in HORIZONTAL_CODES:
                continue
            if tr.stats.starttime > window[0] or tr.stats.endtime < window[1]:
                continue
            if np.ma.is_masked(tr.data):
                log.debug("%s: gap near %s, component skipped", tr.id, window[0])
                continue
            problem = window_problem(tr, window)
            if problem:
                log.debug("%s: %s near %s, component skipped", tr.id, problem, window[0])
                n_clipped += problem == "clipped"
                continue
            y = self.convert(tr)
            peak = _window_peak(y, tr, window)
            if peak is None:
                continue
            peaks.append(peak)
            if noise_end is None:
                continue
            window_peaks = [
                _window_peak(y, tr, (noise_end - (k + 1) * length, noise_end - k * length))
                for k in range(self.cfg.noise_windows)
                if noise_end - (k + 1) * length >= tr.stats.starttime
            ]
            window_peaks = [p[0] for p in window_peaks if p is not None]
            if window_peaks:
                noises.append(float(np.median(window_peaks)))
        if not peaks:
            return StationAmplitude(math.nan, UTCDateTime(0), 0, math.nan, n_clipped)
        values = np.array([p[0] for p in peaks])
        return StationAmplitude(
            amplitude=self._combine(values),
            time=peaks[int(np.argmax(values))][1],
            n_components=len(peaks),
            noise=self._combine(np.array(noises)) if noises else math.nan,
            n_clipped=n_clipped,
        )

    def station_amplitude(
        self, stream: Stream, window: tuple[UTCDateTime, UTCDateTime]
    ) -> tuple[float, UTCDateTime, int]:
        """(amplitude, time of the largest peak, components used) of :meth:`measure`.

        The amplitude is NaN when no horizontal covers the window.
        """
        m = self.measure(stream, window)
        return m.amplitude, m.time, m.n_components

    def _combine(self, values: np.ndarray) -> float:
        """Component peaks (C,) to one station value per ``cfg.amplitude_combination``."""
        return float(values.mean() if self.cfg.amplitude_combination == "mean" else values.max())


# --------------------------------------------------------------------------------------
# Stage


#: Event tables, best hypocentre first (the catalog stage's order).
EVENT_SOURCES = (
    ("relocation", "relocations.parquet"),
    ("location", "locations.parquet"),
    ("association", "events.parquet"),
)


def read_events(run: RunDir) -> tuple[pd.DataFrame, list[Path]]:
    """Events with a hypocentre: relocated, else located, else the associator's origin.

    As in the catalog, each event takes its hypocentre from the best table that has one, so
    every catalog event can get a magnitude (events HypoInverse could not locate keep the
    associator's origin there too).

    Returns:
        (events: event_id, origin_time, latitude, longitude, depth_km; the tables read).
    """
    cols = ["event_id", "origin_time", "latitude", "longitude", "depth_km"]
    parts, paths = [], []
    for folder, name in EVENT_SOURCES:
        path = run.root / folder / name
        if not path.is_file():
            continue
        table = read_run_table(path)
        missing = set(cols) - set(table.columns)
        if missing:
            raise EqcatInputError(f"{path}: missing columns {sorted(missing)}" + OLD_RUN_HINT)
        table = table[cols].assign(event_id=table["event_id"].astype(str))
        parts.append(table[table[cols[1:]].notna().all(axis=1)])
        paths.append(path)
    if not paths:
        raise FileNotFoundError(
            f"{run.root}: no relocation/relocations.parquet, location/locations.parquet "
            "or association/events.parquet"
        )
    events = pd.concat(parts).drop_duplicates("event_id", keep="first")
    return events.reset_index(drop=True), paths


@dataclass
class _Inputs:
    events: pd.DataFrame
    events_paths: list[Path]
    picks: pd.DataFrame
    assignments: pd.DataFrame
    stations: pd.DataFrame
    inventory: Inventory


def _read_inputs(run: RunDir) -> _Inputs:
    events, events_paths = read_events(run)
    paths = {
        "picks": run.root / "picks" / "picks.parquet",
        "assignments": run.root / "association" / "assignments.parquet",
        "stations": run.root / "waveforms" / "stations.csv",
        "inventory": run.root / "waveforms" / "inventory.xml",
    }
    for name, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {name} file missing (needed for magnitudes)")
    picks = read_run_table(paths["picks"])
    assignments = read_run_table(paths["assignments"])
    for table, cols, path in (
        (picks, {"pick_id", "network", "station", "phase", "time"}, paths["picks"]),
        (assignments, {"event_id", "pick_id"}, paths["assignments"]),
    ):
        missing = cols - set(table.columns)
        if missing:
            raise EqcatInputError(f"{path}: missing columns {sorted(missing)}" + OLD_RUN_HINT)
    stations = pd.read_csv(
        paths["stations"], dtype={"network": str, "station": str, "location": str}
    )
    stations["location"] = stations["location"].fillna("")
    inventory = read_inventory(str(paths["inventory"]))
    return _Inputs(events, events_paths, picks, assignments, stations, inventory)


def _event_station_rows(inp: _Inputs) -> pd.DataFrame:
    """One row per (event, station) with its P/S pick ids and times."""
    picks = inp.picks.copy()
    if "location" not in picks:
        picks["location"] = ""
    picks["location"] = picks["location"].fillna("")
    picks["pick_id"] = picks["pick_id"].astype(str)
    joined = (
        inp.assignments[["event_id", "pick_id"]]
        .astype(str)
        .merge(picks[["pick_id", "network", "station", "location", "phase", "time"]], on="pick_id")
    )
    joined["phase"] = joined["phase"].str.upper().str[0]
    keys = ["event_id", "network", "station", "location"]
    first = joined.sort_values("time").groupby(keys + ["phase"], as_index=False).first()
    wide = first.pivot(index=keys, columns="phase", values=["pick_id", "time"])
    wide.columns = [f"{a}_{b}" for a, b in wide.columns]
    for col in ("pick_id_P", "pick_id_S", "time_P", "time_S"):
        if col not in wide:
            wide[col] = pd.NaT if col.startswith("time") else None
    return wide.reset_index()


def _channel_prefix(stations: pd.DataFrame, network: str, station: str, location: str) -> str:
    rows = stations[(stations["network"] == network) & (stations["station"] == station)]
    exact = rows[rows["location"] == location]
    rows = exact if not exact.empty else rows
    if rows.empty:
        raise EqcatInputError(f"station {network}.{station}: not in waveforms/stations.csv")
    prefix = str(rows.iloc[0]["channel_prefix"])
    if not CHANNEL_PREFIX.match(prefix):
        raise EqcatInputError(
            f"waveforms/stations.csv: station {network}.{station}: channel_prefix {prefix!r} "
            "is not two letters/digits"
        )
    return prefix


def _station_rate(stations: pd.DataFrame, network: str, station: str) -> float | None:
    """The station's sampling rate (Hz) from stations.csv; None when the table lacks it."""
    if "sampling_rate" not in stations:
        return None
    rows = stations[(stations["network"] == network) & (stations["station"] == station)]
    rates = pd.to_numeric(rows["sampling_rate"], errors="coerce").dropna()
    rates = rates[rates > 0]
    return float(rates.iloc[0]) if len(rates) else None


def _check_codes(network: str, station: str, location: str) -> None:
    """SEED codes become SDS paths: refuse anything but letters, digits, '-' and '_'."""
    for label, code in (("network", network), ("station", station), ("location", location)):
        if not SEED_CODE.match(code):
            raise EqcatInputError(
                f"picks: {label} code {code!r} of {network}.{station} is not valid"
            )


def _pair_windows(inp: _Inputs, cfg: MagnitudeConfig) -> pd.DataFrame:
    """Every (event, station) pair with a pick: distance, amplitude window, noise end, pick id.

    S is the S pick, else predicted from P and the origin time (``vp_vs``); P likewise from
    S when only S was picked. ``noise_end`` is ``noise_gap_s`` before P.
    """
    events = inp.events.assign(event_id=inp.events["event_id"].astype(str)).set_index("event_id")
    coords = inp.stations.drop_duplicates(["network", "station"]).set_index(["network", "station"])
    rows = []
    for pair in _event_station_rows(inp).itertuples(index=False):
        if pair.event_id not in events.index:
            continue
        key = (pair.network, pair.station)
        if key not in coords.index:
            log.warning("station %s.%s: no coordinates in stations.csv, skipped", *key)
            continue
        ev, st = events.loc[pair.event_id], coords.loc[key]
        epi_m, _, _ = gps2dist_azimuth(
            ev["latitude"], ev["longitude"], st["latitude"], st["longitude"]
        )
        elevation = pd.to_numeric(st.get("elevation_m", 0.0), errors="coerce")
        depth = float(ev["depth_km"]) + (0.0 if pd.isna(elevation) else elevation / 1000.0)
        distance = math.hypot(epi_m / 1000.0, depth)  # a blank elevation: at sea level
        if distance > cfg.max_distance_km:
            continue
        origin = pd.Timestamp(ev["origin_time"])
        if pd.notna(pair.time_S):
            s_time, pick_id = pd.Timestamp(pair.time_S), pair.pick_id_S
        else:
            s_time = origin + (pd.Timestamp(pair.time_P) - origin) * cfg.vp_vs
            pick_id = pair.pick_id_P
        if pd.notna(pair.time_P):
            p_time = pd.Timestamp(pair.time_P)
        else:
            p_time = origin + (s_time - origin) / cfg.vp_vs
        t_s = UTCDateTime(ns=int(s_time.value))
        rows.append(
            {
                "event_id": pair.event_id,
                "network": pair.network,
                "station": pair.station,
                "location": pair.location,
                "pick_id": pick_id,
                "distance_km": distance,
                "start": t_s - cfg.window_before_s,
                "end": t_s + cfg.window_after_s,
                "noise_end": UTCDateTime(ns=int(p_time.value)) - cfg.noise_gap_s,
            }
        )
    return pd.DataFrame(rows)


def _chunks(windows: pd.DataFrame, max_span_s: float) -> list[pd.DataFrame]:
    """Split one station's windows (sorted by start) into runs spanning <= ``max_span_s``."""
    windows = windows.sort_values("start", key=lambda col: col.map(float))
    out, first = [], 0
    starts = [float(t) for t in windows["start"]]
    for i, start in enumerate(starts):
        if start - starts[first] > max_span_s:
            out.append(windows.iloc[first:i])
            first = i
    out.append(windows.iloc[first:])
    return [c for c in out if not c.empty]


def _noise_start(w, cfg: MagnitudeConfig) -> UTCDateTime:
    """Start of the earliest noise window of amplitude window ``w`` (a ``_pair_windows`` row)."""
    return w.noise_end - cfg.noise_windows * (w.end - w.start)


def has_responses(inventory) -> bool:
    """Whether any channel of ``inventory`` has an instrument response (stages or a
    sensitivity); without one no amplitude can be measured anywhere."""
    return any(
        channel.response is not None
        and (channel.response.response_stages or channel.response.instrument_sensitivity)
        for network in inventory
        for station in network
        for channel in station
    )


def measure_station_magnitudes(
    inp: _Inputs, sds_root: Path, cfg: MagnitudeConfig, skipped: dict[str, str] | None = None
) -> pd.DataFrame:
    """Amplitudes, noise and station magnitudes for every (event, station) pair with a pick.

    Waveforms are read once per station and chunk of ``cfg.read_chunk_s`` seconds (not once
    per event), so memory stays bounded and large catalogs do not re-read the archive.
    A station with a channel that has no instrument response in the inventory gives no
    magnitude: it is logged and, when ``skipped`` is given, recorded there
    (``NET.STA`` -> why); an inventory without any response is one entry, ``all stations``.
    Events whose amplitude window is clipped on every horizontal of a station get no
    magnitude from it (the peak is a lower bound), recorded as ``NET.STA clipped``.

    Returns:
        one row per measured pair: the ``STATION_MAGNITUDE_COLUMNS`` plus ``used`` (False
        where ``snr < cfg.min_snr``; a pair without a noise amplitude is used). The
        amplitude and station magnitude are noise-corrected when ``cfg.noise_correction``
        (station magnitude NaN where the correction leaves nothing).
    """
    meter = AmplitudeMeter(inp.inventory, cfg)
    pairs = _pair_windows(inp, cfg)
    rows = []
    if not pairs.empty and not has_responses(inp.inventory):
        why = (
            "inventory.xml has no instrument response for any channel (an inline station "
            "list has none): no magnitudes"
        )
        log.warning("magnitudes: %s", why)
        if skipped is not None:
            skipped["all stations"] = why
        pairs = pairs.iloc[0:0]
    if not pairs.empty:
        by_station = pairs.groupby(["network", "station", "location"])
        progress.set_total(by_station.ngroups, "stations")
        for (net, sta, loc), windows in by_station:
            _check_codes(net, sta, loc)
            try:
                found, clipped = _station_rows(meter, inp, sds_root, cfg, (net, sta, loc), windows)
                rows += found
                if clipped and skipped is not None:
                    skipped[f"{net}.{sta} clipped"] = clipped_note(clipped)
            except MissingResponseError as exc:
                log.warning("station %s.%s: %s; no magnitudes from it", net, sta, exc.message)
                if skipped is not None:
                    skipped[f"{net}.{sta}"] = f"{exc.message}; no magnitudes from it"
            progress.advance(f"{net}.{sta}")  # the command line's progress bar, if shown
    table = pd.DataFrame(rows, columns=[*STATION_MAGNITUDE_COLUMNS, "used"])
    table["amplitude_time"] = pd.to_datetime(table["amplitude_time"], utc=True)
    table["used"] = table["used"].astype(bool)
    return table.sort_values(["event_id", "network", "station"]).reset_index(drop=True)


def _station_rows(
    meter: AmplitudeMeter,
    inp: _Inputs,
    sds_root: Path,
    cfg: MagnitudeConfig,
    codes: tuple[str, str, str],
    windows: pd.DataFrame,
) -> tuple[list[dict], list[str]]:
    """The measured rows (see :func:`measure_station_magnitudes`) of one station's windows,
    and the events whose window is clipped on every horizontal (no row)."""
    net, sta, loc = codes
    rows = []
    clipped: list[str] = []
    prefix = _channel_prefix(inp.stations, net, sta, loc)
    rate = _station_rate(inp.stations, net, sta)
    for chunk in _chunks(windows, cfg.read_chunk_s):
        first = min(_noise_start(w, cfg) for w in chunk.itertuples(index=False))
        stream = read_station(
            sds_root,
            net,
            sta,
            loc,
            prefix,
            first - cfg.padding_s,
            max(chunk["end"]) + cfg.padding_s,
        )
        common = rate or nominal_rate(stream)
        if common is not None:
            conform_rate(stream, common, f"{net}.{sta}")
        stream.merge()  # gaps become masked samples; such windows are skipped
        for w in chunk.itertuples(index=False):
            part = stream.slice(_noise_start(w, cfg) - cfg.padding_s, w.end + cfg.padding_s)
            m = meter.measure(part, (w.start, w.end), w.noise_end)
            if not (math.isfinite(m.amplitude) and m.amplitude > 0):
                log.debug("event %s station %s.%s: no amplitude", w.event_id, net, sta)
                if m.n_clipped:
                    clipped.append(str(w.event_id))
                continue
            amplitude = m.amplitude
            if cfg.noise_correction and math.isfinite(m.noise):
                amplitude = math.sqrt(max(amplitude**2 - m.noise**2, 0.0))
            mag = math.nan
            if amplitude > 0:
                mag = float(station_magnitude(amplitude, w.distance_km, cfg))
                mag += cfg.station_corrections.get(f"{net}.{sta}", 0.0)
            rows.append(
                {
                    "event_id": w.event_id,
                    "network": net,
                    "station": sta,
                    "location": loc,
                    "pick_id": w.pick_id,
                    "distance_km": w.distance_km,
                    "amplitude": amplitude,
                    "amplitude_unit": cfg.amplitude_unit,
                    "amplitude_time": pd.Timestamp(m.time.ns, unit="ns", tz="UTC"),
                    "n_components": m.n_components,
                    "noise_amplitude": m.noise,
                    "snr": m.snr,
                    "station_magnitude": mag,
                    "used": math.isfinite(mag)
                    and not (math.isfinite(m.snr) and m.snr < cfg.min_snr),
                }
            )
    return rows, clipped


def clipped_note(event_ids: list[str], shown: int = 5) -> str:
    """The report's note for a station clipped in the amplitude windows of ``event_ids``."""
    more = f" and {len(event_ids) - shown} more" if len(event_ids) > shown else ""
    return (
        f"amplitude clipped on every horizontal for {len(event_ids)} event(s) "
        f"({', '.join(event_ids[:shown])}{more}): no station magnitude from them"
    )


def censored_median(values: np.ndarray, n_below: int) -> float:
    """Median of ``values`` (finite station magnitudes) and ``n_below`` more values known to
    lie below all of them; NaN when the median falls on one of those (``n_below`` at least
    half of all) or there is no value."""
    v = np.sort(np.asarray(values, dtype=float))
    n = v.size + n_below
    if v.size == 0 or 2 * n_below >= n:
        return math.nan
    mid = n // 2 - n_below  # position in v of the upper middle value
    return float(v[mid] if n % 2 else (v[mid - 1] + v[mid]) / 2)


def event_magnitudes(measured: pd.DataFrame, cfg: MagnitudeConfig) -> pd.DataFrame:
    """Event magnitude from its station magnitudes, with their MAD and counts.

    Args:
        measured: :func:`measure_station_magnitudes` rows (``used`` False: below the noise).
        cfg: ``min_stations`` measured stations needed; ``below_noise`` says how the others
            count (module docstring).

    Returns:
        event_id, magnitude (median, or censored median), magnitude_mad (MAD of the measured
        station magnitudes about it), n_stations (measured), n_below_noise, magnitude_type.
    """
    rows = []
    for event_id, group in measured.groupby("event_id", sort=True):
        used = group["used"].to_numpy(bool)
        values = group["station_magnitude"].to_numpy(float)[used]
        if len(values) < cfg.min_stations:
            continue
        med, _ = median_mad(values)
        n_below = int((~used).sum())
        if cfg.below_noise == "censor":
            censored = censored_median(values, n_below)
            med = med if math.isnan(censored) else censored
        rows.append(
            {
                "event_id": event_id,
                "magnitude": med,
                "magnitude_mad": float(np.median(np.abs(values - med))),
                "n_stations": int(len(values)),
                "n_below_noise": n_below,
                "magnitude_type": cfg.magnitude_type,
            }
        )
    return pd.DataFrame(rows, columns=MAGNITUDE_COLUMNS)


def picks_with_amplitudes(picks: pd.DataFrame, station_mags: pd.DataFrame) -> pd.DataFrame:
    """The picks table plus amplitude, amplitude_unit, amplitude_time, station_magnitude."""
    cols = ["amplitude", "amplitude_unit", "amplitude_time", "station_magnitude"]
    base = picks.drop(columns=[c for c in cols if c in picks.columns])
    amps = station_mags.dropna(subset=["pick_id"]).drop_duplicates("pick_id")
    return base.merge(amps[["pick_id", *cols]], on="pick_id", how="left")


def compute_magnitudes(
    run: RunDir, cfg: MagnitudeConfig | None = None, sds_root: Path | None = None
) -> dict:
    """Stage: station and event magnitudes for every located event of ``run``.

    Reads the events (:func:`read_events`: relocated, else located, else associated), picks,
    association assignments, ``waveforms/stations.csv``, ``waveforms/inventory.xml`` and the
    SDS archive ``sds_root`` (None: ``<run>/waveforms``; a build with a local SDS source
    passes that archive); writes ``magnitude/magnitudes.parquet``,
    ``magnitude/station_magnitudes.parquet`` and ``magnitude/picks.parquet``.

    Returns:
        the manifest entry recorded for stage ``"magnitude"``.
    """
    cfg = cfg or MagnitudeConfig()
    started = time.monotonic()
    inp = _read_inputs(run)
    skipped: dict[str, str] = {}
    measured = measure_station_magnitudes(inp, sds_root or run.root / "waveforms", cfg, skipped)
    station_mags = measured[measured["used"]].drop(columns="used").reset_index(drop=True)
    event_mags = event_magnitudes(measured, cfg)
    out = run.stage_dir("magnitude")
    outputs = [
        write_parquet_atomic(event_mags, out / "magnitudes.parquet"),
        write_parquet_atomic(station_mags, out / "station_magnitudes.parquet"),
        write_parquet_atomic(picks_with_amplitudes(inp.picks, station_mags), out / "picks.parquet"),
    ]
    inputs = {
        str(p.relative_to(run.root)): sha256_file(p)
        for p in (
            *inp.events_paths,
            run.root / "picks" / "picks.parquet",
            run.root / "association" / "assignments.parquet",
            run.root / "waveforms" / "inventory.xml",
        )
    }
    below = int((~measured["used"]).sum())
    log.info(
        "magnitudes: %d of %d events, %d station magnitudes (%d amplitudes below snr %.1f)",
        len(event_mags),
        len(inp.events),
        len(station_mags),
        below,
        cfg.min_snr,
    )
    return run.record_stage(
        "magnitude",
        inputs=inputs,
        outputs=[str(p.relative_to(run.root)) for p in outputs],
        counts={
            "events": int(len(inp.events)),
            "events_with_magnitude": int(len(event_mags)),
            "station_magnitudes": int(len(station_mags)),
            "amplitudes_measured": int(len(measured)),
            "amplitudes_below_min_snr": below,
            "stations_skipped": sum(not k.endswith(" clipped") for k in skipped),
            "stations_clipped": sum(k.endswith(" clipped") for k in skipped),
        },
        wall_time_s=time.monotonic() - started,
        details={
            "method": cfg.method,
            "magnitude_type": cfg.magnitude_type,
            "min_snr": cfg.min_snr,
            "below_noise": cfg.below_noise,
            "noise_correction": cfg.noise_correction,
            "skipped": skipped,
        },
    )
