"""Station metadata: load an inventory, choose channels, write the stations table.

The stations table ``<run>/waveforms/stations.csv`` is derived from the inventory and is the
single source of station coordinates for every later stage. Columns:

========== ======================================================
network    SEED network code
station    SEED station code
location   SEED location code ('' when empty)
channel_prefix  band + instrument code of the chosen channels, e.g. 'HH'
latitude   degrees north
longitude  degrees east
elevation_m  metres above sea level
sampling_rate  samples per second of the chosen channels
========== ======================================================
"""

from __future__ import annotations

import fnmatch
import functools
import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pandas as pd
from obspy import Inventory, UTCDateTime, read_inventory
from obspy.core.inventory import Channel, Network, Station
from obspy.geodetics import gps2dist_azimuth

from pipeline.errors import OLD_RUN_HINT, EqcatInputError
from pipeline.rundir import atomic_path, atomic_write
from pipeline.waveforms.params import (
    InlineStations,
    check_code,
    elevation_problem,
)

log = logging.getLogger(__name__)

STATION_COLUMNS = [
    "network",
    "station",
    "location",
    "channel_prefix",
    "latitude",
    "longitude",
    "elevation_m",
    "sampling_rate",
]


@dataclass(frozen=True)
class StationChoice:
    """The channels chosen for one station: what a station-day unit requests."""

    network: str
    station: str
    location: str
    channel_prefix: str
    channels: tuple[str, ...]
    latitude: float
    longitude: float
    elevation_m: float
    sampling_rate: float

    @property
    def seed_id(self) -> str:
        """``NET.STA.LOC.PREFIX`` (validated codes)."""
        return f"{self.network}.{self.station}.{self.location}.{self.channel_prefix}"


def inline_inventory(cfg: InlineStations, starttime: datetime) -> Inventory:
    """An inventory (no responses) with Z/N/E channels for each inline station."""
    networks: dict[str, Network] = {}
    for entry in cfg.stations:
        station = Station(
            entry.station,
            latitude=entry.latitude,
            longitude=entry.longitude,
            elevation=entry.elevation_m,
            start_date=UTCDateTime(starttime),
        )
        for component in "ZNE":
            station.channels.append(
                Channel(
                    f"{entry.channel_prefix}{component}",
                    entry.location,
                    latitude=entry.latitude,
                    longitude=entry.longitude,
                    elevation=entry.elevation_m,
                    depth=0.0,
                    sample_rate=entry.sampling_rate,
                    start_date=UTCDateTime(starttime),
                )
            )
        networks.setdefault(entry.network, Network(entry.network)).stations.append(station)
    return Inventory(networks=list(networks.values()), source="eqcat inline station list")


def _active(item, starttime: UTCDateTime, endtime: UTCDateTime) -> bool:
    starts_before_end = item.start_date is None or item.start_date < endtime
    ends_after_start = item.end_date is None or item.end_date > starttime
    return starts_before_end and ends_after_start


def select_channels(
    inventory: Inventory,
    channel_priority: list[str],
    location_priority: list[str],
    starttime: datetime,
    endtime: datetime,
    skipped: dict[str, str] | None = None,
    notes: dict[str, str] | None = None,
) -> list[StationChoice]:
    """Choose per station the channels to use, by channel then location priority.

    For each station active in ``[starttime, endtime)``, the first channel pattern (e.g. 'HH?')
    that has channels at some location wins; among locations, the first matching location
    pattern wins. A station listed in several entries active in the span (epochs: metadata
    that changed within the span) is one station whose channels are those of all its
    entries; its coordinates are those of the first entry holding the chosen channels.
    Skipped, and recorded in ``skipped`` (``NET.STA`` -> why) when it is given, else logged
    as warnings: stations with no matching channel, stations with invalid SEED codes and
    stations whose elevation no station can have
    (:data:`pipeline.waveforms.params.STATION_ELEVATION_RANGE_M`).
    Used, but recorded in ``notes`` (``NET.STA`` -> what to know) when it is given, else
    logged: a station whose entries place it more than :data:`EPOCH_MOVE_M` apart, and one
    whose entries' chosen channels leave part of the span uncovered (another entry's
    channels, e.g. after a sensor change, are not used).
    """
    t0, t1 = UTCDateTime(starttime), UTCDateTime(endtime)
    entries: dict[tuple[str, str], list[Station]] = {}
    dropped: dict[str, str] = {}
    used_with_notes: dict[str, str] = {}
    for net in inventory:
        for sta in net:
            if not _active(sta, t0, t1):
                continue
            label = f"{net.code}.{sta.code}"
            try:
                check_code("network", net.code)
                check_code("station", sta.code)
            except ValueError as exc:
                dropped[repr(label)] = f"skipped: {exc}"  # quoted: the codes are not clean
                continue
            entries.setdefault((net.code, sta.code), []).append(sta)
    choices = []
    for (network, code), stations in entries.items():
        label = f"{network}.{code}"
        choice = _choose(network, stations, channel_priority, location_priority, t0, t1)
        if choice is None:
            dropped[label] = _no_channel_reason(stations, channel_priority, location_priority)
            continue
        elevation = elevation_problem(choice.elevation_m)
        if elevation:
            dropped[label] = f"skipped: {elevation}"
            continue
        choices.append(choice)
        epoch_note = _epoch_note(stations, choice, t0, t1)
        if epoch_note:
            used_with_notes[label] = epoch_note
    _record(dropped, skipped, "station %s %s")
    _record(used_with_notes, notes, "station %s (used): %s")
    return sorted(choices, key=lambda c: c.seed_id)


