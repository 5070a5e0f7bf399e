"""The waveform stage: station metadata + a resumable, parallel station-day download.

Outputs under ``<run>/waveforms/``:

- ``inventory.xml`` — StationXML of the build's stations (with responses when the source has
  them);
- ``stations.csv`` — the stations table (:mod:`pipeline.waveforms.inventory`);
- ``YYYY/NET/STA/CHA.D/...`` — the SDS archive (FDSN and Hi-net sources; a local SDS source
  is read in place, see :func:`waveform_root`);
- ``units/<NET.STA.LOC.PREFIX.YYYY.DOY>.json`` — the unit ledger: one JSON per finished
  station-day, written atomically, so concurrent workers never overwrite each other;
- ``quality.parquet`` — the quality table (:mod:`pipeline.waveforms.quality`).

Each station-day is one unit. A unit is finished when its ledger file exists: status ``ok``
(each channel file with its sample count and SHA-256) or ``nodata``. A rerun skips finished
units whose files still match their hashes, so an interrupted run resumes and ends with the
same archive an uninterrupted run writes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
from obspy import Inventory, Stream, UTCDateTime, read_inventory
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from pipeline import progress as build_progress
from pipeline.errors import DataSourceError, EqcatInputError
from pipeline.rundir import RunDir, sha256_file, write_parquet_atomic, write_text_atomic
from pipeline.waveforms.credentials import Credentials, fdsn_credentials
from pipeline.waveforms.fdsn import DataselectClient, DownloadFailed, NoData
from pipeline.waveforms.inventory import (
    StationChoice,
    inactive_stations,
    select_channels,
    stations_table,
    write_inventory,
    write_stations_csv,
)
from pipeline.waveforms.params import (
    FDSNSource,
    HinetSource,
    StationSourceConfig,
    StationXMLStations,
    WaveformConfig,
)
from pipeline.waveforms.quality import quality_table
from pipeline.waveforms.sds import (
    STAGE,
    day_bounds,
    days_in_span,
    file_records,
    remove_stale_temporaries,
    trim_to_window,
    waveform_root,
    write_channel_day,
)
from pipeline.waveforms.station_sources import load_inventory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    """One station-day: the chosen channels of a station on one UTC day, within the span."""

    choice: StationChoice
    day: date
    start: UTCDateTime
    end: UTCDateTime

    @property
    def unit_id(self) -> str:
        """``NET.STA.LOC.PREFIX.YYYY.DOY`` (codes validated, safe as a file name)."""
        return f"{self.choice.seed_id}.{self.day.year:04d}.{self.day.timetuple().tm_yday:03d}"


def plan_units(choices: list[StationChoice], starttime: datetime, endtime: datetime) -> list[Unit]:
    """All station-day units of the span, each clipped to ``[starttime, endtime)``."""
    t0, t1 = UTCDateTime(starttime), UTCDateTime(endtime)
    units = []
    for day in days_in_span(starttime, endtime):
        start, end = day_bounds(day)
        for choice in choices:
            units.append(Unit(choice, day, max(start, t0), min(end, t1)))
    return units


class UnitLedger:
    """Per-unit JSON records under ``<folder>/units/``, each written atomically."""

    def __init__(self, folder: Path):
        self.folder = folder / "units"

    def _path(self, unit: Unit) -> Path:
        return self.folder / f"{unit.unit_id}.json"

    def read(self, unit: Unit) -> dict | None:
        """The record of ``unit``, or None when it has none (or an unreadable one)."""
        path = self._path(unit)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("unreadable unit record %s: unit will be redone", path)
            return None

    def write(self, unit: Unit, record: dict) -> None:
        """Write the record of ``unit`` atomically."""
        write_text_atomic(self._path(unit), json.dumps(record, indent=1, sort_keys=True))

    def is_finished(self, unit: Unit, root: Path, source: FDSNSource | None = None) -> bool:
        """True when ``unit`` has a record for the same window and source and its files
        still match.

        A record for another part of the day (the span changed) does not count, nor one from
        another data centre (``source.base_url``; a record of an older eqcat names none and
        counts), nor a 'nodata' record when ``source.recheck_nodata`` is set, nor one whose
        data may still grow (:func:`may_grow`).
        """
        record = self.read(unit)
        if record is None:
            return False
        if source is not None:
            if source.recheck_nodata and record.get("status") == "nodata":
                return False
            if may_grow(record, unit, source.recheck_recent_hours):
                log.info("unit %s was incomplete soon after its end: asked again", unit.unit_id)
                return False
            if record.get("source", source.base_url) != source.base_url:
                log.info("unit %s was downloaded from %s: redone", unit.unit_id, record["source"])
                return False
        if (record.get("start"), record.get("end")) != (str(unit.start), str(unit.end)):
            log.info("unit %s was recorded for another window: redone", unit.unit_id)
            return False
        for entry in record.get("files", []):
            path = root / entry["path"]
            if not path.is_file() or sha256_file(path) != entry["sha256"]:
                log.warning("%s changed or vanished since download: unit redone", path)
                return False
        return True


def split_foreign(stream: Stream, choice: StationChoice) -> tuple[Stream, list[str]]:
    """Traces of ``stream`` that belong to ``choice`` and the sorted SEED ids of the others.

    A trace belongs when its network, station and location are the choice's and its channel
    is one of the choice's channels or at least matches its prefix (an unchosen channel of
    the requested ``<prefix>?`` pattern is dropped later, without a word). Another station's
    or location's data (a dataselect service that answers with the wrong records) must never
    be written: its SDS path would be that station's, overwriting its own day file.
    """
    kept, foreign = Stream(), set()
    for trace in stream:
        s = trace.stats
        mine = (s.network, s.station, s.location) == (
            choice.network,
            choice.station,
            choice.location,
        ) and s.channel[:2] == choice.channel_prefix
        if mine:
            kept.append(trace)
        else:
            foreign.add(trace.id)
    return kept, sorted(foreign)


def fetch_unit(
    client: DataselectClient, unit: Unit, chunk_hours: float
) -> tuple[Stream, int, list[str]]:
    """Download one unit in chunks of ``chunk_hours``; raises :class:`NoData` when all are empty.

    Returns the stream (trimmed to the unit's window, the unit's own channels only), the
    number of HTTP attempts and the SEED ids of other data the server sent (left out).

    Raises:
        NoData: every chunk was empty.
        DownloadFailed: a request failed for good, or the server sent only other data.
    """
    choice = unit.choice
    stream, attempts, foreign = Stream(), 0, set()
    step = chunk_hours * 3600.0
    start = unit.start
    while start < unit.end:
        end = min(start + step, unit.end)
        try:
            fetched = client.get(
                choice.network,
                choice.station,
                choice.location,
                f"{choice.channel_prefix}?",
                start,
                end,
            )
            own, others = split_foreign(trim_to_window(fetched.stream, start, end), choice)
            stream += own
            foreign.update(others)
            attempts += fetched.attempts
        except NoData:
            attempts += 1
        start = end
    if len(stream) == 0 and foreign:
        raise DownloadFailed(
            f"asked for {choice.seed_id}?, the server sent only other data: "
            + ", ".join(sorted(foreign)),
            transient=True,
        )
    if len(stream) == 0:
        raise NoData(unit.unit_id)
    return stream, attempts, sorted(foreign)


#: A unit holding at least this share of its expected samples is complete.
COMPLETE_SHARE = 0.999


def may_grow(record: dict, unit: Unit, recent_hours: float) -> bool:
    """Whether a unit's record may miss data that arrives late: it holds less than
    :data:`COMPLETE_SHARE` of the unit's samples (or none: 'nodata') and was downloaded less
    than ``recent_hours`` after the unit's end. Records of an older eqcat (no
    ``downloaded_at``) and failed ones (never recorded) do not."""
    if recent_hours <= 0 or "downloaded_at" not in record:
        return False
    if record.get("status") == "ok" and record.get("coverage", 1.0) >= COMPLETE_SHARE:
        return False
    downloaded = UTCDateTime(record["downloaded_at"])
    return downloaded < unit.end + recent_hours * 3600.0


def _coverage(unit: Unit, samples: int) -> float:
    """``samples`` as a share of what the unit's channels hold at the inventory rate."""
    expected = (unit.end - unit.start) * unit.choice.sampling_rate * len(unit.choice.channels)
    return samples / expected if expected > 0 else 1.0


