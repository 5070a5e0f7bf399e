"""Write a synthetic scenario: SDS archive, inventory, stations table and ground truth.

Layout under ``out`` (a run directory or any folder)::

    waveforms/YYYY/NET/STA/CHA.D/NET.STA..CHA.D.YYYY.DOY   miniSEED int32 counts, channel-days
    waveforms/inventory.xml      StationXML (flat-velocity response, ``sensitivity`` counts/(m/s))
    waveforms/stations.csv       stations table (``pipeline.waveforms.inventory.STATION_COLUMNS``)
    truth/catalog.csv            event_id, origin_time, latitude, longitude, depth_km, magnitude
    truth/picks.csv              event_id, network, station, phase, time, distance_km, snr, in_gap
    truth/scenario.json          the config and the summary
    truth/partial/DIGEST/        per station-day state while generating (removed at the end)
    manifest.json                stage "synthetic" recorded (pipeline.rundir.RunDir)

True picks exist for every event–station pair (visible or not): ``snr`` is the peak signal
velocity (P: first second on Z, S: first two seconds on the horizontals) over the
station's noise rms above 1 Hz at that hour (estimated from the ML law for pairs too weak to
be synthesised); ``in_gap`` marks arrivals inside a data gap.

How well EQTransformer finds these arrivals was measured on this generator (the demo
replica, 4 stations × 6 h two days after the mainshock, pick within 0.5 s of the true
arrival, by true SNR 5–10 / 10–20 / 20–50 / >= 50): the authors' original model (the picking
default, the one of the Tottori study) finds P at 0.62 / 0.72 / 0.83 / ~0.95 and S at
0.45 / 0.64 / 0.76 / ~0.93; the conservative model only P 0.14 / 0.41 / 0.68 / ~0.9 and
S 0.03 / 0.08 / 0.38 / ~0.8 (``tests/test_synthetic.py`` pins bounds for it). Records are
generated one UTC day at a time (event signals crossing midnight are carried over), so memory
stays bounded by one station-day (plus the event table).

Generation is resumable: after each station-day's files, a small state file (the measured
SNRs, the arrivals in gaps and the signal spilling into the next day) is written under
``truth/partial/DIGEST`` (DIGEST: hash of the config and the arrival table), and a rerun
into the same folder loads the days that have one instead of generating them again. The
result is the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from obspy import Stream, Trace, UTCDateTime

from pipeline.interrupt import quiet_worker
from pipeline.rundir import RunDir, atomic_path, write_text_atomic
from pipeline.synthetic.noise import diurnal_factor_at, gap_intervals, station_noise
from pipeline.synthetic.params import ScenarioConfig
from pipeline.synthetic.sequence import simulate_sequence, source_cells
from pipeline.synthetic.stations import scenario_inventory, scenario_stations
from pipeline.synthetic.waveforms import (
    LEAD_S,
    arrival_table,
    predicted_peak_velocity,
    segment_samples,
    synthesize_pairs,
)
from pipeline.velocity import load_velocity_model
from pipeline.waveforms.inventory import write_inventory, write_stations_csv
from pipeline.waveforms.sds import write_channel_day

log = logging.getLogger(__name__)

#: Pairs whose predicted S peak velocity is below this fraction of the noise are not synthesised.
INVISIBLE_FRACTION = 0.2
#: Samples synthesised per batch (memory bound of the signal synthesis).
BATCH_SAMPLES = 1 << 20
#: Arrays of a station-day state file (``truth/partial/DIGEST/NET.STA.DAYINDEX.npz``).
STATE_KEYS = ("snr_index", "snr_p", "snr_s", "gap_p", "gap_s", "carry", "n_synth", "written")
PICK_COLUMNS = ["event_id", "network", "station", "phase", "time", "distance_km", "snr", "in_gap"]


@dataclass
class ScenarioSummary:
    """What :func:`generate_scenario` wrote."""

    out: str
    start_time: str
    end_time: str
    n_events: int
    n_events_in_span: int
    n_stations: int
    n_picks: int
    n_pairs_synthesised: int
    n_files: int
    bytes_written: int
    wall_time_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def _day_chunks(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut at UTC midnights."""
    chunks, t = [], start
    while t < end:
        midnight = datetime(t.year, t.month, t.day, tzinfo=UTC) + timedelta(days=1)
        chunks.append((t, min(midnight, end)))
        t = min(midnight, end)
    return chunks


