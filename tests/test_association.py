"""Association stage: both associators on generated picks, shared output rules, bad input."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest

from pipeline.association import (
    AssociationConfig,
    AssociationInputError,
    associate,
    associate_picks,
)
from pipeline.association.geometry import LocalProjection, StationGeometry
from pipeline.association.octo import (
    association_cutoff_km,
    velocity_model_for,
    write_travel_time_table,
)
from pipeline.association.params import PyOctoConfig
from pipeline.association.stage import ASSIGNMENT_SCHEMA, EVENT_SCHEMA, duplicate_picks
from pipeline.association.synthetic import generate, score
from pipeline.report.data_quality import data_gaps, terminal_lines
from pipeline.rundir import RunDir
from pipeline.velocity import (
    VelocityModel,
    load_velocity_model,
    travel_time,
    travel_time_below_surface,
)


@pytest.fixture(scope="module")
def tottori() -> VelocityModel:
    return load_velocity_model("tottori")


@pytest.fixture(scope="module")
def scenario(tottori):
    """120 events, one per 10 s on average, 18 stations within 40 km of 35.27N 133.35E."""
    return generate(tottori, 120, interval_s=10.0, seed=3)


def _write_run(root, scenario_, picks=None) -> RunDir:
    run = RunDir(root)
    (scenario_.picks if picks is None else picks).to_parquet(run.path("picks", "picks.parquet"))
    scenario_.stations.to_csv(run.path("waveforms", "stations.csv"), index=False)
    return run


@pytest.fixture(scope="module", params=["time", "pyocto"])
def result(request, tmp_path_factory, tottori, scenario):
    """(associator, run, manifest entry, events, assignments) for each associator."""
    run = _write_run(tmp_path_factory.mktemp(request.param), scenario)
    entry = associate(run, AssociationConfig(associator=request.param), tottori)
    events = pd.read_parquet(run.root / "association" / "events.parquet")
    assignments = pd.read_parquet(run.root / "association" / "assignments.parquet")
    return request.param, run, entry, events, assignments


def test_recovers_generated_events(result, scenario):
    name, _, _, events, assignments = result
    scores = score(scenario, events, assignments, min_stations=4)
    print(f"\n{name}: " + ", ".join(f"{k}={v:.3f}" for k, v in scores.items()))
    assert scores["event_recall"] >= 0.95
    assert scores["event_precision"] >= 0.95
    assert scores["pick_precision"] >= 0.9
    assert scores["pick_recall"] >= 0.9
    assert scores["origin_error_median_s"] < 0.5


def test_output_tables_follow_the_contract(result, scenario):
    name, run, entry, events, assignments = result
    assert list(events.columns) == list(EVENT_SCHEMA)
    assert list(assignments.columns) == list(ASSIGNMENT_SCHEMA)
    assert str(events["origin_time"].dtype) == "datetime64[ns, UTC]"
    assert events["event_id"].is_unique and events["event_id"].str.match(r"^ev\d{6}$").all()
    assert events["origin_time"].is_monotonic_increasing
    assert (events["associator"] == name).all()
    assert set(assignments["event_id"]) == set(events["event_id"])
    # Every pick is assigned at most once, and the counts add up.
    assert assignments["pick_id"].is_unique
    assert set(assignments["pick_id"]) <= set(scenario.picks["pick_id"])
    counts = entry["counts"]
    assert counts["assigned"] == len(assignments)
    assert counts["assigned"] + counts["unassigned"] == len(scenario.picks)
    assert counts["events"] == len(events)
    assert run.read_manifest()["association"]["counts"] == counts
    # At most one P and one S per station and event; n_p/n_s/n_stations agree.
    picks = scenario.picks.set_index("pick_id")
    joined = assignments.join(picks[["station"]], on="pick_id")
    assert not joined.duplicated(["event_id", "station", "phase"]).any()
    per_event = joined.groupby("event_id").agg(
        n_p=("phase", lambda p: int((p == "P").sum())),
        n_s=("phase", lambda p: int((p == "S").sum())),
        n_stations=("station", "nunique"),
    )
    ev = events.set_index("event_id")[["n_p", "n_s", "n_stations"]]
    pd.testing.assert_frame_equal(ev, per_event.loc[ev.index], check_dtype=False)
    assert (events["n_stations"] >= 3).all()
    # Locations lie near the generated aftershock zone.
    assert events["latitude"].between(34.8, 35.8).all()
    assert events["depth_km"].between(0, 30).all()
    assert assignments["residual_s"].abs().median() < 0.3


def test_uncertain_picks_are_rejected_and_counted(result, scenario):
    _, _, entry, _, assignments = result
    gate = AssociationConfig().max_probability_std
    uncertain = scenario.picks.loc[scenario.picks["probability_std"] > gate, "pick_id"]
    assert len(uncertain) > 0
    assert entry["counts"]["rejected_uncertain"] == len(uncertain)
    assert not set(uncertain) & set(assignments["pick_id"])


def test_higher_probability_pick_wins_a_station_conflict(tmp_path, tottori):
    scenario_ = generate(tottori, 5, interval_s=30.0, false_fraction=0.0, seed=5)
    picks = scenario_.picks.copy()
    first_p = picks[picks["phase"] == "P"].iloc[0]
    rival = first_p.copy()
    rival["pick_id"] = "rival"
    rival["time"] = first_p["time"] + pd.Timedelta("50ms")
    rival["probability"] = 0.99
    rival["probability_std"] = 0.0
    picks.loc[picks["pick_id"] == first_p["pick_id"], "probability"] = 0.35
    picks = pd.concat([picks, rival.to_frame().T], ignore_index=True).astype(picks.dtypes)
    run = _write_run(tmp_path, scenario_, picks)
    associate(run, AssociationConfig(associator="time"), tottori)
    assigned = set(pd.read_parquet(run.root / "association" / "assignments.parquet")["pick_id"])
    assert "rival" in assigned
    assert first_p["pick_id"] not in assigned


def test_unknown_station_is_named(tmp_path, tottori, scenario):
    picks = scenario.picks.copy()
    picks.loc[picks.index[:3], "station"] = "ZZZ9"
    run = _write_run(tmp_path, scenario, picks)
    with pytest.raises(AssociationInputError, match=r"stations\.csv: SY\.ZZZ9\."):
        associate(run, AssociationConfig(), tottori)


@pytest.mark.parametrize("associator", ["time", "pyocto"])
def test_empty_picks_give_empty_tables(tmp_path, tottori, scenario, associator):
    run = _write_run(tmp_path, scenario, scenario.picks.iloc[:0])
    entry = associate(run, AssociationConfig(associator=associator), tottori)
    events = pd.read_parquet(run.root / "association" / "events.parquet")
    assignments = pd.read_parquet(run.root / "association" / "assignments.parquet")
    assert events.empty and list(events.columns) == list(EVENT_SCHEMA)
    assert assignments.empty and list(assignments.columns) == list(ASSIGNMENT_SCHEMA)
    assert entry["counts"] == {
        "picks": 0,
        "duplicates": 0,
        "rejected_uncertain": 0,
        "assigned": 0,
        "unassigned": 0,
        "events": 0,
    }


def test_bad_phase_is_reported(tmp_path, tottori, scenario):
    picks = scenario.picks.copy()
    picks.loc[picks.index[0], "phase"] = "Pg"
    run = _write_run(tmp_path, scenario, picks)
    with pytest.raises(AssociationInputError, match="phase.*Pg"):
        associate(run, AssociationConfig(), tottori)


def test_pyocto_table_matches_velocity_model(tmp_path, tottori):
    path = write_travel_time_table(tottori, 0.5, 20.0, 10.0, tmp_path / "tt.bin")
    raw = path.read_bytes()
    nx, nz, delta = struct.unpack("iid", raw[:16])
    times = np.frombuffer(raw[16:], dtype="<f8").reshape(2, nx, nz)
    assert (nx, nz, delta) == (42, 22, 0.5)
    for phase, table in zip("PS", times, strict=True):
        assert table[10, 6] == pytest.approx(float(travel_time(tottori, phase, 5.0, 3.0)))


def test_pyocto_constant_model_and_cached_table(tmp_path, tottori):
    constant = VelocityModel(
        name="halfspace",
        layer_tops_km=np.array([0.0]),
        vp_km_s=np.array([6.0]),
        vs_km_s=np.array([6.0 / 1.73]),
        vp_vs=1.73,
    )
    scenario_ = generate(constant, 30, interval_s=10.0, seed=7)
    run = _write_run(tmp_path, scenario_)
    associate(run, AssociationConfig(associator="pyocto"), constant)
    events = pd.read_parquet(run.root / "association" / "events.parquet")
    assignments = pd.read_parquet(run.root / "association" / "assignments.parquet")
    assert score(scenario_, events, assignments)["event_recall"] >= 0.95
    assert not list((run.root / "association").glob("pyocto_tt_*.bin"))  # 0-D: no table
    # A layered model writes its table once into the association folder.
    associate(run, AssociationConfig(associator="pyocto"), tottori)
    assert len(list((run.root / "association").glob("pyocto_tt_*.bin"))) == 1


def _square_network(side_km: float) -> StationGeometry:
    """Four stations at the corners of a square (local frame, km)."""
    return StationGeometry(
        ids=np.array(["XX.A.", "XX.B.", "XX.C.", "XX.D."], dtype=object),
        x_km=np.array([0.0, side_km, 0.0, side_km]),
        y_km=np.array([0.0, 0.0, side_km, side_km]),
        elevation_km=np.zeros(4),
        projection=LocalProjection(35.0, 133.0),
    )


def test_pyocto_cutoff_covers_the_asked_stations_everywhere(tmp_path, tottori):
    square = _square_network(10.0)
    cell = np.hypot(10.0, 10.0) / 100 / 2  # the rule's allowance between grid nodes
    # One station: the worst point is the centre; four: a corner, which must reach the far one.
    assert association_cutoff_km(square, 1) == pytest.approx(np.hypot(5.0, 5.0) + cell)
    assert association_cutoff_km(square, 4) == pytest.approx(np.hypot(10.0, 10.0) + cell)
    assert association_cutoff_km(square, 5) is None  # more than the network has
    assert association_cutoff_km(square, None) is None
    # PyOcto's model gets the distance (None: every station, PyOcto's own default).
    cfg = PyOctoConfig(association_cutoff_stations=2)
    model = velocity_model_for(tottori, square, cfg, tmp_path)
    assert model.association_cutoff_distance == pytest.approx(10.0 + cell)
    cfg = PyOctoConfig(association_cutoff_stations=None)
    assert velocity_model_for(tottori, square, cfg, tmp_path).association_cutoff_distance is None


def test_config_rejects_unknown_associator_and_keys():
    with pytest.raises(pydantic.ValidationError):
        AssociationConfig(associator="gamma")
    with pytest.raises(pydantic.ValidationError):
        AssociationConfig.model_validate({"min_station": 3})
    with pytest.raises(pydantic.ValidationError):
        AssociationConfig.model_validate({"pyocto": {"zlim_km": [10, 5]}})


@pytest.mark.parametrize("section, field", [("pyocto", "margin_km"), ("time", "grid_margin_km")])
def test_a_search_margin_beyond_the_travel_time_table_is_refused(section, field):
    """PyOcto with ``margin_km: 5000`` found no event at all on the generated picks (a silently
    empty catalog); a margin beyond the 400 km table's reach is refused, naming the field."""
    AssociationConfig.model_validate({section: {field: 400.0}})
    with pytest.raises(pydantic.ValidationError, match=f"{field} = 5000.0 km: at most 400 km"):
        AssociationConfig.model_validate({section: {field: 5000.0}})


