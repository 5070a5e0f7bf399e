"""HypoInverse 1.40 file formats: writers for its inputs, parsers for its outputs.

Column layouts follow the HypoInverse-2000 user guide (Klein 2002; the hyp1.40 manual in
the hypoinvpy sdist, ``hyp1.40/doc``). Columns below are 1-based as in the manual; the
manual's implied decimal points (``F5.2`` written without a point) are honoured on output,
and fields with an explicit point are accepted on input.

Writers:
    :func:`station_line` (station format #2), :func:`crh_text` (layer model),
    :func:`phase_event_lines` (Y2000 archive input: header, phase lines, terminator).
Parsers:
    :func:`parse_archive` (Y2000 and pre-Y2000 archive files), :func:`parse_hypo71_summary`
    (the Y2000 Hypo71 summary, the one summary format that carries the A-D quality code),
    :func:`parse_abandoned` (events the program gave up on, from its terminal output).

Longitudes are east-positive decimal degrees in eqcat and west-positive degrees and
minutes with an ``E`` flag in HypoInverse; depths are km, times UTC.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.velocity import VelocityModel

#: Earliest year HypoInverse's Y2000 formats can carry (4-digit year; the program's own
#: reference dates start in 1900).
EARLIEST_YEAR = 1900
#: Blank location codes are written as "--", the SEED convention HypoInverse uses.
BLANK_LOCATION = "--"
#: Station elevations (m) the I4 field of station format #2 holds.
ELEVATION_RANGE_M = (-999, 9999)


class FormatError(ValueError):
    """A value that a HypoInverse format cannot hold, or a line that cannot be read."""


def _put(buf: list[str], col: int, text: str) -> None:
    """Write ``text`` into the character buffer ``buf`` starting at 1-based column ``col``."""
    buf[col - 1 : col - 1 + len(text)] = list(text)


def _implied(value: float, width: int, decimals: int) -> str:
    """``value`` as a right-justified integer with ``decimals`` implied decimal places."""
    scaled = int(round(value * 10**decimals))
    text = f"{scaled:{width}d}"
    if len(text) > width:
        raise FormatError(f"value {value} does not fit F{width}.{decimals} with implied decimals")
    return text


def _degrees_minutes(value: float, minute_decimals: int) -> tuple[int, float]:
    """Split |value| (decimal degrees) into whole degrees and minutes rounded to the format."""
    total = round(abs(value) * 60.0, minute_decimals)
    degrees = int(total // 60)
    return degrees, total - 60 * degrees


def location_code(code: object) -> str:
    """The 2-letter HypoInverse location code of a SEED location (blank -> ``--``)."""
    text = "" if code is None or (isinstance(code, float) and math.isnan(code)) else str(code)
    text = text.strip()
    if len(text) > 2:
        raise FormatError(f"location code {text!r} is longer than 2 characters")
    return text if text else BLANK_LOCATION


def check_codes(station: str, network: str) -> None:
    """Raise :class:`FormatError` unless the codes fit HypoInverse's 5-letter site, 2-letter net."""
    if not station or len(station) > 5 or not station.isascii() or " " in station:
        raise FormatError(f"station code {station!r} must be 1-5 ASCII characters, no blanks")
    if len(network) > 2 or not network.isascii():
        raise FormatError(f"network code {network!r} of station {station!r} exceeds 2 characters")


# ----------------------------------------------------------------------------- writers


