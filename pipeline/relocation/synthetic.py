"""A tight earthquake cluster with ground truth, for relocation tests and benchmarks.

Known hypocentres in a small volume, stations on a ring around it, P and S picks with
Gaussian timing noise, and (optionally) three-component waveforms in an SDS archive: each
arrival is a Gabor wavelet common to the whole cluster (similar sources, as in an aftershock
sequence) plus a small event-specific part and background noise, placed at the exact
(sub-sample) arrival time so cross-correlation has a true answer. The starting locations
mimic HypoInverse output: the truth perturbed by Gaussian errors (``start_error_km``), as
the location stage would leave it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from obspy import Stream, Trace, UTCDateTime

from pipeline.relocation.ph2dt import KM_PER_DEG
from pipeline.rundir import RunDir, write_parquet_atomic
from pipeline.velocity import VelocityModel, travel_time
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
        spacing_s: time between consecutive origins (s).
        pick_noise_s: standard deviation (s) of P and S pick errors.
        start_error_km: standard deviation (km) of the horizontal and vertical starting error.
        start: first origin time (UTC).
    """
    rng = np.random.default_rng(seed)
    lat0, lon0 = center
    kx = KM_PER_DEG * np.cos(np.radians(lat0))
    # events uniform in a sphere
    v = rng.normal(size=(n_events, 3))
    v *= (radius_km * rng.uniform(size=(n_events, 1)) ** (1 / 3)) / np.linalg.norm(
        v, axis=1, keepdims=True
    )
    origin = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(
        np.arange(n_events) * spacing_s + rng.uniform(0, 2, n_events), unit="s"
    )
    event_ids = [f"ev{i + 1:06d}" for i in range(n_events)]
    truth = pd.DataFrame(
        {
            "event_id": event_ids,
            "origin_time": origin,
            "latitude": lat0 + v[:, 1] / KM_PER_DEG,
            "longitude": lon0 + v[:, 0] / kx,
            "depth_km": depth_km + v[:, 2],
        }
    )
    az = np.linspace(0, 2 * np.pi, n_stations, endpoint=False) + rng.uniform(0, 0.3, n_stations)
    dist = aperture_km * rng.uniform(0.3, 1.0, n_stations)
    stations = pd.DataFrame(
        {
            "network": "SY",
            "station": [f"S{i + 1:03d}" for i in range(n_stations)],
            "location": "",
            "channel_prefix": "HH",
            "latitude": lat0 + dist * np.cos(az) / KM_PER_DEG,
            "longitude": lon0 + dist * np.sin(az) / kx,
            "elevation_m": 0.0,
            "sampling_rate": 100.0,
        }
    )
    # true arrivals and noisy picks
    ex = (truth["longitude"].to_numpy() - lon0) * kx
    ey = (truth["latitude"].to_numpy() - lat0) * KM_PER_DEG
    sx = (stations["longitude"].to_numpy() - lon0) * kx
    sy = (stations["latitude"].to_numpy() - lat0) * KM_PER_DEG
    epi = np.hypot(ex[:, None] - sx[None, :], ey[:, None] - sy[None, :])
    depth = np.broadcast_to(truth["depth_km"].to_numpy()[:, None], epi.shape)
    rows, arrivals = [], []
    for phase, noise in zip(("P", "S"), pick_noise_s, strict=True):
        tt = travel_time(model, phase, epi, depth)
        for i in range(n_events):
            for j in range(n_stations):
                arrival = origin[i] + pd.Timedelta(seconds=float(tt[i, j]))
                arrivals.append((event_ids[i], "SY", stations["station"][j], phase, arrival))
                err = float(np.clip(rng.normal(0, noise), -4 * noise, 4 * noise))
                rows.append(
                    (
                        event_ids[i],
                        stations["station"][j],
                        phase,
                        arrival + pd.Timedelta(seconds=err),
                    )
                )
    table = pd.DataFrame(rows, columns=["event_id", "station", "phase", "time"])
    table = table.sort_values(["event_id", "phase", "station"]).reset_index(drop=True)
    table["pick_id"] = [f"pk{i + 1:07d}" for i in range(len(table))]
    n = len(table)
    prob = rng.uniform(0.5, 1.0, n)
    picks = pd.DataFrame(
        {
            "pick_id": table["pick_id"],
            "network": "SY",
            "station": table["station"],
            "location": "",
            "phase": table["phase"],
            "time": pd.to_datetime(table["time"], utc=True),
            "probability": prob,
            "probability_std": 0.0,
            "time_std_s": np.where(table["phase"] == "P", pick_noise_s[0], pick_noise_s[1]),
            "detection_probability": 0.9,
            "detection_start": pd.to_datetime(table["time"], utc=True) - timedelta(seconds=1),
            "detection_end": pd.to_datetime(table["time"], utc=True) + timedelta(seconds=5),
            "picker": "eqt",
            "model": "synthetic",
        }
    )
    assignments = table[["event_id", "pick_id", "phase"]].copy()
    eh, ez = start_error_km
    locations = pd.DataFrame(
        {
            "event_id": event_ids,
            "origin_time": origin + pd.to_timedelta(rng.normal(0, 0.05, n_events), unit="s"),
            "latitude": truth["latitude"] + rng.normal(0, eh, n_events) / KM_PER_DEG,
            "longitude": truth["longitude"] + rng.normal(0, eh, n_events) / kx,
            "depth_km": (truth["depth_km"] + rng.normal(0, ez, n_events)).clip(lower=0.5),
            "located": True,
            "rms_s": 0.05,
            "erh_km": eh,
            "erz_km": ez,
        }
    )
    arr = pd.DataFrame(arrivals, columns=["event_id", "network", "station", "phase", "time"])
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
    lat0 = float(both["latitude_t"].mean())
    kx = KM_PER_DEG * np.cos(np.radians(lat0))

    def xyz(s):
        return np.column_stack(
            [both[f"longitude_{s}"] * kx, both[f"latitude_{s}"] * KM_PER_DEG, both[f"depth_km_{s}"]]
        )

    err = xyz("l") - xyz("t")
    i, j = np.triu_indices(len(both), k=1)
    return np.linalg.norm(err[i] - err[j], axis=1)
