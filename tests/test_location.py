"""Location stage: HypoInverse 1.40 formats, runner and stage, with the real program."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.location import LocationConfig, locate, locate_picks
from pipeline.location import stage as locate_stage
from pipeline.location.hypoinverse_formats import (
    FormatError,
    PhasePick,
    parse_abandoned,
    parse_archive,
    parse_hypo71_summary,
    phase_event_lines,
    station_line,
)
from pipeline.location.runner import HypoInverseError, find_hypoinverse, run_hypoinverse
from pipeline.location.stage import weight_codes
from pipeline.rundir import RunDir
from pipeline.velocity import VelocityModel, load_velocity_model, travel_time

EARTH_RADIUS_KM = 6371.0


def epicentral_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance (km) between points given in degrees (haversine)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))


# ------------------------------------------------------------------ formats, no program


def test_station_line_columns():
    line = station_line("TOT01", "JP", "HHZ", "", 35.2751, 133.35, 245.4, p_delay_s=-0.12)
    assert len(line) == 85
    assert line[0:5] == "TOT01" and line[6:8] == "JP" and line[10:13] == "HHZ"
    assert int(line[15:17]) == 35 and abs(float(line[18:25]) - 0.2751 * 60) < 1e-4
    assert int(line[26:29]) == 133 and line[37] == "E" and abs(float(line[30:37]) - 21.0) < 1e-4
    assert int(line[38:42]) == 245
    assert line[49:54] == "  -12" and line[80:82] == "--"


def test_phase_file_round_trip_through_parser(tmp_path):
    t0 = pd.Timestamp("2000-10-06 13:30:17.98", tz="UTC")
    picks = [
        PhasePick("TOT01", "JP", "HHZ", "", "P", t0 + pd.Timedelta(seconds=3.456), 1),
        PhasePick("TOT01", "JP", "HHZ", "", "S", t0 + pd.Timedelta(seconds=45.0), 3),
        PhasePick("TOT02", "JP", "HHZ", "00", "P", t0 + pd.Timedelta(seconds=5.0), 0),
    ]
    lines = phase_event_lines(picks, 42, t0, 35.27, 133.35, 9.5)
    (tmp_path / "one.arc").write_text("\n".join(lines) + "\n")
    events, phases = parse_archive(tmp_path / "one.arc")
    assert events.loc[0, "hypoinverse_id"] == 42
    assert abs(events.loc[0, "origin_time"] - t0) < pd.Timedelta(milliseconds=5)
    assert abs(events.loc[0, "latitude"] - 35.27) < 1e-3
    assert abs(events.loc[0, "longitude"] - 133.35) < 1e-3
    assert events.loc[0, "depth_km"] == 9.5
    assert list(phases["phase"]) == ["P", "P", "S"]  # written in time order
    assert list(phases["weight_code"]) == [1, 0, 3]
    expected = sorted(p.time.round("10ms") for p in picks)
    assert list(phases["time"]) == expected
    assert list(phases["location"]) == ["--", "00", "--"]


def test_weight_codes_from_probability_and_time_std():
    picks = pd.DataFrame(
        {
            "probability": [0.95, 0.95, 0.75, 0.55, 0.35, 0.1, np.nan],
            "probability_std": [0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0],
            "time_std_s": [0.01, np.nan, 0.01, 0.5, np.nan, np.nan, np.nan],
        }
    )
    codes = weight_codes(picks, LocationConfig())
    assert list(codes) == [0, 1, 1, 4, 3, 4, 0]


# ------------------------------------------------------------------ runner


def test_missing_binary_says_how_to_build(monkeypatch, tmp_path):
    monkeypatch.delenv("EQCAT_HYPOINVERSE", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HypoInverseError, match="make setup.*build_hypoinverse.sh"):
        find_hypoinverse()
    monkeypatch.setenv("EQCAT_HYPOINVERSE", str(tmp_path / "nothing"))
    with pytest.raises(HypoInverseError, match="EQCAT_HYPOINVERSE"):
        find_hypoinverse()


def test_program_error_fails_with_log_path(hyp_binary, tmp_path):
    with pytest.raises(HypoInverseError, match="STATION FILE DOES NOT EXIST.*hypoinverse.log"):
        run_hypoinverse("STA 'absent.sta'\nSTO\n", {}, [], tmp_path, timeout_s=30)
    assert "STATION FILE DOES NOT EXIST" in (tmp_path / "hypoinverse.log").read_text()


def test_testone_reproduces_reference_summary(hyp_binary, tmp_path):
    """HypoInverse's own test event, run through our runner, gives its reference solution."""
    testone = Path(sys.prefix) / "share" / "hypoinverse" / "testone"
    if not testone.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{testone} missing: run scripts/build_hypoinverse.sh")
        pytest.skip(f"{testone} missing: run scripts/build_hypoinverse.sh")
    outputs = ["testone.prt", "testone.sum", "testone.arc"]
    inputs = {p.name: p for p in testone.iterdir() if p.is_file() and p.name not in outputs}
    # testone.hyp asks for file names with bare PHS/PRT/SUM/ARC commands: drop those prompts.
    commands = [
        line
        for line in (testone / "testone.hyp").read_text().splitlines()
        if line.strip() not in ("PHS", "PRT", "SUM", "ARC")
    ]
    run_hypoinverse("\n".join([*commands, "LOC", "STO"]) + "\n", inputs, outputs, tmp_path)
    ours = parse_hypo71_summary(tmp_path / "testone.sum").iloc[0]
    reference = parse_hypo71_summary(testone / "testone.sum").iloc[0]
    dt = abs((ours["origin_time"] - reference["origin_time"]).total_seconds())
    dlat_min = abs(ours["latitude"] - reference["latitude"]) * 60
    dlon_min = abs(ours["longitude"] - reference["longitude"]) * 60
    ddepth = abs(ours["depth_km"] - reference["depth_km"])
    print(f"testone: dt={dt:.3f} s dlat={dlat_min:.3f}' dlon={dlon_min:.3f}' dz={ddepth:.2f} km")
    assert dt <= 0.01 and dlat_min <= 0.01 and dlon_min <= 0.01 and ddepth <= 0.1
    assert ours["hypoinverse_id"] == reference["hypoinverse_id"] == 71329580
    assert ours["quality"] == reference["quality"]
    _, phases = parse_archive(tmp_path / "testone.arc")
    _, reference_phases = parse_archive(testone / "testone.arc")
    assert len(phases) == len(reference_phases)