def station_line(
    station: str,
    network: str,
    component: str,
    location: str,
    latitude: float,
    longitude: float,
    elevation_m: float,
    p_delay_s: float = 0.0,
) -> str:
    """One line of HypoInverse station format #2 (85 columns).

    Args:
        station, network, component, location: SEED codes (site <= 5, net <= 2, component
            3, location <= 2 characters; blank location -> ``--``).
        latitude, longitude: decimal degrees, north and east positive.
        elevation_m: station elevation, m (clipped to the I4 field's
            :data:`ELEVATION_RANGE_M`; CRH models do not use it).
        p_delay_s: P station delay (correction), s, for delay sets 1 and 2 (S delays are
            derived by HypoInverse as Vp/Vs times the P delay).
    """
    check_codes(station, network)
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 360) or not (
        math.isfinite(latitude) and math.isfinite(longitude)
    ):
        raise FormatError(f"station {network}.{station}: coordinates {latitude}, {longitude}")
    elevation = 0 if not math.isfinite(elevation_m) else int(round(elevation_m))
    elevation = min(max(elevation, ELEVATION_RANGE_M[0]), ELEVATION_RANGE_M[1])
    lon = longitude - 360 if longitude > 180 else longitude
    lat_deg, lat_min = _degrees_minutes(latitude, 4)
    lon_deg, lon_min = _degrees_minutes(lon, 4)
    buf = [" "] * 85
    _put(buf, 1, f"{station:<5}")
    _put(buf, 7, f"{network:<2}")
    _put(buf, 11, f"{component:<3}"[:3])
    _put(buf, 16, f"{lat_deg:2d}")
    _put(buf, 19, f"{lat_min:7.4f}")
    _put(buf, 26, "S" if latitude < 0 else "N")
    _put(buf, 27, f"{lon_deg:3d}")
    _put(buf, 31, f"{lon_min:7.4f}")
    _put(buf, 38, "E" if lon > 0 else "W")
    _put(buf, 39, f"{elevation:4d}")
    _put(buf, 43, "1.0")  # default amplitude period (s), unused for locations
    delay = _implied(p_delay_s if math.isfinite(p_delay_s) else 0.0, 5, 2)
    _put(buf, 50, f"{delay} {delay}  0.00  0.00 0  1.00")  # delays, mag corrections, cal factor
    _put(buf, 81, location_code(location))
    _put(buf, 83, f"{component:<3}"[:3])
    return "".join(buf)


def crh_text(name: str, velocities_km_s: np.ndarray, layer_tops_km: np.ndarray) -> str:
    """A HypoInverse layer model file (CRH/CRE): name line, then ``velocity, top`` per layer.

    Args:
        name: model name (the first 3 letters label HypoInverse's outputs).
        velocities_km_s: layer velocities, km/s, shape (L,), top layer first.
        layer_tops_km: depth of each layer top, km, shape (L,), the first 0.
    """
    if len(velocities_km_s) != len(layer_tops_km) or not 1 <= len(layer_tops_km) <= 20:
        raise FormatError("a CRH model needs 1-20 layers with one velocity per layer top")
    lines = [f"{name[:30]}"]
    for velocity, top in zip(velocities_km_s, layer_tops_km, strict=True):
        lines.append(f"{velocity:5.2f}{top:5.2f}")
    return "\n".join(lines) + "\n"


def crh_models(model: VelocityModel) -> tuple[str, str | None]:
    """The P model and, unless Vp/Vs is one constant ratio, an S model (CRH text each)."""
    p_text = crh_text(f"{model.name[:26]} P", model.vp_km_s, model.layer_tops_km)
    ratio = model.vp_km_s / model.vs_km_s
    if np.allclose(ratio, model.vp_vs, rtol=1e-3):
        return p_text, None
    return p_text, crh_text(f"{model.name[:26]} S", model.vs_km_s, model.layer_tops_km)


@dataclass(frozen=True)
class PhasePick:
    """One pick to write on a Y2000 archive phase line."""

    station: str
    network: str
    component: str
    location: str
    phase: str  # "P" or "S"
    time: pd.Timestamp  # UTC
    weight_code: int  # 0-9 (4-9: no weight)
    onset: str = "E"  # "I" impulsive, "E" emergent
    first_motion: str = " "


def _check_time(time: pd.Timestamp, what: str) -> pd.Timestamp:
    if time is None or pd.isna(time):
        raise FormatError(f"{what}: time is missing")
    time = pd.Timestamp(time)
    time = time.tz_localize("UTC") if time.tzinfo is None else time.tz_convert("UTC")
    if not EARLIEST_YEAR <= time.year <= 2099:
        raise FormatError(f"{what}: time {time} outside the years {EARLIEST_YEAR}-2099")
    return time


def _minute_and_seconds(time: pd.Timestamp) -> tuple[str, float]:
    """``YYYYMMDDHHMM`` of the (0.01 s rounded) time and the seconds within that minute."""
    time = time.round("10ms")
    stamp = time.strftime("%Y%m%d%H%M")
    seconds = time.second + time.microsecond / 1e6
    return stamp, seconds


