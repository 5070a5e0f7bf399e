"""Why true arrivals get no pick: the picker's curves at each arrival of a scored run.

For every true arrival (``truth/picks.csv``) of the stations of a run, the record is
preprocessed and predicted exactly as the picking stage does (same chunks, windows,
combination and extraction rules, :mod:`pipeline.picking.stage`), and the arrival is given one
**cause**, the first that applies:

``picked``
    a pick of the run (``picks/picks.parquet``) matches it (:func:`pipeline.score.match_picks`).
``in_gap``
    it lies where no pick may be made (a data gap or ``gap_guard_s`` from a data edge).
``below_threshold``
    the phase probability stays below its threshold within ``tolerance_s`` of the arrival.
``no_detection`` / ``weaker_in_detection`` / ``thinned``
    a candidate peak lies within ``tolerance_s`` but extraction drops it
    (:data:`pipeline.picking.extract.FATES`).
``peak_elsewhere``
    the probability exceeds the threshold near the arrival, but the peak of that run lies
    farther than ``tolerance_s`` away (a neighbouring arrival's peak swallows it).
``kept_not_in_run``
    a candidate there is kept by extraction yet the run has no matching pick (seam thinning or
    the MC-dropout std gate of the stage).

Columns of :func:`diagnose_arrivals` (one row per true arrival of the span):

    event_id, network, station, phase, time (UTC), snr (true SNR), in_gap (truth flag),
    magnitude (true), peak (max phase probability within ``tolerance_s``), detector_peak (max
    detector within ``detection_margin_s``), window_offset_s (position of the arrival in the
    window whose output the combined P/S trace takes there, s), neighbour_s (time to the
    nearest arrival of another event at this station, any phase, s), candidate_fate (fate of
    the strongest candidate within ``tolerance_s``, "" none), cause (above).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from obspy import UTCDateTime

from pipeline.picking.extract import detections_of, pick_candidate_fates
from pipeline.picking.params import PickerConfig
from pipeline.picking.stage import prepared_chunks, record_curves, station_channels
from pipeline.picking.windows import WINDOW, WindowPredictor, effective_blind, window_step
from pipeline.rundir import read_run_table
from pipeline.score import match_picks
from pipeline.waveforms.reader import read_station

#: Causes in the order they are tested (module docstring).
CAUSES = (
    "picked",
    "in_gap",
    "below_threshold",
    "no_detection",
    "weaker_in_detection",
    "thinned",
    "peak_elsewhere",
    "kept_not_in_run",
)


def _used_window_offset(starts: np.ndarray, index: np.ndarray, head: int, tail: int) -> np.ndarray:
    """Offset (samples) of each record sample in the earliest window using it (-1 none)."""
    first = starts + np.where(starts == 0, 0, head)
    last = starts + WINDOW - tail
    inside = (first[None, :] <= index[:, None]) & (index[:, None] < last[None, :])
    has = inside.any(axis=1)
    which = np.argmax(inside, axis=1)
    return np.where(has, index - starts[which], -1)


def _chunk_rows(
    arrivals: pd.DataFrame,
    record,
    curves: dict[str, np.ndarray],
    blocked: np.ndarray,
    starts: np.ndarray,
    cfg: PickerConfig,
    tolerance_s: float,
) -> pd.DataFrame:
    """Curve values, candidate fates and window offsets at ``arrivals`` inside one record."""
    fs = record.sampling_rate
    detections = detections_of(curves, cfg, fs)
    fates = pick_candidate_fates(curves, detections, cfg, fs)
    offset_ns = (arrivals["time"].astype("int64") - record.starttime.ns).to_numpy()
    index = np.round(offset_ns * fs / 1e9).astype(np.int64)
    tol, margin = int(round(tolerance_s * fs)), int(round(cfg.detection_margin_s * fs))
    n = record.n_samples
    blind = effective_blind(cfg.blind_samples, window_step(cfg.overlap))
    out = arrivals.copy()
    peak, det_peak, fate, offset, gap = [], [], [], [], []
    for phase, i in zip(out["phase"], index, strict=True):
        key = f"picker_{phase}"
        lo, hi = max(0, i - tol), min(n, i + tol + 1)
        peak.append(float(curves[key][lo:hi].max()) if hi > lo else 0.0)
        dlo, dhi = max(0, i - margin), min(n, i + margin + 1)
        det_peak.append(float(curves["detector"][dlo:dhi].max()) if dhi > dlo else 0.0)
        gap.append(bool(blocked[min(max(i, 0), n - 1)]))
        near = fates[(fates["phase"] == phase) & ((fates["sample"] - i).abs() <= tol)]
        fate.append(near.sort_values("value").iloc[-1]["fate"] if len(near) else "")
        head, tail = blind[key]
        offset.append(_used_window_offset(starts, np.array([i]), head, tail)[0] / fs)
    return out.assign(
        peak=peak, detector_peak=det_peak, candidate_fate=fate, window_offset_s=offset, blocked=gap
    )


def diagnose_station(
    sds_root: Path,
    codes: tuple[str, str, str],
    channel_prefix: str,
    start: UTCDateTime,
    end: UTCDateTime,
    arrivals: pd.DataFrame,
    cfg: PickerConfig,
    model: WindowPredictor,
    tolerance_s: float = 0.5,
) -> pd.DataFrame:
    """Curve values at the true ``arrivals`` of one station in ``[start, end)``.

    The span is read in the stage's chunks; each arrival is looked at in the chunk whose core
    holds it. Returns ``arrivals`` plus peak, detector_peak, candidate_fate, window_offset_s
    and blocked (:func:`diagnose_arrivals`).
    """
    net, sta, loc = codes
    read = lambda a, b: read_station(sds_root, net, sta, loc, channel_prefix, a, b)  # noqa: E731
    parts = []
    label = ".".join(codes)
    for c0, c1, record, prepared in prepared_chunks(read, label, start, end, cfg):
        ns0, ns1 = c0.ns, c1.ns
        t = arrivals["time"].astype("int64")
        inside = arrivals[(t >= ns0) & (t < ns1)]
        if record is None or not record.live or inside.empty:
            continue
        curves = record_curves(record, model, cfg, prepared)
        blocked = record.near_gaps(cfg.gap_guard_s)
        for values in curves.values():
            values[blocked] = 0.0
        parts.append(
            _chunk_rows(inside, record, curves, blocked, prepared.starts, cfg, tolerance_s)
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _neighbour_s(arrivals: pd.DataFrame) -> np.ndarray:
    """Per arrival, seconds to the nearest arrival of another event at the same station."""
    out = np.full(len(arrivals), np.inf)
    t = arrivals["time"].astype("int64").to_numpy() / 1e9
    for _, rows in arrivals.groupby(["network", "station"]).indices.items():
        order = rows[np.argsort(t[rows], kind="stable")]
        ev = arrivals["event_id"].to_numpy()[order]
        ts = t[order]
        for k, row in enumerate(order):
            lo, hi = np.searchsorted(ts, [ts[k] - 60, ts[k] + 60])
            other = [abs(ts[j] - ts[k]) for j in range(lo, hi) if ev[j] != ev[k]]
            out[row] = min(other, default=np.inf)
    return out


def assign_causes(table: pd.DataFrame, cfg: PickerConfig) -> pd.Series:
    """The cause (:data:`CAUSES`) of each row of a diagnosis table (module docstring)."""
    threshold = np.where(table["phase"] == "P", cfg.p_threshold, cfg.s_threshold)
    cause = np.select(
        [
            table["matched"].to_numpy(bool),
            table["blocked"].to_numpy(bool),
            table["peak"].to_numpy(float) < threshold,
            table["candidate_fate"] == "no_detection",
            table["candidate_fate"] == "weaker_in_detection",
            table["candidate_fate"] == "thinned",
            table["candidate_fate"] == "",
        ],
        list(CAUSES[:7]),
        default="kept_not_in_run",
    )
    return pd.Series(cause, index=table.index, name="cause")


def diagnose_arrivals(
    run_dir: Path,
    truth_dir: Path,
    cfg: PickerConfig,
    model: WindowPredictor,
    start: UTCDateTime,
    end: UTCDateTime,
    event_ids: set[str] | None = None,
    tolerance_s: float = 0.5,
) -> pd.DataFrame:
    """The diagnosis table (module docstring) of a run's true arrivals in ``[start, end)``.

    Args:
        run_dir: the run (``waveforms/`` SDS archive and stations table, ``picks/``).
        truth_dir: its ground truth (``catalog.csv``, ``picks.csv``).
        cfg: the picking section the run was built with.
        model: the loaded EQTransformer.
        event_ids: only these true events' arrivals (None = all).
        tolerance_s: a pick within this of a true arrival matches it (the scorer's).
    """
    from pipeline.score import read_truth

    run_dir, truth_dir = Path(run_dir), Path(truth_dir)
    catalog, truth_picks, _ = read_truth(truth_dir)
    run_picks = read_run_table(run_dir / "picks" / "picks.parquet")
    run_picks["time"] = pd.to_datetime(run_picks["time"], utc=True)
    matched = match_picks(run_picks, truth_picks, tolerance_s)
    truth_picks = truth_picks.assign(
        matched=np.isin(np.arange(len(truth_picks)), matched[matched >= 0]),
        neighbour_s=_neighbour_s(truth_picks),
        magnitude=truth_picks["event_id"].map(catalog.set_index("event_id")["magnitude"]),
    )
    t0, t1 = (pd.Timestamp(t.ns, unit="ns", tz="UTC") for t in (start, end))
    span = (truth_picks["time"] >= t0) & (truth_picks["time"] < t1)
    chosen = truth_picks[span]
    if event_ids is not None:
        chosen = chosen[chosen["event_id"].isin(event_ids)]
    parts = []
    for (net, sta), arrivals in chosen.groupby(["network", "station"]):
        loc, prefix = station_channels(run_dir, net, sta)
        parts.append(
            diagnose_station(
                run_dir / "waveforms",
                (net, sta, loc),
                prefix,
                start,
                end,
                arrivals,
                cfg,
                model,
                tolerance_s,
            )
        )
    table = pd.concat(parts, ignore_index=True)
    return table.assign(cause=assign_causes(table, cfg))
