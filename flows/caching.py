"""Cache keys for eqcat tasks: what a task read, how it was configured, which code ran.

A task's key is the SHA-256 of the task name, the version of the code it runs, its config
section (JSON), the fingerprints of its input files and the paths of its outputs. The code
part covers the pipeline modules the task runs and every pipeline module they import
(:func:`code_version`), the templates, and the versions of Python and the computing
libraries: a change to the report's code does not re-pick a 6-week build. When any
expected output file is missing, :func:`cached` runs the task with ``refresh_cache`` (it
runs, and its result is stored under the same key), so deleting an output (or the run
directory), or cutting or damaging a Parquet output on disk, always forces the work to be
redone, and the first run of a build already fills the cache that its rerun hits.

Input fingerprints: SHA-256 of the content for tables (Parquet, CSV, XML, text);
``size:sha256`` for waveform day files, so an archive replaced by other data — even with the
same sizes and times (``cp -p``, ``rsync -a``) — is seen as changed, and one only touched or
copied (new times, same bytes) is not. A day
file's content hash is computed once per file state (path, size, mtime, ctime, inode) and
remembered across builds in ``~/.cache/eqcat/file_hashes.sqlite`` (``EQCAT_CACHE_DIR``
overrides the folder), so a scheduled build over a growing archive reads only new or
changed day files; ctime cannot be set back by copying tools, so a rewritten file is hashed
again. Where that file cannot be written, hashes are remembered for this process only.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sqlite3
import threading
from functools import cache
from pathlib import Path
from typing import Any

from prefect import Task
from pydantic_core import to_jsonable_python

import pipeline
from pipeline.rundir import parquet_readable, sha256_file, software_versions, write_text_atomic

PIPELINE_ROOT = Path(pipeline.__file__).resolve().parent

_hash_lock = threading.Lock()
_content_hashes: dict[str, str] = {}
_hash_store: sqlite3.Connection | None = None
_hash_store_opened = False


#: A dotted pipeline module name inside a string (``import_module("pipeline.picking.model")``).
_MODULE_NAME = re.compile(r"pipeline(\.[A-Za-z_]\w*)+")


def _module_file(name: str, root: Path) -> Path | None:
    """The source file of pipeline module ``name`` under ``root`` (the folder holding the
    ``pipeline`` package), or None where there is none."""
    path = root.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


#: Held around ``ast.parse``: CPython 3.11's parser is not safe to run in several threads at
#: once ("SystemError: AST constructor recursion depth mismatch", seen when the station-day
#: tasks computed their cache keys together).
_parse_lock = threading.Lock()


def _parse(path: Path) -> ast.Module:
    """The syntax tree of the source file ``path`` (one thread at a time)."""
    source = path.read_bytes()
    with _parse_lock:
        return ast.parse(source, filename=str(path))


def lazy_names(package: str, root: Path) -> dict[str, str]:
    """The names that pipeline package ``package`` imports on first use: its ``_LAZY`` table
    (a literal ``{name: submodule}``, the submodule relative to the package), as name ->
    dotted module; empty for a module or a package without one."""
    path = _module_file(package, root)
    if path is None or path.name != "__init__.py":
        return {}
    for node in _parse(path).body:
        if (
            isinstance(node, ast.Assign)
            and [ast.unparse(t) for t in node.targets] == ["_LAZY"]
            and isinstance(node.value, ast.Dict)
        ):
            table = ast.literal_eval(node.value)
            return {key: f"{package}.{module}" for key, module in table.items()}
    return {}


def imported_modules(name: str, root: Path) -> set[str]:
    """The pipeline modules that module ``name`` names anywhere in its source, with their
    parent packages: ``import`` and ``from ... import`` statements (also inside functions,
    relative ones resolved, imported names that are submodules or that the package imports
    on first use, :func:`lazy_names`), and strings that are a module's dotted name (lazy
    imports)."""
    path = _module_file(name, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            named.add(base)
            named.update(f"{base}.{alias.name}" for alias in node.names)
            lazy = lazy_names(base, root) if base.startswith("pipeline") else {}
            named.update(lazy[alias.name] for alias in node.names if alias.name in lazy)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE_NAME.fullmatch(node.value):
                named.add(node.value)
    found = set()
    for dotted in named:
        parts = dotted.split(".")
        if parts[0] != "pipeline":
            continue
        found.update(
            ".".join(parts[:end])
            for end in range(1, len(parts) + 1)
            if _module_file(".".join(parts[:end]), root) is not None
        )
    return found


def module_closure(entries: tuple[str, ...], root: Path) -> set[str]:
    """``entries`` and every pipeline module they import, transitively."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported_modules(name, root))
    return seen


