"""Reading a station's waveforms back from an SDS archive, at one sampling rate.

Every stage that reads waveforms after the download (picking, cross-correlation, magnitudes)
goes through :func:`read_station`, so they all see the same traces: codes validated before
they become paths, and — when a rate is asked for — every channel brought to that rate with
ObsPy. A station whose channels disagree in rate (one channel recorded at 200 Hz beside two
at 100 Hz, or a rate change within a day) then gives traces that line up sample for sample.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
from obspy import Stream, Trace, UTCDateTime, read
from obspy.clients.filesystem.sds import Client as SDSClient

from pipeline.waveforms.params import check_code
from pipeline.waveforms.sds import MSEED_LOCK, station_day_files

log = logging.getLogger(__name__)

#: Relative rate difference below which a trace is taken as already at the target rate.
RATE_TOLERANCE = 1e-6
#: Last letter of a channel code -> the component it stands for, as the picker's input column
#: (E, N, Z): the channels of a station that are used. SEED's 1/2 horizontals have 2 at 1's
#: azimuth + 90°, so 1 takes N's place and 2 E's (the right-handed frame the model was trained
#: in; SeisBench's ``flexible_horizontal_components`` reads Z12 as ZNE the same way). Measured
#: on the 77 labelled NCEDC records: E and N fed the other way round cost P recall 0.922 → 0.909.
COMPONENT_SLOT = {"E": 0, "2": 0, "N": 1, "1": 1, "Z": 2}


#: Largest magnitude a sample may have: the picker works in float32, and a float64 sample
#: beyond its range (a damaged float record: 1e300) became inf there, the model's windows
#: held NaN and the whole station-day failed ("windows contain NaN or infinite values").
MAX_SAMPLE = float(np.finfo(np.float32).max)


def unusable_samples(data: np.ndarray) -> np.ndarray:
    """(n,) bool: samples that are NaN, infinite or beyond :data:`MAX_SAMPLE` (float
    data; integer data are always usable)."""
    data = np.asarray(data)
    if data.dtype.kind not in "fc":
        return np.zeros(data.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return ~(np.abs(data) <= MAX_SAMPLE)


def is_numeric(trace: Trace) -> bool:
    """Whether the samples of ``trace`` are numbers (not the text of ASCII/opaque records)."""
    return np.issubdtype(np.asarray(trace.data).dtype, np.number)


def usable_traces(stream: Stream, label: str = "") -> Stream:
    """Leave in ``stream`` only samples a stage can use, in place; return it.

    Traces whose samples are not numbers (miniSEED text records) are dropped, and runs of
    unusable samples (NaN, inf, beyond float32's range: float records,
    :func:`unusable_samples`) become gaps, the trace split around them, so no NaN reaches a
    filter, the picker or an amplitude. Each is logged with ``label``.
    """
    out = Stream()
    prefix = f"{label}: " if label else ""
    for trace in stream:
        if not is_numeric(trace):
            log.warning("%s%s: text records, not waveform samples: left out", prefix, trace.id)
            continue
        data = np.asarray(trace.data)
        bad = unusable_samples(data)
        if not bad.any():
            out.append(trace)
            continue
        log.warning("%s%s: %d samples not finite or beyond float32 range (NaN/inf/>3.4e38) "
                    "treated as gaps", prefix, trace.id, int(bad.sum()))  # fmt: skip
        trace.data = np.ma.masked_array(data, mask=bad)
        out += Stream([trace]).split()
    stream.traces = out.traces
    return stream


def conform_rate(stream: Stream, sampling_rate: float, label: str = "") -> Stream:
    """Bring every trace of ``stream`` to ``sampling_rate`` (Hz), in place; return it.

    Traces at another rate are resampled with ObsPy's ``Trace.resample`` (Fourier method,
    Hann window); when decimating, its anti-alias low-pass (Chebyshev type II below the new
    Nyquist frequency) runs first. Traces with masked gaps are split into contiguous pieces
    before resampling, so a gap never enters the Fourier transform. Each resampled channel
    is logged once with ``label``.
    """
    out = Stream()
    changed: set[tuple[str, float]] = set()
    for trace in stream:
        rate = float(trace.stats.sampling_rate)
        if abs(rate - sampling_rate) <= RATE_TOLERANCE * sampling_rate:
            out.append(trace)
            continue
        changed.add((trace.id, rate))
        for piece in Stream([trace]).split():
            if piece.stats.npts < 2:
                continue
            piece.resample(sampling_rate, no_filter=sampling_rate > rate)
            out.append(piece)
    for seed_id, rate in sorted(changed):
        log.info("%s%s: resampled %g Hz -> %g Hz", f"{label}: " if label else "", seed_id, rate,
                 sampling_rate)  # fmt: skip
    stream.traces = out.traces
    return stream


def read_station(
    sds_root: Path,
    network: str,
    station: str,
    location: str,
    channel_prefix: str,
    starttime: UTCDateTime,
    endtime: UTCDateTime,
    sampling_rate: float | None = None,
) -> Stream:
    """All ``<prefix>?`` channels of one station in ``[starttime, endtime]`` from an SDS archive.

    Args:
        sds_root: root of the archive (``YYYY/NET/STA/CHA.D/NET.STA.LOC.CHA.D.YYYY.DOY``).
        network, station, location, channel_prefix: SEED codes, validated before they reach
            the file system (``ValueError`` names the bad one).
        starttime, endtime: the span to read.
        sampling_rate: Hz; when given, every trace is brought to it (:func:`conform_rate`).
            None leaves the traces as recorded (the picker resamples after its band-pass).

    Returns:
        The traces (unmerged; gaps and overlaps as in the files; text records left out and
        non-finite samples made gaps, :func:`usable_traces`). Empty when no file covers the
        span.
    """
    net = check_code("network", network)
    sta = check_code("station", station)
    loc = check_code("location", location)
    prefix = check_code("channel_prefix", channel_prefix)
    client = SDSClient(str(sds_root))
    try:
        with MSEED_LOCK:
            stream = client.get_waveforms(net, sta, loc, f"{prefix}?", starttime, endtime)
    except Exception:  # noqa: BLE001 - a corrupt file or a rate change: file by file
        stream = _read_readable_files(client, (net, sta, loc, prefix), starttime, endtime)
    usable_traces(stream, f"{net}.{sta}.{loc}")
    if sampling_rate is not None:
        conform_rate(stream, sampling_rate, f"{net}.{sta}.{loc}")
        stream.trim(starttime, endtime)  # resampling can reach a sample past the request
    return stream


def _read_readable_files(
    client: SDSClient,
    codes: tuple[str, str, str, str],
    starttime: UTCDateTime,
    endtime: UTCDateTime,
) -> Stream:
    """What :meth:`SDSClient.get_waveforms` returns, leaving out the files it cannot read.

    Each corrupt file is logged by name; the quality table (``waveforms/quality.parquet``)
    flags it as ``corrupt`` and the report lists it, so the station is read without it as
    if that channel-day were missing. Also the way in for a channel whose rate changes
    within the span, which the client's merge refuses (:func:`merge_per_rate`).
    """
    net, sta, loc, prefix = codes
    stream = Stream()
    first = (starttime - client.fileborder_seconds).date  # as the client: the day before
    days = [first + timedelta(days=k) for k in range((endtime.date - first).days + 1)]
    for path in station_day_files(Path(client.sds_root), net, sta, loc, prefix, days, False):
        try:
            with MSEED_LOCK:
                stream += read(str(path), format="MSEED", starttime=starttime, endtime=endtime)
        except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt file
            log.warning("corrupt miniSEED file skipped: %s (%s)", path, exc)
    stream = stream.select(network=net, station=sta, location=loc, channel=f"{prefix}?")
    stream.trim(starttime, endtime)
    return merge_per_rate(stream)


def merge_per_rate(stream: Stream) -> Stream:
    """ObsPy's cleanup merge (``merge(-1)``) of ``stream``, done for each sampling rate apart.

    ``Stream.merge`` raises ``TypeError`` ("Sampling rate differs") when a channel changes
    rate within the span; here such a channel keeps its traces at each rate. In place.
    """
    merged = Stream()
    for rate in sorted({tr.stats.sampling_rate for tr in stream}):
        merged += Stream([tr for tr in stream if tr.stats.sampling_rate == rate]).merge(-1)
    stream.traces = sorted(merged.traces, key=lambda tr: (tr.id, tr.stats.starttime))
    return stream


def nominal_rate(stream: Stream) -> float | None:
    """The rate (Hz) most samples of ``stream`` were recorded at; None for an empty stream."""
    totals: dict[float, int] = {}
    for trace in stream:
        rate = float(trace.stats.sampling_rate)
        totals[rate] = totals.get(rate, 0) + trace.stats.npts
    return max(totals, key=lambda r: (totals[r], r)) if totals else None
