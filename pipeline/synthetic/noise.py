"""Background noise of a station: coloured, diurnal, with glitches and gaps.

Ground velocity (m/s), per component independent:

- above 1 Hz ("cultural + site" noise, what the picker sees): two equal-power parts, white
  noise band-passed 1–40 Hz and 1–6 Hz (2nd-order Butterworth), so the spectrum is red
  inside the band; its rms is ``level`` times the diurnal factor
  ``1 + diurnal_amplitude * cos(2π (local hour - 14) / 24)`` (loudest at 14:00 local);
- the microseism: white noise band-passed 0.1–0.5 Hz (made at 2 Hz and interpolated), rms
  ``microseism_ratio * level``;
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

MICROSEISM_FS = 2.0


@functools.lru_cache(maxsize=8)
def _band(fs: float, low: float, high: float) -> tuple[np.ndarray, float]:
    """Butterworth band-pass (SOS) and the rms of its output for unit white input."""
    sos = scipy.signal.butter(2, [low, min(high, 0.45 * fs)], "bandpass", fs=fs, output="sos")
    impulse = np.zeros(int(200 * fs / low))
    impulse[0] = 1.0
    gain = float(np.sqrt(np.sum(scipy.signal.sosfilt(sos, impulse) ** 2)))
    return sos, gain


def _filtered(rng: np.random.Generator, n: int, fs: float, low: float, high: float) -> np.ndarray:
    sos, gain = _band(fs, low, high)
    return scipy.signal.sosfilt(sos, rng.standard_normal(n)) / gain


def diurnal_factor(start: datetime, n: int, fs: float, cfg: ScenarioConfig) -> np.ndarray:
    """Noise multiplier per sample, shape (n,), for records starting at ``start`` (UTC)."""
    start_h = start.hour + start.minute / 60 + start.second / 3600 + cfg.utc_offset_hours
    hours = start_h + np.arange(n) / fs / 3600.0
    return 1.0 + cfg.diurnal_amplitude * np.cos(2 * np.pi * (hours - 14.0) / 24.0)


def station_noise(
    rng: np.random.Generator, start: datetime, n: int, level: float, cfg: ScenarioConfig
) -> np.ndarray:
    """Noise velocity (m/s), shape (3, n) in E, N, Z order, for ``n`` samples from ``start``."""
    fs = cfg.sampling_rate
    diurnal = diurnal_factor(start, n, fs, cfg)
    out = np.empty((3, n), dtype=np.float64)
    n_micro = int(np.ceil(n / fs * MICROSEISM_FS)) + 2
    t_micro = np.arange(n_micro) / MICROSEISM_FS
    t = np.arange(n) / fs
    for comp in range(3):
        hf = (_filtered(rng, n, fs, 1.0, 40.0) + _filtered(rng, n, fs, 1.0, 6.0)) / np.sqrt(2)
        micro = np.interp(t, t_micro, _filtered(rng, n_micro, MICROSEISM_FS, 0.1, 0.5))
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
