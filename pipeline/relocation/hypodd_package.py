"""Running the ``hypodd`` Python package as HypoDD 2 runs: vectorised, in REAL*4 arithmetic.

``hypodd`` 0.2.1 weights the differential times in a Python loop over every datum and,
inside it, over every air-quake event of the iteration: O(n_dt × n_airquakes). On the full
Tottori replica (1.96 M differential times, 797 air quakes after the first iteration) that
one step had weighted 579 k data after 16 min (~52 min projected for one iteration), where
the whole 2-day relocation took 13 min. :func:`weighting` computes HypoDD 2's weights
(``weighting.f``: a priori weights from the data quality, zero weight for data of air-quake
events, distance and residual re-weighting with bi-weight functions, thresholds from the
median absolute deviation) with array operations.

:func:`solve_lsqr` replaces the package's LSQR step (``hypodd.solvers.lsqr.solve_lsqr``) by
HypoDD 2's ``lsfit_lsqr.f``. Error scaling: HypoDD's LSQR returns
``se = rnorm / sqrt(m) * sqrt(var)``, ``var`` being LSQR's running estimate of
``diag((A'A + damp^2 I)^-1)`` and ``m`` the number of rows of the damped problem, and
``lsfit_lsqr.f`` reports ``2.7955 * sqrt(se / colnorm) * sqrt(resvar)`` (m, ms). The package
drops the ``rnorm / sqrt(m)`` factor and takes ``sqrt(var) / colnorm``: its EX/EY/EZ on the
official example 2 were 0.17-0.46x the reference's (median).

Precision. HypoDD's result depends on its rounding: near a layer top the direct ray leaves
almost horizontally, its take-off angle comes from a regula-falsi search that stops at 20 m
misfit, and a change in the last bit of a distance can change the number of search steps and
with it dT/dz (:mod:`pipeline.relocation.raytrace32`). On example 2 the package, and the
Fortran itself built with fused multiply-add (gfortran -O2 -march=native -mfma), end 33-35
shallow events 10-60 m below the reference; the plain build (gfortran -O) within 6 m. This
module therefore does in float32, in the Fortran's order, what the Fortran does in REAL*4:

* travel times and partials (``partials.f`` and the ray tracer, :mod:`raytrace32`; the
  package traces in float64), the residuals (``dtres.f``), the differential times as read
  (``getdata.f``: ``T1 - T2``, ``DT - OTC``);
* the weights, with -9 in hypoDD.inp read as "not set" (the package applied a -9 km distance
  cut-off, which scaled every weight up);
* LSQR (Paige & Saunders 1982) with ``snrm2``'s in-order sums, stopped as HypoDD stops it
  (``atol = btol = 1e-6``), summing the sparse products in HypoDD's order;
* the package's own updates through NumPy's NEP 50 promotion (float32 stays float32);
  the starting z below the centroid (``trialsrc.f``), sources moved off layer tops for good
  (``partials.f`` changes its caller's depths) and the local coordinates (``setorg.f``'s
  REAL*4 flattening, ``dist.f``'s and ``redist.f``'s rounding).

Checked against the Fortran (gfortran -O, instrumented) on example 2: the hypocentres and
shifts of all 25 iterations are bit-identical, and so are the final hypocentres in
``hypoDD.reloc`` (one error estimate of 308 x 3 differs by 0.1 m: the package's ``resstat``
in float64); like the Fortran's, all are within 6 m of the reference ``hypoDD.reloc``
(README, "HypoDD example 2"; ``tests/test_relocation.py``).

The package writes no source-parameter file; :func:`write_source_parameters` writes it
(``hypoDD.src`` when hypoDD.inp names one) in HypoDD's layout.

Run as ``python -m pipeline.relocation.hypodd_package hypoDD.inp`` in the HypoDD folder.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.relocation import raytrace32

#: HypoDD data type codes (``dt_idx``): cross-correlation P/S, catalogue P/S.
CC_P, CC_S, CT_P, CT_S = 1, 2, 3, 4

#: MAD of a normal distribution in units of its standard deviation.
MAD_TO_SIGMA = 0.67449

f32 = np.float32

#: hypoDD.inp's "not set" for cut-offs and weights, and what ``getinp.f`` turns it into.
NOT_SET_INPUT, NOT_SET = -9, -999


def _mad_scaled(residuals: np.ndarray) -> np.float32:
    """Median absolute deviation of ``residuals`` (s) / 0.67449, in float32 as HypoDD has it."""
    residuals = residuals.astype(np.float32)
    median = np.median(residuals)
    return np.median(np.abs(residuals - median)) / f32(MAD_TO_SIGMA)


def _biweight(x: np.ndarray, power: int) -> np.ndarray:
    """HypoDD's taper ``(1 - x**p)**p`` in float32 (negative beyond x = 1 for odd p).

    The powers are multiplied as gfortran expands them: ``x**3 = x*x*x``,
    ``x**5 = (x*x*x) * (x*x)``.
    """

    def power_of(y):
        square = y * y
        return square * y if power == 3 else (square * y) * square

    return power_of(f32(1) - power_of(x))


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
    """Set the weights ``dt_wt[:ndt]`` in place; same signature as the package's.

    HypoDD 2's ``weighting.f`` with its REAL*4 arithmetic: the parameters are rounded to
    float32 as the Fortran reads them, and every product is rounded as there. A cut-off or
    weight of -9 in hypoDD.inp means "not set" (-999), as ``getinp.f`` reads it; the package
    took -9 literally, which multiplied every weight by ``(1 + (d / 9 km)**p)**p``.

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
    maxres_cross, maxres_net, maxdcc, maxdct, wt_ccp, wt_ccs, wt_ctp, wt_cts = (
        NOT_SET if value == NOT_SET_INPUT else value
        for value in (maxres_cross, maxres_net, maxdcc, maxdct, wt_ccp, wt_ccs, wt_ctp, wt_cts)
    )
    kind = dt_idx[:ndt]
    qual = dt_qual[:ndt].astype(np.float32)
    weights = dt_wt[:ndt].astype(np.float32)
    for code, apriori in ((CC_P, wt_ccp), (CC_S, wt_ccs), (CT_P, wt_ctp), (CT_S, wt_cts)):
        chosen = kind == code
        weights[chosen] = f32(apriori) * qual[chosen]
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
    maxres_cc, maxres_ct = f32(maxres_cross), f32(maxres_net)
    if idata == 3:
        if maxres_cross >= 1:
            maxres_cc = _mad_scaled(res[is_cc]) * f32(maxres_cross)
        if maxres_net >= 1:
            maxres_ct = _mad_scaled(res[~is_cc]) * f32(maxres_net)
    elif idata == 1 and maxres_cross >= 1:
        maxres_cc = _mad_scaled(res) * f32(maxres_cross)
    elif idata == 2 and maxres_net >= 1:
        maxres_ct = _mad_scaled(res) * f32(maxres_net)

    offs = dt_offs[:ndt].astype(np.float32)
    abs_res = np.abs(res).astype(np.float32)
    for part, maxd, power, maxres, limit in (
        (is_cc, maxdcc, 5, maxres_cross, maxres_cc),
        (~is_cc, maxdct, 3, maxres_net, maxres_ct),
    ):
        if maxd != -999:
            weights[part] = weights[part] * _biweight(offs[part] / (f32(maxd) * f32(1000)), power)
        if maxres > 0:
            scaled = part & (weights > f32(0.000001))
            weights[scaled] = weights[scaled] * _biweight(abs_res[scaled] / f32(limit), 3)
    dt_wt[:ndt] = weights
    return int(bool((weights < f32(minwght)).any()))