def run_unit(
    client: DataselectClient, unit: Unit, root: Path, ledger: UnitLedger, chunk_hours: float
) -> dict:
    """Download, write and record one unit; return its record (status ok/nodata/failed)."""
    base = {
        "unit": unit.unit_id,
        "start": str(unit.start),
        "end": str(unit.end),
        "source": client.cfg.base_url,
        "downloaded_at": str(UTCDateTime()),
    }
    wanted = set(unit.choice.channels)
    try:
        stream, attempts, foreign = fetch_unit(client, unit, chunk_hours)
    except NoData:
        record = {**base, "status": "nodata", "files": [], "samples": 0}
        ledger.write(unit, record)
        return record
    except DownloadFailed as exc:
        log.error("unit %s failed: %s", unit.unit_id, exc)
        return {
            **base,
            "status": "failed",
            "error": str(exc),
            "transient": exc.transient,
            "files": [],
            "samples": 0,
        }
    stream.traces = [tr for tr in stream if tr.stats.channel in wanted]
    files = file_records(write_channel_day(stream, root, unit.day), root)
    samples = sum(f["samples"] for f in files)
    record = {
        **base,
        "status": "ok" if files else "nodata",
        "attempts": attempts,
        "files": files,
        "samples": samples,
        "coverage": round(_coverage(unit, samples), 6),
    }
    if foreign:
        log.warning("unit %s: left out data the server sent for %s", unit.unit_id, foreign)
        record["foreign"] = foreign
    ledger.write(unit, record)
    return record


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]waveforms"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("station-days"),
        TextColumn("{task.fields[size]}"),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def download_units(
    units: list[Unit],
    source: FDSNSource,
    root: Path,
    max_workers: int,
    progress: bool = True,
    credentials: Credentials | None = None,
) -> dict[str, list[dict]]:
    """Download the unfinished ``units`` concurrently (with the account ``credentials`` for
    restricted data); records grouped by status.

    Returns ``{"ok": [...], "nodata": [...], "failed": [...], "skipped": [...]}``; skipped
    units were finished by an earlier run.
    """
    ledger = UnitLedger(root)
    remove_stale_temporaries(root)
    results: dict[str, list[dict]] = {"ok": [], "nodata": [], "failed": [], "skipped": []}
    todo = []
    for unit in units:
        if ledger.is_finished(unit, root, source):
            results["skipped"].append(ledger.read(unit) or {"unit": unit.unit_id})
        else:
            todo.append(unit)
    client = DataselectClient(source, credentials)
    build_progress.set_total(len(units), "station-days")  # the command line's bar, if shown
    build_progress.advance(n=len(units) - len(todo))
    with _progress(progress) as bar, ThreadPoolExecutor(max_workers=max_workers) as pool:
        task = bar.add_task(
            "download", total=len(units), completed=len(units) - len(todo), size="0 B"
        )
        nbytes = 0
        futures = {
            pool.submit(run_unit, client, unit, root, ledger, source.chunk_hours): unit
            for unit in todo
        }
        for future in as_completed(futures):
            try:
                record = future.result()
            except Exception as exc:  # one broken unit (bad codes, disk error) is reported
                unit_id = futures[future].unit_id
                log.exception("unit %s failed", unit_id)
                record = {
                    "unit": unit_id,
                    "status": "failed",
                    "error": repr(exc),
                    "transient": isinstance(exc, OSError),  # a full disk may be freed
                    "files": [],
                }
            results[record["status"]].append(record)
            nbytes += sum(f["bytes"] for f in record["files"])
            bar.update(task, advance=1, size=decimal(nbytes))
            build_progress.advance(record["unit"])
    for records in results.values():
        records.sort(key=lambda r: r["unit"])
    return results


