"""Audit of the cache keys: what every task of a real build reads is in its key.

One real Prefect build of the tiny flow-test scenario (``test_flows``: 6 stations, one UTC
day, STA/LTA, real HypoInverse) runs under :class:`cache_audit.ReadRecorder`, with the files
the config names (velocity models of the build and of the scenario, the scenario's station
list, a reference catalog) files of the test: a user's files are data, not code. Then:

- every data file each task opened, every config field and ``EQCAT_*`` variable it read and
  every program it started is covered by its key (:func:`cache_audit.uncovered`), and every
  config section it read is checked when a later stage runs alone (``config_fields``);
- for each whole-catalog stage, every data file it read, changed one at a time (same size,
  same times), changes its key, and each copied with new times does not; likewise the
  HypoInverse program of the location stage;
- a changed input (the velocity model) reruns the stages that read it and every later one,
  whose results are stale and deleted before the first of them starts; a copy of it with new
  times reruns nothing.

The whole-build version (an SDS archive, EQTransformer, PyOcto): ``benchmarks/cache_audit.py``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from cache_audit import ReadRecorder, by_task, data_reads, uncovered, write_audit_config
from test_flows import N_STATIONS, run_build, state_counts

import flows.build
from flows.build import STAGE_FILES, config_fields, description_key, stage_cache, stage_task
from pipeline.config import BuildConfig, load_config
from pipeline.rundir import MANIFEST_STAGES, STAGE_RESULTS, RunDir

LATER_STAGES = tuple(STAGE_FILES)  # associate ... report


@pytest.fixture(scope="module")
def audited_build(prefect_server, tmp_path_factory):
    """(recorder, config path, run directory) of one audited build."""
    folder = tmp_path_factory.mktemp("audit")
    config = write_audit_config(folder)
    with ReadRecorder() as recorder:
        run_build(str(config))
    return recorder, str(config), folder / "runs" / "flowtest"


def test_every_task_reads_only_what_its_key_covers(audited_build):
    recorder, config, run_root = audited_build
    cfg = load_config(config)
    tasks = by_task(recorder)
    assert set(tasks) == {
        "download_task",
        "pick_station_day_task",
        *(f"stage_task[{s}]" for s in LATER_STAGES),
    }
    for name, runs in tasks.items():
        for task in runs:
            assert data_reads(task) or name == "download_task", f"{name} read no data file"
            gaps = uncovered(task, cfg)
            assert not gaps, f"{name} reads what its cache key does not cover: {gaps}"


def test_every_config_field_a_stage_reads_is_checked_when_a_later_stage_runs_alone(
    audited_build,
):
    """A stage run alone (``--stage``) is refused when the config an earlier one read
    changed (:func:`flows.build.config_fields`, recorded in the manifest): every section a
    task read is among its stage's fields, or the download stage's (the data source)."""
    recorder, config, _ = audited_build
    cfg = load_config(config)
    stage_of = {"download_task": "download", "pick_station_day_task": "pick"}
    stage_of |= {f"stage_task[{s}]": s for s in LATER_STAGES}
    for name, runs in by_task(recorder).items():
        stage = stage_of[name]
        if stage == "report":  # the last stage: no later one to check it
            continue
        checked = {f.split(".")[0] for f in config_fields(cfg, stage)}
        checked |= {f.split(".")[0] for f in config_fields(cfg, "download")}
        checked |= {"name", "output_dir"}  # where the run directory is
        read = {f for task in runs for model, f in task.config if model == "BuildConfig"}
        assert read <= checked, f"{stage} reads config {read - checked} no later stage checks"


def _stage_key(stage: str, cfg: BuildConfig) -> str:
    return description_key(stage_task.name, stage_cache(stage, cfg, RunDir(cfg.run_dir)))


def _flip_last_byte(path: Path) -> None:
    """Change ``path``'s content, keeping its size and times (``cp -p`` of other data)."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # a text file stays text
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_every_file_a_stage_reads_is_in_its_key(audited_build):
    recorder, config, _ = audited_build
    cfg = load_config(config)  # before any change (it validates the velocity model)
    tasks = by_task(recorder)
    changed: set[str] = set()
    for stage in LATER_STAGES:
        (task,) = tasks[f"stage_task[{stage}]"]
        key = _stage_key(stage, cfg)
        for path in sorted(data_reads(task)):
            changed.add(path.name)
            original = path.read_bytes()
            stat = path.stat()
            try:
                _flip_last_byte(path)
                assert _stage_key(stage, cfg) != key, f"{stage}: {path} changed, same key"
                path.unlink()
                path.write_bytes(original)  # a copy with new times and a new inode
            finally:
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            assert path.read_bytes() == original
        assert _stage_key(stage, cfg) == key, f"{stage}: copied inputs changed its key"
    # among them: tables, the velocity model, the inventory, waveform day files, the reference
    assert {"picks.parquet", "model.yaml", "inventory.xml", "reference.csv"} <= changed
    assert any(name.startswith("XX.") for name in changed), changed


def test_a_changed_input_reruns_its_stages_and_marks_later_ones_stale_first(
    audited_build, monkeypatch
):
    _, config, run_root = audited_build
    model = Path(yaml.safe_load(Path(config).read_text())["velocity_model"])
    seen: dict[str, dict] = {}
    real = flows.build._stage_task

    def observed(stage: str, config_path: str) -> dict:
        manifest = RunDir(run_root).read_manifest()
        seen[stage] = {
            "status": {s: manifest.get(s, {}).get("status") for s in MANIFEST_STAGES},
            "results": {rel for rels in STAGE_RESULTS.values() for rel in rels}
            & {str(p.relative_to(run_root)) for p in run_root.rglob("*") if p.is_file()},
        }
        return real(stage, config_path)

    monkeypatch.setattr(flows.build, "_stage_task", observed)
    model.write_text(model.read_text() + "\n# edited\n")  # new bytes, the same model
    _, runs, _ = run_build(config)
    assert state_counts(runs, "download_task") == {"Cached": 1}
    assert state_counts(runs, "pick_station_day_task") == {"Cached": N_STATIONS}
    assert state_counts(runs, "stage_task") == {"Completed": len(LATER_STAGES)}
    first = seen["associate"]
    later = MANIFEST_STAGES[MANIFEST_STAGES.index("location") :]
    assert all(first["status"][s] == "stale" for s in ("association", *later)), first
    assert first["status"]["picks"] == "current"
    assert not {rel for s in later for rel in STAGE_RESULTS[s]} & first["results"]

    seen.clear()
    copy = model.with_name("copy.yaml")
    shutil.copy(model, copy)
    copy.replace(model)  # the same bytes, new times and inode
    _, runs, _ = run_build(config)
    assert state_counts(runs) == {"Cached": len(runs)} and not seen


def test_the_hypoinverse_program_is_in_the_key_of_location(audited_build, tmp_path, monkeypatch):
    recorder, config, _ = audited_build
    (located,) = by_task(recorder)["stage_task[locate]"]
    (program,) = located.programs  # the HypoInverse the stage ran, fingerprinted (no gap)
    copy = tmp_path / "hyp1.40"
    shutil.copy2(program, copy)
    monkeypatch.setenv("EQCAT_HYPOINVERSE", str(copy))
    cfg = load_config(config)
    key = _stage_key("locate", cfg)
    _flip_last_byte(copy)  # another build of the program, the same size and times
    assert _stage_key("locate", cfg) != key
