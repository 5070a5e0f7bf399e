"""Event signals of the scenario: arrivals, stochastic 3-component synthesis, ML scaling.

For every event–station pair (the "stochastic method" of Boore 1983, per phase):

1. **Arrivals**: P and S travel times from :func:`pipeline.velocity.travel_time` (the build's
   1-D model, epicentral distance, hypocentral depth) plus a station-elevation term
   ``elevation / v_top`` (the vertical path through the top layer above sea level).
2. **Envelope** per phase (``τ`` = time after the onset):
   ``direct = (1 - exp(-τ/ρ)) exp(-τ/D)`` with duration ``D = 1/fc + 0.05 r`` (source +
   path, s; ``path_duration_s_per_km``) and rise time ``ρ = rise_fraction D`` (sharp
   onset), plus a coda
   ``coda_ratio (1 - exp(-τ/3ρ)) exp(-τ/τc)`` whose decay time follows the Tsumura (1967)
   duration relation ``M = 2.85 log10 T - 2.53``: ``τc = T / ln 100`` (down to 1 % at ``T``).
3. **Spectrum**: Gaussian white noise times the envelope is filtered with the Brune (1970)
   ground-velocity shape ``f / (1 + (f/fc)^2)``, anelastic attenuation
   ``exp(-π f t / Q(f))``, ``Q(f) = q0 f^η`` (``1.5 Q`` for P) and the site term
   ``exp(-π κ f)``; ``fc`` is Brune's S corner (``4.906e6 β (Δσ / M0)^(1/3)``, β = 3.5 km/s,
   ``log10 M0 = 1.5 M + 16.05`` dyne·cm), ``1.5 fc`` for P. The result is then multiplied by
   the onset mask again so that nothing precedes the true arrival.
   The random excitation is partly shared by the events of one source cell
   (``similarity_cell_km`` along strike × depth) at a station (``waveform_similarity`` of
   its variance), so neighbouring aftershocks have similar waveforms as real ones do.
4. **Polarisation** with random radiation factors: P on Z (``r_p``) and radially on the
   horizontals (``U(0.4, 1) r_p``), S on the horizontals (random SV/SH angle, ``r_s``)
   and ``U(0.4, 0.8) r_s`` on Z; ``r_p, r_s ~ U(0.3, 1)``, P scaled by ``p_to_s_ratio``
   (real records show P clearly on the horizontals too: scattering, site response).
5. **Amplitude** (so the ML stage recovers the magnitude): the unit-scale horizontal ground
   velocity is converted to Wood–Anderson displacement (poles and gain of
   :mod:`pipeline.magnitude`), the two horizontal zero-to-peak amplitudes in
   ``[S - 1 s, S + 10 s]`` are averaged (the ML stage's window and combination), and the pair
   is scaled so that this amplitude ``A`` (mm) obeys Hutton & Boore (1987)::

       log10 A = M - 1.110 log10(r / 100) - 0.00189 (r - 100) - 3.0

   times a log-normal station term (``magnitude_scatter``), ``r`` hypocentral (km).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import scipy.fft

from pipeline.magnitude import wood_anderson_response
from pipeline.synthetic.params import ScenarioConfig
from pipeline.synthetic.stations import azimuth_deg, epicentral_km
from pipeline.velocity import VelocityModel, travel_time

#: Seconds of record before the P onset in each synthesised segment.
LEAD_S = 2.0
#: Shortest and longest segment (samples, powers of two).
MIN_SEGMENT, MAX_SEGMENT = 1024, 32768
BETA_KM_S = 3.5


def brune_corner_hz(magnitude: np.ndarray, stress_drop_bar: float) -> np.ndarray:
    """Brune S-wave corner frequency (Hz) for moment magnitude ``magnitude``."""
    m0 = 10.0 ** (1.5 * np.asarray(magnitude, dtype=float) + 16.05)
    return 4.906e6 * BETA_KM_S * (stress_drop_bar / m0) ** (1.0 / 3.0)


def coda_duration_s(magnitude: np.ndarray) -> np.ndarray:
    """Signal duration (s) from Tsumura's (1967) relation ``M = 2.85 log10 T - 2.53``."""
    return 10.0 ** ((np.asarray(magnitude, dtype=float) + 2.53) / 2.85)