#: HypoDD's 95 % confidence factor for LSQR errors (``lsfit_lsqr.f``).
LSQR_ERROR_FACTOR = 2.7955

#: Rows ``lsfit_lsqr.f`` adds per ``ev_fix`` code: (parameter offset x=0 y=1 z=2 t=3, weight).
FIX_ROWS = {
    1: ((2, 100.0),),
    2: ((2, 100.0), (3, 100.0)),
    3: ((0, 10.0), (1, 10.0), (2, 10.0)),
    4: ((0, 100.0), (1, 100.0), (2, 100.0), (3, 100.0)),
    5: ((3, 1000.0),),
    6: ((0, 100.0), (1, 100.0)),
}


@dataclass
class SparseSystem:
    """A sparse matrix as HypoDD's ``aprod`` stores it: non-zero elements in a fixed order.

    Attributes:
        rows, cols: row and column of each non-zero element, shape (nnz,).
        values: the elements, float32, shape (nnz,).
        shape: (m, n).
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]

    def matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        """``y += A x`` in float32, summed element by element in storage order (in place)."""
        np.add.at(y, self.rows, self.values * x[self.cols])

    def rmatvec(self, y: np.ndarray, x: np.ndarray) -> None:
        """``x += A' y`` in float32, summed element by element in storage order (in place)."""
        np.add.at(x, self.cols, self.values * y[self.rows])


@dataclass
class LsqrResult:
    """Output of :func:`lsqr_float32`; the names are those of Paige & Saunders (1982)."""

    x: np.ndarray  # solution, float32, shape (n,)
    se: np.ndarray  # standard errors rnorm * sqrt(sigma_ii / t), float32, shape (n,)
    istop: int
    itn: int
    anorm: float
    acond: float
    rnorm: float
    arnorm: float
    xnorm: float


def _running_sum(start: np.float32, terms: np.ndarray) -> np.float32:
    """``start + terms[0] + terms[1] + ...`` added one at a time in float32, as a loop does."""
    return np.cumsum(np.concatenate(([start], terms)), dtype=np.float32)[-1]


