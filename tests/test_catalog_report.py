"""Catalog export (Parquet / CSV / QuakeML) and the HTML report on a generated run."""

from __future__ import annotations

import itertools
import json
import math
import re
import tracemalloc
from pathlib import Path

import browser
import numpy as np
import pandas as pd
import pytest
from obspy import UTCDateTime, read_events
from obspy.io.quakeml.core import _validate as validate_quakeml

from pipeline.catalog import (
    CATALOG_COLUMNS,
    arrival_residuals,
    assemble_catalog,
    export_catalog,
    quakeml_batches,
    write_quakeml,
)
from pipeline.completeness import CompletenessConfig
from pipeline.report.html import ReferenceCatalog, ReportConfig, write_report
from pipeline.rundir import RunDir

N_EVENTS = 600
N_RELOCATED = 450
T0 = pd.Timestamp("2000-10-06T04:30:00", tz="UTC")


def make_run(
    root, n_events: int = N_EVENTS, seed: int = 0, span_days: float = 30, picked_stations: int = 4
) -> RunDir:
    """A run with stations, picks, association, locations, relocations and magnitudes.

    Origin times follow an aftershock-like decay over ``span_days`` days from :data:`T0`.
    Each event has picks at its first ``picked_stations`` (at most 8) stations: P and S, the
    last station P only (4 stations: 7 picks; 8 stations: 15 picks).
    """
    rng = np.random.default_rng(seed)
    run = RunDir(root)
    stations = pd.DataFrame(
        {
            "network": "XX",
            "station": [f"S{i:02d}" for i in range(8)],
            "location": "",
            "channel_prefix": "HH",
            "latitude": 35.27 + 0.3 * np.cos(np.arange(8)),
            "longitude": 133.35 + 0.3 * np.sin(np.arange(8)),
            "elevation_m": 100.0,
            "sampling_rate": 100.0,
        }
    )
    stations.to_csv(run.path("waveforms", "stations.csv"), index=False)
    ids = [f"ev{k:05d}" for k in range(n_events)]
    # Aftershock-like times: dense at first (Omori-ish).
    days = np.sort(span_days * rng.random(n_events) ** 3)
    origin = T0 + pd.to_timedelta(days, unit="D")
    lat = 35.27 + 0.05 * rng.standard_normal(n_events)
    lon = 133.35 + 0.05 * rng.standard_normal(n_events)
    depth = np.clip(10 + 3 * rng.standard_normal(n_events), 1, 20)
    picks, assignments, arrivals = [], [], []
    for k, eid in enumerate(ids):
        for j in range(picked_stations):
            for phase in ("P", "S") if j < picked_stations - 1 else ("P",):
                pid = f"{eid}-S{j:02d}-{phase}"
                picks.append(
                    {
                        "pick_id": pid,
                        "network": "XX",
                        "station": f"S{j:02d}",
                        "location": "",
                        "phase": phase,
                        "time": origin[k]
                        + pd.Timedelta(seconds=(3 + j) * (1.7 if phase == "S" else 1)),
                        "probability": rng.uniform(0.3, 1.0),
                        "probability_std": rng.uniform(0, 0.1),
                        "time_std_s": rng.uniform(0.01, 0.2),
                        "picker": "eqt",
                        "model": "EqT_conservative",
                    }
                )
                assignments.append({"event_id": eid, "pick_id": pid, "phase": phase})
                arrivals.append({"pick_id": pid, "residual_s": rng.normal(0, 0.1), "weight": 1.0})
    pd.DataFrame(picks).to_parquet(run.path("picks", "picks.parquet"), index=False)
    pd.DataFrame(assignments).to_parquet(run.path("association", "assignments.parquet"))
    pd.DataFrame(
        {
            "event_id": ids,
            "origin_time": origin,
            "latitude": lat,
            "longitude": lon,
            "depth_km": depth,
        }
    ).to_parquet(run.path("association", "events.parquet"))
    locations = pd.DataFrame(
        {
            "event_id": ids,
            "origin_time": origin,
            "latitude": lat,
            "longitude": lon,
            "depth_km": depth,
            "erh": rng.uniform(0.2, 2, n_events),
            "erz": rng.uniform(0.5, 3, n_events),
            "rms": rng.uniform(0.02, 0.3, n_events),
            "gap": rng.uniform(40, 200, n_events),
        }
    )
    locations.loc[n_events - 2 :, ["latitude", "longitude", "depth_km"]] = np.nan  # not located
    locations.to_parquet(run.path("location", "locations.parquet"), index=False)
    pd.DataFrame(arrivals).to_parquet(run.path("location", "phase_residuals.parquet"))
    n_reloc = min(N_RELOCATED, n_events - 2)
    reloc = locations.iloc[:n_reloc][
        ["event_id", "origin_time", "latitude", "longitude", "depth_km"]
    ].copy()
    reloc["depth_km"] += 0.5
    reloc["relocated"] = True
    reloc.loc[reloc.index[:20], "relocated"] = False
    reloc.to_parquet(run.path("relocation", "relocations.parquet"), index=False)
    # Gutenberg–Richter magnitudes (b = 1) complete above 1.0; 5 % without magnitude.
    mags = 0.95 + rng.exponential(1 / math.log(10), n_events)
    keep = rng.random(n_events) > 0.05
    keep[0] = True  # the event with station magnitudes
    pd.DataFrame(
        {
            "event_id": np.array(ids)[keep],
            "magnitude": mags[keep],
            "magnitude_mad": 0.1,
            "n_stations": 4,
            "magnitude_type": "ML",
        }
    ).to_parquet(run.path("magnitude", "magnitudes.parquet"), index=False)
    pd.DataFrame(
        {
            "event_id": ids[0],
            "network": "XX",
            "station": ["S00", "S01"],
            "location": "",
            "pick_id": [f"{ids[0]}-S00-S", f"{ids[0]}-S01-S"],
            "distance_km": [10.0, 20.0],
            "amplitude": [0.5, 0.3],
            "amplitude_unit": "mm",
            "amplitude_time": origin[0] + pd.Timedelta(seconds=6),
            "n_components": 2,
            "station_magnitude": [mags[0] - 0.05, mags[0] + 0.05],
        }
    ).to_parquet(run.path("magnitude", "station_magnitudes.parquet"), index=False)
    return run