# ------------------------------------------------------------------ real archive: El16


def test_parser_reads_every_event_and_phase_of_el16(shared):
    arc = shared("data", "hypodd_example1", "El16.arc")
    events, phases = parse_archive(arc)
    lines = arc.read_text().splitlines()
    assert len(events) == 16 == sum(1 for line in lines if not line[:4].strip())
    station_lines = len(lines) - 2 * len(events)
    assert station_lines == 855
    assert phases["phase"].value_counts().to_dict() == {"P": 833, "S": 28}
    assert events["hypoinverse_id"].is_unique and events["hypoinverse_id"].min() > 0
    # Independent check: every pick of the HypoDD phase file made from the same events.
    pha = shared("data", "hypodd_example1", "El16.pha")
    origins = events.set_index("hypoinverse_id")["origin_time"]
    n_checked = 0
    for line in pha.read_text().splitlines():
        parts = line.split()
        if parts[0] == "#":
            event_id = int(parts[-1])
            t0 = origins.loc[event_id]
            continue
        code, travel, phase = parts[0], float(parts[1]), parts[3]
        match = phases[
            (phases["hypoinverse_id"] == event_id)
            & (phases["network"] + phases["station"] == code)
            & (phases["phase"] == phase)
        ]
        offsets = (match["time"] - t0).dt.total_seconds() - travel
        assert (offsets.abs() < 0.006).any(), (event_id, code, phase, travel)
        n_checked += 1
    assert n_checked == 563


def _el16_inputs(shared) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(events, picks, stations) of HypoDD example 1's El16.arc, as the stage passes them."""
    folder = shared("data", "hypodd_example1")
    archived, phases = parse_archive(folder / "El16.arc")
    stations = pd.read_csv(
        folder / "station.dat", sep=r"\s+", header=None, names=["code", "latitude", "longitude"]
    )
    stations = stations.assign(
        network=stations["code"].str[:2], station=stations["code"].str[2:], location="",
        elevation_m=0.0, channel_prefix="VH",
    )  # fmt: skip
    # The archived solutions used NCSN station delays; they are in the archive: keep them.
    delays = phases.groupby(["network", "station"])["p_delay_s"].median().reset_index()
    stations = stations.merge(delays, on=["network", "station"], how="left")
    events = archived.assign(event_id=archived["hypoinverse_id"].astype(str))
    picks = phases.assign(
        event_id=phases["hypoinverse_id"].astype(str),
        pick_id=[f"p{i}" for i in range(len(phases))],
        location="",
    )
    return events, picks, stations


def test_a_station_deeper_than_the_station_file_holds_is_left_out_with_cre(
    hyp_binary, shared, tmp_path
):
    """CRE models place stations at their elevation, which the station file holds only within
    -999..9999 m: such a station (an ocean-bottom one) is left out and named, not moved to
    -999 m; CRH models ignore elevations, so it stays."""
    events, picks, stations = _el16_inputs(shared)
    deep = stations["station"].iloc[0]
    stations.loc[stations["station"] == deep, "elevation_m"] = -1500.0
    model = load_velocity_model("generic_crust")
    cre = LocationConfig(crust_model_type="CRE")
    locations, residuals, failures = locate_picks(events, picks, stations, cre, model, tmp_path)
    label = f"station {stations['network'].iloc[0]}.{deep}"
    assert list(failures) == [label]
    assert "elevation -1500 m is outside the -999..9999 m" in failures[label]
    assert deep not in set(residuals["station"]) and locations["located"].any()
    _, kept, failures = locate_picks(events, picks, stations, LocationConfig(), model, tmp_path)
    assert failures == {} and deep in set(kept["station"])


