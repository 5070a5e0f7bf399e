"""Prefect orchestration: cached rebuilds, extension by a day, retries, failures, Dask.

Every build runs a tiny synthetic scenario (6 stations, 40 minutes across midnight, so the
data cover two UTC days) with the STA/LTA picker (EQTransformer for the cached rebuild),
against a temporary Prefect server (``prefect_test_harness``) whose home and result
storage live in a temporary folder.
Which tasks ran and which were served from the cache is read from the task-run states
that the server recorded.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import TaskRun

import flows.build
import flows.caching as caching
import pipeline.picking
from flows.build import build_catalog
from pipeline.picking.stage import PickingError
from pipeline.rundir import RunDir

#: The scenario spans 23:40 – 00:20 UTC: two station-days per station.
SCENARIO_START = "2000-10-10T23:40:00"
MIDNIGHT = "2000-10-11T00:00:00"
SCENARIO_END = "2000-10-11T00:20:00"
N_STATIONS = 6


def write_config(folder: Path, endtime: str, picker: str = "stalta") -> str:
    """A build config of the tiny scenario over ``[SCENARIO_START, endtime)``; its path."""
    name = "flowtest"
    spec = {
        "name": name,
        "starttime": SCENARIO_START,
        "endtime": endtime,
        "velocity_model": "tottori",
        "output_dir": str(folder / "runs"),
        "scenario": {
            "seed": 7,
            "start_time": SCENARIO_START,
            "duration_s": 2400,
            "max_stations": N_STATIONS,
        },
        "picking": {"picker": picker},
        "association": {"associator": "time"},
        "dask": {"local_workers": 2},
    }
    path = folder / f"{name}-{endtime[:10]}-{endtime[11:13]}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def run_build(config_path: str, **kwargs) -> tuple[dict, list[TaskRun], float]:
    """Run ``build_catalog``; return its result, the task runs it made, the wall time (s)."""
    began = time.perf_counter()
    state = build_catalog(config_path, return_state=True, **kwargs)
    wall = time.perf_counter() - began
    assert state.is_completed(), state.message
    return state.result(), task_runs_of(state.state_details.flow_run_id), wall


def task_runs_of(flow_run_id: UUID) -> list[TaskRun]:
    """The stage task runs (download, pick, whole-catalog stages) of a build and its subflows."""
    with get_client(sync_client=True) as client:
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
            )
        )
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(
                flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id, *(f.id for f in subflows)])
            ),
            limit=200,
        )
    names = ("download_task", "pick_station_day_task", "stage_task")
    return [r for r in runs if r.name.rsplit("-", 1)[0] in names]


def state_counts(runs: list[TaskRun], task: str | None = None) -> dict[str, int]:
    """Number of task runs per final state name (``Completed``, ``Cached``, ``Failed``...)."""
    counts: dict[str, int] = {}
    for r in runs:
        if task is None or r.name.rsplit("-", 1)[0] == task:
            counts[r.state.name] = counts.get(r.state.name, 0) + 1
    return counts


def read_picks(run_root: Path) -> pd.DataFrame:
    table = pd.read_parquet(run_root / "picks" / "picks.parquet")
    return table.sort_values("pick_id").reset_index(drop=True)


def test_rebuild_is_cached_and_extension_runs_only_new_station_days(
    prefect_server, tmp_path, monkeypatch
):
    one_day = write_config(tmp_path, MIDNIGHT, picker="eqt")
    first, runs, t_first = run_build(one_day)
    run_root = tmp_path / "runs" / "flowtest"
    assert (run_root / "report" / "index.html").is_file()
    assert first["pick"]["counts"]["station_days"] == N_STATIONS
    assert first["pick"]["counts"]["picks"] > 0
    assert state_counts(runs, "pick_station_day_task") == {"Completed": N_STATIONS}
    assert state_counts(runs, "stage_task") == {"Completed": 5}

    again, runs, t_again = run_build(one_day)
    print(f"first build {t_first:.1f} s, cached rebuild {t_again:.1f} s")
    assert len(runs) == 1 + N_STATIONS + 5
    assert state_counts(runs) == {"Cached": len(runs)}
    assert again["pick"]["counts"] == first["pick"]["counts"]

    # an eqcat whose report code changed (and nothing the other stages import) reruns the
    # report alone: each stage's key holds the code of its own modules
    real_version = caching.code_version

    def report_changed(entries=None, root=caching.PIPELINE_ROOT.parent):
        touched = entries is None or "pipeline.report.html" in caching.module_closure(entries, root)
        return real_version(entries, root) + ("-changed" if touched else "")

    with monkeypatch.context() as patch:
        patch.setattr(caching, "code_version", report_changed)
        _, runs, _ = run_build(one_day)
    assert state_counts(runs, "download_task") == {"Cached": 1}
    assert state_counts(runs, "pick_station_day_task") == {"Cached": N_STATIONS}
    assert state_counts(runs, "stage_task") == {"Cached": 4, "Completed": 1}

    # a station-day file cut on disk (its stamp still matches) and one edited into another
    # valid table are picked again, alone
    day_file, edited = sorted((run_root / "picks").glob("*.2000-*.parquet"))[:2]
    picks_before, whole, edited_whole = (
        read_picks(run_root),
        day_file.read_bytes(),
        edited.read_bytes(),
    )
    day_file.write_bytes(whole[: len(whole) // 2])
    pd.read_parquet(edited).iloc[1:].to_parquet(edited, index=False)
    repaired, runs, _ = run_build(one_day)
    assert state_counts(runs, "pick_station_day_task") == {"Cached": N_STATIONS - 2, "Completed": 2}
    assert day_file.read_bytes() == whole and edited.read_bytes() == edited_whole
    assert read_picks(run_root).equals(picks_before)

    # a deleted output that no later stage reads (the catalog CSV) is written again by its stage
    catalog_csv = run_root / "catalog" / "catalog.csv"
    catalog_text = catalog_csv.read_text()
    catalog_csv.unlink()
    _, runs, _ = run_build(one_day)
    assert state_counts(runs, "stage_task") == {"Cached": 4, "Completed": 1}
    assert catalog_csv.read_text() == catalog_text

    # a whole-stage table cut on disk (the manifest still calls it current) is made again,
    # and the stages after it with it
    table = run_root / "location" / "locations.parquet"
    located = pd.read_parquet(table)
    table.write_bytes(table.read_bytes()[:100])
    _, runs, _ = run_build(one_day)
    assert state_counts(runs, "stage_task") == {"Cached": 1, "Completed": 4}
    assert pd.read_parquet(table).equals(located)

    two_days = write_config(tmp_path, SCENARIO_END, picker="eqt")
    extended, runs, t_ext = run_build(two_days)
    print(f"extended build {t_ext:.1f} s")
    assert state_counts(runs, "download_task") == {"Cached": 1}
    assert state_counts(runs, "pick_station_day_task") == {
        "Cached": N_STATIONS,
        "Completed": N_STATIONS,
    }
    assert state_counts(runs, "stage_task") == {"Completed": 5}  # downstream of the new picks
    assert extended["pick"]["counts"]["station_days"] == 2 * N_STATIONS
    assert extended["pick"]["counts"]["picks"] > first["pick"]["counts"]["picks"]
    assert len(list((run_root / "picks").glob("*.2000-10-11.parquet"))) == N_STATIONS

    # the run directory copied elsewhere (new file times; output_dir changed with it) is
    # not built again: its keys hold paths relative to it and no file times
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "runs", moved / "runs", copy_function=shutil.copy)
    _, runs, _ = run_build(write_config(moved, SCENARIO_END, picker="eqt"))
    assert state_counts(runs) == {"Cached": len(runs)}


def test_retried_station_day_succeeds_and_a_broken_one_is_reported(
    prefect_server, tmp_path, monkeypatch, caplog
):
    config = write_config(tmp_path, MIDNIGHT)
    run_build(config, stage="download")
    run_root = tmp_path / "runs" / "flowtest"
    stations = pd.read_csv(run_root / "waveforms" / "stations.csv")["station"].tolist()
    flaky, broken = stations[0], stations[1]

    real = pipeline.picking.pick_station_day
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def faulty(run_root, network, station, day, *args, **kwargs):
        with lock:
            calls[station] = calls.get(station, 0) + 1
            n = calls[station]
        if station == broken or (station == flaky and n <= 2):
            raise PickingError(f"station-day {network}.{station}.{day}: injected fault {n}")
        return real(run_root, network, station, day, *args, **kwargs)

    monkeypatch.setattr(pipeline.picking, "pick_station_day", faulty)
    # Prefect's real retries of the task (AwaitingRetry, then a new attempt), 0.1 s apart
    # instead of the task's 2 s (a delay of 0 would skip the AwaitingRetry state).
    short_delay = flows.build.pick_station_day_task.with_options(retry_delay_seconds=0.1)
    monkeypatch.setattr(flows.build, "pick_station_day_task", short_delay)
    results, runs, _ = run_build(config)

    assert calls[flaky] == 3  # failed twice, then succeeded on the second retry
    assert calls[broken] == 3  # every attempt failed
    assert state_counts(runs, "pick_station_day_task") == {
        "Completed": N_STATIONS - 1,
        "Failed": 1,
    }
    with get_client(sync_client=True) as client:
        (flaky_run,) = [
            r
            for r in runs
            if r.state.name == "Completed" and r.name.startswith("pick_station_day_task")
            if r.run_count == 3
        ]
        history = [s.name for s in client.read_task_run_states(flaky_run.id)]
    assert history.count("AwaitingRetry") == 2, history
    assert "injected fault 2" in caplog.text and "Retry 2/2" in caplog.text

    (label,) = results["pick"]["failures"]
    assert label.split(".")[1] == broken and label.endswith("2000-10-10")
    failures = RunDir(run_root).read_manifest()["picks"]["details"]["failures"]
    assert list(failures) == [label]
    # the error itself, as the report lists it (was "Task run encountered an exception
    # PickingError: station-day ...", Prefect's wording)
    assert failures[label] == f"station-day {label}: injected fault 3"
    assert results["pick"]["counts"]["failed"] == 1
    picks = pd.read_parquet(run_root / "picks" / "picks.parquet")
    assert flaky in set(picks.station) and broken not in set(picks.station)
    assert (run_root / "report" / "index.html").is_file()  # the build went on to the end
    page = (run_root / "report" / "index.html").read_text()
    assert "Failures and data problems" in page and label in page  # the gap is marked in the report


def test_dask_cluster_gives_the_same_picks_as_the_thread_runner(prefect_server, tmp_path):
    distributed = pytest.importorskip("distributed")
    config = write_config(tmp_path, SCENARIO_END)
    run_build(config, stage="download")
    _, runs, _ = run_build(config, stage="pick")
    assert state_counts(runs, "pick_station_day_task") == {"Completed": 2 * N_STATIONS}
    run_root = tmp_path / "runs" / "flowtest"
    local = read_picks(run_root)
    assert len(local) > 0
    for path in (run_root / "picks").glob("*.parquet"):  # no output: no cache hit
        path.unlink()

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        _, runs, _ = run_build(config, stage="pick", dask_address=cluster.scheduler_address)
    assert state_counts(runs, "pick_station_day_task") == {"Completed": 2 * N_STATIONS}
    pd.testing.assert_frame_equal(read_picks(run_root), local)
