"""Relocation stage: HypoDD formats, ph2dt-equivalent, cross-correlation, engine, stage.

Real data: the official HypoDD example 1 (``../shared/data/hypodd_example1``) through our
ph2dt-equivalent (against its reference dt.ct and ph2dt.log) and through the engine layer
(against its reference hypoDD.reloc). Generated data: a tight synthetic cluster with
waveforms in an SDS archive, relocated end to end.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from hypodd.config import parse_inp

from pipeline.errors import EqcatInputError
from pipeline.relocation import hypodd_formats as fmt
from pipeline.relocation.engine import ITERATIONS_DIR, HypoDDError, engine_command, relocate_dir
from pipeline.relocation.hypodd_package import SparseSystem, lsqr_float32
from pipeline.relocation.params import Ph2dtConfig, RelocationConfig
from pipeline.relocation.ph2dt import KM_PER_DEG, catalog_differential_times
from pipeline.relocation.stage import relocate, station_labels
from pipeline.relocation.synthetic import make_cluster, relative_errors_km, write_run
from pipeline.relocation.xcorr import multichannel_cc, normalised_cc, parabolic_peak
from pipeline.rundir import RunDir
from pipeline.velocity import load_velocity_model

EXAMPLE = ("data", "hypodd_example1")
#: ph2dt.inp of example 1: MINWGHT MAXDIST MAXSEP MAXNGH MINLNK MINOBS MAXOBS = 0 120 10 10 8 1 100
EXAMPLE_PH2DT = Ph2dtConfig(
    min_weight=0,
    max_dist_km=120,
    max_sep_km=10,
    max_neighbours=10,
    min_links=8,
    min_obs=1,
    max_obs=100,
)
EXAMPLE_INPUTS = ("hypoDD.inp", "dt.cc", "dt.ct", "event.sel", "station.sel")


def _example_dt(shared):
    events, phases = fmt.read_phase_dat(shared(*EXAMPLE, "El16.pha"))
    stations = fmt.read_station_dat(shared(*EXAMPLE, "station.dat"))
    return catalog_differential_times(events, phases, stations, EXAMPLE_PH2DT)


def _keys(dt: pd.DataFrame) -> set:
    return set(
        zip(dt.id1, dt.id2, dt.station, dt.phase, dt.t1.round(3), dt.t2.round(3), strict=True)
    )


def test_ph2dt_reproduces_example1_dt_ct(shared):
    ours, stats = _example_dt(shared)
    ref = fmt.read_dt_ct(shared(*EXAMPLE, "dt.ct"))
    overlap = len(_keys(ours) & _keys(ref)) / len(_keys(ref))
    assert overlap >= 0.95
    assert set(zip(ours.id1, ours.id2, strict=True)) == set(
        zip(ref.id1, ref.id2, strict=True)
    )  # the same 101 pairs
    merged = ours.merge(ref, on=["id1", "id2", "station", "phase"])
    assert np.allclose(merged.weight_x, merged.weight_y, atol=1e-4)
    # the statistics ph2dt.log reports for this run
    assert (stats.p_pairs_total, stats.s_pairs_total, stats.outliers) == (1988, 28, 4)
    assert (stats.p_pairs_selected, stats.s_pairs_selected) == (1984, 28)
    assert stats.weakly_linked_events == 0
    assert stats.as_dict()["max_offset_strong_km"] == pytest.approx(1.899, abs=0.01)


def test_ph2dt_max_obs_keeps_nearest_stations_and_flagged_picks(shared):
    cfg = EXAMPLE_PH2DT.model_copy(update={"max_obs": 5, "min_obs": 5, "min_links": 5})
    events, phases = fmt.read_phase_dat(shared(*EXAMPLE, "El16.pha"))
    stations = fmt.read_station_dat(shared(*EXAMPLE, "station.dat"))
    dt, _ = catalog_differential_times(events, phases, stations, cfg)
    negative = phases[phases.weight < 0].set_index(["hypodd_id", "station", "phase"]).index
    for (id1, id2), grp in dt.groupby(["id1", "id2"]):
        flagged = [
            (id1, s, p) in negative or (id2, s, p) in negative
            for s, p in zip(grp.station, grp.phase, strict=True)
        ]
        assert len(grp) - sum(flagged) <= 5  # MAXOBS counts positive-weight pairs only
        assert len(grp) >= 5


def test_ph2dt_weak_neighbours_do_not_count_toward_maxngh():
    """With MINLNK out of reach no neighbour is strong, so every pair within MAXSEP is formed
    (the neighbour search must widen beyond its first k-nearest query)."""
    rng = np.random.default_rng(5)
    n = 60
    events = pd.DataFrame(
        {
            "hypodd_id": np.arange(1, n + 1),
            "latitude": 35.0 + rng.uniform(0, 0.05, n),
            "longitude": 133.0 + rng.uniform(0, 0.05, n),
            "depth_km": rng.uniform(5, 10, n),
        }
    )
    stations = pd.DataFrame(
        {
            "station": ["A", "B", "C"],
            "latitude": [35.2, 34.8, 35.0],
            "longitude": [133.0, 133.0, 133.3],
        }
    )
    phases = pd.DataFrame(
        [(i, s, "P", 3.0, 1.0) for i in events.hypodd_id for s in stations.station],
        columns=["hypodd_id", "station", "phase", "travel_time_s", "weight"],
    )
    cfg = Ph2dtConfig(max_sep_km=3.0, max_neighbours=2, min_links=8, min_obs=1, max_obs=10)
    dt, stats = catalog_differential_times(events, phases, stations, cfg)
    lat, lon, dep = (events[c].to_numpy() for c in ("latitude", "longitude", "depth_km"))
    i, j = np.triu_indices(n, k=1)
    kx = 111.19 * np.cos(np.radians(0.5 * (lat[i] + lat[j])))
    sep = np.sqrt(
        ((lat[i] - lat[j]) * 111.19) ** 2 + ((lon[i] - lon[j]) * kx) ** 2 + (dep[i] - dep[j]) ** 2
    )
    expected = {(a + 1, b + 1) for a, b, d in zip(i, j, sep, strict=True) if d <= 3.0}
    got = {(min(a, b), max(a, b)) for a, b in zip(dt.id1, dt.id2, strict=True)}
    assert got == expected
    assert stats.weakly_linked_events == n
    assert (dt.groupby(["id1", "id2"]).size() == 3).all()


def test_formats_round_trip(shared, tmp_path):
    events, phases = fmt.read_phase_dat(shared(*EXAMPLE, "El16.pha"))
    fmt.write_phase_dat(tmp_path / "phase.dat", events, phases)
    events2, phases2 = fmt.read_phase_dat(tmp_path / "phase.dat")
    pd.testing.assert_frame_equal(phases, phases2)
    assert np.allclose(events.latitude, events2.latitude)
    assert (events.origin_time == events2.origin_time).all()
    fmt.write_event_dat(tmp_path / "event.dat", events)
    line = (tmp_path / "event.dat").read_text().splitlines()[0].split()
    assert line[:2] == ["19850124", "2195871"] and line[-1] == "38542"
    ref = fmt.read_dt_ct(shared(*EXAMPLE, "dt.ct"))
    fmt.write_dt_ct(tmp_path / "dt.ct", ref)
    pd.testing.assert_frame_equal(fmt.read_dt_ct(tmp_path / "dt.ct"), ref)
    cc = fmt.read_dt_cc(shared(*EXAMPLE, "dt.cc"))
    fmt.write_dt_cc(tmp_path / "dt.cc", cc)
    assert np.allclose(fmt.read_dt_cc(tmp_path / "dt.cc").dt, cc.dt, atol=1e-5)


def test_hypodd_inp_is_read_by_the_engine_parser(tmp_path):
    model = load_velocity_model("tottori")
    cfg = RelocationConfig().hypodd
    text = fmt.render_hypodd_inp(cfg, model, n_events=500, has_cc=True)
    (tmp_path / "hypoDD.inp").write_text(text)
    parsed = parse_inp(tmp_path / "hypoDD.inp")
    assert (parsed.fn_cc, parsed.fn_ct, parsed.fn_eve, parsed.fn_reloc) == (
        "dt.cc",
        "dt.ct",
        "event.dat",
        "hypoDD.reloc",
    )
    assert (parsed.idata, parsed.iphase, parsed.isolv, parsed.nset) == (3, 3, 2, 5)
    assert parsed.imod == 1
    assert np.allclose(parsed.vel_model.top, model.layer_tops_km)
    assert np.allclose(parsed.vel_model.v, model.vp_km_s)
    assert np.allclose(parsed.vel_model.ratio, model.vp_km_s / model.vs_km_s, atol=1e-3)
    assert parsed.niter == [it.niter for it in cfg.iterations]
    small = fmt.render_hypodd_inp(cfg, model, n_events=20, has_cc=False)
    (tmp_path / "small.inp").write_text(small)
    assert (parse_inp(tmp_path / "small.inp").isolv, parse_inp(tmp_path / "small.inp").idata) == (
        1,
        2,
    )
    assert fmt.read_inp_files(tmp_path / "hypoDD.inp")["fn_station"] == "station.dat"


def _against_reference(reloc_path, ref_path) -> pd.DataFrame:
    """Our relocations joined to the reference hypoDD.reloc, with the horizontal and vertical
    distances ``dh_m``, ``dz_m`` (m) and the error ratios ``ex``, ``ey``, ``ez`` (ours / ref)."""
    both = fmt.read_reloc(reloc_path).merge(
        fmt.read_reloc(ref_path), on="hypodd_id", suffixes=("", "_ref")
    )
    kx = 111.19e3 * np.cos(np.radians(both.latitude_ref))
    both["dh_m"] = np.hypot(
        (both.latitude - both.latitude_ref) * 111.19e3, (both.longitude - both.longitude_ref) * kx
    )
    both["dz_m"] = (both.depth_km - both.depth_km_ref).abs() * 1e3
    for axis in ("x", "y", "z"):
        both[f"e{axis}"] = both[f"e{axis}_m"] / both[f"e{axis}_m_ref"]
    return both


def test_engine_reproduces_example1_reloc(shared, tmp_path):
    for name in EXAMPLE_INPUTS:
        shutil.copy(shared(*EXAMPLE, name), tmp_path / name)
    reloc_path = relocate_dir(tmp_path, RelocationConfig(engine="python"))
    both = _against_reference(reloc_path, shared(*EXAMPLE, "hypoDD.reloc"))
    assert len(both) == 16
    assert both.dh_m.max() < 10.0 and both.dz_m.max() < 10.0
    assert (tmp_path / "hypoDD.engine.log").read_text().strip()
    # per-iteration relocations are stowed away; the source-parameter file is written
    assert not list(tmp_path.glob("hypoDD.reloc.*"))
    assert len(list((tmp_path / ITERATIONS_DIR).glob("hypoDD.reloc.001.0*"))) >= 5
    names = "id lat lon station elv dist az ainp ains ttp tts xp yp zp xs ys zs".split()
    src = pd.read_csv(tmp_path / "hypoDD.src", sep=r"\s+", header=None, names=names)
    ref_src = pd.read_csv(shared(*EXAMPLE, "hypoDD.src"), sep=r"\s+", header=None, names=names)
    pairs = src.merge(ref_src, on=["id", "station"], suffixes=("", "_ref"))
    assert len(pairs) >= 0.9 * len(ref_src)
    assert (pairs.ttp - pairs.ttp_ref).abs().max() < 0.01  # s; at final vs last-iteration sites
    assert (pairs.tts - pairs.tts_ref).abs().max() < 0.02
    assert (pairs.dist - pairs.dist_ref).abs().max() < 0.05  # km


def test_engine_reproduces_example2_reloc(shared, tmp_path):
    """The official example 2 (Calaveras, 308 events, LSQR, 25 iterations): every hypocentre
    within 10 m of the reference, errors as the reference's. Shallow events near the layer
    tops at 3.6-4.8 km are sensitive to rounding (the package in float64 and the Fortran
    built with FMA left 33-35 of them 10-60 m deeper); the engine follows HypoDD's REAL*4."""
    example = ("data", "hypodd_example2")
    for name in EXAMPLE_INPUTS:
        shutil.copy(shared(*example, name), tmp_path / name)
    reloc_path = relocate_dir(tmp_path, RelocationConfig(engine="python"))
    both = _against_reference(reloc_path, shared(*example, "hypoDD.reloc"))
    assert len(both) == 308
    assert np.hypot(both.dh_m, both.dz_m).max() < 10.0
    assert both.dh_m.quantile(0.9) < 1.0
    for axis in ("ex", "ey", "ez"):
        assert 0.95 < both[axis].median() < 1.05, axis


