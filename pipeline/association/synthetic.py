"""Generated picks with ground truth, and scores of an association against that truth.

Used by the association tests and ``benchmarks/association.py``; it measures an associator
without waveforms. The scenario mimics an aftershock sequence recorded by a local network:
stations scattered within ``radius_km`` of a centre (default the 2000 Western Tottori
epicentral area), hypocentres on a vertical 30 km fault striking N150°E through that centre
(:func:`pipeline.synthetic.sequence.fault_hypocentres`, 1.5 km scatter), origins about
``interval_s`` apart, exact arrivals from a 1-D model plus Gaussian pick errors
(:mod:`pipeline.synthetic.picks`), picks missed at random, each event seen only within its
own detection radius, and false picks at random times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.synthetic.picks import arrival_picks, generated_stations, picks_table
from pipeline.synthetic.sequence import Fault, fault_hypocentres, spaced_times_s
from pipeline.velocity import VelocityModel


@dataclass(frozen=True)
class Scenario:
    """A generated data set.

    Attributes:
        stations: stations.csv columns (network, station, location, channel_prefix,
            latitude, longitude, elevation_m, sampling_rate).
        picks: DESIGN.md picks columns, sorted by time.
        events: truth: true_event (int), origin_time, latitude, longitude, depth_km,
            n_stations (stations with at least one generated pick).
        pick_truth: pick_id -> true_event (-1 for false picks), a Series.
    """

    stations: pd.DataFrame
    picks: pd.DataFrame
    events: pd.DataFrame
    pick_truth: pd.Series


def generate(
    model: VelocityModel,
    n_events: int,
    *,
    interval_s: float = 10.0,
    n_stations: int = 18,
    center: tuple[float, float] = (35.27, 133.35),
    radius_km: float = 40.0,
    noise_p_s: float = 0.08,
    noise_s_s: float = 0.1,
    p_detect: float = 0.9,
    s_detect: float = 0.85,
    false_fraction: float = 0.1,
    start: str = "2000-10-06T13:30:00Z",
    seed: int = 0,
) -> Scenario:
    """Generate a scenario (see module docstring).

    Args:
        model: velocity model of the travel times.
        n_events: number of events; origins are ``interval_s`` apart on average (uniform
            jitter of ±40% of the interval), so wavetrains overlap.
        n_stations, center, radius_km: station layout (degrees, km).
        noise_p_s, noise_s_s: standard deviation (s) of the pick time errors.
        p_detect, s_detect: chance that a station within an event's detection radius
            (uniform 15-100 km per event) has its P / S pick.
        false_fraction: false picks as a fraction of the true picks.
        start: time of the first origin.
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    lat0, lon0 = center
    r = radius_km * np.sqrt(rng.uniform(0.05, 1.0, n_stations))
    az = rng.uniform(0, 2 * np.pi, n_stations)
    elevation_m = rng.uniform(0.0, 600.0, n_stations).round(1)
    stations = generated_stations(lat0, lon0, r * np.sin(az), r * np.cos(az), elevation_m)

    t0 = pd.Timestamp(start)
    origin_s = spaced_times_s(rng, n_events, interval_s, 0.8 * interval_s)
    fault = Fault(lat0, lon0, 150.0, 90.0, 30.0, 2.0, 16.0, 1.5)
    events = fault_hypocentres(rng, n_events, fault)
    events.insert(0, "origin_time", t0 + pd.to_timedelta(origin_s, unit="s"))
    detect_km = rng.uniform(15.0, 100.0, n_events)

    arrivals = arrival_picks(rng, events, stations, model, (noise_p_s, noise_s_s))
    p_keep = np.where(arrivals["phase"] == "P", p_detect, s_detect)
    seen = arrivals["distance_km"].to_numpy() <= detect_km[arrivals["event"].to_numpy()]
    true = arrivals.loc[seen & (rng.uniform(size=len(arrivals)) < p_keep)]
    true = true[["station", "phase", "time", "time_std_s", "event"]].reset_index(drop=True)
    true = true.rename(columns={"event": "true_event"}).assign(
        probability=rng.uniform(0.4, 1.0, len(true)),
        probability_std=rng.uniform(0.0, 0.1, len(true)),
    )
    n_false = int(round(false_fraction * len(true)))
    span = origin_s.max() + 60.0 if n_events else 60.0
    false_phase = rng.choice(["P", "S"], n_false)
    false = pd.DataFrame(
        {
            "station": rng.integers(0, n_stations, n_false),
            "phase": false_phase,
            "time": t0 + pd.to_timedelta(rng.uniform(0.0, span, n_false), unit="s"),
            "time_std_s": np.where(false_phase == "P", noise_p_s, noise_s_s),
            "true_event": -1,
            "probability": rng.uniform(0.3, 0.8, n_false),
            "probability_std": rng.uniform(0.0, 0.35, n_false),
        }
    )
    raw = pd.concat([true, false], ignore_index=True).sort_values("time", kind="stable")
    picks = picks_table(raw.assign(detection_probability=raw["probability"]), stations)
    n_seen = true.groupby("true_event")["station"].nunique()
    events = events.assign(
        true_event=np.arange(n_events),
        n_stations=n_seen.reindex(np.arange(n_events), fill_value=0).to_numpy(),
    )
    columns = ["true_event", "origin_time", "latitude", "longitude", "depth_km", "n_stations"]
    pick_truth = pd.Series(
        raw["true_event"].to_numpy(), index=picks["pick_id"].to_numpy(), name="true_event"
    )
    return Scenario(stations=stations, picks=picks, events=events[columns], pick_truth=pick_truth)


