"""Mc and Gutenberg–Richter estimators on generated catalogs with a known truth."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from pipeline import completeness
from pipeline.completeness import (
    CompletenessConfig,
    analyze_magnitudes,
    b_value,
    bin_magnitudes,
    cutoff_stats,
    fmd,
    gft_residuals,
)
from pipeline.errors import EqcatInputError

TRUE_B = 1.0
TRUE_MC = 1.0
DELTA_M = 0.1


def gr_catalog(n: int, ramp_width: float, seed: int, b: float = TRUE_B) -> np.ndarray:
    """``n`` continuous G–R magnitudes, complete for binned M >= TRUE_MC.

    Below ``TRUE_MC - DELTA_M / 2`` the detection probability falls linearly to zero over
    ``ramp_width`` magnitude units (the incompleteness ramp).
    """
    rng = np.random.default_rng(seed)
    top = TRUE_MC - DELTA_M / 2
    low = top - ramp_width
    kept: list[np.ndarray] = []
    while sum(k.size for k in kept) < n:
        m = low + rng.exponential(1 / (b * math.log(10)), size=4 * n)
        detect = np.clip((m - low) / ramp_width, 0, 1)
        kept.append(m[rng.random(m.size) < detect])
    return np.concatenate(kept)[:n]


@pytest.mark.parametrize("n", [2000, 20000])
@pytest.mark.parametrize("seed", [1, 2])
def test_sharp_ramp_recovers_mc_and_b(n, seed):
    """Steep incompleteness ramp (0.3): MAXC (no correction), GFT95, MBS and b all recover."""
    mags = gr_catalog(n, 0.3, seed)
    res = analyze_magnitudes(mags, cfg=CompletenessConfig(maxc_correction=0.0, n_bootstrap=100))
    assert res.estimable, res.reason
    for method in ("maxc", "gft95", "mbs"):
        assert abs(res.mc[method].mc - TRUE_MC) <= 0.1 + 1e-9, (method, res.mc[method])
    # GFT at 90 % accepts an Mc where the fit is still visibly imperfect: it is earlier.
    assert res.mc["gft90"].mc <= res.mc["gft95"].mc
    assert abs(res.b - TRUE_B) <= 0.05, res.b
    at_truth = res.b_by_cutoff["mc"].tolist().index(TRUE_MC)
    assert abs(res.b_by_cutoff["b"][at_truth] - TRUE_B) <= 0.05
    # Shi–Bolt sigma ~ b / sqrt(N) for a pure exponential sample.
    n_above = res.b_by_cutoff["n"][at_truth]
    assert res.b_by_cutoff["b_std"][at_truth] == pytest.approx(TRUE_B / math.sqrt(n_above), rel=0.2)
    assert res.b_ci_low <= res.b <= res.b_ci_high


@pytest.mark.parametrize("seed", [1, 2])
def test_gft_on_counts_per_bin(seed):
    """The stricter per-bin GFT: both levels within 0.1 of the truth on 20,000 events."""
    mags = gr_catalog(20000, 0.3, seed)
    cfg = CompletenessConfig(gft_counts="incremental", n_bootstrap=0)
    res = analyze_magnitudes(mags, cfg=cfg)
    for method in ("gft90", "gft95"):
        assert abs(res.mc[method].mc - TRUE_MC) <= 0.1 + 1e-9, (method, res.mc[method])
    assert abs(res.b - TRUE_B) <= 0.05


@pytest.mark.parametrize("n", [2000, 20000])
def test_gradual_ramp_maxc_needs_its_correction(n):
    """A gradual ramp (0.65) puts the FMD peak ~0.2 below Mc: MAXC+0.2 and MBS recover Mc."""
    mags = gr_catalog(n, 0.65, seed=3)
    res = analyze_magnitudes(mags, cfg=CompletenessConfig(maxc_correction=0.2, n_bootstrap=100))
    assert abs(res.mc["maxc"].mc - TRUE_MC) <= 0.1 + 1e-9, res.mc["maxc"]
    assert abs(res.mc["mbs"].mc - TRUE_MC) <= 0.1 + 1e-9, res.mc["mbs"]
    mbs_b, _, _ = b_value(mags, res.mc["mbs"].mc, DELTA_M)
    assert abs(mbs_b - TRUE_B) <= 0.05
    maxc = res.mc["maxc"]
    assert maxc.ci_low <= maxc.mc <= maxc.ci_high


def test_bootstrap_is_seeded_and_intervals_cover():
    mags = gr_catalog(3000, 0.3, seed=5)
    cfg = CompletenessConfig(n_bootstrap=200, seed=11)
    a, b = analyze_magnitudes(mags, cfg=cfg), analyze_magnitudes(mags, cfg=cfg)
    assert a.to_dict() == b.to_dict()
    for est in a.mc.values():
        assert est.ci_low <= est.ci_high
        assert 0.0 < est.bootstrap_found_fraction <= 1.0
    assert a.b_ci_low < a.b < a.b_ci_high
    assert a.b_ci_high - a.b_ci_low == pytest.approx(2 * 1.96 * a.b_std, rel=0.5)


def test_a_value_matches_count_above_mc():
    mags = gr_catalog(5000, 0.3, seed=4)
    res = analyze_magnitudes(mags, cfg=CompletenessConfig(n_bootstrap=0))
    assert 10 ** (res.a - res.b * res.mc_selected) == pytest.approx(res.n_above_mc)
    n_binned = int((bin_magnitudes(mags, DELTA_M) >= res.mc_selected - 1e-9).sum())
    assert res.n_above_mc == n_binned


def test_fmd_counts():
    bins, inc, cum = fmd(np.array([1.04, 1.06, 1.1, 1.3, np.nan]), 0.1)
    assert bins.tolist() == [1.0, 1.1, 1.2, 1.3]
    assert inc.tolist() == [1, 2, 0, 1]
    assert cum.tolist() == [4, 3, 1, 1]


def test_a_single_event_is_counted_in_the_singular():
    """`eqcat mc` on a one-event catalog said "1 valid magnitudes"."""
    res = analyze_magnitudes([1.2])
    assert res.reason == (
        "not estimable: 1 valid magnitude (fewer than min_events=50; 0 NaN excluded)"
    )


def test_too_few_events_is_not_estimable_and_nan_counted():
    mags = np.concatenate([gr_catalog(40, 0.3, seed=6), [np.nan] * 7])
    res = analyze_magnitudes(mags)
    assert not res.estimable
    assert res.n_nan == 7 and res.n_valid == 40 and res.n_input == 47
    assert res.reason.startswith("not estimable: 40 valid magnitudes (fewer than min_events")
    out = res.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["b"] is None


def test_single_magnitude_value_is_not_estimable():
    res = analyze_magnitudes(np.full(200, 2.0))
    assert not res.estimable and "bin" in res.reason
    assert res.mc["maxc"].mc == pytest.approx(2.2)


def test_nan_magnitudes_excluded_not_fatal():
    mags = gr_catalog(3000, 0.3, seed=7)
    with_nan = mags.copy()
    with_nan[::10] = np.nan
    res = analyze_magnitudes(with_nan, cfg=CompletenessConfig(n_bootstrap=20))
    assert res.estimable
    assert res.n_nan == 300 and res.n_valid == 2700


def test_time_windows_show_early_incompleteness():
    """Mc(t): early events are missing small magnitudes, later ones are complete."""
    rng = np.random.default_rng(8)
    early = gr_catalog(2000, 0.3, seed=9) + 1.0  # complete only above ~2.0
    late = gr_catalog(2000, 0.3, seed=10)
    mags = np.concatenate([early, late])
    start = pd.Timestamp("2000-10-06", tz="UTC")
    times = start + pd.to_timedelta(np.sort(rng.uniform(0, 40, mags.size)), unit="D")
    cfg = CompletenessConfig(window_events=500, window_step=500, n_bootstrap=0)
    res = analyze_magnitudes(mags, times, cfg)
    windows = res.time_windows
    assert len(windows) == 8
    assert windows[0]["mc"] >= 1.8 and windows[-1]["mc"] <= 1.1
    assert all(abs(w["b"] - TRUE_B) < 0.25 for w in windows)
    json.dumps(res.to_dict(), allow_nan=False)


def test_agrees_with_seismostats():
    """Same catalog through seismostats (SED): MAXC, MBS, b and Shi–Bolt sigma agree."""
    analysis = pytest.importorskip("seismostats.analysis")
    from seismostats.utils import bin_to_precision

    mags = gr_catalog(5000, 0.65, seed=7)
    binned = bin_to_precision(mags, DELTA_M)
    res = analyze_magnitudes(mags, cfg=CompletenessConfig(n_bootstrap=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss_maxc, _ = analysis.estimate_mc_maxc(binned, DELTA_M, correction_factor=0.2)
        ss_mbs, _ = analysis.estimate_mc_b_stability(
            binned, DELTA_M, b_method=analysis.UtsuBValueEstimator
        )
        above = binned[binned >= ss_mbs - DELTA_M / 2]
        ss_b, ss_std = analysis.estimate_b(
            above, ss_mbs, DELTA_M, method=analysis.UtsuBValueEstimator, return_std=True
        )
        np.random.seed(0)
        ss_ks, _ = analysis.estimate_mc_ks(binned, DELTA_M, n=500)
    assert res.mc["maxc"].mc == pytest.approx(ss_maxc, abs=1e-9)
    assert res.mc["mbs"].mc == pytest.approx(ss_mbs, abs=1e-9)
    b, std, _ = b_value(mags, ss_mbs, DELTA_M)
    assert b == pytest.approx(ss_b, rel=1e-9)
    assert std == pytest.approx(ss_std, rel=1e-6)
    # seismostats' Kolmogorov–Smirnov Mc and our GFT95 are different tests of the same fit.
    assert abs(ss_ks - res.mc["gft95"].mc) <= 0.2 + 1e-9


def test_too_many_bins_is_one_input_error_not_a_memory_blow_up():
    """A bin width far below the magnitudes' precision, or one placeholder magnitude, would
    ask GFT for (K, K) arrays per bootstrap histogram (terabytes): refused, range named."""
    mags = gr_catalog(300, 0.3, seed=5)
    with pytest.raises(ValueError, match="greater than or equal to 0.01"):
        CompletenessConfig(delta_m=0.0001)
    wide = np.append(mags, [-5.0, 8.0])
    with pytest.raises(EqcatInputError, match=r"1\.3e\+03 bins of delta_m=0\.01, more than 1000"):
        analyze_magnitudes(wide, cfg=CompletenessConfig(delta_m=0.01))
    with pytest.raises(EqcatInputError, match=r"magnitudes span -1e\+06 to .*placeholder"):
        analyze_magnitudes(np.append(mags, -1e6))


def test_gft_residuals_in_blocks_equal_the_whole_stack(monkeypatch):
    """Bootstrap stacks are done in blocks (bounded memory) with the same R values."""
    mags = bin_magnitudes(gr_catalog(500, 0.3, seed=6), DELTA_M)
    bins, counts, _ = fmd(mags, DELTA_M)
    rng = np.random.default_rng(0)
    stack = rng.multinomial(counts.sum(), counts / counts.sum(), size=7)
    stats = cutoff_stats(bins, stack, DELTA_M, 25)
    whole = gft_residuals(bins, stack, stats, DELTA_M)
    monkeypatch.setattr(completeness, "GFT_BLOCK_ELEMENTS", 2 * bins.size**2)
    blocked = gft_residuals(bins, stack, stats, DELTA_M)
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(blocked))
    np.testing.assert_allclose(whole[~np.isnan(whole)], blocked[~np.isnan(blocked)])
