"""The location stage: associated events -> HypoInverse 1.40 -> ``location/locations.parquet``.

Inputs (run directory, DESIGN.md): ``association/events.parquet`` (event_id, origin_time,
latitude, longitude, depth_km), ``association/assignments.parquet`` (event_id, pick_id),
``picks/picks.parquet`` and ``waveforms/stations.csv``.

With the CRH model (layers below a sea-level datum) each station's P delay gets the elevation
correction ``elevation / Vp(top layer)`` (``elevation_correction``), so depths are below sea
level. An event is sent to HypoInverse with at least ``min_stations`` (3) stations and
``min_phases`` (4, the program's ``MIN``) readings of weight code < 4.

Every HypoInverse run of the stage (each start, and the reruns that isolate an event the
program fails on) draws on one time budget, ``timeout_s`` (:mod:`pipeline.location.isolate`):
a start left without time is named in the failures, its events keep the other starts'
solutions.

Several starts: HypoInverse 1.40 takes one trial depth per event (``ZTR`` or the terminator
line) and has no multiple-trial-depth option, and from a poor trial depth its Gauss-Newton
iterations can end in a local minimum (in a layered CRH model often at a layer top: started
at exactly the Tottori model's 2 km interface, 650 of the 651 demo events it located, seed
2000, stayed within 1.8-2.6 km). Every
event is therefore located from the primary start (the associator's origin) and again from
each of ``trial_depths_km`` (same trial epicentre and time); per event the primary solution
is kept unless another start reached a clearly lower RMS with no fewer weighted readings
(:func:`choose_solutions`).
The primary run's files are in ``<run>/location/``, those of the other starts in
``<run>/location/trial_depths/<depth>km/``.

One event's phase block that makes HypoInverse fail (it ended with SIGSEGV on a trial
epicentre far outside the network) or whose solution overflows the archive format (``****``)
costs that event only: the run is repeated on halves of the events until the event is found
(:mod:`pipeline.location.isolate`; nothing is repeated when the program succeeds), the event
is left unlocated with the reason, and named in the stage's failures (the report's summary).

Outputs in ``<run>/location/``: the program's inputs (``stations.sta``, ``model_p.crh``
[+ ``model_s.crh``], ``phases.arc``, ``hypoinverse.hyp``) and outputs (``hypoinverse.arc``,
``hypoinverse.sum``, ``hypoinverse.prt``, ``hypoinverse.log``) as the program reads and
writes them, ``event_ids.csv`` (HypoInverse numeric id <-> event_id), and

- ``locations.parquet``: one row per associated event: event_id, origin_time
  (datetime64[ns, UTC]), latitude, longitude (deg, east positive), depth_km, rms_s, erh_km,
  erz_km, gap_deg, nearest_km, n_p, n_s (P / S times with final weight > 0.1), quality
  (HypoInverse's A-D), start_depth_km (trial depth of the start whose solution was kept),
  located (bool), reason (why an event was not located, or which of its picks were left out;
  empty otherwise).
- ``phase_residuals.parquet``: one row per pick HypoInverse used: event_id, pick_id,
  network, station, phase, residual_s, weight (normalised weight used), weight_code
  (assigned 0-4), distance_km.
"""

from __future__ import annotations

import logging
import math
import shutil
import time as wall_clock
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from obspy.geodetics import degrees2kilometers, locations2degrees

from pipeline.location import isolate
from pipeline.location.hypoinverse_formats import (
    BLANK_LOCATION,
    ELEVATION_RANGE_M,
    FormatError,
    PhasePick,
    crh_models,
    location_code,
    parse_abandoned,
    parse_archive,
    parse_hypo71_summary,
    phase_event_lines,
    phase_line,
    station_line,
)
from pipeline.location.isolate import FAILED_DIR, TimeBudget, phase_text, run_isolating
from pipeline.location.params import LocationConfig
from pipeline.location.runner import HypoInverseError, render_command_file
from pipeline.rundir import (
    RunDir,
    read_run_table,
    sha256_file,
    write_parquet_atomic,
    write_text_atomic,
)
from pipeline.velocity import VelocityModel

log = logging.getLogger(__name__)

STATION_FILE = "stations.sta"
PHASE_FILE = "phases.arc"
ARCHIVE_FILE = "hypoinverse.arc"
SUMMARY_FILE = "hypoinverse.sum"
PRINT_FILE = "hypoinverse.prt"
#: Folder (in the stage folder) of the HypoInverse runs from the further trial depths.
STARTS_DIR = "trial_depths"

