"""Magnitude of completeness (Mc) and Gutenberg–Richter a- and b-values.

All estimators work on magnitudes binned to ``delta_m`` (default 0.1): a magnitude ``m``
belongs to the bin centred on ``round(m / delta_m) * delta_m``; an Mc is a bin centre and
the events "above Mc" are those in bins ``>= Mc`` (continuous ``m >= Mc - delta_m / 2``).
Because every estimator depends only on the counts per bin, bootstrap resampling of the
events is done as multinomial resampling of those counts (identical in distribution, and
fast).

Methods
-------
- **MAXC** (maximum curvature; Wiemer & Wyss 2000): the bin with the most events, plus an
  optional correction (default +0.2, Woessner & Wiemer 2005).
- **GFT** (goodness-of-fit test; Wiemer & Wyss 2000): for each candidate Mc fit a G–R law
  to the events above it and compute ``R = 100 - 100 * sum|B_i - S_i| / sum B_i`` with
  ``B_i`` and ``S_i`` the observed and synthetic cumulative counts per bin ``>= Mc``;
  Mc is the first candidate with ``R >= level`` (90 % and 95 %). Optionally
  (``gft_counts="incremental"``) the counts per bin are compared instead: stricter, it
  reaches 95 % less often but underestimates Mc less on gradual incompleteness ramps.
- **MBS** (b-value stability; Cao & Gao 2002, as in Woessner & Wiemer 2005): Mc is the first
  candidate whose b differs from the mean b over ``[Mc, Mc + stability_range)`` (five 0.1
  bins by default) by at most its Shi & Bolt uncertainty.
- **b** by the Aki (1965) – Utsu (1965) maximum likelihood with the binning correction,
  ``b = log10(e) / (mean(M) - (Mc - delta_m / 2))``, with the Shi & Bolt (1982)
  uncertainty ``sigma_b = ln(10) b^2 sqrt(sum (M - mean)^2 / (n (n - 1)))``.
- **a** (cumulative, at M = 0): ``a = log10 N(M >= Mc) + b Mc``.

:func:`analyze_magnitudes` returns a :class:`CompletenessResult`; its
:meth:`~CompletenessResult.to_dict` is plain JSON (``NaN`` becomes ``null``).
``eqcat mc`` runs it on any catalog (:mod:`pipeline.catalog_io`,
:mod:`pipeline.report.catalog_report`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, model_validator

from pipeline.errors import EqcatInputError
from pipeline.sections import SECTION_CONFIG
from pipeline.wording import counted

log = logging.getLogger(__name__)

LOG10_E = math.log10(math.e)

#: Method keys in results, in the order they are reported.
MC_METHODS = ("maxc", "gft90", "gft95", "mbs")

#: Most magnitude bins an analysis accepts (e.g. 10 magnitude units of 0.01): the GFT test
#: compares every candidate Mc with every bin above it, so its work grows with the square.
MAX_FMD_BINS = 1000

#: Array elements per block of histograms in :func:`gft_residuals` (bounds its memory:
#: a few arrays of this many float64 values, ~32 MB each).
GFT_BLOCK_ELEMENTS = 4_000_000


class CompletenessConfig(BaseModel):
    """Completeness (Mc) and Gutenberg–Richter estimation settings."""

    model_config = SECTION_CONFIG

    delta_m: float = Field(
        0.1,
        ge=0.01,
        le=1,
        description="magnitude bin width (no magnitude is known to better than 0.01; "
        "narrower bins only multiply the work, see MAX_FMD_BINS)",
    )
    maxc_correction: float = Field(
        0.2, ge=-1, le=1, description="added to the maximum-curvature Mc (Woessner & Wiemer 2005)"
    )
    gft_levels: tuple[float, ...] = Field(
        (90.0, 95.0), description="goodness-of-fit levels R (%) for the GFT method"
    )
    gft_counts: Literal["cumulative", "incremental"] = Field(
        "cumulative",
        description="GFT compares cumulative counts (Wiemer & Wyss 2000) or counts per bin",
    )
    mbs_stability_range: float = Field(
        0.5, gt=0, le=2, description="magnitude range averaged by the b-stability test"
    )
    mc_method: Literal["best", "maxc", "gft90", "gft95", "mbs"] = Field(
        "best",
        description="Mc used for b: 'best' = GFT95, else GFT90, else MAXC (Wiemer & Wyss 2000)",
    )
    min_events: int = Field(50, ge=2, description="fewer valid events: Mc/b not estimable")
    min_events_above_mc: int = Field(
        25, ge=2, description="a candidate Mc needs this many events at or above it"
    )
    n_bootstrap: int = Field(200, ge=0, le=100_000, description="bootstrap resamples (0 = off)")
    confidence: float = Field(0.95, gt=0, lt=1, description="bootstrap interval level")
    seed: int = Field(42, description="random seed of the bootstrap")
    window_events: int | None = Field(
        None,
        ge=50,
        description="events per moving window for Mc(t) and b(t); None: sized to the "
        "catalog (see window_plan)",
    )
    window_step: int | None = Field(
        None, ge=1, description="events between moving-window starts; None: a quarter window"
    )

    @model_validator(mode="after")
    def _method_has_level(self) -> CompletenessConfig:
        if self.mc_method.startswith("gft") and float(self.mc_method[3:]) not in self.gft_levels:
            raise ValueError(f"mc_method {self.mc_method!r} needs its level in gft_levels")
        return self


# --------------------------------------------------------------------------------------
# Binned statistics


def bin_magnitudes(magnitudes: np.ndarray, delta_m: float) -> np.ndarray:
    """Round magnitudes to bin centres (multiples of ``delta_m``), shape preserved."""
    binned = np.round(np.asarray(magnitudes, dtype=float) / delta_m) * delta_m
    return np.round(binned, 10)


def fmd(magnitudes: np.ndarray, delta_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequency–magnitude distribution of finite magnitudes.

    Returns:
        bins: bin centres from the smallest to the largest binned magnitude, shape (K,).
        incremental: events per bin, shape (K,).
        cumulative: events in that bin or above, shape (K,).
    """
    m = np.asarray(magnitudes, dtype=float)
    m = m[np.isfinite(m)]
    if m.size == 0:
        empty = np.array([], dtype=float)
        return empty, empty.astype(int), empty.astype(int)
    index = np.round(m / delta_m).astype(np.int64)
    lo = index.min()
    counts = np.bincount(index - lo)
    bins = np.round((lo + np.arange(counts.size)) * delta_m, 10)
    cumulative = counts[::-1].cumsum()[::-1]
    return bins, counts, cumulative


