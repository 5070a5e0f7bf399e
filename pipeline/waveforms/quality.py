"""Per channel-day data quality: gaps, overlaps, rate mismatches, clipping, dead channels.

:func:`quality_table` reads each channel-day file of the chosen channels and returns one row
per (station, channel, day), written to ``<run>/waveforms/quality.parquet``. The picking stage
reads it to skip or warn. Columns:

============== ==========================================================================
network, station, location, channel   SEED codes
day            UTC midnight of the day, datetime64[ns, UTC]
span_s         seconds of the day inside the requested span
path           the file (absolute), '' when missing
status         'ok', 'missing' (no file), 'corrupt' (not miniSEED the reader can decode)
               or 'unreadable' (a folder, a broken link, no permission to read)
error          why a file is corrupt or unreadable; for a missing one, the station's files
               of that day under other location codes or channel prefixes, if any; else ''
n_traces       contiguous segments of this channel in the file
n_samples      samples of this channel in the file
sampling_rate  the rate most samples were recorded at (Hz; NaN when none)
rates          every rate in the file, e.g. '100, 200' (Hz; '' when none)
inventory_rate the rate the inventory gives for the channel (Hz)
nonfinite_samples  samples that are NaN, infinite or beyond float32's range (float
                   records): gaps to every reader
partial_bytes  bytes after the file's last whole record (a cut file, or one still being
               written): the reader skips them
foreign_ids    SEED ids of traces in the file that belong to another channel, ', '-joined:
               they are not this channel's data and are left out ('' when none)
data_s         seconds of data in the requested part of the day (sum of segment lengths)
coverage       data_s / (seconds of the requested part of the day), 0..1+
n_gaps, gap_s          gaps between segments and their total length (s)
n_overlaps, overlap_s  overlaps between segments and their total length (s)
rate_mismatch  segments differ in rate, or differ from the inventory rate
clipped_samples  samples at the clip level (or in flat runs at the max/min, or at the int32
                 extremes)
clipped        clipped_samples > 0
flat           peak-to-peak amplitude <= QualityConfig.flat_max_ptp (dead channel)
flagged        the channel-day has a problem a seismologist should see (``reason`` says which)
reason         '; '-joined problems: no file, corrupt or unreadable file, data of another
               channel, a cut last record, flat (dead) channel, truncated (coverage below
               QualityConfig.min_coverage), gaps, non-finite samples, overlaps, clipped
               samples, mixed sampling rates or a rate not the inventory's; '' when none
============== ==========================================================================

Only the requested part of each day is assessed (data outside the span are cut away first).
A corrupt file is logged by name and reported with ``status='corrupt'``; it never stops the
build.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from obspy import Stream, Trace, UTCDateTime, read
from obspy.io.mseed.util import get_record_information

from pipeline.waveforms.inventory import StationChoice
from pipeline.waveforms.params import QualityConfig
from pipeline.waveforms.reader import COMPONENT_SLOT, is_numeric, unusable_samples, usable_traces
from pipeline.waveforms.sds import (
    MSEED_LOCK,
    day_bounds,
    other_station_ids,
    sds_relpath,
    station_day_files,
    trim_to_window,
)

log = logging.getLogger(__name__)

QUALITY_COLUMNS = [
    "network",
    "station",
    "location",
    "channel",
    "day",
    "span_s",
    "path",
    "status",
    "error",
    "n_traces",
    "n_samples",
    "sampling_rate",
    "rates",
    "inventory_rate",
    "foreign_ids",
    "nonfinite_samples",
    "partial_bytes",
    "data_s",
    "coverage",
    "n_gaps",
    "gap_s",
    "n_overlaps",
    "overlap_s",
    "rate_mismatch",
    "clipped_samples",
    "clipped",
    "flat",
    "flagged",
    "reason",
]


def peak_to_peak(values: np.ndarray) -> float:
    """Peak-to-peak amplitude of ``values`` in float64.

    ``np.ptp`` of integer samples wraps around in their own type (int32 data that reach
    both extremes give -1), which would make a channel with full-scale samples look flat.
    """
    values = np.asarray(values)
    if values.size == 0:
        return 0.0
    return float(values.max()) - float(values.min())


def _full_scale_samples(data: np.ndarray) -> int:
    """Samples of 32-bit integer ``data`` at the type's extremes: no digitizer records
    those as signal (glitches, or a clipped channel whose samples alternate between them)."""
    if data.dtype != np.int32:
        return 0
    limits = np.iinfo(np.int32)
    return int(np.count_nonzero((data == limits.max) | (data == limits.min)))


def _runs_at(values: np.ndarray, level, min_run: int) -> int:
    """Samples of ``values`` in runs of at least ``min_run`` consecutive samples == ``level``."""
    hit = np.concatenate(([False], values == level, [False]))
    edges = np.flatnonzero(np.diff(hit.astype(np.int8)))
    lengths = edges[1::2] - edges[0::2]
    return int(lengths[lengths >= min_run].sum())


def _gaps_overlaps(stream: Stream) -> tuple[int, float, int, float]:
    """Count and total length (s) of gaps and overlaps between time-sorted segments.

    Each segment is compared with the furthest any earlier one reached, so a segment lying
    inside another counts its own length as overlap, not the rest of the other's.
    """
    n_gaps = n_overlaps = 0
    gap_s = overlap_s = 0.0
    traces = sorted(stream, key=lambda tr: tr.stats.starttime)
    last = traces[0].stats if traces else None  # the segment that reaches furthest
    for cur in traces[1:]:
        reach, delta = last.endtime, last.delta
        step = float(cur.stats.starttime - reach) - delta
        if step > 0.5 * delta:
            n_gaps += 1
            gap_s += step
        elif step < -0.5 * delta:
            n_overlaps += 1
            overlap_s += float(min(reach, cur.stats.endtime) - cur.stats.starttime) + delta
        if cur.stats.endtime > reach:
            last = cur.stats
    return n_gaps, gap_s, n_overlaps, overlap_s


def assess_stream(
    stream: Stream,
    expected_rate: float,
    expected_seconds: float,
    cfg: QualityConfig,
) -> dict:
    """Quality figures of one channel-day ``stream`` (keys as in :data:`QUALITY_COLUMNS`).

    ``expected_rate`` (Hz) is the inventory rate; ``expected_seconds`` the requested part of
    the day, which the coverage is relative to.
    """
    rates: Counter[float] = Counter()
    for tr in stream:
        rates[float(tr.stats.sampling_rate)] += tr.stats.npts
    rate = max(rates, key=lambda r: (rates[r], r)) if rates else float("nan")
    mismatch = len(rates) > 1 or (
        bool(rates)
        and expected_rate > 0
        and abs(rate - expected_rate) > cfg.rate_tolerance * expected_rate
    )
    n_samples = sum(tr.stats.npts for tr in stream)
    data = np.concatenate([np.asarray(tr.data) for tr in stream]) if n_samples else np.zeros(0)
    flat = bool(n_samples) and peak_to_peak(data) <= cfg.flat_max_ptp
    if not n_samples or flat:
        clipped_samples = 0
    elif cfg.clip_level is not None:  # float64: abs() of the int32 minimum wraps around
        clipped_samples = int(np.count_nonzero(np.abs(data.astype(np.float64)) >= cfg.clip_level))
    else:
        clipped_samples = sum(
            _runs_at(np.asarray(tr.data), level, cfg.clip_run_samples)
            for tr in stream
            for level in (data.max(), data.min())
        )
        clipped_samples = max(clipped_samples, _full_scale_samples(data))
    n_gaps, gap_s, n_overlaps, overlap_s = _gaps_overlaps(stream)
    data_s = float(sum(tr.stats.npts * tr.stats.delta for tr in stream))
    return {
        "n_traces": len(stream),
        "n_samples": n_samples,
        "sampling_rate": rate,
        "rates": ", ".join(f"{r:g}" for r in sorted(rates)),
        "inventory_rate": float(expected_rate),
        "foreign_ids": "",
        "nonfinite_samples": 0,
        "partial_bytes": 0,
        "data_s": data_s,
        "coverage": data_s / expected_seconds if expected_seconds > 0 else 0.0,
        "n_gaps": n_gaps,
        "gap_s": gap_s,
        "n_overlaps": n_overlaps,
        "overlap_s": overlap_s,
        "rate_mismatch": bool(mismatch),
        "clipped_samples": clipped_samples,
        "clipped": clipped_samples > 0,
        "flat": flat,
    }


def quality_reason(row, cfg: QualityConfig) -> str:
    """The problems of one quality row (a ``QUALITY_COLUMNS`` record), '; '-joined; '' if none."""
    if row.status == "missing":  # error: the station's files under other codes, if any
        return "no data file" + (f" ({row.error})" if row.error else "")
    if row.status == "corrupt":
        return f"corrupt file ({row.error})"
    if row.status == "unreadable":
        return f"unreadable file ({row.error})"
    problems = []
    if row.foreign_ids:
        problems.append(f"file holds data of {row.foreign_ids}, not of this channel (left out)")
    if row.partial_bytes > 0:  # first: it explains a truncation
        problems.append(f"file ends in a cut record ({row.partial_bytes} bytes not read)")
    if row.n_samples == 0:
        return "; ".join([*problems, "no data in the requested span"])
    if row.flat:
        problems.append("flat (dead channel: constant value)")
    spanned = row.coverage * (1.0 + row.gap_s / row.data_s) if row.data_s > 0 else 0.0
    if spanned < cfg.min_coverage:  # data missing at the start or end, not between segments
        problems.append(f"truncated: data cover {100 * row.coverage:.0f} % of the span")
    if row.gap_s > 0:
        problems.append(f"{row.n_gaps} gap(s), {row.gap_s:.0f} s")
    if row.nonfinite_samples > 0:
        problems.append(
            f"{row.nonfinite_samples} samples not finite (NaN/inf) or beyond float32 range, "
            "used as gaps"
        )
    if row.overlap_s > 0:
        problems.append(
            f"{row.n_overlaps} overlap(s), {row.overlap_s:.0f} s (the later segment's samples "
            "are used)"
        )
    if row.clipped:
        problems.append(f"clipped ({row.clipped_samples} samples)")
    if row.rate_mismatch:
        problems.append(_rate_problem(row))
    return "; ".join(problems)


def _rate_problem(row) -> str:
    """What is wrong with the sampling rate(s) of a quality row whose ``rate_mismatch`` is set."""
    if "," in row.rates:
        return f"mixed sampling rates ({row.rates} Hz) within the day"
    return f"sampling rate {row.sampling_rate:g} Hz, not the inventory's {row.inventory_rate:g} Hz"


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` (which exists or is a link) cannot be a day file; None when it can."""
    if path.is_symlink() and not path.exists():
        return f"broken link to {os.readlink(path)}"
    if path.is_dir():
        return "a folder, not a miniSEED file"
    if not path.is_file():
        return "not a regular file"
    return None