def _normalise(vector: np.ndarray) -> np.float32:
    """Scale ``vector`` to unit length in place; return its former norm (float32).

    HypoDD's ``normlz``: the norm by its BLAS ``snrm2``, which sums the squares in order
    (its rescaling branches only act on elements below 4.4e-16 or above 1.3e19 / n, which
    the scaled system does not hold), then ``sscal`` by ``1 / norm``.
    """
    beta = np.sqrt(_running_sum(f32(0), vector * vector))
    if beta > 0:
        vector *= f32(1) / beta
    return beta


def lsqr_float32(
    a: SparseSystem,
    b: np.ndarray,
    damp: float,
    atol: float = 1e-6,
    btol: float = 1e-6,
    conlim: float = 1e5,
    itnlim: int | None = None,
) -> LsqrResult:
    """Damped least squares ``min |A x - b|^2 + damp^2 |x|^2`` by LSQR, in single precision.

    The algorithm of Paige & Saunders (1982, ACM TOMS 8(2), 195-209) with its stopping rules
    (one consecutive pass, ``nconv = 1``) and standard-error estimates, all vectors and
    scalars in float32 as HypoDD 2 runs it.

    Args:
        a: the matrix, shape (m, n).
        b: right-hand side, shape (m,).
        damp: damping factor.
        atol, btol, conlim: tolerances; ``itnlim`` defaults to ``4 n`` steps.
    """
    m, n = a.shape
    itnlim = 4 * n if itnlim is None else itnlim
    one, zero = f32(1), f32(0)
    damp = f32(damp)
    dampsq = damp * damp
    atol, btol = f32(atol), f32(btol)
    ctol = one / f32(conlim) if conlim > 0 else zero
    u = np.asarray(b, dtype=np.float32).copy()
    x = np.zeros(n, np.float32)
    se = np.zeros(n, np.float32)
    v = np.zeros(n, np.float32)
    beta = _normalise(u)
    a.rmatvec(u, v)
    alfa = _normalise(v)
    w = v.copy()
    rhobar, phibar, bnorm, rnorm = alfa, beta, beta, beta
    arnorm = alfa * beta
    anorm = acond = bbnorm = ddnorm = res2 = xnorm = xxnorm = z = sn2 = zero
    cs2 = -one
    itn = istop = 0
    while arnorm > 0:
        itn += 1
        u *= -alfa
        a.matvec(v, u)
        beta = _normalise(u)
        bbnorm = bbnorm + alfa * alfa + beta * beta + dampsq
        v *= -beta
        a.rmatvec(u, v)
        alfa = _normalise(v)
        # a plane rotation eliminates the damping parameter, a second one the sub-diagonal
        rhbar2 = rhobar * rhobar + dampsq
        rhbar1 = np.sqrt(rhbar2)
        cs1, sn1 = rhobar / rhbar1, damp / rhbar1
        psi = sn1 * phibar
        phibar = cs1 * phibar
        rho = np.sqrt(rhbar2 + beta * beta)
        cs, sn = rhbar1 / rho, beta / rho
        theta = sn * alfa
        rhobar = -cs * alfa
        phi = cs * phibar
        phibar = sn * phibar
        tau = sn * phi
        # update x, w and the standard-error sums
        t1, t2, t3 = phi / rho, -theta / rho, one / rho
        step = (t3 * w) ** 2
        x += t1 * w
        w = t2 * w + v
        se += step
        ddnorm = _running_sum(ddnorm, step)
        # a rotation on the right estimates norm(x)
        delta = sn2 * rho
        gambar = -cs2 * rho
        rhs = phi - delta * z
        zbar = rhs / gambar
        xnorm = np.sqrt(xxnorm + zbar * zbar)
        gamma = np.sqrt(gambar * gambar + theta * theta)
        cs2, sn2 = gambar / gamma, theta / gamma
        z = rhs / gamma
        xxnorm = xxnorm + z * z
        # convergence tests
        anorm = np.sqrt(bbnorm)
        acond = anorm * np.sqrt(ddnorm)
        res2 = res2 + psi * psi
        rnorm = np.sqrt(phibar * phibar + res2)
        arnorm = alfa * abs(tau)
        if rnorm == 0 or anorm == 0:
            istop = 1
            break
        test1 = rnorm / bnorm
        test2 = arnorm / (anorm * rnorm)
        test3 = one / acond
        t1 = test1 / (one + anorm * xnorm / bnorm)
        rtol = btol + atol * anorm * xnorm / bnorm
        for stop, met in (
            (7, itn >= itnlim),
            (6, one + test3 <= one),
            (5, one + test2 <= one),
            (4, one + t1 <= one),
            (3, test3 <= ctol),
            (2, test2 <= atol),
            (1, test1 <= rtol),
        ):
            if met:
                istop = stop
        if istop:
            break
    dof = f32(m) if dampsq > 0 else f32(m - n if m > n else 1)
    se = (rnorm / np.sqrt(dof)) * np.sqrt(se)
    return LsqrResult(
        x, se, istop, itn, float(anorm), float(acond), float(rnorm), float(arnorm), float(xnorm)
    )


