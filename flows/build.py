"""Prefect flows: one per stage, and the parent ``build_catalog`` that runs them in order.

Flows are wiring only: every task calls one function of :mod:`pipeline` that reads and
writes the run directory, and tasks pass paths, config file names and small summaries —
never waveforms. Each task is cached on a key made of its config section, the
fingerprints of its input files and the code version (:mod:`flows.caching`), so a rerun of
a finished build does no work and a build extended by new days only picks the new
station-days (and reruns the stages downstream of picking, whose inputs changed).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from flows.caching import (
    OutputKeys,
    cache_inputs,
    cached,
    description_key,
    file_fingerprint,
    outputs_intact,
    stage_cache_key,
)
from pipeline import progress as user_progress
from pipeline.config import BuildConfig, load_config, write_resolved_config
from pipeline.errors import DataSourceError, is_retryable
from pipeline.rundir import MANIFEST_STAGES, RunDir, StaleStageError, sha256_file, sha256_text
from pipeline.velocity import load_velocity_model

log = logging.getLogger(__name__)

#: Stages in build order (``eqcat build --stage NAME`` / ``--from NAME``).
STAGES = ("download", "pick", "associate", "locate", "relocate", "magnitude", "report")

#: Task time limits (s): a whole download, one station-day of picking, one catalog stage.
DOWNLOAD_TIMEOUT_S = 24 * 3600
STATION_DAY_TIMEOUT_S = 3600
STAGE_TIMEOUT_S = 12 * 3600

CACHED = {"cache_key_fn": stage_cache_key, "persist_result": True}

#: The manifest stages each flow stage writes.
MANIFEST_OF = {
    "download": ("waveforms",),
    "pick": ("picks",),
    "associate": ("association",),
    "locate": ("location",),
    "relocate": ("relocation",),
    "magnitude": ("magnitude",),
    "report": ("catalog", "report"),
}


#: The pipeline modules each stage's task runs (the flow's own calls included): the code part
#: of its cache keys is their source and that of every pipeline module they import
#: (:func:`flows.caching.code_version`), so a change to one stage's code redoes that stage and
#: those after it, not the ones before (a changed report does not re-pick). The config module
#: is not listed: what a task reads of the config enters its key as values. The task's own
#: functions in this module enter the key too (:func:`task_source`).
STAGE_CODE = {
    "download": ("pipeline.synthetic", "pipeline.waveforms", "pipeline.waveforms.download"),
    "pick": ("pipeline.picking.stage", "pipeline.picking.model", "pipeline.waveforms"),
    **{
        stage: (module, "pipeline.velocity", "pipeline.waveforms")
        for stage, module in (
            ("associate", "pipeline.association"),
            ("locate", "pipeline.location"),
            ("relocate", "pipeline.relocation.stage"),
            ("magnitude", "pipeline.magnitude"),
        )
    },
    "report": (
        "pipeline.catalog",
        "pipeline.report.html",
        "pipeline.velocity",
        "pipeline.waveforms",
    ),
}


#: Manifest entries whose recorded outputs a stage owns, where not those of :data:`MANIFEST_OF`
#: (the download stage writes the synthetic scenario's truth tables).
OUTPUT_ENTRIES = {"download": ("waveforms", "synthetic")}


#: The config fields each stage's results depend on besides its input files (dotted: a field
#: of a section), as its cache key covers them; recorded with the stage (:func:`_mark_current`)
#: and compared by :func:`_begin` for the stages before the one that runs. The download
#: stage's depend on the data source (:func:`config_fields`).
CONFIG_OF = {
    # the picked part of each day is the span's; flat traces are skipped by the threshold
    "pick": ("picking", "starttime", "endtime", "waveforms.quality.flat_max_ptp"),
    "associate": ("association", "velocity_model"),
    "locate": ("location", "velocity_model"),
    "relocate": ("relocation", "velocity_model"),
    "magnitude": ("magnitude", "velocity_model"),
}
#: The download stage's config fields: a scenario alone defines its data, whatever the span.
DOWNLOAD_CONFIG = ("stations", "waveforms", "starttime", "endtime")
SCENARIO_CONFIG = ("scenario", "waveforms")


def config_fields(cfg: BuildConfig, stage: str) -> tuple[str, ...]:
    """The config fields ``stage``'s results depend on (:data:`CONFIG_OF`; () for none)."""
    if stage == "download":
        return SCENARIO_CONFIG if cfg.scenario is not None else DOWNLOAD_CONFIG
    return CONFIG_OF.get(stage, ())


