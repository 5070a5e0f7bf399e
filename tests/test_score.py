"""Truth scoring on a hand-built truth and run whose errors are known exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.rundir import write_parquet_atomic, write_text_atomic
from pipeline.score import format_truth_table, match_events, score_run

N_TRUE = 400
KM_PER_DEG = 111.195


def _truth(folder, rng):
    """400 events one minute apart, G–R magnitudes (b = 1) from 0.5; P and S picks at 3 stations."""
    t0 = pd.Timestamp("2000-10-07T05:00:00Z")
    mags = np.round(0.5 - np.log10(rng.random(N_TRUE)), 2)
    catalog = pd.DataFrame(
        {
            "event_id": [f"syn{i:06d}" for i in range(N_TRUE)],
            "origin_time": t0 + pd.to_timedelta(np.arange(N_TRUE) * 60.0 + 5.0, "s"),
            "latitude": 35.27 + rng.normal(0, 0.05, N_TRUE),
            "longitude": 133.35 + rng.normal(0, 0.05, N_TRUE),
            "depth_km": rng.uniform(2, 15, N_TRUE),
            "magnitude": mags,
        }
    )
    rows = []
    for ev in catalog.itertuples():
        for k, sta in enumerate(("AAAH", "BBBH", "CCCH")):
            for phase, tt in (("P", 2.0 + k), ("S", 3.5 + 1.7 * k)):
                rows.append(
                    {
                        "event_id": ev.event_id,
                        "network": "N",
                        "station": sta,
                        "phase": phase,
                        "time": ev.origin_time + pd.Timedelta(seconds=tt),
                        "snr": 10.0,
                        "in_gap": False,
                    }
                )
    picks = pd.DataFrame(rows)
    out = catalog.copy()
    out["origin_time"] = out.origin_time.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    write_text_atomic(folder / "catalog.csv", out.to_csv(index=False))
    out = picks.copy()
    out["time"] = out.time.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    write_text_atomic(folder / "picks.csv", out.to_csv(index=False))
    summary = {"start_time": str(t0), "end_time": str(t0 + pd.Timedelta(hours=8))}
    write_text_atomic(
        folder / "scenario.json", json.dumps({"config": {"b_value": 1.0}, "summary": summary})
    )
    return catalog, picks


@pytest.fixture
def scored(tmp_path):
    """A run that found the events with M >= 1.0 (plus 10 false ones) with known errors."""
    rng = np.random.default_rng(7)
    truth, truth_picks = _truth(tmp_path / "truth", rng)
    run = tmp_path / "run"
    found = truth[truth.magnitude >= 1.0].reset_index(drop=True)
    n = len(found)
    events = found.copy()
    events["event_id"] = [f"ev{i}" for i in range(n)]
    events["origin_time"] = events.origin_time + pd.Timedelta(seconds=0.3)
    events["latitude"] = events.latitude + 1.0 / KM_PER_DEG  # 1 km north
    events["depth_km"] = events.depth_km + 2.0
    events["magnitude"] = events.magnitude + 0.1
    false = events.iloc[:10].copy()
    false["event_id"] = [f"false{i}" for i in range(10)]
    false["origin_time"] = false.origin_time + pd.Timedelta(seconds=30)
    catalog = pd.concat(
        [events.assign(location_stage="hypodd"), false.assign(location_stage="association")],
        ignore_index=True,
    )
    write_parquet_atomic(catalog, run / "catalog" / "catalog.parquet")
    locations = catalog.assign(located=True)
    write_parquet_atomic(locations, run / "location" / "locations.parquet")
    relocations = catalog.assign(
        latitude=catalog.latitude - 0.5 / KM_PER_DEG, depth_km=catalog.depth_km - 1.5
    )
    relocations["relocated"] = np.arange(len(catalog)) % 2 == 0
    write_parquet_atomic(relocations, run / "relocation" / "relocations.parquet")
    picks = truth_picks[truth_picks.event_id.isin(found.event_id)].copy()
    offset = np.where(picks.phase == "P", 0.05, -0.1)
    picks["time"] = picks.time + pd.to_timedelta(offset, "s")
    picks["pick_id"] = [f"p{i}" for i in range(len(picks))]
    picks = pd.concat(  # a spurious P and S far from any arrival
        [picks, picks.iloc[:2].assign(time=lambda d: d.time + pd.Timedelta(seconds=20))]
    )
    write_parquet_atomic(picks.drop(columns=["snr", "in_gap"]), run / "picks" / "picks.parquet")
    return score_run(run, tmp_path / "truth"), n, run


def test_event_recall_precision_and_bins(scored):
    score, n, run = scored
    assert score["n_true_events"] == N_TRUE
    assert score["n_matched_events"] == n
    assert score["recall"] == pytest.approx(n / N_TRUE)
    assert score["precision"] == pytest.approx(n / (n + 10))
    assert score["by_location_stage"] == [
        {"stage": "association", "n": 10, "n_matched": 0, "precision": 0.0},
        {"stage": "hypodd", "n": n, "n_matched": n, "precision": 1.0},
    ]
    assert "association 0/10 matched" in format_truth_table(score)
    below = [b for b in score["by_magnitude"] if b["m_high"] <= 1.0]
    above = [b for b in score["by_magnitude"] if b["m_low"] >= 1.0]
    assert all(b["n_detected"] == 0 for b in below)
    assert all(b["recall"] == 1.0 for b in above)
    assert score["m_recall90"] == 1.0
    # The detected catalog is complete from M 1.0: Mc of its true magnitudes is about that.
    assert 0.9 <= score["mc_true"] <= 1.4
    true_m = pd.read_csv(run.parent / "truth" / "catalog.csv").magnitude
    above = true_m[true_m >= score["mc_true"] - 0.05]
    assert score["recall_above_mc_true"] == pytest.approx((above >= 1.0).mean())


def test_picks_locations_magnitudes(scored):
    score, n, run = scored
    p, s = score["picks"]["P"], score["picks"]["S"]
    assert p["n_matched"] == 3 * n and s["n_matched"] == 3 * n
    assert p["mean_s"] == pytest.approx(0.05, abs=1e-6)
    assert s["mae_s"] == pytest.approx(0.1, abs=1e-6)
    assert p["std_s"] == pytest.approx(0.0, abs=1e-6)
    assert p["precision"] == pytest.approx(3 * n / (3 * n + 1))  # one spurious P, one S
    assert p["n_true_high_snr"] == 0  # the hand-built truth has snr 10 everywhere
    assert p["recall_by_snr"] == [
        {"snr_low": 10.0, "snr_high": 20.0, "n_true": 3 * N_TRUE, "recall": n / N_TRUE}
    ]
    hyp = score["hypoinverse"]
    assert hyp["median_epicentral_error_km"] == pytest.approx(1.0, abs=0.01)
    assert hyp["median_depth_bias_km"] == pytest.approx(2.0, abs=1e-6)
    dd = score["hypodd"]
    assert dd["n_located"] == (n + 10 + 1) // 2  # only rows HypoDD relocated
    assert dd["median_epicentral_error_km"] == pytest.approx(0.5, abs=0.01)
    assert dd["median_abs_depth_error_km"] == pytest.approx(0.5, abs=1e-6)
    assert score["magnitude"]["bias"] == pytest.approx(0.1, abs=1e-6)
    assert score["magnitude"]["mad"] == pytest.approx(0.0, abs=1e-6)
    assert score["b_true"] == 1.0
    assert score["b_recovered"] == pytest.approx(1.0, abs=0.3)
    written = json.loads((run / "score.json").read_text())
    assert written["recall"] == score["recall"]
    table = format_truth_table(score)
    assert "hypodd" in table and "recall" in table


def test_missing_stages_give_none_with_notes(tmp_path):
    rng = np.random.default_rng(1)
    _truth(tmp_path / "truth", rng)
    run = tmp_path / "run"
    (run / "waveforms").mkdir(parents=True)  # a build that stopped after its download
    score = score_run(run, tmp_path / "truth")
    assert score["recall"] is None and score["picks"] is None and score["hypodd"] is None
    assert any("picks" in note for note in score["notes"])
    assert "—" in format_truth_table(score)


def test_match_is_one_to_one():
    t = pd.Timestamp("2000-10-07T05:00:00Z")
    truth = pd.DataFrame(
        {
            "origin_time": [t, t + pd.Timedelta(seconds=1)],
            "latitude": [35.0, 35.0],
            "longitude": [133.0, 133.0],
        }
    )
    run = pd.DataFrame(
        {"origin_time": [t + pd.Timedelta(seconds=0.9)], "latitude": [35.0], "longitude": [133.0]}
    )
    m = match_events(run, truth, 2.0, 10.0)
    assert len(m) == 1 and m.truth.iloc[0] == 1


def test_unlocated_rows_are_left_out_with_a_note(tmp_path):
    import pandas as pd

    from pipeline.score import _event_table

    loc = tmp_path / "location"
    loc.mkdir()
    pd.DataFrame(
        {
            "event_id": ["ev1", "ev2"],
            "origin_time": pd.to_datetime(["2000-10-08T05:00:00Z", None], utc=True),
            "latitude": [35.2, float("nan")],
            "longitude": [133.3, float("nan")],
            "depth_km": [8.0, float("nan")],
        }
    ).to_parquet(loc / "locations.parquet")
    notes: list[str] = []
    table, source = _event_table(tmp_path, notes)
    assert source == "location/locations.parquet"
    assert list(table.event_id) == ["ev1"]
    assert notes == ["events: 1 rows of location/locations.parquet without a hypocentre"]


def _loss_run(run, truth, truth_picks):
    """A run whose events fail at known stages (groups of 10 true events, in time order).

    0-9 no picks; 10-19 picked, left unassigned; 20-29 split over two events (2 + 1
    stations); 30-39 merged into the event of the next true event (their 3 P picks with its
    6 picks); 40-49 not located; 50-59 located but 30 s off in the catalog; 60-69 located,
    not in the catalog; from 70 in the catalog (events 70-74 also with a duplicate holding
    two of their picks); plus 3 catalog events made of picks that match no arrival.
    """
    picks = truth_picks.copy()
    picks["pick_id"] = [f"p{i}" for i in range(len(picks))]
    row = pd.Series(np.arange(len(truth)), index=truth.event_id)
    picks["true"] = picks.event_id.map(row)
    picks = picks[picks.true >= 10]
    bogus = picks[picks.true == 399].assign(
        time=lambda d: d.time + pd.Timedelta(seconds=25), true=-1, pick_id=lambda d: "x" + d.pick_id
    )
    picks = pd.concat([picks, bogus])
    assign = []
    catalog, locations = [], []

    def event(event_id, members, true_row, shift_s=0.0, located=True, in_catalog=True):
        assign.extend((event_id, p) for p in members)
        origin = truth.iloc[true_row]
        rec = {
            "event_id": event_id,
            "origin_time": origin.origin_time + pd.Timedelta(seconds=shift_s),
            "latitude": origin.latitude,
            "longitude": origin.longitude,
            "depth_km": origin.depth_km,
        }
        locations.append(rec | {"located": located})
        if located:
            catalog.append(rec | {"magnitude": origin.magnitude, "in_default": in_catalog})

    by_true = dict(tuple(picks.groupby("true")))
    for k in range(20, 400):
        own = by_true[k]
        if 20 <= k < 30:
            event(f"a{k}", own[own.station != "CCCH"].pick_id, k, in_catalog=False)
            event(f"b{k}", own[own.station == "CCCH"].pick_id, k, in_catalog=False)
        elif 30 <= k < 40 and k % 2 == 0:
            nxt = by_true[k + 1]
            merged = [*own[own.phase == "P"].pick_id, *nxt.pick_id]
            event(f"m{k}", merged, k + 1)
        elif 30 <= k < 40:
            continue
        elif k < 70:
            event(f"e{k}", own.pick_id, k, shift_s=30.0 if k >= 50 else 0.0,
                  located=k >= 50, in_catalog=k < 60)  # fmt: skip
        else:
            event(f"e{k}", own.pick_id[2:], k)
            if k < 75:
                event(f"d{k}", own.pick_id[:2], k, shift_s=20.0)
    for j, chunk in enumerate(np.array_split(bogus.pick_id.to_numpy(), 3)):
        event(f"f{j}", chunk, 399, shift_s=40.0 + j)
    write_parquet_atomic(
        picks.drop(columns=["snr", "in_gap", "true", "event_id"]), run / "picks" / "picks.parquet"
    )
    write_parquet_atomic(
        pd.DataFrame(assign, columns=["event_id", "pick_id"]),
        run / "association" / "assignments.parquet",
    )
    write_parquet_atomic(pd.DataFrame(locations), run / "location" / "locations.parquet")
    full = pd.DataFrame(catalog)
    write_parquet_atomic(full[full.in_default], run / "catalog" / "catalog.parquet")
    write_parquet_atomic(full, run / "catalog" / "catalog_all.parquet")


def test_stage_losses_attribute_each_lost_event_to_its_stage(tmp_path):
    rng = np.random.default_rng(3)
    truth, truth_picks = _truth(tmp_path / "truth", rng)
    _loss_run(tmp_path / "run", truth, truth_picks)
    score = score_run(tmp_path / "run", tmp_path / "truth")
    losses = score["stage_losses"]
    total = losses["all"]
    assert losses["min_stations"] == 3
    assert total["n_true"] == N_TRUE
    assert total["lost_picks_missed"] == 10
    assert total["lost_not_associated"] == 10
    assert total["lost_split"] == 10
    assert total["lost_merged"] == 5
    assert total["lost_not_located"] == 10
    assert total["lost_mislocated"] == 10
    assert total["lost_not_in_catalog"] == 10
    assert total["n_in_catalog"] == score["n_matched_events"] == N_TRUE - 65
    assert [total[f"n_{s}"] for s in ("picked", "associated", "located")] == [390, 365, 355]
    assert sum(row["n_true"] for row in losses["by_magnitude"]) == N_TRUE
    for row in [*losses["by_magnitude"], total]:
        lost = sum(v for k, v in row.items() if k.startswith("lost_"))
        assert row["n_true"] == row["n_in_catalog"] + lost
    false = losses["false_events"]
    assert false == {"n": 18, "duplicate": 5, "mislocated": 10, "false_picks": 3, "no_picks": 0}
    # catalog_all also holds the 20 events of the split ones (one of each pair at the true
    # origin) and the 10 left out of the default catalog (30 s off)
    full = score["catalog_all"]
    assert full["n_matched"] == score["n_matched_events"] + 10
    assert full["n_events"] == score["n_detected_events"] + 30
    text = format_truth_table(score)
    assert "where true events are lost" in text and "false catalog events 18" in text
    assert "full catalog (catalog_all" in text
    # every picked event has its arrivals at >= 5 stations, each matched
    assert total["n_enough_picks"] == total["n_picked"]
    assert "enough picks" in text


def test_fixed_reference_magnitude_sets_the_cut(scored):
    """``mc_ref`` replaces the run-dependent true Mc in the at/above figures and loss row."""
    _, _, run = scored
    score = score_run(run, run.parent / "truth", mc_ref=0.5)
    true_m = pd.read_csv(run.parent / "truth" / "catalog.csv").magnitude
    above = true_m[true_m >= 0.45]
    assert score["mc_ref"] == 0.5
    assert 0.9 <= score["mc_true"] <= 1.4  # still reported, unchanged
    assert score["recall_above_mc_true"] == pytest.approx((above >= 1.0).mean())
    assert score["recall_above_mc_true"] < 1.0  # the events below M 1.0 now count as missed
    assert score["stage_losses"]["above_mc_true"]["n_true"] == len(above)
    assert "reference M 0.5" in format_truth_table(score)


def test_enough_picks_needs_five_matched_arrivals_at_three_stations():
    """The recall ceiling of the loss table: an event counts when run picks match >= 5 of its
    arrivals at >= 3 stations (two picks of one arrival count once)."""
    from pipeline.score_losses import enough_picks

    # event 0: P+S at 3 stations (6); event 1: P+S at 2 stations + P at a third (5); event 2:
    # P at 5 stations but only 4 matched; event 3: P+S at 2 stations (4 readings)
    rows = (
        [(0, s, ph) for s in "ABC" for ph in "PS"]
        + [(1, s, ph) for s in "AB" for ph in "PS"]
        + [(1, "C", "P")]
    )
    rows += [(2, s, "P") for s in "ABCDE"] + [(3, s, ph) for s in "AB" for ph in "PS"]
    truth_picks = pd.DataFrame(rows, columns=["event", "station", "phase"]).assign(network="XX")
    matched = [i for i, r in enumerate(rows) if not (r[0] == 2 and r[1] == "E")]
    pick_truth = pd.Series([*matched, matched[0], -1])  # a second pick of one arrival; a false one
    enough = enough_picks(
        4, truth_picks, truth_picks["event"].to_numpy(), pick_truth, min_stations=3
    )
    assert enough.tolist() == [True, True, False, False]
    assert not enough_picks(4, truth_picks, truth_picks["event"].to_numpy(), None, 3).any()