def phase_line(pick: PhasePick) -> str:
    """One Y2000 archive phase line (113 columns) for a single P or S pick."""
    check_codes(pick.station, pick.network)
    time = _check_time(pick.time, f"pick at {pick.network}.{pick.station}")
    if pick.phase not in ("P", "S"):
        raise FormatError(f"phase must be P or S, got {pick.phase!r}")
    if not 0 <= int(pick.weight_code) <= 9:
        raise FormatError(f"weight code {pick.weight_code} outside 0-9")
    minute, seconds = _minute_and_seconds(time)
    buf = [" "] * 113
    _put(buf, 1, f"{pick.station:<5}")
    _put(buf, 6, f"{pick.network:<2}")
    _put(buf, 10, f"{pick.component:<3}"[:3])
    _put(buf, 18, minute)
    if pick.phase == "P":
        _put(buf, 14, f"{pick.onset}P{pick.first_motion}{int(pick.weight_code)}")
        _put(buf, 30, _implied(seconds, 5, 2))
    else:
        _put(buf, 17, "4")  # no P on this line (as HypoInverse writes S-only lines)
        _put(buf, 30, "    0")
        _put(buf, 42, _implied(seconds, 5, 2))
        _put(buf, 47, f"{pick.onset}S {int(pick.weight_code)}")
    _put(buf, 112, location_code(pick.location))
    return "".join(buf)


def _lat_lon_fields(latitude: float, longitude: float) -> tuple[str, str]:
    """HypoInverse ``I2 A1 F4.2`` latitude and ``I3 A1 F4.2`` longitude fields (7 + 8 chars)."""
    lat_deg, lat_min = _degrees_minutes(latitude, 2)
    lon_deg, lon_min = _degrees_minutes(longitude, 2)
    lat = f"{lat_deg:2d}{'S' if latitude < 0 else ' '}{_implied(lat_min, 4, 2)}"
    lon = f"{lon_deg:3d}{'E' if longitude > 0 else ' '}{_implied(lon_min, 4, 2)}"
    return lat, lon


def phase_event_lines(
    picks: list[PhasePick],
    hypoinverse_id: int,
    trial_time: pd.Timestamp | None = None,
    trial_latitude: float | None = None,
    trial_longitude: float | None = None,
    trial_depth_km: float | None = None,
) -> list[str]:
    """The lines of one event in Y2000 archive input format: header, phases, terminator.

    The header is a Y2000 summary line carrying the trial origin time, epicentre, depth and
    the event id (columns 137-146); the terminator (HypoInverse terminator format) repeats
    the trial values HypoInverse actually reads (terminator format 1, ``H71 x 1 x``) and the
    10-digit id (columns 63-72). Phases are written in time order. A trial origin time on a
    different UTC day from the first pick is left out (the terminator only holds hh:mm:ss).
    """
    if not picks:
        raise FormatError(f"event {hypoinverse_id}: no picks to write")
    if not 0 < hypoinverse_id < 10**10:
        raise FormatError(f"event id {hypoinverse_id} does not fit 10 digits")
    ordered = sorted(picks, key=lambda p: _check_time(p.time, p.station))
    first = _check_time(ordered[0].time, ordered[0].station).round("10ms")
    has_epicentre = (
        trial_latitude is not None
        and trial_longitude is not None
        and math.isfinite(trial_latitude)
        and math.isfinite(trial_longitude)
    )
    has_depth = trial_depth_km is not None and math.isfinite(trial_depth_km)
    time = None
    if trial_time is not None and not pd.isna(trial_time):
        time = _check_time(trial_time, f"event {hypoinverse_id} trial origin").round("10ms")
        if time.date() != first.date():
            time = None

    header = [" "] * 146
    minute, seconds = _minute_and_seconds(time if time is not None else first)
    _put(header, 1, minute)
    _put(header, 13, _implied(seconds, 4, 2))
    terminator = [" "] * 72
    if time is not None:
        _put(terminator, 7, time.strftime("%H%M"))
        _put(terminator, 11, _implied(time.second + time.microsecond / 1e6, 4, 2))
    if has_epicentre:
        lat, lon = _lat_lon_fields(trial_latitude, trial_longitude)
        _put(header, 17, lat + lon)
        _put(terminator, 15, lat + lon)
    if has_depth:
        depth = _implied(min(max(trial_depth_km, 0.01), 99.0), 5, 2)
        _put(header, 32, depth)
        _put(terminator, 30, depth)
    _put(header, 137, f"{hypoinverse_id:10d}")
    _put(terminator, 63, f"{hypoinverse_id:10d}")
    lines = ["".join(header)]
    lines += [phase_line(p) for p in ordered]
    lines.append("".join(terminator))
    return lines


