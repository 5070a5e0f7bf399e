"""The true aftershock sequence: Omori–Utsu times, Gutenberg–Richter sizes, fault hypocentres.

- Times: a non-homogeneous Poisson process with the Omori–Utsu rate
  ``n(t) = K (t + c)^-p`` events/day (``t`` days after the mainshock, ``M >= magnitude_min``),
  ``K`` being the rate at ``t + c = 1`` day. The number of events in ``[t1, t2)`` is Poisson
  with mean ``Λ(t2) - Λ(t1)``, ``Λ(t) = K ((t + c)^(1-p) - c^(1-p)) / (1 - p)`` (``K ln(1 + t/c)``
  for ``p = 1``); times are drawn by inverting ``Λ``.
- Magnitudes: Gutenberg–Richter with slope ``b`` between ``magnitude_min`` and
  ``magnitude_max`` (truncated exponential, continuous; rounded to 0.01).
- Hypocentres: uniform along strike over ``fault_length_km`` and in depth over
  ``[depth_min_km, depth_max_km]`` on the plane (strike, dip) through the fault centre at
  mid-depth, plus isotropic Gaussian scatter ``scatter_km``; depths clipped to the range.

The building blocks (Omori–Utsu and evenly spaced origin times, G–R magnitudes, fault-plane
hypocentres, the local km frame) are shared with the small pick generators of the stage tests
(:mod:`pipeline.association.synthetic`, :mod:`pipeline.relocation.synthetic`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.synthetic.params import ScenarioConfig

KM_PER_DEG = 111.195

#: Columns of the true catalog (``truth/catalog.csv``).
CATALOG_COLUMNS = ["event_id", "origin_time", "latitude", "longitude", "depth_km", "magnitude"]


@dataclass(frozen=True)
class Fault:
    """A planar fault zone: centre (°), strike and dip (°), extent and scatter (km)."""

    latitude: float
    longitude: float
    strike_deg: float
    dip_deg: float
    length_km: float
    depth_min_km: float
    depth_max_km: float
    scatter_km: float

    @classmethod
    def of(cls, cfg: ScenarioConfig) -> Fault:
        """The fault of a scenario config."""
        return cls(
            latitude=cfg.fault_latitude,
            longitude=cfg.fault_longitude,
            strike_deg=cfg.fault_strike_deg,
            dip_deg=cfg.fault_dip_deg,
            length_km=cfg.fault_length_km,
            depth_min_km=cfg.depth_min_km,
            depth_max_km=cfg.depth_max_km,
            scatter_km=cfg.scatter_km,
        )


def offsets_to_degrees(lat0, lon0, east_km, north_km) -> tuple[np.ndarray, np.ndarray]:
    """Latitude, longitude (°) of points ``east_km``, ``north_km`` away from (``lat0``, ``lon0``).

    Local flat-earth frame (equirectangular at ``lat0``; all arguments numpy-broadcast),
    accurate to ~0.1 % over a few tens of km.
    """
    lat = lat0 + np.asarray(north_km) / KM_PER_DEG
    lon = lon0 + np.asarray(east_km) / (KM_PER_DEG * np.cos(np.radians(lat0)))
    return lat, lon


def degrees_to_offsets(lat0, lon0, latitude, longitude) -> tuple[np.ndarray, np.ndarray]:
    """East, north offsets (km) of points from (``lat0``, ``lon0``): inverse of
    :func:`offsets_to_degrees`."""
    east = (np.asarray(longitude) - lon0) * KM_PER_DEG * np.cos(np.radians(lat0))
    north = (np.asarray(latitude) - lat0) * KM_PER_DEG
    return east, north


def spaced_times_s(
    rng: np.random.Generator, size: int, interval_s: float, jitter_s: float
) -> np.ndarray:
    """Sorted times (s, the first at 0) about ``interval_s`` apart, shape (size,).

    Event ``i`` is at ``i interval_s + U(0, jitter_s)``, then all are shifted so the first is
    at 0; with ``jitter_s > interval_s`` neighbours may swap and wavetrains overlap.
    """
    t = np.arange(size) * interval_s + rng.uniform(0.0, jitter_s, size)
    return np.sort(t - t.min()) if size else t


def omori_cumulative(t_days: np.ndarray, k: float, c: float, p: float) -> np.ndarray:
    """Expected number of events in ``[0, t_days)`` after the mainshock (Omori–Utsu)."""
    t = np.asarray(t_days, dtype=float)
    if abs(p - 1.0) < 1e-9:
        return k * np.log1p(t / c)
    return k * ((t + c) ** (1 - p) - c ** (1 - p)) / (1 - p)


def omori_inverse(n: np.ndarray, k: float, c: float, p: float) -> np.ndarray:
    """Time (days) at which the expected cumulative count reaches ``n`` (inverse of Λ)."""
    n = np.asarray(n, dtype=float)
    if abs(p - 1.0) < 1e-9:
        return c * np.expm1(n / k)
    return (n * (1 - p) / k + c ** (1 - p)) ** (1 / (1 - p)) - c


def gutenberg_richter(rng: np.random.Generator, size: int, b: float, m_min: float, m_max: float):
    """``size`` magnitudes from a G–R law truncated to ``[m_min, m_max]``."""
    beta = b * np.log(10)
    u = rng.random(size)
    span = 1 - np.exp(-beta * (m_max - m_min))
    return m_min - np.log(1 - u * span) / beta


def fault_hypocentres(rng: np.random.Generator, size: int, fault: Fault) -> pd.DataFrame:
    """Latitude, longitude (°) and depth (km) of ``size`` hypocentres on ``fault``."""
    along = (rng.random(size) - 0.5) * fault.length_km
    depth_on_plane = rng.uniform(fault.depth_min_km, fault.depth_max_km, size)
    dip = np.radians(fault.dip_deg)
    mid = 0.5 * (fault.depth_min_km + fault.depth_max_km)
    # horizontal offset across strike (towards the dip direction, strike + 90°)
    across = (depth_on_plane - mid) / np.tan(dip)
    scatter = rng.normal(0.0, fault.scatter_km, (3, size))
    strike = np.radians(fault.strike_deg)
    east = along * np.sin(strike) + across * np.cos(strike) + scatter[0]
    north = along * np.cos(strike) - across * np.sin(strike) + scatter[1]
    depth = np.clip(depth_on_plane + scatter[2], fault.depth_min_km, fault.depth_max_km)
    lat, lon = offsets_to_degrees(fault.latitude, fault.longitude, east, north)
    return pd.DataFrame({"latitude": lat, "longitude": lon, "depth_km": depth})


def source_cells(catalog: pd.DataFrame, cfg: ScenarioConfig) -> np.ndarray:
    """Integer id of each event's source cell (``similarity_cell_km`` along strike × depth)."""
    east, north = degrees_to_offsets(
        cfg.fault_latitude, cfg.fault_longitude, catalog.latitude, catalog.longitude
    )
    strike = np.radians(cfg.fault_strike_deg)
    along = east * np.sin(strike) + north * np.cos(strike)
    i_along = np.floor(along / cfg.similarity_cell_km).astype(np.int64)
    i_depth = np.floor(catalog.depth_km.to_numpy() / cfg.similarity_cell_km).astype(np.int64)
    return (i_along + 10_000) * 10_000 + i_depth


