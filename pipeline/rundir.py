"""The run directory: atomic writes, content hashes and the per-stage manifest.

A build writes everything under one run directory (``DESIGN.md``). Every file is
written through :func:`atomic_write` (temporary name in the same folder, then
``os.replace``), so an interrupted build never leaves a half file that a later run
mistakes for a finished one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd

from pipeline import interrupt
from pipeline.errors import OLD_RUN_HINT, EqcatInputError, RunDirBusyError

#: Permissions of every file a stage writes (mkstemp alone would give 0600).
FILE_MODE = 0o644

#: Marker in the name of every temporary file of :func:`atomic_write` / :func:`atomic_path`
#: (and of temporary working folders), so that leftovers of a killed build can be found.
TEMP_MARK = ".eqcat-tmp."

#: Stage folders of a run directory, in build order.
STAGE_DIRS = (
    "waveforms",
    "picks",
    "association",
    "location",
    "relocation",
    "magnitude",
    "catalog",
    "report",
)


#: The file a build holds locked while it writes a run directory (:meth:`RunDir.exclusive`).
LOCK_NAME = ".eqcat.lock"

#: Run directories this process holds (:meth:`RunDir.exclusive`): resolved path -> depth.
_HELD: dict[Path, int] = {}
_HELD_LOCK = threading.Lock()

#: Manifest stages in build order: one per stage folder (the catalog and report are
#: written by one flow stage).
MANIFEST_STAGES = STAGE_DIRS
#: The tables of each stage that later stages and users read as its result.
STAGE_RESULTS = {
    "picks": ("picks/picks.parquet",),
    "association": ("association/events.parquet", "association/assignments.parquet"),
    "location": ("location/locations.parquet",),
    "relocation": ("relocation/relocations.parquet",),
    "magnitude": (
        "magnitude/magnitudes.parquet",
        "magnitude/station_magnitudes.parquet",
        "magnitude/picks.parquet",
    ),
    "catalog": ("catalog/catalog.parquet", "catalog/catalog.csv", "catalog/catalog.xml"),
    "report": ("report/index.html", "report/completeness.json"),
}


def read_json_object(path: Path, what: str, remedy: str) -> dict[str, Any]:
    """A JSON object file as a dict; ``{}`` when the file does not exist.

    Raises:
        EqcatInputError: naming ``path``: not JSON, not UTF-8, a folder or not an object;
            the message is "not ``what``: <reason>); ``remedy``".
    """
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, IsADirectoryError) as exc:
        value = exc
    if not isinstance(value, dict):
        raise EqcatInputError(f"not {what}: {value}); {remedy}", path=path)
    return value


#: What a run directory holds from the start of a build (the resolved config, the manifest)
#: or after a stage; a folder with none of them is not a run.
RUN_MARKERS = ("config.resolved.yaml", "manifest.json", *STAGE_DIRS)


def require_run_dir(path: str | os.PathLike) -> Path:
    """``path`` as a Path when it is a run directory (:data:`RUN_MARKERS`), else raise.

    Raises:
        EqcatInputError: naming ``path``: missing, a file, or a folder that is not a run.
    """
    path = Path(path)
    if not path.exists():
        raise EqcatInputError("run directory not found", path=path)
    if not path.is_dir():
        raise EqcatInputError("is a file; expected a run directory", path=path)
    if not any((path / marker).exists() for marker in RUN_MARKERS):
        raise EqcatInputError(
            f"not a run directory (none of {', '.join(RUN_MARKERS)}); pass the folder "
            "`eqcat build` wrote",
            path=path,
        )
    return path


#: The ``eqcat build`` stage that writes each stage folder of a run directory.
WRITER_OF_FOLDER = {
    "waveforms": "download",
    "picks": "pick",
    "association": "associate",
    "location": "locate",
    "relocation": "relocate",
    "magnitude": "magnitude",
    "catalog": "report",
    "report": "report",
}


def writer_stage(path: str | os.PathLike) -> str:
    """The build stage that writes the run file ``path`` (its nearest stage folder), or
    ``STAGE`` when ``path`` is not inside one."""
    return next(
        (WRITER_OF_FOLDER[p.name] for p in Path(path).parents if p.name in WRITER_OF_FOLDER),
        "STAGE",
    )


def read_run_table(path: str | os.PathLike, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A Parquet table of a run that must hold ``columns``.

    Raises:
        EqcatInputError: naming ``path``: not a readable Parquet file (damaged, truncated,
            a folder), or a table without one of ``columns`` (another eqcat version).
    """
    try:
        table = pd.read_parquet(path)
    except (FileNotFoundError, PermissionError):
        raise  # input errors that name the file already
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid (a ValueError), ArrowIOError
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise EqcatInputError(
            f"not a readable Parquet table ({reason}); rebuild it from the stage that "
            f"writes it: eqcat build CONFIG --from {writer_stage(path)}",
            path=path,
        ) from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        hint = OLD_RUN_HINT.replace("--from STAGE", f"--from {writer_stage(path)}")
        raise EqcatInputError(f"missing column(s) {missing}{hint}", path=path)
    return table