def test_export_catalog(tmp_path):
    n = 200
    run = make_run(tmp_path / "run", n_events=n)
    # The last two events are not located; the associator gave the second-last an origin.
    events_path = run.root / "association" / "events.parquet"
    events = pd.read_parquet(events_path)
    events.loc[n - 1, ["latitude", "longitude", "depth_km"]] = np.nan
    events.to_parquet(events_path)
    entry = export_catalog(run)
    cat = pd.read_parquet(run.root / "catalog" / "catalog_all.parquet")
    assert list(cat.columns) == CATALOG_COLUMNS
    assert len(cat) == n - 1 and entry["counts"]["left_out_no_hypocentre"] == 1
    assert entry["counts"]["events_all"] == n - 1
    # The default catalog holds the reliable classes; the associator-only event is class D.
    default = pd.read_parquet(run.root / "catalog" / "catalog.parquet")
    assert list(default.columns) == CATALOG_COLUMNS
    assert (
        default["event_id"].tolist()
        == cat.loc[cat.quality_class.isin(["A", "B"]), "event_id"].tolist()
    )
    assert entry["counts"]["events"] == len(default) == n - 2
    assert (cat.loc[cat.location_stage == "hypodd", "quality_class"] == "A").all()
    assert (cat["n_stations"] > 0).all()
    assert entry["counts"]["events_association"] == 1
    assert cat["origin_time"].is_monotonic_increasing
    assert str(cat["origin_time"].dtype) == "datetime64[ns, UTC]"
    stages = cat["location_stage"].value_counts()
    # The relocations hold every located event; 20 are flagged as not moved by HypoDD.
    assert stages["hypodd"] == n - 2 - 20 and stages["hypoinverse"] == 20
    fallback = cat.set_index("event_id").loc[f"ev{n - 2:05d}"]
    assert fallback["location_stage"] == "association" and fallback["quality_class"] == "D"
    assert fallback["latitude"] == pytest.approx(events.loc[n - 2, "latitude"])
    assert fallback["depth_km"] == pytest.approx(events.loc[n - 2, "depth_km"])
    assert np.isnan(
        fallback[["horizontal_error_km", "vertical_error_km", "rms_s"]].astype(float)
    ).all()
    reloc = cat.set_index("event_id").loc["ev00100"]
    loc = pd.read_parquet(run.root / "location" / "locations.parquet").set_index("event_id")
    assert reloc["depth_km"] == pytest.approx(loc.loc["ev00100", "depth_km"] + 0.5)
    assert reloc["horizontal_error_km"] == pytest.approx(loc.loc["ev00100", "erh"])
    assert (cat["n_p"] == 4).all() and (cat["n_s"] == 3).all()
    assert cat["magnitude"].notna().mean() > 0.9
    assert set(cat.loc[cat["magnitude"].notna(), "magnitude_type"]) == {"ML"}

    csv = pd.read_csv(run.root / "catalog" / "catalog_all.csv")
    assert list(csv.columns) == CATALOG_COLUMNS and len(csv) == len(cat)
    assert pd.to_datetime(csv["origin_time"], utc=True).equals(cat["origin_time"].dt.floor("us"))
    for column in ("latitude", "longitude"):  # to about 1 m (6 significant digits: 90 m)
        assert np.abs(csv[column] - cat[column]).max() <= 0.5e-5 + 1e-12
    assert len(pd.read_csv(run.root / "catalog" / "catalog.csv")) == len(default)

    qml = read_events(str(run.root / "catalog" / "catalog.xml"))
    assert validate_quakeml(str(run.root / "catalog" / "catalog.xml"))  # QuakeML 1.2 schema
    assert len(qml) == len(default)
    assert not [e for e in qml if e.preferred_origin().evaluation_status == "preliminary"]
    assert {c.text for e in qml for c in e.preferred_origin().comments} <= {
        "quality_class=A",
        "quality_class=B",
    }
    first = next(e for e in qml if str(e.resource_id).endswith("/ev00000"))
    origin = first.preferred_origin()
    assert origin.depth == pytest.approx(cat.iloc[0]["depth_km"] * 1000, rel=1e-6)
    assert origin.origin_uncertainty.horizontal_uncertainty == pytest.approx(
        1000 * cat.iloc[0]["horizontal_error_km"]
    )
    assert origin.depth_errors.uncertainty > 0
    assert len(first.picks) == 7 and len(origin.arrivals) == 7
    assert all(p.time_errors.uncertainty > 0 for p in first.picks)
    assert first.preferred_origin().method_id.id.endswith("/hypoinverse")
    assert all(a.time_residual is not None for a in origin.arrivals)  # HypoInverse's
    relocated = next(e for e in qml if e.preferred_origin().method_id.id.endswith("/hypodd"))
    assert relocated.preferred_origin().arrivals  # HypoInverse's residuals are not the
    assert all(a.time_residual is None for a in relocated.preferred_origin().arrivals)  # HypoDD
    mag = first.preferred_magnitude()
    assert mag.magnitude_type == "ML" and len(first.station_magnitudes) == 2
    assert len(first.amplitudes) == 2 and first.amplitudes[0].unit == "m"


