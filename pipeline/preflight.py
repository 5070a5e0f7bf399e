"""Offline checks of what a valid build config names, before a build starts.

The config schema (:mod:`pipeline.config`) checks each field's value; this module checks
what the values point at, without the network: that named files exist and can be read,
that the velocity model fits HypoInverse, that the programs a stage runs are installed and
that the run directory can be written. ``eqcat validate`` runs every check; ``eqcat
build`` runs those of the stages it is about to run, so a bad input fails in a second with
one line per problem instead of after minutes of work (or retries).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import BuildConfig, ConfigError

if TYPE_CHECKING:
    from obspy.core.inventory import Channel

    from pipeline.velocity import VelocityModel

#: HypoInverse 1.40 reads at most this many layers per crustal model (``NLYR=20`` in
#: ``common.inc`` of its source, hypoinvpy 0.7.0 sdist, ``hyp1.40/source``).
HYPOINVERSE_MAX_LAYERS = 20

#: The largest layer-top depth and velocity HypoInverse's ``2F5.2`` model lines can hold.
HYPOINVERSE_MAX_VALUE = 99.99

ALL_STAGES = ("download", "pick", "associate", "locate", "relocate", "magnitude", "report")

#: The table each stage needs from the stage before it (relative to the run directory).
UPSTREAM_OUTPUT = {
    "pick": "waveforms/stations.csv",
    "associate": "picks/picks.parquet",
    "locate": "association/events.parquet",
    "relocate": "location/locations.parquet",
    "magnitude": "relocation/relocations.parquet",
    "report": "magnitude/magnitudes.parquet",
}


def _file_problem(path: Path, what: str) -> str | None:
    """Why ``path`` cannot be read as a ``what`` file, or None."""
    if not path.exists():
        return f"{what} not found"
    if path.is_dir():
        return f"is a folder; expected a {what}"
    if not path.is_file():
        return f"{what} is not a regular file"
    if not os.access(path, os.R_OK):
        return f"{what} is not readable"
    return None


def _station_files(cfg: BuildConfig) -> Iterable[tuple[str, Path, str]]:
    if cfg.scenario is None and cfg.stations is not None and cfg.stations.kind == "stationxml":
        yield "stations.path", cfg.stations.path, "StationXML file"
    if cfg.scenario is not None:
        yield "scenario.stations_csv", cfg.scenario.stations_csv, "station list"


def _content_problem(cfg: BuildConfig, what: str) -> str | None:
    """Why an existing station file cannot be used as a ``what``, or None (it is parsed as
    the download stage parses it)."""
    from pipeline.errors import EqcatInputError

    try:
        if what == "StationXML file":
            from pipeline.waveforms.station_sources import load_inventory

            load_inventory(cfg.stations, cfg.starttime, cfg.endtime)
        else:
            from pipeline.synthetic.stations import read_station_list

            read_station_list(Path(cfg.scenario.stations_csv))
    except (EqcatInputError, ValueError, UnicodeDecodeError) as exc:
        return getattr(exc, "message", None) or str(exc)
    return None


def check_download(cfg: BuildConfig) -> list[str]:
    """Station files of the download stage (StationXML, scenario station list): they exist,
    can be read and hold what the stage needs."""
    problems = []
    for field, path, what in _station_files(cfg):
        problem = _file_problem(Path(path), what) or _content_problem(cfg, what)
        if problem:
            problems.append(f"{field} = '{path}': {problem}")
    return problems + _hinet_problems(cfg) + _fdsn_account_problems(cfg)


def _fdsn_account_problems(cfg: BuildConfig) -> list[str]:
    """A restricted FDSN service (stations or waveforms) has its account in the environment
    (a named secret is read at run time, through the Prefect run's loader)."""
    from pipeline.waveforms.credentials import CredentialsError, fdsn_credentials
    from pipeline.waveforms.params import FDSNService

    if cfg.scenario is not None:
        return []
    sections = (("stations", cfg.stations), ("waveforms.source", cfg.waveforms.source))
    problems = []
    for field, section in sections:
        if isinstance(section, FDSNService) and not section.secret_block:
            try:
                fdsn_credentials(section, field)
            except CredentialsError as exc:
                problems.append(exc.message)
    return problems


def _station_selection(
    cfg: BuildConfig,
) -> tuple[str, list, dict[str, str], dict[str, str]] | None:
    """What the download stage makes of a StationXML file or an inline station list:
    (config field, stations it uses, ``NET.STA`` -> why it skips one, ``NET.STA`` -> a note on
    one it uses), by :func:`pipeline.waveforms.inventory.select_channels`. None for the other
    station sources (their stations arrive with the download) and for an unreadable file
    (check_download names it)."""
    from pipeline.errors import EqcatInputError
    from pipeline.waveforms.params import HinetSource

    stations = cfg.stations
    if (
        cfg.scenario is not None
        or stations is None
        or stations.kind == "fdsn"
        or isinstance(cfg.waveforms.source, HinetSource)
    ):
        return None
    from pipeline.waveforms.inventory import inactive_stations, select_channels
    from pipeline.waveforms.station_sources import load_inventory

    try:
        inventory = load_inventory(stations, cfg.starttime, cfg.endtime)
    except EqcatInputError:
        return None
    field = "stations" if stations.kind == "inline" else f"stations.path = '{stations.path}'"
    skipped: dict[str, str] = {}
    notes: dict[str, str] = {}
    waveforms = cfg.waveforms
    choices = select_channels(
        inventory,
        waveforms.channel_priority,
        waveforms.location_priority,
        cfg.starttime,
        cfg.endtime,
        skipped,
        notes,
    )
    skipped.update(inactive_stations(inventory, cfg.starttime, cfg.endtime))
    return field, choices, skipped, notes


#: At most this many skipped stations are named, one line each, by :func:`station_notes`.
MAX_NAMED_STATIONS = 10


def check_stations(cfg: BuildConfig) -> list[str]:
    """A StationXML file or inline list leaves the download at least one usable station."""
    selection = _station_selection(cfg)
    if selection is None or selection[1]:
        return []
    field, _, skipped, _ = selection
    span = f"between {cfg.starttime:%Y-%m-%d %H:%M} and {cfg.endtime:%Y-%m-%d %H:%M} UTC"
    if not skipped:
        return [f"{field}: no station is active {span}"]
    why = "; ".join(f"{label} {reason}" for label, reason in list(skipped.items())[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return [f"{field}: no usable station {span}: {why}{more}"]


def station_notes(cfg: BuildConfig) -> list[str]:
    """Warnings: the stations the download will skip (bad codes, no matching channel) and
    stations whose entries lie far apart or leave part of the span uncovered, one line each
    (at most :data:`MAX_NAMED_STATIONS`), for a config whose station list leaves some
    stations usable; and fewer usable stations than an event needs."""
    selection = _station_selection(cfg)
    if selection is None or not selection[1]:
        return []
    field, choices, skipped, notes = selection
    lines = [f"{field}: station {label} {why}" for label, why in skipped.items()]
    lines += [f"{field}: station {label} (used): {note}" for label, note in notes.items()]
    if len(lines) > MAX_NAMED_STATIONS:
        rest = len(lines) - MAX_NAMED_STATIONS
        lines = [
            *lines[:MAX_NAMED_STATIONS],
            f"{field}: and {rest} more station(s) skipped or with notes",
        ]
    used = len({(c.network, c.station) for c in choices})
    if used < cfg.association.min_stations:  # a build of picks only; the catalog stays empty
        lines.append(
            f"{field}: {used} usable station(s), fewer than association.min_stations = "
            f"{cfg.association.min_stations}: picks only, no event can be associated"
        )
    return lines


def sds_notes(cfg: BuildConfig) -> list[str]:
    """Warnings for a local SDS source: the stations with no day file in the span.

    A wrong archive path, span or station code otherwise validated fine and built an empty
    catalog; one line names the stations (at most :data:`MAX_NAMED_STATIONS`) and, when no
    station has a file, the path of one file looked for.
    """
    from pipeline.waveforms.params import SDSSource
    from pipeline.waveforms.sds import (
        days_in_span,
        other_station_ids,
        sds_relpath,
        station_day_files,
    )

    source = cfg.waveforms.source
    selection = _station_selection(cfg) if isinstance(source, SDSSource) else None
    if selection is None or not selection[1]:
        return []
    choices = selection[1]
    days = days_in_span(cfg.starttime, cfg.endtime)
    empty = [
        c
        for c in choices
        if not station_day_files(
            source.path, c.network, c.station, c.location, c.channel_prefix, days, False
        )
    ]
    field = f"waveforms.source.path = '{source.path}'"
    if not empty:
        return []
    elsewhere = {
        c.seed_id: other_station_ids(
            source.path, c.network, c.station, c.location, c.channel_prefix, days
        )
        for c in empty
    }
    if len(empty) == len(choices):
        first = choices[0]
        example = source.path / sds_relpath(
            first.network, first.station, first.location, first.channels[0], days[0]
        )
        hint = next((_other_codes_hint(ids) for ids in elsewhere.values() if ids), "")
        return [
            f"{field}: no day file of any station in the span (looked for e.g. {example}"
            f"{hint}); the build will find no data"
        ]
    names = [f"{c.network}.{c.station}{_other_codes_hint(elsewhere[c.seed_id])}" for c in empty]
    shown = ", ".join(names[:MAX_NAMED_STATIONS])
    more = f" and {len(names) - MAX_NAMED_STATIONS} more" if len(names) > MAX_NAMED_STATIONS else ""
    return [f"{field}: no day file in the span for {len(names)} station(s): {shown}{more}"]


def _other_codes_hint(ids: list[str]) -> str:
    """'' or ``; the archive has XX.X01.00.HHZ, ...`` (files under other location or
    channel codes, :func:`pipeline.waveforms.sds.other_station_ids`)."""
    if not ids:
        return ""
    shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
    return f"; the archive has {shown}: other location or channel codes"


def _hinet_problems(cfg: BuildConfig) -> list[str]:
    """A Hi-net source has credentials (environment; a named secret is checked at run time)
    and the win32tools programs it converts with."""
    from pipeline.waveforms.params import HinetSource

    source = cfg.waveforms.source
    if cfg.scenario is not None or not isinstance(source, HinetSource):
        return []
    from pipeline.waveforms.hinet import (
        HinetCredentialsError,
        Win32ToolsMissing,
        hinet_credentials,
        require_win32tools,
    )

    problems = []
    checks = [require_win32tools]
    if not source.secret_block:  # a secret needs the Prefect run's loader
        checks.append(lambda: hinet_credentials(source))
    for check in checks:
        try:
            check()
        except (HinetCredentialsError, Win32ToolsMissing) as exc:
            problems.append(f"waveforms.source (hinet): {exc.message}")
    return problems


def check_weights(cfg: BuildConfig) -> list[str]:
    """The EQTransformer weights resolve to a readable weights file (picking with eqt)."""
    if cfg.picking.picker != "eqt":
        return []
    from pipeline.errors import EqcatInputError
    from pipeline.picking.weights_file import read_weights
    from pipeline.weights import resolve_weights

    field = f"picking.weights = '{cfg.picking.weights}'"
    try:
        path = resolve_weights(cfg.picking.weights)
    except (EqcatInputError, ValueError) as exc:
        return [f"{field}: {exc}"]
    problem = _file_problem(path, "weights file")
    if problem:
        return [f"{field}: {problem} ({path})"]
    try:
        read_weights(path)
    except (EqcatInputError, OSError, ValueError, KeyError) as exc:
        return [f"{field}: {path} is not a readable EQTransformer weights file ({exc})"]
    return []


def crh_layer_problems(model: VelocityModel) -> list[str]:
    """What HypoInverse 1.40 refuses in ``model``'s layer models, as it reads them.

    Its CRH reader (``hycrh.for``, hypoinvpy 0.7.0 sdist) stops with "BAD DATA FOR LAYER
    CRUST MODEL" and locates nothing when a layer's velocity is below the one above (a
    low-velocity zone; PyOcto's tables and HypoDD take one) or its top is not deeper; the
    values are those of the ``F5.2`` lines eqcat writes (2 decimals), so tops 10 m apart
    or a velocity under 0.005 km/s (written 0.00) fail too. The P model and the S model
    (written when Vp/Vs varies by layer) are checked; the first velocity problem is named.
    """
    problems = []
    tops = np.round(model.layer_tops_km, 2)
    for phase in ("P", "S"):
        velocity = np.round(model.velocities(phase), 2)
        slower = np.flatnonzero(np.diff(velocity) < 0) + 1
        if velocity.min() <= 0:
            k = int(np.argmin(velocity))
            problems.append(
                f"layer {k + 1}: {phase} velocity {model.velocities(phase)[k]:g} km/s is 0.00 "
                "in HypoInverse's F5.2 model lines"
            )
        elif slower.size:
            k = int(slower[0])
            problems.append(
                f"layer {k + 1} (top {tops[k]:g} km): {phase} velocity {velocity[k]:g} km/s "
                f"is below the layer above ({velocity[k - 1]:g} km/s); HypoInverse's layer "
                "models (CRH) take no velocity decrease with depth (a low-velocity zone)"
            )
        if problems:
            break  # the S model of a constant Vp/Vs fails where the P model does
    thin = np.flatnonzero(np.diff(tops) <= 0) + 1
    if thin.size:
        k = int(thin[0])
        problems.append(
            f"layer {k + 1}: top {model.layer_tops_km[k]:g} km is {tops[k]:.2f} km in "
            f"HypoInverse's F5.2 model lines, not below the layer above ({tops[k - 1]:.2f} km)"
        )
    return problems


def check_hypoinverse(cfg: BuildConfig) -> list[str]:
    """The velocity model fits HypoInverse's layer models and ``hyp1.40`` is installed."""
    from pipeline.location.runner import TEMPLATE, HypoInverseError, find_hypoinverse
    from pipeline.velocity import load_velocity_model

    problems = []
    field = f"velocity_model = '{cfg.velocity_model}'"
    model = load_velocity_model(cfg.velocity_model)
    n_layers = len(model.layer_tops_km)
    if n_layers > HYPOINVERSE_MAX_LAYERS:
        problems.append(
            f"{field}: {n_layers} layers; HypoInverse reads at most {HYPOINVERSE_MAX_LAYERS}"
        )
    deepest = max(model.layer_tops_km.max(), model.vp_km_s.max())
    if deepest > HYPOINVERSE_MAX_VALUE:
        problems.append(
            f"{field}: a layer top or velocity of {deepest} does not fit HypoInverse's "
            f"F5.2 model lines (at most {HYPOINVERSE_MAX_VALUE})"
        )
    problems += [f"{field}: {problem}" for problem in crh_layer_problems(model)]
    if _file_problem(TEMPLATE, "template"):
        problems.append(f"HypoInverse command template {TEMPLATE} not found")
    try:
        find_hypoinverse()
    except HypoInverseError as exc:
        problems.append(f"location: {exc}")
    return problems


def check_association(cfg: BuildConfig) -> list[str]:
    """PyOcto's time settings fit the overlap of its time blocks
    (:func:`pipeline.association.octo.timing_problems`); the stations are not known before
    the download, so against the range any station set gives (the stage checks again with
    its stations)."""
    if cfg.association.associator != "pyocto":
        return []
    from pipeline.association.octo import time_before_range, timing_problems
    from pipeline.velocity import load_velocity_model

    octo = cfg.association.pyocto
    where = (
        "time_before_s"
        if octo.time_before_s
        else f"the S travel time across the search volume in velocity model "
        f"'{cfg.velocity_model}', whatever the stations"
    )
    return timing_problems(
        octo, time_before_range(load_velocity_model(cfg.velocity_model), octo), where
    )


def check_hypodd(cfg: BuildConfig) -> list[str]:
    """The hypoDD.inp template exists and the configured HypoDD engine is installed."""
    from pipeline.relocation.engine import HypoDDError, engine_command
    from pipeline.relocation.hypodd_formats import TEMPLATE_PATH

    problems = []
    if _file_problem(TEMPLATE_PATH, "template"):
        problems.append(f"hypoDD.inp template {TEMPLATE_PATH} not found")
    try:
        engine_command(cfg.relocation)
    except HypoDDError as exc:
        problems.append(f"relocation.engine = '{cfg.relocation.engine}': {exc}")
    return problems


def check_report(cfg: BuildConfig) -> list[str]:
    """The reference catalog CSV of the report, when one is named."""
    ref = cfg.report.reference
    if ref is None or ref.path is None:
        return []
    problem = _file_problem(Path(ref.path), "reference catalog")
    if problem is None:  # read as the report reads it (its magnitude column)
        from pipeline.catalog_io import read_catalog
        from pipeline.errors import EqcatInputError

        try:
            read_catalog(Path(ref.path), magnitude_column=ref.magnitude_column)
        except EqcatInputError as exc:
            problem = exc.message
    return [f"report.reference.path = '{ref.path}': {problem}"] if problem else []


def check_output_dir(cfg: BuildConfig) -> list[str]:
    """The run directory exists and is writable, or can be created."""
    target = Path(cfg.run_dir)
    probe = target
    while not probe.exists():  # the nearest existing folder decides whether it can be made
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return [f"output_dir = '{cfg.output_dir}': {probe} is not a folder"]
    if not os.access(probe, os.W_OK | os.X_OK):
        return [f"output_dir = '{cfg.output_dir}': {probe} is not writable"]
    return []


#: Checks, and the stages that need each (``None``: every build).
CHECKS: tuple[tuple[Callable[[BuildConfig], list[str]], tuple[str, ...] | None], ...] = (
    (check_output_dir, None),
    (check_download, ("download",)),
    (check_stations, ("download",)),
    (check_weights, ("pick",)),
    (check_association, ("associate",)),
    (check_hypoinverse, ("locate",)),
    (check_hypodd, ("relocate",)),
    (check_report, ("report",)),
)


def response_notes(cfg: BuildConfig) -> list[str]:
    """Warnings that do not stop a build, for a config that passed the checks above.

    Stations whose channels carry no instrument response get no local magnitude (the
    magnitude stage skips them and the report lists them). Empty for a synthetic scenario
    and for FDSN and Hi-net stations (their responses arrive with the data).
    """
    if cfg.scenario is not None or cfg.stations is None or cfg.stations.kind == "fdsn":
        return []
    if cfg.stations.kind == "inline":
        return [
            "stations: an inline station list carries no instrument responses, so no "
            "magnitudes will be computed (use kind: stationxml with responses for ML)"
        ]
    from pipeline.waveforms.station_sources import load_inventory

    inventory = load_inventory(cfg.stations, cfg.starttime, cfg.endtime)
    missing = sorted(
        {
            f"{net.code}.{sta.code}"
            for net in inventory
            for sta in net
            if not all(_has_response(cha) for cha in sta)
        }
    )
    if not missing:
        return []
    shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if missing[10:] else "")
    return [
        f"stations.path = '{cfg.stations.path}': {len(missing)} station(s) have channels "
        f"without an instrument response, or with an overall sensitivity only ({shown}): "
        "no magnitudes from those channels"
    ]


def _has_response(channel: Channel) -> bool:
    """Whether an ObsPy channel carries a response the magnitude stage can use: its stages
    (evaluated with evalresp; an overall sensitivity alone is not enough for it)."""
    response = channel.response
    return response is not None and bool(response.response_stages)


def _recorded_output(run_dir: Path, rel: str) -> bool:
    """Whether the run's manifest records ``rel`` as a stage's output (it ran and wrote it).

    A manifest that cannot be read counts as no record (the build reports it itself).
    """
    from pipeline.errors import EqcatInputError
    from pipeline.rundir import RunDir

    try:
        manifest = RunDir(run_dir).read_manifest()
    except EqcatInputError:
        return False
    return any(rel in entry.get("output_sha256", {}) for entry in manifest.values())


def check_stage_order(cfg: BuildConfig, stages: list[str]) -> list[str]:
    """The first of ``stages`` finds what the stage before it writes in the run directory."""
    first = stages[0] if stages else "download"
    if first not in UPSTREAM_OUTPUT or (cfg.run_dir / UPSTREAM_OUTPUT[first]).is_file():
        return []
    before = ALL_STAGES[ALL_STAGES.index(first) - 1]
    if _recorded_output(cfg.run_dir, UPSTREAM_OUTPUT[first]):
        return [
            f"stage {first!r} needs {cfg.run_dir / UPSTREAM_OUTPUT[first]}, deleted since "
            f"stage {before!r} wrote it: build with --from {before} (or without --stage/--from)"
        ]
    return [
        f"stage {first!r} needs {cfg.run_dir / UPSTREAM_OUTPUT[first]} from stage {before!r}, "
        f"which has not run: build with --from {before} (or without --stage/--from)"
    ]


def preflight_problems(cfg: BuildConfig, stages: Iterable[str] | None = None) -> list[str]:
    """One line per problem of what ``cfg`` names, for ``stages`` (default: all).

    With ``stages`` given (those a build is about to run, in order), also whether the run
    directory holds what the first of them needs.
    """
    wanted = set(ALL_STAGES if stages is None else stages)
    problems = [] if stages is None else check_stage_order(cfg, list(stages))
    for check, needed_by in CHECKS:
        if needed_by is None or wanted & set(needed_by):
            problems += check(cfg)
    return problems


def check_build_inputs(cfg: BuildConfig, source: str, stages: Iterable[str] | None = None) -> None:
    """Raise :class:`ConfigError` (one line per problem, prefixed by ``source``) on a problem."""
    problems = preflight_problems(cfg, stages)
    if problems:
        raise ConfigError("\n".join(f"{source}: {line}" for line in problems))