def test_el16_round_trip_relocation(hyp_binary, shared, tmp_path):
    """Parse El16.arc, write its picks back, relocate with the generic model."""
    events, picks, stations = _el16_inputs(shared)
    model = load_velocity_model("generic_crust")
    locations, residuals, failures = locate_picks(
        events, picks, stations, LocationConfig(), model, tmp_path
    )
    assert failures == {}
    assert locations["located"].all()
    known = set(stations["station"])
    with_coordinates = picks[picks["station"].isin(known)]
    assert set(residuals["pick_id"]) == set(with_coordinates["pick_id"])  # every pick kept
    left_out = picks[~picks["station"].isin(known)]
    assert len(left_out) == 16 and set(left_out["station"]) == {"CCH1", "CGP1", "CMW1"}
    reasons = " ".join(locations["reason"])
    assert all(f"pick {pick_id} left out" in reasons for pick_id in left_out["pick_id"])

    merged = locations.merge(events, on="event_id", suffixes=("", "_archived"))
    distance = epicentral_km(
        merged["latitude"], merged["longitude"],
        merged["latitude_archived"], merged["longitude_archived"],
    )  # fmt: skip
    depth = merged["depth_km"] - merged["depth_km_archived"]
    print(
        f"El16 round trip: {len(residuals)} of {len(picks)} picks kept; epicentre shifts km "
        f"{np.round(distance, 2).tolist()}; depth shifts km {np.round(depth, 2).tolist()}"
    )
    assert distance.max() < 2.0


# ------------------------------------------------------------------ stage on a run directory

CENTER = (35.30, 133.35)  # western Tottori


def _offset(lat, lon, north_km, east_km):
    dlat = north_km / (np.pi * EARTH_RADIUS_KM / 180)
    dlon = east_km / (np.pi * EARTH_RADIUS_KM / 180 * np.cos(np.radians(lat)))
    return lat + dlat, lon + dlon


def _write_run(tmp_path, stations, events, picks, assignments) -> RunDir:
    run = RunDir(tmp_path / "run")
    stations.to_csv(run.path("waveforms", "stations.csv"), index=False)
    events.to_parquet(run.path("association", "events.parquet"), index=False)
    assignments.to_parquet(run.path("association", "assignments.parquet"), index=False)
    picks.to_parquet(run.path("picks", "picks.parquet"), index=False)
    return run


def _scenario(seed: int = 7, n_events: int = 10, model: VelocityModel | None = None):
    """Stations around western Tottori, events with known hypocentres, noisy exact picks."""
    rng = np.random.default_rng(seed)
    model = model or load_velocity_model("tottori")
    azimuths = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    radii = np.tile([8.0, 25.0, 40.0], 4)
    rows = []
    for k, (az, r) in enumerate(zip(azimuths, radii, strict=True)):
        lat, lon = _offset(*CENTER, r * np.cos(az), r * np.sin(az))
        rows.append(("TT", f"S{k:02d}", "", "HH", lat, lon, 150.0, 100.0))
    stations = pd.DataFrame(
        rows,
        columns=["network", "station", "location", "channel_prefix", "latitude", "longitude",
                 "elevation_m", "sampling_rate"],
    )  # fmt: skip
    t0 = pd.Timestamp("2000-10-06 13:30:00", tz="UTC")
    truth, events, picks, assignments = [], [], [], []
    for i in range(n_events):
        north, east = rng.uniform(-12, 12, 2)
        lat, lon = _offset(*CENTER, north, east)
        depth = rng.uniform(4, 15)
        origin = t0 + pd.Timedelta(minutes=10 * i, seconds=float(rng.uniform(0, 50)))
        event_id = f"ev{i:03d}"
        truth.append((event_id, lat, lon, depth))
        trial_lat, trial_lon = _offset(lat, lon, *rng.uniform(-3, 3, 2))
        events.append((event_id, origin + pd.Timedelta(seconds=0.4), trial_lat, trial_lon, np.nan))
        dist = epicentral_km(lat, lon, stations["latitude"], stations["longitude"])
        for phase in ("P", "S"):
            times = travel_time(model, phase, dist, depth) + rng.normal(0, 0.05, len(dist))
            for sta, tt in zip(stations["station"], times, strict=True):
                pick_id = f"{event_id}.{sta}.{phase}"
                picks.append(
                    (pick_id, "TT", sta, "", phase, origin + pd.Timedelta(seconds=float(tt)),
                     0.92, 0.02, 0.03)
                )  # fmt: skip
                assignments.append((event_id, pick_id, phase, 0.0))
    picks = pd.DataFrame(
        picks,
        columns=["pick_id", "network", "station", "location", "phase", "time", "probability",
                 "probability_std", "time_std_s"],
    )  # fmt: skip
    picks["time"] = picks["time"].astype("datetime64[ns, UTC]")
    events = pd.DataFrame(
        events, columns=["event_id", "origin_time", "latitude", "longitude", "depth_km"]
    )
    events["origin_time"] = events["origin_time"].astype("datetime64[ns, UTC]")
    assignments = pd.DataFrame(assignments, columns=["event_id", "pick_id", "phase", "residual_s"])
    truth = pd.DataFrame(truth, columns=["event_id", "latitude", "longitude", "depth_km"])
    return model, stations, events, picks, assignments, truth


