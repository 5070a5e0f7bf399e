"""The relocation stage: HypoInverse locations + picks (+ waveforms) in, HypoDD relocations out.

Reads ``<run>/location/locations.parquet`` (event_id, origin_time, latitude, longitude,
depth_km, located, rms_s, erh_km, erz_km, …), ``<run>/association/assignments.parquet``
(event_id, pick_id, phase), ``<run>/picks/picks.parquet`` (pick_id, network, station, phase,
time, probability, …), ``<run>/waveforms/stations.csv`` and, for dt.cc, the SDS archive under
``<run>/waveforms``. Writes HypoDD's own files to ``<run>/relocation/`` (station.dat,
phase.dat, event.dat, dt.ct, dt.cc, ph2dt.log, hypoDD.inp, and the engine's outputs), the ID
tables ``event_ids.csv`` (event_id ↔ hypodd_id, 1… in origin-time order) and
``station_labels.csv`` (network, station ↔ HypoDD label), and ``relocations.parquet``
(below).

When ``<run>/location/phase_residuals.parquet`` exists (the location stage writes it), the
picks HypoInverse gave zero weight are left out of phase.dat (``drop_locator_outliers``) and
the P and S residual spreads set the a-priori S weight (``hypodd.s_weight_ratio = "auto"``).

``<run>/relocation/relocations.parquet``, one row per event of locations.parquet:
    event_id, hypodd_id (Int64, <NA> when not passed to HypoDD), origin_time, latitude,
    longitude, depth_km (relocated where ``relocated``, else the HypoInverse values),
    relocated (bool), flag ("relocated" | "not_linked": no differential times |
    "dropped_by_hypodd": linked but not in hypoDD.reloc — outside the clusters or an air quake
    | "hypodd_failed": linked, but the engine failed (time limit, crash; the stage keeps the
    HypoInverse locations and the report names the failure) | "not_located": HypoInverse gave
    no location), cluster_id (Int64), ex_km, ey_km, ez_km
    (HypoDD errors; LSQR's are known to be too small), rms_ct_s, rms_cc_s, n_ct_p, n_ct_s,
    n_cc_p, n_cc_s, and start_origin_time, start_latitude, start_longitude, start_depth_km
    (the HypoInverse location).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import EqcatInputError
from pipeline.relocation import hypodd_formats as fmt
from pipeline.relocation.engine import HypoDDError, HypoDDInputError, run_engine
from pipeline.relocation.params import HypoDDConfig, RelocationConfig
from pipeline.relocation.ph2dt import KM_PER_DEG, Ph2dtStats, catalog_differential_times, format_log
from pipeline.relocation.xcorr import StationInfo, cross_correlation_times
from pipeline.rundir import (
    RunDir,
    read_run_table,
    sha256_file,
    write_parquet_atomic,
    write_text_atomic,
)
from pipeline.velocity import VelocityModel
from pipeline.waveforms.inventory import read_stations_csv

log = logging.getLogger(__name__)

#: The label of an engine failure in the stage's ``details["failures"]`` (report, terminal).
ENGINE_FAILURE = "HypoDD (every linked event)"

LOCATION_COLUMNS = ["event_id", "origin_time", "latitude", "longitude", "depth_km"]
ASSIGNMENT_COLUMNS = ["event_id", "pick_id"]
PICK_COLUMNS = ["pick_id", "network", "station", "phase", "time", "probability"]
RESIDUALS = "location/phase_residuals.parquet"
#: Bounds of the automatic S / P weight ratio: S never weighs more than P a priori, and no
#: less than half of it (HypoDD example 1's ratio).
S_WEIGHT_RATIO_BOUNDS = (0.5, 1.0)


class RelocationInputError(EqcatInputError):
    """An input table the relocation stage cannot use; the message names file and field."""


def _require(table: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise RelocationInputError(f"{path}: missing column(s) {', '.join(missing)}")


def _read_parquet(path: Path, columns: list[str], writer: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (written by the {writer} stage)")
    table = read_run_table(path)
    _require(table, columns, path)
    return table


def station_labels(stations: pd.DataFrame) -> pd.DataFrame:
    """HypoDD labels (<= 7 characters, unique) for the (network, station) rows of ``stations``.

    The station code when it is unique across networks, else network + station, else
    ``S0001``… Returns columns network, station, label.
    """
    table = stations[["network", "station"]].drop_duplicates().reset_index(drop=True)
    dup = table["station"].duplicated(keep=False)
    label = table["station"].where(~dup, table["network"] + table["station"])
    bad = (label.str.len() > fmt.MAX_LABEL) | label.duplicated(keep=False)
    label = label.where(~bad, [f"S{i:04d}" for i in range(1, len(table) + 1)])
    return table.assign(label=label)


def _events(locations: pd.DataFrame) -> pd.DataFrame:
    """Located events in origin-time order with HypoDD IDs and 0.01-s origin times (the
    precision of event.dat); depths above sea level enter HypoDD at 0 km."""
    ok = locations[["latitude", "longitude", "depth_km"]].notna().all(axis=1)
    if "located" in locations.columns:
        ok &= locations["located"].fillna(False).astype(bool)
    events = locations[ok].sort_values("origin_time", kind="stable").reset_index(drop=True)
    origin = pd.to_datetime(events["origin_time"], utc=True).dt.round("10ms")
    out = pd.DataFrame(
        {
            "event_id": events["event_id"].astype(str),
            "hypodd_id": np.arange(1, len(events) + 1, dtype=np.int64),
            "origin_time": origin,
            "latitude": events["latitude"].astype(float),
            "longitude": events["longitude"].astype(float),
            "depth_km": events["depth_km"].astype(float).clip(lower=0.0),
        }
    )
    for column in ("magnitude", "erh_km", "erz_km", "rms_s"):
        values = events[column] if column in events.columns else pd.Series(0.0, index=events.index)
        out[column] = pd.to_numeric(values, errors="coerce").fillna(0.0).astype(float)
    return out


def _phases(
    events: pd.DataFrame,
    assignments: pd.DataFrame,
    picks: pd.DataFrame,
    labels: pd.DataFrame,
    cfg: RelocationConfig,
) -> pd.DataFrame:
    """Assigned picks of the events: hypodd_id, station (label), phase, time,
    travel_time_s, weight; one per event, station and phase (the most probable)."""
    pick_cols = ["pick_id", "network", "station", "time", "probability"]
    table = assignments[["event_id", "pick_id"]].merge(events, on="event_id", how="inner")
    table = table.merge(picks[pick_cols + ["phase"]], on="pick_id", how="inner")
    if "phase" in assignments.columns:  # the association's phase wins
        table["phase"] = table["pick_id"].map(assignments.set_index("pick_id")["phase"])
    table = table.merge(labels, on=["network", "station"], how="left")
    unknown = table["label"].isna()
    if unknown.any():
        names = sorted(set(table.loc[unknown, "network"] + "." + table.loc[unknown, "station"]))
        log.warning("relocation: picks at stations missing from stations.csv skipped: %s", names)
        table = table[~unknown]
    time_utc = pd.to_datetime(table["time"], utc=True)
    if cfg.weight_from == "probability":
        weight = table["probability"].astype(float).clip(0.01, 1.0).round(3)
    else:
        weight = pd.Series(1.0, index=table.index)
    out = pd.DataFrame(
        {
            "hypodd_id": table["hypodd_id"].to_numpy(),
            "station": table["label"].to_numpy(),
            "phase": table["phase"].astype(str).str.upper().to_numpy(),
            "time": time_utc.to_numpy(),
            "travel_time_s": ((time_utc - table["origin_time"]).dt.total_seconds()).to_numpy(),
            "weight": weight.to_numpy(),
        }
    )
    out = out[out["phase"].isin(["P", "S"])]
    out = out.sort_values(["hypodd_id", "weight"], ascending=[True, False], kind="stable")
    out = out.drop_duplicates(["hypodd_id", "station", "phase"]).reset_index(drop=True)
    out["time"] = pd.to_datetime(out["time"], utc=True)
    return out


def _join(
    locations: pd.DataFrame,
    events: pd.DataFrame,
    reloc: pd.DataFrame,
    linked: set[int],
    engine_failed: bool = False,
) -> pd.DataFrame:
    """relocations.parquet (module docstring) from the inputs and hypoDD.reloc (empty when
    the engine failed: ``engine_failed``)."""
    base = locations.copy()
    base["event_id"] = base["event_id"].astype(str)
    base = base.merge(events[["event_id", "hypodd_id"]], on="event_id", how="left")
    base["hypodd_id"] = base["hypodd_id"].astype("Int64")
    r = reloc.rename(columns={c: f"r_{c}" for c in reloc.columns if c != "hypodd_id"})
    r["hypodd_id"] = r["hypodd_id"].astype("Int64")
    table = base.merge(r, on="hypodd_id", how="left")
    relocated = table["r_latitude"].notna()
    flag = np.where(
        relocated,
        "relocated",
        np.where(
            table["hypodd_id"].isna(),
            "not_located",
            np.where(
                table["hypodd_id"].isin(list(linked)),
                "hypodd_failed" if engine_failed else "dropped_by_hypodd",
                "not_linked",
            ),
        ),
    )
    start_time = pd.to_datetime(table["origin_time"], utc=True)
    out = pd.DataFrame(
        {
            "event_id": table["event_id"],
            "hypodd_id": table["hypodd_id"],
            "origin_time": start_time.where(~relocated, table["r_origin_time"]),
            "latitude": table["latitude"].where(~relocated, table["r_latitude"]).astype(float),
            "longitude": table["longitude"].where(~relocated, table["r_longitude"]).astype(float),
            "depth_km": table["depth_km"].where(~relocated, table["r_depth_km"]).astype(float),
            "relocated": relocated.to_numpy(),
            "flag": flag,
            "cluster_id": table["r_cluster_id"].astype("Int64"),
            "ex_km": table["r_ex_m"] / 1000.0,
            "ey_km": table["r_ey_m"] / 1000.0,
            "ez_km": table["r_ez_m"] / 1000.0,
            "rms_ct_s": table["r_rms_ct_s"],
            "rms_cc_s": table["r_rms_cc_s"],
        }
    )
    for column in ("n_ct_p", "n_ct_s", "n_cc_p", "n_cc_s"):
        out[column] = table[f"r_{column}"].astype("Int64")
    out["start_origin_time"] = start_time
    out["start_latitude"] = table["latitude"].astype(float)
    out["start_longitude"] = table["longitude"].astype(float)
    out["start_depth_km"] = table["depth_km"].astype(float)
    out["origin_time"] = pd.to_datetime(out["origin_time"], utc=True)
    return out


def locator_outliers(residuals: pd.DataFrame | None) -> set[str]:
    """pick_ids HypoInverse kept in its output with zero weight (rejected as outliers)."""
    if residuals is None or residuals.empty:
        return set()
    return set(residuals.loc[residuals["weight"] <= 0, "pick_id"].astype(str))


def s_weight_ratio(residuals: pd.DataFrame | None) -> float | None:
    """A-priori S / P weight from HypoInverse residuals: median |residual| of the weighted P
    picks over that of the weighted S picks, clipped to :data:`S_WEIGHT_RATIO_BOUNDS`; None
    without at least 10 weighted picks of each phase."""
    if residuals is None:
        return None
    used = residuals[residuals["weight"] > 0]
    spread = {phase: used.loc[used["phase"] == phase, "residual_s"].abs() for phase in ("P", "S")}
    if min(len(v) for v in spread.values()) < 10 or spread["S"].median() <= 0:
        return None
    ratio = float(spread["P"].median() / spread["S"].median())
    return float(np.clip(ratio, *S_WEIGHT_RATIO_BOUNDS))


def with_s_weight_ratio(cfg: HypoDDConfig, ratio: float | None) -> HypoDDConfig:
    """``cfg`` with WTCTS = ratio x WTCTP and WTCCS = ratio x WTCCP in every set (``cfg``
    itself when ``ratio`` is None)."""
    if ratio is None:
        return cfg
    sets = [
        it.model_copy(update={"wtcts": ratio * it.wtctp, "wtccs": ratio * it.wtccp})
        for it in cfg.iterations
    ]
    return cfg.model_copy(update={"iterations": sets})


@dataclass
class PreparedInputs:
    """HypoDD inputs written to ``<run>/relocation`` by :func:`prepare_inputs`."""

    folder: Path
    input_hashes: dict[str, str]  # run-relative input path -> sha256
    locations: pd.DataFrame  # locations.parquet as read
    events: pd.DataFrame  # events table (hypodd_formats) with event_id
    dt_ct: pd.DataFrame
    dt_cc: pd.DataFrame
    ph2dt: Ph2dtStats
    written: list[Path]
    timings_s: dict[str, float] = field(default_factory=dict)
    locator_outliers_dropped: int = 0
    s_weight_ratio: float | None = None  # the S / P weight written (None: the sets' own)


def prepare_inputs(
    run: RunDir, cfg: RelocationConfig, model: VelocityModel, sds_root: Path | None = None
) -> PreparedInputs:
    """Read the earlier stages' tables and write every HypoDD input (station.dat, phase.dat,
    event.dat, dt.ct, ph2dt.log, dt.cc, hypoDD.inp) and the ID tables; the engine does not
    run. ``sds_root``: the waveform archive for dt.cc (None: ``<run>/waveforms``)."""
    paths = {
        "location/locations.parquet": run.root / "location" / "locations.parquet",
        "association/assignments.parquet": run.root / "association" / "assignments.parquet",
        "picks/picks.parquet": run.root / "picks" / "picks.parquet",
        "waveforms/stations.csv": run.root / "waveforms" / "stations.csv",
    }
    locations = _read_parquet(paths["location/locations.parquet"], LOCATION_COLUMNS, "location")
    assignments = _read_parquet(
        paths["association/assignments.parquet"], ASSIGNMENT_COLUMNS, "association"
    )
    picks = _read_parquet(paths["picks/picks.parquet"], PICK_COLUMNS, "picking")
    if not paths["waveforms/stations.csv"].is_file():
        raise FileNotFoundError(f"{paths['waveforms/stations.csv']} not found (waveform stage)")
    stations = read_stations_csv(paths["waveforms/stations.csv"])
    residuals = None
    if (run.root / RESIDUALS).is_file():
        paths[RESIDUALS] = run.root / RESIDUALS
        residuals = _read_parquet(paths[RESIDUALS], ["pick_id", "phase", "residual_s", "weight"],
                                  "location")  # fmt: skip
    n_dropped = 0
    if cfg.drop_locator_outliers:
        keep = ~assignments["pick_id"].astype(str).isin(locator_outliers(residuals))
        n_dropped = int((~keep).sum())
        log.info("relocation: %d picks HypoInverse rejected left out", n_dropped)
        assignments = assignments[keep]
    ratio = cfg.hypodd.s_weight_ratio
    if ratio == "auto":
        ratio = s_weight_ratio(residuals)
    hypodd_cfg = with_s_weight_ratio(cfg.hypodd, ratio)
    out = run.stage_dir("relocation")
    timings: dict[str, float] = {}

    labels = station_labels(stations)
    first = stations.drop_duplicates(["network", "station"])
    sta = first.merge(labels, on=["network", "station"])
    events = _events(locations)
    phases = _phases(events, assignments, picks, labels, cfg)
    written = [
        fmt.write_station_dat(
            out / "station.dat", sta.rename(columns={"station": "code", "label": "station"})
        ),
        fmt.write_phase_dat(out / "phase.dat", events, phases),
        fmt.write_event_dat(out / "event.dat", events),
        _write_csv(out / "event_ids.csv", events[["event_id", "hypodd_id"]]),
        _write_csv(out / "station_labels.csv", labels),
    ]

    t = time.perf_counter()
    station_table = sta[["label", "latitude", "longitude"]].rename(columns={"label": "station"})
    dt_ct, stats = catalog_differential_times(events, phases, station_table, cfg.ph2dt)
    written.append(fmt.write_dt_ct(out / "dt.ct", dt_ct))
    written.append(write_text_atomic(out / "ph2dt.log", format_log(stats, cfg.ph2dt)))
    timings["dt_ct_s"] = round(time.perf_counter() - t, 3)

    t = time.perf_counter()
    dt_cc = _cross_correlate(run, cfg, events, phases, sta, dt_ct, sds_root)
    written.append(fmt.write_dt_cc(out / "dt.cc", dt_cc))
    timings["dt_cc_s"] = round(time.perf_counter() - t, 3)

    inp = fmt.render_hypodd_inp(hypodd_cfg, model, n_events=len(events), has_cc=not dt_cc.empty)
    written.append(write_text_atomic(out / "hypoDD.inp", inp))
    hashes = {k: sha256_file(p) for k, p in paths.items()}
    return PreparedInputs(
        out, hashes, locations, events, dt_ct, dt_cc, stats, written, timings,
        locator_outliers_dropped=n_dropped, s_weight_ratio=ratio,
    )  # fmt: skip


def relocate(
    run: RunDir, cfg: RelocationConfig, model: VelocityModel, sds_root: Path | None = None
) -> dict:
    """The stage: write HypoDD inputs, compute dt.ct and dt.cc, run HypoDD, join results.

    ``sds_root`` is the waveform archive for cross-correlation (None: ``<run>/waveforms``;
    a build with a local SDS source passes that archive).

    Returns:
        The manifest entry of the stage; its ``counts`` hold events, linked, relocated,
        not_linked, dropped_by_hypodd, hypodd_failed, not_located, dt_ct_p, dt_ct_s, dt_cc_p,
        dt_cc_s, locator_outliers_dropped; its ``details["failures"]`` names an engine failure
        (time limit, crash), after which the HypoInverse locations are kept (an input error
        still raises).
    """
    started = time.perf_counter()
    prep = prepare_inputs(run, cfg, model, sds_root)
    dt_ct, dt_cc, written = prep.dt_ct, prep.dt_cc, prep.written
    linked = set(dt_ct["id1"]) | set(dt_ct["id2"]) | set(dt_cc["id1"]) | set(dt_cc["id2"])
    engine = None
    failures: dict[str, str] = {}
    reloc = fmt.empty_reloc()
    if dt_ct.empty:
        log.warning("relocation: no linked event pairs; HypoDD not run, locations kept")
    else:
        t = time.perf_counter()
        try:
            run_record = run_engine(prep.folder, cfg)
        except HypoDDInputError:
            raise
        except HypoDDError as exc:  # the same inputs fail again: keep the catalog, say why
            failures[ENGINE_FAILURE] = f"{exc}; HypoInverse locations kept"
            log.warning("relocation: %s", failures[ENGINE_FAILURE])
        else:
            engine = run_record.engine
            loc_name = fmt.read_inp_files(prep.folder / "hypoDD.inp")["fn_loc"]
            reloc = fmt.realign_origin_times(
                fmt.read_reloc(run_record.reloc_path), fmt.read_loc(prep.folder / loc_name)
            )
            written.append(run_record.reloc_path)
        prep.timings_s["engine_s"] = round(time.perf_counter() - t, 3)

    table = _join(prep.locations, prep.events, reloc, {int(i) for i in linked}, bool(failures))
    written.append(write_parquet_atomic(table, prep.folder / "relocations.parquet"))
    flags = table["flag"].value_counts()
    counts = {
        "events": len(table),
        "linked": len(linked),
        "relocated": int(flags.get("relocated", 0)),
        "not_linked": int(flags.get("not_linked", 0)),
        "dropped_by_hypodd": int(flags.get("dropped_by_hypodd", 0)),
        "hypodd_failed": int(flags.get("hypodd_failed", 0)),
        "not_located": int(flags.get("not_located", 0)),
        "dt_ct_p": int((dt_ct["phase"] == "P").sum()),
        "dt_ct_s": int((dt_ct["phase"] == "S").sum()),
        "dt_cc_p": int((dt_cc["phase"] == "P").sum()),
        "dt_cc_s": int((dt_cc["phase"] == "S").sum()),
        "locator_outliers_dropped": prep.locator_outliers_dropped,
    }
    log.info(
        "relocation: %d of %d events relocated (%d linked, %d not linked, %d dropped by "
        "HypoDD, %d not located); differential times: catalog %d P / %d S, "
        "cross-correlation %d P / %d S",
        counts["relocated"],
        counts["events"],
        counts["linked"],
        counts["not_linked"],
        counts["dropped_by_hypodd"],
        counts["not_located"],
        counts["dt_ct_p"],
        counts["dt_ct_s"],
        counts["dt_cc_p"],
        counts["dt_cc_s"],
    )
    return run.record_stage(
        "relocation",
        inputs=prep.input_hashes,
        outputs=sorted({str(Path(p).relative_to(run.root)) for p in written}),
        counts=counts,
        wall_time_s=round(time.perf_counter() - started, 3),
        details={
            "engine": engine,
            "failures": failures,
            "timings_s": prep.timings_s,
            "ph2dt": prep.ph2dt.as_dict(),
            "s_weight_ratio": prep.s_weight_ratio,
            "velocity_model": model.name,
            "config": cfg.model_dump(mode="json"),
        },
    )


def _write_csv(path: Path, table: pd.DataFrame) -> Path:
    write_text_atomic(path, table.to_csv(index=False))
    return path


def _separation_km(events: pd.DataFrame, id1: np.ndarray, id2: np.ndarray) -> np.ndarray:
    """Hypocentral separation (km, flat-earth) of event pairs (hypodd_id arrays, same shape)."""
    pos = events.set_index("hypodd_id")[["latitude", "longitude", "depth_km"]]
    a, b = pos.loc[id1].to_numpy(), pos.loc[id2].to_numpy()
    kx = KM_PER_DEG * np.cos(np.radians(0.5 * (a[:, 0] + b[:, 0])))
    dy, dx, dz = (a[:, 0] - b[:, 0]) * KM_PER_DEG, (a[:, 1] - b[:, 1]) * kx, a[:, 2] - b[:, 2]
    return np.sqrt(dx**2 + dy**2 + dz**2)


def _rate(row) -> float | None:
    """The station's sampling rate (Hz) from its stations.csv row; None when absent or not > 0."""
    rate = pd.to_numeric(getattr(row, "sampling_rate", None), errors="coerce")
    return float(rate) if pd.notna(rate) and rate > 0 else None


