"""Cache keys for eqcat tasks: what a task read, how it was configured, which code ran.

A task's key is the SHA-256 of the task name, the code version, its config section
(JSON), the fingerprints of its input files and the paths of its outputs. When any
expected output file is missing, :func:`cached` runs the task with ``refresh_cache`` (it
runs, and its result is stored under the same key), so deleting an output (or the run
directory) always forces the work to be redone, and the first run of a build already
fills the cache that its rerun hits.

Input fingerprints: SHA-256 of the content for tables (Parquet, CSV, XML, text),
``size:mtime_ns`` for miniSEED day files, which are large and written atomically once.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import Task
from pydantic_core import to_jsonable_python

import pipeline
from pipeline.rundir import sha256_file

PIPELINE_ROOT = Path(pipeline.__file__).resolve().parent


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the pipeline package's source: any code change invalidates the caches."""
    digest = hashlib.sha256(pipeline.__version__.encode())
    for path in sorted(PIPELINE_ROOT.rglob("*.py")):
        digest.update(path.relative_to(PIPELINE_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    """Content hash for tables, size and mtime for waveform day files; ``missing`` if absent."""
    if not path.exists():
        return "missing"
    if path.is_dir():
        return "dir:" + ",".join(
            f"{p.relative_to(path)}={file_fingerprint(p)}"
            for p in sorted(path.rglob("*"))
            if p.is_file()
        )
    if path.suffix in {".parquet", ".csv", ".xml", ".json", ".yaml", ".txt"}:
        return sha256_file(path)
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def cache_inputs(
    *,
    section: Any = None,
    inputs: list[Path] | tuple[Path, ...] = (),
    outputs: list[Path] | tuple[Path, ...] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The small, JSON-able description of a task call that its cache key is built from.

    Args:
        section: the task's config section (pydantic models, paths and datetimes, also
            nested in dicts and lists, become JSON values).
        inputs: files the task reads; their fingerprints enter the key.
        outputs: files the task must leave behind; if one is missing, no cache hit.
        extra: other identifying values (station code, day, model hash...).
    """
    return {
        "section": to_jsonable_python(section),
        "inputs": {str(p): file_fingerprint(Path(p)) for p in inputs},
        "outputs": [str(p) for p in outputs],
        "extra": extra or {},
    }


def outputs_exist(description: dict[str, Any]) -> bool:
    """Whether every output file named by a :func:`cache_inputs` description exists."""
    return all(Path(p).exists() for p in description["outputs"])


def cached(task_obj: Task, description: dict[str, Any]) -> Task:
    """``task_obj``, refreshing its cache entry when an expected output file is missing."""
    if outputs_exist(description):
        return task_obj
    return task_obj.with_options(refresh_cache=True)


def stage_cache_key(context: Any, parameters: dict[str, Any]) -> str | None:
    """Prefect ``cache_key_fn``: hash of the task name, code version and ``cache_inputs``."""
    description = parameters.get("cache")
    if description is None:
        return None
    payload = json.dumps(
        {"task": context.task.name, "code": code_version(), **description},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()
