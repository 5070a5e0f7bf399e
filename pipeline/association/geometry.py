"""Station geometry for association: a local map projection and station travel times.

Both associators work in a local Cartesian frame (km): x east, y north, z down from sea
level. The frame is a transverse Mercator projection centred on the stations (accurate to
well below a grid node over a few hundred km).

Travel times follow :func:`pipeline.velocity.travel_time` (source depth below sea level,
receiver at the surface) plus an elevation term ``elevation_km / v_top`` for the vertical
path through the station's topography, the same correction PyOcto's 1-D model applies. A
station below sea level (an ocean-bottom or borehole station) lies inside the model: its
times are computed for a receiver at that depth
(:func:`pipeline.velocity.travel_time_below_surface`); the elevation term would make them
negative for sources above it (-9 km / 5.2 km/s = -1.7 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyproj import CRS, Transformer

from pipeline.velocity import (
    TABLE_MAX_DISTANCE_KM,
    VelocityModel,
    travel_time,
    travel_time_below_surface,
)


@dataclass(frozen=True)
class LocalProjection:
    """Transverse Mercator projection (km) centred at ``lat0``, ``lon0`` (degrees)."""

    lat0: float
    lon0: float

    @classmethod
    def centred_on(cls, latitude: np.ndarray, longitude: np.ndarray) -> LocalProjection:
        """A projection centred on the bounding box of the given points (degrees)."""
        return cls(
            lat0=float((np.min(latitude) + np.max(latitude)) / 2),
            lon0=float((np.min(longitude) + np.max(longitude)) / 2),
        )

    @property
    def crs(self) -> CRS:
        return CRS(f"+proj=tmerc +lat_0={self.lat0} +lon_0={self.lon0} +units=km +ellps=WGS84")

    def _transformer(self) -> Transformer:
        return Transformer.from_crs(CRS.from_epsg(4326), self.crs, always_xy=True)

    def forward(self, latitude, longitude) -> tuple[np.ndarray, np.ndarray]:
        """Degrees -> (x east, y north) in km; arrays of equal shape."""
        x, y = self._transformer().transform(np.asarray(longitude), np.asarray(latitude))
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def inverse(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) in km -> (latitude, longitude) in degrees."""
        lon, lat = self._transformer().transform(np.asarray(x), np.asarray(y), direction="INVERSE")
        return np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)


@dataclass(frozen=True)
class StationGeometry:
    """Stations in the local frame.

    Attributes:
        ids: station id "NET.STA.LOC", shape (S,).
        x_km, y_km: local coordinates, km, shape (S,).
        elevation_km: elevation above sea level, km, shape (S,).
        projection: the frame.
    """

    ids: np.ndarray
    x_km: np.ndarray
    y_km: np.ndarray
    elevation_km: np.ndarray
    projection: LocalProjection

    @classmethod
    def from_table(cls, stations: pd.DataFrame) -> StationGeometry:
        """From a table with columns id, latitude, longitude, elevation_m (one row per id)."""
        projection = LocalProjection.centred_on(stations["latitude"], stations["longitude"])
        x, y = projection.forward(stations["latitude"], stations["longitude"])
        return cls(
            ids=stations["id"].to_numpy(dtype=object),
            x_km=x,
            y_km=y,
            elevation_km=stations["elevation_m"].to_numpy(dtype=float) / 1000.0,
            projection=projection,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def interstation_km(self) -> np.ndarray:
        """Horizontal distances (km) between stations, shape (S, S)."""
        return np.hypot(
            self.x_km[:, None] - self.x_km[None, :], self.y_km[:, None] - self.y_km[None, :]
        )

    def bounds(self, margin_km: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """((x_min, x_max), (y_min, y_max)) of the stations widened by ``margin_km``."""
        return (
            (float(self.x_km.min() - margin_km), float(self.x_km.max() + margin_km)),
            (float(self.y_km.min() - margin_km), float(self.y_km.max() + margin_km)),
        )


def receiver_times(
    model: VelocityModel,
    phase: str,
    elevation_km: float,
    distance_km: np.ndarray,
    source_depth_km: float,
) -> np.ndarray:
    """Travel times (s) from sources at one depth (km below sea level) and ``distance_km``
    (shape (N,), within the table's reach) to one station at ``elevation_km``, shape (N,).

    Above sea level: the table's surface time plus the elevation term; below: the time to a
    receiver at that depth (module docstring).
    """
    if elevation_km >= 0:
        top_velocity = model.velocities(phase)[0]
        return travel_time(model, phase, distance_km, source_depth_km) + elevation_km / top_velocity
    return travel_time_below_surface(model, phase, distance_km, source_depth_km, -elevation_km)


def station_travel_times(
    model: VelocityModel,
    phase: str,
    stations: StationGeometry,
    x_km: np.ndarray,
    y_km: np.ndarray,
    depth_km: np.ndarray,
) -> np.ndarray:
    """Travel times (s) from sources to every station.

    Args:
        model: the 1-D model.
        phase: "P" or "S".
        stations: the receivers (S stations).
        x_km, y_km, depth_km: source coordinates, shape (N,); depth below sea level.

    Returns:
        Array of shape (N, S); ``inf`` where a station lies beyond the travel-time table
        (:data:`pipeline.velocity.TABLE_MAX_DISTANCE_KM`): no time is predicted there, so no
        pick of that station fits that source (one far station used to stop the stage).
    """
    x_km, y_km, depth_km = (
        np.atleast_1d(np.asarray(a, dtype=float)) for a in (x_km, y_km, depth_km)
    )
    distance = np.hypot(x_km[:, None] - stations.x_km[None, :], y_km[:, None] - stations.y_km)
    beyond = distance > TABLE_MAX_DISTANCE_KM
    times = travel_time(
        model,
        phase,
        np.where(beyond, 0.0, distance),
        np.broadcast_to(depth_km[:, None], distance.shape),
    )
    top_velocity = model.velocities(phase)[0]
    times = times + np.maximum(stations.elevation_km, 0.0)[None, :] / top_velocity
    for k in np.flatnonzero(stations.elevation_km < 0):
        for depth in np.unique(depth_km):
            rows = depth_km == depth
            times[rows, k] = receiver_times(
                model, phase, stations.elevation_km[k], distance[rows, k], depth
            )
    return np.where(beyond, np.inf, times)