def _cross_correlate(
    run: RunDir,
    cfg: RelocationConfig,
    events: pd.DataFrame,
    phases: pd.DataFrame,
    sta: pd.DataFrame,
    dt_ct: pd.DataFrame,
    sds_root: Path | None = None,
) -> pd.DataFrame:
    """dt.cc table for the pairs of dt.ct, plus all close pairs when configured (empty when
    disabled or nothing correlates)."""
    cc_cfg = cfg.cross_correlation
    pairs = dt_ct[["id1", "id2"]].drop_duplicates()
    if not cc_cfg.enabled or pairs.empty:
        return fmt.empty_dt_cc()
    if cc_cfg.all_pairs_within_km is not None:
        ids = events["hypodd_id"].to_numpy()
        i, j = np.triu_indices(len(ids), 1)
        close = _separation_km(events, ids[i], ids[j]) <= cc_cfg.all_pairs_within_km
        extra = pd.DataFrame({"id1": ids[i][close], "id2": ids[j][close]})
        pairs = pd.concat([pairs, extra], ignore_index=True).drop_duplicates()
    if cc_cfg.max_sep_km is not None:
        sep = _separation_km(events, pairs["id1"].to_numpy(), pairs["id2"].to_numpy())
        pairs = pairs[sep <= cc_cfg.max_sep_km]
    infos = [
        StationInfo(r.label, r.network, r.station, r.location, r.channel_prefix, _rate(r))
        for r in sta.itertuples(index=False)
    ]
    origins = events.set_index("hypodd_id")["origin_time"]
    archive = sds_root or run.root / "waveforms"
    return cross_correlation_times(pairs, phases, origins, infos, archive, cc_cfg)
