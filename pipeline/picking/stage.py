"""The picking stage: SDS archive -> per station-day picks tables -> ``picks/picks.parquet``.

A station-day is streamed in chunks of ``chunk_s`` seconds; each chunk is read with one window
(60 s; for STA/LTA at least one LTA length) plus :data:`EDGE_S` of extra data on both sides
(:func:`chunk_pad`), preprocessed, picked, and only the picks
whose time falls inside the chunk itself are kept, so seams neither lose nor double picks (a
final thinning by ``min_pick_separation_s`` removes near-twins from the two sides of a seam).
Data of the neighbouring days are read where they exist, so picks near midnight are found.
A dead (flat) component is treated as a missing one, as EQTransformer's predictor treats a
missing channel (:mod:`pipeline.picking.preprocess`); a chunk whose every component is dead
is not picked, and a station-day with no live data at all is reported as skipped.

Outputs, one row per pick (``<run>/picks/<NET>.<STA>.<YYYY-MM-DD>.parquet``, then all of them
concatenated in ``<run>/picks/picks.parquet``):

    pick_id (str, ``NET.STA.LOC.PHASE.<ISO time to the microsecond>Z``, unique and stable),
    network, station, location, phase ("P" | "S"), time (datetime64[ns, UTC]),
    probability (mean over MC passes; the deterministic value without MC), probability_std
    (0 without MC), time_std_s (std of the pick time over MC passes, s; NaN without MC),
    detection_probability (mean detector value over the detection; NaN for STA/LTA),
    detection_probability_std (its std over MC passes; 0 without MC, NaN for STA/LTA),
    detection_start, detection_end (datetime64[ns, UTC]), picker ("eqt" | "stalta"), model
    (the weights file's stem, e.g. "EqT_original_model", or "stalta").
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from obspy import Stream, UTCDateTime

from pipeline.picking.extract import extract_picks, thin
from pipeline.picking.params import PickerConfig
from pipeline.picking.preprocess import MODEL_RATE, Record, preprocess_stream
from pipeline.picking.stalta import stalta_picks
from pipeline.picking.windows import (
    OUTPUTS,
    STACKING,
    WINDOW,
    WindowPredictor,
    add_context,
    cleared_windows,
    combined_passes,
    context_blind,
    context_passes,
    context_windows,
    effective_blind,
    predict,
    stack,
    standardised_windows,
    window_starts,
    window_step,
    windows_covering,
)
from pipeline.rundir import RunDir, read_run_table, sha256_text, write_parquet_atomic
from pipeline.waveforms.params import check_code
from pipeline.waveforms.reader import read_station

log = logging.getLogger(__name__)

STAGE = "picks"
#: Extra data (s) read beyond one window at each chunk edge (filter and taper transients).
EDGE_S = 10.0
#: Least windows per deterministic model call on a GPU: chunks are gathered until they hold
#: this many (a GPU is far from busy with one 1 h chunk's ~90 windows).
GPU_MIN_WINDOWS = 500
#: Station-days :func:`pick_all` picks at once (threads sharing one model). Measured on
#: 2 cores with the original model (O2.WILZ 2 h, twice): 2 threads 1.4-1.5x the throughput
#: of one at a time, identical picks.
PICK_WORKERS = 2
#: Columns and dtypes of the picks table.
PICKS_SCHEMA = {
    "pick_id": "object",
    "network": "object",
    "station": "object",
    "location": "object",
    "phase": "object",
    "time": "datetime64[ns, UTC]",
    "probability": "float64",
    "probability_std": "float64",
    "time_std_s": "float64",
    "detection_probability": "float64",
    "detection_probability_std": "float64",
    "detection_start": "datetime64[ns, UTC]",
    "detection_end": "datetime64[ns, UTC]",
    "picker": "object",
    "model": "object",
}
_DAY_FILE = re.compile(r"^[A-Z0-9]{1,2}\.[A-Z0-9]{1,5}\.\d{4}-\d{2}-\d{2}\.parquet$")

Reader = Callable[[UTCDateTime, UTCDateTime], Stream]


class PickingError(RuntimeError):
    """A station-day that could not be picked; the message names it and the cause."""


@dataclass
class SpanStats:
    """What a picking run over a span saw (summed over chunks)."""

    chunks: int = 0
    data_seconds: float = 0.0
    gap_seconds: float = 0.0
    windows: int = 0
    mc_windows: int = 0
    rejected_uncertain: int = 0
    dead_chunks: int = 0
    notes: list[str] = field(default_factory=list)


def empty_picks() -> pd.DataFrame:
    """A picks table without rows (the schema of the module docstring)."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in PICKS_SCHEMA.items()})