def _design(ndt, nev, nsrc, ev_fix, dt_wt, dt_ista, dt_ic1, dt_ic2, dt_idx, partials):
    """Weighted design matrix, its elements in ``lsfit_lsqr.f``'s order.

    Returns:
        The matrix: 8 elements per datum (float32), then the ``ev_fix`` constraint rows.
    """
    tmp_xp, tmp_yp, tmp_zp, tmp_xs, tmp_ys, tmp_zs = partials
    wt = dt_wt[:ndt].astype(np.float32)
    ista, ic1, ic2 = dt_ista[:ndt], dt_ic1[:ndt], dt_ic2[:ndt]
    k1 = np.zeros(ndt, np.intp) if nsrc == 1 else ic1
    k2 = np.zeros(ndt, np.intp) if nsrc == 1 else ic2
    is_s = np.isin(dt_idx[:ndt], (CC_S, CT_S))

    def pick(p_table, s_table, k):
        return np.where(is_s, s_table[ista, k], p_table[ista, k]).astype(np.float32)

    ones = np.ones(ndt, np.float32)
    raw = [
        pick(tmp_xp, tmp_xs, k1),
        pick(tmp_yp, tmp_ys, k1),
        pick(tmp_zp, tmp_zs, k1),
        ones,
        -pick(tmp_xp, tmp_xs, k2),
        -pick(tmp_yp, tmp_ys, k2),
        -pick(tmp_zp, tmp_zs, k2),
        -ones,
    ]
    unweighted = np.concatenate(raw)
    values = [unweighted * np.tile(wt, 8)]
    rows = [np.tile(np.arange(ndt), 8)]
    cols = [np.concatenate([4 * ic1 + j for j in range(4)] + [4 * ic2 + j for j in range(4)])]
    extra = [
        (4 * i + off, wgt) for i in range(nev) for off, wgt in FIX_ROWS.get(int(ev_fix[i]), ())
    ]
    if extra:
        rows.append(ndt + np.arange(len(extra)))
        cols.append(np.array([c for c, _ in extra]))
        values.append(np.array([wgt for _, wgt in extra], np.float32))
    matrix = SparseSystem(
        np.concatenate(rows),
        np.concatenate(cols).astype(np.intp),
        np.concatenate(values).astype(np.float32),
        (ndt + len(extra), 4 * nev),
    )
    return matrix


def solve_lsqr(
    ndt, nev, nsrc, damp, idata, ev_cusp, ev_fix, src_cusp,
    dt_res, dt_wt, dt_ista, dt_ic1, dt_ic2, dt_idx,
    tmp_xp, tmp_yp, tmp_zp, tmp_xs, tmp_ys, tmp_zs, iter_num=1,
):  # fmt: skip
    """One LSQR step of HypoDD (``lsfit_lsqr.f``); same signature and result as the package's.

    Builds the weighted design matrix (8 non-zero elements per differential time, plus
    ``ev_fix`` constraint rows), scales each column to unit RMS over the ``ndt`` data rows,
    solves with :func:`lsqr_float32`, updates ``dt_res[:ndt]`` (s) in place with the
    unweighted matrix and returns the shifts (m, ms) and 95 % errors (m, ms) per event.
    """
    from hypodd.solvers.stats import resstat

    partials = (tmp_xp, tmp_yp, tmp_zp, tmp_xs, tmp_ys, tmp_zs)
    matrix = _design(ndt, nev, nsrc, ev_fix, dt_wt, dt_ista, dt_ic1, dt_ic2, dt_idx, partials)
    wt = dt_wt[:ndt].astype(np.float32)
    rhs = np.zeros(matrix.shape[0], np.float32)
    rhs[:ndt] = dt_res[:ndt].astype(np.float32) * f32(1000) * wt
    colsq = np.zeros(4 * nev, np.float32)
    np.add.at(colsq, matrix.cols, matrix.values * matrix.values)
    norm = np.sqrt(colsq / f32(ndt))  # lsfit_lsqr.f divides by the data rows only
    norm[norm == 0] = 1
    matrix.values = matrix.values / norm[matrix.cols]
    result = lsqr_float32(matrix, rhs, damp, itnlim=100 * 4 * nev)
    logging.getLogger("hypoDD").debug(
        "  LSQR (float32): istop=%d itn=%d anorm=%.1f acond=%.1f arnorm=%.1f xnorm=%.1f",
        result.istop, result.itn, result.anorm, result.acond, result.arnorm, result.xnorm,
    )  # fmt: skip
    x = result.x / norm
    se = result.se / norm

    # residuals with the matrix unscaled again as lsfit_lsqr.f does it (elements times 1 / wt
    # times the column norm, in float32); data of zero weight have no elements and keep theirs
    data = slice(0, 8 * ndt)
    inverse = np.ones(ndt, np.float32)
    np.divide(f32(1), wt, out=inverse, where=wt != 0)
    unscaled = (matrix.values[data] * np.tile(inverse, 8)) * norm[matrix.cols[data]]
    residual = -dt_res[:ndt].astype(np.float32) * f32(1000)
    np.add.at(residual, matrix.rows[data], unscaled * x[matrix.cols[data]])
    dt_res[:ndt] = -residual / f32(1000)
    rms_cc, rms_ct, rms_cc0, rms_ct0, resvar = resstat(ndt, nev, dt_res, dt_wt, dt_idx, idata)

    spread = np.sqrt(f32(abs(resvar)))
    errors = (np.sqrt(np.abs(se)) * spread * f32(LSQR_ERROR_FACTOR)).astype(np.float64)
    shifts = -x  # float32, as HypoDD adds them to its REAL*4 source parameters
    return {
        "src_dx": shifts[0::4],
        "src_dy": shifts[1::4],
        "src_dz": shifts[2::4],
        "src_dt": shifts[3::4],
        "src_ex": errors[0::4],
        "src_ey": errors[1::4],
        "src_ez": errors[2::4],
        "src_et": errors[3::4],
        "src_cusp": ev_cusp[:nev].copy(),
        "rms_cc": rms_cc,
        "rms_ct": rms_ct,
        "rms_cc0": rms_cc0,
        "rms_ct0": rms_ct0,
        "acond": result.acond,
    }


