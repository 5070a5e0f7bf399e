"""Running HypoDD: the ``hypoDD`` program when present, else the ``hypodd`` Python package.

Both read a version-2 ``hypoDD.inp`` in their working folder and write their outputs there.
The package is run with this interpreter through :mod:`pipeline.relocation.hypodd_package`
(its console script is broken in 0.2.1, and its data weighting is quadratic in the number of
air quakes). The engine's standard output and error go to ``hypoDD.engine.log`` in the
folder; HypoDD writes its own ``hypoDD.log`` beside it. The per-iteration relocations both
engines write (``hypoDD.reloc.CCC.III``: cluster, iteration) are moved into the subfolder
``hypoDD.iterations`` so that the folder holds the final outputs only.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import EqcatInputError, ProgramError
from pipeline.relocation.hypodd_formats import (
    INPUT_LAYOUTS,
    check_inp_parameters,
    check_input_lines,
    read_inp_files,
)
from pipeline.relocation.params import RelocationConfig
from pipeline.rundir import TEMP_MARK, write_text_atomic

log = logging.getLogger(__name__)

ENGINE_LOG = "hypoDD.engine.log"
ITERATIONS_DIR = "hypoDD.iterations"


class HypoDDError(ProgramError):
    """HypoDD could not be run or did not produce its relocations."""


class HypoDDInputError(EqcatInputError, HypoDDError):
    """HypoDD cannot run on these inputs: a missing file or program, a bad hypoDD.inp."""


@dataclass(frozen=True)
class EngineRun:
    """One engine run: what ran, where, and what it wrote."""

    engine: str  # "binary" | "python"
    command: tuple[str, ...]
    folder: Path
    log_path: Path
    reloc_path: Path
    wall_time_s: float


def engine_command(cfg: RelocationConfig, inp_name: str = "hypoDD.inp") -> tuple[str, list[str]]:
    """(engine kind, command line) for ``cfg.engine``.

    Raises:
        HypoDDError: "binary" asked for but no such program on PATH, or the package missing.
    """
    program = shutil.which(cfg.binary)
    if cfg.engine == "binary" or (cfg.engine == "auto" and program):
        if not program:
            raise HypoDDInputError(
                f"relocation.engine = 'binary' but no program {cfg.binary!r} is on PATH; "
                "install HypoDD 2 or set relocation.engine to 'python' or 'auto'"
            )
        return "binary", [program, inp_name]
    if importlib.util.find_spec("hypodd") is None:
        raise HypoDDError(
            "no HypoDD engine: neither a program on PATH nor the 'hypodd' package is installed"
        )
    return "python", [sys.executable, "-m", "pipeline.relocation.hypodd_package", inp_name]


#: Velocity model types (IMOD) the ``hypodd`` package reads: layered 1-D models and the
#: constant-velocity one; a 3-D model (IMOD 9) needs a hypoDD binary.
PACKAGE_IMODS = (0, 1, 5)


def _check_inputs(folder: Path, inp: Path, kind: str) -> dict[str, str]:
    """The file names of ``inp`` once its lines and named inputs are usable by the ``kind``
    of engine ("binary" | "python")."""
    if not inp.is_file():
        raise HypoDDInputError(f"{inp} not found: a HypoDD folder needs its hypoDD.inp")
    files = read_inp_files(inp)
    imod = check_inp_parameters(inp)
    if kind == "python" and imod not in PACKAGE_IMODS:
        raise HypoDDInputError(
            f"{inp}: IMOD {imod} is a velocity model the hypodd package cannot read (it reads "
            f"IMOD {', '.join(map(str, PACKAGE_IMODS))}); install HypoDD 2 and set "
            "relocation.engine to 'binary' (--engine binary)"
        )
    for key in ("fn_cc", "fn_ct", "fn_event", "fn_station"):
        name = files[key]
        if name and not (folder / name).is_file():
            raise HypoDDInputError(f"{inp} names input {name!r} ({key}), not found in {folder}")
    if not files["fn_reloc"]:
        raise HypoDDInputError(f"{inp} names no relocation output file")
    return files


def _stow_iterations(folder: Path, reloc_name: str) -> None:
    """Move ``<reloc>.CCC.III`` (per cluster and iteration) into :data:`ITERATIONS_DIR`."""
    pattern = re.compile(re.escape(reloc_name) + r"\.\d{3}\.\d{3}")
    target = folder / ITERATIONS_DIR
    if target.is_dir():
        shutil.rmtree(target)  # a previous run's iterations must not mix with this run's
    for path in sorted(folder.iterdir()):
        if path.is_file() and pattern.fullmatch(path.name):
            target.mkdir(exist_ok=True)
            path.replace(target / path.name)


def run_engine(folder: Path, cfg: RelocationConfig, inp_name: str = "hypoDD.inp") -> EngineRun:
    """Run the configured engine in ``folder`` on its ``inp_name``.

    Returns:
        The run record; ``reloc_path`` exists.

    Raises:
        HypoDDError: inputs missing, time limit exceeded, non-zero exit or no relocation file;
            the message names the captured log.
    """
    folder = Path(folder).resolve()
    kind, command = engine_command(cfg, inp_name)
    files = _check_inputs(folder, folder / inp_name, kind)
    reloc = folder / files["fn_reloc"]
    reloc.unlink(missing_ok=True)  # a stale file must not pass for this run's output
    log_path = folder / ENGINE_LOG
    log.debug("running HypoDD (%s) in %s: %s", kind, folder, " ".join(command))
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            command,
            cwd=folder,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=cfg.timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        partial = (exc.stdout or b"") + (exc.stderr or b"")
        text = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        write_text_atomic(log_path, text)
        raise HypoDDError(
            f"HypoDD ({kind}) exceeded relocation.timeout_s = {cfg.timeout_s} s in {folder}; "
            f"see {log_path}"
        ) from exc
    wall = time.perf_counter() - started
    write_text_atomic(log_path, proc.stdout + proc.stderr)
    _stow_iterations(folder, reloc.name)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise HypoDDError(
            f"HypoDD ({kind}) failed with exit status {proc.returncode} in {folder}: {tail[0]}; "
            f"see {log_path}"
        )
    if not reloc.is_file():
        raise HypoDDError(
            f"HypoDD ({kind}) wrote no {reloc.name} in {folder} (no cluster formed?); "
            f"see {log_path} and {folder / 'hypoDD.log'}"
        )
    if not reloc.read_text(errors="replace").strip():
        log.warning("HypoDD (%s) relocated no event in %s; see %s", kind, folder, log_path)
    log.info("HypoDD (%s) finished in %.1f s", kind, wall)
    return EngineRun(kind, tuple(command), folder, log_path, reloc, round(wall, 3))


#: Output keys of hypoDD.inp, and the log HypoDD itself writes in its working folder.
OUTPUT_KEYS = ("fn_loc", "fn_reloc", "fn_sta", "fn_res", "fn_src")
HYPODD_LOG = "hypoDD.log"


def _stage_inputs(folder: Path, work: Path, inp: Path) -> None:
    """Write ``work/hypoDD.inp``: ``inp`` with its inputs reachable from ``work``.

    A plain relative input name is linked into ``work`` (symbolic link to the file in
    ``folder``); an absolute name or one climbing out with ``..`` is written as an absolute
    path. Output names stay as they are, so the engine writes them inside ``work``.
    """
    files = read_inp_files(inp)
    inputs = {files[key] for key in ("fn_cc", "fn_ct", "fn_event", "fn_station") if files[key]}
    rewritten, seen = [], 0
    for line in inp.read_text(encoding="utf-8", errors="replace").splitlines():
        name = line.strip()
        if name and not name.startswith("*"):
            seen += 1
            if 2 <= seen <= 5 and name in inputs:
                source = (folder / name).resolve()
                relative = Path(name)
                if relative.is_absolute() or ".." in relative.parts:
                    line = str(source)
                else:
                    (work / relative).parent.mkdir(parents=True, exist_ok=True)
                    (work / relative).symlink_to(source)
        rewritten.append(line)
    write_text_atomic(work / inp.name, "\n".join(rewritten) + "\n")


def relocate_dir(folder: Path, cfg: RelocationConfig) -> Path:
    """Run the configured engine on a folder that already holds HypoDD inputs + hypoDD.inp.

    The engine runs in a hidden working folder inside ``folder``; only when it succeeds are
    its outputs (the files hypoDD.inp names, ``hypoDD.log`` and the iterations folder) moved
    into ``folder``, each with an atomic rename. A failed or interrupted run leaves the
    folder's earlier results as they were, with the engine's output in ``hypoDD.engine.log``.

    Returns:
        The path of the relocation file (``hypoDD.reloc`` unless hypoDD.inp names another).

    Raises:
        HypoDDInputError: ``folder`` is not a folder, its inputs are missing or unreadable,
            or the engine failed on them (the message names the log).
        HypoDDFormatError: a line of an input file the engine cannot read
            (:func:`~pipeline.relocation.hypodd_formats.check_input_lines`, before it runs).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise HypoDDInputError(f"{folder}: not a folder (expected one holding hypoDD.inp)")
    folder = folder.resolve()
    inp = folder / "hypoDD.inp"
    files = _check_inputs(folder, inp, engine_command(cfg)[0])
    for key in INPUT_LAYOUTS:
        if files[key]:
            check_input_lines(folder / files[key], key)
    work = Path(tempfile.mkdtemp(prefix=f".relocate{TEMP_MARK}", dir=folder))
    try:
        _stage_inputs(folder, work, inp)
        try:
            result = run_engine(work, cfg)
        except HypoDDInputError:
            raise
        except HypoDDError as exc:
            if (work / ENGINE_LOG).is_file():
                os.replace(work / ENGINE_LOG, folder / ENGINE_LOG)
            raise HypoDDInputError(
                f"{inp}: the inputs could not be relocated: "
                + str(exc).replace(str(work), str(folder))
            ) from exc
        names = [files[key] for key in OUTPUT_KEYS if files[key]] + [HYPODD_LOG, ENGINE_LOG]
        for name in names:
            if (work / name).is_file():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(work / name, folder / name)
        if (work / ITERATIONS_DIR).is_dir():  # this run's per-iteration files replace the last
            shutil.rmtree(folder / ITERATIONS_DIR, ignore_errors=True)
            os.replace(work / ITERATIONS_DIR, folder / ITERATIONS_DIR)
        return folder / result.reloc_path.relative_to(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