def _quakeml_tables(run: RunDir) -> tuple[pd.DataFrame, ...]:
    """The catalog table of ``run`` and the tables its QuakeML export reads: picks,
    assignments, residuals, station magnitudes (the arguments of ``quakeml_batches``)."""
    catalog, _, _ = assemble_catalog(run)
    return (
        catalog,
        pd.read_parquet(run.root / "picks" / "picks.parquet"),
        pd.read_parquet(run.root / "association" / "assignments.parquet"),
        arrival_residuals(run),
        pd.read_parquet(run.root / "magnitude" / "station_magnitudes.parquet"),
    )


def test_quakeml_batches_make_the_one_catalog_document(tmp_path):
    """Events written 3 at a time are the document ObsPy writes for all of them at once."""
    tables = _quakeml_tables(make_run(tmp_path / "run", n_events=11))
    n_events = len(tables[0])
    made = UTCDateTime("2024-01-01T00:00:00")
    batches = quakeml_batches(*tables, batch_events=3, creation_time=made)
    first = next(batches)  # built when asked for: one batch at a time
    assert len(first) == 3
    counts = write_quakeml(tmp_path / "batched.xml", itertools.chain([first], batches))
    assert counts == (n_events, 7 * n_events)
    (whole,) = quakeml_batches(*tables, batch_events=n_events, creation_time=made)
    whole.write(str(tmp_path / "whole.xml"), format="QUAKEML")  # ObsPy's writer, one catalog
    assert (tmp_path / "batched.xml").read_bytes() == (tmp_path / "whole.xml").read_bytes()

    assert validate_quakeml(str(tmp_path / "batched.xml"))  # QuakeML 1.2 schema
    batched, reference = (read_events(str(tmp_path / n)) for n in ("batched.xml", "whole.xml"))
    assert batched == reference and len(batched) == n_events
    pick_ids = [p.resource_id.id for e in batched for p in e.picks]
    assert len(set(pick_ids)) == len(pick_ids) == 7 * n_events
    for event in batched:  # every arrival refers to a pick of its own event
        origin = event.preferred_origin()
        assert {a.pick_id for a in origin.arrivals} == {p.resource_id for p in event.picks}
        assert all(a.pick_id.get_referred_object() in event.picks for a in origin.arrivals)
    magnitudes = [e.preferred_magnitude() for e in batched]
    assert [m.mag if m else None for m in magnitudes] == [
        m.mag if m else None for m in (e.preferred_magnitude() for e in reference)
    ]
    assert sum(m is not None for m in magnitudes) == tables[0]["magnitude"].notna().sum()


