"""Generated picks with ground truth, and scores of an association against that truth.

Used by the association tests and ``benchmarks/association.py``; it measures an associator
without waveforms. The scenario mimics an aftershock sequence recorded by a local network:
stations scattered within ``radius_km`` of a centre (default the 2000 Western Tottori
epicentral area), hypocentres along a 30 km fault striking N150°E, travel times exact from a
1-D model (:func:`~pipeline.association.geometry.station_travel_times`) plus Gaussian noise,
picks missed at random, each event seen only within its own detection radius, and false
picks at random times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.association.geometry import LocalProjection, StationGeometry, station_travel_times
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
    projection = LocalProjection(*center)
    r = radius_km * np.sqrt(rng.uniform(0.05, 1.0, n_stations))
    az = rng.uniform(0, 2 * np.pi, n_stations)
    lat, lon = projection.inverse(r * np.sin(az), r * np.cos(az))
    stations = pd.DataFrame(
        {
            "network": "SY",
            "station": [f"S{i:02d}" for i in range(n_stations)],
            "location": "",
            "channel_prefix": "HH",
            "latitude": lat,
            "longitude": lon,
            "elevation_m": rng.uniform(0.0, 600.0, n_stations).round(1),
            "sampling_rate": 100.0,
        }
    )
    geometry = StationGeometry.from_table(
        stations.assign(id=stations["network"] + "." + stations["station"] + ".")
    )

    origin_s = np.arange(n_events) * interval_s + rng.uniform(-0.4, 0.4, n_events) * interval_s
    origin_s = np.sort(origin_s - origin_s.min())
    along = rng.uniform(-15.0, 15.0, n_events)
    across = rng.normal(0.0, 1.5, n_events)
    strike = np.deg2rad(150.0)
    ex = along * np.sin(strike) + across * np.cos(strike)
    ey = along * np.cos(strike) - across * np.sin(strike)
    ez = rng.uniform(2.0, 16.0, n_events)
    detect_km = rng.uniform(15.0, 100.0, n_events)
    ex_local, ey_local = projection.forward(*projection.inverse(ex, ey))
    distance = np.hypot(
        ex_local[:, None] - geometry.x_km[None, :], ey_local[:, None] - geometry.y_km[None, :]
    )
    seen = distance <= detect_km[:, None]

    parts = []
    for phase, noise, p_keep in (("P", noise_p_s, p_detect), ("S", noise_s_s, s_detect)):
        tt = station_travel_times(model, phase, geometry, ex_local, ey_local, ez)
        keep = seen & (rng.uniform(size=tt.shape) < p_keep)
        ev, st = np.nonzero(keep)
        parts.append(
            pd.DataFrame(
                {
                    "t": origin_s[ev] + tt[ev, st] + rng.normal(0.0, noise, ev.size),
                    "sta": st,
                    "phase": phase,
                    "true_event": ev,
                    "probability": rng.uniform(0.4, 1.0, ev.size),
                    "probability_std": rng.uniform(0.0, 0.1, ev.size),
                }
            )
        )
    n_true = sum(len(p) for p in parts)
    n_false = int(round(false_fraction * n_true))
    span = origin_s.max() + 60.0 if n_events else 60.0
    parts.append(
        pd.DataFrame(
            {
                "t": rng.uniform(0.0, span, n_false),
                "sta": rng.integers(0, n_stations, n_false),
                "phase": rng.choice(["P", "S"], n_false),
                "true_event": -1,
                "probability": rng.uniform(0.3, 0.8, n_false),
                "probability_std": rng.uniform(0.0, 0.35, n_false),
            }
        )
    )
    raw = pd.concat(parts, ignore_index=True).sort_values("t", kind="stable")
    t0 = pd.Timestamp(start)
    times = t0 + pd.to_timedelta(np.round(raw["t"].to_numpy() * 1e9).astype(np.int64), "ns")
    pick_ids = [f"p{i:08d}" for i in range(len(raw))]
    picks = pd.DataFrame(
        {
            "pick_id": pick_ids,
            "network": "SY",
            "station": stations["station"].to_numpy()[raw["sta"].to_numpy()],
            "location": "",
            "phase": raw["phase"].to_numpy(),
            "time": times,
            "probability": raw["probability"].to_numpy(),
            "probability_std": raw["probability_std"].to_numpy(),
            "time_std_s": 0.0,
            "detection_probability": raw["probability"].to_numpy(),
            "detection_start": times,
            "detection_end": times,
            "picker": "eqt",
            "model": "synthetic",
        }
    )
    n_seen = pd.Series(raw.loc[raw["true_event"] >= 0].groupby("true_event")["sta"].nunique())
    elat, elon = projection.inverse(ex_local, ey_local)
    events = pd.DataFrame(
        {
            "true_event": np.arange(n_events),
            "origin_time": t0 + pd.to_timedelta(np.round(origin_s * 1e9).astype(np.int64), "ns"),
            "latitude": elat,
            "longitude": elon,
            "depth_km": ez,
            "n_stations": n_seen.reindex(np.arange(n_events), fill_value=0).to_numpy(),
        }
    )
    pick_truth = pd.Series(raw["true_event"].to_numpy(), index=pick_ids, name="true_event")
    return Scenario(stations=stations, picks=picks, events=events, pick_truth=pick_truth)


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