def _constant_vp_vs_model() -> VelocityModel:
    """The Tottori P model with its nominal Vp/Vs in every layer (HypoInverse gets no S model;
    the shipped model has JMA2001's Vs per layer, so HypoInverse gets an S model)."""
    tottori = load_velocity_model("tottori")
    return dataclasses.replace(tottori, name="tottori_pos", vs_km_s=tottori.vp_km_s / tottori.vp_vs)


@pytest.mark.parametrize("vp_vs", ["constant", "per_layer"])
def test_generated_events_locate_accurately(hyp_binary, tmp_path, vp_vs):
    model = _constant_vp_vs_model() if vp_vs == "constant" else load_velocity_model("tottori")
    model, stations, events, picks, assignments, truth = _scenario(model=model)
    run = _write_run(tmp_path, stations, events, picks, assignments)
    counts = locate(run, LocationConfig(), model)["counts"]
    assert counts["located"] == len(events) and counts["picks_used"] == len(picks)

    locations = pd.read_parquet(run.path("location", "locations.parquet"))
    assert str(locations["origin_time"].dtype) == "datetime64[ns, UTC]"
    assert locations["located"].all() and (locations["reason"] == "").all()
    assert set(locations["quality"]) <= set("ABCD") and (locations["n_s"] > 0).all()
    merged = locations.merge(truth, on="event_id", suffixes=("", "_true"))
    epicentral = epicentral_km(
        merged["latitude"], merged["longitude"], merged["latitude_true"], merged["longitude_true"]
    )
    depth = (merged["depth_km"] - merged["depth_km_true"]).abs()
    print(f"generated ({vp_vs} Vp/Vs): median epicentral error {np.median(epicentral):.3f} km "
          f"(max {epicentral.max():.3f}), median depth error {np.median(depth):.3f} km "
          f"(max {depth.max():.3f}), median rms {locations['rms_s'].median():.3f} s")  # fmt: skip
    assert np.median(epicentral) <= 0.5
    assert np.median(depth) <= 1.0

    residuals = pd.read_parquet(run.path("location", "phase_residuals.parquet"))
    assert set(residuals["pick_id"]) == set(picks["pick_id"])
    assert residuals["residual_s"].abs().median() < 0.1
    ids = pd.read_csv(run.path("location", "event_ids.csv"))
    assert list(ids["event_id"]) == list(events["event_id"])
    manifest = run.read_manifest()["location"]
    assert manifest["counts"]["located"] == len(events)
    assert "location/hypoinverse.arc" in manifest["outputs"]
    command = run.path("location", "hypoinverse.hyp").read_text()
    assert ("SAL 1 2" in command) == (vp_vs == "per_layer")


def test_bad_input_is_reported_per_event(hyp_binary, tmp_path):
    model, stations, events, picks, assignments, _ = _scenario(seed=3, n_events=4)
    # A station without coordinates, used by a pick of ev000.
    stations.loc[len(stations)] = ["TT", "NOLOC", "", "HH", np.nan, np.nan, 0.0, 100.0]
    extra = picks.iloc[[0]].assign(pick_id="ev000.NOLOC.P", station="NOLOC")
    # ev001: one pick before 1900 and one without a time.
    picks = picks.set_index("pick_id")
    picks.loc["ev001.S00.P", "time"] = pd.Timestamp("1850-01-01", tz="UTC")
    picks.loc["ev001.S01.P", "time"] = pd.NaT
    picks = pd.concat([picks.reset_index(), extra], ignore_index=True)
    # ev002: only two stations keep their picks (below min_stations 3).
    few = assignments["event_id"].eq("ev002") & ~assignments["pick_id"].str.contains(r"\.S0[0-1]\.")
    assignments = pd.concat(
        [assignments[~few], pd.DataFrame([("ev000", "ev000.NOLOC.P", "P", 0.0)],
                                         columns=assignments.columns)],
        ignore_index=True,
    )  # fmt: skip
    run = _write_run(tmp_path, stations, events, picks, assignments)

    counts = locate(run, LocationConfig(), model)["counts"]
    locations = pd.read_parquet(run.path("location", "locations.parquet")).set_index("event_id")
    assert counts == {
        "events": 4, "located": 3, "not_located": 1,
        "picks_used": len(assignments) - 4 - 3, "picks_left_out": 3 + 4,
    }  # fmt: skip
    assert list(locations.index) == ["ev000", "ev001", "ev002", "ev003"]
    assert locations.loc[["ev000", "ev001", "ev003"], "located"].all()
    assert "pick ev000.NOLOC.P left out" in locations.loc["ev000", "reason"]
    assert "TT.NOLOC" in locations.loc["ev000", "reason"]
    assert "pick ev001.S00.P left out" in locations.loc["ev001", "reason"]
    assert "1850" in locations.loc["ev001", "reason"]
    assert "pick ev001.S01.P left out" in locations.loc["ev001", "reason"]
    assert "time is missing" in locations.loc["ev001", "reason"]
    assert not locations.loc["ev002", "located"]
    assert "2 stations" in locations.loc["ev002", "reason"]
    assert "minimum 3" in locations.loc["ev002", "reason"]
    assert np.isnan(locations.loc["ev002", "latitude"])
    assert locations.loc["ev003", "reason"] == ""


