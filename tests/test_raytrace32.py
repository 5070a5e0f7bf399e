"""HypoDD's ray tracing in float32 (pipeline/relocation/raytrace32.py).

Against the ``hypodd`` package's float64 tracer on the velocity model of the official HypoDD
example 2 (``../shared/data/hypodd_example2/hypoDD.inp``): the same first arrivals to rounding
and to the regula-falsi tolerance, and HypoDD's conventions at layer tops. (Bit-identity with
the Fortran was checked against gfortran builds of HypoDD 2.1; see the module docstring.)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypodd.config import parse_inp
from hypodd.core.partials import compute_partials
from hypodd.models.velocity_numba import ttime_numba

from pipeline.relocation import raytrace32 as rt


@pytest.fixture
def model(shared):
    return parse_inp(shared("data", "hypodd_example2", "hypoDD.inp")).vel_model


def test_ttime_matches_the_package_to_rounding(model):
    top = np.asarray(model.top, np.float32)
    v = np.asarray(model.v, np.float32)
    rng = np.random.default_rng(0)
    delta = rng.uniform(0.5, 120.0, 3000).astype(np.float32)
    depth = rng.uniform(0.1, 15.0, 3000).astype(np.float32)
    ours = np.array([rt.ttime(d, z, v, top) for d, z in zip(delta, depth, strict=True)])
    theirs = np.array(
        [
            ttime_numba(float(d), float(z), model.nl, v.astype(float), top.astype(float))
            for d, z in zip(delta, depth, strict=True)
        ]
    )
    np.testing.assert_array_equal(ours.astype(np.float32), ours)  # float32 arithmetic
    np.testing.assert_allclose(ours[:, 0], theirs[:, 0], atol=1e-5)  # s
    np.testing.assert_allclose(ours[:, 1], theirs[:, 1], atol=0.05)  # deg, search tolerance
    assert (ours[:, 1] > 90).any() and (ours[:, 1] < 90).any()  # direct and head waves


def test_layer_top_conventions(model):
    top = np.asarray(model.top, np.float32)
    k = int(np.nonzero(np.isclose(top, 4.2))[0][0])
    # a source exactly at a top belongs to the layer above it (vmodel.f, partials.f)
    assert rt.source_layer(top[k], top) == k - 1
    assert rt.source_layer(top[k] + np.float32(0.001), top) == k
    assert rt.source_layer(np.float32(-0.1), top) == 0  # air quake: first layer
    # sources within 0.1 mm of a top are moved 1 m up before tracing; others stay
    depth = np.array([top[k], top[k] + np.float32(5e-5), np.float32(4.25)], np.float32)
    moved = rt.off_layer_tops(depth, top)
    np.testing.assert_array_equal(moved[:2], depth[:2] - np.float32(0.001))
    assert moved[2] == depth[2]


def test_partials_match_the_package(shared, model):
    from hypodd.io.readers import read_stations

    sta = read_stations(shared("data", "hypodd_example2", "station.sel"), imod=0)
    rng = np.random.default_rng(1)
    n = 40
    lat = 37.28 + rng.normal(0, 0.02, n)
    lon = -121.66 + rng.normal(0, 0.02, n)
    dep = rng.uniform(2.0, 9.0, n).astype(np.float32)
    ours = rt.partials(lat, lon, dep, sta["lat"], sta["lon"], sta["elv"], model.v,
                       model.ratio, model.top)  # fmt: skip
    theirs = compute_partials(n, lat, lon, dep.astype(float), len(sta["lat"]),
                              sta["lat"].astype(float), sta["lon"].astype(float),
                              sta["elv"].astype(float), model.nl, model.ratio, model.v,
                              model.top, imod=0)  # fmt: skip
    for name, a, b in zip("ttp tts xp yp zp xs ys zs".split(), ours, theirs, strict=True):
        assert a.dtype == np.float32 and a.shape == (len(sta["lat"]), n), name
        np.testing.assert_allclose(a, b, atol=2e-3, err_msg=name)  # s and s/km


def test_residuals_in_float32():
    ttp = np.array([[1.5, 2.25]], np.float32)
    tts = np.array([[2.5, 3.75]], np.float32)
    src_t = np.array([10.0, -20.0], np.float32)  # ms
    cal, res = rt.residuals(
        np.array([0.1, -0.2], np.float32), np.array([3, 4]), np.array([0, 0]),
        np.array([0, 1]), np.array([1, 0]), src_t, ttp, tts,
    )  # fmt: skip
    assert cal.dtype == res.dtype == np.float32
    np.testing.assert_allclose(cal, [(1.5 - 0.01) - (2.25 + 0.02), (3.75 + 0.02) - (2.5 - 0.01)])
    np.testing.assert_allclose(res, np.array([0.1, -0.2]) - cal, rtol=1e-6)
