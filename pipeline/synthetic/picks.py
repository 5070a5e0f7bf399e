"""Generated networks and noisy picks, the stage inputs of the small test generators.

:mod:`pipeline.association.synthetic` and :mod:`pipeline.relocation.synthetic` build their
data sets from these pieces: a network of stations at given offsets from a centre (codes
``SY.S001``, ``SY.S002``, ... with ``HH`` channels at 100 Hz), the true P and S arrivals of the
scenario generator (:func:`pipeline.synthetic.waveforms.arrival_table`: 1-D model, epicentral
distance, station-elevation term) with Gaussian pick errors clipped at ±4σ, and the DESIGN.md
picks table, as the picking stage writes it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.synthetic.sequence import offsets_to_degrees
from pipeline.synthetic.waveforms import arrival_table
from pipeline.velocity import VelocityModel
from pipeline.waveforms.inventory import STATION_COLUMNS

NETWORK = "SY"
#: Pick errors are drawn from N(0, σ) and clipped to ±PICK_ERROR_CLIP σ.
PICK_ERROR_CLIP = 4.0
#: Detection window of a generated pick: seconds before and after the pick time.
DETECTION_WINDOW_S = (1.0, 5.0)


def generated_stations(
    lat0: float, lon0: float, east_km, north_km, elevation_m=0.0
) -> pd.DataFrame:
    """Stations table (columns ``STATION_COLUMNS``) at offsets (km) from (``lat0``, ``lon0``).

    Args:
        lat0, lon0: centre of the network (°).
        east_km, north_km: station offsets from the centre (km), shape (S,).
        elevation_m: station elevations (m above sea level), scalar or shape (S,).

    Returns:
        S rows, network ``SY``, stations ``S001``..., location "", channel prefix ``HH``,
        100 Hz.
    """
    lat, lon = offsets_to_degrees(lat0, lon0, east_km, north_km)
    table = pd.DataFrame(
        {
            "network": NETWORK,
            "station": [f"S{i + 1:03d}" for i in range(len(lat))],
            "location": "",
            "channel_prefix": "HH",
            "latitude": lat,
            "longitude": lon,
            "elevation_m": elevation_m,
            "sampling_rate": 100.0,
        }
    )
    return table[STATION_COLUMNS]


def arrival_picks(
    rng: np.random.Generator,
    events: pd.DataFrame,
    stations: pd.DataFrame,
    model: VelocityModel,
    pick_error_s: tuple[float, float],
) -> pd.DataFrame:
    """True arrivals and noisy picks of every event, station and phase.

    Args:
        rng: random generator of the pick errors.
        events: origin_time (datetime64[ns, UTC]), latitude, longitude (°), depth_km; N rows.
        stations: stations table (latitude, longitude, elevation_m); S rows.
        model: 1-D velocity model of the travel times.
        pick_error_s: standard deviation σ (s) of the P and of the S pick errors.

    Returns:
        2 N S rows, event-major, then station, P before S: ``event``, ``station`` (row
        positions in ``events`` / ``stations``), ``phase``, ``distance_km`` (epicentral),
        ``arrival`` (true arrival time), ``time`` (pick time: arrival + error) and
        ``time_std_s`` (σ of the phase).
    """
    pairs = arrival_table(events, stations, model)
    travel_s = np.column_stack([pairs["t_p"], pairs["t_s"]]).ravel()
    sigma = np.tile(np.asarray(pick_error_s, dtype=float), len(pairs))
    limit = PICK_ERROR_CLIP * sigma
    error_s = np.clip(rng.normal(0.0, sigma), -limit, limit)
    event = np.repeat(pairs["event"].to_numpy(), 2)
    origin = pd.DatetimeIndex(events["origin_time"]).take(event)
    arrival = origin + pd.to_timedelta(travel_s, unit="s")
    return pd.DataFrame(
        {
            "event": event,
            "station": np.repeat(pairs["station"].to_numpy(), 2),
            "phase": np.tile(["P", "S"], len(pairs)),
            "distance_km": np.repeat(pairs["distance_km"].to_numpy(), 2),
            "arrival": arrival,
            "time": arrival + pd.to_timedelta(error_s, unit="s"),
            "time_std_s": sigma,
        }
    )


def picks_table(picks: pd.DataFrame, stations: pd.DataFrame) -> pd.DataFrame:
    """The DESIGN.md picks table of generated picks, ids ``pk00000001``... in row order.

    Args:
        picks: station (row position in ``stations``), phase, time (datetime64[ns, UTC]),
            time_std_s, probability, probability_std, detection_probability.
        stations: the stations table.

    Returns:
        pick_id, network, station, location, phase, time, probability, probability_std,
        time_std_s, detection_probability, detection_start, detection_end (the pick time
        ``-1 s / +5 s``), picker ("eqt"), model ("synthetic").
    """
    site = stations.iloc[picks["station"].to_numpy()]
    time = pd.DatetimeIndex(picks["time"])
    before, after = DETECTION_WINDOW_S
    return pd.DataFrame(
        {
            "pick_id": [f"pk{i + 1:08d}" for i in range(len(picks))],
            "network": site["network"].to_numpy(),
            "station": site["station"].to_numpy(),
            "location": site["location"].to_numpy(),
            "phase": picks["phase"].to_numpy(),
            "time": time,
            "probability": picks["probability"].to_numpy(dtype=float),
            "probability_std": picks["probability_std"].to_numpy(dtype=float),
            "time_std_s": picks["time_std_s"].to_numpy(dtype=float),
            "detection_probability": picks["detection_probability"].to_numpy(dtype=float),
            "detection_start": time - pd.Timedelta(seconds=before),
            "detection_end": time + pd.Timedelta(seconds=after),
            "picker": "eqt",
            "model": "synthetic",
        }
    )
