"""Run the HypoInverse 1.40 program on a command file, without prompts.

The binary is built from source by ``bash scripts/build_hypoinverse.sh .venv`` (part of
``make setup``). It is found through the ``EQCAT_HYPOINVERSE`` environment variable, else
``<sys.prefix>/bin/hyp1.40``, else ``hyp1.40`` on ``PATH``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import string
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.errors import ProgramError
from pipeline.rundir import write_text_atomic

log = logging.getLogger(__name__)

BINARY_NAME = "hyp1.40"
ENV_VAR = "EQCAT_HYPOINVERSE"
TEMPLATE = Path(__file__).resolve().parents[2] / "hypo_templates" / "hypoinverse.hyp.tmpl"


class HypoInverseError(ProgramError):
    """HypoInverse is missing, failed, or did not write the expected outputs."""


def find_hypoinverse() -> Path:
    """Path of the ``hyp1.40`` executable.

    Raises:
        HypoInverseError: with the build command when no executable is found.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise HypoInverseError(f"{ENV_VAR}={configured} is not an executable file")
    beside = Path(sys.prefix) / "bin" / BINARY_NAME
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    on_path = shutil.which(BINARY_NAME)
    if on_path:
        return Path(on_path)
    raise HypoInverseError(
        f"HypoInverse ({BINARY_NAME}) not found: looked at ${ENV_VAR}, {beside} and PATH. "
        "Build it from source with `make setup` (or `bash scripts/build_hypoinverse.sh .venv`)."
    )


def render_command_file(values: dict[str, object], template: Path = TEMPLATE) -> str:
    """The ``.hyp`` command file: ``template`` with ``${name}`` placeholders filled.

    Raises:
        KeyError: naming the placeholder that ``values`` lacks.
    """
    text = template.read_text(encoding="utf-8")
    return string.Template(text).substitute({k: str(v) for k, v in values.items()})


def run_hypoinverse(
    command_text: str,
    inputs: dict[str, str | Path],
    outputs: list[str],
    folder: Path,
    timeout_s: float = 600.0,
    log_name: str = "hypoinverse.log",
) -> Path:
    """Run HypoInverse on ``command_text`` (fed on stdin) with the given input files.

    The program runs in a fresh temporary folder inside ``folder``: the input files (name ->
    text, or name -> a file to copy) and the command file ``hypoinverse.hyp`` are written
    there, and after a successful run every input and output file is moved into ``folder``
    (one atomic rename each), so ``folder`` never holds a half-written result; after a
    failure the inputs and whatever the program wrote are moved there too, for inspection.
    stdout and stderr go to ``folder/log_name``.

    Args:
        command_text: the commands, ending with ``STO``; file names relative to the run folder.
        inputs: file name -> content (str) or source file (Path) of each input the commands read.
        outputs: file names the commands write (all must exist after the run).
        folder: where inputs, outputs and the log end up.
        timeout_s: wall-clock limit, s.

    Returns:
        The log path.

    Raises:
        HypoInverseError: binary missing, non-zero exit, timeout, a missing output or a
            ``*** ERROR`` message from the program (it exits 0 even when, say, the station
            file is missing); the message names the log.
    """
    binary = find_hypoinverse()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / log_name
    with tempfile.TemporaryDirectory(prefix=".hyp-", dir=folder) as tmp:
        work = Path(tmp)
        for name, content in {**inputs, "hypoinverse.hyp": command_text}.items():
            if isinstance(content, Path):
                shutil.copyfile(content, work / name)
            else:
                (work / name).write_text(content, encoding="ascii")
        log.debug("running %s in %s", binary, folder)
        try:
            done = subprocess.run(
                [str(binary)],
                input=command_text,
                capture_output=True,
                text=True,
                cwd=work,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            write_text_atomic(log_path, _text(exc.stdout) + _text(exc.stderr))
            raise HypoInverseError(
                f"HypoInverse did not finish within {timeout_s:.0f} s; see {log_path}"
            ) from exc
        write_text_atomic(log_path, done.stdout + done.stderr)
        missing = [name for name in outputs if not (work / name).is_file()]
        errors = [line.strip() for line in done.stdout.splitlines() if "*** ERROR" in line]
        if done.returncode != 0 or missing or errors:
            _move(work, folder, [*inputs, "hypoinverse.hyp", *outputs])  # keep for inspection
            raise HypoInverseError(
                f"HypoInverse failed ({exit_status(done.returncode)}"
                + (f", no {', '.join(missing)}" if missing else "")
                + (f", {errors[0]!r}" if errors else "")
                + f"); see {log_path}"
            )
        _move(work, folder, [*inputs, "hypoinverse.hyp", *outputs])
    return log_path


def exit_status(returncode: int) -> str:
    """``returncode`` in words: "exit status N", or "killed by SIGSEGV" for a signal."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _move(source: Path, target: Path, names: list[str]) -> None:
    """Rename the files ``names`` that exist in ``source`` into ``target`` (atomic each)."""
    for name in names:
        if (source / name).is_file():
            os.replace(source / name, target / name)


def _text(stream: bytes | str | None) -> str:
    if stream is None:
        return ""
    return stream.decode(errors="replace") if isinstance(stream, bytes) else stream