def assess_file(
    path: Path,
    expected_rate: float,
    window: tuple[UTCDateTime, UTCDateTime],
    cfg: QualityConfig,
    seed_id: str | None = None,
) -> dict:
    """Quality row fields of one channel-day file; never raises for a bad file.

    ``window`` is the requested part of the day (start, end). With ``seed_id``
    (``NET.STA.LOC.CHA``) only the traces of that channel are assessed, as every reader
    (:func:`pipeline.waveforms.reader.read_station`) uses only those; the ids of the others
    are listed in ``foreign_ids``.
    """
    seconds = float(window[1] - window[0])
    empty = assess_stream(Stream(), expected_rate, seconds, cfg)
    if not path.is_symlink() and not path.exists():
        return {"path": "", "status": "missing", "error": "", **empty}
    not_a_file = _not_a_file(path)
    if not_a_file is not None:
        log.warning("unreadable day file skipped: %s (%s)", path, not_a_file)
        return {"path": str(path), "status": "unreadable", "error": not_a_file, **empty}
    try:
        with MSEED_LOCK:
            stream = read(str(path), format="MSEED")
    except OSError as exc:  # permissions, I/O: the file may be fine, the access is not
        error = f"cannot be read: {exc.strerror or exc}"
        log.warning("unreadable day file skipped: %s (%s)", path, error)
        return {"path": str(path), "status": "unreadable", "error": error, **empty}
    except Exception as exc:  # any reader failure means a corrupt file, reported not raised
        log.warning("corrupt miniSEED file skipped: %s (%s)", path, exc)
        return {"path": str(path), "status": "corrupt", "error": str(exc), **empty}
    foreign = sorted({tr.id for tr in stream if seed_id is not None and tr.id != seed_id})
    if foreign:
        log.warning("%s holds data of %s, not %s: left out", path, ", ".join(foreign), seed_id)
        stream.traces = [tr for tr in stream if tr.id == seed_id]
    if stream and not any(is_numeric(tr) for tr in stream):
        error = "text records, not waveform samples"
        log.warning("unusable miniSEED file skipped: %s (%s)", path, error)
        return {"path": str(path), "status": "corrupt", "error": error, **empty}
    trim_to_window(stream, *window)
    nonfinite = sum(_nonfinite(tr) for tr in stream if is_numeric(tr))
    usable_traces(stream, str(path))
    return {
        "path": str(path),
        "status": "ok",
        "error": "",
        **assess_stream(stream, expected_rate, seconds, cfg),
        "foreign_ids": ", ".join(foreign),
        "nonfinite_samples": nonfinite,
        "partial_bytes": _partial_bytes(path),
    }