def config_digest(cfg: BuildConfig, stage: str) -> str | None:
    """SHA-256 of the config fields :func:`config_fields` names for ``stage`` (None: none)."""
    fields = config_fields(cfg, stage)
    if not fields:
        return None
    include: dict[str, Any] = {}
    for name in fields:
        *parents, leaf = name.split(".")
        node = include
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = True
    dumped = cfg.model_dump(mode="json", include=include)
    return sha256_text(json.dumps(dumped, sort_keys=True, default=str))


def _mark_current(run: RunDir, stage: str, key: str, cfg: BuildConfig) -> None:
    """Record ``stage`` current for ``key`` and the digest of the config it ran with."""
    run.mark_current(MANIFEST_OF[stage], key, config_sha256=config_digest(cfg, stage))


def _config_changed(manifest: dict, earlier: str, cfg: BuildConfig) -> bool:
    """Whether the config's fields of ``earlier`` differ from those it last ran with (False
    when the manifest recorded none: a run of an older eqcat)."""
    recorded = manifest.get(MANIFEST_OF[earlier][0], {}).get("config_sha256")
    return recorded is not None and recorded != config_digest(cfg, earlier)


def _begin(run: RunDir, stage: str, config_path: str, key: str, unchanged: bool) -> bool:
    """Guard a stage: its inputs must be current and as the earlier stages wrote them; if it
    will recompute, mark it and every later stage stale first (their results are deleted).
    Returns whether it is unchanged. Only once the checks pass is ``config.resolved.yaml``
    written (a refused stage leaves the config the run's results were built with).

    Raises:
        StaleStageError: an earlier stage is stale, its config fields (:func:`config_fields`)
            changed since it ran, or one of its outputs was changed or deleted since it
            wrote it (``eqcat build --stage report`` after ``location/locations.parquet``
            went missing would otherwise build a catalog without the HypoInverse origins;
            after ``magnitude`` changed in the config, with the old magnitudes); the message
            names the stage to rebuild from.
    """
    first = MANIFEST_STAGES.index(MANIFEST_OF[stage][0])
    manifest = run.read_manifest()
    cfg = load_config(config_path)
    for earlier in STAGES[: STAGES.index(stage)]:
        hint = f"rebuild from there: eqcat build {config_path} --from {earlier}"
        stale = [m for m in MANIFEST_OF[earlier] if manifest.get(m, {}).get("status") == "stale"]
        if stale and MANIFEST_STAGES.index(stale[0]) < first:
            run.require_current(tuple(stale), hint)
        changed = run.changed_outputs(MANIFEST_OF[earlier])
        if changed:
            raise StaleStageError(
                f"{run.root}: {', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''} "
                f"changed or deleted since stage '{earlier}' wrote it; {hint}"
            )
        if _config_changed(manifest, earlier, cfg):
            raise StaleStageError(
                f"{run.root}: the config's {' / '.join(config_fields(cfg, earlier))} changed since "
                f"stage '{earlier}' ran, and {stage} would use its old results; {hint}"
            )
    write_resolved_config(cfg)
    changed = run.changed_outputs(OUTPUT_ENTRIES.get(stage, MANIFEST_OF[stage]))
    if changed:
        get_run_logger().info(
            "%s reruns: %d of its output files changed or deleted since it wrote them (%s)",
            stage,
            len(changed),
            ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else ""),
        )
    unchanged = unchanged and not changed and run.is_current(MANIFEST_OF[stage], key)
    if not unchanged:
        removed = run.begin_stage(MANIFEST_OF[stage], f"{stage} reran on changed inputs")
        if removed:
            get_run_logger().info(
                "%s reruns: later stages marked stale, %d of their files removed",
                stage,
                len(removed),
            )
    return unchanged


def _worth_retrying(task, task_run, state) -> bool:
    """Retry rule of every task: not for input that cannot heal (:func:`is_retryable`)."""
    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, BaseException) or is_retryable(exc)


RETRY = {"retry_condition_fn": _worth_retrying}