def hutton_boore_log_amplitude(magnitude, hypo_km) -> np.ndarray:
    """log10 of the Wood–Anderson amplitude (mm) of Hutton & Boore (1987)."""
    r = np.asarray(hypo_km, dtype=float)
    return np.asarray(magnitude) - 1.110 * np.log10(r / 100.0) - 0.00189 * (r - 100.0) - 3.0


def arrival_table(
    catalog: pd.DataFrame, stations: pd.DataFrame, model: VelocityModel
) -> pd.DataFrame:
    """All event–station pairs with distances and true arrivals.

    Returns one row per pair (event-major order): ``event`` and ``station`` (row positions in
    ``catalog`` / ``stations``), ``distance_km`` (epicentral), ``hypo_km``, ``azimuth_deg``
    (source to station), ``t_p`` and ``t_s`` (travel times, s, incl. the elevation term).
    """
    ev = np.repeat(np.arange(len(catalog)), len(stations))
    st = np.tile(np.arange(len(stations)), len(catalog))
    elat, elon = catalog.latitude.to_numpy()[ev], catalog.longitude.to_numpy()[ev]
    slat, slon = stations.latitude.to_numpy()[st], stations.longitude.to_numpy()[st]
    dist = epicentral_km(elat, elon, slat, slon)
    depth = catalog.depth_km.to_numpy()[ev]
    elev_km = np.clip(stations.elevation_m.to_numpy()[st] / 1000.0, 0.0, None)
    return pd.DataFrame(
        {
            "event": ev,
            "station": st,
            "distance_km": dist,
            "hypo_km": np.hypot(dist, depth),
            "azimuth_deg": azimuth_deg(elat, elon, slat, slon),
            "t_p": travel_time(model, "P", dist, depth) + elev_km / model.vp_km_s[0],
            "t_s": travel_time(model, "S", dist, depth) + elev_km / model.vs_km_s[0],
        }
    )


def segment_samples(
    magnitude: np.ndarray, s_minus_p: np.ndarray, snr: np.ndarray, coda_ratio: float, fs: float
) -> np.ndarray:
    """Segment length (samples) that holds lead, S−P and the coda until it fades below noise.

    The coda is kept for ``τc ln(snr coda_ratio / 0.05)`` (down to 5 % of the noise rms,
    ``snr`` = predicted S peak / noise rms), at most 1.5 × the Tsumura duration, at least 3 s.
    Lengths are rounded up to ``2^k`` or ``3·2^(k-1)`` samples (fast FFT sizes, few groups).
    """
    magnitude = np.asarray(magnitude, dtype=float)
    duration = coda_duration_s(magnitude)
    fade = duration / np.log(100.0) * np.log(np.maximum(snr * coda_ratio / 0.05, 1.0))
    need = (LEAD_S + s_minus_p + np.clip(fade, 3.0, 1.5 * duration)) * fs
    k = np.ceil(np.log2(np.maximum(need, 1)))
    n = np.where(need <= 0.75 * 2**k, 0.75 * 2**k, 2**k)
    return np.clip(n, MIN_SEGMENT, MAX_SEGMENT).astype(int)


def predicted_peak_velocity(magnitude, hypo_km, cfg: ScenarioConfig) -> np.ndarray:
    """Rough S peak ground velocity (m/s) before synthesis, to skip invisible pairs.

    Wood–Anderson amplitude to ground displacement above the WA corner, times ``2π f`` at
    ``f = min(fc, 8 Hz)``.
    """
    amp_m = 10.0 ** hutton_boore_log_amplitude(magnitude, hypo_km) / 1000.0
    freq = np.minimum(brune_corner_hz(magnitude, cfg.stress_drop_bar), 8.0)
    return 2 * np.pi * freq * amp_m / cfg.wood_anderson_gain