def simulate_sequence(cfg: ScenarioConfig) -> pd.DataFrame:
    """The true catalog (columns :data:`CATALOG_COLUMNS`) of events in the record span.

    Events are sorted by origin time; ``event_id`` is ``syn000001``, ``syn000002``, ...
    Events up to 60 s before the records start are included (their coda reaches the
    records); origin times are UTC ``datetime64[ns, UTC]``.
    """
    rng = np.random.default_rng([cfg.seed, 1])
    day = 86400.0
    t1 = ((cfg.start_time - cfg.mainshock_time).total_seconds() - 60.0) / day
    t1 = max(t1, 0.0)
    t2 = (cfg.end_time - cfg.mainshock_time).total_seconds() / day
    k, c, p = cfg.omori_k, cfg.omori_c_days, cfg.omori_p
    lam1, lam2 = omori_cumulative(np.array([t1, t2]), k, c, p)
    n = int(rng.poisson(lam2 - lam1))
    t_days = np.sort(omori_inverse(rng.uniform(lam1, lam2, n), k, c, p))
    mags = np.round(gutenberg_richter(rng, n, cfg.b_value, cfg.magnitude_min, cfg.magnitude_max), 2)
    hypo = fault_hypocentres(rng, n, Fault.of(cfg))
    origin = pd.Timestamp(cfg.mainshock_time) + pd.to_timedelta(np.round(t_days * day, 3), "s")
    catalog = pd.DataFrame(
        {
            "event_id": [f"syn{i + 1:06d}" for i in range(n)],
            "origin_time": origin.astype("datetime64[ns, UTC]"),
            "latitude": hypo.latitude.round(5),
            "longitude": hypo.longitude.round(5),
            "depth_km": hypo.depth_km.round(3),
            "magnitude": mags,
        }
    )
    return catalog[CATALOG_COLUMNS]