def _failure_message(state) -> str:
    """The error of a failed task's ``state`` as the report lists it: the exception's own
    message, without Prefect's "Task run encountered an exception" prefix and class name."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, BaseException) and str(exc):
        return str(exc)
    return str(state.message or state.name)


def _run(cfg: BuildConfig) -> RunDir:
    return RunDir(cfg.run_dir)


def _artifact(cfg: BuildConfig, stage: str, summary: dict[str, Any]) -> None:
    counts = summary.get("counts", {}) if isinstance(summary, dict) else {}
    rows = [{"quantity": k, "value": v} for k, v in counts.items()]
    rows.append({"quantity": "wall_time_s", "value": summary.get("wall_time_s")})
    key = f"{cfg.name}-{stage}".lower().replace("_", "-").replace(".", "-")
    create_table_artifact(table=rows, key=key, description=f"eqcat {cfg.name}: {stage}")


# --------------------------------------------------------------------------- download


@task(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    timeout_seconds=DOWNLOAD_TIMEOUT_S,
    **CACHED,
    **RETRY,
)
def download_task(config_path: str, cache: dict) -> dict:
    """Fill ``<run>/waveforms`` (FDSN / SDS / Hi-net download, or the synthetic scenario)."""
    cfg = load_config(config_path)
    run = _run(cfg)
    if cfg.scenario is not None:
        from pipeline.synthetic import generate_scenario

        began = time.perf_counter()
        from pipeline.waveforms.download import assess_generated_archive

        summary = generate_scenario(run.root, cfg.scenario, workers=os.cpu_count() or 1)
        start = cfg.scenario.start_time  # the archive's own span: the same for any build span
        end = start + timedelta(seconds=cfg.scenario.duration_s)
        assess_generated_archive(run, cfg.waveforms, start, end)
        return {"counts": {"events": summary.n_events}, "wall_time_s": time.perf_counter() - began}
    from prefect.blocks.system import Secret

    from pipeline.waveforms import download_waveforms

    return download_waveforms(
        run,
        cfg.stations,
        cfg.waveforms,
        cfg.starttime,
        cfg.endtime,
        progress=False,
        secret_loader=lambda name: Secret.load(name).get(),
    )


def _download_inputs(cfg: BuildConfig) -> list[Path]:
    """Local files the download stage reads: a StationXML file, the SDS source's day files."""
    from pipeline.waveforms.params import SDSSource, StationXMLStations
    from pipeline.waveforms.sds import days_in_span

    inputs: list[Path] = []
    if isinstance(cfg.stations, StationXMLStations):
        inputs.append(cfg.stations.path)
    if isinstance(cfg.waveforms.source, SDSSource):
        root = cfg.waveforms.source.path
        for day in days_in_span(cfg.starttime, cfg.endtime):
            doy = day.timetuple().tm_yday
            inputs += sorted(root.glob(f"{day.year:04d}/*/*/*.D/*.{day.year:04d}.{doy:03d}"))
    return inputs


def download_cache(cfg: BuildConfig, run: RunDir) -> dict:
    """The :func:`cache_inputs` description of the download stage: for a scenario its section,
    station list and velocity model (the files it generates the data from); else the station
    and waveform sections, the span and the local files it reads."""
    outputs = [run.root / "waveforms" / name for name in ("stations.csv", "quality.parquet")]
    if cfg.scenario is not None:  # the scenario alone defines the data, whatever the span
        from pipeline.velocity import model_path

        section = {"scenario": cfg.scenario, "quality": cfg.waveforms}
        inputs = [cfg.scenario.stations_csv, model_path(cfg.scenario.velocity_model)]
    else:
        span = [cfg.starttime, cfg.endtime]
        section = {"stations": cfg.stations, "waveforms": cfg.waveforms, "span": span}
        inputs = _download_inputs(cfg)
    return cache_inputs(
        section=section,
        inputs=inputs,
        outputs=outputs,
        extra={"task": task_source("download")},
        root=run.root,
        code=STAGE_CODE["download"],
    )