def _no_choice_reason(
    inventory: Inventory, cfg: WaveformConfig, starttime: datetime, endtime: datetime
) -> str:
    """Why no station of ``inventory`` is usable: no channels listed at all (metadata at
    station level), or none matching the channel and location priorities in the span."""
    if not any(sta.channels for net in inventory for sta in net):
        return (
            f"the station metadata lists {len(inventory.get_contents()['stations'])} "
            "station(s) but no channels (StationXML at level=station?): eqcat needs "
            "level=channel, or level=response for magnitudes"
        )
    return (
        f"no station has channels matching {cfg.channel_priority} "
        f"at locations {cfg.location_priority} between {starttime} and {endtime}"
    )


def check_any_data(results: dict[str, list[dict]], source: FDSNSource) -> None:
    """Stop the build when the service gave no data at all and refused or failed at least
    one station-day (every request refused: a restricted archive, a wrong account, a
    service down): an empty catalog with exit status 0 hid it.

    Raises:
        DataSourceError: naming the service, the counts and the first failure.
    """
    had_data = results["ok"] or any(r.get("status") == "ok" for r in results["skipped"])
    failed = results["failed"]
    if had_data or not failed:
        return
    raise DataSourceError(
        f"no data from {source.base_url}: {len(failed)} station-day(s) failed and "
        f"{len(results['nodata'])} had no data; first failure: {failed[0].get('error', '')}",
        field="waveforms.source",
    )


