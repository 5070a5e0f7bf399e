"""Configuration sections of the waveform stage: where stations and waveforms come from.

Two sections, composed into the build config by :mod:`pipeline.config`:

- :data:`StationSourceConfig` — station metadata from an inline list, a StationXML file or an
  FDSN station query (discriminated by ``kind``).
- :class:`WaveformConfig` — the waveform source (``fdsn``, ``sds`` or ``hinet``, discriminated by
  ``kind``), channel/location priorities, parallelism and quality thresholds.

Hi-net credentials never appear here: they come from the environment (``HINET_USER``,
``HINET_PASSWORD``) or from a secret store the orchestration layer resolves by name.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from pipeline.sections import SECTION_CONFIG

#: Strict SEED code patterns; a code that fails them never becomes part of a path.
CODE_PATTERNS = {
    "network": re.compile(r"^[A-Z0-9]{1,2}$"),
    "station": re.compile(r"^[A-Z0-9]{1,5}$"),
    "location": re.compile(r"^([A-Z0-9]{2})?$"),
    "channel": re.compile(r"^[A-Z0-9]{3}$"),
    "channel_prefix": re.compile(r"^[A-Z0-9]{2}$"),
}


def check_code(kind: str, value: str) -> str:
    """Return ``value`` when it is a valid SEED ``kind`` code, else raise ``ValueError``.

    ``kind`` is one of ``network``, ``station``, ``location``, ``channel``, ``channel_prefix``.
    The location code ``"--"`` (FDSN notation for empty) is returned as ``""``.
    """
    if kind == "location" and value == "--":
        return ""
    if not CODE_PATTERNS[kind].match(value):
        raise ValueError(
            f"invalid {kind} code {value!r}: expected {CODE_PATTERNS[kind].pattern} "
            "(upper-case letters and digits)"
        )
    return value


#: Elevations (m above sea level) a station can have: from the bottom of the deepest hole
#: ever drilled, the Kola Superdeep Borehole SG-3 (12,262 m, 1989), which lies deeper than
#: the ocean floor anywhere (Challenger Deep, 10,935 +- 6 m, Guinness World Records 2020
#: submersible survey), up to the highest summit (Mount Everest, 8,848.86 m, 2020 Nepal-China
#: survey). Ocean-bottom stations in trenches and borehole stations lie within it; a value
#: outside is a unit or sign error (feet, km, depth given as elevation) or a placeholder.
STATION_ELEVATION_RANGE_M = (-12262.0, 8848.86)


def elevation_problem(elevation_m: float) -> str | None:
    """Why ``elevation_m`` (m) cannot be a station's elevation, None when it can."""
    low, high = STATION_ELEVATION_RANGE_M
    if math.isfinite(elevation_m) and low <= elevation_m <= high:
        return None
    return (
        f"elevation_m = {elevation_m:g}: expected {low:g} to {high:g} m above sea level "
        "(the deepest borehole to the highest summit)"
    )


class _Section(BaseModel):
    model_config = SECTION_CONFIG


class InlineStation(_Section):
    """One station given directly in the config."""

    network: str = Field(description="SEED network code, e.g. 'O2'")
    station: str = Field(description="SEED station code, e.g. 'WILZ'")
    location: str = Field("", description="SEED location code ('' or two characters)")
    latitude: float = Field(ge=-90, le=90, description="degrees north")
    longitude: float = Field(ge=-180, le=180, description="degrees east")
    elevation_m: float = Field(0.0, description="metres above sea level")
    channel_prefix: str = Field("HH", description="band + instrument code, e.g. 'HH', 'EH'")
    sampling_rate: float = Field(100.0, gt=0, description="samples per second")

    @field_validator("network", "station", "location", "channel_prefix")
    @classmethod
    def _seed_code(cls, value: str, info) -> str:
        return check_code(info.field_name, value)

    @field_validator("elevation_m")
    @classmethod
    def _on_earth(cls, value: float) -> float:
        problem = elevation_problem(value)
        if problem:
            raise ValueError(problem.split(": ", 1)[1])
        return value