def _partial_bytes(path: Path) -> int:
    """Bytes after the last whole miniSEED record of ``path`` (0 when it ends cleanly)."""
    try:
        return int(get_record_information(str(path)).get("excess_bytes", 0) or 0)
    except Exception:  # noqa: BLE001 - the file was read; this is a finer check only
        return 0


def _nonfinite(trace: Trace) -> int:
    """Samples of ``trace`` that are NaN, infinite or beyond float32's range (0 for integer
    data; :func:`~pipeline.waveforms.reader.unusable_samples`)."""
    return int(np.count_nonzero(unusable_samples(trace.data)))


def assessed_channels(choice: StationChoice, root: Path, day: date) -> list[str]:
    """The channels of one station-day to assess: those the readers take from the archive
    (every ``<prefix>?`` day file whose component the picker uses, :data:`COMPONENT_SLOT`),
    and each of the inventory's channels that has no day file and whose component no such
    file stands in for (an inventory listing HHN/HHE over an archive of HH1/HH2, or an inline
    station list, whose channels are Z/N/E, would otherwise report used data as missing).
    """
    files = station_day_files(
        root, choice.network, choice.station, choice.location, choice.channel_prefix, [day], False
    )
    archive = {p.name.split(".")[3] for p in files}
    archive = {c for c in archive if c[-1] in COMPONENT_SLOT}
    covered = {COMPONENT_SLOT[c[-1]] for c in archive}
    unfiled = {c for c in choice.channels if COMPONENT_SLOT.get(c[-1]) not in covered}
    return sorted(archive | unfiled)