LOCATION_COLUMNS = [
    "event_id", "origin_time", "latitude", "longitude", "depth_km", "rms_s", "erh_km",
    "erz_km", "gap_deg", "nearest_km", "n_p", "n_s", "quality", "start_depth_km", "located",
    "reason",
]  # fmt: skip
RESIDUAL_COLUMNS = [
    "event_id", "pick_id", "network", "station", "phase", "residual_s", "weight",
    "weight_code", "distance_km",
]  # fmt: skip


def weight_codes(picks: pd.DataFrame, cfg: LocationConfig) -> np.ndarray:
    """HypoInverse weight codes 0-4 of picks, shape (N,).

    The probability code uses ``probability - probability_std_factor * probability_std``
    against ``cfg.probability_thresholds``; where ``time_std_s`` is known the time-std code
    (``cfg.time_std_thresholds_s``) is computed too and the worse (larger) code is kept.
    Picks without a probability get code 0 from the probability side.
    """
    n = len(picks)
    prob = picks["probability"].to_numpy(float) if "probability" in picks else np.ones(n)
    prob_std = (
        picks["probability_std"].fillna(0).to_numpy(float)
        if "probability_std" in picks
        else np.zeros(n)
    )
    effective = np.where(np.isnan(prob), 1.0, prob - cfg.probability_std_factor * prob_std)
    thresholds = np.asarray(cfg.probability_thresholds)
    codes = (effective[:, None] < thresholds[None, :]).sum(axis=1)
    if "time_std_s" in picks:
        std = picks["time_std_s"].to_numpy(float)
        std_codes = (std[:, None] > np.asarray(cfg.time_std_thresholds_s)[None, :]).sum(axis=1)
        codes = np.where(np.isnan(std), codes, np.maximum(codes, std_codes))
    return codes.astype(int)


@dataclass
class StationTable:
    """Stations HypoInverse can use (station-file text) and why others were left out."""

    text: str
    keys: set[tuple[str, str, str]]  # (network, station, location code)
    rejected: dict[tuple[str, str, str], str] = field(default_factory=dict)
    coordinates: dict[tuple[str, str, str], tuple[float, float]] = field(default_factory=dict)
    # key -> (latitude, longitude), degrees


def _key(network: object, station: object, location: object) -> tuple[str, str, str]:
    net = "" if pd.isna(network) else str(network).strip()
    sta = "" if pd.isna(station) else str(station).strip()
    try:
        loc = location_code(location)
    except FormatError:
        loc = str(location)
    return net, sta, loc


def station_table(
    stations: pd.DataFrame,
    elevation_vp_km_s: float | None = None,
    elevation_used: bool = False,
) -> StationTable:
    """Station file #2 text from a ``stations.csv`` table (one line per net.sta.loc).

    ``elevation_vp_km_s``: when given, each station's P delay (``p_delay_s``, default 0) gets
    ``elevation_m / 1000 / elevation_vp_km_s`` added (an elevation correction, s; negative
    below sea level). ``elevation_used``: HypoInverse places the stations at their elevation
    (CRE models), so a station whose elevation the file's field cannot hold
    (:data:`ELEVATION_RANGE_M`) is left out rather than moved. Rows with missing coordinates
    or codes HypoInverse cannot hold are left out and listed in ``rejected`` with the reason.
    """
    lines: list[str] = []
    keys: set[tuple[str, str, str]] = set()
    rejected: dict[tuple[str, str, str], str] = {}
    coordinates: dict[tuple[str, str, str], tuple[float, float]] = {}
    for row in stations.itertuples(index=False):
        key = _key(row.network, row.station, getattr(row, "location", ""))
        if key in keys or key in rejected:
            continue
        prefix = getattr(row, "channel_prefix", "")
        component = (("" if pd.isna(prefix) else str(prefix).strip())[:2] or "HH") + "Z"
        try:
            elevation = _float_or_zero(getattr(row, "elevation_m", 0.0))
            low, high = ELEVATION_RANGE_M
            if elevation_used and not low <= round(elevation) <= high:
                raise ValueError(
                    f"elevation {elevation:g} m is outside the {low}..{high} m that HypoInverse's "
                    "station file holds; a CRE model would place it elsewhere (use "
                    "location.crust_model_type CRH)"
                )
            delay = _float_or_zero(getattr(row, "p_delay_s", 0.0))
            if elevation_vp_km_s:
                delay += elevation / 1000.0 / elevation_vp_km_s
            lines.append(
                station_line(
                    key[1],
                    key[0],
                    component,
                    key[2],
                    float(row.latitude),
                    float(row.longitude),
                    elevation,
                    delay,
                )  # fmt: skip
            )
            keys.add(key)
            coordinates[key] = (float(row.latitude), float(row.longitude))
        except (FormatError, TypeError, ValueError) as exc:
            rejected[key] = f"station {key[0]}.{key[1]}: unusable in stations.csv ({exc})"
    return StationTable("\n".join(lines) + "\n", keys, rejected, coordinates)