@dataclass
class RecordWindows:
    """The standardised model windows of one preprocessed record.

    Attributes:
        record: the record.
        starts: (N,) window start samples (:func:`~pipeline.picking.windows.window_starts`).
        windows: (N, 6000, 3) float32 standardised windows.
    """

    record: Record
    starts: np.ndarray
    windows: np.ndarray


def record_windows(record: Record, cfg: PickerConfig) -> RecordWindows:
    """Place and standardise the windows of ``record`` (``cfg.overlap``)."""
    step = window_step(cfg.overlap)
    starts = window_starts(record.n_samples, record.starttime.timestamp, record.sampling_rate, step)
    return RecordWindows(record, starts, standardised_windows(record.data, starts))


def mc_intervals(picks: pd.DataFrame, half_window: int, n_samples: int) -> dict[str, np.ndarray]:
    """Per output, the (K, 2) samples ``[start, end)`` that MC statistics of ``picks`` read.

    ``detector``: the detection of each pick; ``picker_P``/``picker_S``: the samples within
    ``half_window`` of each pick of that phase (its integer peak lies within half a sample
    of ``sample``).
    """
    spans = {"detector": picks[["detection_start", "detection_end"]].to_numpy(np.int64)}
    for phase in ("P", "S"):
        sample = picks.loc[picks["phase"] == phase, "sample"].to_numpy(float)
        lo = np.floor(sample).astype(np.int64) - half_window
        hi = np.ceil(sample).astype(np.int64) + half_window + 1
        spans[f"picker_{phase}"] = np.stack([lo, hi], axis=1)
    return {k: np.clip(v, 0, n_samples).reshape(-1, 2) for k, v in spans.items()}