@flow(name="download")
def download_flow(config_path: str) -> dict:
    """Waveforms and station metadata into the run directory."""
    cfg = load_config(config_path)
    run = _run(cfg)
    cache = download_cache(cfg, run)
    key = description_key(download_task.name, cache)
    from pipeline.waveforms.download import units_to_retry

    retry = units_to_retry(run)  # station-days given up on for a cause that may have passed
    if retry:
        get_run_logger().info(
            "download reruns for %d station-day(s) it gave up on or got incomplete soon after "
            "their end (late data)",
            len(retry),
        )
    unchanged = _begin(run, "download", config_path, key, outputs_intact(cache) and not retry)
    summary = cached(download_task, cache, unchanged)(config_path, cache=cache)
    _mark_current(run, "download", key, cfg)
    _artifact(cfg, "download", summary)
    return summary


# --------------------------------------------------------------------------- picking


#: Held while the model is looked up or loaded: the mapped picking tasks start together on
#: the thread pool, and without it each thread that missed the cache loaded its own copy
#: (the load line printed once per worker thread).
_MODEL_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _load_model(weights: str, hard_sigmoid: str, sha256: str | None):
    from pipeline.picking import load_eqt

    return load_eqt(weights, hard_sigmoid=hard_sigmoid)


def _model(weights: str, hard_sigmoid: str, sha256: str | None = None):
    """The EQTransformer of ``weights``, loaded once per process (whatever the threads) and
    again when the file's content (``sha256``, as in the picking cache key) changed."""
    with _MODEL_LOCK:
        return _load_model(weights, hard_sigmoid, sha256)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=STATION_DAY_TIMEOUT_S, **CACHED, **RETRY)
def pick_station_day_task(
    config_path: str,
    network: str,
    station: str,
    location: str,
    channel_prefix: str,
    day: date,
    cache: dict,
) -> dict:
    """Pick one station-day (EQTransformer or STA/LTA) into its own Parquet table."""
    from pipeline.picking import pick_station_day
    from pipeline.waveforms import waveform_root

    cfg = load_config(config_path)
    run = _run(cfg)
    model = (
        _model(
            str(cfg.picking.weights), cfg.picking.hard_sigmoid, cache["extra"]["weights"]["sha256"]
        )
        if cfg.picking.picker == "eqt"
        else None
    )
    summary = pick_station_day(
        run.root,
        network,
        station,
        day,
        cfg.picking,
        model,
        location=location,
        channel_prefix=channel_prefix,
        sds_root=waveform_root(run, cfg.waveforms),
        flat_max_ptp=cfg.waveforms.quality.flat_max_ptp,
        span=(cfg.starttime, cfg.endtime),
        azimuths=cache["extra"]["azimuths"],
    )
    # relative: a cached result may serve the run directory moved elsewhere (cache_inputs)
    summary["path"] = str(Path(summary["path"]).relative_to(run.root))
    return summary


def _track_progress(futures: list, labels: list[str], description: str, unit: str) -> None:
    """Wait for ``futures``, reporting the finished share in a progress artifact (1 % steps).

    The terminal's progress bar (:mod:`pipeline.progress`) advances by one ``unit`` per
    finished future and names it by its entry of ``labels``.
    """
    progress = create_progress_artifact(0.0, description=description)
    label_of = {id(future): label for future, label in zip(futures, labels, strict=True)}
    user_progress.set_total(len(futures), unit)
    shown = 0
    for done, future in enumerate(as_completed(futures), start=1):
        future.wait()  # keeps the final state on the future (else ``.state`` asks the API)
        user_progress.advance(label_of[id(future)])
        percent = 100 * done // len(futures)
        if percent > shown:
            update_progress_artifact(progress, float(percent))
            shown = percent


#: Keras 3's defaults of the settings in its config file (``keras.config``: ``floatx``,
#: ``epsilon``, ``backend``, ``image_data_format``); Keras writes them into the file when it
#: finds none, so a missing file and a file of defaults are the same setting.
KERAS_DEFAULTS = {
    "floatx": "float32",
    "epsilon": 1e-07,
    "backend": "tensorflow",
    "image_data_format": "channels_last",
}