class InlineStations(_Section):
    """Stations listed in the config."""

    kind: Literal["inline"] = Field("inline", description="stations listed in the config")
    stations: list[InlineStation] = Field(min_length=1, description="the stations")


class StationXMLStations(_Section):
    """Stations (with responses) from a local StationXML file."""

    kind: Literal["stationxml"] = Field("stationxml", description="stations from a StationXML file")
    path: Path = Field(description="StationXML file")


class FDSNService(_Section):
    """What every FDSN web-service section has: where, how patiently, and with which account.

    Restricted data (``restricted: true``): the user name and password of HTTP Digest
    authentication come from ``FDSN_USER`` / ``FDSN_PASSWORD`` or from the secret named by
    ``secret_block`` (``'user:password'``, resolved by the orchestration layer), never from
    the config file (:mod:`pipeline.waveforms.credentials`).
    """

    base_url: str = Field("EARTHSCOPE", description="FDSN base URL or ObsPy short name")
    timeout_s: float = Field(120.0, gt=0, description="HTTP timeout per request, seconds")
    retries: int = Field(4, ge=0, le=20, description="retries of a transient failure")
    backoff_s: float = Field(
        1.0, ge=0, description="first retry delay, seconds; doubles each retry"
    )
    restricted: bool = Field(
        False,
        description="send credentials (FDSN_USER/FDSN_PASSWORD or secret_block) for "
        "restricted data; dataselect then asks the service's queryauth endpoint",
    )
    secret_block: str | None = Field(
        None, description="name of a secret holding 'user:password' (instead of env vars)"
    )

    @field_validator("base_url")
    @classmethod
    def _fdsn_base_url(cls, value: str) -> str:
        """An address ObsPy's FDSN client takes: one of its short names or an http(s) URL
        (checked here: ObsPy refuses a bad one only when the client is made, which a build
        took for an unreachable service and retried)."""
        from obspy.clients.fdsn.client import Client
        from obspy.clients.fdsn.header import URL_MAPPINGS

        if value.upper() in URL_MAPPINGS or Client._validate_base_url(value):
            return value
        raise ValueError(
            "expected an http(s) URL (host, optional port of 2-5 digits, path) or one of "
            f"ObsPy's service names: {', '.join(sorted(URL_MAPPINGS))}"
        )


class StationRegion(_Section):
    """Where stations are looked for: a box (all four edges, or some of them for an FDSN
    query) or a circle (centre and radius); :func:`region_kind` says which."""

    min_latitude: float | None = Field(
        None, ge=-90, le=90, description="box: south edge, degrees north"
    )
    max_latitude: float | None = Field(
        None, ge=-90, le=90, description="box: north edge, degrees north"
    )
    min_longitude: float | None = Field(
        None, ge=-180, le=180, description="box: west edge, degrees east"
    )
    max_longitude: float | None = Field(
        None, ge=-180, le=180, description="box: east edge, degrees east"
    )
    latitude: float | None = Field(None, ge=-90, le=90, description="circle centre, degrees north")
    longitude: float | None = Field(
        None, ge=-180, le=180, description="circle centre, degrees east"
    )
    max_radius_deg: float | None = Field(None, gt=0, le=180, description="circle radius, degrees")


class FDSNStationQuery(FDSNService, StationRegion):
    """Stations from an fdsnws-station query (level=response)."""

    kind: Literal["fdsn"] = Field("fdsn", description="an fdsnws-station query")
    network: str = Field("*", description="network pattern(s), comma separated")
    station: str = Field("*", description="station pattern(s)")
    location: str = Field("*", description="location pattern(s)")
    channel: str = Field("HH?,BH?,EH?,HN?", description="channel pattern(s)")
    starttime: datetime | None = Field(None, description="default: the build's start")
    endtime: datetime | None = Field(None, description="default: the build's end")

    @model_validator(mode="after")
    def _one_region(self) -> FDSNStationQuery:
        region_kind(self)
        return self


