"""The synthetic network: station list, stations table and StationXML inventory.

The station list is a CSV with ``#`` comment lines (the source of the coordinates) and the
columns ``network, station, latitude, longitude, elevation_m`` (degrees, metres above sea
level). Every station gets three channels ``<prefix>E/N/Z`` with one flat-to-velocity
response: two zeros at 0 and a pole pair at 0.0059 Hz (a 120 s broadband corner), stage gain
``ScenarioConfig.sensitivity`` counts per m/s at 1 Hz. Above ~0.1 Hz the response differs from
a constant by < 0.3 %, so the generator writes ``velocity * sensitivity`` as the counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from obspy import Inventory, UTCDateTime
from obspy.core.inventory import Channel, Network, Response, Site, Station

from pipeline.errors import EqcatInputError
from pipeline.synthetic.params import ScenarioConfig
from pipeline.waveforms.inventory import STATION_COLUMNS
from pipeline.waveforms.params import check_code

#: Response of every synthetic channel: poles (rad/s), two zeros at 0.
RESPONSE_POLES = [complex(-0.037, 0.037), complex(-0.037, -0.037)]
RESPONSE_ZEROS = [0j, 0j]

#: Columns a station list must have.
LIST_COLUMNS = ["network", "station", "latitude", "longitude", "elevation_m"]

#: Orientation (azimuth, dip) per component code.
ORIENTATION = {"E": (90.0, 0.0), "N": (0.0, 0.0), "Z": (0.0, -90.0)}

EARTH_RADIUS_KM = 6371.0


def read_station_list(path: Path) -> pd.DataFrame:
    """Read a station list CSV (columns :data:`LIST_COLUMNS`, ``#`` comments), codes checked."""
    try:
        table = pd.read_csv(path, comment="#", dtype={"network": str, "station": str})
    except FileNotFoundError:
        raise FileNotFoundError(f"station list {path} not found") from None
    missing = [c for c in LIST_COLUMNS if c not in table.columns]
    if missing:
        raise EqcatInputError(
            f"{path}: station list lacks column(s) {missing}; need {LIST_COLUMNS}"
        )
    for row in table.itertuples():
        try:
            check_code("network", row.network)
            check_code("station", row.station)
        except ValueError as exc:
            raise EqcatInputError(f"{path}: row {row.Index + 1}: {exc}") from None
        if not (-90 <= row.latitude <= 90 and -180 <= row.longitude <= 180):
            raise EqcatInputError(f"{path}: station {row.station}: latitude/longitude out of range")
    if table.duplicated(["network", "station"]).any():
        raise EqcatInputError(f"{path}: duplicate network.station codes")
    return table[LIST_COLUMNS].reset_index(drop=True)


def epicentral_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance (km) between points in degrees (numpy-broadcast)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


def azimuth_deg(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Azimuth (° from north) from point 1 to point 2 (numpy-broadcast)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlon = np.radians(np.asarray(lon2) - np.asarray(lon1))
    y = np.sin(dlon) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dlon)
    return np.degrees(np.arctan2(y, x)) % 360.0


def scenario_stations(cfg: ScenarioConfig) -> pd.DataFrame:
    """The stations table (columns ``STATION_COLUMNS``) of the scenario.

    With ``cfg.max_stations`` only the stations nearest the fault centre are kept.
    """
    table = read_station_list(cfg.stations_csv)
    if cfg.max_stations is not None:
        dist = epicentral_km(
            cfg.fault_latitude, cfg.fault_longitude, table.latitude, table.longitude
        )
        table = table.iloc[np.argsort(dist, kind="stable")[: cfg.max_stations]]
    table = table.sort_values(["network", "station"]).reset_index(drop=True)
    table["location"] = ""
    table["channel_prefix"] = cfg.channel_prefix
    table["sampling_rate"] = cfg.sampling_rate
    return table[STATION_COLUMNS]


def channel_response(sensitivity: float) -> Response:
    """Flat-velocity PAZ response, ``sensitivity`` counts/(m/s) at 1 Hz."""
    return Response.from_paz(
        zeros=RESPONSE_ZEROS,
        poles=RESPONSE_POLES,
        stage_gain=sensitivity,
        stage_gain_frequency=1.0,
        input_units="M/S",
        output_units="COUNTS",
        normalization_frequency=1.0,
    )


def scenario_inventory(stations: pd.DataFrame, cfg: ScenarioConfig) -> Inventory:
    """StationXML inventory of the stations table (three channels per station)."""
    start = UTCDateTime(cfg.start_time) - 86400
    networks: dict[str, Network] = {}
    for row in stations.itertuples():
        channels = []
        for comp, (azimuth, dip) in ORIENTATION.items():
            channels.append(
                Channel(
                    code=f"{row.channel_prefix}{comp}",
                    location_code=row.location,
                    latitude=row.latitude,
                    longitude=row.longitude,
                    elevation=row.elevation_m,
                    depth=0.0,
                    azimuth=azimuth,
                    dip=dip,
                    sample_rate=row.sampling_rate,
                    start_date=start,
                    response=channel_response(cfg.sensitivity),
                )
            )
        station = Station(
            code=row.station,
            latitude=row.latitude,
            longitude=row.longitude,
            elevation=row.elevation_m,
            start_date=start,
            channels=channels,
            site=Site(name=f"synthetic {row.network}.{row.station}"),
        )
        networks.setdefault(
            row.network, Network(row.network, description="eqcat synthetic scenario")
        ).stations.append(station)
    return Inventory(
        networks=list(networks.values()), source="eqcat synthetic scenario", created=start
    )