def keras_settings() -> dict[str, Any]:
    """What Keras reads from the machine when it is imported and that can change the picks:
    the settings of its config file (``$KERAS_HOME/keras.json``, default
    ``~/.keras/keras.json``) over :data:`KERAS_DEFAULTS`, and ``KERAS_BACKEND``."""
    path = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "keras.json"
    settings: dict[str, Any] = dict(KERAS_DEFAULTS)
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
        settings.update({k: found[k] for k in KERAS_DEFAULTS if k in found})
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError):  # unreadable: whatever Keras makes of it
        settings["file"] = file_fingerprint(path)
    return {**settings, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND")}


@flow(name="pick")
def pick_flow(config_path: str) -> dict:
    """Pick every station-day (mapped tasks), merge, record the stage; failures are reported."""
    from pipeline.picking.stage import (
        day_window,
        finish_picking,
        station_azimuths,
        station_day_path,
    )
    from pipeline.waveforms import waveform_root
    from pipeline.waveforms.inventory import read_stations_csv
    from pipeline.waveforms.sds import days_in_span, station_day_files

    logger = get_run_logger()
    began = time.perf_counter()
    cfg = load_config(config_path)
    run = _run(cfg)
    sds_root = waveform_root(run, cfg.waveforms)
    stations = read_stations_csv(run.root / "waveforms" / "stations.csv")
    stations = stations.drop_duplicates(["network", "station"])
    units = [
        (row, day)
        for day in days_in_span(cfg.starttime, cfg.endtime)
        for row in stations.itertuples(index=False)
    ]
    weights = None
    if cfg.picking.picker == "eqt":
        from pipeline.weights import resolve_weights

        path = resolve_weights(cfg.picking.weights)
        if not path.is_file():
            raise FileNotFoundError(f"picking.weights: {path} does not exist")
        weights = {"path": str(path), "sha256": sha256_file(path)}
    caches = [
        cache_inputs(
            section=cfg.picking,
            inputs=station_day_files(
                sds_root, row.network, row.station, row.location, row.channel_prefix, [day]
            ),
            outputs=[station_day_path(run.root, row.network, row.station, day)],
            extra={
                "weights": weights,
                "channels": [row.location, row.channel_prefix],
                "flat_max_ptp": cfg.waveforms.quality.flat_max_ptp,
                # the part of the day picked: a changed span re-picks only the days it changes
                "window": [str(t) for t in day_window(day, (cfg.starttime, cfg.endtime))],
                "task": task_source("pick"),
                "keras": keras_settings() if weights is not None else None,
                # the horizontals' orientation from the station metadata (rotated onto N/E)
                "azimuths": station_azimuths(
                    run.root, row.network, row.station, row.location, row.channel_prefix, day
                ),
            },
            root=run.root,
            code=STAGE_CODE["pick"],
        )
        for row, day in units
    ]
    stamps = OutputKeys(run.root / "picks")
    keys = [description_key(pick_station_day_task.name, c) for c in caches]
    # a station-day file cut, damaged or changed on disk is picked again, whatever its stamp
    changed = {str(run.root / rel) for rel in run.changed_outputs(MANIFEST_OF["pick"])}
    fresh = [
        stamps.matches(c["outputs"][0], k) and outputs_intact(c) and c["outputs"][0] not in changed
        for c, k in zip(caches, keys, strict=True)
    ]
    stage_key = description_key("pick", {"units": keys, "code_modules": STAGE_CODE["pick"]})
    _begin(run, "pick", config_path, stage_key, all(fresh))
    futures = [
        cached(pick_station_day_task, cache, on_disk).submit(
            config_path,
            row.network,
            row.station,
            row.location,
            row.channel_prefix,
            day,
            cache=cache,
        )
        for (row, day), cache, on_disk in zip(units, caches, fresh, strict=True)
    ]
    _track_progress(
        futures,
        [f"{row.network}.{row.station} {day}" for row, day in units],
        f"eqcat {cfg.name}: station-days picked (%)",
        "station-days",
    )
    summaries, failures, written = [], {}, {}
    for (row, day), future, cache, key in zip(units, futures, caches, keys, strict=True):
        state = future.state
        if state.is_completed():
            summaries.append(future.result())
            written[Path(cache["outputs"][0])] = key
        else:
            label = f"{row.network}.{row.station}.{day}"
            failures[label] = _failure_message(state)
            logger.error("station-day %s failed: %s", label, failures[label])
    model_name = "stalta" if cfg.picking.picker == "stalta" else Path(weights["path"]).stem
    stamps.save(written)
    summary = finish_picking(run, cfg.picking, summaries, failures, model_name, len(units), began)
    # A failed station-day leaves the stage to be redone (and its downstream) next time.
    _mark_current(run, "pick", stage_key + (":incomplete" if failures else ""), cfg)
    summary = {
        "counts": summary["counts"],
        "failures": failures,
        "wall_time_s": time.perf_counter() - began,
    }
    _artifact(cfg, "pick", summary)
    return summary


# --------------------------------------------------------------------------- later stages


def _stage_task(stage: str, config_path: str) -> dict:
    """Run one whole-catalog stage function (the body of :func:`stage_task`)."""
    from pipeline.waveforms import waveform_root

    cfg = load_config(config_path)
    run = _run(cfg)
    model = load_velocity_model(cfg.velocity_model)
    if stage == "associate":
        from pipeline.association import associate

        return associate(run, cfg.association, model)
    if stage == "locate":
        from pipeline.location import locate

        return locate(run, cfg.location, model)
    if stage == "relocate":
        from pipeline.relocation.stage import relocate

        return relocate(run, cfg.relocation, model, waveform_root(run, cfg.waveforms))
    if stage == "magnitude":
        from pipeline.magnitude import compute_magnitudes

        return compute_magnitudes(run, cfg.magnitude, waveform_root(run, cfg.waveforms))
    if stage == "report":
        from pipeline.catalog import export_catalog
        from pipeline.report.html import write_report

        exported = export_catalog(run)
        return {**exported, "report": str(write_report(run, cfg.report))}
    raise ValueError(f"unknown stage {stage!r}")


@task(retries=1, retry_delay_seconds=5, timeout_seconds=STAGE_TIMEOUT_S, **CACHED, **RETRY)
def stage_task(stage: str, config_path: str, cache: dict) -> dict:
    """One whole-catalog stage; cached on its section, its input tables and the code."""
    return _stage_task(stage, config_path)


@functools.cache
def task_source(stage: str) -> str:
    """SHA-256 of the source of the functions of this module that ``stage``'s task runs (the
    wiring between the flow and the pipeline; it enters the task's cache key beside the
    pipeline modules of :data:`STAGE_CODE`)."""
    functions = {
        "download": (download_task.fn,),
        "pick": (pick_station_day_task.fn, _model, _load_model.__wrapped__),
    }.get(stage, (stage_task.fn, _stage_task))
    return sha256_text("".join(inspect.getsource(f) for f in functions))


#: For each later stage: its config section, the tables it reads, the tables it writes.
STAGE_FILES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "associate": (
        "association",
        ("picks/picks.parquet", "waveforms/stations.csv"),
        ("association/events.parquet", "association/assignments.parquet"),
    ),
    "locate": (
        "location",
        (
            "association/events.parquet",
            "association/assignments.parquet",
            "picks/picks.parquet",
            "waveforms/stations.csv",
        ),
        ("location/locations.parquet",),
    ),
    "relocate": (
        "relocation",
        (
            "location/locations.parquet",
            "association/assignments.parquet",
            "picks/picks.parquet",
            "waveforms/stations.csv",
        ),
        ("relocation/relocations.parquet",),
    ),
    "magnitude": (
        "magnitude",
        (
            "relocation/relocations.parquet",
            "location/locations.parquet",
            "association/events.parquet",  # the origins of events HypoInverse did not locate
            "association/assignments.parquet",
            "picks/picks.parquet",
            "waveforms/inventory.xml",
        ),
        ("magnitude/magnitudes.parquet",),
    ),
    "report": (
        "report",
        (
            "relocation/relocations.parquet",
            "location/locations.parquet",
            "magnitude/magnitudes.parquet",
            "association/events.parquet",
        ),
        ("catalog/catalog.parquet", "report/index.html"),
    ),
}


