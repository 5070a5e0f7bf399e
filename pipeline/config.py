"""The configuration of one catalog build: a pydantic schema loaded from YAML.

A build config lives in ``station_configs/<name>.yaml``. Every parameter has a default;
where the EQTransformer Tottori study (Mousavi et al. 2020) used a value, that value is
the default (detection 0.5, P 0.3, S 0.3, overlap 0.3, batch 500). Stage sections are
defined beside the stage they configure and composed here.

:func:`load_config` turns any problem into a :class:`ConfigError` whose message has one
line per problem: ``FILE: field.path = value: what is allowed``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from pipeline.association import AssociationConfig
from pipeline.errors import MultiLineInputError
from pipeline.location import LocationConfig
from pipeline.magnitude import MagnitudeConfig
from pipeline.picking.params import PickerConfig
from pipeline.relocation.params import RelocationConfig
from pipeline.report.html import ReportConfig
from pipeline.rundir import RunDir, sha256_text, write_text_atomic
from pipeline.sections import SECTION_CONFIG
from pipeline.synthetic.params import ScenarioConfig
from pipeline.waveforms.params import HinetSource, StationSourceConfig, WaveformConfig
from pipeline.yamlfile import DuplicateKeyError, load_user_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(MultiLineInputError):
    """A build config that cannot be used; ``str()`` has one user-facing line per problem."""


class Section(BaseModel):
    """Base of every config section: unknown keys, NaN and infinity are errors."""

    model_config = SECTION_CONFIG


class DaskConfig(Section):
    """Where mapped tasks run: an existing Dask scheduler, or local workers."""

    address: str | None = Field(None, description="tcp://host:port of a Dask scheduler")
    local_workers: int | None = Field(None, ge=1, description="local runner size; None = cores")


class BuildConfig(Section):
    """One catalog build."""

    name: str = Field(description="build name; also the run folder name")
    description: str = ""
    starttime: datetime = Field(description="start of the span, UTC (ISO 8601)")
    endtime: datetime = Field(description="end of the span, UTC (ISO 8601)")
    velocity_model: str = Field(
        "generic_crust", description="file stem in hypo_templates/velocity/ or a YAML path"
    )
    output_dir: Path = Field(Path("runs"), description="parent folder of run directories")
    dask: DaskConfig = DaskConfig()
    stations: StationSourceConfig | None = Field(
        None, description="inline list, StationXML file or FDSN query (not for hinet/scenario)"
    )
    waveforms: WaveformConfig = WaveformConfig()
    scenario: ScenarioConfig | None = Field(
        None, description="generate a synthetic scenario instead of downloading (offline)"
    )
    picking: PickerConfig = PickerConfig()
    association: AssociationConfig = AssociationConfig()
    location: LocationConfig = LocationConfig()
    relocation: RelocationConfig = RelocationConfig()
    magnitude: MagnitudeConfig = MagnitudeConfig()
    report: ReportConfig = ReportConfig()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("must be 1-64 characters of letters, digits, '_', '.', '-'")
        return value

    @field_validator("starttime", "endtime", mode="before")
    @classmethod
    def _not_a_number(cls, value: Any) -> Any:
        """Refuse a number: pydantic reads it as seconds since 1970 (``starttime: 12345``
        gave a build from 1970-01-01 03:25, a span of 30 years, that validated)."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(
                "expected an ISO 8601 UTC time, e.g. 2024-01-31T12:00:00 (not a number)"
            )
        return value

    @field_validator("starttime", "endtime")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("velocity_model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from pipeline.velocity import load_velocity_model

        try:
            load_velocity_model(value)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _span(self) -> BuildConfig:
        if self.endtime <= self.starttime:
            raise ValueError("endtime must be after starttime")
        needs_stations = self.scenario is None and not isinstance(
            self.waveforms.source, HinetSource
        )
        if needs_stations and self.stations is None:
            raise ValueError("stations: required for fdsn and sds waveform sources")
        return self

    @property
    def run_dir(self) -> Path:
        """The run directory of this build."""
        return self.output_dir / self.name


def format_validation_errors(exc: ValidationError, source: str) -> str:
    """One line per problem of ``exc``: ``SOURCE: field = value: what is allowed``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:  # a rule across fields: the message names them
            lines.append(f"{source}: {msg}")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key {loc!r} (not a field of this section)")
        elif err["type"] == "union_tag_invalid":  # e.g. stations: {kind: csv}
            ctx = err["ctx"]
            field = ctx["discriminator"].strip("'")
            lines.append(
                f"{source}: {loc}.{field} = {ctx['tag']!r}: expected one of "
                f"{ctx['expected_tags'].replace(chr(39), '')}"
            )
        elif err["type"] == "missing":
            lines.append(f"{source}: {loc}: required field is missing")
        elif err["type"] == "string_type" and isinstance(err.get("input"), int | float):
            lines.append(
                f"{source}: {loc} = {err['input']!r}: expected text; YAML read a number, so "
                "quote it (e.g. '01': unquoted, a leading zero is lost)"
            )
        else:
            lines.append(f"{source}: {loc} = {err.get('input')!r}: {msg}")
    return "\n".join(lines)


def parse_config(raw: Any, source: str = "<config>") -> BuildConfig:
    """Validate a mapping (already parsed YAML) into a :class:`BuildConfig`."""
    if raw is None:
        raise ConfigError(f"{source}: empty; expected a YAML mapping of fields (name: ...)")
    if not isinstance(raw, dict):
        kind = {str: "a single value", list: "a list"}.get(type(raw), type(raw).__name__)
        raise ConfigError(f"{source}: expected a YAML mapping of fields (name: ...), got {kind}")
    try:
        return BuildConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc, source)) from None


def load_config(path: str | Path) -> BuildConfig:
    """Load and validate a build config from a YAML file.

    Relative ``output_dir`` paths stay relative to the working directory.

    Raises:
        ConfigError: one line per problem, naming the file, field, value and what is allowed.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; expected a build config YAML file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = load_user_yaml(path.read_text(encoding="utf-8"))
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML text ({exc})".replace("\n", " ")) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return parse_config(raw, str(path))


def config_hash(config: BuildConfig) -> str:
    """SHA-256 of the resolved config (JSON of every field, defaults included)."""
    return sha256_text(config.model_dump_json())


def write_resolved_config(config: BuildConfig) -> RunDir:
    """Create the run directory and write ``config.resolved.yaml`` into it."""
    run = RunDir(config.run_dir)
    resolved = config.model_dump(mode="json")
    text = f"# config hash: {config_hash(config)}\n" + yaml.safe_dump(resolved, sort_keys=False)
    write_text_atomic(run.path("config.resolved.yaml"), text)
    return run