@functools.lru_cache(maxsize=16)
def _wa_from_velocity(n: int, fs: float, gain: float) -> np.ndarray:
    """Ground velocity (m/s) to Wood–Anderson displacement (mm) transfer, shape (n//2+1,)."""
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    out = np.zeros(freqs.size, dtype=complex)
    out[1:] = wood_anderson_response(freqs[1:], gain) / (2j * np.pi * freqs[1:]) * 1000.0
    return out


def _envelopes(tau: np.ndarray, duration: np.ndarray, tau_c: np.ndarray, coda: float, rise: float):
    """Direct + coda envelope for onset-relative times ``tau`` (B, n); zero before onset."""
    d = duration[:, None].astype(np.float32)
    rho = rise * d
    t = np.maximum(tau, 0.0)
    env = (1 - np.exp(-t / rho)) * np.exp(-t / d)
    env += coda * (1 - np.exp(-t / (3 * rho))) * np.exp(-t / tau_c[:, None].astype(np.float32))
    return env * (tau >= 0)


def _excitation(
    rng: np.random.Generator,
    pairs: pd.DataFrame,
    phase: int,
    onset_s: np.ndarray,
    n: int,
    cfg: ScenarioConfig,
) -> np.ndarray:
    """Unit-variance random excitation (B, 3, n) of one phase, shared within a source cell.

    ``waveform_similarity`` of the variance is a sequence fixed per (station, source cell,
    phase), aligned on the phase onset, so neighbouring events look alike at a station (what
    waveform cross-correlation measures); the rest is event-specific. Without ``station`` /
    ``cell`` columns the excitation is all event-specific.
    """
    b = len(pairs)
    own = rng.standard_normal((b, 3, n), dtype=np.float32)
    share = cfg.waveform_similarity
    if share <= 0 or "cell" not in pairs.columns:
        return own
    fs = cfg.sampling_rate
    shared = np.zeros((b, 3, n), dtype=np.float32)
    for i, (station, cell) in enumerate(zip(pairs.station, pairs.cell, strict=True)):
        i0 = int(round(onset_s[i] * fs))
        g = np.random.default_rng([cfg.seed, 5, int(station), int(cell), phase])
        shared[i, :, i0:] = g.standard_normal((3, n - i0), dtype=np.float32)
    return np.sqrt(share) * shared + np.sqrt(1 - share) * own