def test_three_station_events(hyp_binary, tmp_path):
    """HypoInverse's MIN counts readings: 3 stations with P and S (6 readings for 4 unknowns)
    are located; 3 P readings alone are not sent."""
    model, stations, events, picks, assignments, truth = _scenario(seed=5, n_events=2)
    near = assignments["pick_id"].str.contains(r"\.S0[0-2]\.")
    keep = (assignments["event_id"].eq("ev000") & near) | (  # 3 stations, P and S
        assignments["event_id"].eq("ev001") & near & assignments["phase"].eq("P")  # P only
    )
    run = _write_run(tmp_path, stations, events, picks, assignments[keep])

    locate(run, LocationConfig(), model)
    locations = pd.read_parquet(run.path("location", "locations.parquet")).set_index("event_id")
    assert locations.loc["ev000", "located"] and locations.loc["ev000", "n_s"] == 3
    merged = locations.loc[["ev000"]].join(truth.set_index("event_id"), rsuffix="_true")
    error = epicentral_km(
        merged["latitude"], merged["longitude"], merged["latitude_true"], merged["longitude_true"]
    )
    print(f"3-station P+S event: epicentral error {error.iloc[0]:.2f} km")
    assert error.iloc[0] < 3.0
    assert not locations.loc["ev001", "located"]
    assert "3 weighted P and S readings" in locations.loc["ev001", "reason"]
    assert "minimum 4" in locations.loc["ev001", "reason"]
    assert "MIN 4" in run.path("location", "hypoinverse.hyp").read_text()


def test_abandoned_events_parsed_from_terminal_output():
    text = (
        "    4 2000-10- 8  5:02       35 16  133 21   5.31 0.11  0.0   23  0.2  1.0         4\n"
        " *** 3 PHASES CANT SOLVE SEQUENCE NO.    5, ID NO.         5\n"
        " *** ABANDON EVENT WITH ONLY 3 READINGS:2000 10  8  5  2\n"
        " *** 2 PHASES CANT SOLVE SEQUENCE NO.  332, ID NO.       412\n"
    )
    assert parse_abandoned(text) == {5: 3, 412: 2}


# ------------------------------------------------------------------ several trial depths


def _solution(hyp_id: int, start: int, n_p: int, n_s: int, rms: float) -> dict:
    return {"hypoinverse_id": hyp_id, "start": start, "n_p": n_p, "n_s": n_s, "rms_s": rms}


def test_choose_solutions_replaces_the_primary_only_by_a_clearly_lower_rms():
    events = pd.DataFrame(
        [
            _solution(1, 0, 4, 4, 0.20),  # 1: start 2 has the same readings, the lowest RMS
            _solution(1, 1, 4, 4, 0.10),
            _solution(1, 2, 4, 4, 0.05),
            _solution(2, 0, 5, 5, 0.10),  # 2: start 1 dropped readings for its lower RMS
            _solution(2, 1, 4, 4, 0.01),
            _solution(3, 0, 3, 3, 0.10),  # 3: 0.09 s is not clearly lower (less than 20 %)
            _solution(3, 1, 3, 3, 0.09),
            _solution(4, 0, 9, 9, 0.20),  # 4: more readings at a higher RMS do not win
            _solution(4, 1, 9, 10, 0.30),
            _solution(5, 1, 2, 2, 0.30),  # 5: not located from the primary start
            _solution(5, 2, 2, 2, 0.25),
        ]
    )
    phases = pd.DataFrame(
        {
            "hypoinverse_id": events["hypoinverse_id"],
            "start": events["start"],
            "pick": range(len(events)),
        }
    )
    solutions = [(events[events.start == k], phases[phases.start == k]) for k in (0, 1, 2)]
    best, kept = locate_stage.choose_solutions(solutions)
    chosen = dict(zip(best["hypoinverse_id"], best["start"], strict=True))
    assert chosen == {1: 2, 2: 0, 3: 0, 4: 0, 5: 2}
    assert sorted(kept["pick"]) == [2, 3, 5, 7, 10]


def test_trial_depths_lift_events_off_a_layer_top(hyp_binary, tmp_path):
    """Started at exactly the Tottori model's first layer top (3 km), HypoInverse keeps most
    events there; the further trial depths find the true depths (4-15 km)."""
    model, stations, events, picks, assignments, truth = _scenario(seed=11, n_events=8)
    events["depth_km"] = model.layer_tops_km[1]
    errors = {}
    for name, depths in (("one start", []), ("several starts", [5.0, 10.0, 15.0])):
        run = _write_run(tmp_path / name, stations, events, picks, assignments)
        locate(run, LocationConfig(trial_depths_km=depths), model)
        located = pd.read_parquet(run.path("location", "locations.parquet"))
        assert located["located"].all()
        merged = located.merge(truth, on="event_id", suffixes=("", "_true"))
        errors[name] = (merged["depth_km"] - merged["depth_km_true"]).abs()
        print(f"{name}: depth errors (km) {np.round(errors[name].to_numpy(), 2)}; starts kept "
              f"{located['start_depth_km'].tolist()}")  # fmt: skip
    assert (errors["one start"] > 2.0).sum() >= 3
    assert errors["several starts"].max() < 1.0
    folder = run.path("location", "trial_depths", "10.00km")
    terminators = [
        line for line in (folder / "phases.arc").read_text().splitlines() if line[:4] == "    "
    ]
    assert len(terminators) == len(events)
    assert all(line[29:34] == " 1000" for line in terminators)  # trial depth, F5.2
    assert (
        "location/trial_depths/10.00km/hypoinverse.arc"
        in run.read_manifest()["location"]["outputs"]
    )