def _write_station_day(
    data: np.ndarray,
    gaps: list[tuple[int, int]],
    start: datetime,
    row,
    cfg: ScenarioConfig,
    root: Path,
) -> list[Path]:
    """Write (3, n) ground velocity of one station as int32 counts, leaving out the gaps."""
    keep = np.ones(data.shape[1], dtype=bool)
    for i0, i1 in gaps:
        keep[i0:i1] = False
    edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.view(np.int8), [0]])))
    counts = np.clip(np.rint(data * cfg.sensitivity), -(2**31) + 1, 2**31 - 1).astype(np.int32)
    stream = Stream()
    for comp, channel in zip(range(3), "ENZ", strict=True):
        for i0, i1 in zip(edges[::2], edges[1::2], strict=True):
            header = {
                "network": row.network,
                "station": row.station,
                "location": row.location,
                "channel": f"{row.channel_prefix}{channel}",
                "sampling_rate": cfg.sampling_rate,
                "starttime": UTCDateTime(start) + i0 / cfg.sampling_rate,
            }
            stream.append(Trace(counts[comp, i0:i1].copy(), header=header))
    return write_channel_day(stream, root, start.date())


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.array([], dtype=dtype)


def _add_segment(data: np.ndarray, carry: np.ndarray, i0: int, v: np.ndarray) -> None:
    """Add segment ``v`` (3, L) starting at sample ``i0`` to ``data`` and its spill to ``carry``."""
    n = data.shape[1]
    a0, a1 = max(i0, 0), min(i0 + v.shape[1], n)
    if a1 > a0:
        data[:, a0:a1] += v[:, a0 - i0 : a1 - i0]
    if i0 + v.shape[1] > n:
        b0 = max(i0, n)
        carry[:, b0 - n : i0 + v.shape[1] - n] += v[:, b0 - i0 :]