def synthesize_pairs(
    rng: np.random.Generator, pairs: pd.DataFrame, n: int, cfg: ScenarioConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground velocity (m/s) of a batch of event–station pairs, all with segment length ``n``.

    Args:
        rng: random generator (consumed).
        pairs: B rows with ``magnitude``, ``hypo_km``, ``azimuth_deg``, ``t_p``, ``t_s``
            (travel times, s) and optionally ``station`` and ``cell`` (source cell id, for
            waveform similarity); the segment starts ``LEAD_S`` before P.
        n: samples per segment.
        cfg: scenario settings.

    Returns:
        (velocity (B, 3, n) float32 in E, N, Z order; peak |velocity| of the P phase in its
        first second, shape (B,); peak |velocity| of the S phase in its first two seconds on
        the horizontals, shape (B,)).
    """
    fs = cfg.sampling_rate
    b = len(pairs)
    mag = pairs.magnitude.to_numpy(float)
    hypo = pairs.hypo_km.to_numpy(float)
    t_p, t_s = pairs.t_p.to_numpy(float), pairs.t_s.to_numpy(float)
    time = (np.arange(n) / fs).astype(np.float32)
    onset = np.stack([np.full(b, LEAD_S), LEAD_S + (t_s - t_p)])  # (2, B) s
    fc_s = brune_corner_hz(mag, cfg.stress_drop_bar)
    fc = np.stack([1.5 * fc_s, fc_s])
    tau_c = coda_duration_s(mag) / np.log(100.0)
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    f = np.maximum(freqs, 1e-3)
    q = cfg.q0 * f**cfg.q_eta
    velocity = np.zeros((b, 3, n), dtype=np.float32)
    phases = []
    for k, (travel, q_phase) in enumerate(((t_p, 1.5 * q), (t_s, q))):
        tau = time[None, :] - onset[k][:, None].astype(np.float32)
        duration = np.maximum(1.0 / fc[k] + cfg.path_duration_s_per_km * hypo, 0.3)
        env = _envelopes(tau, duration, tau_c, cfg.coda_ratio, cfg.rise_fraction).astype(np.float32)
        white = _excitation(rng, pairs, k, onset[k], n, cfg) * env[:, None, :]
        spec = (f / (1 + (f[None, :] / fc[k][:, None]) ** 2)) * np.exp(
            -np.pi * f * (travel[:, None] / q_phase + cfg.kappa_s)
        )
        spec[:, 0] = 0.0
        sig = scipy.fft.irfft(
            scipy.fft.rfft(white, axis=-1) * spec[:, None, :].astype(np.complex64), n=n, axis=-1
        )
        sig *= np.clip(tau / 0.02, 0.0, 1.0)[:, None, :].astype(np.float32)
        sig /= np.maximum(np.abs(sig).max(axis=(1, 2)), 1e-30)[:, None, None]
        phases.append(sig)
    az = np.radians(pairs.azimuth_deg.to_numpy(float))
    r_p = rng.uniform(0.3, 1.0, b) * cfg.p_to_s_ratio
    r_s = rng.uniform(0.3, 1.0, b)
    h_p, v_s = rng.uniform(0.4, 1.0, b), rng.uniform(0.4, 0.8, b)
    psi = rng.uniform(0, np.pi, b)  # SV/SH polarisation angle
    p_fac = np.stack([r_p * h_p * np.abs(np.sin(az)), r_p * h_p * np.abs(np.cos(az)), r_p], 1)
    radial, transverse = np.cos(psi), np.sin(psi)
    s_fac = np.stack(
        [
            r_s * np.abs(radial * np.sin(az) + transverse * np.cos(az)),
            r_s * np.abs(radial * np.cos(az) - transverse * np.sin(az)),
            r_s * v_s,
        ],
        1,
    )
    velocity = phases[0] * p_fac[:, :, None] + phases[1] * s_fac[:, :, None]
    # Scale to the Hutton & Boore law on the Wood–Anderson horizontals.
    wa = scipy.fft.irfft(
        scipy.fft.rfft(velocity[:, :2], axis=-1) * _wa_from_velocity(n, fs, cfg.wood_anderson_gain),
        n=n,
        axis=-1,
    )
    in_window = (time[None, :] >= onset[1][:, None] - 1.0) & (
        time[None, :] <= onset[1][:, None] + 10.0
    )
    peaks = np.where(in_window[:, None, :], np.abs(wa), 0.0).max(axis=-1).mean(axis=1)
    target = 10.0 ** (
        hutton_boore_log_amplitude(mag, hypo) + rng.normal(0.0, cfg.magnitude_scatter, b)
    )
    scale = (target / np.maximum(peaks, 1e-30)).astype(np.float32)
    velocity *= scale[:, None, None]
    p_win = (time[None, :] >= onset[0][:, None]) & (time[None, :] < onset[0][:, None] + 1.0)
    s_win = (time[None, :] >= onset[1][:, None]) & (time[None, :] < onset[1][:, None] + 2.0)
    p_peak = np.where(p_win, np.abs(velocity[:, 2]), 0.0).max(axis=-1)
    s_peak = np.where(s_win[:, None, :], np.abs(velocity[:, :2]), 0.0).max(axis=(1, 2))
    return velocity, p_peak, s_peak
