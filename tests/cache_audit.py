"""What each task of a build reads, against what its cache key covers.

:class:`ReadRecorder` records, during a real ``build_catalog`` run, per Prefect task run:

- every file opened for reading or writing and every folder listed (Python audit hook,
  events ``open``, ``os.listdir``, ``os.scandir``), and every program started
  (``subprocess.Popen``);
- every environment variable read (``os.environ``);
- every field of eqcat's config models read (``__getattribute__`` of the pydantic models of
  :mod:`pipeline`), after the task loaded its config (validation reads are not counted);

with the ``cache`` description the task was called with (:func:`flows.caching.cache_inputs`).
Threads that the pipeline starts inside a task (``ThreadPoolExecutor``) are attributed to
the task. :func:`uncovered` then lists what a task read that its key does not cover: data
files neither fingerprinted (``inputs``), named in ``extra`` nor written by the task itself;
config fields outside the keyed sections; environment variables that may change results.
Files read by programs the task starts (HypoInverse, HypoDD) are not seen; the programs
themselves are.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import os
import shutil
import site
import sys
import sysconfig
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from test_flows import MIDNIGHT, write_config

import flows.build
from flows.caching import PIPELINE_ROOT
from pipeline.synthetic.params import ScenarioConfig
from pipeline.velocity import model_path

#: HypoInverse / HypoDD templates and shipped velocity models: in every key's code part.
TEMPLATES_ROOT = PIPELINE_ROOT.parent / "hypo_templates"

#: Environment variables that select where a program or a file is found (the file or program
#: itself is checked), how much is logged or where Prefect and caches live: never a result.
NEUTRAL_ENV = {
    "EQCAT_HYPOINVERSE",  # the binary it names is fingerprinted (an input of locate)
    "EQCAT_WEIGHTS",  # the weights file it names is hashed (extra of picking)
    "EQCAT_MODEL_DIR",
    "EQCAT_SHARED",
    "EQCAT_CACHE_DIR",
    "TF_CPP_MIN_LOG_LEVEL",
}


@dataclass
class TaskReads:
    """What one task run read and wrote (absolute resolved paths)."""

    task: str
    description: dict[str, Any]
    config_path: str
    read: set[Path] = field(default_factory=set)
    written: set[Path] = field(default_factory=set)
    listed: set[Path] = field(default_factory=set)
    programs: set[str] = field(default_factory=set)
    env: set[str] = field(default_factory=set)
    config: set[tuple[str, str]] = field(default_factory=set)
    #: for each file read: the functions of :mod:`pipeline` that read it (``_pipeline_caller``)
    readers: dict[Path, set[str]] = field(default_factory=dict)
    #: wall-clock time (s) of the task's first and last recorded event
    began: float = float("inf")
    ended: float = 0.0

    def written_during(self, path: Path) -> bool:
        """Whether ``path`` was written while the task ran (by it or a program it started;
        files that a program writes are not seen by the audit hook)."""
        try:
            return self.began <= path.stat().st_mtime <= self.ended + 1.0
        except OSError:
            return False


def _code_roots() -> list[Path]:
    """Folders whose files are code or the interpreter's environment (not data)."""
    roots = [PIPELINE_ROOT, TEMPLATES_ROOT, Path(sys.prefix), Path(sys.base_prefix)]
    # eqcat's own package metadata (an editable install's ``eqcat.egg-info`` beside the
    # sources): its version is read by ``software_versions``, which every code hash holds
    roots.append(PIPELINE_ROOT.parent / "eqcat.egg-info")
    roots += [Path(p) for p in site.getsitepackages() + [site.getusersitepackages()]]
    roots += [Path(sysconfig.get_paths()["stdlib"])]
    roots += [Path(p) for p in ("/usr", "/etc", "/proc", "/sys", "/dev", "/lib", "/opt")]
    roots += [Path.home() / ".cache" / "matplotlib", Path.home() / ".config" / "matplotlib"]
    # Keras' settings file (backend, float type), read once when TensorFlow is imported: its
    # settings enter the picking key as values (flows.build.keras_settings), not as a file
    roots.append(Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")))
    if os.environ.get("PREFECT_HOME"):
        roots.append(Path(os.environ["PREFECT_HOME"]))
    return [r.resolve() for r in roots]


def _resolved(path: Any) -> Path | None:
    """``path`` (str, bytes or PathLike; an fd is None) as an absolute resolved Path."""
    if isinstance(path, int):
        return None
    try:
        return Path(os.fsdecode(path)).resolve()
    except (TypeError, ValueError, OSError):
        return None


#: Functions of :mod:`pipeline.rundir` that read a file for their caller: the caller is named.
READ_HELPERS = {"read_json_object", "read_manifest", "read_run_table", "sha256_file"}


def _pipeline_caller() -> str:
    """``module.qualname`` of the innermost function of :mod:`pipeline` that opens a file,
    past the read helpers (:data:`READ_HELPERS`); "" when none (flows or libraries only)."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("pipeline.") and frame.f_code.co_name not in READ_HELPERS:
            return f"{module}.{frame.f_code.co_qualname}"
        frame = frame.f_back
    return ""


def _reads(mode: Any, flags: Any) -> bool:
    """Whether an ``open`` audit event opens for reading only."""
    if isinstance(mode, str):
        return not any(c in mode for c in "wax+")
    return isinstance(flags, int) and flags & os.O_ACCMODE == os.O_RDONLY


class ReadRecorder:
    """Records what each task run reads (see the module docstring); a context manager."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskReads] = {}
        self._current: contextvars.ContextVar[TaskReads | None] = contextvars.ContextVar(
            "audited_task", default=None
        )
        self._busy = threading.local()
        self._active = False
        self._patches: list[tuple[Any, str, Any]] = []

    # ------------------------------------------------------------------ attribution

    def _task(self) -> TaskReads | None:
        """The task run the calling code belongs to (None: flow code or other)."""
        recorded = self._current.get()
        if recorded is not None:
            return recorded
        from prefect.context import TaskRunContext

        ctx = TaskRunContext.get()
        if ctx is None or "cache" not in ctx.parameters:
            return None
        run_id = str(ctx.task_run.id)
        if run_id not in self.tasks:
            name = ctx.task.name
            if name == "stage_task":
                name = f"stage_task[{ctx.parameters['stage']}]"
            self.tasks[run_id] = TaskReads(
                name, ctx.parameters["cache"], str(ctx.parameters["config_path"])
            )
        return self.tasks[run_id]

    def _hook(self, event: str, args: tuple) -> None:
        if not self._active or event not in (
            "open",
            "os.listdir",
            "os.scandir",
            "subprocess.Popen",
            "os.rename",
            "shutil.copyfile",
        ):
            return
        if getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            task = self._task()
            if task is None:
                return
            now = time.time()
            task.began, task.ended = min(task.began, now), max(task.ended, now)
            if event == "subprocess.Popen":
                task.programs.add(str(args[1][0]) if args[1] else str(args[0]))
                return
            if event in ("os.rename", "shutil.copyfile"):
                target = _resolved(args[1])
                if target is not None:
                    task.written.add(target)
                return
            path = _resolved(args[0] if args else ".")
            if path is None:
                return
            if event != "open":
                task.listed.add(path)
            elif _reads(args[1], args[2]):
                task.read.add(path)
                task.readers.setdefault(path, set()).add(_pipeline_caller())
            else:
                task.written.add(path)
        finally:
            self._busy.on = False

    # ------------------------------------------------------------------ patches

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        self._patches.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, value)

    def _patch_env(self) -> None:
        recorder = self
        original = os._Environ.__getitem__

        def getitem(environ, key):
            if recorder._active and not getattr(recorder._busy, "on", False):
                task = recorder._task()
                if task is not None:
                    task.env.add(key)
            return original(environ, key)

        self._patch(os._Environ, "__getitem__", getitem)

    def _patch_models(self) -> None:
        recorder = self

        def getattribute(model, name):
            value = object.__getattribute__(model, name)
            fields = type(model).model_fields
            if name in fields and recorder._active and not getattr(recorder._busy, "on", False):
                task = recorder._task()
                if task is not None:
                    task.config.add((type(model).__name__, name))
            return value

        for cls in _pipeline_models():
            self._patch(cls, "__getattribute__", getattribute)
        real_load = flows.build.load_config

        def load_config(path):
            busy = getattr(recorder._busy, "on", False)
            recorder._busy.on = True  # validation reads (the velocity model) are the config's
            try:
                return real_load(path)
            finally:
                recorder._busy.on = busy

        self._patch_module(flows.build, "load_config", load_config)

    def _patch_module(self, module: Any, name: str, value: Any) -> None:
        self._patches.append((module, name, getattr(module, name)))
        setattr(module, name, value)

    def _patch_threads(self) -> None:
        """Threads started inside a task keep its attribution (a copy of the context)."""
        recorder = self
        original = concurrent.futures.ThreadPoolExecutor.submit

        def submit(pool, fn, /, *args, **kwargs):
            task = recorder._task() if recorder._active else None
            if task is None:
                return original(pool, fn, *args, **kwargs)

            def attributed(*a, **k):
                token = recorder._current.set(task)
                try:
                    return fn(*a, **k)
                finally:
                    recorder._current.reset(token)

            return original(pool, attributed, *args, **kwargs)

        self._patch(concurrent.futures.ThreadPoolExecutor, "submit", submit)

    def __enter__(self) -> ReadRecorder:
        self._patch_env()
        self._patch_models()
        self._patch_threads()
        sys.addaudithook(self._hook)  # cannot be removed: ``_active`` switches it off
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._active = False
        for owner, name, old in reversed(self._patches):
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)
        self._patches.clear()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Record nothing inside (e.g. while the caller reads the results)."""
        self._active = False
        try:
            yield
        finally:
            self._active = True


_MISSING = object()


def _pipeline_models() -> list[type[BaseModel]]:
    """Every pydantic model class defined in :mod:`pipeline` (imported so far)."""
    import pipeline.config  # noqa: F401  (its sections import the rest)

    found, todo = [], [BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("pipeline."):
                found.append(sub)
    return found


# ---------------------------------------------------------------------- comparison


#: Config fields every task reads to find its run directory, never its results.
LOCATION_FIELDS = {("BuildConfig", "name"), ("BuildConfig", "output_dir")}

#: Functions that read the run manifest for a result, and what of the key covers it.
MANIFEST_READERS = {
    # bookkeeping: the manifest read to record a stage in it
    "pipeline.rundir.RunDir.record_stage",
    "pipeline.rundir.RunDir.begin_stage",
    "pipeline.rundir.RunDir.mark_current",
    # the failed and skipped units and the station notes: extra["failures"] /
    # extra["station_notes"] of the report stage
    "pipeline.report.data_quality.data_gaps",
    "pipeline.report.data_quality.station_notes",
    # the association's event count (association/events.parquet, an input of the report)
    # and the catalog's (written by the same task before it)
    "pipeline.report.data_quality.empty_catalog_reason",
}


def _paths_in(value: Any) -> set[Path]:
    """Existing files named by the strings inside ``value`` (nested dicts and lists)."""
    if isinstance(value, dict):
        return set().union(set(), *(_paths_in(v) for v in value.values()))
    if isinstance(value, list | tuple):
        return set().union(set(), *(_paths_in(v) for v in value))
    if isinstance(value, str) and value.startswith("/") and "\n" not in value:
        path = Path(value)
        return {path.resolve()} if path.is_file() else set()
    return set()


def keyed_models(value: Any) -> set[str]:
    """Names of the model classes inside a keyed config value (all their fields are keyed)."""
    if isinstance(value, BaseModel):
        return {type(value).__name__}.union(
            *(keyed_models(getattr(value, name)) for name in type(value).model_fields)
        )
    if isinstance(value, dict):
        return set().union(set(), *(keyed_models(v) for v in value.values()))
    if isinstance(value, list | tuple):
        return set().union(set(), *(keyed_models(v) for v in value))
    return set()


def keyed_config(task: str, cfg: Any) -> tuple[set[tuple[str, str]], set[str]]:
    """What of the config the key of ``task`` covers, per :mod:`flows.build`.

    Returns:
        ``(model, field)`` pairs covered by value (a keyed section's place in the build
        config, fields whose value is in ``extra`` or decides the input files' paths) and the
        model classes inside keyed sections (every field of theirs covered).
    """
    top = set()
    sections: list[Any] = []
    # the waveform source decides where the day files are: their paths are in the inputs
    by_paths = {("BuildConfig", "waveforms"), ("WaveformConfig", "source"), ("SDSSource", "path")}
    if task == "download_task":
        names = ("scenario", "waveforms") if cfg.scenario else ("stations", "waveforms")
        # whether there is a scenario: the key's section has the scenario, or the stations
        top = {("BuildConfig", n) for n in names} | {("BuildConfig", "scenario")}
        if cfg.scenario is None:
            top |= {("BuildConfig", "starttime"), ("BuildConfig", "endtime")}
        sections = [getattr(cfg, n) for n in names]
    elif task == "pick_station_day_task":
        top = {("BuildConfig", "picking"), *by_paths}
        # extra: the picked window of the day (the span) and the flat-trace threshold
        top |= {("BuildConfig", "starttime"), ("BuildConfig", "endtime")}
        top |= {("WaveformConfig", "quality"), ("QualityConfig", "flat_max_ptp")}
        sections = [cfg.picking]
    elif task.startswith("stage_task["):
        stage = task[len("stage_task[") : -1]
        section = flows.build.STAGE_FILES[stage][0]
        top = {("BuildConfig", section), ("BuildConfig", "velocity_model")}
        if stage in flows.build.WAVEFORM_STAGES:
            top |= by_paths
        sections = [getattr(cfg, section)]
    return top, set().union(set(), *(keyed_models(s) for s in sections))


@dataclass
class Gaps:
    """What one task read that its key does not cover."""

    files: dict[Path, set[str]]  # file -> the pipeline functions that read it
    config: set[tuple[str, str]]
    env: set[str]
    programs: set[str]

    def __bool__(self) -> bool:
        return bool(self.files or self.config or self.env or self.programs)


def data_reads(task: TaskReads) -> set[Path]:
    """The files ``task`` read as data: not code, not its config file, not files it wrote
    (itself or through a program it started), not the manifest."""
    code = _code_roots()
    config_file = Path(task.config_path).resolve()
    return {
        p
        for p in task.read
        if p.is_file()  # not a failed open, a device or a temporary file since deleted
        and p != config_file
        and p.name != "manifest.json"
        and p not in task.written
        and not task.written_during(p)
        and not any(p.is_relative_to(r) for r in code)
    }


def uncovered(task: TaskReads, cfg: Any) -> Gaps:
    """What ``task`` read beyond its key (``cfg``: the build config it ran with)."""
    keyed = {Path(p).resolve() for p in task.description["inputs"]}
    keyed |= _paths_in(task.description["extra"])
    files = {
        p: task.readers.get(p, set())
        for p in data_reads(task)
        if p not in keyed and not any(p.is_relative_to(k) for k in keyed if k.is_dir())
    }
    for path, readers in task.readers.items():
        if path.name == "manifest.json" and readers - {""} - MANIFEST_READERS:
            files[path] = readers - {""} - MANIFEST_READERS
    top, classes = keyed_config(task.task, cfg)
    config = {
        (model, name)
        for model, name in task.config
        if (model, name) not in top | LOCATION_FIELDS and model not in classes
    }
    env = {k for k in task.env if k.startswith("EQCAT_") and k not in NEUTRAL_ENV}
    python = Path(sys.executable).resolve()  # the relocation's Python HypoDD: extra["engine"]
    programs = {
        program for program in task.programs if Path(program).resolve() not in keyed | {python}
    }
    return Gaps(files, config, env, programs)


def by_task(recorder: ReadRecorder) -> dict[str, list[TaskReads]]:
    """The recorded task runs grouped by task name (``stage_task[locate]``...)."""
    grouped: dict[str, list[TaskReads]] = defaultdict(list)
    for task in recorder.tasks.values():
        grouped[task.task].append(task)
    return dict(grouped)


def write_audit_config(folder: Path, picker: str = "stalta", associator: str = "time") -> Path:
    """The flow tests' tiny scenario over one UTC day (:func:`test_flows.write_config`) with
    every file it names a file of ``folder`` (data, not code): the velocity models of the
    build and of the scenario, the scenario's station list, a reference catalog (20 made-up
    magnitudes, no real events) for the report. Returns the config's path."""
    files = {"model.yaml": model_path("tottori"), "scenario_model.yaml": model_path("tottori")}
    files["stations.csv"] = ScenarioConfig().stations_csv
    for name, source in files.items():
        shutil.copy(source, folder / name)
    reference = folder / "reference.csv"
    reference.write_text("magnitude\n" + "\n".join(f"{1 + m / 10:.1f}" for m in range(20)))
    config = Path(write_config(folder, MIDNIGHT, picker=picker))
    spec = yaml.safe_load(config.read_text())
    spec["velocity_model"] = str(folder / "model.yaml")
    spec["scenario"]["velocity_model"] = str(folder / "scenario_model.yaml")
    spec["scenario"]["stations_csv"] = str(folder / "stations.csv")
    spec["association"] = {"associator": associator}
    spec["report"] = {"reference": {"name": "reference", "path": str(reference)}}
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    return config