# ----------------------------------------------------------------------------- parsers


def _field(line: str, start: int, end: int) -> str:
    """Columns ``start``-``end`` (1-based, inclusive) of ``line``, blank-padded."""
    return line[start - 1 : end].ljust(end - start + 1)


def _number(line: str, start: int, end: int, decimals: int = 0) -> float:
    """A Fortran ``Fw.d`` field: implied decimals unless a point is present; blank -> NaN."""
    text = _field(line, start, end).strip()
    if not text:
        return math.nan
    try:
        return float(text) if "." in text else int(text) / 10**decimals
    except ValueError as exc:
        raise FormatError(f"columns {start}-{end} {text!r} are not a number") from exc


def _int(line: str, start: int, end: int) -> int | None:
    value = _number(line, start, end)
    return None if math.isnan(value) else int(value)


def _int_or_zero(line: str, start: int, end: int) -> int:
    """The integer in columns ``start``-``end``; 0 when blank or unreadable (an event id)."""
    try:
        return _int(line, start, end) or 0
    except (FormatError, ValueError):
        return 0


def _is_y2000_header(line: str) -> bool:
    """True for a Y2000 summary/header line, False for a pre-Y2000 one (2-digit year)."""
    try:
        year, month = int(line[0:4]), int(line[4:6])
    except ValueError:
        return False
    return EARLIEST_YEAR <= year <= 2099 and 1 <= month <= 12


def _timestamp(year: int, month: int, day: int, hour: int, minute: int, seconds: float):
    """UTC timestamp of a date, a minute and seconds that may exceed 60 (archive style)."""
    base = pd.Timestamp(year=year, month=month, day=day, hour=hour, minute=minute, tz="UTC")
    return base + pd.to_timedelta(round(seconds * 100) * 10, unit="ms")


@dataclass(frozen=True)
class _Layout:
    """Column positions (1-based) of one archive flavour."""

    # header
    date: tuple[int, int]
    year_digits: int
    seconds: tuple[int, int]
    lat: int
    lon: int
    depth: tuple[int, int]
    n_phases: tuple[int, int]
    gap: tuple[int, int]
    nearest: tuple[int, int]
    rms: tuple[int, int]
    n_s: tuple[int, int]
    erh: tuple[int, int]
    erz: tuple[int, int]
    aux_remark: int
    event_id: tuple[int, int]
    # phase lines
    station: tuple[int, int]
    network: tuple[int, int]
    component: tuple[int, int]
    location: tuple[int, int]
    p_remark: tuple[int, int]
    p_weight_code: int
    p_date: tuple[int, int]
    p_year_digits: int
    p_seconds: tuple[int, int]
    p_residual: tuple[int, int]
    p_weight: tuple[int, int]
    s_seconds: tuple[int, int]
    s_remark: tuple[int, int]
    s_weight_code: int
    s_residual: tuple[int, int]
    s_weight: tuple[int, int]
    p_delay: tuple[int, int]
    distance: tuple[int, int]
    azimuth: tuple[int, int]
    station_5th: int | None