def _float_or_zero(value: object) -> float:
    """``value`` as a float, 0 when missing (raises ValueError when not a number)."""
    return 0.0 if pd.isna(value) else float(value)


@dataclass
class PhaseInput:
    """The phase file and the bookkeeping to map HypoInverse's output back."""

    primary: dict[int, str]  # hypoinverse_id -> the event's phase-file lines (primary start)
    ids: pd.DataFrame  # hypoinverse_id, event_id
    reasons: dict[str, list[str]]  # event_id -> notes
    not_sent: set[str]  # event_ids not given to HypoInverse
    pick_keys: dict[tuple, list[tuple[str, str, int]]]  # output key -> [(event_id, pick_id, code)]
    sent: list[tuple[int, list[PhasePick], dict]] = field(default_factory=list)
    # per event sent: (hypoinverse_id, picks, trial values of phase_event_lines)

    def blocks(self, depth_km: float | None = None) -> dict[int, str]:
        """Per event sent, its phase-file lines (HypoInverse id -> text ending in a newline):
        those of the primary start, or with the trial depth set to ``depth_km`` (km).

        The trial epicentre and origin time stay those of the primary start (the
        associator's when ``use_association_trial``, else HypoInverse's default start).
        """
        if depth_km is None:
            return self.primary
        return {
            hyp_id: _block(
                phase_event_lines(picks, hyp_id, **{**trial, "trial_depth_km": depth_km})
            )
            for hyp_id, picks, trial in self.sent
        }


def _block(lines: list[str]) -> str:
    """One event's lines as phase-file text."""
    return "\n".join(lines) + "\n"


def _pick_key(hyp_id: int, network: str, station: str, location: str, phase: str, t) -> tuple:
    """Identity of a pick across HypoInverse's input and output (time to 0.01 s)."""
    centis = int(round(pd.Timestamp(t).value / 1e7))
    return (int(hyp_id), network, station, location, phase, centis)