def test_float32_lsqr_solves_damped_least_squares_with_hypodd_errors():
    """Against the dense solution of the damped normal equations and against scipy's LSQR
    (float64): the solution, and HypoDD's standard errors rnorm / sqrt(m) * sqrt(var), var
    being LSQR's running estimate of diag((A'A + damp^2 I)^-1) (a lower bound)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.linalg import lsqr

    rng = np.random.default_rng(4)
    m, n, damp = 400, 24, 0.5
    dense = rng.normal(0, 1, (m, n)) * (rng.uniform(0, 1, (m, n)) < 0.3)
    rows, cols = np.nonzero(dense)
    matrix = SparseSystem(rows, cols, dense[rows, cols].astype(np.float32), (m, n))
    b = (dense @ rng.normal(0, 1, n) + rng.normal(0, 0.1, m)).astype(np.float32)
    result = lsqr_float32(matrix, b, damp)
    normal = dense.T @ dense + damp**2 * np.eye(n)
    exact = np.linalg.solve(normal, dense.T @ b)
    assert result.x.dtype == np.float32 and result.istop in (1, 2)
    np.testing.assert_allclose(result.x, exact, rtol=1e-3, atol=1e-4)
    rnorm = np.sqrt(np.sum((dense @ exact - b) ** 2) + damp**2 * np.sum(exact**2))
    assert result.rnorm == pytest.approx(rnorm, rel=1e-3)
    ref = lsqr(csr_matrix(dense), b.astype(float), damp=damp, atol=0, btol=0,
               conlim=0, iter_lim=result.itn, calc_var=True)  # fmt: skip
    np.testing.assert_allclose(result.se, rnorm / np.sqrt(m) * np.sqrt(ref[9]), rtol=0.01)
    upper = rnorm / np.sqrt(m) * np.sqrt(np.diag(np.linalg.inv(normal)))
    assert (result.se <= upper * 1.001).all()


def _weighting_arrays(
    rng: np.random.Generator, n: int, n_events: int, min_offset_m: float
) -> dict[str, np.ndarray]:
    """Random differential-time arrays (length n) as the weighting step takes them: event
    pair ids below n_events, data kinds 1-4, qualities, residuals (s), offsets (m)."""
    return {
        "dt_c1": rng.integers(1, n_events, n).astype(np.int32),
        "dt_c2": rng.integers(1, n_events, n).astype(np.int32),
        "dt_idx": rng.integers(1, 5, n).astype(np.int32),
        "dt_qual": rng.uniform(0.1, 1.0, n).astype(np.float32),
        "dt_res": rng.normal(0.0, 0.05, n).astype(np.float32),
        "dt_offs": rng.uniform(min_offset_m, 9000.0, n).astype(np.float32),
    }


@pytest.mark.parametrize(
    "idata, maxres_cross, maxres_net, maxdcc, maxdct",
    [(3, 6.0, 5.0, 4.0, 3.0), (3, 0.3, 0.5, -999.0, 8.0), (2, -999.0, 4.0, -999.0, 5.0),
     (1, 5.0, -999.0, 2.0, -999.0), (2, -999.0, -999.0, -999.0, -999.0)],
)  # fmt: skip
def test_vectorised_weighting_agrees_with_the_package(
    idata, maxres_cross, maxres_net, maxdcc, maxdct
):
    """Ours rounds every step to float32 as weighting.f does, the package some in float64:
    the weights agree to a few float32 units and the flags exactly."""
    from hypodd.core.weighting import weighting as package_weighting

    from pipeline.relocation.hypodd_package import weighting

    rng = np.random.default_rng(idata)
    n, ndt = 3000, 2500  # arrays are longer than the data in use, as in the package
    arrays = _weighting_arrays(rng, n, n_events=200, min_offset_m=0.0)
    args = (idata, maxres_cross, maxres_net, maxdcc, maxdct, 0.0, 0.01, 0.01, 1.0, 0.5)
    for airquakes in ([], [7, 42, 199]):
        ours = rng.uniform(0, 1, n).astype(np.float32)
        theirs = ours.copy()
        a = weighting(ndt, airquakes, *args, **arrays, dt_wt=ours)
        b = package_weighting(ndt, airquakes, *args, **arrays, dt_wt=theirs)
        assert a == b
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, rtol=5e-6, atol=1e-7)
        np.testing.assert_array_equal(ours[ndt:], theirs[ndt:])  # beyond ndt: untouched
        c1, c2 = arrays["dt_c1"][:ndt], arrays["dt_c2"][:ndt]
        of_airquakes = np.isin(c1, airquakes) | np.isin(c2, airquakes)
        assert of_airquakes.any() == bool(airquakes)
        assert (ours[:ndt][of_airquakes] == 0).all()


def test_weighting_reads_minus_nine_as_not_set():
    """hypoDD.inp's -9 switches a cut-off off (getinp.f); taken literally, a -9 km distance
    cut-off would scale every weight by (1 + (d / 9 km)^p)^p."""
    from pipeline.relocation.hypodd_package import weighting

    rng = np.random.default_rng(9)
    n = 500
    arrays = _weighting_arrays(rng, n, n_events=50, min_offset_m=1000.0)
    weights = {}
    for unset in (-9.0, -999.0):
        wt = np.zeros(n, np.float32)
        flag = weighting(n, [], 3, unset, unset, unset, unset, 0.0, 1.0, 1.0, 1.0, 0.5,
                         **arrays, dt_wt=wt)  # fmt: skip
        weights[unset] = (flag, wt)
    assert weights[-9.0][0] == weights[-999.0][0] == 0
    np.testing.assert_array_equal(weights[-9.0][1], weights[-999.0][1])
    apriori = np.where(arrays["dt_idx"] == 4, np.float32(0.5), np.float32(1.0))
    np.testing.assert_array_equal(weights[-9.0][1], apriori * arrays["dt_qual"])


def test_engine_errors_are_clear(tmp_path):
    with pytest.raises(HypoDDError, match="hypoDD.inp not found"):
        relocate_dir(tmp_path, RelocationConfig())
    with pytest.raises(HypoDDError, match="no program 'no-such-hypoDD' is on PATH"):
        engine_command(RelocationConfig(engine="binary", binary="no-such-hypoDD"))
    model = load_velocity_model("generic_crust")
    inp = fmt.render_hypodd_inp(RelocationConfig().hypodd, model, n_events=2, has_cc=False)
    (tmp_path / "hypoDD.inp").write_text(inp)
    with pytest.raises(HypoDDError, match="names input 'dt.cc'"):
        relocate_dir(tmp_path, RelocationConfig())
    for name in ("dt.cc", "dt.ct"):
        (tmp_path / name).write_text("")
    (tmp_path / "event.dat").write_text("20001006 5000000 35.27 133.35 10.0 0 0 0 0 1\n")
    (tmp_path / "station.dat").write_text("ST1 35.0 133.0\nST2 not-a-latitude 133.0\n")
    # a damaged input line is named before the engine runs (it said "could not convert
    # string to float: 'not-a-latitude'" without the file or the line)
    with pytest.raises(EqcatInputError, match=r"station\.dat:2: expected 'STA LAT LON \[ELEV\]'"):
        relocate_dir(tmp_path, RelocationConfig(engine="python", timeout_s=120))
    assert not (tmp_path / "hypoDD.engine.log").exists()
    (tmp_path / "station.dat").write_text("ST1 35.0 133.0\n")
    cut = inp.splitlines()
    names = [i for i, line in enumerate(cut) if line.strip() and not line.startswith("*")]
    (tmp_path / "hypoDD.inp").write_text("\n".join(cut[: names[9] + 1]) + "\n")  # no parameters
    # named before the engine runs (it ended in "IndexError: list index out of range")
    with pytest.raises(
        EqcatInputError,
        match=rf"hypoDD.inp: ends after line {names[9] + 1}; expected a line 'IDAT IPHA DIST'",
    ):
        relocate_dir(tmp_path, RelocationConfig(engine="python", timeout_s=120))
    assert not (tmp_path / "hypoDD.engine.log").exists()


def _inp_lines() -> list[str]:
    """A rendered hypoDD.inp (IMOD 1, 5 iteration sets), one string per line."""
    model = load_velocity_model("generic_crust")
    return fmt.render_hypodd_inp(RelocationConfig().hypodd, model, n_events=2,
                                 has_cc=False).splitlines()  # fmt: skip


@pytest.mark.parametrize(
    "edit, expected",
    [
        # params: 0 data, 1 clustering, 2 solution, 3-7 iterations, 8 IMOD, 9-11 model, 12 CID
        (
            lambda p: p[:3],
            r": ends after line \d+; expected a line 'NITER WTCCP .* \(set 1 of 5\)'",
        ),
        (lambda p: p[:8], r": ends after line \d+; expected a line 'IMOD' next"),
        (
            lambda p: ["3 3", *p[1:]],
            r":\d+: expected 'IDAT IPHA DIST' \(3 numbers, the first 2 whole\), got '3 3'",
        ),
        (lambda p: [*p[:2], "2 1 1", *p[3:]], r":\d+: expected 'ISTART ISOLV IAQ NSET'"),
        (lambda p: [*p[:4], "1 0.01 x", *p[5:]], r":\d+: expected 'NITER WTCCP .* \(set 2 of 5\)'"),
        (lambda p: [*p[:9], "0 1 5", *p[10:]], r":\d+: expected 'TOP values ... -9' \(IMOD 1\)"),
        (
            lambda p: [*p[:10], "5.0 6.0 -9", *p[11:]],
            r":\d+: the IMOD 1 model has \d+ layer tops, 2 vel",
        ),
        (lambda p: [*p[:12], "one"], r":\d+: expected 'CID' or event ids"),
    ],
)
def test_a_damaged_hypodd_inp_is_named_before_the_engine_runs(tmp_path, edit, expected):
    """Each parameter line (after the nine file names) is checked; the rendered file passes."""
    lines = _inp_lines()
    starts = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("*")]
    head, params = lines[: starts[10]], [lines[i] for i in starts[10:]]
    path = tmp_path / "hypoDD.inp"
    path.write_text("\n".join(head + params) + "\n")
    fmt.check_inp_parameters(path)
    path.write_text("\n".join(head + edit(params)) + "\n")
    with pytest.raises(EqcatInputError, match="hypoDD.inp" + expected):
        fmt.check_inp_parameters(path)


def test_the_official_example_hypodd_inp_passes_the_check(shared):
    fmt.check_inp_parameters(shared(*EXAMPLE, "hypoDD.inp"))
    fmt.check_inp_parameters(shared("data", "hypodd_example2", "hypoDD.inp"))


@pytest.mark.parametrize(
    "key, line, expected",
    [
        ("fn_event", "20000101 garbage", "expected 'DATE TIME LAT LON DEPTH MAG EH EZ RMS ID'"),
        ("fn_ct", "X1 abc def 1.0 P", "expected 'STA T1 T2 WGHT PHA', got 'X1 abc def 1.0 P'"),
        ("fn_ct", "X1 1.0 1.1 1.0 Q", "expected 'STA T1 T2 WGHT PHA'"),
        ("fn_cc", "# 12 twelve 0.0", "expected '# ID1 ID2 [OTC]'"),
        ("fn_station", "X1 35.0 133.0 high", "expected 'STA LAT LON [ELEV]'"),
    ],
)
def test_input_lines_the_engine_cannot_read_are_named(tmp_path, key, line, expected):
    """Each damaged line is named with its file and line number; the official example's
    files pass (and a station coordinate in deg:min)."""
    good = {
        "fn_event": "20001006 5000000 35.27 133.35 10.0 0 0 0 0 1",
        "fn_ct": "#  1  2\nX1 1.0 1.1 1.0 P",
        "fn_cc": "#  1  2  0.0\nX1 0.01 0.8 S",
        "fn_station": "X1 35:16.2 133.0\nX2 35.0 -133.0 120",
    }[key]
    path = tmp_path / "input.txt"
    path.write_text(good + "\n")
    fmt.check_input_lines(path, key)
    path.write_text(f"{good}\n\n{line}\n")
    lineno = good.count("\n") + 3
    with pytest.raises(EqcatInputError, match=re.escape(f"input.txt:{lineno}: {expected}")):
        fmt.check_input_lines(path, key)
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(EqcatInputError, match="input.txt: not a text file"):
        fmt.check_input_lines(path, key)


def test_cross_correlation_recovers_known_lags():
    rng = np.random.default_rng(3)
    rate, n, m = 100.0, 120, 40
    lags = rng.uniform(-0.35, 0.35, 64)  # s, deliberately off the sample grid

    def wavelet(t):
        return np.exp(-((t / 0.1) ** 2)) * np.sin(2 * np.pi * 6.0 * t)

    t_template = np.arange(n) / rate - 0.3
    t_search = np.arange(n + 2 * m) / rate - 0.3 - m / rate
    template = np.stack([wavelet(t_template) + rng.normal(0, 0.02, n) for _ in lags])
    search = np.stack([wavelet(t_search - lag) + rng.normal(0, 0.02, n + 2 * m) for lag in lags])
    cc = normalised_cc(template, search)
    assert cc.shape == (len(lags), 2 * m + 1)
    pos, value = parabolic_peak(cc)
    recovered = (pos - m) / rate
    assert np.abs(recovered - lags).max() < 0.005
    assert value.min() > 0.9
    # a peak on the edge of the lag range is rejected, not reported
    edge, _ = parabolic_peak(np.linspace(0, 1, 11)[None, :])
    assert np.isnan(edge[0])


def test_multichannel_cc_is_not_pulled_down_by_a_quiet_component():
    """S on two horizontals: one carries the shared signal, the other only weak noise."""
    rng = np.random.default_rng(5)
    n, m = 100, 10
    signal = rng.normal(0, 1, n + 2 * m)
    search = np.stack([signal, rng.normal(0, 0.05, n + 2 * m)])
    template = np.stack([signal[m : m + n] + rng.normal(0, 0.1, n), rng.normal(0, 0.05, n)])
    per_component = normalised_cc(template, search)[:, m]
    combined = multichannel_cc(template[None], search[None])[0]
    assert per_component.mean() < 0.6  # the old average of coefficients
    assert combined[m] > 0.95 and np.argmax(combined) == m
    # a dead channel (NaN) is left out, not propagated
    dead = template.copy()
    dead[1] = np.nan
    assert multichannel_cc(dead[None], search[None])[0, m] == pytest.approx(
        normalised_cc(template[0], search[0])[m]
    )


def test_reloc_origin_times_stay_with_their_events():
    """hypodd 0.2.1 drops event 2 and writes the times of hypoDD.loc rows 1-3 against IDs
    1, 3, 4; the times are re-attached to the IDs. Correctly written times are kept."""
    start = pd.Timestamp("2000-10-08T05:00:00", tz="UTC")
    loc = pd.DataFrame(
        {
            "hypodd_id": [1, 2, 3, 4],
            "origin_time": start + pd.to_timedelta([0.0, 60.0, 125.0, 300.0], unit="s"),
            "magnitude": [1.0, 2.0, 3.0, 4.0],
            "cluster_id": 1,
        }
    )
    shift = pd.to_timedelta([0.02, -0.03, 0.01], unit="s")  # HypoDD's origin corrections
    own = pd.DatetimeIndex(loc.set_index("hypodd_id").loc[[1, 3, 4], "origin_time"]) + shift
    buggy = pd.DataFrame(
        {
            "hypodd_id": [1, 3, 4],
            "origin_time": pd.DatetimeIndex(loc.origin_time.iloc[:3]) + shift,
            "magnitude": [1.0, 2.0, 3.0],
            "cluster_id": 1,
        }
    )
    fixed = fmt.realign_origin_times(buggy, loc)
    assert (pd.DatetimeIndex(fixed.origin_time) == own).all()
    assert fixed.magnitude.tolist() == [1.0, 3.0, 4.0]
    correct = buggy.assign(origin_time=own, magnitude=[1.0, 3.0, 4.0])
    assert fmt.realign_origin_times(correct, loc).equals(correct)


def test_station_labels_are_short_and_unique():
    stations = pd.DataFrame(
        {"network": ["AA", "BB", "AA", "CC"], "station": ["X1", "X1", "LONGNAME", "Y2"]}
    )
    labels = station_labels(stations)
    assert labels.label.tolist() == ["AAX1", "BBX1", "S0003", "Y2"]
    assert labels.label.str.len().max() <= fmt.MAX_LABEL


def test_stage_end_to_end_on_generated_cluster(tmp_path):
    """Known cluster, noisy picks, waveforms: relocation beats the perturbed starting locations;
    an isolated event and an unlocated one stay in the table with their flags."""
    model = load_velocity_model("tottori")
    scenario = make_cluster(model, n_events=20, n_stations=8, seed=7)
    loc = scenario.locations
    loc.loc[loc.index[-1], ["latitude", "longitude"]] += [0.3, 0.3]  # ~40 km away: unlinked
    loc.loc[loc.index[-2], "located"] = False
    run = RunDir(tmp_path / "run")
    write_run(run, scenario)
    cfg = RelocationConfig(
        engine="python", cross_correlation={"max_sep_km": 5.0, "all_pairs_within_km": 2.0}
    )
    entry = relocate(run, cfg, model)

    out = run.root / "relocation"
    for name in (
        "station.dat",
        "phase.dat",
        "event.dat",
        "dt.ct",
        "dt.cc",
        "hypoDD.inp",
        "hypoDD.reloc",
        "event_ids.csv",
        "relocations.parquet",
    ):
        assert (out / name).is_file(), name
    table = pd.read_parquet(out / "relocations.parquet")
    assert len(table) == 20 and set(table.event_id) == set(loc.event_id)
    flags = table.set_index("event_id").flag
    assert flags[loc.event_id.iloc[-1]] == "not_linked"
    assert flags[loc.event_id.iloc[-2]] == "not_located"
    kept = table.set_index("event_id").loc[loc.event_id.iloc[-1]]
    assert kept.latitude == pytest.approx(loc.latitude.iloc[-1])  # HypoInverse location kept
    assert (flags == "relocated").sum() >= 16
    assert entry["counts"]["relocated"] == (flags == "relocated").sum()
    assert run.read_manifest()["relocation"]["counts"]["dt_cc_p"] > 0

    # dt.cc against the true differential travel times
    ids = pd.read_csv(out / "event_ids.csv").set_index("hypodd_id").event_id
    events, _ = fmt.read_phase_dat(out / "phase.dat")
    origin = events.set_index("hypodd_id").origin_time
    arrivals = scenario.arrivals.set_index(["event_id", "station", "phase"]).time
    cc = fmt.read_dt_cc(out / "dt.cc")
    true = [
        (
            (arrivals[(ids[a], s, p)] - origin[a]) - (arrivals[(ids[b], s, p)] - origin[b])
        ).total_seconds()
        for a, b, s, p in zip(cc.id1, cc.id2, cc.station, cc.phase, strict=True)
    ]
    assert np.quantile(np.abs(cc.dt - np.array(true)), 0.95) < 0.005

    relocated = table[table.relocated]
    start = loc[loc.event_id.isin(relocated.event_id)]
    before = np.median(relative_errors_km(scenario.truth, start))
    after = np.median(relative_errors_km(scenario.truth, relocated))
    assert after < 0.5 * before
    # absolute: no worse epicentres, origin times those of the same events
    truth = scenario.truth.set_index("event_id").loc[relocated.event_id]
    start = start.set_index("event_id").loc[relocated.event_id]
    kx = np.cos(np.radians(truth.latitude.to_numpy()))

    def epicentral_km(a: pd.DataFrame) -> np.ndarray:
        dy = a.latitude.to_numpy() - truth.latitude.to_numpy()
        dx = (a.longitude.to_numpy() - truth.longitude.to_numpy()) * kx
        return KM_PER_DEG * np.hypot(dx, dy)

    assert np.median(epicentral_km(relocated)) <= np.median(epicentral_km(start))
    late = (relocated.origin_time.to_numpy() - truth.origin_time.to_numpy()) / pd.Timedelta("1s")
    assert np.abs(late).max() < 0.5


def test_output_readers_on_example1_reference(shared):
    reloc = fmt.read_reloc(shared(*EXAMPLE, "hypoDD.reloc"))
    assert len(reloc) == 16 and reloc.cluster_id.eq(1).all()
    first = reloc.iloc[0]
    assert first.hypodd_id == 38542 and first.latitude == pytest.approx(37.878642)
    assert str(first.origin_time) == "1985-01-24 02:19:58.740000+00:00"
    sta = fmt.read_sta(shared(*EXAMPLE, "hypoDD.sta"))
    assert sta.station.iloc[1] == "NCCAI" and sta.n_ct_p.iloc[1] == 91
    res = fmt.read_res(shared(*EXAMPLE, "hypoDD.res"))
    assert set(res.data_type) <= {1, 2, 3, 4}
    assert res.iloc[0].station == "NCCAI" and res.iloc[0].residual_ms == pytest.approx(1.394783)
    loc = fmt.read_loc(shared(*EXAMPLE, "hypoDD.loc"))
    assert set(loc.hypodd_id) == set(reloc.hypodd_id)


def test_an_engine_failure_keeps_the_hypoinverse_locations_and_says_so(tmp_path):
    """HypoDD past its time limit (the same inputs would fail again): the stage ends with the
    HypoInverse locations, flags the linked events ``hypodd_failed`` and records the failure
    where the report and the terminal read it."""
    from pipeline.relocation.stage import ENGINE_FAILURE
    from pipeline.report.data_quality import data_gaps

    model = load_velocity_model("tottori")
    scenario = make_cluster(model, n_events=12, n_stations=8, seed=7)
    run = RunDir(tmp_path / "run")
    write_run(run, scenario)
    cfg = RelocationConfig(engine="python", timeout_s=0.001)
    entry = relocate(run, cfg, model)

    table = pd.read_parquet(run.root / "relocation" / "relocations.parquet")
    assert len(table) == 12 and not table.relocated.any()
    assert set(table.flag) == {"hypodd_failed"}
    start = scenario.locations.set_index("event_id").loc[table.event_id]
    assert np.allclose(table.latitude, start.latitude) and np.allclose(
        table.depth_km, start.depth_km
    )
    assert entry["counts"]["hypodd_failed"] == 12 and entry["counts"]["relocated"] == 0
    failure = entry["details"]["failures"][ENGINE_FAILURE]
    assert "exceeded relocation.timeout_s = 0.001 s" in failure
    assert failure.endswith("HypoInverse locations kept")
    assert data_gaps(run)[ENGINE_FAILURE] == f"relocation: {failure}"


def test_a_window_over_a_data_gap_is_not_correlated(tmp_path):
    """Two events whose P windows each hold a data gap (filled with zeros, on a trace with a
    DC offset): the filtered steps correlated with each other (cc ~1, a wrong dt); such
    windows are left out, while a clean pair of the same station still correlates."""
    from obspy import Stream, Trace, UTCDateTime

    from pipeline.relocation.params import CrossCorrelationConfig
    from pipeline.relocation.xcorr import StationInfo, cross_correlation_times

    rate, start = 100.0, UTCDateTime("2000-10-08T00:00:00")
    t = np.arange(int(500 * rate)) / rate
    data = 5000.0 + np.random.default_rng(1).normal(0, 1.0, t.size)
    picks = {1: 100.0, 2: 200.0, 3: 300.0, 4: 400.0}
    for pick in picks.values():
        data += 50 * np.exp(-(((t - pick - 0.2) / 0.05) ** 2)) * np.sin(2 * np.pi * 8 * t)
    keep = np.ones(t.size, bool)
    for gap_start in (300.6, 400.4):  # inside the P windows of events 3 and 4
        keep[(t >= gap_start) & (t < gap_start + 1.0)] = False
    edges = np.flatnonzero(np.diff(np.r_[0, keep.astype(int), 0]))
    header = {"network": "XX", "station": "ST1", "channel": "HHZ", "sampling_rate": rate}
    stream = Stream(
        Trace(data[a:b], header={**header, "starttime": start + a / rate})
        for a, b in zip(edges[::2], edges[1::2], strict=True)
    )
    folder = tmp_path / "2000" / "XX" / "ST1" / "HHZ.D"
    folder.mkdir(parents=True)
    stream.write(str(folder / "XX.ST1..HHZ.D.2000.282"), format="MSEED", encoding="FLOAT64")
    table = pd.DataFrame(
        {"hypodd_id": list(picks), "station": "ST1", "phase": "P",
         "time": [pd.Timestamp((start + p).datetime, tz="UTC") for p in picks.values()]}
    )  # fmt: skip
    origins = table.set_index("hypodd_id")["time"] - pd.Timedelta(seconds=5)
    pairs = pd.DataFrame({"id1": [1, 3], "id2": [2, 4]})
    info = StationInfo("ST1", "XX", "ST1", "", "HH", rate)
    dt = cross_correlation_times(pairs, table, origins, [info], tmp_path, CrossCorrelationConfig())
    assert dt[["id1", "id2"]].values.tolist() == [[1, 2]]
    assert dt["weight"].iloc[0] > 0.9 and abs(dt["dt"].iloc[0]) < 0.01


def test_a_3d_model_is_refused_before_the_package_engine_runs(tmp_path):
    """IMOD 9 ended in the package's "ValueError: invalid literal for int() ... 'vel3D.dat'"."""
    lines = _inp_lines()
    starts = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("*")]
    imod = starts[18]  # hypoDD_2, 9 file names, 3 control lines, 5 iteration sets, IMOD
    assert lines[imod].strip() == "1"
    three_d = ["9", "vel3D.dat", "37.88 -122.24 0", "2 9 4 1 1 1.35 0.0005 50"]
    (tmp_path / "hypoDD.inp").write_text("\n".join(lines[:imod] + three_d) + "\n")
    with pytest.raises(EqcatInputError, match="IMOD 9 is a velocity model the hypodd package"):
        relocate_dir(tmp_path, RelocationConfig(engine="python"))