#: Tables a stage reads when they exist, beyond those of :data:`STAGE_FILES`.
OPTIONAL_INPUTS: dict[str, tuple[str, ...]] = {
    "relocate": ("location/phase_residuals.parquet",),
    "magnitude": ("waveforms/stations.csv",),
    "report": (
        "association/assignments.parquet",
        "picks/picks.parquet",
        "magnitude/picks.parquet",
        "magnitude/station_magnitudes.parquet",
        "location/arrivals.parquet",
        "location/phases.parquet",
        "location/picks.parquet",
        "location/phase_residuals.parquet",
        "waveforms/stations.csv",
        "waveforms/quality.parquet",
    ),
}
#: Stages that read waveforms again (cross-correlation, amplitudes).
WAVEFORM_STAGES = ("relocate", "magnitude")


def _stage_inputs(stage: str, cfg: BuildConfig, run: RunDir) -> tuple[list[Path], dict]:
    """Every file ``stage`` reads (tables, velocity model, waveform day files, reference
    catalog) and the manifest facts it reports (failed station-days)."""
    from pipeline.velocity import model_path

    _, tables, _ = STAGE_FILES[stage]
    inputs = [run.root / p for p in (*tables, *OPTIONAL_INPUTS.get(stage, ()))]
    inputs.append(model_path(cfg.velocity_model))
    extra: dict[str, Any] = {"task": task_source(stage)}
    if stage in WAVEFORM_STAGES:
        inputs += _waveform_files(cfg, run)
    if stage == "locate":
        from pipeline.location.runner import find_hypoinverse

        inputs.append(find_hypoinverse())  # the program is code too: a rebuilt one may differ
    if stage == "relocate":
        extra["engine"] = _hypodd_engine(cfg)
    if stage == "report":
        from pipeline.report.data_quality import data_gaps, station_notes

        if cfg.report.reference is not None and cfg.report.reference.path is not None:
            inputs.append(cfg.report.reference.path)
        extra["failures"] = data_gaps(run)  # the failed and skipped units the report lists
        extra["station_notes"] = station_notes(run)
    return inputs, extra


