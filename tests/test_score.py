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
    run.mkdir()
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