#: Fortran layout of one ``hypoDD.src`` line (``partials.f``).
SRC_LINE = (
    "{:9d} {:9.4f} {:9.4f} {:<7s} {:7.3f} {:9.4f} {:9.4f} {:9.4f}"
    "{:9.4f}{:9.4f}{:9.4f}{:9.4f}{:9.4f}{:9.4f}{:9.4f}{:9.4f}{:9.4f}\n"
)


def write_source_parameters(inp_path: str) -> bool:
    """Write the source-parameter file hypoDD.inp names (``hypoDD.src``); False if none.

    One line per relocated event and station that kept data in its cluster (``hypoDD.sta``;
    every station of the file when that is not written): event id, latitude, longitude,
    station, elevation (km), epicentral distance (km), azimuth (deg), take-off angles of P
    and S (deg from down), P and S travel times (s) and the slowness partials dT/dx, dT/dy,
    dT/dz of P then S (s/km), traced as during the iterations (:func:`_traced_partials`) at
    the final locations (HypoDD writes them at the locations of the last iteration's start).
    """
    from hypodd.config import parse_inp
    from hypodd.io.readers import read_stations

    from pipeline.relocation.hypodd_formats import read_reloc, read_sta

    cfg = parse_inp(inp_path)
    if len(cfg.fn_srcpar.strip()) <= 1:
        return False
    stations = read_stations(cfg.fn_sta, imod=cfg.imod)
    relocated = Path(cfg.fn_reloc)
    has_events = relocated.is_file() and relocated.read_text().strip()
    reloc = read_reloc(relocated) if has_events else None
    used = read_sta(cfg.fn_stares) if has_events and len(cfg.fn_stares.strip()) > 1 else None
    model = cfg.vel_model
    with open(cfg.fn_srcpar, "w") as out:
        for cluster, events in reloc.groupby("cluster_id", sort=True) if has_events else ():
            out.writelines(_source_lines(events, cluster, stations, used, model, cfg.imod))
    return True


def _source_lines(events, cluster, stations, used, model, imod):
    """``hypoDD.src`` lines of one cluster (see :func:`write_source_parameters`)."""
    from hypodd.geodesy.delaz_vec import delaz_vec

    labels = list(stations["lab"])
    keep = list(range(len(labels)))
    if used is not None:
        rows = used[used.cluster_id == cluster]
        data = rows[["n_cc_p", "n_cc_s", "n_ct_p", "n_ct_s"]].sum(axis=1) > 0
        wanted = set(rows.station[data])
        keep = [i for i, lab in enumerate(labels) if lab in wanted]
    lat, lon = events.latitude.to_numpy(float), events.longitude.to_numpy(float)
    depth = raytrace32.off_layer_tops(events.depth_km.to_numpy(np.float32), model.top)
    sta_lat = stations["lat"][keep].astype(float)
    sta_lon = stations["lon"][keep].astype(float)
    sta_elv = stations["elv"][keep].astype(float)
    ttp, tts, xp, yp, zp, xs, ys, zs = _traced_partials(
        len(events), lat, lon, depth, len(keep), sta_lat, sta_lon, sta_elv,
        model.nl, model.ratio, model.v, model.top, imod,
    )  # fmt: skip
    dist, az = delaz_vec(lat, lon, sta_lat, sta_lon)
    top = np.asarray(model.top, np.float32)
    layer = np.array([raytrace32.source_layer(d, top) for d in depth], int)
    vp = np.asarray(model.v, float)[layer]
    vs = vp / np.asarray(model.ratio, float)[layer]
    ainp = np.degrees(np.arccos(np.clip(zp * vp, -1, 1)))
    ains = np.degrees(np.arccos(np.clip(zs * vs, -1, 1)))
    values = (ainp, ains, ttp, tts, xp, yp, zp, xs, ys, zs)
    for i, k in enumerate(keep):
        for j, cusp in enumerate(events.hypodd_id):
            yield SRC_LINE.format(
                int(cusp), lat[j], lon[j], labels[k], sta_elv[i], dist[i, j], az[i, j],
                *(float(a[i, j]) for a in values),
            )  # fmt: skip