def _hypodd_engine(cfg: BuildConfig) -> dict[str, str]:
    """The HypoDD engine a relocation runs (``auto`` picks one): program and fingerprint."""
    from importlib.metadata import version

    from pipeline.relocation.engine import engine_command

    kind, command = engine_command(cfg.relocation)
    if kind == "binary":
        return {"binary": command[0], "fingerprint": file_fingerprint(Path(command[0]))}
    return {"python": f"hypodd {version('hypodd')}"}


def _waveform_files(cfg: BuildConfig, run: RunDir) -> list[Path]:
    """The day files (with neighbouring days) of every station of the build."""
    from pipeline.waveforms import waveform_root
    from pipeline.waveforms.inventory import read_stations_csv
    from pipeline.waveforms.sds import days_in_span, station_day_files

    path = run.root / "waveforms" / "stations.csv"
    if not path.is_file():
        return []
    root = waveform_root(run, cfg.waveforms)
    days = days_in_span(cfg.starttime, cfg.endtime)
    stations = read_stations_csv(path).drop_duplicates(["network", "station"])
    return [
        f
        for r in stations.itertuples(index=False)
        for f in station_day_files(root, r.network, r.station, r.location, r.channel_prefix, days)
    ]


def stage_cache(stage: str, cfg: BuildConfig, run: RunDir) -> dict[str, Any]:
    """The cache description (:func:`cache_inputs`) of a whole-catalog stage: its config
    section and velocity model, every file it reads, its outputs and reported facts."""
    section, _, outputs = STAGE_FILES[stage]
    inputs, extra = _stage_inputs(stage, cfg, run)
    return cache_inputs(
        section={"section": getattr(cfg, section), "velocity_model": cfg.velocity_model},
        inputs=inputs,
        outputs=[run.root / p for p in outputs],
        extra=extra,
        root=run.root,
        code=STAGE_CODE[stage],
    )


def _run_stage(stage: str, config_path: str) -> dict:
    cfg = load_config(config_path)
    run = _run(cfg)
    cache = stage_cache(stage, cfg, run)
    key = description_key(stage_task.name, cache)
    unchanged = _begin(run, stage, config_path, key, outputs_intact(cache))
    summary = cached(stage_task, cache, unchanged)(stage, config_path, cache=cache)
    _mark_current(run, stage, key, cfg)
    _artifact(cfg, stage, summary)
    return summary


@flow(name="associate")
def associate_flow(config_path: str) -> dict:
    """Picks → events (time-based or PyOcto)."""
    return _run_stage("associate", config_path)


@flow(name="locate")
def locate_flow(config_path: str) -> dict:
    """Events → HypoInverse locations."""
    return _run_stage("locate", config_path)


@flow(name="relocate")
def relocate_flow(config_path: str) -> dict:
    """HypoInverse locations → HypoDD relocations (dt.ct + dt.cc)."""
    return _run_stage("relocate", config_path)