def _record(found: dict[str, str], into: dict[str, str] | None, warning: str) -> None:
    """Add ``found`` to ``into``, or log each item as a warning when ``into`` is None."""
    if into is not None:
        into.update(found)
        return
    for label, why in found.items():
        log.warning(warning, label, why)


def inactive_stations(
    inventory: Inventory, starttime: datetime, endtime: datetime
) -> dict[str, str]:
    """Stations of ``inventory`` none of whose entries (epochs) overlaps the span.

    :func:`select_channels` passes over them without a word; the download records them as
    skipped so the report and the build's ``data:`` line name them. Returns ``NET.STA``
    (quoted when the codes are not clean) -> why, with the epochs the inventory gives.
    """
    t0, t1 = UTCDateTime(starttime), UTCDateTime(endtime)
    entries: dict[tuple[str, str], list[Station]] = {}
    for net in inventory:
        for sta in net:
            entries.setdefault((net.code, sta.code), []).append(sta)
    notes = {}
    for (network, code), stations in entries.items():
        if any(_active(sta, t0, t1) for sta in stations):
            continue
        label = f"{network}.{code}"
        try:
            check_code("network", network)
            check_code("station", code)
        except ValueError:
            label = repr(label)
        epochs = ", ".join(_epoch_text(sta) for sta in stations)
        notes[label] = f"skipped: its inventory epoch(s) {epochs} do not overlap the span"
    return notes


def _epoch_text(item) -> str:
    """``start - end`` of an inventory item's epoch (dates; open ends left empty)."""
    start = f"{item.start_date.date}" if item.start_date is not None else ""
    end = f"{item.end_date.date}" if item.end_date is not None else ""
    return f"{start} - {end}".strip()


#: Entries of one station more than this far apart (m) are named (:func:`select_channels`).
EPOCH_MOVE_M = 100.0


def _epoch_note(
    stations: list[Station], choice: StationChoice, t0: UTCDateTime, t1: UTCDateTime
) -> str:
    """What a user should know about a station listed in several entries ("" when nothing):
    entries far apart, or chosen channels that do not cover the whole span."""
    if len(stations) == 1:
        return ""
    notes = []
    moved = max(
        gps2dist_azimuth(choice.latitude, choice.longitude, s.latitude, s.longitude)[0]
        for s in stations
    )
    if moved > EPOCH_MOVE_M:
        notes.append(
            f"listed in {len(stations)} entries up to {moved:.0f} m apart; the "
            "coordinates of the first with the chosen channels are used"
        )
    covered = [
        (ch.start_date or t0, ch.end_date or t1)
        for sta in stations
        for ch in sta.channels
        if ch.code[:2] == choice.channel_prefix
        and ch.location_code == choice.location
        and _active(ch, t0, t1)
    ]
    missing = _uncovered(covered, t0, t1)
    if missing > 0:
        others = sorted(
            {
                f"{ch.code[:2]}? at '{ch.location_code}'"
                for sta in stations
                for ch in sta.channels
                if (ch.code[:2], ch.location_code) != (choice.channel_prefix, choice.location)
                and _active(ch, t0, t1)
            }
        )
        unused = (
            f"other channels listed in the span are not used: {', '.join(others)}"
            if others
            else "no other channels are listed for that time"
        )
        notes.append(
            f"channels {choice.channel_prefix}? at location '{choice.location}' are listed for "
            f"all but {missing / 3600:.1f} h of the span; {unused}"
        )
    return "; ".join(notes)


def _uncovered(spans: list[tuple[UTCDateTime, UTCDateTime]], t0, t1) -> float:
    """Seconds of ``[t0, t1)`` outside every (start, end) of ``spans``."""
    missing, reached = 0.0, t0
    for start, end in sorted(spans, key=lambda se: se[0]):
        if start > reached:
            missing += min(start, t1) - reached
        reached = max(reached, end)
        if reached >= t1:
            return missing
    return missing + max(0.0, t1 - reached)