def test_all_picks_over_the_std_gate_leave_everything_unassigned(tmp_path, tottori, scenario):
    picks = scenario.picks.assign(probability_std=0.5)
    run = _write_run(tmp_path, scenario, picks)
    entry = associate(run, AssociationConfig(associator="time"), tottori)
    assert entry["counts"]["events"] == 0
    # two generated false picks fall within 10 ms of a true pick of their station and phase
    assert entry["counts"]["duplicates"] == 2
    assert entry["counts"]["rejected_uncertain"] == len(picks) - 2
    assert entry["counts"]["unassigned"] == len(picks)
    assert pd.read_parquet(run.root / "association" / "events.parquet").empty


def test_oversized_time_grid_is_refused_with_advice(tmp_path, tottori, scenario):
    run = _write_run(tmp_path, scenario)
    cfg = AssociationConfig(time={"grid_spacing_km": 0.05})
    with pytest.raises(ValueError, match="grid_spacing_km"):
        associate(run, cfg, tottori)


def test_time_associator_separates_overlapping_events(tottori):
    """Pairs of events 3 s apart (P of the second among S of the first) stay apart.

    Each pair comes from one generated network; the second event's picks are shifted so its
    origin is 3 s after the first's. The time associator locates an event on its P and S
    picks while it forms, and gives every S pick to the event it fits best afterwards.
    """
    found, misassigned, n_picks = 0, 0, 0
    for seed in range(30):
        scenario_ = generate(tottori, 2, false_fraction=0.0, p_detect=0.8, s_detect=0.8, seed=seed)
        picks = scenario_.picks.copy()
        source = scenario_.pick_truth.loc[picks["pick_id"]].to_numpy()
        origins = scenario_.events["origin_time"]
        shift = origins.iloc[0] - origins.iloc[1] + pd.Timedelta(seconds=3.0)
        picks.loc[source == 1, "time"] += shift
        stations = scenario_.stations.assign(
            id=lambda t: t["network"] + "." + t["station"] + "." + t["location"].fillna("")
        )
        events, assignments, _ = associate_picks(
            picks.sort_values("time", ignore_index=True),
            stations[["id", "latitude", "longitude", "elevation_m"]],
            tottori,
            AssociationConfig(associator="time"),
            Path("unused-by-the-time-associator"),
        )
        truth = scenario_.pick_truth.loc[assignments["pick_id"]].to_numpy()
        majority = (
            pd.Series(truth)
            .groupby(assignments["event_id"].to_numpy())
            .agg(lambda s: s.mode().iloc[0])
        )
        found += len(events) == 2
        misassigned += int((truth != majority.loc[assignments["event_id"]].to_numpy()).sum())
        n_picks += len(picks)
    print(f"\npairs separated: {found}/30, misassigned picks: {misassigned}/{n_picks}")
    assert found >= 28
    assert misassigned <= 0.025 * n_picks