@cache
def code_version(entries: tuple[str, ...] | None = None, root: Path = PIPELINE_ROOT.parent) -> str:
    """Hash of the code a task runs, and of the versions of Python and the libraries that
    compute with it (:func:`pipeline.rundir.software_versions`; an upgraded TensorFlow or
    ObsPy too invalidates the caches).

    Args:
        entries: the pipeline modules the task calls (e.g. ``("pipeline.picking.stage",)``):
            their source and that of every pipeline module they import
            (:func:`module_closure`) enter the hash; the root package ``pipeline/__init__.py``
            does not (it holds only the docstring and ``__version__``, which a test keeps so),
            so a release that changes no module of a stage keeps that stage's caches. None:
            every pipeline module and the version, for keys of no one stage.
        root: the folder holding ``pipeline/`` and ``hypo_templates/`` (for tests).

    The HypoInverse / HypoDD templates and the shipped velocity models enter every hash.
    """
    digest = hashlib.sha256(json.dumps(software_versions(), sort_keys=True).encode())
    package = root / "pipeline"
    if entries is None:
        digest.update(pipeline.__version__.encode())
        modules = sorted(package.rglob("*.py"))
    else:
        names = module_closure(entries, root) - {"pipeline"}
        modules = sorted(_module_file(name, root) for name in names)
    templates = sorted(p for p in (root / "hypo_templates").rglob("*") if p.is_file())
    for path in modules + templates:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def hash_store_path() -> Path:
    """The SQLite file that remembers day-file hashes across builds."""
    folder = os.environ.get("EQCAT_CACHE_DIR") or Path.home() / ".cache" / "eqcat"
    return Path(folder).expanduser() / "file_hashes.sqlite"


def _open_hash_store() -> sqlite3.Connection | None:
    """The shared hash store (opened once per process; None where it cannot be written).

    Call with ``_hash_lock`` held.
    """
    global _hash_store, _hash_store_opened
    if not _hash_store_opened:
        _hash_store_opened = True
        try:
            path = hash_store_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            _hash_store = sqlite3.connect(path, timeout=30, check_same_thread=False)
            _hash_store.execute(
                "CREATE TABLE IF NOT EXISTS file_hash (state TEXT PRIMARY KEY, sha256 TEXT)"
            )
            _hash_store.commit()
        except (OSError, sqlite3.Error):
            _hash_store = None
    return _hash_store


def _stored_hash(state: str) -> str | None:
    """The remembered hash of a file state, from this process or the hash store."""
    with _hash_lock:
        if state in _content_hashes:
            return _content_hashes[state]
        store = _open_hash_store()
        if store is None:
            return None
        try:
            row = store.execute("SELECT sha256 FROM file_hash WHERE state = ?", (state,)).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None


def _remember_hash(state: str, digest: str) -> None:
    """Remember a file state's hash in this process and, where possible, the hash store."""
    with _hash_lock:
        _content_hashes[state] = digest
        store = _open_hash_store()
        if store is None:
            return
        try:
            store.execute("INSERT OR REPLACE INTO file_hash VALUES (?, ?)", (state, digest))
            store.commit()
        except sqlite3.Error:
            pass  # a busy or read-only store only costs a re-hash next time


