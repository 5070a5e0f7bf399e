"""Per channel-day data quality: gaps, overlaps, rate mismatches, clipping, dead channels.

:func:`quality_table` reads each channel-day file of the chosen channels and returns one row
per (station, channel, day), written to ``<run>/waveforms/quality.parquet``. The picking stage
reads it to skip or warn. Columns:

============== ==========================================================================
network, station, location, channel   SEED codes
day            UTC midnight of the day, datetime64[ns, UTC]
span_s         seconds of the day inside the requested span
path           the file (absolute), '' when missing
status         'ok', 'missing' (no file) or 'corrupt' (the file could not be read)
error          reader message for corrupt files, else ''
n_traces       contiguous segments in the file
n_samples      samples in the file
sampling_rate  most common sampling rate in the file (Hz; NaN when none)
data_s         seconds of data in the requested part of the day (sum of segment lengths)
coverage       data_s / (seconds of the requested part of the day), 0..1+
n_gaps, gap_s          gaps between segments and their total length (s)
n_overlaps, overlap_s  overlaps between segments and their total length (s)
rate_mismatch  segments differ in rate, or differ from the inventory rate
clipped_samples  samples at the clip level (or in flat runs at the max/min)
clipped        clipped_samples > 0
flat           peak-to-peak amplitude <= QualityConfig.flat_max_ptp (dead channel)
flagged        the channel-day has a problem a seismologist should see (``reason`` says which)
reason         '; '-joined problems: no file, corrupt file, flat (dead) channel, truncated
               (coverage below QualityConfig.min_coverage), gaps, clipped samples, sampling
               rate not the inventory's; '' when none
============== ==========================================================================

Only the requested part of each day is assessed (data outside the span are cut away first).
A corrupt file is logged by name and reported with ``status='corrupt'``; it never stops the
build.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from obspy import Stream, UTCDateTime, read

from pipeline.waveforms.inventory import StationChoice
from pipeline.waveforms.params import QualityConfig
from pipeline.waveforms.sds import day_bounds, sds_relpath, trim_to_window

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


def _runs_at(values: np.ndarray, level, min_run: int) -> int:
    """Samples of ``values`` in runs of at least ``min_run`` consecutive samples == ``level``."""
    hit = np.concatenate(([False], values == level, [False]))
    edges = np.flatnonzero(np.diff(hit.astype(np.int8)))
    lengths = edges[1::2] - edges[0::2]
    return int(lengths[lengths >= min_run].sum())


def _gaps_overlaps(stream: Stream) -> tuple[int, float, int, float]:
    """Count and total length (s) of gaps and overlaps between time-sorted segments."""
    n_gaps = n_overlaps = 0
    gap_s = overlap_s = 0.0
    traces = sorted(stream, key=lambda tr: tr.stats.starttime)
    for prev, cur in zip(traces, traces[1:], strict=False):
        delta = prev.stats.delta
        step = float(cur.stats.starttime - prev.stats.endtime) - delta
        if step > 0.5 * delta:
            n_gaps += 1
            gap_s += step
        elif step < -0.5 * delta:
            n_overlaps += 1
            overlap_s += -step
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
    rates = Counter(float(tr.stats.sampling_rate) for tr in stream)
    rate = rates.most_common(1)[0][0] if rates else float("nan")
    mismatch = len(rates) > 1 or (
        bool(rates)
        and expected_rate > 0
        and abs(rate - expected_rate) > cfg.rate_tolerance * expected_rate
    )
    n_samples = sum(tr.stats.npts for tr in stream)
    data = np.concatenate([np.asarray(tr.data) for tr in stream]) if n_samples else np.zeros(0)
    flat = bool(n_samples) and float(np.ptp(data)) <= cfg.flat_max_ptp
    if not n_samples or flat:
        clipped_samples = 0
    elif cfg.clip_level is not None:
        clipped_samples = int(np.count_nonzero(np.abs(data) >= cfg.clip_level))
    else:
        clipped_samples = sum(
            _runs_at(np.asarray(tr.data), level, cfg.clip_run_samples)
            for tr in stream
            for level in (data.max(), data.min())
        )
    n_gaps, gap_s, n_overlaps, overlap_s = _gaps_overlaps(stream)
    data_s = float(sum(tr.stats.npts * tr.stats.delta for tr in stream))
    return {
        "n_traces": len(stream),
        "n_samples": n_samples,
        "sampling_rate": rate,
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
    if row.status == "missing":
        return "no data file"
    if row.status == "corrupt":
        return f"corrupt file ({row.error})"
    if row.n_samples == 0:
        return "no data in the requested span"
    problems = []
    if row.flat:
        problems.append("flat (dead channel: constant value)")
    spanned = row.coverage * (1.0 + row.gap_s / row.data_s) if row.data_s > 0 else 0.0
    if spanned < cfg.min_coverage:  # data missing at the start or end, not between segments
        problems.append(f"truncated: data cover {100 * row.coverage:.0f} % of the span")
    if row.gap_s > 0:
        problems.append(f"{row.n_gaps} gap(s), {row.gap_s:.0f} s")
    if row.clipped:
        problems.append(f"clipped ({row.clipped_samples} samples)")
    if row.rate_mismatch:
        problems.append(f"sampling rate {row.sampling_rate:g} Hz is not the inventory's")
    return "; ".join(problems)


def assess_file(
    path: Path,
    expected_rate: float,
    window: tuple[UTCDateTime, UTCDateTime],
    cfg: QualityConfig,
) -> dict:
    """Quality row fields of one channel-day file; never raises for a bad file.

    ``window`` is the requested part of the day (start, end).
    """
    seconds = float(window[1] - window[0])
    empty = assess_stream(Stream(), expected_rate, seconds, cfg)
    if not path.is_file():
        return {"path": "", "status": "missing", "error": "", **empty}
    try:
        stream = read(str(path), format="MSEED")
    except Exception as exc:  # any reader failure means a corrupt file, reported not raised
        log.warning("corrupt miniSEED file skipped: %s (%s)", path, exc)
        return {"path": str(path), "status": "corrupt", "error": str(exc), **empty}
    trim_to_window(stream, *window)
    return {
        "path": str(path),
        "status": "ok",
        "error": "",
        **assess_stream(stream, expected_rate, seconds, cfg),
    }


def quality_table(
    root: Path,
    choices: list[StationChoice],
    days: list[date],
    window: tuple[UTCDateTime, UTCDateTime],
    cfg: QualityConfig,
    max_workers: int = 4,
) -> pd.DataFrame:
    """Quality rows for every chosen channel on every day (see module doc for columns).

    ``window`` (start, end) clips each day to the requested span for the coverage figure.
    """
    jobs = []
    for choice in choices:
        for day in days:
            start, end = day_bounds(day)
            span = (max(start, window[0]), min(end, window[1]))
            for channel in choice.channels:
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
                jobs.append((key, path, choice.sampling_rate, span))
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        rows = list(
            pool.map(lambda job: {**job[0], **assess_file(job[1], job[2], job[3], cfg)}, jobs)
        )
    table = pd.DataFrame(rows, columns=QUALITY_COLUMNS)
    table["reason"] = [quality_reason(row, cfg) for row in table.itertuples(index=False)]
    table["flagged"] = table["reason"] != ""
    table["day"] = pd.to_datetime(table["day"], utc=True).astype("datetime64[ns, UTC]")
    return table