def compute_partials(
    nsrc, src_lat, src_lon, src_dep, nsta, sta_lat, sta_lon, sta_elv,
    mod_nl, mod_ratio, mod_v, mod_top, imod=1,
):  # fmt: skip
    """Travel times and partials as HypoDD computes them; the package's signature and result.

    Layered models (``imod`` 0 and 1) go through :mod:`pipeline.relocation.raytrace32`
    (single precision, the Fortran's order); other models through the package.
    """
    caller = _driver_locals()
    _start_depths_in_float32(caller)
    _separations_in_float32(caller)
    depth = src_dep
    if imod in (0, 1):
        depth = raytrace32.off_layer_tops(src_dep[:nsrc], mod_top[:mod_nl])
        _keep_nudged_depths(caller.get("src_dep"), src_dep[:nsrc], depth)
    return _traced_partials(
        nsrc, src_lat, src_lon, depth, nsta, sta_lat, sta_lon, sta_elv,
        mod_nl, mod_ratio, mod_v, mod_top, imod,
    )  # fmt: skip


def _traced_partials(
    nsrc, src_lat, src_lon, src_dep, nsta, sta_lat, sta_lon, sta_elv,
    mod_nl, mod_ratio, mod_v, mod_top, imod,
):  # fmt: skip
    """Layered models through :func:`raytrace32.partials`, the others through the package."""
    from hypodd.core.partials import compute_partials as package_partials

    if imod not in (0, 1):
        return package_partials(
            nsrc, src_lat, src_lon, src_dep, nsta, sta_lat, sta_lon, sta_elv,
            mod_nl, mod_ratio, mod_v, mod_top, imod=imod,
        )  # fmt: skip
    return raytrace32.partials(
        src_lat[:nsrc], src_lon[:nsrc], src_dep[:nsrc], sta_lat[:nsta], sta_lon[:nsta],
        sta_elv[:nsta], mod_v[:mod_nl], mod_ratio[:mod_nl], mod_top[:mod_nl],
    )  # fmt: skip


#: Data type codes of the phases in dt.cc and dt.ct.
PHASE_CODES = {"cc": {"P": CC_P, "S": CC_S}, "ct": {"P": CT_P, "S": CT_S}}


def read_differential_times(path: str, kind: str) -> dict:
    """dt.cc (``kind="cc"``) or dt.ct (``"ct"``) as the package's readers return it.

    The differential times are formed in float32 as ``getdata.f`` forms them: dt.cc
    ``DT - OTC`` and dt.ct ``T1 - T2`` of the REAL*4 values read (the package subtracts in
    float64). Pairs whose origin-time correction is -999 (none) are skipped, as there.
    Lines that are not a P or S datum are skipped.

    Returns:
        ``sta`` (list of str), ``dt`` and ``qual`` (float32), ``c1``, ``c2``, ``idx``
        (int32) and ``ndt``.
    """
    n_fields = 4 if kind == "cc" else 5
    codes = PHASE_CODES[kind]
    stations, first, second, quality, pairs, kinds = [], [], [], [], [], []
    pair, otc, skip = (0, 0), "0", False
    with open(path) as lines:
        for line in lines:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "#":
                pair = (int(parts[1]), int(parts[2]))
                otc = parts[3] if kind == "cc" and len(parts) > 3 else "0"
                skip = abs(float(otc) + 999) < 0.001
                continue
            if skip or len(parts) < n_fields or parts[n_fields - 1].upper() not in codes:
                continue
            stations.append(parts[0])
            first.append(parts[1])
            second.append(otc if kind == "cc" else parts[2])
            quality.append(parts[n_fields - 2])
            pairs.append(pair)
            kinds.append(codes[parts[n_fields - 1].upper()])
    ids = np.array(pairs, np.int32).reshape(-1, 2)
    return {
        "sta": stations,
        "dt": np.array(first, float).astype(np.float32) - np.array(second, float).astype(f32),
        "qual": np.array(quality, float).astype(np.float32),
        "c1": ids[:, 0].copy(),
        "c2": ids[:, 1].copy(),
        "idx": np.array(kinds, np.int32),
        "ndt": len(stations),
    }


def _driver_locals() -> dict:
    """The local variables of the package's iteration driver (``hypodd.hypoDD.run_hypoDD``).

    Its arrays are changed in place where HypoDD's subroutines change their arguments.
    """
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_name != "run_hypoDD":
        frame = frame.f_back
    if frame is None:
        raise RuntimeError("compute_partials must be called from hypodd's run_hypoDD")
    return frame.f_locals