def region_kind(section: BaseModel) -> Literal["box", "circle"] | None:
    """Which region a section with box and circle fields gives: "box", "circle" or None.

    Box fields: ``min_latitude``, ``max_latitude``, ``min_longitude``, ``max_longitude``
    (any of them); circle fields: ``latitude``, ``longitude``, ``max_radius_deg`` (all three).
    Raises ``ValueError`` when both are given or the circle is incomplete.
    """
    box = (section.min_latitude, section.max_latitude, section.min_longitude, section.max_longitude)
    circle = (section.latitude, section.longitude, section.max_radius_deg)
    has_box, has_circle = (any(v is not None for v in part) for part in (box, circle))
    if has_box and has_circle:
        raise ValueError("give a box (min/max latitude/longitude) or a circle, not both")
    if has_circle and None in circle:
        raise ValueError("a circle needs latitude, longitude and max_radius_deg")
    return "circle" if has_circle else "box" if has_box else None


#: The station section: one of the three sources, chosen by ``kind``.
StationSourceConfig = Annotated[
    InlineStations | StationXMLStations | FDSNStationQuery, Field(discriminator="kind")
]


class FDSNSource(FDSNService):
    """Waveforms from an fdsnws-dataselect service."""

    kind: Literal["fdsn"] = Field("fdsn", description="an fdsnws-dataselect service")
    chunk_hours: float = Field(
        24.0, gt=0, le=24, description="request length within a station-day; divides 24"
    )
    recheck_nodata: bool = Field(
        False, description="ask again for station-days an earlier run found without data"
    )
    recheck_recent_hours: float = Field(
        48.0,
        ge=0,
        description="late data: a station-day downloaded less than this many hours after its "
        "end with less than all its samples (or none) is asked again whenever the download "
        "stage runs (a scheduled build, whose span grows); 0: never",
    )

    @field_validator("chunk_hours")
    @classmethod
    def _divides_day(cls, value: float) -> float:
        n = 24.0 / value
        if abs(n - round(n)) > 1e-9:
            raise ValueError("must divide 24 hours (e.g. 24, 12, 6, 1)")
        return value


class SDSSource(_Section):
    """An existing local SDS archive, read in place (never copied)."""

    kind: Literal["sds"] = Field("sds", description="a local SDS archive, read in place")
    path: Path = Field(description="root of the SDS archive (YYYY/NET/STA/CHA.D/...)")

    @field_validator("path")
    @classmethod
    def _exists(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"is a file, not an SDS archive folder: {value}")
        if not value.is_dir():
            raise ValueError(f"SDS archive folder not found: {value}")
        return value


class HinetStationRule(StationRegion):
    """Hi-net stations chosen by rule from NIED's station list (the list HinetPy's
    ``Client.get_station_list`` reads), like HinetPy's ``select_stations`` circle or box, then
    the ``max_stations`` nearest the centre (circle centre, or the box centre).

    Codes and coordinates of the data then come from the channel tables that come with it.
    """

    max_stations: int | None = Field(
        None, ge=1, description="keep this many, nearest the centre first; None = all inside"
    )

    @model_validator(mode="after")
    def _circle_or_box(self) -> HinetStationRule:
        kind = region_kind(self)
        if kind is None:
            raise ValueError(
                "give a circle (latitude, longitude, max_radius_deg) or a box "
                "(min/max_latitude, min/max_longitude)"
            )
        if kind == "box":  # the box centre ranks the stations: all four bounds
            box = (self.min_latitude, self.max_latitude, self.min_longitude, self.max_longitude)
            if None in box:
                raise ValueError(
                    "a box needs min_latitude, max_latitude, min_longitude, max_longitude"
                )
            if self.min_latitude >= self.max_latitude or self.min_longitude >= self.max_longitude:
                raise ValueError("box: min_latitude/min_longitude must be below the maxima")
        return self

    @property
    def centre(self) -> tuple[float, float]:
        """(latitude, longitude) from which stations are ranked, degrees."""
        if self.latitude is not None:
            return self.latitude, self.longitude
        return (
            (self.min_latitude + self.max_latitude) / 2,
            (self.min_longitude + self.max_longitude) / 2,
        )


