"""A tight earthquake cluster with ground truth, for relocation tests and benchmarks.

Known hypocentres in a small volume, stations on a ring around it, P and S picks with
Gaussian timing noise (arrivals, picks and the stations table from
:mod:`pipeline.synthetic.picks`), and (optionally) three-component waveforms in an SDS
archive: each arrival is a Gabor wavelet common to the whole cluster (similar sources, as in
an aftershock sequence) plus a small event-specific part and background noise, placed at the
exact (sub-sample) arrival time so cross-correlation has a true answer. The starting
locations mimic HypoInverse output: the truth perturbed by Gaussian errors
(``start_error_km``), as the location stage would leave it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from obspy import Stream, Trace, UTCDateTime

from pipeline.rundir import RunDir, write_parquet_atomic
from pipeline.synthetic.picks import arrival_picks, generated_stations, picks_table
from pipeline.synthetic.sequence import degrees_to_offsets, offsets_to_degrees, spaced_times_s
from pipeline.velocity import VelocityModel
from pipeline.waveforms.inventory import write_stations_csv
from pipeline.waveforms.sds import write_channel_day


@dataclass
class ClusterScenario:
    """Truth and the stage inputs of a generated cluster (tables as DESIGN.md defines)."""

    truth: pd.DataFrame  # event_id, origin_time, latitude, longitude, depth_km
    locations: pd.DataFrame  # starting locations (perturbed truth) + located, rms_s, erh/erz
    picks: pd.DataFrame
    assignments: pd.DataFrame  # event_id, pick_id, phase
    stations: pd.DataFrame
    arrivals: pd.DataFrame  # event_id, network, station, phase, time (true arrival)


def _sphere_offsets_km(rng: np.random.Generator, size: int, radius_km: float) -> np.ndarray:
    """``size`` points (east, north, down; km) uniform in a sphere of ``radius_km``, (size, 3)."""
    v = rng.normal(size=(size, 3))
    r = radius_km * rng.uniform(size=(size, 1)) ** (1 / 3)
    return v * r / np.linalg.norm(v, axis=1, keepdims=True)


def make_cluster(
    model: VelocityModel,
    n_events: int = 30,
    n_stations: int = 10,
    *,
    seed: int = 0,
    center: tuple[float, float] = (35.27, 133.35),
    radius_km: float = 1.0,
    depth_km: float = 10.0,
    aperture_km: float = 30.0,
    spacing_s: float = 20.0,
    pick_noise_s: tuple[float, float] = (0.03, 0.05),
    start_error_km: tuple[float, float] = (0.5, 1.0),
    start: str = "2000-10-06T05:00:00",
) -> ClusterScenario:
    """Generate the scenario.

    Args:
        model: velocity model for the true travel times.
        n_events, n_stations: sizes.
        seed: random seed (the same seed gives the same scenario).
        center: cluster centre (latitude, longitude), degrees.
        radius_km: hypocentres uniform in a sphere of this radius (km) around the centre.
        depth_km: depth of the centre (km).
        aperture_km: stations on a ring of this radius (km), with jitter.
        spacing_s: time between consecutive origins (s; plus a uniform 0-2 s jitter).
        pick_noise_s: standard deviation (s) of P and S pick errors.
        start_error_km: standard deviation (km) of the horizontal and vertical starting error.
        start: first origin time (UTC).
    """
    rng = np.random.default_rng(seed)
    lat0, lon0 = center
    v = _sphere_offsets_km(rng, n_events, radius_km)
    lat, lon = offsets_to_degrees(lat0, lon0, v[:, 0], v[:, 1])
    origin_s = spaced_times_s(rng, n_events, spacing_s, 2.0)
    event_ids = np.array([f"ev{i + 1:06d}" for i in range(n_events)], dtype=object)
    truth = pd.DataFrame(
        {
            "event_id": event_ids,
            "origin_time": pd.Timestamp(start, tz="UTC") + pd.to_timedelta(origin_s, unit="s"),
            "latitude": lat,
            "longitude": lon,
            "depth_km": depth_km + v[:, 2],
        }
    )
    az = np.linspace(0, 2 * np.pi, n_stations, endpoint=False) + rng.uniform(0, 0.3, n_stations)
    dist = aperture_km * rng.uniform(0.3, 1.0, n_stations)
    stations = generated_stations(lat0, lon0, dist * np.sin(az), dist * np.cos(az))

    arrivals = arrival_picks(rng, truth, stations, model, pick_noise_s)
    picks = picks_table(
        arrivals.assign(
            probability=rng.uniform(0.5, 1.0, len(arrivals)),
            probability_std=0.0,
            detection_probability=0.9,
        ),
        stations,
    )
    event_of_pick = event_ids[arrivals["event"].to_numpy()]
    assignments = pd.DataFrame(
        {"event_id": event_of_pick, "pick_id": picks["pick_id"], "phase": picks["phase"]}
    )
    eh, ez = start_error_km
    start_lat, start_lon = offsets_to_degrees(
        truth["latitude"].to_numpy(),
        truth["longitude"].to_numpy(),
        rng.normal(0, eh, n_events),
        rng.normal(0, eh, n_events),
    )
    locations = pd.DataFrame(
        {
            "event_id": event_ids,
            "origin_time": truth["origin_time"]
            + pd.to_timedelta(rng.normal(0, 0.05, n_events), unit="s"),
            "latitude": start_lat,
            "longitude": start_lon,
            "depth_km": (truth["depth_km"] + rng.normal(0, ez, n_events)).clip(lower=0.5),
            "located": True,
            "rms_s": 0.05,
            "erh_km": eh,
            "erz_km": ez,
        }
    )
    arr = pd.DataFrame(
        {
            "event_id": event_of_pick,
            "network": picks["network"],
            "station": picks["station"],
            "phase": picks["phase"],
            "time": arrivals["arrival"],
        }
    )
    return ClusterScenario(truth, locations, picks, assignments, stations, arr)


def _gabor(t: np.ndarray, freq: float, width: float) -> np.ndarray:
    return np.exp(-((t / width) ** 2)) * np.sin(2 * np.pi * freq * t)


def write_waveforms(
    scenario: ClusterScenario, root, *, seed: int = 0, noise: float = 0.02, similarity: float = 0.9
) -> None:
    """Write three-component 100 Hz records of the whole scenario to the SDS archive ``root``.

    ``similarity`` is the weight of the cluster-wide wavelet (the rest is event-specific).
    """
    rng = np.random.default_rng(seed + 1)
    rate = 100.0
    t_first = scenario.truth["origin_time"].min() - pd.Timedelta(seconds=5)
    t_last = scenario.arrivals["time"].max() + pd.Timedelta(seconds=10)
    npts = int((t_last - t_first).total_seconds() * rate)
    t0 = UTCDateTime(ns=int(t_first.value))
    event_shape = {
        e: (rng.uniform(5, 9), rng.uniform(2.5, 4.5)) for e in scenario.truth["event_id"]
    }
    for sta in scenario.stations.itertuples(index=False):
        data = {c: rng.normal(0, noise, npts) for c in "ZNE"}
        baz = rng.uniform(0, 2 * np.pi)
        arr = scenario.arrivals[scenario.arrivals["station"] == sta.station]
        for a in arr.itertuples(index=False):
            offset = (a.time - t_first).total_seconds()
            i0 = int(offset * rate) - 100
            idx = np.arange(max(i0, 0), min(i0 + 400, npts))
            t = idx / rate - offset
            fp, fs = event_shape[a.event_id]
            if a.phase == "P":
                w = similarity * _gabor(t, 7.0, 0.12) + (1 - similarity) * _gabor(t, fp, 0.1)
                data["Z"][idx] += w
                data["N"][idx] += 0.2 * w
                data["E"][idx] += 0.2 * w
            else:
                w = similarity * _gabor(t, 4.0, 0.2) + (1 - similarity) * _gabor(t, fs, 0.2)
                data["N"][idx] += 2.0 * np.cos(baz) * w
                data["E"][idx] += 2.0 * np.sin(baz) * w
                data["Z"][idx] += 0.3 * w
        stream = Stream()
        for comp, values in data.items():
            header = {
                "network": sta.network,
                "station": sta.station,
                "location": sta.location,
                "channel": f"{sta.channel_prefix}{comp}",
                "sampling_rate": rate,
                "starttime": t0,
            }
            stream += Trace(np.round(values * 1e4).astype(np.int32), header=header)
        day = t_first.date()
        while UTCDateTime(day) < t0 + npts / rate:
            day_start = UTCDateTime(day)
            part = stream.slice(day_start, day_start + 86400 - 1 / rate)
            if len(part):
                write_channel_day(part, root, day)
            day = day + timedelta(days=1)


def write_run(run: RunDir, scenario: ClusterScenario, *, waveforms: bool = True) -> None:
    """Write the scenario as the earlier stages would leave a run directory."""
    write_parquet_atomic(scenario.locations, run.path("location", "locations.parquet"))
    write_parquet_atomic(scenario.assignments, run.path("association", "assignments.parquet"))
    write_parquet_atomic(scenario.picks, run.path("picks", "picks.parquet"))
    write_stations_csv(scenario.stations, run.path("waveforms", "stations.csv"))
    if waveforms:
        write_waveforms(scenario, run.stage_dir("waveforms"))


def relative_errors_km(truth: pd.DataFrame, located: pd.DataFrame) -> np.ndarray:
    """|(x_i - x_j)_located - (x_i - x_j)_true| (km, 3-D) over all pairs of common events."""
    both = truth.merge(located, on="event_id", suffixes=("_t", "_l"))
    lat0, lon0 = float(both["latitude_t"].mean()), float(both["longitude_t"].mean())

    def xyz(s):
        east, north = degrees_to_offsets(lat0, lon0, both[f"latitude_{s}"], both[f"longitude_{s}"])
        return np.column_stack([east, north, both[f"depth_km_{s}"]])

    err = xyz("l") - xyz("t")
    i, j = np.triu_indices(len(both), k=1)
    return np.linalg.norm(err[i] - err[j], axis=1)