@pytest.mark.parametrize("associator", ["time", "pyocto"])
def test_a_station_beyond_the_travel_time_table_costs_nothing(tmp_path, tottori, associator):
    """A station 900 km from the others (beyond the 400 km travel-time table) with picks of
    its own stopped the time associator and the merge of split events with "ValueError:
    distance_km must lie in [0, 400.0] km"; now no time is predicted there, its picks stay
    unassigned and the other stations' events are found as before."""
    scenario_ = generate(tottori, 20, interval_s=30.0, seed=3)
    stations = scenario_.stations.copy()
    far = stations.iloc[[0]].assign(station="FAR", latitude=stations["latitude"].iloc[0] + 8.1)
    far_picks = scenario_.picks.head(10).assign(station="FAR")
    far_picks["pick_id"] = far_picks["pick_id"] + "_far"
    picks = pd.concat([scenario_.picks, far_picks], ignore_index=True)
    run = RunDir(tmp_path)
    picks.to_parquet(run.path("picks", "picks.parquet"))
    pd.concat([stations, far], ignore_index=True).to_csv(
        run.path("waveforms", "stations.csv"), index=False
    )
    cfg = AssociationConfig(associator=associator, merge_window_s=3.0)
    associate(run, cfg, tottori)
    events = pd.read_parquet(run.path("association", "events.parquet"))
    assignments = pd.read_parquet(run.path("association", "assignments.parquet"))
    assert not set(far_picks["pick_id"]) & set(assignments["pick_id"])
    result = score(scenario_, events, assignments.query("~pick_id.str.endswith('_far')"))
    assert result["event_recall"] >= 0.9 and result["pick_precision"] >= 0.9, result