def phase_input(
    events: pd.DataFrame,
    picks: pd.DataFrame,
    stations: StationTable,
    cfg: LocationConfig,
) -> PhaseInput:
    """Validate picks per event and write the Y2000 archive phase file text.

    Args:
        events: event_id, origin_time, latitude, longitude, depth_km (trial values; NaN ok).
        picks: event_id, pick_id, network, station, location, phase, time, weight_code and
            optionally component (default ``HHZ``).
        stations: the usable stations.
        cfg: the stage config (min_stations, min_phases, use_association_trial).

    Picks with a station not in ``stations``, a missing time or one before 1900, or a phase
    other than P/S are left out with a note; an event left with fewer than
    ``cfg.min_stations`` stations or ``cfg.min_phases`` readings with weighted picks (code < 4)
    is not sent, with the reason.
    """
    reasons: dict[str, list[str]] = defaultdict(list)
    not_sent: set[str] = set()
    blocks: dict[int, str] = {}
    ids: list[tuple[int, str]] = []
    pick_keys: dict[tuple, list[tuple[str, str, int]]] = defaultdict(list)
    sent: list[tuple[int, list[PhasePick], dict]] = []
    by_event = dict(tuple(picks.groupby("event_id", sort=False)))
    for event in events.itertuples(index=False):
        event_id = str(event.event_id)
        group = by_event.get(event.event_id, picks.iloc[:0])
        usable: list[tuple[str, PhasePick]] = []
        for pick in group.itertuples(index=False):
            key = _key(pick.network, pick.station, pick.location)
            if key not in stations.keys:
                why = stations.rejected.get(key, f"station {key[0]}.{key[1]}.{key[2]}: no "
                                            "coordinates in stations.csv")  # fmt: skip
                reasons[event_id].append(f"pick {pick.pick_id} left out ({why})")
                continue
            if pick.phase not in ("P", "S"):
                reasons[event_id].append(f"pick {pick.pick_id} left out (phase {pick.phase!r})")
                continue
            component = getattr(pick, "component", None)
            phase_pick = PhasePick(
                station=key[1], network=key[0], location=key[2], phase=pick.phase,
                component=component if isinstance(component, str) and component else "HHZ",
                time=pick.time, weight_code=int(pick.weight_code),
                onset="I" if int(pick.weight_code) <= 1 else "E",
            )  # fmt: skip
            try:
                phase_line(phase_pick)
            except FormatError as exc:
                reasons[event_id].append(f"pick {pick.pick_id} left out ({exc})")
                continue
            usable.append((str(pick.pick_id), phase_pick))
        too_few = _too_few_readings([p for _, p in usable], cfg)
        if too_few:
            reasons[event_id].insert(0, f"not located: {too_few}")
            not_sent.add(event_id)
            continue
        hyp_id = len(ids) + 1
        ids.append((hyp_id, event_id))
        trial = (
            {
                "trial_time": event.origin_time,
                "trial_latitude": _float(getattr(event, "latitude", np.nan)),
                "trial_longitude": _float(getattr(event, "longitude", np.nan)),
                "trial_depth_km": _float(getattr(event, "depth_km", np.nan)),
            }
            if cfg.use_association_trial
            else {}
        )
        far = _far_trial(trial, [stations.coordinates[_key(p.network, p.station, p.location)]
                                 for _, p in usable])  # fmt: skip
        if far:
            reasons[event_id].append(far)
            trial = {"trial_depth_km": trial["trial_depth_km"]}
        blocks[hyp_id] = _block(phase_event_lines([p for _, p in usable], hyp_id, **trial))
        sent.append((hyp_id, [p for _, p in usable], trial))
        for pick_id, p in usable:
            key = _pick_key(hyp_id, p.network, p.station, p.location, p.phase, p.time)
            pick_keys[key].append((event_id, pick_id, p.weight_code))
    id_table = pd.DataFrame(ids, columns=["hypoinverse_id", "event_id"])
    return PhaseInput(blocks, id_table, reasons, not_sent, pick_keys, sent)


#: HypoInverse's D2FAR (km): it stops iterating an event whose second-closest station is
#: farther than this from the trial epicentre, keeping that start as the solution.
D2FAR_KM = 250.0


def _far_trial(trial: dict, stations: list[tuple[float, float]]) -> str:
    """Why the trial epicentre of ``trial`` is not given to HypoInverse (empty when it is).

    A trial epicentre with the second-closest of the event's ``stations`` (latitude,
    longitude, degrees) beyond :data:`D2FAR_KM` would not move (HypoInverse stops iterating),
    and one thousands of km away made hyp1.40 crash or loop; HypoInverse's default start
    (near the station of the first arrival, time from the first arrival) is used instead.
    """
    lat, lon = trial.get("trial_latitude", np.nan), trial.get("trial_longitude", np.nan)
    if not (math.isfinite(lat) and math.isfinite(lon)) or len(stations) < 2:
        return ""
    coords = np.asarray(stations)
    km = np.sort(degrees2kilometers(locations2degrees(lat, lon, coords[:, 0], coords[:, 1])))
    if km[1] <= D2FAR_KM:
        return ""
    return (
        f"the associator's trial epicentre ({lat:.2f}, {lon:.2f}) is {km[1]:.0f} km from the "
        f"event's second-closest station (HypoInverse iterates within {D2FAR_KM:.0f} km): "
        "HypoInverse's default start used"
    )


def _too_few_readings(picks: list[PhasePick], cfg: LocationConfig) -> str:
    """Why ``picks`` cannot constrain a hypocentre (empty when they can).

    Counts weighted picks (code < 4): the stations they come from against
    ``cfg.min_stations`` and the readings (P and S times) against ``cfg.min_phases``, the
    ``MIN`` of HypoInverse, which abandons an event with fewer weighted readings.
    """
    weighted = [p for p in picks if p.weight_code < 4]
    stations = {(p.network, p.station, p.location) for p in weighted}
    if len(stations) < cfg.min_stations:
        return (
            f"{len(stations)} stations with weighted picks, fewer than the minimum "
            f"{cfg.min_stations}"
        )
    if len(weighted) < cfg.min_phases:
        return (
            f"{len(weighted)} weighted P and S readings for 4 unknowns, fewer than the "
            f"minimum {cfg.min_phases}"
        )
    return ""