@flow(name="magnitude")
def magnitude_flow(config_path: str) -> dict:
    """Local magnitudes from Wood–Anderson amplitudes."""
    return _run_stage("magnitude", config_path)


@flow(name="report")
def report_flow(config_path: str) -> dict:
    """Catalog export (Parquet, CSV, QuakeML) and the HTML report with Mc / b."""
    return _run_stage("report", config_path)


STAGE_FLOWS = {
    "download": download_flow,
    "pick": pick_flow,
    "associate": associate_flow,
    "locate": locate_flow,
    "relocate": relocate_flow,
    "magnitude": magnitude_flow,
    "report": report_flow,
}


def stages_to_run(stage: str | None = None, from_stage: str | None = None) -> list[str]:
    """The stages a build runs: all, one (``stage``) or from one on (``from_stage``)."""
    if stage is not None and from_stage is not None:
        raise ValueError("give --stage (one stage) or --from (a stage and those after), not both")
    for name in (stage, from_stage):
        if name is not None and name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    if stage is not None:
        return [stage]
    start = STAGES.index(from_stage) if from_stage else 0
    return list(STAGES[start:])


@flow(name="build_catalog")
def build_catalog(
    config_path: str,
    stage: str | None = None,
    from_stage: str | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Build a catalog: every stage in order (or one, or from one on), summarised at the end."""
    logger = get_run_logger()
    cfg = load_config(config_path)
    if dask_address or cfg.dask.address:
        check_scheduler(dask_address or cfg.dask.address)
    # one build writes a run directory at a time
    with RunDir(cfg.run_dir).exclusive() as run:
        results: dict[str, Any] = {}
        # Stage flows are subflows of this run, whose heartbeat covers them; their own
        # heartbeat thread would only add ~1 s per stage at exit (it sleeps in 1 s steps).
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            for name in stages_to_run(stage, from_stage):
                began = time.perf_counter()
                stage_flow = STAGE_FLOWS[name]
                if name == "pick":  # the mapped stage runs on the build's runner (Dask or threads)
                    stage_flow = with_runner(stage_flow, cfg, dask_address)
                log.info("stage %s started", name)  # on the terminal too (what Ctrl-C stops)
                with user_progress.stage(f"{cfg.name}: {name}"):
                    results[name] = stage_flow(config_path)
                logger.info("stage %s done in %.1f s", name, time.perf_counter() - began)
        lines = [f"# eqcat build `{cfg.name}`", "", f"Run directory: `{run.root.resolve()}`", ""]
        lines += [f"- **{k}**: {v.get('counts', {})}" for k, v in results.items()]
        report = run.root / "report" / "index.html"
        if report.exists():
            lines += ["", f"Report: `{report.resolve()}`"]
        create_markdown_artifact(
            markdown="\n".join(lines),
            key=f"{cfg.name}-summary".lower().replace("_", "-").replace(".", "-"),
        )
        return results


def check_scheduler(address: str, timeout_s: float = 10.0) -> None:
    """Before any work: a ``tcp://`` / ``tls://`` Dask scheduler address answers.

    An address without a scheme is a ``tcp://`` one, as Dask reads it (``host:8786``;
    ``notanaddress`` used to pass here and start the build, to fail at the first mapped
    stage).

    Raises:
        DataSourceError: naming the address, when nothing listens there or its port is not
            a number (other schemes are left to Dask).
    """
    parsed = urllib.parse.urlsplit(address if "://" in address else f"tcp://{address}")
    if parsed.scheme not in ("tcp", "tls") or not parsed.hostname:
        return
    try:
        port = parsed.port or 8786
    except ValueError:
        raise DataSourceError(
            f"Dask scheduler {address} (--dask or dask.address): the port is not a number"
        ) from None
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise DataSourceError(
            f"Dask scheduler {address} (--dask or dask.address) does not answer: "
            f"{exc.strerror or exc}"
        ) from None


def with_runner(flow_obj, cfg: BuildConfig, dask_address: str | None = None):
    """``flow_obj`` with the build's task runner: Dask when an address is given, else threads."""
    address = dask_address or cfg.dask.address
    if address:
        from prefect_dask import DaskTaskRunner

        return flow_obj.with_options(task_runner=DaskTaskRunner(address=address))
    workers = cfg.dask.local_workers or os.cpu_count() or 1
    return flow_obj.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))
