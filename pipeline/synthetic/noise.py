"""Background noise of a station: coloured, diurnal, with glitches and gaps.

Ground velocity (m/s), per component independent:

- above 1 Hz ("cultural + site" noise, what the picker sees): white noise through a
  1–40 Hz band-pass (2nd-order Butterworth) and a shelf that lowers the spectrum by 5×
  from 3 to 15 Hz (red inside the band); its rms is ``level`` times the diurnal factor
  ``1 + diurnal_amplitude * cos(2π (local hour - 14) / 24)`` (loudest at 14:00 local);
- the microseism: white noise band-passed 0.1–0.5 Hz, made at 10 Hz and linearly
  interpolated, rms ``microseism_ratio * level``;
- glitches: isolated spikes of 1–3 samples, 50–500 times ``level``, Poisson in time.

Gaps (telemetry outages, all components of a station at once) are returned as sample
intervals; the writer leaves them out of the archive.
"""

from __future__ import annotations

import functools
from datetime import datetime

import numpy as np
import scipy.signal

from pipeline.synthetic.params import ScenarioConfig

MICROSEISM_FS = 10.0


@functools.lru_cache(maxsize=8)
def _coloured_filter(fs: float) -> tuple[np.ndarray, float]:
    """SOS of the >1 Hz noise (band-pass + shelf) and its output rms for unit white input."""
    band = scipy.signal.butter(2, [1.0, min(40.0, 0.45 * fs)], "bandpass", fs=fs, output="sos")
    w1, w2 = 2 * np.pi * 3.0, 2 * np.pi * 15.0  # shelf (1 + s/w2) / (1 + s/w1)
    z, p, k = scipy.signal.bilinear_zpk([-w2], [-w1], w1 / w2, fs)
    sos = np.vstack([band, scipy.signal.zpk2sos(z, p, k)])
    return sos, _rms_gain(sos, fs, 1.0)


@functools.lru_cache(maxsize=8)
def _microseism_filter() -> tuple[np.ndarray, float]:
    sos = scipy.signal.butter(2, [0.1, 0.5], "bandpass", fs=MICROSEISM_FS, output="sos")
    return sos, _rms_gain(sos, MICROSEISM_FS, 0.1)


def _rms_gain(sos: np.ndarray, fs: float, low_hz: float) -> float:
    impulse = np.zeros(int(200 * fs / low_hz))
    impulse[0] = 1.0
    return float(np.sqrt(np.sum(scipy.signal.sosfilt(sos, impulse) ** 2)))


def _upsample(x: np.ndarray, factor: int, n: int) -> np.ndarray:
    """Linear interpolation of ``x`` by an integer ``factor`` to ``n`` samples."""
    i = np.arange(n) // factor
    frac = (np.arange(n) % factor / factor).astype(np.float32)
    return x[i] + (x[i + 1] - x[i]) * frac


def diurnal_factor_at(hours_utc: np.ndarray, cfg: ScenarioConfig) -> np.ndarray:
    """Noise multiplier at UTC hours of day (any shape; values may exceed 24)."""
    local = np.asarray(hours_utc, dtype=float) + cfg.utc_offset_hours
    return 1.0 + cfg.diurnal_amplitude * np.cos(2 * np.pi * (local - 14.0) / 24.0)


def diurnal_factor(start: datetime, n: int, fs: float, cfg: ScenarioConfig) -> np.ndarray:
    """Noise multiplier per sample, shape (n,), for records starting at ``start`` (UTC)."""
    start_h = start.hour + start.minute / 60 + start.second / 3600
    return diurnal_factor_at(start_h + np.arange(n) / fs / 3600.0, cfg)


def station_noise(
    rng: np.random.Generator, start: datetime, n: int, level: float, cfg: ScenarioConfig
) -> np.ndarray:
    """Noise velocity (m/s), shape (3, n) in E, N, Z order, for ``n`` samples from ``start``."""
    fs = cfg.sampling_rate
    diurnal = diurnal_factor(start, n, fs, cfg).astype(np.float32)
    out = np.empty((3, n), dtype=np.float64)
    sos, gain = _coloured_filter(fs)
    micro_sos, micro_gain = _microseism_filter()
    factor = max(int(round(fs / MICROSEISM_FS)), 1)
    n_micro = n // factor + 2
    for comp in range(3):
        hf = scipy.signal.sosfilt(sos, rng.standard_normal(n, dtype=np.float32)) / gain
        micro = scipy.signal.sosfilt(micro_sos, rng.standard_normal(n_micro)) / micro_gain
        micro = _upsample(micro.astype(np.float32), factor, n)
        out[comp] = level * (hf * diurnal + cfg.microseism_ratio * micro)
        add_glitches(rng, out[comp], level, cfg)
    return out


def add_glitches(rng: np.random.Generator, x: np.ndarray, level: float, cfg: ScenarioConfig):
    """Add spikes (1–3 samples, 50–500 × ``level``, random sign) to ``x`` in place."""
    days = x.size / cfg.sampling_rate / 86400.0
    for _ in range(rng.poisson(cfg.glitches_per_day * days)):
        i = int(rng.integers(0, x.size))
        width = int(rng.integers(1, 4))
        x[i : i + width] += rng.choice([-1.0, 1.0]) * level * rng.uniform(50, 500)


def gap_intervals(rng: np.random.Generator, n: int, cfg: ScenarioConfig) -> list[tuple[int, int]]:
    """Sample intervals ``[i0, i1)`` of the gaps in ``n`` samples (sorted, may overlap)."""
    fs = cfg.sampling_rate
    count = rng.poisson(cfg.gaps_per_day * n / fs / 86400.0)
    starts = np.sort(rng.integers(0, n, count))
    lengths = (rng.uniform(1.0, cfg.gap_max_s, count) * fs).astype(int)
    return [(int(s), int(min(s + m, n))) for s, m in zip(starts, lengths, strict=True)]
