"""HypoDD 2's 1-D ray tracing and residuals in single precision, in the Fortran's order.

HypoDD computes travel times and slowness partials (``partials.f`` with ``delaz2.f``,
``ttime.f``, ``vmodel.f``, ``tiddid.f``, ``refract.f``, ``direct1.f``) and the
double-difference residuals (``dtres.f``) with REAL*4 variables, the distances and azimuths
(``delaz2.f``) in double precision rounded to REAL*4. The ``hypodd`` package computes the
same in float64. Near a layer top the direct ray leaves almost horizontally, its take-off
angle comes from a regula-falsi search that stops at 20 m misfit, and the depth derivative
``cos(ain) / v`` changes with the number of search steps: rounding differences there move
events to the other side of a layer top (HypoDD example 2: events at 3.5-4.6 km, below the
tops at 3.6, 4.2 and 4.8 km). This module repeats each REAL*4 operation in float32, in the
Fortran's evaluation order (left to right, no fused multiply-add), so that the engine takes
the Fortran's branches.

Conventions kept from the Fortran (1-based there, 0-based here):

* A source within 0.1 mm of a layer top is moved 1 m up before ray tracing (``partials.f``).
* The source layer of the partials is the one whose top lies *above* the source
  (``depth <= top(k)`` picks layer ``k - 1``): a source exactly at a top belongs to the layer
  above; the ray tracer's layer (``vmodel.f``) uses the same rule on the station-adjusted tops.
* A source at or above the surface (depth <= 0, an air quake being removed) is traced in the
  first layer (the Fortran indexes layer 0 there, outside its arrays).

Shapes: ``nsta`` stations by ``nsrc`` sources; distances km, times s, slownesses s/km.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

F = np.float32
BIG = F(100000.0)
ZERO = F(0.0)
ONE = F(1.0)
TWO = F(2.0)
HALF = F(0.5)
STEP_TOL = F(0.02)  # direct1.f: regula-falsi tolerance and minimum bracket (km)
MIN_TK = F(0.05)  # direct1.f: minimum thickness of the fastest layer above (km)
USQ_MAX = F(0.99999)
DEG = F(57.2958)  # ttime.f: radians to degrees
PI = F(3.141593)  # partials.f
HALF_TURN = F(180.0)
QUARTER_TURN = F(90.0)
FULL_TURN = F(360.0)
ON_TOP = F(0.0001)  # partials.f: "on a layer top" (km)
NUDGE = F(0.001)  # partials.f: moved up by (km)
# delaz2.f (double precision; the radius constant is a REAL*4 literal there)
RAD = 1.745329e-02
PI2 = 1.570796
FLAT = 0.993231
EQ_RADIUS = float(F(6378.140))


@njit(cache=True)
def _sqrt_pos(x):
    """``sqrt(x)`` for x > 0; a tiny positive root where the Fortran would take sqrt(<= 0)."""
    return np.sqrt(x) if x > ZERO else F(1e-20)


@njit(cache=True)
def source_layer(depth, top):
    """0-based layer of ``depth`` (km): the first top at or below it, minus one (vmodel.f)."""
    nl = top.shape[0]
    for i in range(nl):
        if depth <= top[i]:
            return max(i - 1, 0)
    return nl - 1


@njit(cache=True)
def _direct(v, vsq, thk, jl, tkj, delta, depth):
    """Direct ray (direct1.f): travel time (s) and sine of the take-off angle."""
    if jl == 0:
        r = F(math.hypot(np.float64(depth), np.float64(delta)))
        return r / v[0], delta / r
    lmax = jl
    tklmax = tkj
    vlmax = v[jl]
    for layer in range(jl):
        if v[layer] > vlmax:
            lmax = layer
            tklmax = thk[layer]
            vlmax = v[layer]
    if tklmax <= MIN_TK:
        tklmax = MIN_TK
    ua = ((v[jl] / vlmax) * delta) / np.sqrt(delta * delta + depth * depth)
    ub = ((v[jl] / vlmax) * delta) / np.sqrt(delta * delta + tklmax * tklmax)
    uasq = ua * ua
    ubsq = ub * ub
    if ubsq >= ONE:
        ubsq = USQ_MAX
    if uasq >= ONE:
        uasq = USQ_MAX
    xa = (tkj * ua) / np.sqrt(ONE - uasq)
    xb = delta if lmax == jl else (tkj * ub) / np.sqrt(ONE - ubsq)
    dela = xa
    delb = xb
    for layer in range(jl):
        dela = dela + (thk[layer] * ua) / _sqrt_pos(vsq[jl] / vsq[layer] - uasq)
        delb = delb + (thk[layer] * ub) / _sqrt_pos(vsq[jl] / vsq[layer] - ubsq)
    x = u = usq = ZERO
    dist = ZERO  # unset in the Fortran when the first bracket is already narrow
    for _ in range(25):
        if (delb - dela) < STEP_TOL:
            x = HALF * (xa + xb)
            u = x / np.sqrt(x * x + tkj * tkj)
            usq = u * u
            break
        x = xa + ((delta - dela) * (xb - xa)) / (delb - dela)
        u = x / np.sqrt(x * x + tkj * tkj)
        usq = u * u
        dist = x
        for layer in range(jl):
            dist = dist + (thk[layer] * u) / _sqrt_pos(vsq[jl] / vsq[layer] - usq)
        xtest = dist - delta
        if abs(xtest) < STEP_TOL:
            break
        if xtest < ZERO:
            xa = x
            dela = dist
        else:
            xb = x
            delb = dist
    tdir = np.sqrt(x * x + tkj * tkj) / v[jl]
    for layer in range(jl):
        tdir = tdir + (thk[layer] * v[jl]) / (vsq[layer] * _sqrt_pos(vsq[jl] / vsq[layer] - usq))
    tdir = tdir - (u / v[jl]) * (dist - delta)
    return tdir, u


@njit(cache=True)
def _intercepts(v, vsq, thk, jl, nl):
    """Intercept times and critical distances of head waves below layer ``jl`` (tiddid.f)."""
    tid = np.zeros(nl, np.float32)
    did = np.zeros(nl, np.float32)
    for m in range(jl + 1, nl):
        tid1 = tid2 = did1 = did2 = ZERO
        for layer in range(m):
            if vsq[m] <= vsq[layer]:
                tid[m] = BIG
                did[m] = BIG
                continue
            sqt = np.sqrt(vsq[m] - vsq[layer])
            tim = (thk[layer] * sqt) / (v[layer] * v[m])
            dimm = (thk[layer] * v[layer]) / sqt
            if layer < jl:
                tid1 = tid1 + tim
                did1 = did1 + dimm
            else:
                tid2 = tid2 + tim
                did2 = did2 + dimm
        if tid[m] != BIG:
            tid[m] = tid1 + TWO * tid2
            did[m] = did1 + TWO * did2
    return tid, did


@njit(cache=True)
def _refracted(v, vsq, thk, jl, tkj, delta, nl):
    """Fastest head wave (refract.f): (time s, its layer or -1, cross-over distance km)."""
    tid, did = _intercepts(v, vsq, thk, jl, nl)
    tinj = np.zeros(nl, np.float32)
    tref = BIG
    kk = -1
    for m in range(jl + 1, nl):
        if tid[m] == BIG:
            tr = BIG
        else:
            sqt = np.sqrt(vsq[m] - vsq[jl])
            tinj[m] = tid[m] - (tkj * sqt) / (v[m] * v[jl])
            didj = did[m] - (tkj * v[jl]) / sqt
            tr = tinj[m] + delta / v[m]
            if didj > delta:
                tr = BIG
        if tr < tref:
            tref = tr
            kk = m
    if tref == BIG:
        return tref, -1, BIG
    lx = jl + 1
    while tid[lx] == BIG:
        lx += 1
    if jl == 0:
        return tref, kk, ((tinj[lx] * v[lx]) * v[0]) / (v[lx] - v[0])
    m = jl
    while True:
        tid[m] = ZERO
        for layer in range(m):
            if vsq[m] <= vsq[layer]:
                tid[m] = BIG
            else:
                sqt = np.sqrt(vsq[m] - vsq[layer])
                tid[m] = tid[m] + (thk[layer] * sqt) / (v[layer] * v[m])
        m -= 1
        if tid[m + 1] < BIG or m == 0:
            break
    if tid[m + 1] < BIG:
        jx = m + 1
        xovmax = (((tinj[lx] - tid[jx]) * v[lx]) * v[jx]) / (v[lx] - v[jx])
    else:
        xovmax = ((tinj[lx] * v[lx]) * v[0]) / (v[lx] - v[0])
    return tref, kk, xovmax


@njit(cache=True)
def ttime(delta, depth, v, top):
    """First-arrival time (s) and take-off angle (deg from down) in a layered model (ttime.f).

    Args:
        delta: epicentral distance (km), float32.
        depth: source depth below the station (km), float32.
        v: layer velocities (km/s), float32, shape (nl,).
        top: layer tops (km), float32, shape (nl,), ``top[0] = 0``.
    """
    nl = v.shape[0]
    vsq = v * v
    jl = source_layer(depth, top)
    thk = np.zeros(nl, np.float32)
    for i in range(nl - 1):
        thk[i] = top[i + 1] - top[i]
    tkj = depth - top[jl]
    tref, kk, xovmax = _refracted(v, vsq, thk, jl, tkj, delta, nl)
    t = tref
    ain = ZERO
    if kk >= 0:
        ain = np.arcsin(v[jl] / v[kk]) * DEG
    if delta <= xovmax:
        tdir, u = _direct(v, vsq, thk, jl, tkj, delta, depth)
        if tref > tdir:
            t = tdir
            ain = HALF_TURN - np.arcsin(u) * DEG
    return t, ain


@njit(cache=True)
def delaz(alat, alon, blat, blon):
    """Distance (km) and azimuth (deg) from source to station (delaz2.f), as float32."""
    alatr = alat * RAD
    alonr = alon * RAD
    blatr = np.float64(blat) * RAD
    blonr = np.float64(blon) * RAD
    acol = PI2 - math.atan(FLAT * math.tan(alatr))
    bcol = PI2 - math.atan(FLAT * math.tan(blatr))
    diflon = blonr - alonr
    cosdel = math.sin(acol) * math.sin(bcol) * math.cos(diflon) + math.cos(acol) * math.cos(bcol)
    delr = math.acos(cosdel)
    den = (math.sin(acol) / math.tan(bcol)) - math.cos(diflon) * math.cos(acol)
    az = F(math.atan2(math.sin(diflon), den) / RAD)
    if az < ZERO:
        az = FULL_TURN + az
    colat = PI2 - (alatr + blatr) / 2.0
    radius = EQ_RADIUS * (1.0 + 3.37853e-3 * (0.0 - math.cos(colat) ** 2))
    return F(delr * radius), az


@njit(cache=True)
def _partials(src_lat, src_lon, src_dep, sta_lat, sta_lon, sta_elv, v, vs, top):
    nsta, nsrc = sta_lat.shape[0], src_lat.shape[0]
    out = np.zeros((8, nsta, nsrc), np.float32)
    top_adj = top.copy()
    for i in range(nsta):
        top_adj[0] = ZERO
        for k in range(1, top.shape[0]):
            top_adj[k] = top[k] + sta_elv[i]
        for j in range(nsrc):
            dist, az = delaz(src_lat[j], src_lon[j], sta_lat[i], sta_lon[i])
            depth = src_dep[j] + sta_elv[i]
            out[0, i, j], ainp = ttime(dist, depth, v, top_adj)
            out[1, i, j], ains = ttime(dist, depth, vs, top_adj)
            k = source_layer(src_dep[j], top)
            rp = (ainp * PI) / HALF_TURN
            rs = (ains * PI) / HALF_TURN
            east = np.cos(((az - QUARTER_TURN) * PI) / HALF_TURN)
            north = np.cos((az * PI) / HALF_TURN)
            out[2, i, j] = (np.sin(rp) * east) / v[k]
            out[3, i, j] = (np.sin(rp) * north) / v[k]
            out[4, i, j] = np.cos(rp) / v[k]
            out[5, i, j] = (np.sin(rs) * east) / vs[k]
            out[6, i, j] = (np.sin(rs) * north) / vs[k]
            out[7, i, j] = np.cos(rs) / vs[k]
    return out


def off_layer_tops(src_dep: np.ndarray, mod_top: np.ndarray) -> np.ndarray:
    """Depths (km, float32) with sources within 0.1 mm of a layer top moved 1 m up (partials.f).

    The Fortran tests each top in turn on the already-moved depth.
    """
    dep = np.asarray(src_dep, np.float32).copy()
    for top in np.asarray(mod_top, np.float32):
        near = np.abs(dep - top) < ON_TOP
        dep[near] = dep[near] - NUDGE
    return dep


def partials(
    src_lat: np.ndarray,
    src_lon: np.ndarray,
    src_dep: np.ndarray,
    sta_lat: np.ndarray,
    sta_lon: np.ndarray,
    sta_elv: np.ndarray,
    mod_v: np.ndarray,
    mod_ratio: np.ndarray,
    mod_top: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """P and S travel times and slowness partials of every station and source (partials.f).

    Args:
        src_lat, src_lon: source coordinates (deg), float64, shape (nsrc,).
        src_dep: source depths (km), shape (nsrc,); already off the layer tops
            (:func:`off_layer_tops`).
        sta_lat, sta_lon: station coordinates (deg), float32, shape (nsta,).
        sta_elv: station elevations (km), float32, shape (nsta,).
        mod_v, mod_ratio, mod_top: P velocities (km/s), Vp/Vs and layer tops (km), (nl,).

    Returns:
        ``ttp, tts, xp, yp, zp, xs, ys, zs``, float32, each shape (nsta, nsrc): times (s) and
        dT/dx (east), dT/dy (north), dT/dz (down) of P then S (s/km).
    """
    v = np.asarray(mod_v, np.float32)
    vs = v / np.asarray(mod_ratio, np.float32)
    out = _partials(
        np.asarray(src_lat, np.float64),
        np.asarray(src_lon, np.float64),
        np.asarray(src_dep, np.float32),
        np.asarray(sta_lat, np.float32),
        np.asarray(sta_lon, np.float32),
        np.asarray(sta_elv, np.float32),
        v,
        vs,
        np.asarray(mod_top, np.float32),
    )
    return tuple(out)


def residuals(
    dt_dt: np.ndarray,
    dt_idx: np.ndarray,
    dt_ista: np.ndarray,
    dt_ic1: np.ndarray,
    dt_ic2: np.ndarray,
    src_t: np.ndarray,
    tmp_ttp: np.ndarray,
    tmp_tts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Theoretical differential times and residuals (s), float32 (dtres.f, ``nsrc > 1``).

    Args:
        dt_dt: observed differential times (s), shape (ndt,).
        dt_idx: data types 1-4 (odd: P, even: S), shape (ndt,).
        dt_ista, dt_ic1, dt_ic2: 0-based station and source indices, shape (ndt,).
        src_t: source time shifts (ms), float32, shape (nsrc,).
        tmp_ttp, tmp_tts: P and S travel times (s), float32, shape (nsta, nsrc).
    """
    is_p = (dt_idx % 2) == 1
    shift = np.asarray(src_t, np.float32) / F(1000)
    tt = np.where(is_p, tmp_ttp[dt_ista, dt_ic1], tmp_tts[dt_ista, dt_ic1])
    tt1 = tt.astype(np.float32) - shift[dt_ic1]
    tt = np.where(is_p, tmp_ttp[dt_ista, dt_ic2], tmp_tts[dt_ista, dt_ic2])
    tt2 = tt.astype(np.float32) - shift[dt_ic2]
    cal = tt1 - tt2
    return cal, np.asarray(dt_dt, np.float32) - cal