def units_to_retry(run: RunDir) -> list[str]:
    """Station-days the last download of ``run`` gave up on for a cause that may pass (the
    service unavailable or answering broken data through the retries), then those it got
    incomplete so soon after their end that late data may still come (:func:`may_grow`): a
    build whose download is otherwise unchanged runs it again for them (the finished ones
    are skipped), a manual rebuild of the same span as well as a scheduled one.
    """
    details = run.read_manifest().get(STAGE, {}).get("details", {})
    return [*details.get("retry_units", []), *details.get("growing_units", [])]


def growing_units(
    results: dict[str, list[dict]], units: list[Unit], recent_hours: float
) -> list[str]:
    """The units of a download's ``results`` (ok / nodata records) whose data may still grow."""
    by_id = {unit.unit_id: unit for unit in units}
    return [
        record["unit"]
        for record in (*results["ok"], *results["nodata"])
        if record["unit"] in by_id and may_grow(record, by_id[record["unit"]], recent_hours)
    ]


def _stations_input(cfg: StationSourceConfig | None) -> str:
    """Manifest input of the station section: the StationXML file's hash, else its JSON."""
    if isinstance(cfg, StationXMLStations):
        return f"sha256:{sha256_file(cfg.path)}"
    return cfg.model_dump_json() if cfg is not None else "hinet channel tables"


def write_quality(
    folder: Path,
    root: Path,
    choices: list[StationChoice],
    starttime: datetime,
    endtime: datetime,
    waveform_cfg: WaveformConfig,
) -> pd.DataFrame:
    """Assess every chosen channel-day of the archive ``root``; write ``folder/quality.parquet``."""
    window = (UTCDateTime(starttime), UTCDateTime(endtime))
    quality = quality_table(
        root,
        choices,
        days_in_span(starttime, endtime),
        window,
        waveform_cfg.quality,
        waveform_cfg.max_workers,
    )
    write_parquet_atomic(quality, folder / "quality.parquet")
    flagged = quality[quality["flagged"]]
    for row in flagged.itertuples(index=False):
        log.warning(
            "data quality %s.%s.%s.%s %s: %s",
            row.network, row.station, row.location, row.channel, f"{row.day:%Y-%m-%d}", row.reason,
        )  # fmt: skip
    return quality


def assess_generated_archive(
    run: RunDir, waveform_cfg: WaveformConfig, starttime: datetime, endtime: datetime
) -> pd.DataFrame:
    """``quality.parquet`` of an archive written into the run (the synthetic scenario).

    The channels are chosen from ``<run>/waveforms/inventory.xml`` by the same rules as a
    download's, so the table has the same rows a download would give.
    """
    folder = run.root / STAGE
    starttime = starttime if starttime.tzinfo else starttime.replace(tzinfo=UTC)
    endtime = endtime if endtime.tzinfo else endtime.replace(tzinfo=UTC)
    inventory = read_inventory(str(folder / "inventory.xml"))
    choices = select_channels(
        inventory,
        waveform_cfg.channel_priority,
        waveform_cfg.location_priority,
        starttime,
        endtime,
    )
    return write_quality(folder, folder, choices, starttime, endtime, waveform_cfg)