def parquet_readable(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Parquet file whose footer reads (False: missing, cut or damaged).

    Reads the metadata only; a cached unit whose file fails it is computed again.
    """
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except (OSError, ValueError):  # missing or a folder; ArrowInvalid is a ValueError
        return False
    return True


class StaleStageError(EqcatInputError):
    """A stage's input comes from a stage that reran (or is rerunning) after it: the user
    rebuilds from there (the message says how); retrying cannot help."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` and rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"`` (binary).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", dir=path.parent)
    os.chmod(tmp, FILE_MODE)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    For writers that insist on a file name (ObsPy, pyarrow, matplotlib). The
    temporary name keeps the suffix of ``path`` so format detection still works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}{TEMP_MARK}", suffix=path.suffix, dir=path.parent
    )
    os.close(fd)
    os.chmod(tmp, FILE_MODE)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_temporaries(root: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders that atomic writes left under ``root``.

    They exist only while a write is under way, so this is for a process that has stopped
    every writer (an interrupted build on its way out). Returns what was removed.
    """
    removed = []
    for path in sorted(Path(root).rglob(f".*{TEMP_MARK}*"), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_write(path) as fh:
        fh.write(text)
    return Path(path)


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table to Parquet atomically (index dropped) and return the path."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def _size_and_mtime(path: Path) -> list[int]:
    """[size (bytes), modification time (ns)] of a file, as the manifest stores it."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def sha256_text(text: str) -> str:
    """SHA-256 hex digest of a string (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: Distributions whose versions :func:`software_versions` reports (absent ones are left out;
#: TensorFlow is ``tensorflow`` or ``tensorflow-cpu`` by set-up; ``hypodd`` is the Python engine).
SOFTWARE = (
    "eqcat",
    "obspy",
    "numpy",
    "scipy",
    "pandas",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "pyocto",
    "hypodd",
)


def software_versions() -> dict[str, str]:
    """Versions of Python and the libraries whose numbers enter a catalog (manifest, cache keys)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


class RunDir:
    """A run directory: ``root`` plus its stage folders and ``manifest.json``.

    The manifest maps a stage name to a record with its input hashes, outputs,
    software versions, wall time (s), counts and free-form ``details``.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, *parts: str) -> Path:
        """A path inside the run directory (folders are created on demand)."""
        target = self.root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def stage_dir(self, stage: str) -> Path:
        """The folder of ``stage`` (created when missing)."""
        folder = self.root / stage
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[RunDir]:
        """Hold the run directory for one build (an advisory lock on :data:`LOCK_NAME`).

        A second build of the same run directory (a scheduled run while a manual one goes
        on, two terminals) fails at once instead of interleaving its writes with the first.
        The lock goes with the process that holds it, also when it is killed; within the
        process it is re-entrant (a scheduled run holds it while it writes its config and
        builds). While it is held, an interrupt of this process cleans the run directory's
        temporary files (:func:`pipeline.interrupt.hold_run_dir`).

        Raises:
            RunDirBusyError: naming the run directory and the build that holds it.
        """
        key = self.root.resolve()
        with _HELD_LOCK:
            nested = key in _HELD
            if nested:
                _HELD[key] += 1
        if nested:
            try:
                yield self
            finally:
                with _HELD_LOCK:
                    _HELD[key] -= 1
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip() or "?"
                raise RunDirBusyError(
                    f"in use by another eqcat build ({holder}); wait for it to end or stop it",
                    path=self.root,
                ) from None
            os.ftruncate(fd, 0)
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            os.pwrite(
                fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}".encode(), 0
            )
            with _HELD_LOCK:
                _HELD[key] = 1
            interrupt.hold_run_dir(self.root)
            try:
                yield self
            finally:
                interrupt.release_run_dir(self.root)
                with _HELD_LOCK:
                    del _HELD[key]
        finally:
            os.close(fd)  # releases the lock

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def read_manifest(self) -> dict[str, Any]:
        """The manifest as a dict (empty when the run has none yet).

        Raises:
            EqcatInputError: naming the file (and the stage) when it is not a JSON object of
                stage entries that are objects themselves.
        """
        what = "a run manifest (a JSON object of stages expected"
        remedy = "restore it, or delete the run directory to build it again"
        manifest = read_json_object(self.manifest_path, what, remedy)
        for stage, entry in manifest.items():
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(key, {}), dict) for key in ("output_sha256", "output_stat")
            ):
                raise EqcatInputError(
                    f"not {what}: its {stage!r} entry is damaged); {remedy}",
                    path=self.manifest_path,
                )
        return manifest

    def record_stage(
        self,
        stage: str,
        *,
        inputs: dict[str, str] | None = None,
        outputs: list[str] | None = None,
        counts: dict[str, int | float] | None = None,
        wall_time_s: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record (replace) the manifest entry of ``stage`` and return it.

        ``outputs`` are run-relative paths; the SHA-256 of each that is a file is recorded
        too (``output_sha256``), so that :meth:`changed_outputs` finds an output edited, cut,
        replaced or deleted after the stage wrote it.
        """
        manifest = self.read_manifest()
        entry = {
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "inputs": inputs or {},
            "outputs": outputs or [],
            "output_sha256": {
                rel: sha256_file(self.root / rel)
                for rel in outputs or []
                if (self.root / rel).is_file()
            },
            "output_stat": {
                rel: _size_and_mtime(self.root / rel)
                for rel in outputs or []
                if (self.root / rel).is_file()
            },
            "counts": counts or {},
            "wall_time_s": wall_time_s,
            "versions": software_versions(),
            "details": details or {},
        }
        manifest[stage] = entry
        self._write_manifest(manifest)
        return entry

    def changed_outputs(self, stages: tuple[str, ...]) -> list[str]:
        """Run-relative paths of the outputs of ``stages`` that are no longer as written.

        Compares each file's SHA-256 with the one :meth:`record_stage` recorded (a file whose
        size and modification time are still the recorded ones is not read again); a deleted
        file counts as changed. Entries written before hashes were recorded have none to
        compare (nothing is reported for them).
        """
        manifest = self.read_manifest()
        changed = []
        for stage in stages:
            entry = manifest.get(stage) or {}
            stats = entry.get("output_stat", {})
            for rel, digest in entry.get("output_sha256", {}).items():
                path = self.root / rel
                if not path.is_file():
                    changed.append(rel)
                elif _size_and_mtime(path) != stats.get(rel) and sha256_file(path) != digest:
                    changed.append(rel)
        return changed

    # ------------------------------------------------------------------ staleness

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.manifest_path, json.dumps(manifest, indent=2, default=str))

    def begin_stage(self, stages: tuple[str, ...], reason: str) -> list[str]:
        """Before ``stages`` rerun: mark them and every later stage stale; delete later results.

        The rerunning stages keep their files until they are replaced (atomically), but their
        manifest entries say ``status: stale`` until :meth:`mark_current`. Every later stage
        loses its result tables (:data:`STAGE_RESULTS`) and the outputs its manifest entry
        lists (for picking only ``picks/picks.parquet``: the per station-day tables are
        checked against their own inputs), so a failed rebuild never leaves an old catalog or
        report that looks complete. Returns the run-relative paths deleted.
        """
        first = min(MANIFEST_STAGES.index(s) for s in stages)
        manifest = self.read_manifest()
        removed: list[str] = []
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for stage in MANIFEST_STAGES[first:]:
            entry = manifest.get(stage)
            later = stage not in stages
            if later:
                listed = [] if stage == "picks" else list((entry or {}).get("outputs", []))
                for rel in dict.fromkeys([*STAGE_RESULTS.get(stage, ()), *listed]):
                    path = self.root / rel
                    if path.is_file():
                        path.unlink()
                        removed.append(rel)
            if entry is None and not later:
                entry = {}
            if entry is not None:
                entry.update({"status": "stale", "stale_since": now, "stale_because": reason})
                manifest[stage] = entry
        self._write_manifest(manifest)
        return removed

    def mark_current(
        self, stages: tuple[str, ...], input_key: str, config_sha256: str | None = None
    ) -> None:
        """Record that ``stages`` finished from the inputs identified by ``input_key`` (and,
        when given, the digest of the config fields they ran with)."""
        manifest = self.read_manifest()
        for stage in stages:
            entry = manifest.setdefault(stage, {})
            for k in ("stale_since", "stale_because"):
                entry.pop(k, None)
            entry.update({"status": "current", "input_key": input_key})
            if config_sha256 is not None:
                entry["config_sha256"] = config_sha256
        self._write_manifest(manifest)

    def is_current(self, stages: tuple[str, ...], input_key: str) -> bool:
        """Whether ``stages`` are recorded as current for exactly ``input_key``."""
        manifest = self.read_manifest()
        return all(
            manifest.get(s, {}).get("status") == "current"
            and manifest.get(s, {}).get("input_key") == input_key
            for s in stages
        )

    def require_current(self, stages: tuple[str, ...], rerun_hint: str) -> None:
        """Raise :class:`StaleStageError` when one of ``stages`` is marked stale.

        ``rerun_hint`` tells the user what to run (e.g. ``eqcat build CONFIG --from pick``).
        """
        manifest = self.read_manifest()
        for stage in stages:
            entry = manifest.get(stage, {})
            if entry.get("status") == "stale":
                raise StaleStageError(
                    f"{self.root}: stage '{stage}' is stale ({entry.get('stale_because')}, "
                    f"since {entry.get('stale_since')}); {rerun_hint}"
                )