class HinetSource(_Section):
    """NIED Hi-net continuous data through HinetPy (needs the win32tools programs).

    Credentials come from ``HINET_USER`` / ``HINET_PASSWORD`` or the secret named by
    ``secret_block`` (resolved by the orchestration layer), never from this file.
    """

    kind: Literal["hinet"] = Field("hinet", description="NIED Hi-net through HinetPy")
    network_code: str = Field("0101", description="Hi-net network code (0101 = Hi-net)")
    seed_network: str = Field("N", description="SEED network code written into the archive")
    secret_block: str | None = Field(
        None, description="name of a secret holding 'user:password' (instead of env vars)"
    )
    stations: list[str] = Field(
        [],
        description="Hi-net station names to select first, e.g. ['N.AAKH']; [] = the account's "
        "current selection (selecting changes the account's setting on the Hi-net server)",
    )
    select: HinetStationRule | None = Field(
        None,
        description="choose stations by rule from NIED's station list (instead of 'stations'); "
        "selecting changes the account's setting on the Hi-net server",
    )
    span_minutes: int | None = Field(
        None, ge=1, le=60, description="minutes per sub-request; None = HinetPy's choice"
    )

    @field_validator("network_code")
    @classmethod
    def _hinet_code(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9]{4}[A-Z]?", value):
            raise ValueError("expected a Hi-net network code such as '0101' or '0103A'")
        return value

    @field_validator("stations")
    @classmethod
    def _hinet_stations(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"N\.[A-Z0-9]{1,5}", name):
                raise ValueError(f"Hi-net station {name!r}: expected a name like 'N.AAKH'")
        return value

    @field_validator("seed_network")
    @classmethod
    def _seed_network(cls, value: str) -> str:
        return check_code("network", value)

    @model_validator(mode="after")
    def _stations_or_rule(self) -> HinetSource:
        if self.stations and self.select is not None:
            raise ValueError("give Hi-net 'stations' or a 'select' rule, not both")
        return self


class QualityConfig(_Section):
    """Thresholds of the per station-day quality table."""

    flat_max_ptp: float = Field(
        0.0, ge=0, description="a channel-day whose peak-to-peak is at most this is flat (dead)"
    )
    clip_level: float | None = Field(
        None, gt=0, description="absolute amplitude (counts) at/above which a sample is clipped"
    )
    clip_run_samples: int = Field(
        5, ge=2, description="without clip_level: runs this long at the max/min count as clipped"
    )
    rate_tolerance: float = Field(
        1e-4, gt=0, description="relative sampling-rate difference counted as a mismatch"
    )
    min_coverage: float = Field(
        0.99, ge=0, le=1, description="a channel-day covering less of the span is truncated"
    )


class WaveformConfig(_Section):
    """The waveform section: source, channel choice, parallelism, quality thresholds."""

    source: Annotated[
        FDSNSource | SDSSource | HinetSource,
        Field(discriminator="kind", description="where the waveforms come from, by kind"),
    ] = FDSNSource()
    channel_priority: list[str] = Field(
        ["HH?", "BH?", "EH?", "HN?"],
        min_length=1,
        description="channel patterns; per station the first one that exists is used",
    )
    location_priority: list[str] = Field(
        ["", "00", "10", "*"], min_length=1, description="location patterns, in order"
    )
    max_workers: int = Field(4, ge=1, le=64, description="concurrent station-day downloads")
    quality: QualityConfig = QualityConfig()

    @field_validator("channel_priority")
    @classmethod
    def _channel_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not re.fullmatch(r"[A-Z0-9?*]{1,3}", pattern):
                raise ValueError(f"channel pattern {pattern!r}: expected e.g. 'HH?' or 'BH*'")
        return value

    @field_validator("location_priority")
    @classmethod
    def _location_patterns(cls, value: list[str]) -> list[str]:
        value = ["" if p == "--" else p for p in value]
        for pattern in value:
            if not re.fullmatch(r"[A-Z0-9?*]{0,2}", pattern):
                raise ValueError(f"location pattern {pattern!r}: expected '', '00', '*', ...")
        return value
