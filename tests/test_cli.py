"""Smoke tests of the eqcat command line, run as a real subprocess."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _eqcat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_help_lists_commands():
    result = _eqcat("--help")
    assert result.returncode == 0
    for command in ("validate", "install-weights"):
        assert command in result.stdout


def test_option_help_names_the_allowed_values_and_defaults():
    """``--stage``/``--from`` named no stage, ``--dask`` no address form, ``--engine`` no
    default and ``mc --start`` no time format; ``build --help`` alone listed the stages."""
    from pipeline.preflight import ALL_STAGES

    def words(command: str) -> str:
        """The help text of ``command`` as one line, without the panels' borders."""
        text = _eqcat(command, "--help").stdout
        return " ".join(text.translate(str.maketrans("│╭╮╰╯─", "      ")).split())

    build = words("build")
    for stage in ALL_STAGES:
        assert build.count(stage) >= 3, stage  # the docstring, --stage and --from
    assert "tcp://HOST:PORT" in build and "dask.address" in build
    relocate = words("relocate")
    assert "relocation.engine, else auto" in relocate
    mc = words("mc")
    assert "ISO 8601 UTC" in mc and "magnitude units" in mc


def test_validate_good_config():
    result = _eqcat("validate", "station_configs/example_fdsn.yaml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_validate_bad_config_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstarttime: 2000-01-01\nendtime: 2000-01-02\nwibble: 3\n")
    result = _eqcat("validate", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown key 'wibble'" in result.stderr
    verbose = _eqcat("-v", "validate", str(bad))  # -v adds the traceback, the line stays
    assert verbose.returncode == 2
    assert "Traceback" in verbose.stderr and "unknown key 'wibble'" in verbose.stderr
    mc = _eqcat("-v", "mc", str(bad))  # also where a command refuses its input itself
    assert mc.returncode == 2 and "Traceback" in mc.stderr


#: TensorFlow's C++ start-up output: Abseil's notice, Abseil/glog lines (oneDNN note,
#: "Could not find cuda drivers", "failed call to cuInit").
TF_START_UP = re.compile(r"absl::InitializeLog|^[IWEF]\d{4} \d\d:\d\d|cuInit|oneDNN", re.M)


def _load_tensorflow_as_a_command(verbose: bool) -> subprocess.CompletedProcess:
    """The command line's logging set-up, then the picker's TensorFlow import (as a build
    does; ``eqcat validate`` no longer imports TensorFlow, see tests/test_seams.py)."""
    code = (
        "from pipeline.cli import configure_logging\n"
        f"configure_logging({verbose})\n"
        "from pipeline.picking.backend import tf\n"
        "tf.constant(1.0) + 1.0\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_default_output_has_no_tensorflow_start_up_lines(monkeypatch):
    """TensorFlow's C++ start-up lines show only with -v."""
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet = _load_tensorflow_as_a_command(verbose=False)
    assert quiet.returncode == 0, quiet.stderr
    assert not TF_START_UP.search(quiet.stdout + quiet.stderr), quiet.stderr
    verbose = _load_tensorflow_as_a_command(verbose=True)
    assert verbose.returncode == 0, verbose.stderr
    assert TF_START_UP.search(verbose.stderr)  # they are there; the default hides them


def test_absl_filter_keeps_what_is_not_under_the_level():
    from pipeline.picking.backend import filter_absl_lines

    text = (  # recorded from TensorFlow 2.21.0 on a CPU machine, plus other writes
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796095563.738512    5722 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1796095563.880680    5722 cpu_feature_guard.cc:227] This TensorFlow ...\n"
        "To enable the following instructions: AVX2 AVX512F FMA, in other operations, ...\n"
        "2026-12-01 03:26:34,584 INFO flows.build: stage download started\n"
        "E0000 00:00:1796095603.288483    5961 cuda_platform.cc:52] failed call to cuInit\n"
        "/x/y.py:3: UserWarning: something\n"
    )
    lines = text.splitlines(keepends=True)
    assert filter_absl_lines(text, 0) == text
    assert filter_absl_lines(text, 1) == "".join(lines[4:])
    assert filter_absl_lines(text, 3) == lines[4] + lines[6]


def test_prefect_server_start_timeout_default_and_user_override(monkeypatch):
    """Commands wait long enough for their temporary Prefect server; a user's value wins."""
    from pipeline.cli import EPHEMERAL_SERVER_TIMEOUT_S, configure_prefect

    key = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    monkeypatch.delenv(key, raising=False)
    configure_prefect()
    assert os.environ[key] == str(EPHEMERAL_SERVER_TIMEOUT_S)
    monkeypatch.setenv(key, "45")
    configure_prefect()
    assert os.environ[key] == "45"


def test_flow_failure_on_input_is_not_repeated_above_the_error_line():
    """A stage run on a damaged run printed Prefect's "Encountered exception during execution:
    EqcatInputError(...)" twice (stage flow, parent flow) above the one ``error:`` line; the
    default filter drops them for input problems and keeps them for defects (and ``-v``)."""
    import logging
    import sys

    from pipeline.cli import QuietFilter
    from pipeline.errors import EqcatInputError

    def record(exc: BaseException, name: str = "prefect.flow_runs") -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            info = sys.exc_info()
        return logging.LogRecord(
            name, logging.ERROR, __file__, 1, "Encountered exception during execution: %r",
            (exc,), info,
        )  # fmt: skip

    quiet = QuietFilter()
    assert not quiet.filter(record(EqcatInputError("x.parquet: not a readable Parquet table")))
    assert not quiet.filter(record(FileNotFoundError(2, "No such file", "x.yaml")))
    assert quiet.filter(record(RuntimeError("a defect")))
    assert quiet.filter(record(EqcatInputError("ours"), name="flows.build"))
    drain = logging.LogRecord(
        "EventsWorker", logging.WARNING, __file__, 1, "Still processing items: 1 items left",
        (), None,
    )  # fmt: skip
    assert not quiet.filter(drain)


def _documented_invocations() -> list[tuple[str, str, list[str]]]:
    """(document, command line, its --options) of every ``eqcat`` command line that README.md
    and DESIGN.md show in code: backticked spans and the lines of fenced code blocks."""
    found = []
    for name in ("README.md", "DESIGN.md"):
        text = (REPO / name).read_text(encoding="utf-8")
        blocks = re.findall(r"```\w*\n(.*?)```", text, flags=re.S)
        spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line in [*spans, *(x for block in blocks for x in block.splitlines())]:
            hit = re.match(r"\s*(?:\.venv/bin/)?eqcat ([^#]*)", line)
            if hit:
                found.append((name, line.strip(), hit.group(1).split()))
    return found


def test_every_documented_command_and_option_exists():
    """Each ``eqcat SUBCOMMAND [--option ...]`` the docs show names a real subcommand (the
    README's ``download|pick|...`` shorthand: each of them) and options it has."""
    import typer.main

    from pipeline.cli import app

    group = typer.main.get_command(app)
    invocations = _documented_invocations()
    assert len(invocations) >= 15, invocations
    problems = []
    for doc, line, words in invocations:
        words = [w for w in words if w not in ("-v", "…", "...")]
        names = words[0].split("|") if words else []
        for sub in names:
            command = group.commands.get(sub)
            if command is None:
                problems.append(f"{doc}: {line!r}: no subcommand {sub!r}")
                continue
            options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            problems += [
                f"{doc}: {line!r}: {sub} has no option {w}"
                for w in words[1:]
                if w.startswith("--") and w.split("=")[0] not in options
            ]
    assert not problems, "\n".join(problems)