def _pick_rows(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    """Picks of (station, phase, seconds after 2000-10-06 13:30, probability)."""
    t0 = pd.Timestamp("2000-10-06T13:30:00Z")
    return pd.DataFrame(
        {
            "pick_id": [f"p{i}" for i in range(len(rows))],
            "network": "SY",
            "station": [r[0] for r in rows],
            "location": "",
            "phase": [r[1] for r in rows],
            "time": [t0 + pd.Timedelta(seconds=r[2]) for r in rows],
            "probability": [r[3] for r in rows],
        }
    )


def test_duplicate_picks_are_same_station_and_phase_within_one_sample():
    picks = _pick_rows(
        [
            ("A", "P", 10.000, 0.5),  # p0: copy of p1 (5 ms), weaker
            ("A", "P", 10.005, 0.9),  # p1: kept
            ("A", "P", 10.014, 0.4),  # p2: 9 ms after p1: the same arrival
            ("A", "P", 10.500, 0.4),  # p3: another arrival
            ("A", "S", 10.005, 0.3),  # p4: other phase
            ("B", "P", 10.005, 0.3),  # p5: other station
            ("B", "P", 10.030, 0.3),  # p6: 25 ms later: a pick of its own
            ("C", "S", 20.000, 0.6),  # p7: equal copies: the earlier stays
            ("C", "S", 20.000, 0.6),  # p8
        ]
    )
    dup = duplicate_picks(picks)
    assert picks["pick_id"].to_numpy()[dup].tolist() == ["p0", "p2", "p8"]
    assert duplicate_picks(picks.iloc[::-1].reset_index(drop=True)).size == 3


@pytest.mark.parametrize("associator", ["time", "pyocto"])
def test_every_pick_twice_gives_the_events_once(tmp_path, tottori, associator):
    """Every pick of a picks table repeated 5 ms later: the time associator made every event
    twice (38 instead of 19) and PyOcto ran 40 times longer; now the copies are left out,
    counted, and named in the report's failed-or-skipped list and the terminal's data line."""
    scenario_ = generate(tottori, 20, interval_s=30.0, seed=5)
    cfg = AssociationConfig(associator=associator)
    once = associate(_write_run(tmp_path / "once", scenario_), cfg, tottori)
    copies = scenario_.picks.assign(
        pick_id=lambda t: t["pick_id"] + "_copy", time=lambda t: t["time"] + pd.Timedelta("5ms")
    )
    copies.loc[copies.index[::2], "probability"] = 1.0  # the copy wins half the time
    picks = pd.concat([scenario_.picks, copies], ignore_index=True)
    run = _write_run(tmp_path / "twice", scenario_, picks)
    twice = associate(run, cfg, tottori)
    assert twice["counts"]["events"] == once["counts"]["events"] > 0
    assert twice["counts"]["duplicates"] == len(scenario_.picks)
    assert twice["counts"]["assigned"] + twice["counts"]["unassigned"] == len(picks)
    assert abs(twice["counts"]["assigned"] - once["counts"]["assigned"]) <= 0.02 * len(copies)
    assigned = pd.read_parquet(run.path("association", "assignments.parquet"))["pick_id"]
    assert set(assigned) & set(copies["pick_id"].iloc[::2])
    assert not set(assigned) & set(copies["pick_id"].iloc[1::2])
    note = data_gaps(run)["picks/picks.parquet"]
    assert note.startswith(f"association: {len(scenario_.picks)} duplicate pick(s)")
    assert any("picks/picks.parquet (association: " in line for line in terminal_lines(run))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (  # ran for hours: every pick in thousands of overlapping blocks
            {"time_slicing_s": 0.01},
            r"association\.pyocto\.time_slicing_s = 0\.01 s: expected at least 10\.9 s, the "
            r"overlap of PyOcto's time blocks \(the S travel time across the search volume in "
            r"velocity model 'tottori', whatever the stations\)",
        ),
        (
            {"pick_match_tolerance_s": 100, "tolerance_s": 100},
            r"association\.pyocto\.pick_match_tolerance_s = 100 s: expected at most \d\d\.\d s, "
            r"half the longest travel time in the search volume",
        ),
        (
            {"time_before_s": 30, "time_slicing_s": 30, "pick_match_tolerance_s": 16},
            r".*pick_match_tolerance_s = 16 s: expected at most 15\.0 s, .* \(time_before_s\)",
        ),
    ],
)
def test_pyocto_timing_out_of_range_is_refused_at_validate(tmp_path, settings, expected):
    from pipeline.config import parse_config
    from pipeline.preflight import preflight_problems

    spec = {
        "name": "t",
        "starttime": "2000-10-06T00:00:00",
        "endtime": "2000-10-07T00:00:00",
        "velocity_model": "tottori",
        "output_dir": str(tmp_path),
        "stations": {"kind": "inline", "stations": [{"network": "XX", "station": "X01",
                                                     "latitude": 35.3, "longitude": 133.4}]},
        "association": {"associator": "pyocto", "pyocto": settings},
    }  # fmt: skip

    def association_problems() -> list[str]:  # not "picks.parquet from stage 'pick' missing"
        problems = preflight_problems(parse_config(spec), ["associate"])
        return [p for p in problems if p.startswith("association")]

    (problem,) = association_problems()
    assert re.match(expected, problem), problem
    spec["association"]["associator"] = "time"  # PyOcto's settings are not used
    assert association_problems() == []