def test_a_failed_trial_depth_start_leaves_the_other_solutions(
    hyp_binary, shared, tmp_path, monkeypatch
):
    """HypoInverse failing from one further trial depth (injected: the real program runs for
    the other starts) is named in the failures; every event is still located."""
    import pipeline.location.isolate as isolate
    from pipeline.location.runner import HypoInverseError

    real = isolate.run_hypoinverse

    def failing_at_10_km(command, inputs, outputs, where, timeout_s):
        if "10.00km" in where.parts:  # every run of that start, even without events
            raise HypoInverseError(f"HypoInverse did not finish within 1 s; see {where}")
        return real(command, inputs, outputs, where, timeout_s)

    monkeypatch.setattr(isolate, "run_hypoinverse", failing_at_10_km)
    events, picks, stations = _el16_inputs(shared)
    model = load_velocity_model("generic_crust")
    locations, _, failures = locate_picks(
        events, picks, stations, LocationConfig(), model, tmp_path
    )
    assert list(failures) == ["HypoInverse start from 10.00 km depth"]
    assert failures["HypoInverse start from 10.00 km depth"].endswith(
        "the other starts' solutions kept"
    )
    assert locations["located"].all()


# ------------------------------------------------------- one event's failure costs that event


def _crashing_wrapper(tmp_path: Path, real: Path, crash_ids: set[int]) -> Path:
    """An executable running the real ``hyp1.40``, except that it dies of SIGSEGV (as hyp1.40
    did on a trial epicentre far outside the network) when the phase file holds an event whose
    id is in ``crash_ids``."""
    script = tmp_path / "hyp_wrapper.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, signal\n"
        "from pathlib import Path\n"
        f"crash = {sorted(crash_ids)!r}\n"
        "lines = Path('phases.arc').read_text().splitlines()\n"
        "ids = {int(x[136:146]) for x in lines if len(x) >= 146 and x[136:146].strip()}\n"
        "if ids & set(crash):\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
        f"os.execv({str(real)!r}, [{str(real)!r}])\n"
    )
    script.chmod(0o755)
    return script


def test_an_event_the_program_crashes_on_costs_that_event_only(hyp_binary, tmp_path, monkeypatch):
    model, stations, events, picks, assignments, _ = _scenario(seed=4, n_events=6)
    monkeypatch.setenv("EQCAT_HYPOINVERSE", str(_crashing_wrapper(tmp_path, hyp_binary, {3})))
    run = _write_run(tmp_path, stations, events, picks, assignments)

    entry = locate(run, LocationConfig(), model)
    locations = pd.read_parquet(run.path("location", "locations.parquet")).set_index("event_id")
    assert entry["counts"]["located"] == 5
    assert not locations.loc["ev002", "located"]
    reason = locations.loc["ev002", "reason"]
    assert reason.startswith("not located: HypoInverse primary start: HypoInverse failed")
    assert "killed by SIGSEGV" in reason and "failed_events/3/hypoinverse.log" in reason
    assert "not in HypoInverse's output" not in reason  # no per-pick noise for it
    assert entry["details"]["failures"]["event ev002"] == reason
    assert locations.drop(index="ev002")["located"].all()
    folder = run.path("location")
    kept = (folder / "failed_events" / "3" / "phases.arc").read_text().splitlines()
    assert {line[136:146].strip() for line in kept if len(line) >= 146} == {"3"}
    assert len(parse_archive(folder / "hypoinverse.arc")[0]) == 5
    assert "location/failed_events/3/phases.arc" in entry["outputs"]
    ten_km = (folder / "trial_depths" / "10.00km" / "phases.arc").read_text()
    assert ten_km.count("\n      ") == 5  # the crashing event is not tried again


def test_a_failure_without_any_event_stops_the_stage(hyp_binary, tmp_path):
    from pipeline.location.isolate import TimeBudget, run_isolating

    with pytest.raises(HypoInverseError, match="STATION FILE DOES NOT EXIST"):
        run_isolating("STA 'absent.sta'\nPHS 'p.arc'\nLOC\nSTO\n", {}, "p.arc",
                      {1: "x\n", 2: "y\n"}, [], tmp_path, TimeBudget(60))  # fmt: skip
    assert not (tmp_path / "failed_events").exists()
    assert not list(tmp_path.glob(".isolate-*"))


