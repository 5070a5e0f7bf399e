"""The SDS archive layout: ``YYYY/NET/STA/CHA.D/NET.STA.LOC.CHA.D.YYYY.DOY``.

One file holds one channel-day (UTC). Codes are checked with the strict SEED patterns of
:func:`pipeline.waveforms.params.check_code` before they become part of a path, so a code from a
server or a file can never point outside the archive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from obspy import Stream, UTCDateTime

from pipeline.rundir import RunDir, atomic_path, sha256_file
from pipeline.waveforms.params import SDSSource, WaveformConfig, check_code

log = logging.getLogger(__name__)

#: The waveform stage's folder in the run directory (and its manifest entry).
STAGE = "waveforms"


def waveform_root(run: RunDir, cfg: WaveformConfig) -> Path:
    """The SDS root later stages read: the local archive for an ``sds`` source, else the run's."""
    if isinstance(cfg.source, SDSSource):
        return cfg.source.path
    return run.root / STAGE


#: Held around every ObsPy miniSEED read or write of eqcat's threads. ObsPy's libmseed wrapper
#: points libmseed's (process-wide) log callbacks at per-call Python functions: a message
#: logged by one thread's call (a cut record) while another call ends calls a freed callback,
#: and the process dies of SIGSEGV (seen in CI: a download thread reading a cut transfer beside
#: one writing a day file).
MSEED_LOCK = threading.Lock()


def sds_relpath(network: str, station: str, location: str, channel: str, day: date) -> Path:
    """Path of one channel-day file relative to the SDS root (codes validated)."""
    net = check_code("network", network)
    sta = check_code("station", station)
    loc = check_code("location", location)
    cha = check_code("channel", channel)
    doy = day.timetuple().tm_yday
    return Path(
        f"{day.year:04d}",
        net,
        sta,
        f"{cha}.D",
        f"{net}.{sta}.{loc}.{cha}.D.{day.year:04d}.{doy:03d}",
    )


def day_bounds(day: date) -> tuple[UTCDateTime, UTCDateTime]:
    """UTC start (inclusive) and end (exclusive) of ``day``."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return UTCDateTime(start), UTCDateTime(start + timedelta(days=1))


def days_in_span(starttime: datetime, endtime: datetime) -> list[date]:
    """UTC days that overlap ``[starttime, endtime)`` (timezone-aware datetimes)."""
    first = starttime.astimezone(UTC).date()
    last = (endtime.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def trim_to_window(stream: Stream, start: UTCDateTime, end: UTCDateTime) -> Stream:
    """Samples of ``stream`` with ``start <= t < end``; empty traces dropped. In place."""
    for trace in stream:
        trace.trim(start, end - 0.5 * trace.stats.delta, nearest_sample=False)
    stream.traces = [tr for tr in stream if tr.stats.npts > 0]
    return stream


def file_records(written: dict[Path, int], root: Path) -> list[dict]:
    """What a unit record keeps of the day files :func:`write_channel_day` wrote: path
    relative to ``root``, samples, bytes and SHA-256."""
    return [
        {
            "path": path.relative_to(root).as_posix(),
            "samples": samples,
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
        for path, samples in written.items()
    ]


def write_channel_day(stream: Stream, root: Path, day: date) -> dict[Path, int]:
    """Write ``stream`` (data of ``day`` only) as one SDS file per channel, atomically.

    Traces are merged where they fit exactly (``Stream.merge(-1)``) and sorted, so the same
    input always gives the same bytes. Returns the written paths with their sample counts.
    """
    written = {}
    by_channel: dict[tuple[str, str, str, str], Stream] = {}
    for trace in stream:
        s = trace.stats
        by_channel.setdefault((s.network, s.station, s.location, s.channel), Stream()).append(trace)
    for (net, sta, loc, cha), channel_stream in sorted(by_channel.items()):
        target = root / sds_relpath(net, sta, loc, cha, day)
        channel_stream.merge(method=-1)
        channel_stream.sort(keys=["starttime"])
        with atomic_path(target) as tmp, MSEED_LOCK:
            channel_stream.write(str(tmp), format="MSEED")
        written[target] = sum(tr.stats.npts for tr in channel_stream)
    return written


def remove_stale_temporaries(root: Path) -> int:
    """Delete hidden temporary files an interrupted writer left in the archive; return count.

    Atomic writes create ``.NAME.*`` files beside their target; SDS files are never hidden,
    so any hidden file under a ``YYYY/NET/STA/CHA.D`` folder is a leftover.
    """
    removed = 0
    for tmp in root.glob("[0-9][0-9][0-9][0-9]/*/*/*.D/.*"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
            removed += 1
    if removed:
        log.info("removed %d unfinished temporary file(s) under %s", removed, root)
    return removed


def station_day_files(
    root: Path,
    network: str,
    station: str,
    location: str,
    channel_prefix: str,
    days: list[date],
    neighbours: bool = True,
) -> list[Path]:
    """The channel-day files of one station's ``<prefix>?`` channels on ``days``, sorted.

    With ``neighbours`` the days before and after each day are included too: a reader that
    pads its spans (the picker, cross-correlation, magnitudes) reads into them.
    """
    net = check_code("network", network)
    sta = check_code("station", station)
    loc = check_code("location", location)
    prefix = check_code("channel_prefix", channel_prefix)
    wanted = set(days)
    if neighbours:
        wanted |= {d + timedelta(days=k) for d in days for k in (-1, 1)}
    files: list[Path] = []
    for day in sorted(wanted):
        year, doy = day.year, day.timetuple().tm_yday
        folder = root / f"{year:04d}" / net / sta
        files += folder.glob(f"{prefix}?.D/{net}.{sta}.{loc}.{prefix}?.D.{year:04d}.{doy:03d}")
    return sorted(files)


def other_station_ids(
    root: Path, network: str, station: str, location: str, channel_prefix: str, days: list[date]
) -> list[str]:
    """SEED ids of the station's day files on ``days`` under *other* location codes or
    channel prefixes than those chosen (e.g. ``XX.X01.00.HHZ`` when the station list says
    location ''), sorted: why a station with files in the archive reads no data."""
    net = check_code("network", network)
    sta = check_code("station", station)
    ids = set()
    for day in days:
        year, doy = day.year, day.timetuple().tm_yday
        folder = root / f"{year:04d}" / net / sta
        for path in folder.glob(f"*.D/{net}.{sta}.*.*.D.{year:04d}.{doy:03d}"):
            seed_id = ".".join(path.name.split(".")[:4])
            _, _, loc, cha = seed_id.split(".")
            if (loc, cha[:2]) != (location, channel_prefix):
                ids.add(seed_id)
    return sorted(ids)


def archive_files(root: Path) -> list[Path]:
    """All channel-day files of an SDS archive (hidden temporaries excluded), sorted."""
    return sorted(
        p for p in root.glob("[0-9][0-9][0-9][0-9]/*/*/*.D/*") if not p.name.startswith(".")
    )