def _content_hash(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime, ctime, inode)."""
    stat = path.stat()
    state = json.dumps(
        [str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
    )
    known = _stored_hash(state)
    if known is None:
        known = sha256_file(path)
        _remember_hash(state, known)
    return known


def file_fingerprint(path: Path) -> str:
    """Content hash for tables; size and content hash for waveform day files; ``missing``
    if absent."""
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
    return f"{stat.st_size}:{_content_hash(path)}"


def cache_inputs(
    *,
    section: Any = None,
    inputs: list[Path] | tuple[Path, ...] = (),
    outputs: list[Path] | tuple[Path, ...] = (),
    extra: dict[str, Any] | None = None,
    root: Path | None = None,
    code: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The small, JSON-able description of a task call that its cache key is built from.

    Args:
        section: the task's config section (pydantic models, paths and datetimes, also
            nested in dicts and lists, become JSON values).
        inputs: files the task reads; their fingerprints enter the key.
        outputs: files the task must leave behind; if one is missing, no cache hit.
        extra: other identifying values (station code, day, model hash...).
        root: the run directory: paths inside it enter the key relative to it
            (:func:`description_key`), so a run directory moved or copied elsewhere keeps
            its keys and is not rebuilt (its files are fingerprinted again).
        code: the pipeline modules the task runs (:func:`code_version`); None: all of them.
    """
    return {
        "section": to_jsonable_python(section),
        "inputs": {str(p): file_fingerprint(Path(p)) for p in inputs},
        "outputs": [str(p) for p in outputs],
        "extra": extra or {},
        "root": None if root is None else str(root),
        "code_modules": None if code is None else sorted(code),
    }


def _portable(description: dict[str, Any]) -> dict[str, Any]:
    """``description`` without its ``root``, paths inside the root as ``<run>/rel``."""
    out = {k: v for k, v in description.items() if k != "root"}
    root = description.get("root")
    if root is None:
        return out

    def inside(path: str) -> str:
        try:
            return "<run>/" + Path(path).relative_to(root).as_posix()
        except ValueError:
            return path

    out["inputs"] = {inside(p): fp for p, fp in description["inputs"].items()}
    out["outputs"] = [inside(p) for p in description["outputs"]]
    return out


def outputs_intact(description: dict[str, Any]) -> bool:
    """Whether every output file named by a :func:`cache_inputs` description exists and, for
    a Parquet table, reads (its footer: a file cut or damaged on disk is not a cache hit)."""
    return all(
        parquet_readable(p) if str(p).endswith(".parquet") else Path(p).exists()
        for p in description["outputs"]
    )


def cached(task_obj: Task, description: dict[str, Any], on_disk: bool = True) -> Task:
    """``task_obj``, refreshing its cache entry unless its outputs on disk are its own.

    ``on_disk`` says whether the files now on disk were written from this description (the
    caller knows: manifest or :class:`OutputKeys`); when not — or an output is missing or
    damaged (:func:`outputs_intact`) —
    the task runs even if Prefect holds a result for the key (a config switched back to an
    earlier value must not leave the other config's files in place).
    """
    if on_disk and outputs_intact(description):
        return task_obj
    return task_obj.with_options(refresh_cache=True)


def description_key(task_name: str, description: dict[str, Any]) -> str:
    """Hash of a task name, the version of the code it runs and a :func:`cache_inputs`
    description (its paths inside the run directory relative to it)."""
    modules = description.get("code_modules")
    code = code_version(None if modules is None else tuple(modules))
    payload = json.dumps(
        {"task": task_name, "code": code, **_portable(description)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def stage_cache_key(context: Any, parameters: dict[str, Any]) -> str | None:
    """Prefect ``cache_key_fn``: hash of the task name, its code and ``cache_inputs``."""
    description = parameters.get("cache")
    if description is None:
        return None
    return description_key(context.task.name, description)


class OutputKeys:
    """Which key each output file was last written under: ``<folder>/cache_keys.json``.

    Written only by the flow (one writer), after its tasks finished; read before submitting
    them, so a task whose file on disk came from other inputs runs again.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / "cache_keys.json"
        try:
            self.keys: dict[str, str] = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            self.keys = {}

    def matches(self, output: Path, key: str) -> bool:
        """Whether ``output`` was last written under ``key``."""
        return self.keys.get(Path(output).name) == key

    def save(self, written: dict[Path, str]) -> None:
        """Record ``{output: key}`` for outputs just written (atomically)."""
        self.keys.update({Path(p).name: k for p, k in written.items()})
        write_text_atomic(self.path, json.dumps(self.keys, indent=1, sort_keys=True))