def _float(value: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def command_values(cfg: LocationConfig, model: VelocityModel, has_s_model: bool) -> dict:
    """Placeholder values of ``hypoinverse.hyp.tmpl``."""
    if cfg.crust_model_type == "CRH":
        crust = ["CRH 1 'model_p.crh'"] + (["CRH 2 'model_s.crh'"] if has_s_model else [])
    else:
        elev = f"{cfg.max_elevation_km:.3f}"
        crust = [f"CRE 1 'model_p.crh' {elev} T"] + (
            [f"CRE 2 'model_s.crh' {elev} T"] if has_s_model else []
        )
    crust.append(f"POS {model.vp_vs:.3f}")
    if has_s_model:
        crust.append("SAL 1 2")
    return {
        "station_file": STATION_FILE,
        "crust_commands": "\n".join(crust),
        "trial_depth_km": f"{cfg.trial_depth_km:.2f}",
        "fix_depth": "T" if cfg.fix_depth else "F",
        "min_phases": cfg.min_phases,
        "reading_error_s": f"{cfg.reading_error_s:.3f}",
        "weights": " ".join(f"{w:g}" for w in cfg.weights),
        "distance_weighting": " ".join(f"{w:g}" for w in cfg.distance_weighting),
        "residual_weighting": " ".join(f"{w:g}" for w in cfg.residual_weighting),
        "phase_file": PHASE_FILE,
        "print_file": PRINT_FILE,
        "summary_file": SUMMARY_FILE,
        "archive_file": ARCHIVE_FILE,
    }


def trial_starts(cfg: LocationConfig) -> list[float | None]:
    """The starts of each event's location: None (the trial hypocentre of the phase file:
    the associator's, or HypoInverse's default at ``ZTR``), then each of
    ``cfg.trial_depths_km`` (km; none when every depth is fixed)."""
    return [None] + ([] if cfg.fix_depth else list(cfg.trial_depths_km))


def choose_solutions(
    solutions: list[tuple[pd.DataFrame, pd.DataFrame]],
    rms_ratio: float = 0.8,
    rms_gain_s: float = 0.02,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per event the best of its HypoInverse solutions from several starts.

    Args:
        solutions: per start, (events, phases) as :func:`parse_archive` returns them, each
            with a ``start`` column (the start's index, 0 = the primary start).
        rms_ratio, rms_gain_s: how much lower (fraction of, and seconds below, the primary
            RMS) another start's RMS must be to replace the primary solution.

    The primary solution is kept unless another start reached a clearly lower RMS (at most
    ``rms_ratio`` times the primary RMS and at least ``rms_gain_s`` below it; HypoInverse
    reports RMS to 0.01 s) with no fewer weighted readings (``n_p + n_s``): a start whose
    residual weighting discarded readings does not win by its lower RMS, nor one that keeps
    more readings at a higher RMS. The lowest such RMS wins (then the earliest start). An
    event the primary start did not locate takes the other starts' lowest RMS.

    Returns:
        (events, phases) of the chosen solutions, one events row per located event.
    """
    events = pd.concat([e for e, _ in solutions], ignore_index=True)
    phases = pd.concat([p for _, p in solutions], ignore_index=True)
    if events.empty:
        return events, phases
    events = events.assign(
        _readings=events["n_p"].fillna(0) + events["n_s"].fillna(0),
        _rms=events["rms_s"].fillna(np.inf),
    )
    primary = events[events["start"] == 0].set_index("hypoinverse_id")
    ref_rms = events["hypoinverse_id"].map(primary["_rms"])
    ref_readings = events["hypoinverse_id"].map(primary["_readings"])
    better = (
        (events["_rms"] <= rms_ratio * ref_rms)
        & (events["_rms"] <= ref_rms - rms_gain_s)
        & (events["_readings"] >= ref_readings)
    )
    eligible = events[(events["start"] == 0) | better | ref_rms.isna()]
    # primary first among equals; a better start has a lower RMS than the primary by design
    best = eligible.sort_values(["hypoinverse_id", "_rms", "start"], kind="stable")
    best = best.drop_duplicates("hypoinverse_id").drop(columns=["_readings", "_rms"])
    keep = phases.merge(best[["hypoinverse_id", "start"]], on=["hypoinverse_id", "start"])
    return best.reset_index(drop=True), keep


def locate_picks(
    events: pd.DataFrame,
    picks: pd.DataFrame,
    stations: pd.DataFrame,
    cfg: LocationConfig,
    model: VelocityModel,
    folder: Path,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Locate ``events`` from their ``picks`` with HypoInverse, in ``folder``.

    Args:
        events: event_id, origin_time, latitude, longitude, depth_km (trial; NaN allowed).
        picks: event_id, pick_id, network, station, location, phase, time, weight_code
            (0-9), optionally component.
        stations: the ``stations.csv`` table.
        cfg, model: stage config and 1-D velocity model.
        folder: where the program's files go.

    Returns:
        (locations, residuals, failures): tables with the columns :data:`LOCATION_COLUMNS`
        and :data:`RESIDUAL_COLUMNS` (every event of ``events`` has a locations row), and
        the failures (label -> why): ``"station NET.STA"`` for each station the station
        file cannot hold (:func:`station_table`), further trial-depth starts whose
        HypoInverse run failed as a whole (their solutions are left out) and
        ``"event <id>"`` for each event left unlocated because the program failed on it
        alone or wrote a solution for it that cannot be read
        (:func:`~pipeline.location.isolate.run_isolating`; the other events are located).

    Raises:
        HypoInverseError: the primary start's run failed other than on single events
            (time limit, station file or model refused).
    """
    correct = cfg.elevation_correction and cfg.crust_model_type == "CRH"
    table = station_table(
        stations,
        float(model.vp_km_s[0]) if correct else None,
        elevation_used=cfg.crust_model_type == "CRE",
    )
    phases = phase_input(events, picks, table, cfg)
    p_text, s_text = crh_models(model)
    inputs = {STATION_FILE: table.text, "model_p.crh": p_text}
    if s_text is not None:
        inputs["model_s.crh"] = s_text
    write_text_atomic(folder / "event_ids.csv", phases.ids.to_csv(index=False))

    located = pd.DataFrame(columns=["hypoinverse_id"])
    out_phases = pd.DataFrame()
    failures: dict[str, str] = {  # stations HypoInverse cannot take: their picks go unused
        "station " + ".".join(c for c in key if c not in ("", BLANK_LOCATION)): why.split(": ", 1)[
            -1
        ]
        for key, why in table.rejected.items()
    }
    starts_dir = folder / STARTS_DIR
    for stale in (starts_dir, folder / FAILED_DIR):  # an earlier run's starts and failures
        shutil.rmtree(stale, ignore_errors=True)
    if len(phases.ids):
        command = render_command_file(command_values(cfg, model, s_text is not None))
        solutions = []
        primary_depths = {
            hyp_id: _float(trial.get("trial_depth_km", np.nan)) for hyp_id, _, trial in phases.sent
        }
        primary_depths = {
            k: v if math.isfinite(v) else cfg.trial_depth_km for k, v in primary_depths.items()
        }
        problems: dict[int, list[str]] = defaultdict(list)  # hypoinverse_id -> per start
        primary_failed: set[int] = set()
        budget = TimeBudget(cfg.timeout_s)  # every run of every start draws on it
        for index, depth in enumerate(trial_starts(cfg)):
            where = folder if depth is None else starts_dir / f"{depth:05.2f}km"
            label = "primary start" if depth is None else f"start from {depth:.2f} km depth"
            blocks = {k: v for k, v in phases.blocks(depth).items() if k not in primary_failed}
            if (
                depth is not None
                and budget.left() * isolate.FIRST_RUN_SHARE < isolate.MIN_PART_TIMEOUT_S
            ):
                failures[f"HypoInverse {label}"] = (
                    f"not run: {budget.left():.0f} s of the time budget (location.timeout_s "
                    f"{cfg.timeout_s:g} s) left; the other starts' solutions kept"
                )
                continue
            try:
                log_path, crashed = run_isolating(
                    command, inputs, PHASE_FILE, blocks,
                    [ARCHIVE_FILE, SUMMARY_FILE, PRINT_FILE], where, budget,
                )  # fmt: skip
            except HypoInverseError as exc:
                if depth is None:
                    raise
                failures[f"HypoInverse {label}"] = f"{exc}; the other starts' solutions kept"
                log.warning("location: HypoInverse %s failed: %s", label, exc)
                continue
            if depth is None:
                abandoned = parse_abandoned(log_path.read_text(encoding="ascii", errors="replace"))
                primary_failed = set(crashed)  # not tried again: a loop would cost each start
            unreadable = dict(crashed)
            events_k, phases_k = parse_archive(where / ARCHIVE_FILE, unreadable=unreadable)
            quality = parse_hypo71_summary(where / SUMMARY_FILE, unreadable)
            # an overflowed field in either file: the solution is out of range, not used
            events_k = events_k[~events_k["hypoinverse_id"].isin(unreadable)]
            phases_k = phases_k[~phases_k["hypoinverse_id"].isin(unreadable)]
            events_k = events_k.merge(quality[["hypoinverse_id", "quality"]], on="hypoinverse_id",
                                      how="left")  # fmt: skip
            events_k["start_depth_km"] = (
                events_k["hypoinverse_id"].map(primary_depths) if depth is None else depth
            )
            solutions.append((events_k.assign(start=index), phases_k.assign(start=index)))
            for hyp_id, why in unreadable.items():
                problems[hyp_id].append(f"HypoInverse {label}: {why}")
        if len(trial_starts(cfg)) > 1:
            for hyp_id in primary_failed:
                problems[hyp_id].append("not tried from the further trial depths")
        located, out_phases = choose_solutions(solutions)
        failures.update(_note_problems(phases, problems, set(located["hypoinverse_id"])))
        for hyp_id, event_id in phases.ids.itertuples(index=False):
            if hyp_id in abandoned and hyp_id not in set(located["hypoinverse_id"]):
                phases.reasons[event_id].insert(
                    0,
                    f"not located: HypoInverse abandoned it with {abandoned[hyp_id]} readings "
                    "weighted after its distance and residual weighting (fewer than 4)",
                )
    else:
        for name, text in {**inputs, PHASE_FILE: phase_text(phases.primary)}.items():
            write_text_atomic(folder / name, text)
    residuals, unmatched = _residuals(phases, out_phases)
    solved = set(phases.ids.loc[phases.ids["hypoinverse_id"].isin(located["hypoinverse_id"]),
                                "event_id"])  # fmt: skip
    for event_id, pick_ids in unmatched.items():
        if event_id not in solved:  # no solution: none of its picks is in the output
            continue
        phases.reasons[event_id] += [
            f"pick {pick_id} not in HypoInverse's output (see {PRINT_FILE})" for pick_id in pick_ids
        ]
    return _locations(events, phases, located), residuals, failures


def _note_problems(
    phases: PhaseInput, problems: dict[int, list[str]], located: set[int]
) -> dict[str, str]:
    """Add to the events' reasons the starts whose HypoInverse run failed on them or whose
    output for them could not be read; returns, per event left unlocated by such a problem,
    ``"event <id>"`` -> why (the stage's failures, shown in the report)."""
    failures: dict[str, str] = {}
    names = dict(zip(phases.ids["hypoinverse_id"], phases.ids["event_id"], strict=True))
    for hyp_id, notes in problems.items():
        event_id = names.get(hyp_id)
        if event_id is None:  # an id the program made up (0: unreadable)
            continue
        if hyp_id in located:
            phases.reasons[event_id] += [f"{note}; another start's solution kept" for note in notes]
        else:
            phases.reasons[event_id].insert(0, "not located: " + "; ".join(notes))
            failures[f"event {event_id}"] = "not located: " + "; ".join(notes)
    return failures


def _locations(events: pd.DataFrame, phases: PhaseInput, located: pd.DataFrame) -> pd.DataFrame:
    merged = phases.ids.merge(located, on="hypoinverse_id", how="inner")
    by_event = merged.set_index("event_id")
    rows = []
    for event_id in events["event_id"].astype(str):
        notes = list(phases.reasons.get(event_id, []))
        if event_id in by_event.index:
            row = by_event.loc[event_id]
            record = {c: row[c] for c in LOCATION_COLUMNS if c in row.index}
            record.update(event_id=event_id, located=True, reason="; ".join(notes))
        else:
            if not (notes and notes[0].startswith("not located")):
                notes.insert(0, "not located: HypoInverse wrote no solution (see hypoinverse.prt)")
            record = {"event_id": event_id, "located": False, "reason": "; ".join(notes)}
        rows.append(record)
    table = pd.DataFrame(rows, columns=LOCATION_COLUMNS)
    table["origin_time"] = pd.to_datetime(table["origin_time"], utc=True).astype(
        "datetime64[ns, UTC]"
    )
    for column in ("n_p", "n_s"):
        table[column] = table[column].astype("Int64")
    for column in ("latitude", "longitude", "depth_km", "rms_s", "erh_km", "erz_km", "gap_deg",
                   "nearest_km", "start_depth_km"):  # fmt: skip
        table[column] = table[column].astype(float)
    table["quality"] = table["quality"].fillna("").astype(str)
    table["located"] = table["located"].astype(bool)
    return table


def _residuals(phases: PhaseInput, out: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Output phases matched back to pick ids, and per event the sent picks not matched."""
    rows = []
    pending = {key: list(values) for key, values in phases.pick_keys.items()}
    for row in out.itertuples(index=False):
        key = _pick_key(
            row.hypoinverse_id, row.network, row.station, location_code(row.location),
            row.phase, row.time,
        )  # fmt: skip
        if not pending.get(key):
            continue
        event_id, pick_id, code = pending[key].pop(0)
        rows.append(
            {
                "event_id": event_id,
                "pick_id": pick_id,
                "network": row.network,
                "station": row.station,
                "phase": row.phase,
                "residual_s": row.residual_s,
                "weight": row.weight,
                "weight_code": code,
                "distance_km": row.distance_km,
            }  # fmt: skip
        )
    unmatched: dict[str, list[str]] = defaultdict(list)
    for values in pending.values():
        for event_id, pick_id, _ in values:
            unmatched[event_id].append(pick_id)
    return pd.DataFrame(rows, columns=RESIDUAL_COLUMNS), dict(unmatched)


def locate(run: RunDir, cfg: LocationConfig, model: VelocityModel) -> dict:
    """Locate every associated event of ``run`` with HypoInverse and record the stage.

    Returns:
        The manifest entry (like the other stages); its ``counts``: events, located,
        not_located, picks_used, picks_left_out.
    """
    started = wall_clock.perf_counter()
    paths = {
        "events": run.path("association", "events.parquet"),
        "assignments": run.path("association", "assignments.parquet"),
        "picks": run.path("picks", "picks.parquet"),
        "stations": run.path("waveforms", "stations.csv"),
    }
    for name, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"location stage needs {path} ({name}); run earlier stages")
    events = read_run_table(paths["events"])
    assignments = read_run_table(paths["assignments"])[["event_id", "pick_id"]]
    picks = read_run_table(paths["picks"])
    stations = pd.read_csv(paths["stations"], dtype={"network": str, "station": str,
                                                     "location": str}, keep_default_na=False,
                           na_values={"latitude": [""], "longitude": [""],
                                      "elevation_m": [""]})  # fmt: skip
    picks = picks.assign(pick_id=picks["pick_id"].astype(str))
    assignments = assignments.assign(pick_id=assignments["pick_id"].astype(str))
    event_picks = assignments.merge(picks, on="pick_id", how="inner")
    event_picks["weight_code"] = weight_codes(event_picks, cfg)

    folder = run.stage_dir("location")
    locations, residuals, failures = locate_picks(events, event_picks, stations, cfg, model, folder)
    write_parquet_atomic(locations, folder / "locations.parquet")
    write_parquet_atomic(residuals, folder / "phase_residuals.parquet")
    counts = {
        "events": len(locations),
        "located": int(locations["located"].sum()),
        "not_located": int((~locations["located"]).sum()),
        "picks_used": len(residuals),
        "picks_left_out": len(event_picks) - len(residuals),
    }
    outputs = [
        str(p.relative_to(run.root))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    entry = run.record_stage(
        "location",
        inputs={name: sha256_file(path) for name, path in paths.items()},
        outputs=outputs,
        counts=counts,
        wall_time_s=round(wall_clock.perf_counter() - started, 3),
        details={
            "program": "HypoInverse 1.40",
            "failures": failures,
            "velocity_model": model.name,
            "config": cfg.model_dump(),
        },  # fmt: skip
    )
    log.info("location: %d of %d events located", counts["located"], counts["events"])
    return entry