Y2000 = _Layout(
    date=(1, 12), year_digits=4, seconds=(13, 16), lat=17, lon=24, depth=(32, 36),
    n_phases=(40, 42), gap=(43, 45), nearest=(46, 48), rms=(49, 52), n_s=(83, 85),
    erh=(86, 89), erz=(90, 93), aux_remark=82, event_id=(137, 146),
    station=(1, 5), network=(6, 7), component=(10, 12), location=(112, 113),
    p_remark=(14, 15), p_weight_code=17, p_date=(18, 29), p_year_digits=4, p_seconds=(30, 34),
    p_residual=(35, 38), p_weight=(39, 41), s_seconds=(42, 46), s_remark=(47, 48),
    s_weight_code=50, s_residual=(51, 54), s_weight=(64, 66), p_delay=(67, 70), distance=(75, 78),
    azimuth=(92, 94), station_5th=None,
)  # fmt: skip
PRE_Y2000 = _Layout(
    date=(1, 10), year_digits=2, seconds=(11, 14), lat=15, lon=22, depth=(30, 34),
    n_phases=(37, 39), gap=(40, 42), nearest=(43, 45), rms=(46, 49), n_s=(79, 80),
    erh=(81, 84), erz=(85, 88), aux_remark=78, event_id=(129, 138),
    station=(1, 4), network=(99, 100), component=(96, 98), location=(101, 102),
    p_remark=(5, 6), p_weight_code=8, p_date=(10, 19), p_year_digits=2, p_seconds=(20, 24),
    p_residual=(25, 28), p_weight=(29, 31), s_seconds=(32, 36), s_remark=(37, 38),
    s_weight_code=40, s_residual=(41, 44), s_weight=(48, 50), p_delay=(51, 54), distance=(59, 62),
    azimuth=(76, 78), station_5th=95,
)  # fmt: skip


def _date_fields(text: str, year_digits: int, century: int) -> tuple[int, int, int, int, int]:
    """Year, month, day, hour, minute of a ``I4,4I2`` (or ``5I2``) date; blanks read as 0."""
    text = text.replace(" ", "0")
    year = int(text[:year_digits]) + (century if year_digits == 2 else 0)
    rest = text[year_digits:]
    return year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8])


def _parse_header(line: str, lay: _Layout, century: int) -> dict:
    year, month, day, hour, minute = _date_fields(_field(line, *lay.date), lay.year_digits, century)
    origin = _timestamp(year, month, day, hour, minute, _number(line, *lay.seconds, 2))
    lat = _number(line, lay.lat, lay.lat + 1) + _number(line, lay.lat + 3, lay.lat + 6, 2) / 60
    lon = _number(line, lay.lon, lay.lon + 2) + _number(line, lay.lon + 4, lay.lon + 7, 2) / 60
    if _field(line, lay.lat + 2, lay.lat + 2) == "S":
        lat = -lat
    if _field(line, lay.lon + 3, lay.lon + 3) != "E":
        lon = -lon
    n_phases = _int(line, *lay.n_phases) or 0
    n_s = _int(line, *lay.n_s) or 0
    return {
        "hypoinverse_id": _int(line, *lay.event_id) or 0,
        "origin_time": origin,
        "latitude": lat,
        "longitude": lon,
        "depth_km": _number(line, *lay.depth, 2),
        "rms_s": _number(line, *lay.rms, 2),
        "erh_km": _number(line, *lay.erh, 2),
        "erz_km": _number(line, *lay.erz, 2),
        "gap_deg": _number(line, *lay.gap),
        "nearest_km": _number(line, *lay.nearest),
        "n_p": n_phases - n_s,
        "n_s": n_s,
        "aux_remark": _field(line, lay.aux_remark, lay.aux_remark).strip(),
    }


def _parse_phase(line: str, lay: _Layout, century: int, hypoinverse_id: int) -> list[dict]:
    """The P and/or S picks on one archive station line (0, 1 or 2 records)."""
    station = _field(line, *lay.station).strip()
    if lay.station_5th is not None:
        station += _field(line, lay.station_5th, lay.station_5th).strip()
    base = {
        "hypoinverse_id": hypoinverse_id,
        "station": station,
        "network": _field(line, *lay.network).strip(),
        "component": _field(line, *lay.component).strip(),
        "location": _field(line, *lay.location).strip(),
        "p_delay_s": _number(line, *lay.p_delay, 2),
        "distance_km": _number(line, *lay.distance, 1),
        "azimuth_deg": _number(line, *lay.azimuth),
    }
    year, month, day, hour, minute = _date_fields(
        _field(line, *lay.p_date), lay.p_year_digits, century
    )
    records = []
    p_remark = _field(line, *lay.p_remark)
    p_text = _field(line, *lay.p_seconds).strip()
    p_seconds = _number(line, *lay.p_seconds, 2)
    # S-only lines carry no P remark (Y2000) or a dummy " P" with 99.99 s (old NCSN archives).
    if p_remark[1] == "P" and p_text and p_seconds < 99.99:
        records.append(
            base
            | {
                "phase": "P",
                "remark": p_remark.strip(),
                "weight_code": _int(line, lay.p_weight_code, lay.p_weight_code),
                "time": _timestamp(year, month, day, hour, minute, p_seconds),
                "residual_s": _number(line, *lay.p_residual, 2),
                "weight": _number(line, *lay.p_weight, 2),
            }
        )
    s_remark = _field(line, *lay.s_remark)
    if s_remark[1] == "S" and _field(line, *lay.s_seconds).strip():
        records.append(
            base
            | {
                "phase": "S",
                "remark": s_remark.strip(),
                "weight_code": _int(line, lay.s_weight_code, lay.s_weight_code),
                "time": _timestamp(
                    year, month, day, hour, minute, _number(line, *lay.s_seconds, 2)
                ),
                "residual_s": _number(line, *lay.s_residual, 2),
                "weight": _number(line, *lay.s_weight, 2),
            }
        )
    return records