def _start_depths_in_float32(caller: dict) -> None:
    """Set the package's starting z (m below the cluster centroid) as HypoDD computes them.

    ``trialsrc.f`` forms ``z = (depth - centroid depth) * 1000`` in REAL*4 from the REAL*4
    centroid; the package subtracts a float64 centroid. z enters the inter-event distances of
    the distance weighting. Done on a cluster's first iteration (``caller``: the package's
    ``run_hypoDD`` locals; changed in place), when it starts from the catalogue locations.
    """
    if caller.get("iter_") != 1 or caller["cfg"].istart != 2:
        return
    nev = caller["nev"]
    centroid = f32(caller["sdc0_dep"])
    start = (caller["ev_dep"][:nev].astype(np.float32) - centroid) * f32(1000)
    caller["src_z"][:nev] = start
    caller["src_z0"][:nev] = start


def _separations_in_float32(caller: dict) -> None:
    """Recompute the package's inter-event distances (m) of the data as HypoDD does.

    ``hypoDD.f`` sums the squared coordinate differences in REAL*4 (``x*x``) after each
    update; the package squares NumPy float32 scalars with ``**``, which rounds differently
    now and then. The distances enter the distance weighting of the next iteration.
    ``caller``: the package's ``run_hypoDD`` locals, changed in place after its first
    iteration.
    """
    if caller.get("iter_", 1) <= 1:
        return
    ndt = caller["ndt"]
    ic1, ic2 = caller["dt_ic1"][:ndt], caller["dt_ic2"][:ndt]
    dx, dy, dz = (caller[name][ic1] - caller[name][ic2] for name in ("src_x", "src_y", "src_z"))
    caller["dt_offs"][:ndt] = np.sqrt((dx * dx + dy * dy) + dz * dz)


def _keep_nudged_depths(caller_depths, passed: np.ndarray, nudged: np.ndarray) -> None:
    """Write the depths moved off layer tops back into the package's source depths.

    HypoDD's ``partials.f`` moves such sources up in its caller's array (the move persists
    into later iterations and the output); the package passes a copy. ``caller_depths`` is
    the package's float32 ``src_dep`` array, changed in place when it holds ``passed``.
    """
    moved = nudged != np.asarray(passed, np.float32)
    if not moved.any():
        return
    n = len(passed)
    if (
        not isinstance(caller_depths, np.ndarray)
        or caller_depths.dtype != np.float32
        or not np.array_equal(caller_depths[:n], np.asarray(passed, np.float32))
    ):
        raise RuntimeError("hypodd package changed: its src_dep is not the depths passed")
    caller_depths[:n] = nudged


def compute_residuals(ndt, nsrc, dt_dt, dt_idx, dt_ista, dt_ic1, dt_ic2, src_t, ttp, tts):
    """Differential-time residuals in float32 (dtres.f); the package's signature and result."""
    if nsrc == 1:
        return np.zeros(ndt, np.float32), np.asarray(dt_dt[:ndt], np.float32).copy()
    data = slice(0, ndt)
    return raytrace32.residuals(
        dt_dt[data], dt_idx[data], dt_ista[data], dt_ic1[data], dt_ic2[data], src_t, ttp, tts
    )


#: ``setorg.f``'s flattening 1 / 298.26 (WGS72), a REAL*4 literal there.
ELLIPTICITY = float(f32(298.26))


def ellipsoid_as_hypodd(sdc) -> None:
    """Set the package's coordinate-system constants as ``setorg.f`` computes them.

    ``sdc``: the package's ``SDC`` (changed in place). HypoDD assigns the flattening as the
    REAL*4 literal ``298.26`` to a double; the package uses the double 298.26, so its
    geocentric-latitude factor ``rlatc`` differs from 1e-10 on, enough to move a local x by
    a unit in the last place now and then.
    """
    rad, olat = float(sdc.rad), float(sdc.olat)
    phi = olat * rad / 60.0
    beta = phi - math.sin(phi * 2.0) / ELLIPTICITY
    rlatc = math.tan(beta) / math.tan(phi)
    lat1 = math.atan(rlatc * math.tan(olat * rad / 60.0))
    lat2 = math.atan(rlatc * math.tan(float(f32(sdc.olat) + f32(1)) * rad / 60.0))
    radius = float(sdc.rearth) * (1.0 - math.sin(lat1) ** 2 / ELLIPTICITY)
    delb = math.acos(math.sin(lat1) ** 2 + math.cos(rad / 60.0) * math.cos(lat1) ** 2)
    sdc.ellip, sdc.rlatc = np.float64(ELLIPTICITY), np.float64(rlatc)
    sdc.aa, sdc.bc = f32(radius * (lat2 - lat1)), f32(radius * delb)
    sdc.bb = f32(radius * delb / math.cos(lat1))


