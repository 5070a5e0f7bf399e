"""The ``eqcat`` command line.

Every command that takes a build config validates it first; a bad config prints one
line per problem (file, field, value, what is allowed) and exits with status 2.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

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


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logs")] = False):
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
    """Install EQTransformer weights into the user cache (EQCAT_WEIGHTS, ../shared, download)."""
    from pipeline.weights import WeightsUnavailableError, install_weights, model_dir

    try:
        installed = install_weights()
    except WeightsUnavailableError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    for name, digest in installed.items():
        typer.echo(f"weights: {model_dir() / name} sha256={digest}")


if __name__ == "__main__":
    app()