EVENT_COLUMNS = [
    "hypoinverse_id", "origin_time", "latitude", "longitude", "depth_km", "rms_s", "erh_km",
    "erz_km", "gap_deg", "nearest_km", "n_p", "n_s", "aux_remark",
]  # fmt: skip
PHASE_COLUMNS = [
    "hypoinverse_id", "station", "network", "component", "location", "phase", "remark",
    "weight_code", "time", "residual_s", "weight", "p_delay_s", "distance_km", "azimuth_deg",
]  # fmt: skip


def parse_archive(
    path: str | Path, century: int = 1900, unreadable: dict[int, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a HypoInverse archive file (Y2000 or pre-Y2000, no shadow lines).

    Each event is a summary header, station lines (each with a P and/or an S pick) and a
    terminator line (blank station field). The flavour is detected from the first header
    (a 4-digit year 1900-2099 followed by a valid month means Y2000); ``century`` completes
    2-digit years of pre-Y2000 files.

    ``unreadable``: when given, an event with a line that cannot be read (HypoInverse writes
    ``****`` in a field its solution overflows, e.g. an origin-time shift or an RMS out of
    range) is left out and recorded there (HypoInverse id -> why) instead of raising.

    Returns:
        events: one row per event, columns :data:`EVENT_COLUMNS` (origin_time UTC;
            latitude/longitude decimal degrees, east positive; depth, erh, erz km; rms s;
            gap degrees; nearest km; n_p / n_s = P / S times with final weight > 0.1).
        phases: one row per pick, columns :data:`PHASE_COLUMNS` (time UTC, residual s,
            weight = the normalised weight HypoInverse used, distance km, azimuth degrees).
    """
    path = Path(path)
    events: list[dict] = []
    phases: list[dict] = []
    layout: _Layout | None = None
    current: dict | None = None
    bad = ""  # why the current event cannot be read
    for number, raw in enumerate(
        path.read_text(encoding="ascii", errors="replace").splitlines(), 1
    ):
        line = raw.rstrip("\r")
        if not line.strip() and current is None:
            continue
        try:
            if current is None:
                layout = layout or (Y2000 if _is_y2000_header(line) else PRE_Y2000)
                current = {"hypoinverse_id": _int_or_zero(line, *layout.event_id)}
                first_phase, bad = len(phases), ""
                current = _parse_header(line, layout, century)
                events.append(current)
            elif not line[:4].strip():  # terminator: id on the terminator wins when present
                term_id = _int_or_zero(line, 63, 72)
                if term_id and not current["hypoinverse_id"]:
                    current["hypoinverse_id"] = term_id
                    for record in phases:
                        if record["hypoinverse_id"] == 0:
                            record["hypoinverse_id"] = term_id
                if bad and unreadable is not None:
                    unreadable[current["hypoinverse_id"]] = bad
                    del phases[first_phase:]
                    if events and events[-1] is current:
                        events.pop()
                current = None
            elif not bad:
                phases += _parse_phase(line, layout, century, current["hypoinverse_id"])
        except (FormatError, ValueError) as exc:
            message = f"{path}:{number}: cannot read archive line ({exc})"
            if unreadable is None:
                raise FormatError(f"{message}:\n{line}") from exc
            bad = f"HypoInverse's output unreadable: {message}: {line.strip()[:60]!r}"
    if current is not None:
        raise FormatError(f"{path}: the last event has no terminator line")
    event_table = pd.DataFrame(events, columns=EVENT_COLUMNS)
    phase_table = pd.DataFrame(phases, columns=PHASE_COLUMNS)
    for table in (event_table, phase_table):
        column = "origin_time" if "origin_time" in table else "time"
        table[column] = pd.to_datetime(table[column], utc=True).astype("datetime64[ns, UTC]")
    return event_table, phase_table


def parse_hypo71_summary(
    path: str | Path, unreadable: dict[int, str] | None = None
) -> pd.DataFrame:
    """Read a Y2000 Hypo71-format summary file (``H71 2``), one line per located event.

    ``unreadable``: when given, a line that cannot be read (``****`` in an overflowed field)
    is left out and recorded there (HypoInverse id -> why; id 0 when unreadable too) instead
    of raising.

    Returns columns: hypoinverse_id, origin_time (UTC), latitude, longitude (east
    positive), depth_km, n_phases, gap_deg, nearest_km, rms_s, erh_km, erz_km, quality
    (HypoInverse's A-D code).
    """
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="ascii").splitlines(), 1):
        if not line.strip():
            continue
        try:
            year, month, day = int(line[0:4]), int(line[4:6]), int(line[6:8])
            hour, minute = int(_field(line, 10, 11)), int(_field(line, 12, 13))
            lat = _number(line, 20, 22) + _number(line, 24, 28) / 60
            lon = _number(line, 29, 32) + _number(line, 34, 38) / 60
            rows.append(
                {
                    "hypoinverse_id": _int(line, 84, 93) or 0,
                    "origin_time": _timestamp(
                        year, month, day, hour, minute, _number(line, 14, 19)
                    ),
                    "latitude": -lat if _field(line, 23, 23) == "S" else lat,
                    "longitude": lon if _field(line, 33, 33) == "E" else -lon,
                    "depth_km": _number(line, 39, 45),
                    "n_phases": _int(line, 53, 55),
                    "gap_deg": _number(line, 56, 59),
                    "nearest_km": _number(line, 60, 64),
                    "rms_s": _number(line, 65, 69),
                    "erh_km": _number(line, 70, 74),
                    "erz_km": _number(line, 75, 79),
                    "quality": _field(line, 81, 81).strip(),
                }
            )
        except (FormatError, ValueError) as exc:
            message = f"{path}:{number}: cannot read summary line ({exc})"
            if unreadable is None:
                raise FormatError(f"{message}:\n{line}") from exc
            unreadable.setdefault(
                _int_or_zero(line, 84, 93),
                f"HypoInverse's output unreadable: {message}: {line.strip()[:60]!r}",
            )
    table = pd.DataFrame(
        rows,
        columns=[
            "hypoinverse_id", "origin_time", "latitude", "longitude", "depth_km", "n_phases",
            "gap_deg", "nearest_km", "rms_s", "erh_km", "erz_km", "quality",
        ],
    )  # fmt: skip
    table["origin_time"] = pd.to_datetime(table["origin_time"], utc=True).astype(
        "datetime64[ns, UTC]"
    )
    return table


#: HypoInverse's terminal message for an event left with too few weighted readings
#: (``hyloc.for``: ``' *** ',I1,' PHASES CANT SOLVE SEQUENCE NO.',I5,', ID NO.',I10``).
_CANT_SOLVE = re.compile(r"\*\*\*\s*(\d+) PHASES CANT SOLVE SEQUENCE NO\.\s*\d+, ID NO\.\s*(\d+)")


def parse_abandoned(text: str) -> dict[int, int]:
    """Events HypoInverse abandoned, from its terminal output (``ERF T``).

    HypoInverse gives up on an event when fewer than 4 readings keep a weight above 0.1 after
    its distance and residual weighting (or fewer than ``MIN``).

    Returns:
        event ID (the phase file's, column 137 of the terminator) -> weighted readings left.
    """
    return {int(m.group(2)): int(m.group(1)) for m in _CANT_SOLVE.finditer(text)}