def test_a_looping_event_is_found_with_halves_under_their_share_of_the_limit(tmp_path, monkeypatch):
    """The program looping on event 11 of 16 (injected): the run over all gets half the
    budget, the event is found with halves run under their share of that limit (at least
    MIN_PART_TIMEOUT_S), the others' outputs kept."""
    import pipeline.location.isolate as isolate

    calls = []

    def fake_run(command, inputs, outputs, where, timeout_s):
        where.mkdir(parents=True, exist_ok=True)
        calls.append((inputs["p.arc"], timeout_s))
        (where / "hypoinverse.log").write_text("log\n")
        if " 11\n" in inputs["p.arc"]:
            raise HypoInverseError(f"HypoInverse did not finish within {timeout_s:.0f} s")
        (where / "out.arc").write_text(inputs["p.arc"])
        return where / "hypoinverse.log"

    monkeypatch.setattr(isolate, "run_hypoinverse", fake_run)
    monkeypatch.setattr(isolate, "MIN_PART_TIMEOUT_S", 20.0)
    blocks = {i: f"event {i}\n" for i in range(1, 17)}
    budget = isolate.TimeBudget(480.0)
    _, failed = isolate.run_isolating("", {}, "p.arc", blocks, ["out.arc"], tmp_path, budget)
    assert list(failed) == [11] and "did not finish within 20 s" in failed[11]
    assert (tmp_path / "out.arc").read_text() == "".join(
        text for i, text in blocks.items() if i != 11
    )
    # all 16 events, 9-16, 9-12, 11-12, 11; the others ran at most their share
    assert [round(limit) for text, limit in calls if " 11\n" in text] == [160, 80, 40, 20, 20]
    assert len(calls) == 1 + 1 + 2 * 4  # all, no events, two halves at each of 4 levels
    assert (tmp_path / "failed_events" / "11" / "p.arc").read_text() == "event 11\n"


def _wrapper_log(tmp_path: Path) -> list[str]:
    """The folders :func:`_bounded_wrapper` ran in, one per HypoInverse run, in order."""
    log = tmp_path / "runs.txt"
    return log.read_text().splitlines() if log.is_file() else []


def _bounded_wrapper(tmp_path: Path, real: Path, crash_ids: set[int], loop_ids: set[int]):
    """An executable running the real ``hyp1.40`` that logs each run's folder (to
    ``tmp_path/runs.txt``), dies of SIGSEGV on an event in ``crash_ids`` and sleeps an hour
    (as hyp1.40 looped) on one in ``loop_ids``."""
    script = tmp_path / "hyp_bounded.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, time\n"
        "from pathlib import Path\n"
        f"with open({str(tmp_path / 'runs.txt')!r}, 'a') as log:\n"
        "    log.write(str(Path.cwd().parent) + '\\n')\n"
        "lines = Path('phases.arc').read_text().splitlines()\n"
        "ids = {int(x[136:146]) for x in lines if len(x) >= 146 and x[136:146].strip()}\n"
        f"if ids & set({sorted(crash_ids)!r}):\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
        f"if ids & set({sorted(loop_ids)!r}):\n"
        "    time.sleep(3600)\n"
        f"os.execv({str(real)!r}, [{str(real)!r}])\n"
    )
    script.chmod(0o755)
    return script


def test_many_failing_events_cost_at_most_the_documented_runs(hyp_binary, tmp_path, monkeypatch):
    """16 of 32 events crash the program (every second one): halving them all out took 62
    runs after the first two (the isolation had no bound); now the batch stops at
    max_runs(32) = 2 + 2 * 5**2 = 52 runs, every crashing event is unlocated, and the events
    left in parts that were not run say why; the others are located."""
    from pipeline.location.isolate import max_runs

    model, stations, events, picks, assignments, _ = _scenario(seed=4, n_events=32)
    crash = set(range(2, 33, 2))
    wrapper = _bounded_wrapper(tmp_path, hyp_binary, crash, set())
    monkeypatch.setenv("EQCAT_HYPOINVERSE", str(wrapper))
    run = _write_run(tmp_path, stations, events, picks, assignments)

    entry = locate(run, LocationConfig(), model)
    folder = run.path("location")
    primary = [w for w in _wrapper_log(tmp_path) if "trial_depths" not in w]
    assert max_runs(32) == 52 and len(primary) == 52
    ids = pd.read_csv(folder / "event_ids.csv").set_index("event_id")["hypoinverse_id"]
    locations = pd.read_parquet(folder / "locations.parquet").set_index("event_id")
    located = set(ids[locations["located"]])
    assert located and not located & crash
    unrun = {i for e, i in ids.items() if "bound of 52 HypoInverse runs" in locations.reason[e]}
    assert unrun and unrun | located | crash == set(ids)
    reason = locations.loc[ids.index[ids == min(unrun - crash)][0], "reason"]
    assert reason.startswith("not located: HypoInverse primary start: HypoInverse failed (")
    assert "on a run of " in reason and "events with it; not run: the batch's bound" in reason
    assert entry["counts"]["located"] == len(located)