def record_curves(
    record: Record,
    model: WindowPredictor,
    cfg: PickerConfig,
    prepared: RecordWindows | None = None,
    outputs: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Deterministic combined ``detector``, ``picker_P``, ``picker_S`` of a record, each (n,).

    The regular windows, then (``cfg.context_windows``) the context windows
    (:func:`context_curves`).

    Args:
        prepared: the record's windows (:func:`record_windows`; None = made here).
        outputs: the model outputs of ``prepared.windows`` (None = predicted here).
    """
    return context_curves(record, model, cfg, prepared, outputs)[0]


def context_curves(
    record: Record,
    model: WindowPredictor,
    cfg: PickerConfig,
    prepared: RecordWindows | None = None,
    outputs: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(combined curves as :func:`record_curves` gives them, context window starts, clear).

    The regular windows' outputs are combined (:data:`STACKING`) and picked; with
    ``cfg.context_windows`` one more window per detection with picks, ending just before its
    first pick and cleared before the previous detection's last pick, is run and joined by
    the maximum (:func:`~pipeline.picking.windows.context_windows`,
    :func:`~pipeline.picking.windows.add_context`; the module docstring of
    :mod:`pipeline.picking.windows`). Without, the starts and clears are empty.
    """
    prepared = prepared if prepared is not None else record_windows(record, cfg)
    blind = effective_blind(cfg.blind_samples, window_step(cfg.overlap))
    if outputs is None:
        outputs = predict(model, prepared.windows, cfg.batch_size)
    curves = {
        k: stack(outputs[k], prepared.starts, record.n_samples, blind[k], STACKING[k])
        for k in OUTPUTS
    }
    no_context = np.zeros(0, dtype=np.int64)
    if not cfg.context_windows or record.n_samples <= WINDOW:
        return curves, no_context, no_context
    blocked = record.near_gaps(cfg.gap_guard_s)
    picks = extract_picks(
        {k: v.copy() for k, v in curves.items()}, cfg, record.sampling_rate, blocked
    )
    if picks.empty:
        return curves, no_context, no_context
    spans = picks.groupby("detection_start")["sample"].agg(["min", "max"])
    starts, clear = context_windows(spans["min"].to_numpy(), spans["max"].to_numpy())
    if len(starts):
        context = predict(model, cleared_windows(record.data, starts, clear), cfg.batch_size)
        blind = context_blind(cfg.blind_samples)
        add_context(context, starts, record.n_samples, blind, curves, clear)
    return curves, starts, clear


def eqt_record_picks(
    record: Record,
    model: WindowPredictor,
    cfg: PickerConfig,
    stats: SpanStats | None = None,
    prepared: RecordWindows | None = None,
    outputs: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """EQTransformer picks of one record (positions in samples, see ``extract_picks``).

    Windows, standardisation, batched prediction, combination (with the context windows,
    :func:`context_curves`) and extraction from the deterministic pass. With
    ``mc_samples > 0`` the stochastic passes then run only on the windows (regular and
    context) whose used samples (:func:`~pipeline.picking.windows.windows_covering`) meet
    what the MC statistics read: the detection of each pick and the samples within
    ``mc_time_window_s`` of it. Every window contributing there is run, so the statistics
    equal those of running every window; pick positions never depend on the passes.

    Args:
        prepared: the record's windows (:func:`record_windows`; None = made here).
        outputs: the deterministic outputs of ``prepared.windows`` (None = predicted here;
            given when several records share one model call).
    """
    n = record.n_samples
    prepared = prepared if prepared is not None else record_windows(record, cfg)
    starts, windows = prepared.starts, prepared.windows
    blind = effective_blind(cfg.blind_samples, window_step(cfg.overlap))
    curves, extra, clear = context_curves(record, model, cfg, prepared, outputs)
    blocked = record.near_gaps(cfg.gap_guard_s)
    picks = extract_picks(curves, cfg, record.sampling_rate, blocked)
    if stats is not None:
        stats.windows += len(starts) + len(extra)
    if not cfg.mc_samples or picks.empty:
        return picks
    half = int(round(cfg.mc_time_window_s * record.sampling_rate))
    spans = mc_intervals(picks, half, n)
    need = np.zeros(len(starts), dtype=bool)
    extra_blind = context_blind(cfg.blind_samples)
    need_extra = np.zeros(len(extra), dtype=bool)
    for k in OUTPUTS:
        need |= windows_covering(starts, n, blind[k], spans[k])
        # cleared windows are used from their first kept sample: (0, tail) covers them all
        need_extra |= windows_covering(extra, n, (0, extra_blind[1]), spans[k])
    passes = {k: np.zeros((cfg.mc_samples, n), dtype=np.float32) for k in OUTPUTS}
    combined_passes(
        model, windows[need], starts[need], n, blind, cfg.mc_samples, cfg.batch_size, out=passes
    )
    if need_extra.any():
        chosen, chosen_clear = extra[need_extra], clear[need_extra]
        context_passes(
            model,
            cleared_windows(record.data, chosen, chosen_clear),
            chosen,
            n,
            extra_blind,
            cfg.mc_samples,
            cfg.batch_size,
            out=passes,
            clear=chosen_clear,
        )
    if stats is not None:
        stats.mc_windows += int(need.sum() + need_extra.sum())
    return extract_picks(curves, cfg, record.sampling_rate, blocked, passes)


def _to_times(record: Record, samples: np.ndarray) -> pd.DatetimeIndex:
    """Sample positions (may be fractional) of ``record`` as UTC timestamps (ns)."""
    ns = record.starttime.ns + np.round(np.asarray(samples, float) * 1e9 / record.sampling_rate)
    return pd.to_datetime(ns.astype(np.int64), unit="ns", utc=True)


def _table(
    picks: pd.DataFrame, record: Record, codes: tuple[str, str, str], picker: str, model: str
) -> pd.DataFrame:
    """Sample-based picks of ``record`` -> the picks table (pick_id filled later)."""
    net, sta, loc = codes
    table = pd.DataFrame(
        {
            "network": net,
            "station": sta,
            "location": loc,
            "phase": picks["phase"].to_numpy(),
            "time": _to_times(record, picks["sample"].to_numpy()),
            "probability": picks["probability"].to_numpy(float),
            "probability_std": picks["probability_std"].to_numpy(float),
            "time_std_s": picks["time_std_s"].to_numpy(float),
            "detection_probability": picks["detection_probability"].to_numpy(float),
            "detection_probability_std": picks["detection_probability_std"].to_numpy(float),
            "detection_start": _to_times(record, picks["detection_start"].to_numpy()),
            "detection_end": _to_times(record, picks["detection_end"].to_numpy()),
            "picker": picker,
            "model": model,
        }
    )
    return table


def pick_ids(table: pd.DataFrame) -> pd.Series:
    """``NET.STA.LOC.PHASE.<time ISO, µs>Z`` per row."""
    iso = table["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (
        table["network"]
        + "."
        + table["station"]
        + "."
        + table["location"]
        + "."
        + table["phase"]
        + "."
        + iso
    )


def pick_span(
    read: Reader,
    codes: tuple[str, str, str],
    start: UTCDateTime,
    end: UTCDateTime,
    cfg: PickerConfig,
    model: WindowPredictor | None = None,
    stats: SpanStats | None = None,
    group_windows: int | None = None,
    flat_max_ptp: float = 0.0,
    azimuths: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Picks of one station with times in ``[start, end)``, streamed in chunks.

    The next chunk is read and preprocessed in a background thread while the model runs on
    the current one. The deterministic pass of several chunks can share one model call (at
    least ``group_windows`` windows per call, for a GPU); picks do not depend on it.

    Args:
        read: returns the raw traces of the station between two times (e.g. from SDS).
        codes: (network, station, location) for the table.
        start, end: the span to pick.
        cfg: the picking section; ``cfg.picker`` chooses EQTransformer or STA/LTA.
        model: the loaded EQTransformer (required for ``picker='eqt'``).
        stats: filled with what was seen (chunks, windows, gaps, notes).
        group_windows: chunks are gathered until they hold this many windows before the
            model is called; None = :data:`GPU_MIN_WINDOWS` when the model runs on a GPU,
            else one chunk per call.
        flat_max_ptp: a component whose raw peak-to-peak in a chunk is at most this (counts;
            0: constant) is dead and treated as missing; a chunk without a live component
            is skipped (counted in ``stats.dead_chunks``).
        azimuths: channel code -> azimuth (degrees from north) of the station's horizontals,
            from its metadata: horizontals not north and east are rotated onto them
            (:func:`~pipeline.picking.preprocess.rotate_to_north_east`).

    Returns:
        The picks table (module docstring), sorted by time, with unique pick ids.
    """
    if cfg.picker == "eqt" and model is None:
        raise ValueError("picker 'eqt' needs a model (pipeline.picking.load_eqt)")
    stats = stats if stats is not None else SpanStats()
    if group_windows is None:
        group_windows = GPU_MIN_WINDOWS if getattr(model, "device", "CPU") == "GPU" else 1
    label = ".".join(codes)
    model_name = model.name if cfg.picker == "eqt" else "stalta"
    tables: list[pd.DataFrame] = []
    group: list[tuple[UTCDateTime, UTCDateTime, Record, RecordWindows | None]] = []

    def flush() -> None:
        outputs = [None] * len(group)
        if cfg.picker == "eqt" and len(group) > 1:
            outputs = _split_outputs(
                predict(model, np.concatenate([g[3].windows for g in group]), cfg.batch_size),
                [len(g[3].starts) for g in group],
            )
        for (c0, c1, record, prepared), out in zip(group, outputs, strict=True):
            if cfg.picker == "eqt":
                picks = eqt_record_picks(record, model, cfg, stats, prepared, out)
            else:
                picks = stalta_picks(record, cfg.stalta)
            table = _table(picks, record, codes, cfg.picker, model_name)
            tables.append(table[(table["time"] >= _ts(c0)) & (table["time"] < _ts(c1))])
        group.clear()

    chunks = prepared_chunks(read, label, start, end, cfg, flat_max_ptp, azimuths)
    for c0, c1, record, prepared in chunks:
        if record is None:
            continue
        stats.notes.extend(n for n in record.notes if n not in stats.notes)
        if not record.live:
            stats.dead_chunks += 1
            continue
        stats.chunks += 1
        inside = _core_mask(record, c0, c1)
        stats.data_seconds += float((inside & ~record.gap_mask).sum()) / record.sampling_rate
        stats.gap_seconds += float((inside & record.gap_mask).sum()) / record.sampling_rate
        group.append((c0, c1, record, prepared))
        if prepared is None or sum(len(g[3].starts) for g in group) >= group_windows:
            flush()
    flush()
    table = pd.concat([empty_picks().drop(columns="pick_id"), *tables], ignore_index=True)
    if cfg.max_probability_std is not None:
        uncertain = table["probability_std"] > cfg.max_probability_std
        stats.rejected_uncertain += int(uncertain.sum())
        table = table[~uncertain]
    table = _thin_phases(table, cfg.min_pick_separation_s)
    table.insert(0, "pick_id", pick_ids(table) if len(table) else pd.Series(dtype=object))
    return table.astype(PICKS_SCHEMA)


def chunk_pad(cfg: PickerConfig) -> float:
    """Seconds of data read before and after each chunk: one model window plus
    :data:`EDGE_S`, and for STA/LTA at least one LTA length plus the latest S delay plus the
    AIC search before a trigger plus :data:`EDGE_S`, so that the LTA warm-up (its first
    ``lta_s`` are zeroed) ends before the P of any S in the chunk. With ``lta_s`` above 60 s
    the first ``lta_s - 60`` s of every chunk used to be blind; with ``lta_s`` 100 s an S
    early in a chunk whose P came before it was lost (its P fell in the warm-up)."""
    pad = WINDOW / MODEL_RATE + EDGE_S
    if cfg.picker == "stalta":
        sta_lta = cfg.stalta
        pad = max(pad, sta_lta.lta_s + sta_lta.s_max_delay_s + sta_lta.aic_before_s + EDGE_S)
    return pad


def prepared_chunks(
    read: Reader,
    label: str,
    start: UTCDateTime,
    end: UTCDateTime,
    cfg: PickerConfig,
    flat_max_ptp: float = 0.0,
    azimuths: dict[str, float] | None = None,
) -> Iterator[tuple[UTCDateTime, UTCDateTime, Record | None, RecordWindows | None]]:
    """(chunk start, chunk end, record or None, its windows or None) per chunk, in order.

    Each chunk is read with :func:`chunk_pad` seconds more on both sides and preprocessed;
    for EQTransformer its windows are made too. One chunk is prepared ahead in a background
    thread (the heavy parts, ObsPy/SciPy filtering and NumPy, overlap with model calls).
    A record without a live component (every component dead in the chunk's own span, not
    in the padding: a dead day after a live one) gets no windows.
    """
    pad = chunk_pad(cfg)
    bounds = [start + k * cfg.chunk_s for k in range(int(np.ceil((end - start) / cfg.chunk_s)))]

    def prepare(c0: UTCDateTime, c1: UTCDateTime):
        record = preprocess_stream(
            read(c0 - pad, c1 + pad),
            label,
            cfg.freqmin_hz,
            cfg.freqmax_hz,
            flat_max_ptp,
            azimuths,
            core=(c0, c1),
        )
        eqt = record is not None and record.live and cfg.picker == "eqt"
        prepared = record_windows(record, cfg) if eqt else None
        return c0, c1, record, prepared

    with ThreadPoolExecutor(1, thread_name_prefix=f"prepare-{label}") as pool:
        pending: deque[Future] = deque()
        for c0, c1 in zip(bounds, [*bounds[1:], end], strict=True):
            pending.append(pool.submit(prepare, c0, c1))
            if len(pending) > 1:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _split_outputs(
    outputs: dict[str, np.ndarray], counts: list[int]
) -> list[dict[str, np.ndarray]]:
    """Split (sum(counts), window) outputs of concatenated records back per record."""
    cuts = np.cumsum(counts)[:-1]
    parts = {k: np.split(v, cuts) for k, v in outputs.items()}
    return [{k: parts[k][i] for k in outputs} for i in range(len(counts))]


def _ts(t: UTCDateTime) -> pd.Timestamp:
    return pd.Timestamp(t.ns, unit="ns", tz="UTC")


def _core_mask(record: Record, start: UTCDateTime, end: UTCDateTime) -> np.ndarray:
    """Samples of ``record`` with ``start <= t < end``."""
    i0 = int(np.ceil((start - record.starttime) * record.sampling_rate - 1e-6))
    i1 = int(np.ceil((end - record.starttime) * record.sampling_rate - 1e-6))
    mask = np.zeros(record.n_samples, dtype=bool)
    mask[max(0, i0) : max(0, i1)] = True
    return mask


def _thin_phases(table: pd.DataFrame, min_separation_s: float) -> pd.DataFrame:
    """Per phase, drop the weaker of two picks closer than ``min_separation_s``."""
    parts = []
    for _, part in table.groupby("phase", sort=True):
        seconds = (part["time"] - part["time"].min()).dt.total_seconds().to_numpy()
        parts.append(part.iloc[thin(seconds, part["probability"].to_numpy(), min_separation_s)])
    if not parts:
        return table
    return pd.concat(parts).sort_values(["time", "phase"], kind="stable").reset_index(drop=True)


def station_day_path(run_root: Path, network: str, station: str, day: date) -> Path:
    """``<run>/picks/<NET>.<STA>.<YYYY-MM-DD>.parquet`` (codes validated)."""
    net = check_code("network", network)
    sta = check_code("station", station)
    return Path(run_root) / STAGE / f"{net}.{sta}.{day.isoformat()}.parquet"


def day_window(
    day: date, span: tuple[datetime, datetime] | None = None
) -> tuple[UTCDateTime, UTCDateTime]:
    """The part of UTC ``day`` a build picks: all of it, or its overlap with ``span``.

    ``span`` is the build's (start, end); naive datetimes are UTC. Picks outside the span
    would make events the build was not asked for (a 1-hour build catalogued the whole day).

    Raises:
        PickingError: ``span`` does not overlap ``day``.
    """
    start = UTCDateTime(datetime(day.year, day.month, day.day, tzinfo=UTC))
    end = start + 86400
    if span is not None:
        start, end = max(start, UTCDateTime(span[0])), min(end, UTCDateTime(span[1]))
        if end <= start:
            raise PickingError(f"the span {span[0]} - {span[1]} does not overlap {day}")
    return start, end


def station_channels(run_root: Path, network: str, station: str) -> tuple[str, str]:
    """(location, channel_prefix) of a station from ``<run>/waveforms/stations.csv``.

    Raises:
        PickingError: no stations table or the station is not in it.
    """
    path = Path(run_root) / "waveforms" / "stations.csv"
    if not path.is_file():
        raise PickingError(f"{path} not found (written by the waveform stage)")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows = table[(table["network"] == network) & (table["station"] == station)]
    if rows.empty:
        raise PickingError(f"{network}.{station}: not in {path}")
    return rows.iloc[0]["location"], rows.iloc[0]["channel_prefix"]


def station_azimuths(
    run_root: Path, network: str, station: str, location: str, channel_prefix: str, day: date
) -> dict[str, float]:
    """The station's horizontal azimuths on ``day`` from the run's StationXML
    (:func:`~pipeline.waveforms.inventory.horizontal_azimuths`)."""
    from pipeline.waveforms.inventory import horizontal_azimuths

    path = Path(run_root) / "waveforms" / "inventory.xml"
    return horizontal_azimuths(path, network, station, location, channel_prefix, day)


def pick_station_day(
    run_root: Path,
    network: str,
    station: str,
    day: date,
    cfg: PickerConfig,
    model: WindowPredictor | None = None,
    *,
    location: str | None = None,
    channel_prefix: str | None = None,
    sds_root: Path | None = None,
    flat_max_ptp: float = 0.0,
    span: tuple[datetime, datetime] | None = None,
    azimuths: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Pick one station-day and write ``<run>/picks/<NET>.<STA>.<YYYY-MM-DD>.parquet``.

    Args:
        run_root: the run directory.
        network, station: SEED codes (validated before they become paths).
        day: the UTC day.
        cfg: the picking section.
        model: a loaded EQTransformer (None: loaded from ``cfg.weights`` for ``picker='eqt'``).
        location, channel_prefix: the channels to read (None: from ``waveforms/stations.csv``).
        sds_root: the SDS archive (None: ``<run>/waveforms``).
        flat_max_ptp: dead-channel threshold (counts), the waveform section's
            ``quality.flat_max_ptp`` (see :func:`pick_span`).
        span: the build's (start, end): only picks inside it are made (:func:`day_window`;
            data just outside are still read as context). None: the whole day.
        azimuths: the station's horizontal azimuths (see :func:`pick_span`; None: from
            ``<run>/waveforms/inventory.xml``, :func:`station_azimuths`).

    Returns:
        Summary: station_day, path, n_p, n_s, chunks, windows, mc_windows, data_seconds,
        gap_seconds, rejected_uncertain, notes, skipped (why the day was not picked, or
        None), wall_time_s. A day without data, or whose every component is dead, writes
        an empty table.

    Raises:
        PickingError: anything that stops this station-day; the message names it.
    """
    label = f"{network}.{station}.{day.isoformat()}"
    began = time.perf_counter()
    target = None
    try:
        target = station_day_path(run_root, network, station, day)
        if location is None or channel_prefix is None:
            location, channel_prefix = station_channels(run_root, network, station)
        if cfg.picker == "eqt" and model is None:
            from pipeline.picking import load_eqt

            model = load_eqt(cfg.weights, hard_sigmoid=cfg.hard_sigmoid)
        read = partial(
            read_station,
            Path(sds_root) if sds_root is not None else Path(run_root) / "waveforms",
            network,
            station,
            location,
            channel_prefix,
        )
        start, end = day_window(day, span)
        stats = SpanStats()
        table = pick_span(
            read,
            (network, station, location),
            start,
            end,
            cfg,
            model,
            stats,
            flat_max_ptp=flat_max_ptp,
            azimuths=(
                station_azimuths(run_root, network, station, location, channel_prefix, day)
                if azimuths is None
                else azimuths
            ),
        )
        write_parquet_atomic(table, target)
    except Exception as exc:
        if target is not None:  # picks of earlier data must not stand in for this day's
            target.unlink(missing_ok=True)
        if isinstance(exc, PickingError):
            raise PickingError(f"station-day {label}: {exc}") from exc
        raise PickingError(f"station-day {label}: {type(exc).__name__}: {exc}") from exc
    skipped = None
    if stats.chunks == 0 and stats.dead_chunks:
        skipped = "every component dead (flat); not picked"
        log.warning("%s: %s", label, skipped)
    elif stats.chunks == 0:
        log.warning("%s: no waveform data; wrote an empty picks table", label)
    return {
        "station_day": label,
        "path": str(target),
        "n_p": int((table["phase"] == "P").sum()),
        "n_s": int((table["phase"] == "S").sum()),
        "chunks": stats.chunks,
        "windows": stats.windows,
        "mc_windows": stats.mc_windows,
        "data_seconds": stats.data_seconds,
        "gap_seconds": stats.gap_seconds,
        "rejected_uncertain": stats.rejected_uncertain,
        "notes": stats.notes,
        "skipped": skipped,
        "wall_time_s": time.perf_counter() - began,
    }


def merge_picks(run: RunDir | Path, paths: Iterable[Path] | None = None) -> Path:
    """Concatenate the station-day tables into ``<run>/picks/picks.parquet`` (sorted by time).

    ``paths``: the station-day tables of this build (None: every one in the folder). Tables
    of other days or stations (an earlier, different span) are then left out.

    Raises:
        PickingError: a station-day table lacks columns or pick ids repeat across tables.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    folder = run.stage_dir(STAGE)
    tables = []
    chosen = sorted(folder.glob("*.parquet")) if paths is None else sorted(map(Path, paths))
    for path in chosen:
        if not _DAY_FILE.match(path.name):
            continue
        table = read_run_table(path)
        missing = [c for c in PICKS_SCHEMA if c not in table.columns]
        if missing:
            raise PickingError(f"{path}: missing column(s) {', '.join(missing)}")
        tables.append(table)
    merged = pd.concat([empty_picks(), *tables], ignore_index=True).astype(PICKS_SCHEMA)
    merged = merged.sort_values(["time", "network", "station", "phase"], kind="stable")
    if merged["pick_id"].duplicated().any():
        dup = merged.loc[merged["pick_id"].duplicated(), "pick_id"].head(3).tolist()
        raise PickingError(f"{folder}: pick ids repeat across station-day tables, e.g. {dup}")
    return write_parquet_atomic(merged.reset_index(drop=True), folder / "picks.parquet")


def pick_all(
    run: RunDir,
    cfg: PickerConfig,
    stations: pd.DataFrame,
    days: Iterable[date],
    model: WindowPredictor | None = None,
    sds_root: Path | None = None,
    workers: int = PICK_WORKERS,
    flat_max_ptp: float = 0.0,
    span: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """Pick every station-day of a build, merge the tables and record the stage.

    Args:
        run: the run directory.
        cfg: the picking section.
        stations: the stations table (network, station, location, channel_prefix, ...);
            one row per station is used.
        days: the UTC days.
        model: a loaded EQTransformer (None: loaded once from ``cfg.weights``).
        sds_root: the SDS archive (None: ``<run>/waveforms``).
        workers: station-days picked at once, in threads sharing the model
            (:data:`PICK_WORKERS` by default); the picks do not depend on it.
        flat_max_ptp: dead-channel threshold (counts; see :func:`pick_span`).
        span: the build's (start, end); picks are made only inside it (None: whole days).

    Returns:
        Summary with counts (station_days, failed, picks, p, s), the per station-day
        summaries and the failures (station-day -> message). A failed station-day is
        logged and skipped; the others go on.

    Raises:
        PickingError: the stations table lacks network, station, location or channel_prefix,
            or no station-day with data was picked (:func:`check_any_picked`).
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    began = time.perf_counter()
    missing = [c for c in ("network", "station", "location", "channel_prefix") if c not in stations]
    if missing:
        raise PickingError(f"stations table: missing column(s) {', '.join(missing)}")
    if cfg.picker == "eqt" and model is None:
        from pipeline.picking import load_eqt

        model = load_eqt(cfg.weights, hard_sigmoid=cfg.hard_sigmoid)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    rows = stations.drop_duplicates(["network", "station"]).fillna({"location": ""})
    units = [(r, d) for d in sorted(set(days)) for r in rows.itertuples(index=False)]
    summaries, failures = [], {}

    def pick_one(row, day) -> dict[str, Any]:
        return pick_station_day(
            run.root,
            row.network,
            row.station,
            day,
            cfg,
            model,
            location=str(row.location),
            channel_prefix=row.channel_prefix,
            sds_root=sds_root,
            flat_max_ptp=flat_max_ptp,
            span=span,
        )

    with (
        Progress(
            TextColumn("picking {task.fields[unit]}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
        ) as progress,
        ThreadPoolExecutor(workers, thread_name_prefix="pick") as pool,
    ):
        task = progress.add_task("pick", total=len(units), unit="")
        futures = {pool.submit(pick_one, row, day): (row, day) for row, day in units}
        for future in as_completed(futures):
            row, day = futures[future]
            label = f"{row.network}.{row.station}.{day}"
            try:
                summaries.append(future.result())
            except PickingError as exc:
                log.error("%s", exc)
                failures[label] = str(exc)
            progress.update(task, advance=1, unit=label)
    order = {f"{r.network}.{r.station}.{d.isoformat()}": i for i, (r, d) in enumerate(units)}
    summaries.sort(key=lambda summary: order[summary["station_day"]])
    model_name = model.name if cfg.picker == "eqt" else "stalta"
    return finish_picking(run, cfg, summaries, failures, model_name, len(units), began)


def finish_picking(
    run: RunDir,
    cfg: PickerConfig,
    summaries: list[dict[str, Any]],
    failures: dict[str, str],
    model_name: str,
    n_units: int,
    began: float,
) -> dict[str, Any]:
    """Merge the station-day tables and record the picking stage in the manifest.

    Args:
        summaries: the :func:`pick_station_day` results of the finished station-days.
        failures: station-day label -> error message of the failed ones.
        model_name: the picker's model name (``"stalta"`` for the baseline).
        n_units: number of station-days attempted.
        began: ``time.perf_counter()`` at the start of the stage.

    Raises:
        PickingError: every station-day failed or had no data (:func:`check_any_picked`),
            raised after the stage and its failures are recorded.
    """
    tables = [run.root / s["path"] for s in summaries]  # "path": absolute or in the run
    merged = merge_picks(run, tables)
    table = read_run_table(merged, ("phase",))[["phase"]]
    counts = {
        "station_days": n_units,
        "failed": len(failures),
        "picks": len(table),
        "p": int((table["phase"] == "P").sum()),
        "s": int((table["phase"] == "S").sum()),
        "windows": sum(s["windows"] for s in summaries),
        "mc_windows": sum(s["mc_windows"] for s in summaries),
        "rejected_uncertain": sum(s["rejected_uncertain"] for s in summaries),
    }
    wall = time.perf_counter() - began
    run.record_stage(
        STAGE,
        inputs={"picker_config": sha256_text(cfg.model_dump_json())},
        outputs=[str(merged.relative_to(run.root))]
        + [str(path.relative_to(run.root)) for path in tables],
        counts=counts,
        wall_time_s=wall,
        details={
            "picker": cfg.picker,
            "model": model_name,
            "config": cfg.model_dump(mode="json"),
            "failures": failures,
            "skipped": {s["station_day"]: s["skipped"] for s in summaries if s.get("skipped")},
            "notes": sorted({n for s in summaries for n in s["notes"]}),
        },
    )
    check_any_picked(summaries, failures)
    return {"counts": counts, "station_days": summaries, "failures": failures, "path": merged}


def check_any_picked(summaries: list[dict[str, Any]], failures: dict[str, str]) -> None:
    """Stop the build when no station-day with data was picked and at least one failed
    (every station's channel too slow for the band, a picker that fails on every input):
    the stages after picking made an empty catalog and the build exited 0.

    Args:
        summaries: the :func:`pick_station_day` results of the finished station-days.
        failures: station-day label -> error message of the failed ones.

    Raises:
        PickingError: naming the counts and the first failure (the manifest lists them all).
    """
    if not failures or any(s["chunks"] > 0 for s in summaries):
        return
    others = f", the other {len(summaries)} had no data" if summaries else ""
    raise PickingError(
        f"no station-day could be picked: {len(failures)} of {len(failures) + len(summaries)} "
        f"failed{others}; first failure: {next(iter(failures.values()))}"
    )