@dataclass
class CutoffStats:
    """b-value statistics for every candidate Mc (each bin centre), arrays of shape (K,).

    ``b``/``b_std`` are NaN where fewer than the minimum number of events lie above.
    """

    mc: np.ndarray
    n: np.ndarray
    b: np.ndarray
    b_std: np.ndarray
    a: np.ndarray


def cutoff_stats(
    bins: np.ndarray, counts: np.ndarray, delta_m: float, min_events: int = 2
) -> CutoffStats:
    """Aki–Utsu b-value, Shi–Bolt sigma and a-value for each bin taken as Mc.

    ``counts`` may be a single histogram (K,) or a stack of bootstrap histograms (R, K);
    the statistics then have the same leading shape.
    """
    counts = np.asarray(counts, dtype=float)
    rev = lambda x: x[..., ::-1].cumsum(axis=-1)[..., ::-1]  # noqa: E731
    n = rev(counts)
    s1 = rev(counts * bins)
    s2 = rev(counts * bins**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / n
        b = LOG10_E / (mean - (bins - delta_m / 2))
        ssq = np.clip(s2 - n * mean**2, 0, None)
        b_std = math.log(10) * b**2 * np.sqrt(ssq / (n * (n - 1)))
        a = np.log10(n) + b * bins
    bad = n < max(min_events, 2)
    for arr in (b, b_std, a):
        arr[bad] = np.nan
    return CutoffStats(mc=bins, n=n.astype(int), b=b, b_std=b_std, a=a)


def b_value(magnitudes: np.ndarray, mc: float, delta_m: float) -> tuple[float, float, int]:
    """Aki–Utsu b-value (binning-corrected) and Shi–Bolt sigma of binned magnitudes >= ``mc``.

    Returns:
        (b, sigma_b, n): NaN values when fewer than two events lie above ``mc``.
    """
    m = bin_magnitudes(np.asarray(magnitudes, dtype=float), delta_m)
    m = m[np.isfinite(m) & (m >= mc - delta_m / 2)]
    n = m.size
    if n < 2:
        return math.nan, math.nan, n
    b = LOG10_E / (m.mean() - (mc - delta_m / 2))
    sigma = math.log(10) * b**2 * math.sqrt(((m - m.mean()) ** 2).sum() / (n * (n - 1)))
    return float(b), float(sigma), n


# --------------------------------------------------------------------------------------
# Mc estimators on histograms; each accepts counts of shape (K,) or (R, K) and returns Mc
# (NaN where the method finds none) with the leading shape.


def mc_maxc(bins: np.ndarray, counts: np.ndarray, correction: float = 0.2) -> np.ndarray:
    """Maximum curvature: the centre of the most populated bin plus ``correction``."""
    counts = np.asarray(counts)
    return np.round(bins[np.argmax(counts, axis=-1)] + correction, 10)


def gft_residuals(
    bins: np.ndarray,
    counts: np.ndarray,
    stats: CutoffStats,
    delta_m: float,
    mode: Literal["cumulative", "incremental"] = "cumulative",
) -> np.ndarray:
    """Goodness-of-fit R (%) per candidate Mc (Wiemer & Wyss 2000), shape like ``stats.b``.

    Synthetic cumulative counts above each candidate ``Mc_k`` follow
    ``S_i = N_k 10^(-b_k (M_i - Mc_k))`` for bins ``M_i >= Mc_k``; ``mode="incremental"``
    compares the counts per bin (``S_i - S_(i+1)``) instead, a stricter test. A stack of
    histograms is done in blocks of at most :data:`GFT_BLOCK_ELEMENTS` (K, K) values.
    """
    counts = np.asarray(counts, dtype=float)
    k = bins.size
    rows = max(GFT_BLOCK_ELEMENTS // max(k * k, 1), 1)
    if counts.ndim == 2 and counts.shape[0] > rows:  # bootstrap stacks: block by block
        blocks = [
            gft_residuals(
                bins,
                counts[i : i + rows],
                CutoffStats(
                    mc=stats.mc,
                    n=stats.n[i : i + rows],
                    b=stats.b[i : i + rows],
                    b_std=stats.b_std[i : i + rows],
                    a=stats.a[i : i + rows],
                ),
                delta_m,
                mode,
            )
            for i in range(0, counts.shape[0], rows)
        ]
        return np.concatenate(blocks, axis=0)
    offsets = bins[None, :] - bins[:, None]  # offsets[j, i] = M_i - Mc_j (used for i >= j)
    upper = np.triu(np.ones((k, k), dtype=bool))
    b = stats.b[..., :, None]
    n = stats.n[..., :, None]
    with np.errstate(invalid="ignore", over="ignore"):
        synthetic = n * 10.0 ** (-b * offsets)
        if mode == "incremental":
            synthetic = synthetic - n * 10.0 ** (-b * (offsets + delta_m))
            observed_rows = counts
        else:
            observed_rows = counts[..., ::-1].cumsum(axis=-1)[..., ::-1]
        observed = np.broadcast_to(observed_rows[..., None, :], synthetic.shape)
        diff = np.where(upper, np.abs(observed - synthetic), 0.0).sum(axis=-1)
        total = np.where(upper, observed, 0.0).sum(axis=-1)
        r = 100.0 - 100.0 * diff / total
    r[np.isnan(stats.b)] = np.nan
    return r


def mc_gft(bins: np.ndarray, r: np.ndarray, level: float) -> np.ndarray:
    """First candidate Mc whose goodness-of-fit R reaches ``level`` (%), NaN if none."""
    ok = np.nan_to_num(r, nan=-np.inf) >= level
    first = np.argmax(ok, axis=-1)
    return np.where(ok.any(axis=-1), bins[first], np.nan)


def mbs_delta(stats: CutoffStats, delta_m: float, stability_range: float) -> np.ndarray:
    """|b_ave - b| / sigma_b per candidate Mc (Cao & Gao 2002), NaN where not computable.

    ``b_ave`` is the mean b over the candidates ``Mc, Mc + dM, ...`` inside
    ``[Mc, Mc + stability_range)``.
    """
    steps = max(int(round(stability_range / delta_m)), 1)
    b = stats.b
    k = b.shape[-1]
    out = np.full(b.shape, np.nan)
    if k < steps:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(b, steps, axis=-1)
    b_ave = windows.mean(axis=-1)  # NaN if any member is NaN
    with np.errstate(invalid="ignore", divide="ignore"):
        out[..., : k - steps + 1] = (
            np.abs(b_ave - b[..., : k - steps + 1]) / stats.b_std[..., : k - steps + 1]
        )
    return out


def mc_mbs(bins: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """First candidate Mc whose b-stability criterion ``delta <= 1`` holds, NaN if none."""
    ok = np.nan_to_num(delta, nan=np.inf) <= 1.0
    first = np.argmax(ok, axis=-1)
    return np.where(ok.any(axis=-1), bins[first], np.nan)


# --------------------------------------------------------------------------------------
# Results


@dataclass
class McEstimate:
    """One Mc estimate with its bootstrap spread (magnitude units).

    ``mc`` is NaN and ``reason`` says why when the method found no Mc.
    """

    method: str
    mc: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    bootstrap_std: float = math.nan
    bootstrap_found_fraction: float = math.nan
    reason: str | None = None


@dataclass
class CompletenessResult:
    """Everything the completeness analysis found; :meth:`to_dict` for JSON."""

    estimable: bool
    reason: str | None
    n_input: int
    n_nan: int
    n_valid: int
    delta_m: float
    config: dict[str, Any]
    mc: dict[str, McEstimate] = field(default_factory=dict)
    mc_method: str | None = None
    mc_selected: float = math.nan
    b: float = math.nan
    b_std: float = math.nan
    b_ci_low: float = math.nan
    b_ci_high: float = math.nan
    a: float = math.nan
    n_above_mc: int = 0
    magnitude_min: float = math.nan
    magnitude_max: float = math.nan
    fmd: dict[str, list] = field(default_factory=dict)
    b_by_cutoff: dict[str, list] = field(default_factory=dict)
    time_windows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN and infinities become ``None``)."""
        return json_clean(asdict(self))

    def to_json(self) -> str:
        """The result as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def json_clean(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN/infinities as ``None``."""
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_clean(v) for v in value.tolist()]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------------------
# Analysis


def _all_mcs(
    bins: np.ndarray, counts: np.ndarray, cfg: CompletenessConfig
) -> tuple[dict[str, np.ndarray], CutoffStats, np.ndarray, np.ndarray]:
    """Mc by every method for histogram(s) ``counts``; also the cutoff stats, R and MBS delta."""
    stats = cutoff_stats(bins, counts, cfg.delta_m, cfg.min_events_above_mc)
    r = gft_residuals(bins, counts, stats, cfg.delta_m, cfg.gft_counts)
    delta = mbs_delta(stats, cfg.delta_m, cfg.mbs_stability_range)
    mcs = {"maxc": mc_maxc(bins, counts, cfg.maxc_correction)}
    for level in cfg.gft_levels:
        mcs[f"gft{level:g}"] = mc_gft(bins, r, level)
    mcs["mbs"] = mc_mbs(bins, delta)
    return mcs, stats, r, delta


def _select(mcs: dict[str, np.ndarray], method: str) -> np.ndarray:
    """The Mc used for b: one method, or 'best' = GFT95 -> GFT90 -> MAXC."""
    if method != "best":
        return mcs[method]
    chosen = np.array(mcs["maxc"], dtype=float)
    for key in ("gft90", "gft95"):  # later keys take precedence
        if key in mcs:
            chosen = np.where(np.isfinite(mcs[key]), mcs[key], chosen)
    return chosen


def _b_at(bins: np.ndarray, stats: CutoffStats, mc: np.ndarray) -> tuple[np.ndarray, ...]:
    """b, sigma_b, a and n at the Mc of each histogram (NaN where Mc is NaN or off-grid)."""
    mc = np.asarray(mc, dtype=float)
    idx = np.round((mc - bins[0]) / (bins[1] - bins[0] if bins.size > 1 else 1.0))
    valid = np.isfinite(idx) & (idx >= 0) & (idx < bins.size)
    idx = np.where(valid, idx, 0).astype(int)
    take = lambda arr: np.where(  # noqa: E731
        valid, np.take_along_axis(arr, idx[..., None], axis=-1)[..., 0], np.nan
    )
    if stats.b.ndim == 1:
        take = lambda arr: np.where(valid, arr[idx], np.nan)  # noqa: E731
    n = np.where(valid, take(stats.n.astype(float)), 0.0)
    return take(stats.b), take(stats.b_std), take(stats.a), n


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float, float, float]:
    """(low, high, std, fraction finite) of bootstrap values, NaNs ignored."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan, math.nan, 0.0
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high), float(finite.std()), finite.size / values.size


#: Bounds (events) of a moving window sized to the catalog by :func:`window_plan`.
AUTO_WINDOW_MIN, AUTO_WINDOW_MAX = 100, 500


def window_plan(n: int, cfg: CompletenessConfig) -> tuple[int, int]:
    """(events per window, events between window starts) for ``n`` events.

    Configured values win. Otherwise the window is a quarter of the catalog, kept within
    [:data:`AUTO_WINDOW_MIN`, :data:`AUTO_WINDOW_MAX`] events, and the step a quarter of
    the window: a catalog of 400–2,000 events gets 13 windows, a larger one more, so Mc(t)
    is a curve rather than two points joined by a line. (A rule chosen here, not taken from
    a paper: 100 events is twice ``min_events``' default; 500 was the fixed window before.)
    """
    size = cfg.window_events
    if size is None:
        size = min(max(n // 4, AUTO_WINDOW_MIN), AUTO_WINDOW_MAX)
    step = cfg.window_step if cfg.window_step is not None else max(size // 4, 1)
    return size, step


def _time_windows(
    binned: np.ndarray, times: np.ndarray, cfg: CompletenessConfig
) -> list[dict[str, Any]]:
    """Mc and b in moving windows of events ordered by time (sizes: :func:`window_plan`)."""
    order = np.argsort(times, kind="stable")
    m, t = binned[order], times[order]
    n = m.size
    size, step = window_plan(n, cfg)
    if n < size:
        return []
    starts = list(range(0, n - size + 1, step))
    if starts[-1] != n - size:
        starts.append(n - size)
    out = []
    for s in starts:
        wm, wt = m[s : s + size], t[s : s + size]
        bins, counts, _ = fmd(wm, cfg.delta_m)
        mcs, stats, _, _ = _all_mcs(bins, counts, cfg)
        mc = float(_select(mcs, cfg.mc_method))
        b, b_std, _, n_above = (float(x) for x in _b_at(bins, stats, np.array(mc)))
        out.append(
            {
                "start_time": pd.Timestamp(wt[0]).isoformat(),
                "end_time": pd.Timestamp(wt[-1]).isoformat(),
                "median_time": pd.Timestamp(wt[size // 2]).isoformat(),
                "n_events": int(size),
                "step_events": int(step),
                "mc": mc,
                **{f"mc_{k}": float(v) for k, v in mcs.items()},
                "b": b,
                "b_std": b_std,
                "n_above_mc": int(n_above),
            }
        )
    return out


def check_bin_count(magnitudes: np.ndarray, delta_m: float) -> None:
    """Refuse finite ``magnitudes`` that span more than :data:`MAX_FMD_BINS` bins of ``delta_m``.

    Raises:
        EqcatInputError: naming the range, the bin width and the likely causes (a bin too
            narrow, or a placeholder such as -999 among the magnitudes).
    """
    if magnitudes.size == 0:
        return
    low, high = float(np.min(magnitudes)), float(np.max(magnitudes))
    n_bins = (high - low) / delta_m + 1
    if not n_bins <= MAX_FMD_BINS:  # also catches inf/NaN from absurd values
        raise EqcatInputError(
            f"magnitudes span {low:g} to {high:g}: {n_bins:.3g} bins of delta_m={delta_m:g}, "
            f"more than {MAX_FMD_BINS} (a wider bin width, or a placeholder value such as "
            "-999 among the magnitudes?)"
        )


def analyze_magnitudes(
    magnitudes: np.ndarray | pd.Series | list[float],
    times: np.ndarray | pd.Series | None = None,
    cfg: CompletenessConfig | None = None,
) -> CompletenessResult:
    """Mc by every method (with bootstrap intervals), b, a and their variation in time.

    Args:
        magnitudes: event magnitudes, shape (N,); NaN/inf entries are excluded and counted.
        times: optional origin times (datetime-like), shape (N,), for Mc(t) and b(t).
        cfg: settings; defaults when None.

    Returns:
        a :class:`CompletenessResult`; ``estimable`` is False (with ``reason``) when fewer
        than ``cfg.min_events`` valid magnitudes remain or no Mc can be found.

    Raises:
        EqcatInputError: the magnitudes span more than :data:`MAX_FMD_BINS` bins.
    """
    cfg = cfg or CompletenessConfig()
    raw = np.asarray(magnitudes, dtype=float).ravel()
    finite = np.isfinite(raw)
    result = CompletenessResult(
        estimable=False,
        reason=None,
        n_input=int(raw.size),
        n_nan=int((~finite).sum()),
        n_valid=int(finite.sum()),
        delta_m=cfg.delta_m,
        config=cfg.model_dump(mode="json"),
    )
    if result.n_nan:
        log.info(
            "completeness: %d of %d events have no magnitude (excluded)", result.n_nan, raw.size
        )
    if result.n_valid < cfg.min_events:
        result.reason = (
            f"not estimable: {counted(result.n_valid, 'valid magnitude')} "
            f"(fewer than min_events={cfg.min_events}; {result.n_nan} NaN excluded)"
        )
        return result

    check_bin_count(raw[finite], cfg.delta_m)
    binned = bin_magnitudes(raw[finite], cfg.delta_m)
    bins, counts, cumulative = fmd(binned, cfg.delta_m)
    result.magnitude_min, result.magnitude_max = float(bins[0]), float(bins[-1])
    result.fmd = {"bins": bins, "incremental": counts, "cumulative": cumulative}
    mcs, stats, r, delta = _all_mcs(bins, counts, cfg)
    result.b_by_cutoff = {
        "mc": bins,
        "n": stats.n,
        "b": stats.b,
        "b_std": stats.b_std,
        "a": stats.a,
        "gft_r": r,
        "mbs_delta": delta,
    }

    # Bootstrap: multinomial resampling of the histogram == resampling events.
    rng = np.random.default_rng(cfg.seed)
    boot_counts = (
        rng.multinomial(counts.sum(), counts / counts.sum(), size=cfg.n_bootstrap)
        if cfg.n_bootstrap
        else np.zeros((0, bins.size), dtype=int)
    )
    boot_mcs, boot_stats, _, _ = _all_mcs(bins, boot_counts, cfg)
    for key, value in mcs.items():
        est = McEstimate(method=key, mc=float(value))
        if cfg.n_bootstrap:
            est.ci_low, est.ci_high, est.bootstrap_std, est.bootstrap_found_fraction = _interval(
                boot_mcs[key], cfg.confidence
            )
        if not math.isfinite(est.mc):
            est.reason = {
                "mbs": "no candidate Mc met the b-stability criterion",
            }.get(key, f"no candidate Mc reached R >= {key[3:]}%")
        result.mc[key] = est

    selected = float(_select(mcs, cfg.mc_method))
    if not math.isfinite(selected):
        result.reason = f"not estimable: method {cfg.mc_method!r} found no Mc"
        return result
    b, b_std, a, n_above = (float(x) for x in _b_at(bins, stats, np.array(selected)))
    result.mc_method = cfg.mc_method
    result.mc_selected = selected
    result.b, result.b_std, result.a, result.n_above_mc = b, b_std, a, int(n_above)
    if not math.isfinite(b):
        result.reason = (
            f"not estimable: {counted(int(n_above), 'event')} at or above Mc={selected:g} "
            f"(fewer than min_events_above_mc={cfg.min_events_above_mc})"
        )
        return result
    occupied = int(((bins >= selected - 1e-9) & (counts > 0)).sum())
    if occupied < 3:
        result.reason = (
            f"not estimable: magnitudes at or above Mc={selected:g} occupy {occupied} bin(s) "
            f"of {cfg.delta_m:g}; a b-value needs a magnitude range"
        )
        return result
    if cfg.n_bootstrap:
        boot_b = _b_at(bins, boot_stats, _select(boot_mcs, cfg.mc_method))[0]
        result.b_ci_low, result.b_ci_high, _, _ = _interval(boot_b, cfg.confidence)
    result.estimable = True

    if times is not None:
        t = pd.to_datetime(pd.Series(np.asarray(times).ravel()), utc=True)
        if t.size != raw.size:
            raise ValueError(f"times has {t.size} entries but magnitudes has {raw.size}")
        t = t[finite].to_numpy()
        keep = ~pd.isna(t)
        result.time_windows = _time_windows(binned[keep], t[keep], cfg)
    return result
