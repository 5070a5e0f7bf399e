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

:func:`solve_lsqr` replaces the package's LSQR step (``hypodd.solvers.lsqr.solve_lsqr``) by
HypoDD 2's ``lsfit_lsqr.f``:

* Error scaling. HypoDD's LSQR returns ``se = rnorm / sqrt(m) * sqrt(var)``, ``var`` being
  LSQR's running estimate of ``diag((A'A + damp^2 I)^-1)`` and ``m`` the number of rows of the
  damped problem, and ``lsfit_lsqr.f`` reports ``2.7955 * sqrt(se / colnorm) * sqrt(resvar)``
  (m, ms). The package drops the ``rnorm / sqrt(m)`` factor and takes ``sqrt(var) / colnorm``:
  its EX/EY/EZ on the official example 2 were 0.17-0.46x the reference's (median), ours are
  0.96-1.00x.
* Precision. HypoDD runs LSQR (Paige & Saunders 1982) in single precision and stops it early
  (``atol = btol = 1e-6``: ~30 steps for 1,232 unknowns); :func:`lsqr_float32` does the same,
  summing the sparse products in HypoDD's order of non-zero elements. (The package mixes
  float32 products with float64 vectors.)

On example 2 the depths of ~33 shallow events (3.5-4.6 km, near the layer tops at 3.6, 4.2
and 4.8 km) still end 10-60 m below the reference, with either LSQR. This is a rounding-level
bifurcation of HypoDD itself, not a defect of either implementation: the same Fortran source
compiled with fused multiply-add (gfortran -O2 -march=native -mfma) lands on the same deeper
depths (33 events > 10 m from the reference, within 14 m of ours), the plain -O build within
6 m of the reference. Close to a layer top the take-off angles of the direct ray are near
90 deg, so dT/dz there nearly vanishes and an event stays on whichever side of the top it first
reached.

The package writes no source-parameter file; :func:`write_source_parameters` writes it
(``hypoDD.src`` when hypoDD.inp names one) in HypoDD's layout.

Run as ``python -m pipeline.relocation.hypodd_package hypoDD.inp`` in the HypoDD folder.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

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

f32 = np.float32


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


def _normalise(vector: np.ndarray) -> np.float32:
    """Scale ``vector`` to unit length in place; return its former norm (float32)."""
    beta = f32(np.linalg.norm(vector))
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
        ddnorm = ddnorm + f32(step.sum(dtype=np.float32))
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
    """Weighted design matrix and its unweighted data rows, in ``lsfit_lsqr.f``'s order.

    Returns:
        (weighted matrix, unweighted elements of the 8 * ndt data entries (float32)).
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
    return matrix, unweighted


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
    matrix, unweighted = _design(
        ndt, nev, nsrc, ev_fix, dt_wt, dt_ista, dt_ic1, dt_ic2, dt_idx, partials
    )
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

    # residuals with the unweighted matrix; data of zero weight keep theirs, as in HypoDD
    data = slice(0, 8 * ndt)
    kept = np.tile(wt != 0, 8)
    residual = -dt_res[:ndt].astype(np.float32) * f32(1000)
    np.add.at(
        residual,
        matrix.rows[data][kept],
        unweighted[kept] * x[matrix.cols[data][kept]],
    )
    dt_res[:ndt] = -residual / f32(1000)
    rms_cc, rms_ct, rms_cc0, rms_ct0, resvar = resstat(ndt, nev, dt_res, dt_wt, dt_idx, idata)

    errors = np.sqrt(np.abs(se).astype(np.float64)) * np.sqrt(abs(resvar)) * LSQR_ERROR_FACTOR
    shifts = -x.astype(np.float64)
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
    dT/dz of P then S (s/km), computed by the package's ray tracer at the final locations
    (HypoDD writes them at the locations of the last iteration's start).
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
    from hypodd.core.partials import compute_partials
    from hypodd.geodesy.delaz_vec import delaz_vec

    labels = list(stations["lab"])
    keep = list(range(len(labels)))
    if used is not None:
        rows = used[used.cluster_id == cluster]
        data = rows[["n_cc_p", "n_cc_s", "n_ct_p", "n_ct_s"]].sum(axis=1) > 0
        wanted = set(rows.station[data])
        keep = [i for i, lab in enumerate(labels) if lab in wanted]
    lat, lon = events.latitude.to_numpy(float), events.longitude.to_numpy(float)
    depth = events.depth_km.to_numpy(np.float32).astype(float)
    sta_lat = stations["lat"][keep].astype(float)
    sta_lon = stations["lon"][keep].astype(float)
    sta_elv = stations["elv"][keep].astype(float)
    ttp, tts, xp, yp, zp, xs, ys, zs = compute_partials(
        len(events), lat, lon, depth.copy(), len(keep), sta_lat, sta_lon, sta_elv,
        model.nl, model.ratio, model.v, model.top, imod=imod,
    )  # fmt: skip
    dist, az = delaz_vec(lat, lon, sta_lat, sta_lon)
    layer = np.clip(np.searchsorted(model.top, depth, side="right") - 1, 0, model.nl - 1)
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


def main(argv: list[str]) -> None:
    """``python -m pipeline.relocation.hypodd_package hypoDD.inp``: the package's program."""
    import hypodd.hypoDD as program

    if len(argv) != 2:
        raise SystemExit("usage: python -m pipeline.relocation.hypodd_package hypoDD.inp")
    program.weighting = weighting
    program.solve_lsqr = solve_lsqr
    program.run_hypoDD(argv[1])
    write_source_parameters(argv[1])


if __name__ == "__main__":
    main(sys.argv)