def _no_channel_reason(
    stations: list[Station], channel_priority: list[str], location_priority: list[str]
) -> str:
    """Why a station active in the span has no channel to use: none matches the priorities,
    or those that match are listed only outside the span (their epochs named)."""
    outside = [
        ch
        for s in stations
        for ch in s.channels
        if any(fnmatch.fnmatchcase(ch.code, c) for c in channel_priority)
        and any(fnmatch.fnmatchcase(ch.location_code, loc) for loc in location_priority)
    ]
    if outside:
        epochs = sorted({f"{ch.code} {_epoch_text(ch)}" for ch in outside})[:6]
        return (
            f"skipped: its channels matching {channel_priority} are listed only outside the "
            f"span ({', '.join(epochs)})"
        )
    return (
        f"skipped: no channel in the inventory matches {channel_priority} "
        f"at locations {location_priority}"
    )


def _choose(
    network: str,
    stations: list[Station],
    channel_priority: list[str],
    location_priority: list[str],
    t0: UTCDateTime,
    t1: UTCDateTime,
) -> StationChoice | None:
    """The channels of one station (its entries active in the span, in inventory order)."""
    sta = stations[0]
    active = [ch for s in stations for ch in s.channels if _active(ch, t0, t1)]
    for channel_pattern in channel_priority:
        for location_pattern in location_priority:
            matched = sorted(
                (
                    ch
                    for ch in active
                    if fnmatch.fnmatchcase(ch.code, channel_pattern)
                    and fnmatch.fnmatchcase(ch.location_code, location_pattern)
                ),
                key=lambda ch: (ch.location_code, ch.code),
            )
            if not matched:
                continue
            first = matched[0]
            prefix = first.code[:2]
            location = check_code("location", first.location_code)
            group = [ch for ch in matched if ch.location_code == location and ch.code[:2] == prefix]
            return StationChoice(
                network=network,
                station=sta.code,
                location=location,
                channel_prefix=check_code("channel_prefix", prefix),
                channels=tuple(sorted({check_code("channel", ch.code) for ch in group})),
                latitude=float(first.latitude if first.latitude is not None else sta.latitude),
                longitude=float(first.longitude if first.longitude is not None else sta.longitude),
                elevation_m=float(
                    first.elevation if first.elevation is not None else sta.elevation
                ),
                sampling_rate=float(first.sample_rate or 0.0),
            )
    return None


def stations_table(choices: list[StationChoice]) -> pd.DataFrame:
    """The stations table (columns :data:`STATION_COLUMNS`) of the chosen channels."""
    rows = [{col: getattr(c, col) for col in STATION_COLUMNS} for c in choices]
    return pd.DataFrame(rows, columns=STATION_COLUMNS)


def write_inventory(inventory: Inventory, path: Path) -> Path:
    """Write StationXML atomically."""
    with atomic_path(path) as tmp:
        inventory.write(str(tmp), format="STATIONXML")
    return path


def write_stations_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write the stations table as CSV atomically (location kept as text)."""
    with atomic_write(path) as fh:
        table.to_csv(fh, index=False)
    return path


def read_stations_csv(path: Path) -> pd.DataFrame:
    """Read a stations table written by :func:`write_stations_csv` (codes as strings)."""
    codes = {c: str for c in ("network", "station", "location", "channel_prefix")}
    table = pd.read_csv(path, dtype=codes, keep_default_na=False)
    missing = [c for c in STATION_COLUMNS if c not in table.columns]
    if missing:
        raise EqcatInputError(f"{path}: stations table lacks column(s) {missing}" + OLD_RUN_HINT)
    return table


@functools.lru_cache(maxsize=4)
def _read_inventory_state(path: str, mtime_ns: int, size: int) -> Inventory:
    """The inventory of a StationXML file in one state (read once per state and process)."""
    return read_inventory(path)


def horizontal_azimuths(
    inventory_path: Path,
    network: str,
    station: str,
    location: str,
    channel_prefix: str,
    day: date,
) -> dict[str, float]:
    """Azimuths (degrees clockwise from north) of a station's horizontal channels
    ``<prefix>N/E/1/2`` in force at noon of ``day``, where the StationXML gives one.

    Inline station lists and Hi-net channel tables give none (empty dict), nor does a run
    without ``inventory_path``.

    Raises:
        EqcatInputError: the file is not readable StationXML (damaged since the download
            wrote it), naming it and the stage to rebuild from.
    """
    if not inventory_path.is_file():
        return {}
    state = inventory_path.stat()
    try:
        inventory = _read_inventory_state(str(inventory_path), state.st_mtime_ns, state.st_size)
    except Exception as exc:  # noqa: BLE001 - ObsPy raises TypeError, XML or OS errors
        raise EqcatInputError(
            f"not readable StationXML ({type(exc).__name__}: {exc}); the download stage "
            "writes it: rebuild from there (eqcat build CONFIG --from download)",
            path=inventory_path,
        ) from None
    noon = UTCDateTime(day.isoformat()) + 12 * 3600
    selected = inventory.select(
        network=network, station=station, location=location or "", time=noon
    )
    return {
        channel.code: float(channel.azimuth)
        for net in selected
        for sta in net
        for channel in sta
        if channel.code[:-1] == channel_prefix
        and channel.code[-1] in "NE12"
        and channel.azimuth is not None
    }