def download_waveforms(
    run: RunDir,
    stations_cfg: StationSourceConfig | None,
    waveform_cfg: WaveformConfig,
    starttime: datetime,
    endtime: datetime,
    *,
    progress: bool = True,
    secret_loader: Callable[[str], str] | None = None,
) -> dict:
    """The waveform stage: inventory, stations table, waveforms, quality; recorded in the manifest.

    ``starttime``/``endtime`` are timezone-aware (naive ones are taken as UTC).
    ``stations_cfg`` may be None only for the Hi-net source (stations come from its channel
    table). ``secret_loader`` resolves a ``secret_block`` (Hi-net, a restricted FDSN service)
    to ``'user:password'`` (given by the orchestration layer; the pipeline never imports
    Prefect).

    Returns a summary: unit counts by status, bytes written, failures and corrupt files;
    ``counts`` holds its whole-number entries (the build prints them).
    """
    clock = time.monotonic()
    starttime = starttime if starttime.tzinfo else starttime.replace(tzinfo=UTC)
    endtime = endtime if endtime.tzinfo else endtime.replace(tzinfo=UTC)
    if endtime <= starttime:
        raise ValueError(f"endtime {endtime} must be after starttime {starttime}")
    folder = run.stage_dir(STAGE)
    source = waveform_cfg.source
    hinet = isinstance(source, HinetSource)
    if hinet:
        from pipeline.waveforms.hinet import download_hinet

        inventory, hinet_results = download_hinet(source, folder, starttime, endtime, secret_loader)
    else:
        if stations_cfg is None:
            raise ValueError("the fdsn and sds waveform sources need a station section")
        credentials = None  # before the stations are asked for: a missing account stops here
        if isinstance(source, FDSNSource):
            credentials = fdsn_credentials(source, "waveforms.source", secret_loader)
        inventory = load_inventory(stations_cfg, starttime, endtime, secret_loader)
    skipped: dict[str, str] = {}
    notes: dict[str, str] = {}
    choices = select_channels(
        inventory,
        waveform_cfg.channel_priority,
        waveform_cfg.location_priority,
        starttime,
        endtime,
        skipped,
        notes,
    )
    skipped.update(inactive_stations(inventory, starttime, endtime))
    for label, why in skipped.items():
        log.warning("station %s %s", label, why)
    for label, note in notes.items():
        log.warning("station %s (used): %s", label, note)
    if not choices:
        raise EqcatInputError(_no_choice_reason(inventory, waveform_cfg, starttime, endtime))
    write_inventory(inventory, folder / "inventory.xml")
    write_stations_csv(stations_table(choices), folder / "stations.csv")

    units = plan_units(choices, starttime, endtime)
    results: dict[str, list[dict]] = {"ok": [], "nodata": [], "failed": [], "skipped": []}
    if isinstance(source, FDSNSource):
        results = download_units(
            units, source, folder, waveform_cfg.max_workers, progress, credentials
        )
        check_any_data(results, source)
    elif hinet:
        results = hinet_results  # whole days of the network, not station-days
    for record in (r for records in results.values() for r in records if r.get("foreign")):
        notes[record["unit"]] = f"the server also sent {', '.join(record['foreign'])}: left out"
    root = waveform_root(run, waveform_cfg)
    quality = write_quality(folder, root, choices, starttime, endtime, waveform_cfg)

    corrupt = quality.loc[quality["status"].isin(["corrupt", "unreadable"]), "path"].tolist()
    downloaded_bytes = sum(f["bytes"] for r in results["ok"] for f in r["files"])
    summary = {
        "source": source.kind,
        "sds_root": str(root),
        "stations": len(choices),
        "units_total": sum(map(len, results.values())) if hinet else len(units),
        "units_downloaded": len(results["ok"]),
        "units_nodata": len(results["nodata"]),
        "units_failed": len(results["failed"]),
        "units_skipped": len(results["skipped"]),
        "bytes_downloaded": downloaded_bytes,
        "channel_days_ok": int((quality["status"] == "ok").sum()),
        "channel_days_missing": int((quality["status"] == "missing").sum()),
        "corrupt_files": corrupt,
        "failures": [f"{r['unit']}: {r['error']}" for r in results["failed"]],
    }
    counts = {k: v for k, v in summary.items() if isinstance(v, int)}
    summary["counts"] = counts  # the build's "download: {...}" line (it printed {})
    run.record_stage(
        STAGE,
        inputs={
            "stations": _stations_input(stations_cfg),
            "source": source.model_dump_json(),
            "starttime": starttime.isoformat(),
            "endtime": endtime.isoformat(),
        },
        outputs=[
            str((folder / name).relative_to(run.root))
            for name in ("inventory.xml", "stations.csv", "quality.parquet")
        ],
        counts=counts,
        wall_time_s=round(time.monotonic() - clock, 3),
        details={
            "sds_root": str(root),
            "corrupt_files": corrupt,
            "failures": summary["failures"],
            "nodata_units": [r["unit"] for r in results["nodata"]],
            "retry_units": [r["unit"] for r in results["failed"] if r.get("transient")],
            "growing_units": growing_units(results, units, source.recheck_recent_hours)
            if isinstance(source, FDSNSource)
            else [],
            "skipped": skipped,
            "station_notes": notes,
        },
    )
    log.info(
        "waveforms: %d units (%d downloaded, %d skipped, %d no data, %d failed), %d bytes",
        len(units),
        summary["units_downloaded"],
        summary["units_skipped"],
        summary["units_nodata"],
        summary["units_failed"],
        downloaded_bytes,
    )
    return summary