def test_quakeml_without_events_and_mismatched_batches(tmp_path):
    """An empty catalog is a valid document without events; batches of two different
    catalogs (creation times) are refused and leave no file."""
    catalog, *others = _quakeml_tables(make_run(tmp_path / "run", n_events=8))
    empty = tmp_path / "empty.xml"
    assert write_quakeml(empty, quakeml_batches(catalog.iloc[0:0], *others)) == (0, 0)
    assert validate_quakeml(str(empty)) and len(read_events(str(empty))) == 0
    mixed = itertools.chain(
        quakeml_batches(catalog.iloc[:3], *others, creation_time=UTCDateTime(2024, 1, 1)),
        quakeml_batches(catalog.iloc[3:], *others, creation_time=UTCDateTime(2024, 1, 2)),
    )
    with pytest.raises(ValueError, match="batches differ outside their events"):
        write_quakeml(tmp_path / "mixed.xml", mixed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.xml", "run"]


def test_quakeml_export_memory_follows_the_batch(tmp_path):
    """Python memory at the peak of the QuakeML export, 5 events at a time, is the same for
    20 and 60 events, and under half of that with all 60 in one ObsPy Catalog."""

    def peak_bytes(n_events: int, batch_events: int) -> int:
        tables = _quakeml_tables(make_run(tmp_path / f"run{n_events}", n_events=n_events))
        tracemalloc.start()
        try:
            write_quakeml(tmp_path / "c.xml", quakeml_batches(*tables, batch_events=batch_events))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large, whole = peak_bytes(20, 5), peak_bytes(60, 5), peak_bytes(60, 60)
    assert large < 1.25 * small and large < 0.5 * whole, (small, large, whole)


def test_report_renders_every_figure(tmp_path):
    run = make_run(tmp_path / "run")
    export_catalog(run)
    ref_csv = tmp_path / "jma.csv"
    rng = np.random.default_rng(3)
    pd.DataFrame(
        {
            "magnitude": 1.45 + rng.exponential(1 / math.log(10), 400),
            "horizontal_error_km": np.r_[np.full(399, 0.8), np.nan],
            "rms_s": 0.25,
        }
    ).to_csv(ref_csv, index=False)
    cfg = ReportConfig(
        completeness=CompletenessConfig(window_events=200, window_step=100, n_bootstrap=100),
        reference=ReferenceCatalog(name="JMA", path=ref_csv),
    )
    index = write_report(run, cfg)
    page = index.read_text()
    sources = re.findall(r"<img src='([^']+)'", page)
    assert len(sources) == 9
    for src in sources:
        assert not src.startswith(("http", "/")) and (index.parent / src).stat().st_size > 5000
    numbers = json.loads((index.parent / "completeness.json").read_text())
    comp = numbers["completeness"]
    assert comp["estimable"] and abs(comp["b"] - 1.0) < 0.15
    summary = numbers["summary"]
    assert comp["n_valid"] == summary["events_with_magnitude"]
    assert comp["n_nan"] == summary["events"] - summary["events_with_magnitude"] > 0
    assert set(comp["mc"]) == {"maxc", "gft90", "gft95", "mbs"}
    assert len(comp["time_windows"]) >= 4
    assert numbers["reference"]["n_events"] == 400
    assert abs(numbers["reference"]["mc"] - 1.5) <= 0.2
    assert "JMA" in page and "b-value" in page and "http" not in page
    # location quality side by side: the reference's medians (NaN ignored), absent columns "–"
    ref_quality = numbers["reference"]["location_quality"]
    assert ref_quality["horizontal_error_km"] == 0.8 and ref_quality["rms_s"] == 0.25
    assert ref_quality["vertical_error_km"] is None and ref_quality["relocated_fraction"] is None
    own = numbers["summary"]["location_quality"]
    assert own["horizontal_error_km"] is not None and 0 <= own["relocated_fraction"] <= 1
    assert "median horizontal error (km)" in page and "0.80" in page


def test_report_with_too_few_events(tmp_path):
    run = make_run(tmp_path / "run", n_events=30)
    index = write_report(run)
    numbers = json.loads((index.parent / "completeness.json").read_text())
    assert not numbers["completeness"]["estimable"]
    assert "not estimable" in numbers["completeness"]["reason"]
    assert "not estimable" in index.read_text()


def test_report_screenshot_in_headless_chromium(tmp_path):
    run = make_run(tmp_path / "run")
    index = write_report(run, ReportConfig(completeness=CompletenessConfig(n_bootstrap=50)))
    image = browser.screenshot(index, tmp_path / "shot.png")
    assert image.shape[:2] == (3000, 1200)
    non_white = (image < 245).any(axis=2).mean()
    colours = np.unique(image.reshape(-1, 3), axis=0).shape[0]
    assert non_white > 0.05, non_white
    assert colours > 500, colours  # figures, not just text on white


def test_mc_b_time_plot_takes_whole_second_window_times(tmp_path):
    """Window times are ISO strings with and without fractional seconds (full replica bug)."""
    from pipeline.completeness import CompletenessResult
    from pipeline.report.figures import plot_mc_b_time

    times = ["2000-10-06T12:12:41.250000+00:00", "2000-10-06T12:12:42+00:00"]
    windows = [
        {"median_time": t, "mc": 1.5, "b": 1.0, "b_std": 0.1, "n_events": 500} for t in times
    ]
    result = CompletenessResult(
        estimable=True, reason=None, n_input=1000, n_nan=0, n_valid=1000, delta_m=0.1,
        config={"mc_method": "maxc"}, time_windows=windows,
    )  # fmt: skip
    path = plot_mc_b_time(result, tmp_path / "mc_b_time.png")
    assert path.stat().st_size > 10_000


def test_quality_classes_follow_the_documented_limits():
    from pipeline.catalog import quality_classes

    good = {
        "location_stage": "hypoinverse",
        "n_p": 5,
        "n_s": 4,
        "n_stations": 5,
        "azimuthal_gap_deg": 120.0,
        "rms_s": 0.1,
        "horizontal_error_km": 0.5,
        "vertical_error_km": 1.0,
    }
    rows = [
        good,  # A
        good | {"location_stage": "hypodd", "n_p": 2, "n_s": 1, "azimuthal_gap_deg": 300.0},  # A
        good | {"vertical_error_km": 20.0},  # B: A's ERZ limit 2 km fails, B has none
        good | {"n_p": 3, "n_s": 2, "n_stations": 3},  # B: 5 readings, 3 stations
        good | {"azimuthal_gap_deg": 250.0},  # C: gap over 240
        good | {"n_p": 2, "n_s": 2},  # C: 4 readings, nearest station unknown
        good | {"n_p": 2, "n_s": 2, "nearest_station_km": 15.0},  # B: 4 readings, a station near
        good | {"n_p": 2, "n_s": 2, "nearest_station_km": 16.0},  # C: 4 readings, none near
        good | {"n_p": 2, "n_s": 1, "nearest_station_km": 3.0},  # C: 3 readings, even near
        good | {"nearest_station_km": 40.0},  # A: 9 readings need no near station
        good | {"rms_s": float("nan")},  # C: unknown RMS fails
        good | {"location_stage": "association"},  # D
    ]
    expected = ["A", "A", "B", "B", "C", "C", "B", "C", "C", "A", "C", "D"]
    assert list(quality_classes(pd.DataFrame(rows))) == expected


def test_an_empty_catalog_of_located_events_says_they_are_in_catalog_all(tmp_path):
    """Every event located but none of class A/B: the report said "none has a hypocentre"."""
    from pipeline.report.data_quality import empty_catalog_reason

    run = RunDir(tmp_path / "run")
    picks = pd.DataFrame({"network": ["XX"] * 3, "station": ["A", "B", "C"]})
    run.record_stage("association", counts={"events": 4})
    assert empty_catalog_reason(run, None, picks, 0) == (
        "4 associated event(s), but none has a hypocentre"
    )
    run.record_stage("catalog", counts={"events": 0, "events_all": 3})
    reason = empty_catalog_reason(run, None, picks, 0)
    assert reason == (
        "3 event(s) have a hypocentre, but none is of quality class A or B; "
        "catalog/catalog_all.csv holds them all"
    )
    assert empty_catalog_reason(run, None, picks, 2) is None


def test_an_empty_catalog_of_unassociated_picks_names_their_phases(tmp_path):
    """All-S (or all-P) picks: the report said only "too few stations with coinciding picks"."""
    from pipeline.report.data_quality import empty_catalog_reason

    run = RunDir(tmp_path / "run")
    picks = pd.DataFrame({"network": "XX", "station": ["A", "B", "C", "D"], "phase": "S"})
    assert empty_catalog_reason(run, None, picks, 0) == (
        "4 picks (0 P, 4 S) at 4 station(s), but the associator formed no event from them "
        "(no P pick at all; the associator's minimums count P and S picks)"
    )
    mixed = picks.assign(phase=["P", "S", "P", "S"])
    assert empty_catalog_reason(run, None, mixed, 0).endswith(
        "(2 P, 2 S) at 4 station(s), but the associator formed no event from them "
        "(too few stations with coinciding picks)"
    )


@pytest.mark.parametrize(
    ("association", "phases", "expected"),
    [
        (  # P at 2 stations, S at 4: the time associator needs P at min_stations = 3
            {"associator": "time"},
            ["P", "P", "S", "S", "S", "S"],
            "(2 stations with P picks in all, fewer than the 3 an event of the time associator "
            "needs (association.min_stations = 3))",
        ),
        (
            {"associator": "pyocto"},
            ["S"] * 6,
            "(0 stations with P picks in all, fewer than the 3 an event of the pyocto associator "
            "needs (association.pyocto.n_p_picks = 3))",
        ),
        (
            {"associator": "pyocto", "pyocto": {"n_p_picks": 0, "n_s_picks": 0}},
            ["P"] * 6,
            "(0 stations with both P and S picks in all, fewer than the 1 an event of the pyocto "
            "associator needs (association.pyocto.n_p_and_s_picks = 1))",
        ),
        (  # every minimum within reach: the picks did not coincide
            {"associator": "time"},
            ["P", "P", "P", "S", "S", "S"],
            "(too few stations with coinciding picks)",
        ),
    ],
)
def test_an_empty_catalog_names_the_minimum_no_event_can_reach(
    tmp_path, association, phases, expected
):
    """P picks at fewer stations than an event needs said only "too few stations with
    coinciding picks"; now the report and the build's last lines name the count and the
    setting."""
    from pipeline.association import AssociationConfig
    from pipeline.report.data_quality import DataQuality, empty_catalog_reason, terminal_lines

    run = RunDir(tmp_path / "run")
    stations = ["A", "B", "C", "D", "E", "F"]
    station = stations[:2] + stations[:4] if phases.count("P") == 2 else stations
    picks = pd.DataFrame({"network": "XX", "station": station, "phase": phases})
    config = AssociationConfig.model_validate(association).model_dump(mode="json")
    run.record_stage("association", counts={"events": 0}, details={"config": config})
    reason = empty_catalog_reason(run, None, picks, 0)
    assert reason.endswith("but the associator formed no event from them " + expected)
    quality = DataQuality(pd.DataFrame(), empty_reason=reason).to_dict()
    report = run.root / "report"
    report.mkdir()
    (report / "completeness.json").write_text(json.dumps({"summary": {"data_quality": quality}}))
    assert terminal_lines(run)[0] == f"catalog: no events: {reason}"


def test_a_long_failure_list_folds_in_the_summary_and_loses_none():
    from pipeline.report.data_quality import TERMINAL_MAX_NAMED, DataQuality, failures_cell

    failed = {f"XX.S{i:02d}.2000-10-08": "picking: every component dead" for i in range(20)}
    cell = failures_cell(failed, DataQuality(pd.DataFrame(), problems={"XX.S99": "gaps"}))
    head, details = cell.split("<details>")
    assert head.count("every component dead") == TERMINAL_MAX_NAMED - 1  # data problems first
    assert "data problems at 1 station(s): XX.S99" in head
    assert f"and {20 - TERMINAL_MAX_NAMED + 1} more</summary>" in details
    assert all(label in cell for label in failed)
    assert failures_cell({}, DataQuality(pd.DataFrame())) == "none"


def test_picks_without_mc_dropout_show_no_spread_figure_and_say_why(tmp_path):
    """Without MC dropout every ``probability_std`` is 0 and ``time_std_s`` NaN: no spike-at-zero
    histogram, no uncertainty figure, a caption that says why; a rerun removes the old figure."""
    from pipeline.report.html import NO_MC_NOTE

    run = make_run(tmp_path / "run")
    cfg = ReportConfig(completeness=CompletenessConfig(n_bootstrap=20))
    index = write_report(run, cfg)
    figures_dir = index.parent / "figures"
    assert (figures_dir / "pick_uncertainty.png").is_file() and NO_MC_NOTE not in index.read_text()

    picks_path = run.path("picks", "picks.parquet")
    picks = pd.read_parquet(picks_path).assign(probability_std=0.0, time_std_s=np.nan)
    picks.to_parquet(picks_path, index=False)
    page = write_report(run, cfg).read_text()
    assert NO_MC_NOTE in page
    assert "pick_uncertainty.png" not in page and "probability std" not in page
    assert not (figures_dir / "pick_uncertainty.png").exists()
    listed = json.loads((index.parent / "completeness.json").read_text())["figures"]
    assert sorted(listed) == sorted(f"figures/{p.name}" for p in figures_dir.glob("*.png"))


def test_a_font_list_cached_by_another_matplotlib_gets_the_bundled_fonts(monkeypatch):
    """A per-user font cache written without matplotlib's own fonts (a distribution's
    matplotlib, a deleted venv) made every math label log "findfont: … not found"."""
    import copy

    import matplotlib
    from matplotlib import font_manager

    from pipeline.report.figures import register_bundled_fonts

    stale = copy.deepcopy(font_manager.fontManager)
    data = str(Path(matplotlib.get_data_path()).resolve())
    stale.ttflist = [f for f in stale.ttflist if not str(Path(f.fname).resolve()).startswith(data)]
    monkeypatch.setattr(font_manager, "fontManager", stale)
    with pytest.raises(ValueError):
        stale.findfont("cmsy10", fallback_to_default=False)
    assert register_bundled_fonts() >= 30  # DejaVu, STIX and Computer Modern faces
    assert str(Path(stale.findfont("cmsy10", fallback_to_default=False)).resolve()).startswith(data)
    assert register_bundled_fonts() == 0