@pytest.mark.parametrize(
    ("settings", "field"),
    [({"time_slicing_s": 20.0}, "time_slicing_s = 20 s"), ({"pick_match_tolerance_s": 25.0},
                                                           "pick_match_tolerance_s = 25 s")],
)  # fmt: skip
def test_pyocto_timing_is_checked_again_with_the_stations(tmp_path, tottori, settings, field):
    """Within the range of any station set (so validate passes), but not for these 18
    stations 80 km across, whose S waves take 40 s to cross the search volume."""
    scenario_ = generate(tottori, 5, interval_s=30.0, seed=5)
    run = _write_run(tmp_path, scenario_)
    with pytest.raises(AssociationInputError, match=rf"pyocto\.{field}: expected .* these 18 st"):
        associate(run, AssociationConfig(associator="pyocto", pyocto=settings), tottori)


def _ocean_bottom_scenario(tottori, depth_m: float):
    """A generated scenario in which every third station lies ``depth_m`` below sea level (an
    ocean-bottom station in a trench), with its picks at the times of a receiver there."""
    scenario_ = generate(tottori, 30, interval_s=20.0, false_fraction=0.0, seed=4)
    stations = scenario_.stations.copy()
    deep = set(stations["station"].iloc[::3])
    before = stations.set_index("station")["elevation_m"] / 1000.0
    stations.loc[stations["station"].isin(deep), "elevation_m"] = -depth_m
    projection = LocalProjection.centred_on(stations["latitude"], stations["longitude"])
    sx, sy = projection.forward(stations["latitude"], stations["longitude"])
    at = dict(zip(stations["station"], zip(sx, sy, strict=True), strict=True))
    ex, ey = projection.forward(scenario_.events["latitude"], scenario_.events["longitude"])
    picks = scenario_.picks.copy()
    truth = scenario_.pick_truth.loc[picks["pick_id"]].to_numpy()
    for i in np.flatnonzero(picks["station"].isin(deep).to_numpy() & (truth >= 0)):
        pick, event = picks.iloc[i], truth[i]
        x, y = at[pick["station"]]
        distance = np.array([np.hypot(ex[event] - x, ey[event] - y)])
        depth = scenario_.events["depth_km"].iloc[event]
        surface = (
            travel_time(tottori, pick["phase"], distance, depth)[0]
            + before[pick["station"]] / tottori.velocities(pick["phase"])[0]
        )
        below = travel_time_below_surface(tottori, pick["phase"], distance, depth, depth_m / 1e3)
        picks.loc[picks.index[i], "time"] += pd.Timedelta(seconds=float(below[0] - surface))
    deep_ids = set(picks.loc[picks["station"].isin(deep) & (truth >= 0), "pick_id"])
    return scenario_, stations, picks, deep_ids


