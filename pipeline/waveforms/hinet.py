"""NIED Hi-net continuous data through HinetPy, converted into the run's SDS archive.

Flow per UTC day of the span (one resumable unit, recorded in
``units/hinet.<CODE>.<YYYY.DOY>.json``; the win32 and SAC intermediates are deleted once the
day is in the archive, the channel table is kept):

0. Stations: the names in ``HinetSource.stations``, or those of NIED's station list
   (``HinetPy.Client.get_station_list``) that ``HinetSource.select`` keeps — a circle or box
   as HinetPy's ``select_stations`` takes it, then the ``max_stations`` nearest its centre —
   are selected on the server (``select_stations``) and listed in
   ``<run>/waveforms/hinet_selection.json``.
1. ``HinetPy.Client.get_continuous_waveform`` downloads win32 data and its channel table
   (``.ch``) into ``<run>/waveforms/hinet_raw/<YYYY.DOY>/``. Hi-net works in JST (UTC+9): the
   request start is converted from UTC.
2. ``HinetPy.win32.extract_sac`` converts win32 to SAC. It runs the Hi-net ``win32tools``
   programs ``catwin32`` and ``win2sac_32``, which are not on the package index: download them
   from the Hi-net website (after login; ``HinetPy.Client()._get_win32tools()`` fetches the
   archive), build them with ``make`` and put them on ``PATH``. Without them the stage stops
   with :class:`Win32ToolsMissing` before any request. ``win2sac_32`` removes the sensor
   sensitivity and multiplies by 1e9: the SAC data are velocity in nm/s.
3. SAC traces are shifted from JST to UTC, renamed to SEED codes (station ``N.AAKH`` ->
   ``AAKH``, component ``U/N/E`` -> channel ``EHZ/EHN/EHE``, network ``HinetSource.seed_network``)
   and written as one miniSEED file per channel-day (float32).
4. The channel tables give coordinates, elevation, sensor period, damping and sensitivity; the
   stage's ``inventory.xml`` carries them with a velocity-geophone pole-zero response of overall
   gain 1e9 counts per m/s (counts = nm/s as written in step 2).

Credentials: ``HINET_USER`` / ``HINET_PASSWORD`` from the environment, or the secret named by
``HinetSource.secret_block`` (value ``user:password``) through a loader the orchestration layer
passes in. They are never read from the config, never logged and never written to a file.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
from obspy import Inventory, Stream, UTCDateTime, read
from obspy.core.inventory import Channel, Network, Response, Station
from obspy.geodetics import locations2degrees

from pipeline.errors import DataSourceError, EqcatInputError
from pipeline.rundir import write_text_atomic
from pipeline.waveforms.credentials import (
    HINET_ENV,
    Credentials,
    CredentialsError,
    resolve_credentials,
)
from pipeline.waveforms.params import HinetSource, HinetStationRule, check_code
from pipeline.waveforms.sds import (
    day_bounds,
    days_in_span,
    file_records,
    remove_stale_temporaries,
    trim_to_window,
    write_channel_day,
)

log = logging.getLogger(__name__)

WIN32TOOLS = ("catwin32", "win2sac_32")
JST_OFFSET_S = 9 * 3600.0
COMPONENT_CHANNEL = {"U": "Z", "N": "N", "E": "E"}

CTABLE_COLUMNS = [
    "channel_id",
    "station",
    "component",
    "sensitivity",
    "unit",
    "natural_period_s",
    "damping",
    "preamp_db",
    "lsb_v",
    "latitude",
    "longitude",
    "elevation_m",
]


#: A missing, unreadable or refused Hi-net account (one line, never retried).
HinetCredentialsError = CredentialsError
#: A Hi-net account (:class:`pipeline.waveforms.credentials.Credentials`).
HinetCredentials = Credentials


class Win32ToolsMissing(EqcatInputError):
    """The Hi-net win32tools programs are not on PATH."""


def hinet_credentials(
    cfg: HinetSource, secret_loader: Callable[[str], str] | None = None
) -> Credentials:
    """Credentials from the secret named in ``cfg`` or from ``HINET_USER``/``HINET_PASSWORD``
    (:func:`pipeline.waveforms.credentials.resolve_credentials`)."""
    return resolve_credentials(
        "Hi-net", HINET_ENV, cfg.secret_block, secret_loader, "waveforms.source.secret_block"
    )


def require_win32tools() -> None:
    """Raise :class:`Win32ToolsMissing` unless ``catwin32`` and ``win2sac_32`` are on PATH."""
    missing = [name for name in WIN32TOOLS if shutil.which(name) is None]
    if missing:
        raise Win32ToolsMissing(
            f"Hi-net conversion needs the win32tools programs {', '.join(missing)} on PATH. "
            "Download win32tools from the Hi-net website (after login), build them with "
            "'make' and add the folder to PATH; see pipeline/waveforms/hinet.py."
        )


def read_channel_table(path: Path) -> pd.DataFrame:
    """Parse a Hi-net channel table (``.ch``) into :data:`CTABLE_COLUMNS`.

    Hi-net columns (whitespace separated): 0 channel id (hex), 3 station, 4 component,
    7 sensitivity (V per unit), 8 unit, 9 natural period (s), 10 damping, 11 preamplification
    (dB), 12 LSB (V), 13 latitude, 14 longitude, 15 elevation (m). Comment lines start with '#'.
    """
    rows = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        items = line.split()
        try:
            rows.append(
                {
                    "channel_id": items[0],
                    "station": items[3],
                    "component": items[4],
                    "sensitivity": float(items[7]),
                    "unit": items[8],
                    "natural_period_s": float(items[9]),
                    "damping": float(items[10]),
                    "preamp_db": float(items[11]),
                    "lsb_v": float(items[12]),
                    "latitude": float(items[13]),
                    "longitude": float(items[14]),
                    "elevation_m": float(items[15]),
                }
            )
        except (IndexError, ValueError) as exc:
            raise ValueError(
                f"{path}:{lineno}: not a Hi-net channel-table line (need >= 16 columns: "
                f"id, ..., station, component, ..., latitude, longitude, elevation): {exc}"
            ) from None
    return pd.DataFrame(rows, columns=CTABLE_COLUMNS)


def seed_codes(hinet_station: str, component: str, sampling_rate: float) -> tuple[str, str]:
    """SEED (station, channel) of a Hi-net channel, e.g. ('N.AAKH', 'U', 100) -> ('AAKH', 'EHZ').

    Band code from the sampling rate (E: 80-250 Hz, S: 10-80 Hz short period), instrument H.
    """
    station = check_code("station", hinet_station.removeprefix("N."))
    if component not in COMPONENT_CHANNEL:
        raise ValueError(f"Hi-net component {component!r} of {hinet_station}: expected U, N or E")
    band = "E" if sampling_rate >= 80 else "S"
    return station, check_code("channel", f"{band}H{COMPONENT_CHANNEL[component]}")


def sac_to_stream(sac_files: list[Path], seed_network: str) -> Stream:
    """Read win2sac SAC files (JST, nm/s) into a UTC stream with SEED codes, float32 data.

    File names are HinetPy's ``<station>.<component>.SAC`` (e.g. ``N.AAKH.U.SAC``).
    """
    stream = Stream()
    for path in sac_files:
        hinet_station, component, _ = Path(path).name.rsplit(".", 2)
        for trace in read(str(path), format="SAC"):
            station, channel = seed_codes(hinet_station, component, trace.stats.sampling_rate)
            trace.stats.network = seed_network
            trace.stats.station = station
            trace.stats.location = ""
            trace.stats.channel = channel
            trace.stats.starttime -= JST_OFFSET_S
            trace.data = trace.data.astype("float32")
            del trace.stats.sac
            stream.append(trace)
    return stream


def _geophone_response(period_s: float, damping: float) -> Response:
    """Velocity geophone (natural period, damping) with gain 1e9 counts per m/s above corner."""
    w0 = 2 * math.pi / period_s
    root = w0 * math.sqrt(max(1 - damping**2, 0.0))
    poles = [complex(-damping * w0, root), complex(-damping * w0, -root)]
    return Response.from_paz(
        zeros=[0j, 0j],
        poles=poles,
        stage_gain=1e9,
        stage_gain_frequency=10.0 / period_s,
        input_units="M/S",
        output_units="COUNTS",
        normalization_frequency=10.0 / period_s,
    )


def channel_table_inventory(
    table: pd.DataFrame, seed_network: str, sampling_rate: float, start: datetime
) -> Inventory:
    """StationXML-ready inventory from a Hi-net channel table (velocity channels only)."""
    network = Network(seed_network, description="NIED Hi-net (via HinetPy)")
    velocity = table[table["unit"].str.lower() == "m/s"]
    for hinet_station, rows in velocity.groupby("station", sort=True):
        first = rows.iloc[0]
        code, _ = seed_codes(hinet_station, "U", sampling_rate)
        station = Station(
            code,
            float(first["latitude"]),
            float(first["longitude"]),
            float(first["elevation_m"]),
            start_date=UTCDateTime(start),
        )
        for _, row in rows.sort_values("component").iterrows():
            _, channel = seed_codes(hinet_station, row["component"], sampling_rate)
            station.channels.append(
                Channel(
                    channel,
                    "",
                    float(row["latitude"]),
                    float(row["longitude"]),
                    float(row["elevation_m"]),
                    0.0,
                    sample_rate=sampling_rate,
                    start_date=UTCDateTime(start),
                    response=_geophone_response(row["natural_period_s"], row["damping"]),
                )
            )
        network.stations.append(station)
    return Inventory(networks=[network], source="eqcat from Hi-net channel tables")


def stations_by_rule(listing: list, rule: HinetStationRule) -> list[str]:
    """Names of the stations of ``listing`` that the rule keeps, nearest the centre first.

    ``listing``: station records with ``name``, ``latitude``, ``longitude`` (degrees), as
    HinetPy's ``Client.get_station_list`` returns them. Inside the circle (great-circle
    distance <= ``max_radius_deg``) or the box (bounds included), ranked by distance from
    :attr:`HinetStationRule.centre` (ties by name), at most ``max_stations``.
    """
    lat0, lon0 = rule.centre
    ranked = []
    for station in listing:
        if station.latitude is None or station.longitude is None:
            continue
        dist = locations2degrees(lat0, lon0, station.latitude, station.longitude)
        if rule.max_radius_deg is not None:
            inside = dist <= rule.max_radius_deg
        else:
            inside = (
                rule.min_latitude <= station.latitude <= rule.max_latitude
                and rule.min_longitude <= station.longitude <= rule.max_longitude
            )
        if inside:
            ranked.append((dist, station.name))
    ranked.sort()
    return [name for _, name in ranked[: rule.max_stations]]


def select_hinet_stations(client, cfg: HinetSource) -> list[str]:
    """Select the configured stations on the Hi-net server; return their names.

    ``cfg.stations``: those names. ``cfg.select``: NIED's station list through HinetPy
    (``client.get_station_list``), filtered by :func:`stations_by_rule`. Neither: the
    account's current selection is left as it is (returns ``[]``).
    """
    names = list(cfg.stations)
    if cfg.select is not None:
        names = stations_by_rule(client.get_station_list(cfg.network_code), cfg.select)
        if not names:
            raise ValueError(
                f"waveforms.source.select: no station of Hi-net network {cfg.network_code} "
                f"matches the rule {cfg.select.model_dump(exclude_none=True)}"
            )
        log.info("Hi-net %s: selected %d stations by rule", cfg.network_code, len(names))
    if names:
        client.select_stations(cfg.network_code, names)
    return names


def _hinetpy_client(credentials: HinetCredentials):
    """Log in to Hi-net (network access)."""
    from HinetPy import Client

    return Client(credentials.user, credentials.password)


def login(credentials: HinetCredentials):
    """A logged-in HinetPy client.

    Raises:
        HinetCredentialsError: Hi-net refused the account (HinetPy raises a connection error
            saying "Unauthorized"): not retried, each try would be a failed login.
    """
    try:
        return _hinetpy_client(credentials)
    except Exception as exc:
        if "unauthorized" not in str(exc).lower():
            raise
        raise HinetCredentialsError(
            f"Hi-net refused the login of user {credentials.user!r} (from "
            f"{credentials.origin}): wrong user name or password? (Hi-net reads at most 12 "
            "characters of a password)"
        ) from None


def _extract_sac(data: str, ctable: str, outdir: Path) -> list[Path]:
    """win32 -> SAC with HinetPy (runs win2sac_32); returns the SAC files written."""
    from HinetPy import win32

    outdir.mkdir(parents=True, exist_ok=True)
    win32.extract_sac(data, ctable, suffix="SAC", outdir=str(outdir), processes=1)
    return sorted(outdir.glob("*.SAC"))


def download_hinet(
    cfg: HinetSource,
    folder: Path,
    starttime: datetime,
    endtime: datetime,
    secret_loader: Callable[[str], str] | None = None,
) -> tuple[Inventory, dict[str, list[dict]]]:
    """Fetch Hi-net data day by day into the SDS archive under ``folder``.

    The network and the win32tools are reached only through :func:`_hinetpy_client` and
    :func:`_extract_sac` (the boundary tests replace). A day whose unit record exists is not
    requested again. A day that fails (no data from the service, a broken conversion) is
    returned as a failed record (``unit``, ``error``, ``transient``) and not recorded, so a
    later build asks again; the other days go on.

    Returns the inventory (from the channel tables of the days that came) and the day
    records grouped by status (``ok``, ``nodata``, ``failed``, and ``skipped``: recorded by
    an earlier build): a Hi-net unit is a whole day of the network, not a station-day.

    Raises:
        HinetCredentialsError: no credentials, or Hi-net refused them.
        DataSourceError: no day came, so there are no channel tables to build stations from.
    """
    credentials = hinet_credentials(cfg, secret_loader)
    require_win32tools()
    remove_stale_temporaries(folder)
    client = None
    tables, rate = [], 100.0
    results: dict[str, list[dict]] = {"ok": [], "nodata": [], "failed": [], "skipped": []}
    for day in days_in_span(starttime, endtime):
        day_start, day_end = day_bounds(day)
        start = max(day_start, UTCDateTime(starttime))
        end = min(day_end, UTCDateTime(endtime))
        unit = folder / "units" / f"hinet.{cfg.network_code}.{day.year}.{day.strftime('%j')}.json"
        raw = folder / "hinet_raw" / f"{day.year}.{day.strftime('%j')}"
        if unit.is_file():
            record = json.loads(unit.read_text(encoding="utf-8"))
            results["skipped"].append(record)
        else:
            if client is None:
                client = login(credentials)
                selected = select_hinet_stations(client, cfg)
                write_text_atomic(
                    folder / "hinet_selection.json", json.dumps({"stations": selected}, indent=1)
                )
            try:
                record = _fetch_day(client, cfg, folder, raw, start, end, day)
            except Exception as exc:  # noqa: BLE001 - one bad day never stops the others
                name = f"hinet.{cfg.network_code}.{day.year}.{day.strftime('%j')}"
                reason = (str(exc).strip().splitlines() or [""])[0]
                log.error("Hi-net day %s failed: %s: %s", name, type(exc).__name__, reason)
                results["failed"].append(
                    {"unit": name, "error": f"{type(exc).__name__}: {reason}", "transient": True}
                )
                continue
            write_text_atomic(unit, json.dumps(record, indent=1, sort_keys=True))
            results[record["status"]].append(record)
        rate = record.get("sampling_rate", rate)
        tables.append(read_channel_table(folder / record["ctable"]))
    if not tables:
        raise DataSourceError(
            f"Hi-net network {cfg.network_code}: no day of the span came: "
            + "; ".join(f"{r['unit']}: {r['error']}" for r in results["failed"])
        )
    table = pd.concat(tables).drop_duplicates(subset=["station", "component"])
    return channel_table_inventory(table, cfg.seed_network, rate, starttime), results


def _fetch_day(
    client,
    cfg: HinetSource,
    folder: Path,
    raw: Path,
    start: UTCDateTime,
    end: UTCDateTime,
    day: date,
) -> dict:
    """One day: request in JST, convert, write SDS; the unit record (no credentials)."""
    raw.mkdir(parents=True, exist_ok=True)
    jst = (start.datetime.replace(tzinfo=UTC) + timedelta(hours=9)).replace(tzinfo=None)
    minutes = int(math.ceil((end - start) / 60.0))
    log.info("Hi-net %s: %s JST, %d min", cfg.network_code, jst, minutes)
    data, ctable = client.get_continuous_waveform(
        cfg.network_code, jst, minutes, max_span=cfg.span_minutes, outdir=str(raw)
    )
    if data is None or ctable is None:
        raise RuntimeError(f"Hi-net returned no data for {cfg.network_code} at {jst} JST")
    sac_files = _extract_sac(str(data), str(ctable), raw / "sac")
    stream = trim_to_window(sac_to_stream(sac_files, cfg.seed_network), start, end)
    written = write_channel_day(stream, folder, day)
    shutil.rmtree(raw / "sac")  # converted; the channel table stays for the inventory
    Path(data).unlink()
    return {
        "unit": f"hinet.{cfg.network_code}.{day.isoformat()}",
        "status": "ok" if written else "nodata",
        "ctable": Path(ctable).resolve().relative_to(folder.resolve()).as_posix(),
        "files": file_records(written, folder),
        "sampling_rate": float(stream[0].stats.sampling_rate) if len(stream) else 100.0,
    }