def _generate_station(
    s_idx: int,
    row: dict,
    pairs: pd.DataFrame,
    level: float,
    cfg: ScenarioConfig,
    wf_root: Path,
    parts: Path,
) -> dict:
    """Noise + event signals of one station, day by day, written to the SDS archive.

    ``pairs`` holds this station's rows of the pair table (with ``visible``). Returns the
    written paths, the measured SNRs of the synthesised pairs (index, snr_p, snr_s), the
    indexes of the P and S arrivals inside gaps, and the number of pairs synthesised.
    Each finished day leaves a state file in ``parts``; days that have one are loaded.
    """
    fs = cfg.sampling_rate
    row = pd.Series(row)
    mine = pairs[pairs.visible]
    carry = np.zeros((3, 0))
    written, snr_index, snr_p, snr_s, gap_p, gap_s = [], [], [], [], [], []
    n_synth = 0
    for c_idx, (c_start, c_end) in enumerate(_day_chunks(cfg.start_time, cfg.end_time)):
        state_path = parts / f"{row.network}.{row.station}.{c_idx:04d}.npz"
        if state_path.exists():
            with np.load(state_path) as state:
                snr_index.append(state["snr_index"])
                snr_p.append(state["snr_p"])
                snr_s.append(state["snr_s"])
                gap_p.append(state["gap_p"])
                gap_s.append(state["gap_s"])
                carry = state["carry"]
                n_synth += int(state["n_synth"])
                written += [str(p) for p in state["written"]]
            continue
        day_from = (len(snr_index), len(gap_p), len(written), n_synth)
        off = (c_start - cfg.start_time).total_seconds()
        n = int(round((c_end - c_start).total_seconds() * fs))
        rng = np.random.default_rng([cfg.seed, 4, s_idx, c_idx])
        data = station_noise(rng, c_start, n, level, cfg)
        m = min(n, carry.shape[1])
        data[:, :m] += carry[:, :m]
        seg_start = np.rint((mine.p_abs.to_numpy() - LEAD_S - off) * fs).astype(int)
        lo = np.iinfo(np.int64).min if c_idx == 0 else 0
        take = (seg_start >= lo) & (seg_start < n)
        todo = mine[take].assign(i0=seg_start[take])
        spill = max([n, carry.shape[1], *(todo.i0 + todo.n)]) - n
        new_carry = np.zeros((3, spill))
        new_carry[:, : max(carry.shape[1] - m, 0)] += carry[:, m:]
        for length, group in todo.groupby("n"):
            step = max(1, BATCH_SAMPLES // int(length))
            for b0 in range(0, len(group), step):
                batch = group.iloc[b0 : b0 + step]
                vel, p_peak, s_peak = synthesize_pairs(rng, batch, int(length), cfg)
                snr_index.append(batch.index.to_numpy())
                snr_p.append(p_peak / level)
                snr_s.append(s_peak / level)
                for v, i0 in zip(vel, batch.i0.to_numpy(), strict=True):
                    _add_segment(data, new_carry, int(i0), v)
                n_synth += len(batch)
        carry = new_carry
        gaps = gap_intervals(rng, n, cfg)
        for i0, i1 in gaps:
            for phase, hits in (("p_abs", gap_p), ("s_abs", gap_s)):
                t_rel = pairs[phase].to_numpy() - off
                hits.append(pairs.index[(t_rel >= i0 / fs) & (t_rel < i1 / fs)].to_numpy())
        written += [str(p) for p in _write_station_day(data, gaps, c_start, row, cfg, wf_root)]
        _save_state(
            state_path,
            snr_index[day_from[0] :],
            snr_p[day_from[0] :],
            snr_s[day_from[0] :],
            gap_p[day_from[1] :],
            gap_s[day_from[1] :],
            carry,
            n_synth - day_from[3],
            written[day_from[2] :],
        )
        log.debug("synthetic: %s.%s %s written", row.network, row.station, c_start.date())
    log.info(  # one line per station: the only sign of progress in an hour-long generation
        "synthetic: station %s.%s written", row.network, row.station
    )
    return {
        "written": written,
        "snr_index": _concat(snr_index, int),
        "snr_p": _concat(snr_p, float),
        "snr_s": _concat(snr_s, float),
        "gap_p": _concat(gap_p, int),
        "gap_s": _concat(gap_s, int),
        "n_synth": n_synth,
    }


def _save_state(
    path: Path,
    snr_index: list[np.ndarray],
    snr_p: list[np.ndarray],
    snr_s: list[np.ndarray],
    gap_p: list[np.ndarray],
    gap_s: list[np.ndarray],
    carry: np.ndarray,
    n_synth: int,
    written: list[str],
) -> None:
    """Write the state of one finished station-day (arrays :data:`STATE_KEYS`) atomically.

    ``carry`` is the (3, n) signal spilling into the next day; the lists are the day's parts.
    """
    arrays = {
        "snr_index": _concat(snr_index, int),
        "snr_p": _concat(snr_p, float),
        "snr_s": _concat(snr_s, float),
        "gap_p": _concat(gap_p, int),
        "gap_s": _concat(gap_s, int),
        "carry": carry,
        "n_synth": np.array(n_synth),
        "written": np.array(written, dtype=str),
    }
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def _state_digest(cfg: ScenarioConfig, pairs: pd.DataFrame) -> str:
    """Hash of the config and the arrival table: names the folder of the day state files."""
    digest = hashlib.sha256(cfg.model_dump_json().encode())
    digest.update(pd.util.hash_pandas_object(pairs, index=True).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def generate_scenario(
    out: Path, cfg: ScenarioConfig | None = None, workers: int = 1
) -> ScenarioSummary:
    """Generate the scenario ``cfg`` into ``out`` (see the module docstring for the layout).

    The same config (incl. ``seed``) always gives the same truth and the same waveforms,
    whatever ``workers`` (processes generating stations in parallel; 1 = in this process).
    An interrupted run resumes from its last finished station-days when rerun into ``out``.
    """
    cfg = cfg or ScenarioConfig()
    t_start = time.perf_counter()
    out = Path(out)
    wf_root = out / "waveforms"
    catalog = simulate_sequence(cfg)
    stations = scenario_stations(cfg)
    model = load_velocity_model(cfg.velocity_model)
    pairs = arrival_table(catalog, stations, model)
    pairs["magnitude"] = catalog.magnitude.to_numpy()[pairs.event]
    pairs["cell"] = source_cells(catalog, cfg)[pairs.event]
    origin_s = (catalog.origin_time - pd.Timestamp(cfg.start_time)).dt.total_seconds().to_numpy()
    pairs["p_abs"] = origin_s[pairs.event] + pairs.t_p  # s after record start
    pairs["s_abs"] = origin_s[pairs.event] + pairs.t_s
    rng_levels = np.random.default_rng([cfg.seed, 3])
    levels = cfg.noise_velocity_m_s * 10 ** rng_levels.normal(
        0, cfg.noise_station_spread, len(stations)
    )
    station_level = levels[pairs.station]
    predicted = predicted_peak_velocity(pairs.magnitude, pairs.hypo_km, cfg)
    pairs["snr_p"] = predicted * cfg.p_to_s_ratio * 0.65 / station_level
    pairs["snr_s"] = predicted / station_level
    pairs["visible"] = predicted >= INVISIBLE_FRACTION * station_level
    pairs["n"] = segment_samples(
        pairs.magnitude.to_numpy(),
        (pairs.t_s - pairs.t_p).to_numpy(),
        pairs.snr_s.to_numpy(),
        cfg.coda_ratio,
        cfg.sampling_rate,
    )
    pairs["in_gap_p"] = False
    pairs["in_gap_s"] = False
    parts = out / "truth" / "partial" / _state_digest(cfg, pairs)
    parts.mkdir(parents=True, exist_ok=True)

    jobs = [
        (s_idx, row._asdict(), pairs[pairs.station == s_idx], levels[s_idx], cfg, wf_root, parts)
        for s_idx, row in enumerate(stations.itertuples(index=False))
    ]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=quiet_worker) as pool:
            results = list(pool.map(_generate_station, *zip(*jobs, strict=True)))
    else:
        results = [_generate_station(*job) for job in jobs]
    written = [Path(p) for r in results for p in r["written"]]
    n_synth = sum(r["n_synth"] for r in results)
    for r in results:
        pairs.loc[r["snr_index"], "snr_p"] = r["snr_p"]
        pairs.loc[r["snr_index"], "snr_s"] = r["snr_s"]
        pairs.loc[r["gap_p"], "in_gap_p"] = True
        pairs.loc[r["gap_s"], "in_gap_s"] = True

    start_h = cfg.start_time.hour + cfg.start_time.minute / 60 + cfg.start_time.second / 3600
    for phase in ("p", "s"):  # SNR against the noise at the arrival's hour
        hours = start_h + pairs[f"{phase}_abs"].to_numpy() / 3600.0
        pairs[f"snr_{phase}"] /= diurnal_factor_at(hours, cfg)
    written.append(write_inventory(scenario_inventory(stations, cfg), wf_root / "inventory.xml"))
    written.append(write_stations_csv(stations, wf_root / "stations.csv"))
    truth = out / "truth"
    catalog_out = catalog.copy()
    catalog_out["origin_time"] = catalog.origin_time.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    written.append(write_text_atomic(truth / "catalog.csv", catalog_out.to_csv(index=False)))
    picks = _truth_picks(catalog, stations, pairs, cfg)
    written.append(write_text_atomic(truth / "picks.csv", picks.to_csv(index=False)))
    in_span = int(
        (
            (catalog.origin_time >= pd.Timestamp(cfg.start_time))
            & (catalog.origin_time < pd.Timestamp(cfg.end_time))
        ).sum()
    )
    summary = ScenarioSummary(
        out=str(out),
        start_time=cfg.start_time.isoformat(),
        end_time=cfg.end_time.isoformat(),
        n_events=len(catalog),
        n_events_in_span=in_span,
        n_stations=len(stations),
        n_picks=len(picks),
        n_pairs_synthesised=n_synth,
        n_files=len(written) + 1,
        bytes_written=int(sum(p.stat().st_size for p in written)),
        wall_time_s=round(time.perf_counter() - t_start, 3),
    )
    record = {"config": cfg.model_dump(mode="json"), "summary": summary.to_dict()}
    write_text_atomic(truth / "scenario.json", json.dumps(record, indent=2))
    RunDir(out).record_stage(
        "synthetic",
        outputs=["waveforms/", "truth/catalog.csv", "truth/picks.csv", "truth/scenario.json"],
        counts={
            "events": summary.n_events,
            "stations": summary.n_stations,
            "picks": summary.n_picks,
            "files": summary.n_files,
        },
        wall_time_s=summary.wall_time_s,
        details={"config": record["config"]},
    )
    shutil.rmtree(parts.parent)
    return summary


def _truth_picks(
    catalog: pd.DataFrame, stations: pd.DataFrame, pairs: pd.DataFrame, cfg: ScenarioConfig
) -> pd.DataFrame:
    """The true picks table (columns :data:`PICK_COLUMNS`), times as ISO UTC strings."""
    origin = catalog.origin_time.to_numpy()[pairs.event]
    rows = []
    for phase, col, gap, snr in (
        ("P", "t_p", "in_gap_p", "snr_p"),
        ("S", "t_s", "in_gap_s", "snr_s"),
    ):
        when = pd.DatetimeIndex(origin) + pd.to_timedelta(pairs[col].to_numpy(), "s")
        rows.append(
            pd.DataFrame(
                {
                    "event_id": catalog.event_id.to_numpy()[pairs.event],
                    "network": stations.network.to_numpy()[pairs.station],
                    "station": stations.station.to_numpy()[pairs.station],
                    "phase": phase,
                    "time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "distance_km": pairs.distance_km.round(3).to_numpy(),
                    "snr": pairs[snr].round(3).to_numpy(),
                    "in_gap": pairs[gap].to_numpy(),
                }
            )
        )
    picks = pd.concat(rows, ignore_index=True)
    return picks.sort_values(["time", "station", "phase"], kind="stable").reset_index(drop=True)[
        PICK_COLUMNS
    ]