def score(
    scenario: Scenario,
    events: pd.DataFrame,
    assignments: pd.DataFrame,
    min_stations: int = 4,
) -> dict[str, float]:
    """Precision and recall of event recovery and of pick assignment.

    A found event *matches* the true event that contributed most of its picks (one found event
    per true event: the one with most such picks). Event recall counts true events with at
    least ``min_stations`` stations; event precision counts the found events with at least
    ``min_stations`` stations (event_precision_all: all found events). A pick is
    correctly assigned when its found event matches its true event; pick precision is over
    assigned picks, pick recall over true picks of the counted events.

    Returns:
        event_precision, event_precision_all, event_recall, pick_precision, pick_recall,
        n_found, n_true, and
        origin_error_median_s (|found - true origin time| over matches).
    """
    a = assignments.assign(true_event=scenario.pick_truth.loc[assignments["pick_id"]].to_numpy())
    votes = a[a["true_event"] >= 0].groupby(["event_id", "true_event"]).size()
    votes = votes.rename("n").reset_index().sort_values("n", ascending=False)
    best = votes.drop_duplicates("event_id").drop_duplicates("true_event")
    match = dict(zip(best["event_id"], best["true_event"], strict=True))
    counted = scenario.events.loc[scenario.events["n_stations"] >= min_stations, "true_event"]
    found_true = set(match.values())
    a["correct"] = a["event_id"].map(match) == a["true_event"]
    true_picks = scenario.pick_truth[scenario.pick_truth.isin(set(counted))]
    correct_ids = set(a.loc[a["correct"], "pick_id"])
    origin = events.set_index("event_id")["origin_time"]
    truth_origin = scenario.events.set_index("true_event")["origin_time"]
    errors = [abs((origin[e] - truth_origin[t]).total_seconds()) for e, t in match.items()]
    large = events.loc[events["n_stations"] >= min_stations, "event_id"]
    return {
        "event_precision": len(set(large) & set(match)) / max(len(large), 1),
        "event_precision_all": len(match) / max(len(events), 1),
        "event_recall": len(found_true & set(counted)) / max(len(counted), 1),
        "pick_precision": float(a["correct"].mean()) if len(a) else 0.0,
        "pick_recall": len(correct_ids & set(true_picks.index)) / max(len(true_picks), 1),
        "n_found": len(events),
        "n_true": int(len(counted)),
        "origin_error_median_s": float(np.median(errors)) if errors else float("nan"),
    }