def other_codes_note(choice: StationChoice, root: Path, day: date) -> str:
    """'' or, when the archive holds files of the station on ``day`` under other location or
    channel codes than chosen (:func:`pipeline.waveforms.sds.other_station_ids`), a note
    naming them (for the station's missing channels)."""
    ids = other_station_ids(
        root, choice.network, choice.station, choice.location, choice.channel_prefix, [day]
    )
    if not ids:
        return ""
    shown = ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
    return f"the archive has {shown} that day: other location or channel codes"


def quality_table(
    root: Path,
    choices: list[StationChoice],
    days: list[date],
    window: tuple[UTCDateTime, UTCDateTime],
    cfg: QualityConfig,
    max_workers: int = 4,
) -> pd.DataFrame:
    """Quality rows for every chosen channel on every day (see module doc for columns; the
    channels are those :func:`assessed_channels` names).

    ``window`` (start, end) clips each day to the requested span for the coverage figure.
    """
    jobs = []
    for choice in choices:
        for day in days:
            start, end = day_bounds(day)
            span = (max(start, window[0]), min(end, window[1]))
            elsewhere = other_codes_note(choice, root, day)
            for channel in assessed_channels(choice, root, day):
                path = root / sds_relpath(
                    choice.network, choice.station, choice.location, channel, day
                )
                key = {
                    "network": choice.network,
                    "station": choice.station,
                    "location": choice.location,
                    "channel": channel,
                    "day": pd.Timestamp(day, tz="UTC"),
                    "span_s": float(span[1] - span[0]),
                }
                jobs.append((key, path, choice.sampling_rate, span, elsewhere))

    def assess(job) -> dict:
        key, path, rate, span, elsewhere = job
        seed_id = f"{key['network']}.{key['station']}.{key['location']}.{key['channel']}"
        try:
            row = {**key, **assess_file(path, rate, span, cfg, seed_id)}
            return row | ({"error": elsewhere} if row["status"] == "missing" else {})
        except Exception as exc:  # noqa: BLE001 - one odd file never stops the build
            error = f"cannot be assessed ({type(exc).__name__}: {exc})"
            log.warning("day file skipped: %s (%s)", path, error)
            empty = assess_stream(Stream(), rate, float(span[1] - span[0]), cfg)
            return {**key, "path": str(path), "status": "corrupt", "error": error, **empty}

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        rows = list(pool.map(assess, jobs))
    table = pd.DataFrame(rows, columns=QUALITY_COLUMNS)
    table["reason"] = [quality_reason(row, cfg) for row in table.itertuples(index=False)]
    table["flagged"] = table["reason"] != ""
    table["day"] = pd.to_datetime(table["day"], utc=True).astype("datetime64[ns, UTC]")
    return table