@pytest.mark.parametrize("associator", ["time", "pyocto"])
def test_ocean_bottom_stations_in_a_trench_are_associated(tmp_path, tottori, associator):
    """Six of 18 stations 9 km below sea level: the elevation term (-9 km / v_top) made their
    times 1.7-3 s early for sources above them; the time associator split the 26 events into
    50 (event precision 0.54), PyOcto assigned 92 of their 250 picks. Now both use the times
    to a receiver at that depth."""
    scenario_, stations, picks, deep_ids = _ocean_bottom_scenario(tottori, 9000.0)
    run = RunDir(tmp_path)
    picks.to_parquet(run.path("picks", "picks.parquet"))
    stations.to_csv(run.path("waveforms", "stations.csv"), index=False)
    associate(run, AssociationConfig(associator=associator), tottori)
    events = pd.read_parquet(run.path("association", "events.parquet"))
    assignments = pd.read_parquet(run.path("association", "assignments.parquet"))
    result = score(scenario_, events, assignments)
    assert result["event_precision"] >= 0.95 and result["pick_recall"] >= 0.95, result
    deep = assignments[assignments["pick_id"].isin(deep_ids)]
    assert len(deep) >= 0.95 * len(deep_ids)
    assert deep["residual_s"].abs().median() < 0.2