def test_the_time_budget_holds_for_every_start_and_the_isolation(hyp_binary, tmp_path, monkeypatch):
    """Event 3 of 6 makes the program loop (injected): the runs over all events, their halves
    and the three further starts used to take up to twice ``timeout_s`` per start; now all
    of them end within ``timeout_s``, the looping event is unlocated and named, the others
    are located, and a start left without time is named in the failures."""
    import time

    import pipeline.location.isolate as isolate

    monkeypatch.setattr(isolate, "MIN_PART_TIMEOUT_S", 0.5)
    model, stations, events, picks, assignments, _ = _scenario(seed=4, n_events=6)
    wrapper = _bounded_wrapper(tmp_path, hyp_binary, set(), {3})
    monkeypatch.setenv("EQCAT_HYPOINVERSE", str(wrapper))
    run = _write_run(tmp_path, stations, events, picks, assignments)

    began = time.monotonic()
    entry = locate(run, LocationConfig(timeout_s=12), model)
    took = time.monotonic() - began
    assert took < 12 + 4  # the budget, and the stage's own work besides HypoInverse
    locations = pd.read_parquet(run.path("location", "locations.parquet")).set_index("event_id")
    assert not locations.loc["ev002", "located"]
    assert "did not finish within" in locations.loc["ev002", "reason"]
    assert locations.drop(index="ev002")["located"].all()
    assert entry["details"]["failures"]["event ev002"] == locations.loc["ev002", "reason"]


def test_a_trial_epicentre_far_outside_the_network_is_not_used(hyp_binary, tmp_path):
    """From a trial epicentre on the other side of the Earth hyp1.40 crashed (SIGSEGV) or
    looped; HypoInverse's default start is used instead, and the event is located."""
    model, stations, events, picks, assignments, truth = _scenario(seed=3, n_events=3)
    events.loc[1, ["latitude", "longitude", "depth_km"]] = [-35.3, -133.3, 5.0]
    run = _write_run(tmp_path, stations, events, picks, assignments)

    locate(run, LocationConfig(timeout_s=5), model)
    located = pd.read_parquet(run.path("location", "locations.parquet")).set_index("event_id")
    assert located["located"].all()
    assert "HypoInverse's default start used" in located.loc["ev001", "reason"]
    true = truth.set_index("event_id").loc["ev001"]
    error = epicentral_km(located.loc["ev001", "latitude"], located.loc["ev001", "longitude"],
                          true["latitude"], true["longitude"])  # fmt: skip
    assert error < 3.0
    assert located.loc["ev000", "reason"] == ""


def test_an_unreadable_solution_is_left_out_with_its_event_id(shared, tmp_path):
    """HypoInverse writes ``****`` in a field its solution overflows."""
    lines = shared("data", "hypodd_example1", "El16.arc").read_text().splitlines()
    headers = [0] + [i + 1 for i, line in enumerate(lines[:-1]) if not line[:4].strip()]
    bad = headers[4]
    lines[bad] = lines[bad][:45] + "****" + lines[bad][49:]  # RMS, columns 46-49 (pre-Y2000)
    arc = tmp_path / "bad.arc"
    arc.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=r"bad.arc:\d+: cannot read archive line"):
        parse_archive(arc)
    unreadable: dict[int, str] = {}
    events, phases = parse_archive(arc, unreadable=unreadable)
    (bad_id,) = unreadable
    assert "'****' are not a number" in unreadable[bad_id]
    assert len(events) == 15 and bad_id not in set(events["hypoinverse_id"])
    assert bad_id not in set(phases["hypoinverse_id"]) and len(phases) > 0


def _layered(name: str, tops: list[float], vp: list[float]) -> VelocityModel:
    """A model with Vp/Vs 1.73 in every layer."""
    vp_array = np.array(vp)
    return VelocityModel(name, np.array(tops), vp_array, vp_array / 1.73, 1.73)


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        (_layered("lvz", [0.0, 2.0, 6.0, 30.0], [5.5, 6.2, 5.0, 7.8]), "layer 3 (top 6 km)"),
        (_layered("thin", [0.0, 1.001, 1.004], [5.5, 6.0, 6.5]), "layer 3: top 1.004 km"),
    ],
)
def test_what_preflight_refuses_hypoinverse_refuses(hyp_binary, tmp_path, model, needle):
    """A low-velocity zone, or layer tops that the F5.2 model lines make equal, stopped the
    real HypoInverse ("BAD DATA FOR LAYER CRUST MODEL", no locations) at the locate stage,
    after picking and association; ``eqcat validate`` and the build's checks now name it."""
    from pipeline.preflight import crh_layer_problems

    problems = crh_layer_problems(model)
    assert len(problems) == 1 and needle in problems[0], problems
    _, stations, events, picks, assignments, _ = _scenario(model=model, n_events=2)
    run = _write_run(tmp_path, stations, events, picks, assignments)
    with pytest.raises(HypoInverseError):
        locate(run, LocationConfig(), model)
    log = run.path("location", "hypoinverse.log").read_text()
    assert "BAD DATA FOR LAYER CRUST MODEL" in log


def test_preflight_accepts_what_hypoinverse_reads():
    """Equal velocities in two layers and the shipped models pass (HypoInverse reads them)."""
    from pipeline.preflight import crh_layer_problems

    assert crh_layer_problems(_layered("flat", [0.0, 5.0, 10.0], [5.5, 5.5, 6.5])) == []
    assert crh_layer_problems(_constant_vp_vs_model()) == []
    assert crh_layer_problems(load_velocity_model("tottori")) == []
    assert crh_layer_problems(load_velocity_model("generic_crust")) == []