def latlon_to_xy(sdc, xlat: float, xlon: float) -> tuple[np.float32, np.float32]:
    """Local x, y (km, float32) of a latitude and longitude (deg): HypoDD's ``dist.f``.

    A replacement for the package's ``SDC.latlon_to_xy`` (``sdc``: its coordinate system):
    ``x = (x * bb) * cos(lat)`` multiplies the REAL*4 product by the double-precision cosine
    and rounds once, as there (the package rounds the cosine to float32 first).
    """
    minutes = 60.0
    q = f32(minutes * float(xlat) - float(sdc.olat))
    yp = q + f32(sdc.olat)
    rad, rlatc = float(sdc.rad), float(sdc.rlatc)
    lat1 = math.atan(rlatc * math.tan(rad * float(yp) / 60.0))
    lat2 = math.atan(rlatc * math.tan(rad * float(f32(sdc.olat)) / 60.0))
    lat3 = (lat2 + lat1) / 2.0
    xx = f32(minutes * float(xlon) - float(sdc.olon))
    q = q * f32(sdc.aa)
    xx = f32(float(xx * f32(sdc.bb)) * math.cos(lat3))
    if f32(sdc._rotate) != 0:
        cost, sint = f32(sdc.cost), f32(sdc.sint)
        q, xx = cost * q + sint * xx, cost * xx - sint * q
    return xx, q


def xy_to_latlon(sdc, xkm: float, ykm: float) -> tuple[np.float64, np.float64]:
    """Latitude and longitude (deg, float64) of local x, y (km): HypoDD's ``redist.f``.

    A replacement for the package's ``SDC.xy_to_latlon`` (``sdc``: its coordinate system):
    the longitude offset ``p = x / (bb * cos(lat))`` is divided in double precision and
    rounded once, as there (the package rounds ``cos(lat)`` and the product to float32
    first, which moved events by one unit in the last place now and then).
    """
    minutes = f32(60)
    xx, yy = f32(xkm), f32(ykm)
    y = yy * f32(sdc.cost) - xx * f32(sdc.sint)
    x = yy * f32(sdc.sint) + xx * f32(sdc.cost)
    if abs(float(sdc.aa)) < 0.0000001:
        raise ZeroDivisionError(f"redist: aa={sdc.aa} -- division by zero")
    q = y / f32(sdc.aa)
    lat = int((q + f32(sdc.olat)) / minutes)
    lat_minutes = q + f32(sdc.olat) - minutes * f32(lat)
    yp = f32(float(minutes * f32(lat)) + float(lat_minutes))
    rad, rlatc = float(sdc.rad), float(sdc.rlatc)
    lat1 = math.atan(rlatc * math.tan(float(yp) * rad / 60.0))
    lat2 = math.atan(rlatc * math.tan(float(f32(sdc.olat)) * rad / 60.0))
    clat1 = math.cos((lat1 + lat2) / 2.0)
    if abs(float(f32(float(sdc.bb) * clat1))) < 0.000001:
        raise ZeroDivisionError(f"redist: bb={sdc.bb}, cos(lat)={clat1} -- division by zero")
    p = f32(float(x) / (float(f32(sdc.bb)) * clat1))
    lon = int((p + f32(sdc.olon)) / minutes)
    lon_minutes = p + f32(sdc.olon) - minutes * f32(lon)
    return (
        np.float64(lat) + np.float64(lat_minutes) / 60.0,
        np.float64(lon) + np.float64(lon_minutes) / 60.0,
    )


def main(argv: list[str]) -> None:
    """``python -m pipeline.relocation.hypodd_package hypoDD.inp``: the package's program."""
    import hypodd.hypoDD as program
    from hypodd.geodesy import coordinates

    if len(argv) != 2:
        raise SystemExit("usage: python -m pipeline.relocation.hypodd_package hypoDD.inp")
    # NumPy 2's promotion rule (NEP 50; opt-in on 1.24-1.26): a float32 scalar combined with a
    # Python float stays float32, as a REAL*4 with a literal in Fortran. The package's own
    # updates (e.g. ``src_dep[i] += src_dz[i] / 1000.0``) then round as HypoDD's do.
    if hasattr(np, "_set_promotion_state"):
        np._set_promotion_state("weak")
    program.weighting = weighting
    program.solve_lsqr = solve_lsqr
    program.compute_partials = compute_partials
    program.compute_residuals = compute_residuals
    package_setorg = coordinates.SDC.__init__

    def setorg(sdc, *args, **kwargs):
        package_setorg(sdc, *args, **kwargs)
        ellipsoid_as_hypodd(sdc)

    coordinates.SDC.__init__ = setorg
    coordinates.SDC.xy_to_latlon = xy_to_latlon
    coordinates.SDC.latlon_to_xy = latlon_to_xy
    program.read_cc = lambda path: read_differential_times(path, "cc")
    program.read_ct = lambda path: read_differential_times(path, "ct")
    program.run_hypoDD(argv[1])
    write_source_parameters(argv[1])


if __name__ == "__main__":
    main(sys.argv)