@pytest.mark.parametrize("elevation_m", [-99999.0, 12000.0])
def test_a_station_elevation_no_site_has_is_named(tmp_path, tottori, scenario, elevation_m):
    stations = scenario.stations.copy()
    stations.loc[2, "elevation_m"] = elevation_m
    run = _write_run(tmp_path, scenario)
    stations.to_csv(run.path("waveforms", "stations.csv"), index=False)
    with pytest.raises(
        AssociationInputError,
        match=rf"stations\.csv: station SY\.S003\.: elevation_m = {elevation_m:g}: expected "
        r"-12262 to 8848\.86 m above sea level",
    ):
        associate(run, AssociationConfig(), tottori)


def test_a_stationxml_station_at_an_elevation_no_site_has_is_skipped_and_named():
    """The download skips it with the reason (validate's notes, the report's skipped units),
    as a station with invalid codes; a trench's ocean-bottom station is kept."""
    from obspy import Inventory, UTCDateTime
    from obspy.core.inventory import Channel, Network, Station

    from pipeline.waveforms.inventory import select_channels

    def station(code: str, elevation_m: float) -> Station:
        channel = Channel("HHZ", "", 35.0, 133.0, elevation_m, 0.0, sample_rate=100.0)
        return Station(code, 35.0, 133.0, elevation_m, channels=[channel])

    inventory = Inventory(
        [Network("XX", stations=[station("A1", -99999.0), station("B1", -9000.0)])]
    )
    skipped: dict[str, str] = {}
    t0, t1 = UTCDateTime(2000, 10, 6).datetime, UTCDateTime(2000, 10, 7).datetime
    (choice,) = select_channels(inventory, ["HH?"], ["*"], t0, t1, skipped)
    assert choice.station == "B1" and choice.elevation_m == -9000.0
    assert skipped == {
        "XX.A1": "skipped: elevation_m = -99999: expected -12262 to 8848.86 m above sea level "
        "(the deepest borehole to the highest summit)"
    }


def test_damaged_station_tables_are_rewritten(tmp_path, tottori, caplog):
    """The station-specific tables (a station below sea level) are checked as the one-table
    case is: a table cut short or a missing padding file is rewritten, not handed to PyOcto."""
    from pipeline.association import octo

    network = _square_network(10.0)
    network = StationGeometry(
        network.ids, network.x_km, network.y_km, np.array([-3.0, 0.1, 0.0, -0.5]),
        network.projection,
    )  # fmt: skip
    octo.velocity_model_for(tottori, network, PyOctoConfig(), tmp_path)
    (folder,) = tmp_path.glob("pyocto_tt_stations_*")
    first = folder / "XX.A..pyocto"
    whole = first.read_bytes()
    first.write_bytes(whole[: len(whole) // 2])
    octo.velocity_model_for(tottori, network, PyOctoConfig(), tmp_path)
    assert first.read_bytes() == whole
    (folder / "n_padding").unlink()
    octo.velocity_model_for(tottori, network, PyOctoConfig(), tmp_path)
    assert (folder / "n_padding").is_file()
    assert caplog.text.count("are damaged; rewritten") == 2


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        ("probability", [1.5, 7.0, -0.2], "3 pick(s) with column 'probability' not a number "
                                          "within 0-1, e.g. ['pk00000001', 'pk00000002', "),
        ("probability", [np.nan] * 3, "3 pick(s) with column 'probability' not a number"),
        ("probability_std", [-1.0, np.nan, np.inf], "1 pick(s) with column 'probability_std' "
                                                    "negative or no number, e.g. ['pk00000001']"),
        ("time", [pd.NaT] * 3, "3 pick(s) with no time in column 'time', e.g. ['pk00000001'"),
        ("phase", ["Pg", "Sn", "p"], "column 'phase' must be 'P' or 'S', got ['Pg', 'Sn', 'p']"),
    ],
)  # fmt: skip
def test_pick_values_the_associators_cannot_use_are_named(
    tmp_path, tottori, scenario, column, values, expected
):
    """A probability of 7 or a negative std won every conflict (the weight is probability -
    std_weight * std) and reached the catalog without a word; NaN said only "must not be
    NaN". Now each names the file, the column, how many picks and which."""
    picks = scenario.picks.copy()
    picks[column] = picks[column].astype(object)
    picks.loc[picks.index[:3], column] = values
    run = _write_run(tmp_path, scenario, picks.astype({column: scenario.picks[column].dtype}))
    with pytest.raises(AssociationInputError) as err:
        associate(run, AssociationConfig(), tottori)
    assert str(err.value).startswith(str(run.path("picks", "picks.parquet")) + ": " + expected)
