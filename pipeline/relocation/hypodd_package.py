"""Running the ``hypodd`` Python package with its data weighting vectorised.

``hypodd`` 0.2.1 weights the differential times in a Python loop over every datum and,
inside it, over every air-quake event of the iteration: O(n_dt × n_airquakes). On the full
Tottori replica (1.96 M differential times, 797 air quakes after the first iteration) that
one step had weighted 579 k data after 16 min (~52 min projected for one iteration), where
the whole 2-day relocation took 13 min.
:func:`weighting` computes the same weights (HypoDD 2 ``weighting.f``: a priori weights from
the data quality, zero weight for data of air-quake events, distance and residual
re-weighting with bi-weight functions, thresholds from the median absolute deviation) with
array operations, rounding to float32 at the same points as the package so the weights are
identical; ``tests/test_relocation.py`` compares the two on random data.

Run as ``python -m pipeline.relocation.hypodd_package hypoDD.inp`` in the HypoDD folder.
"""

from __future__ import annotations

import sys

import numpy as np

#: HypoDD data type codes (``dt_idx``): cross-correlation P/S, catalogue P/S.
CC_P, CC_S, CT_P, CT_S = 1, 2, 3, 4

#: MAD of a normal distribution in units of its standard deviation.
MAD_TO_SIGMA = 0.67449


def _mad_scaled(residuals: np.ndarray) -> np.float64:
    """Median absolute deviation of ``residuals`` (s) / 0.67449, as HypoDD computes it."""
    median = np.median(residuals)
    return np.median(np.abs(residuals - median)) / MAD_TO_SIGMA


def _biweight(x: np.ndarray, power: int) -> np.ndarray:
    """HypoDD's taper ``(1 - x**p)**p`` (float64; negative beyond x = 1 for odd p)."""
    return (1.0 - x**power) ** power


def weighting(
    ndt: int,
    mbad_cusps: list[int],
    idata: int,
    maxres_cross: float,
    maxres_net: float,
    maxdcc: float,
    maxdct: float,
    minwght: float,
    wt_ccp: float,
    wt_ccs: float,
    wt_ctp: float,
    wt_cts: float,
    dt_c1: np.ndarray,
    dt_c2: np.ndarray,
    dt_idx: np.ndarray,
    dt_qual: np.ndarray,
    dt_res: np.ndarray,
    dt_offs: np.ndarray,
    dt_wt: np.ndarray,
) -> int:
    """Set the weights ``dt_wt[:ndt]`` in place; same signature and result as the package's.

    Args:
        ndt: number of differential times in use.
        mbad_cusps: event ids (cusps) of this iteration's air quakes; their data get weight 0.
        idata: 1 cross-correlation, 2 catalogue, 3 both.
        maxres_cross, maxres_net: residual cut-off (s), or a multiple of the MAD when >= 1;
            -999 for none.
        maxdcc, maxdct: inter-event distance cut-off (km), -999 for none.
        minwght: weights below this flag the data for removal.
        wt_ccp, wt_ccs, wt_ctp, wt_cts: a priori weights per data type.
        dt_c1, dt_c2: event ids of each pair, shape (>= ndt,).
        dt_idx: data type codes 1–4, shape (>= ndt,).
        dt_qual: data quality (a priori weight factor), shape (>= ndt,).
        dt_res: residuals (s), shape (>= ndt,).
        dt_offs: inter-event distances (m), shape (>= ndt,).
        dt_wt: weights, float32, shape (>= ndt,); written in place.

    Returns:
        1 when a weight fell below ``minwght`` (or, without re-weighting, when an air quake
        zeroed data), else 0.
    """
    kind = dt_idx[:ndt]
    qual = dt_qual[:ndt].astype(np.float64)
    weights = dt_wt[:ndt].astype(np.float64)
    for code, apriori in ((CC_P, wt_ccp), (CC_S, wt_ccs), (CT_P, wt_ctp), (CT_S, wt_cts)):
        chosen = kind == code
        weights[chosen] = apriori * qual[chosen]
    weights = weights.astype(np.float32)
    ineg = 0
    if mbad_cusps:
        bad = np.asarray(mbad_cusps)
        airquake = np.isin(dt_c1[:ndt], bad) | np.isin(dt_c2[:ndt], bad)
        weights[airquake] = 0.0
        ineg = int(airquake.any())
    dt_wt[:ndt] = weights

    reweight = ((idata in (1, 3)) and (maxres_cross != -999 or maxdcc != -999)) or (
        (idata in (2, 3)) and (maxres_net != -999 or maxdct != -999)
    )
    if not reweight:
        return ineg

    res = dt_res[:ndt]
    is_cc = kind <= CC_S
    maxres_cc, maxres_ct = maxres_cross, maxres_net
    if idata == 3:
        if maxres_cross >= 1:
            maxres_cc = _mad_scaled(res[is_cc]) * maxres_cross
        if maxres_net >= 1:
            maxres_ct = _mad_scaled(res[~is_cc]) * maxres_net
    elif idata == 1 and maxres_cross >= 1:
        maxres_cc = _mad_scaled(res) * maxres_cross
    elif idata == 2 and maxres_net >= 1:
        maxres_ct = _mad_scaled(res) * maxres_net

    offs = dt_offs[:ndt].astype(np.float64)
    abs_res = np.abs(res).astype(np.float64)
    for part, maxd, power, maxres, limit in (
        (is_cc, maxdcc, 5, maxres_cross, maxres_cc),
        (~is_cc, maxdct, 3, maxres_net, maxres_ct),
    ):
        if maxd != -999:
            taper = _biweight(offs[part] / (maxd * 1000), power)
            weights[part] = (weights[part].astype(np.float64) * taper).astype(np.float32)
        if maxres > 0:
            scaled = part & (weights > 0.000001)
            taper = _biweight(abs_res[scaled] / np.float64(limit), 3)
            weights[scaled] = (weights[scaled].astype(np.float64) * taper).astype(np.float32)
    dt_wt[:ndt] = weights
    return int(bool((weights < minwght).any()))


def main(argv: list[str]) -> None:
    """``python -m pipeline.relocation.hypodd_package hypoDD.inp``: the package's program."""
    import hypodd.hypoDD as program

    if len(argv) != 2:
        raise SystemExit("usage: python -m pipeline.relocation.hypodd_package hypoDD.inp")
    program.weighting = weighting
    program.run_hypoDD(argv[1])


if __name__ == "__main__":
    main(sys.argv)
