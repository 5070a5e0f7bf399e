"""Score a run against ground truth (a synthetic scenario's ``truth/`` folder): the truth table.

Inputs: ``TRUTH/catalog.csv`` (event_id, origin_time, latitude, longitude, depth_km,
magnitude), ``TRUTH/picks.csv`` (event_id, network, station, phase, time, ...) and, when
present, ``TRUTH/scenario.json`` (the generator's config: record span and b-value). From the
run: ``picks/picks.parquet``, ``location/locations.parquet``,
``relocation/relocations.parquet``, ``catalog/catalog.parquet`` (else
``magnitude/magnitudes.parquet`` for magnitudes) and, for the detected events, the catalog
(else relocations, locations or ``association/events.parquet``). A missing stage gives
``None`` values and a line in ``notes``.

Matching (one-to-one, greedy by ``|Δt| / time_tol + distance / distance_tol``): a run event
matches a true event when their origin times differ by at most ``time_tol_s`` (2 s) and their
epicentres by at most ``distance_tol_km`` (10 km). A run pick matches the nearest true
arrival of the same network, station and phase within ``pick_tol_s`` (0.5 s). True events
count when their origin lies in the record span (``scenario.json``; else all).

Keys of ``score.json`` (``None`` when a stage is missing or a value is undefined):

- ``n_true_events``, ``n_detected_events`` (rows of the event table), ``n_matched_events``,
  ``event_source`` (which table was scored), ``recall``, ``precision``;
- ``mc_true``: Mc (completeness module, MAXC+0.2 / GFT "best") of the *true* magnitudes of
  the matched events (the completeness the build reached, free of magnitude errors);
  ``recall_above_mc_true``, ``precision_above_mc_true`` (precision counts a run event
  ``>= mc_true`` by its own magnitude). ``mc_true`` moves with the run (a build that finds
  fewer small events has a higher one), so to compare runs, pass a fixed ``mc_ref``
  (``eqcat score --mc-ref M``): the "above" figures and the loss table's last row then use
  it (``mc_ref`` in ``score.json``; None when not given); ``m_recall90``: smallest
  magnitude bin edge from which every 0.5-wide bin has recall >= 0.9;
- ``by_location_stage``: list of {``stage`` (the catalog's ``location_stage``: hypodd,
  hypoinverse or association), ``n``, ``n_matched``, ``precision``} (empty without it);
- ``by_magnitude``: list of {``m_low``, ``m_high``, ``n_true``, ``n_detected``, ``recall``};
- ``picks``: {``P``: {...}, ``S``: {...}} each with ``n_picks``, ``n_matched``,
  ``precision``, ``recall_high_snr`` (share of the true arrivals with snr >= 50 outside
  gaps that were picked; ``n_true_high_snr`` of them), ``recall_by_snr`` (list of
  {``snr_low``, ``snr_high``, ``n_true``, ``recall``}), ``mean_s``, ``std_s``, ``mae_s``
  (run − true). ``snr``: the true peak velocity over the noise rms (``truth/picks.csv``);
- ``hypoinverse`` and ``hypodd``: {``n_located`` (rows with located / relocated true),
  ``n_matched``, ``median_epicentral_error_km``, ``median_abs_depth_error_km``,
  ``median_depth_bias_km`` (run − true)};
- ``magnitude``: {``n``, ``bias`` (median run − true), ``mean``, ``mad`` (median absolute
  deviation of the differences about their median)};
- ``b_true`` (scenario), ``mc_recovered``, ``b_recovered``, ``b_recovered_std`` (from the
  run's catalog magnitudes);
- ``stage_losses``: where the true events are lost (:mod:`pipeline.score_losses`):
  ``min_stations``, ``by_magnitude`` (rows per 0.5 bin with ``n_true``, ``n_picked``,
  ``n_associated``, ``n_located``, ``n_in_catalog`` and ``lost_<reason>`` for picks_missed,
  not_associated, split, merged, not_located, mislocated, not_in_catalog), ``all``,
  ``above_mc_true`` (the same for the true events at/above ``mc_true``) and ``false_events``
  ({``n``, ``duplicate``, ``mislocated``, ``false_picks``, ``no_picks``});
- ``catalog_all``: when the scored table is the default catalog and the run has
  ``catalog/catalog_all.parquet`` (every quality class): {``n_events``, ``n_matched``,
  ``recall``, ``precision``, ``recall_above_mc_true``}; else None;
- ``tolerances``: the matching tolerances; ``notes``: what was missing.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.catalog_io import numeric_column
from pipeline.errors import EqcatInputError
from pipeline.rundir import (
    STAGE_RESULTS,
    RunDir,
    read_json_object,
    read_run_table,
    require_run_dir,
    write_text_atomic,
    writer_stage,
)
from pipeline.score_losses import (
    FALSE_EVENT_CLASSES,
    RunTables,
    classify_false_events,
    classify_true_events,
    enough_picks,
    format_loss_table,
    loss_rows,
)
from pipeline.wording import counted

log = logging.getLogger(__name__)

EARTH_RADIUS_KM = 6371.0
MAGNITUDE_BIN = 0.5
#: Stations an event needs when the run's config does not say (association.min_stations).
DEFAULT_MIN_STATIONS = 3
#: SNR bins (true S/P peak velocity over noise rms, ``truth/picks.csv`` column snr) of the
#: pick recall; events "well above the noise" are those with snr >= HIGH_SNR.
SNR_EDGES = (5.0, 10.0, 20.0, 50.0, math.inf)
HIGH_SNR = 50.0


def _epicentral_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


def _finite(value) -> float | None:
    """A float for JSON, or None when missing / not finite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _truth_csv(path: Path, **kwargs) -> pd.DataFrame:
    """A truth CSV; an empty or unreadable file is an input error naming it."""
    try:
        return pd.read_csv(path, **kwargs)
    except (ValueError, UnicodeDecodeError) as exc:  # EmptyDataError, ParserError, bytes
        raise EqcatInputError(f"not readable as CSV ({exc})", path=path) from None


def _utc_column(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """``table[column]`` as UTC times; a blank or unreadable one names the file, row and value."""
    times = pd.to_datetime(table[column], utc=True, format="ISO8601", errors="coerce")
    bad = times.isna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        value = table[column].iloc[row]
        what = f"unreadable {column} {value!r}" if pd.notna(value) else f"blank {column}"
        raise EqcatInputError(
            f"{what} in row {row + 1} (line {row + 2}); expected ISO 8601, "
            "e.g. 2000-10-08T05:00:00Z",
            path=path,
        )
    return times


#: Numeric columns of ``TRUTH/catalog.csv`` and the range each value must lie in.
TRUTH_NUMBERS = {
    "latitude": (-90.0, 90.0),
    "longitude": (-180.0, 180.0),
    "depth_km": (-10.0, 800.0),
    "magnitude": (-5.0, 10.0),
}


def _truth_numbers(table: pd.DataFrame, path: Path) -> None:
    """Parse :data:`TRUTH_NUMBERS` of a true catalog in place and check its event ids.

    Raises:
        EqcatInputError: naming the file, row and value: a blank, non-numeric or
            out-of-range number, or an event_id given twice.
    """
    for column, (low, high) in TRUTH_NUMBERS.items():
        text = table[column].astype(str).where(table[column].notna(), "")
        values = numeric_column(path, text, column)
        bad = ~values.between(low, high)
        if bad.any():
            row = int(bad.to_numpy().argmax())
            value = values.iloc[row]
            what = f"{column} {value:g}" if np.isfinite(value) else f"blank {column}"
            raise EqcatInputError(
                f"{what} in row {row + 1} (line {row + 2}): every true event needs a "
                f"number in [{low:g}, {high:g}]",
                path=path,
            )
        table[column] = values
    repeated = table["event_id"].duplicated()
    if repeated.any():
        row = int(repeated.to_numpy().argmax())
        raise EqcatInputError(
            f"event_id {table['event_id'].iloc[row]!r} in row {row + 1} (line {row + 2}) "
            "is given twice; expected one row per event",
            path=path,
        )


def _scenario(path: Path) -> dict:
    """``scenario.json`` of a truth folder (``{}`` without one), its record span checked."""
    scenario = read_json_object(
        path,
        "a scenario record (a JSON object expected",
        "restore it, or delete it to score every true event",
    )
    if not scenario:
        return {}
    summary = scenario.get("summary") or {}
    try:
        span = [pd.Timestamp(summary[k]).tz_convert("UTC") for k in ("start_time", "end_time")]
    except (KeyError, TypeError, ValueError) as exc:
        if summary:
            raise EqcatInputError(
                f"summary start_time/end_time unreadable ({type(exc).__name__}: {exc}); "
                "expected ISO 8601 times with a zone",
                path=path,
            ) from None
        span = None
    return scenario | {"span": span}


def truth_in_span(truth: pd.DataFrame, scenario: dict) -> pd.DataFrame:
    """True events whose origin lies in the record span of ``scenario`` (:func:`read_truth`);
    all of them without one."""
    if not scenario.get("span"):
        return truth.reset_index(drop=True)
    start, end = scenario["span"]
    inside = (truth["origin_time"] >= start) & (truth["origin_time"] < end)
    return truth[inside].reset_index(drop=True)


def read_truth(truth_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """True catalog, true picks and the scenario record (``{}`` without scenario.json).

    The scenario record gets ``span``: its record's (start, end) UTC Timestamps, or None.

    Raises:
        EqcatInputError: naming the file (and row): a missing or unreadable file or column,
            a blank or unreadable time, number or event_id (:func:`_truth_numbers`).
    """
    truth_dir = Path(truth_dir)
    if truth_dir.is_file():
        raise EqcatInputError(
            "is a file; expected the truth folder (catalog.csv, picks.csv)", path=truth_dir
        )
    paths = {name: truth_dir / f"{name}.csv" for name in ("catalog", "picks")}
    for path in paths.values():
        if not path.is_file():
            raise EqcatInputError(
                "truth file not found (expected a scenario's truth/ folder)", path=path
            )
    catalog = _truth_csv(paths["catalog"], dtype={"event_id": str})
    missing = {"event_id", "origin_time", "latitude", "longitude", "depth_km", "magnitude"}
    missing -= set(catalog.columns)
    if missing:
        raise EqcatInputError(f"{paths['catalog']}: missing column(s) {sorted(missing)}")
    if catalog.empty:
        raise EqcatInputError("no true events (header only)", path=paths["catalog"])
    catalog["origin_time"] = _utc_column(catalog, "origin_time", paths["catalog"])
    _truth_numbers(catalog, paths["catalog"])
    picks = _truth_csv(paths["picks"], dtype={"event_id": str, "network": str, "station": str})
    missing = {"event_id", "network", "station", "phase", "time"} - set(picks.columns)
    if missing:
        raise EqcatInputError(f"{paths['picks']}: missing column(s) {sorted(missing)}")
    picks["time"] = _utc_column(picks, "time", paths["picks"])
    if "snr" in picks.columns:
        picks["snr"] = numeric_column(paths["picks"], picks["snr"].astype(str), "snr")
    return catalog, picks, _scenario(truth_dir / "scenario.json")


def match_events(
    run_events: pd.DataFrame, truth: pd.DataFrame, time_tol_s: float, distance_tol_km: float
) -> pd.DataFrame:
    """One-to-one matches: columns ``run`` and ``truth`` (row positions), ``dt_s``, ``epi_km``."""
    empty = pd.DataFrame({"run": [], "truth": [], "dt_s": [], "epi_km": []})
    if run_events.empty or truth.empty:
        return empty
    t_true = truth.origin_time.to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
    order = np.argsort(t_true)
    t_sorted = t_true[order]
    t_run = run_events.origin_time.to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
    lo = np.searchsorted(t_sorted, t_run - time_tol_s, side="left")
    hi = np.searchsorted(t_sorted, t_run + time_tol_s, side="right")
    counts = hi - lo
    run_idx = np.repeat(np.arange(len(run_events)), counts)
    if run_idx.size == 0:
        return empty
    offsets = np.arange(run_idx.size) - np.repeat(np.cumsum(counts) - counts, counts)
    truth_idx = order[np.repeat(lo, counts) + offsets]
    dt = t_run[run_idx] - t_true[truth_idx]
    epi = _epicentral_km(
        run_events.latitude.to_numpy(float)[run_idx],
        run_events.longitude.to_numpy(float)[run_idx],
        truth.latitude.to_numpy(float)[truth_idx],
        truth.longitude.to_numpy(float)[truth_idx],
    )
    ok = np.isfinite(epi) & (epi <= distance_tol_km)
    cand = pd.DataFrame({"run": run_idx, "truth": truth_idx, "dt_s": dt, "epi_km": epi})[ok]
    cand = cand.assign(cost=cand.dt_s.abs() / time_tol_s + cand.epi_km / distance_tol_km)
    used_run, used_truth, rows = set(), set(), []
    for row in cand.sort_values("cost", kind="stable").itertuples(index=False):
        if row.run in used_run or row.truth in used_truth:
            continue
        used_run.add(row.run)
        used_truth.add(row.truth)
        rows.append((row.run, row.truth, row.dt_s, row.epi_km))
    return pd.DataFrame(rows, columns=["run", "truth", "dt_s", "epi_km"])


def match_picks(run_picks: pd.DataFrame, truth_picks: pd.DataFrame, tol_s: float) -> np.ndarray:
    """Row position in ``truth_picks`` of the true arrival each run pick matches, -1 when none.

    A run pick matches the nearest true arrival of the same network, station and phase when
    it lies within ``tol_s``. Shape (len(run_picks),), int64.
    """
    out = np.full(len(run_picks), -1, dtype=np.int64)
    if run_picks.empty or truth_picks.empty:
        return out
    truth = truth_picks.reset_index(drop=True)
    run_phase = run_picks["phase"].astype(str).str.upper().to_numpy()
    run_key = (run_picks["network"].astype(str) + "." + run_picks["station"].astype(str)).to_numpy()
    true_key = (truth["network"].astype(str) + "." + truth["station"].astype(str)).to_numpy()
    true_groups = pd.Series(np.arange(len(truth))).groupby([true_key, truth["phase"].to_numpy()])
    true_groups = dict(true_groups.indices)
    t_all = truth.time.to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
    run_t = run_picks.time.to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
    for key, rows in (
        pd.Series(np.arange(len(run_picks))).groupby([run_key, run_phase]).indices.items()
    ):
        if key not in true_groups:
            continue
        cand_rows = true_groups[key]
        cand_rows = cand_rows[np.argsort(t_all[cand_rows], kind="stable")]
        t_true = t_all[cand_rows]
        t_run = run_t[rows]
        pos = np.clip(np.searchsorted(t_true, t_run), 1, max(len(t_true) - 1, 1))
        cand = np.stack([pos - 1, np.minimum(pos, len(t_true) - 1)])
        diffs = t_run[None, :] - t_true[cand]
        best = np.argmin(np.abs(diffs), axis=0)
        chosen = cand[best, np.arange(len(t_run))]
        ok = np.abs(diffs[best, np.arange(len(t_run))]) <= tol_s
        out[rows[ok]] = cand_rows[chosen[ok]]
    return out


def pick_residuals(
    run_picks: pd.DataFrame, truth_picks: pd.DataFrame, tol_s: float, matched: np.ndarray
) -> dict:
    """Per phase: counts, precision, recall by true SNR, residual statistics (run − true).

    ``matched``: :func:`match_picks` of ``run_picks`` against ``truth_picks`` (RangeIndex).
    """
    out = {}
    run_t = run_picks.time.to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
    true_t = truth_picks.time.to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
    run_phase = run_picks.phase.astype(str).str.upper().to_numpy()
    for phase in ("P", "S"):
        is_phase = run_phase == phase
        hit = is_phase & (matched >= 0)
        res = run_t[hit] - true_t[matched[hit]]
        true = truth_picks[truth_picks.phase == phase]
        snr = true.snr.to_numpy(float) if "snr" in true.columns else np.full(len(true), np.inf)
        usable = ~true.in_gap.astype(bool).to_numpy() if "in_gap" in true.columns else True
        usable = np.ones(len(true), dtype=bool) & usable
        picked = true.index.isin(np.unique(matched[hit]))
        by_snr = []
        for lo, hi in zip(SNR_EDGES[:-1], SNR_EDGES[1:], strict=True):
            inside = usable & (snr >= lo) & (snr < hi)
            if inside.any():
                by_snr.append(
                    {
                        "snr_low": lo,
                        "snr_high": None if math.isinf(hi) else hi,
                        "n_true": int(inside.sum()),
                        "recall": float(picked[inside].mean()),
                    }
                )
        high = usable & (snr >= HIGH_SNR)
        n_run = int(is_phase.sum())
        out[phase] = {
            "n_picks": n_run,
            "n_matched": int(res.size),
            "precision": _finite(res.size / n_run) if n_run else None,
            "n_true_high_snr": int(high.sum()),
            "recall_high_snr": _finite(picked[high].mean()) if high.any() else None,
            "recall_by_snr": by_snr,
            "mean_s": _finite(res.mean()) if res.size else None,
            "std_s": _finite(res.std()) if res.size > 1 else None,
            "mae_s": _finite(np.abs(res).mean()) if res.size else None,
        }
    return out


#: Columns the scorer reads from an event table of a run (catalog, relocations, locations,
#: association events) and from its picks, assignments and magnitudes.
RUN_EVENT_COLUMNS = ("event_id", "origin_time", "latitude", "longitude")
PICK_COLUMNS = ("pick_id", "network", "station", "phase", "time")


def _read_table(path: Path, notes: list[str], what: str) -> pd.DataFrame | None:
    if not path.is_file():
        notes.append(f"{what}: {path} missing")
        return None
    table = read_run_table(path, (*RUN_EVENT_COLUMNS, "depth_km"))
    if "origin_time" in table.columns:
        table["origin_time"] = pd.to_datetime(table.origin_time, utc=True)
    return table


def location_errors(
    table: pd.DataFrame | None, truth: pd.DataFrame, flag: str, tol: tuple[float, float]
) -> dict | None:
    """Median epicentral and depth errors of the rows with ``flag`` true, matched to truth."""
    if table is None:
        return None
    rows = table[table[flag].astype(bool)] if flag in table.columns else table
    rows = rows[np.isfinite(rows.latitude.to_numpy(float))].reset_index(drop=True)
    matches = match_events(rows, truth, *tol)
    out = {"n_located": len(rows), "n_matched": len(matches)}
    if matches.empty:
        return out | dict.fromkeys(
            ["median_epicentral_error_km", "median_abs_depth_error_km", "median_depth_bias_km"]
        )
    dz = rows.depth_km.to_numpy(float)[matches.run] - truth.depth_km.to_numpy(float)[matches.truth]
    return out | {
        "median_epicentral_error_km": _finite(np.median(matches.epi_km)),
        "median_abs_depth_error_km": _finite(np.median(np.abs(dz))),
        "median_depth_bias_km": _finite(np.median(dz)),
    }


def _mc_b(magnitudes: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """(Mc, b, σb) by the completeness module (no bootstrap); Nones when not estimable."""
    try:
        from pipeline.completeness import CompletenessConfig, analyze_magnitudes
    except ImportError:
        return None, None, None
    result = analyze_magnitudes(magnitudes, cfg=CompletenessConfig(n_bootstrap=0))
    if result.mc_selected is None or not math.isfinite(result.mc_selected or math.nan):
        return None, None, None
    return _finite(result.mc_selected), _finite(result.b), _finite(result.b_std)


def _by_magnitude(truth_m: np.ndarray, detected: np.ndarray) -> list[dict]:
    if truth_m.size == 0:
        return []
    edges = np.arange(
        np.floor(truth_m.min() / MAGNITUDE_BIN) * MAGNITUDE_BIN,
        truth_m.max() + MAGNITUDE_BIN,
        MAGNITUDE_BIN,
    )
    rows = []
    for lo in edges:
        inside = (truth_m >= lo - 1e-9) & (truth_m < lo + MAGNITUDE_BIN - 1e-9)
        n = int(inside.sum())
        if n:
            d = int(detected[inside].sum())
            rows.append(
                {
                    "m_low": round(float(lo), 2),
                    "m_high": round(float(lo + MAGNITUDE_BIN), 2),
                    "n_true": n,
                    "n_detected": d,
                    "recall": d / n,
                }
            )
    return rows


def _by_location_stage(events: pd.DataFrame | None, matches: pd.DataFrame | None) -> list[dict]:
    """Precision per ``location_stage`` of the run's events (hypodd, hypoinverse, association).

    Events the locator could not place carry the associator's origin, which is often several
    km off: their precision says how usable those catalog rows are. Empty when the event
    table has no ``location_stage`` column.
    """
    if events is None or matches is None or "location_stage" not in events:
        return []
    stage = events["location_stage"].fillna("").astype(str).to_numpy()
    matched = np.zeros(len(events), dtype=bool)
    matched[matches.run.to_numpy(int)] = True
    rows = []
    for name in sorted(set(stage)):
        mask = stage == name
        rows.append(
            {
                "stage": name,
                "n": int(mask.sum()),
                "n_matched": int(matched[mask].sum()),
                "precision": _finite(matched[mask].mean()),
            }
        )
    return rows


def _m_recall90(bins: list[dict]) -> float | None:
    for i, row in enumerate(bins):
        if all(b["recall"] >= 0.9 for b in bins[i:]):
            return row["m_low"]
    return None


def check_spans_overlap(
    events: pd.DataFrame | None, truth: pd.DataFrame, source: str | None, truth_dir: Path
) -> None:
    """Refuse a truth whose events lie wholly outside the time span of the run's events.

    Scored anyway, it gave recall 0.00 and precision 0.00 with exit 0, as if the run had
    found nothing; mostly the truth folder of another scenario or run.

    Raises:
        EqcatInputError: naming the truth folder and both spans.
    """
    if events is None or events.empty or truth.empty:
        return
    run_t, true_t = events["origin_time"], truth["origin_time"]
    if run_t.max() < true_t.min() or run_t.min() > true_t.max():
        span = lambda t: f"{t.min():%Y-%m-%d %H:%M} – {t.max():%Y-%m-%d %H:%M} UTC"  # noqa: E731
        raise EqcatInputError(
            f"its true events ({span(true_t)}) and the run's {source} ({span(run_t)}) do not "
            "overlap in time: the truth of another scenario or run?",
            path=truth_dir,
        )


def damaged_run_notes(run_dir: Path) -> list[str]:
    """One note per stage whose result tables (:data:`pipeline.rundir.STAGE_RESULTS`) its
    manifest entry records but that were changed or deleted since: the score then says the
    run is damaged, not only that the stage found nothing (a deleted catalog was scored as
    "events lost at picking")."""
    run = RunDir(run_dir)
    notes = []
    for stage, tables in STAGE_RESULTS.items():
        changed = [rel for rel in run.changed_outputs((stage,)) if rel in tables]
        if changed:
            notes.append(
                f"damaged run: {', '.join(changed)} changed or deleted since stage '{stage}' "
                f"wrote it; rebuild: eqcat build CONFIG --from {writer_stage(changed[0])}"
            )
    return notes


def _event_table(run_dir: Path, notes: list[str]) -> tuple[pd.DataFrame | None, str | None]:
    for rel in (
        "catalog/catalog.parquet",
        "relocation/relocations.parquet",
        "location/locations.parquet",
        "association/events.parquet",
    ):
        path = run_dir / rel
        if path.is_file():
            table = read_run_table(path, RUN_EVENT_COLUMNS)
            table["origin_time"] = pd.to_datetime(table.origin_time, utc=True)
            unlocated = table.origin_time.isna() | table.latitude.isna() | table.longitude.isna()
            if unlocated.any():
                notes.append(f"events: {int(unlocated.sum())} rows of {rel} without a hypocentre")
            return table[~unlocated].reset_index(drop=True), rel
    notes.append("events: the run has no catalog, relocations, locations or association events")
    return None, None


def _magnitudes(run_dir: Path, events: pd.DataFrame | None, notes: list[str]) -> pd.Series | None:
    """Run magnitudes aligned with ``events`` rows (NaN where none)."""
    if events is None:
        return None
    if "magnitude" in events.columns:
        return events.magnitude.astype(float)
    path = run_dir / "magnitude" / "magnitudes.parquet"
    if not path.is_file():
        notes.append(f"magnitudes: {path} missing")
        return None
    mags = read_run_table(path, ("event_id", "magnitude")).set_index("event_id").magnitude
    return events.event_id.map(mags).astype(float)


def _min_stations(run_dir: Path) -> int:
    """The association stage's ``min_stations`` of the run (3 when the config is unreadable)."""
    path = run_dir / "config.resolved.yaml"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        return int(config["association"]["min_stations"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return DEFAULT_MIN_STATIONS


def _stage_losses(
    run_dir: Path,
    truth: pd.DataFrame,
    truth_picks: pd.DataFrame,
    pick_truth: pd.Series | None,
    locations: pd.DataFrame | None,
    events: pd.DataFrame | None,
    matches: pd.DataFrame | None,
    detected: np.ndarray,
    mc_true: float | None,
) -> dict:
    """The per-stage loss table (:mod:`pipeline.score_losses`) of the scored event table."""
    assignments_path = run_dir / "association" / "assignments.parquet"
    assignments = (
        read_run_table(assignments_path, ("event_id", "pick_id"))
        if assignments_path.is_file()
        else None
    )
    tables = RunTables(pick_truth, assignments, locations, events)
    event_row = pd.Series(np.arange(len(truth)), index=truth.event_id.astype(str))
    true_event_index = (
        truth_picks.event_id.astype(str).map(event_row).fillna(-1).to_numpy(dtype=np.int64)
    )
    min_stations = _min_stations(run_dir)
    reached, reason = classify_true_events(
        len(truth), truth_picks, true_event_index, tables, detected, min_stations
    )
    enough = enough_picks(len(truth), truth_picks, true_event_index, pick_truth, min_stations)
    true_m = truth.magnitude.to_numpy(float)
    edges = np.arange(
        np.floor(np.nanmin(true_m, initial=0.0) / MAGNITUDE_BIN) * MAGNITUDE_BIN,
        np.nanmax(true_m, initial=0.0) + MAGNITUDE_BIN + 1e-9,
        MAGNITUDE_BIN,
    )
    rows = loss_rows(true_m, reached, reason, edges, enough)
    out = {"min_stations": min_stations, "by_magnitude": rows[:-1], "all": rows[-1]}
    out["above_mc_true"] = None
    if mc_true is not None:
        above = true_m >= mc_true - 0.05
        rows = loss_rows(true_m[above], reached[above], reason[above], np.array([]), enough[above])
        out["above_mc_true"] = rows[-1] | {"label": f">= Mc {mc_true:.1f}"}
    matched_run = np.zeros(0 if events is None else len(events), dtype=bool)
    if matches is not None and len(matches):
        matched_run[matches.run.to_numpy(int)] = True
    false = classify_false_events(tables, true_event_index, matched_run, detected)
    out["false_events"] = {"n": int((false != "").sum())} | {
        name: int((false == name).sum()) for name in FALSE_EVENT_CLASSES
    }
    return out


def _score_full_catalog(
    run_dir: Path, source: str | None, truth: pd.DataFrame, tol: tuple, mc_true: float | None
) -> dict | None:
    """Recall and precision of ``catalog/catalog_all.parquet`` (every event, all quality
    classes) when the scored table is the default catalog; None otherwise."""
    path = run_dir / "catalog" / "catalog_all.parquet"
    if source != "catalog/catalog.parquet" or not path.is_file():
        return None
    table = read_run_table(path, RUN_EVENT_COLUMNS)
    table["origin_time"] = pd.to_datetime(table.origin_time, utc=True)
    table = table[table[["latitude", "longitude"]].notna().all(axis=1)].reset_index(drop=True)
    matches = match_events(table, truth, *tol)
    detected = np.zeros(len(truth), dtype=bool)
    detected[matches.truth.to_numpy(int)] = True
    out = {
        "n_events": len(table),
        "n_matched": len(matches),
        "recall": _finite(len(matches) / len(truth)) if len(truth) else None,
        "precision": _finite(len(matches) / len(table)) if len(table) else None,
        "recall_above_mc_true": None,
    }
    if mc_true is not None:
        above = truth.magnitude.to_numpy(float) >= mc_true - 0.05
        out["recall_above_mc_true"] = _finite(detected[above].mean()) if above.any() else None
    return out


def check_mc_ref(mc_ref: float | None, truth: pd.DataFrame) -> None:
    """Refuse a reference magnitude that leaves no true event at/above it (``--mc-ref 20``
    wrote empty "at/above" figures, exit 0).

    Raises:
        EqcatInputError: naming the range of the true magnitudes.
    """
    magnitudes = truth.magnitude.to_numpy(float)
    if mc_ref is None or not len(magnitudes) or (magnitudes >= mc_ref - 0.05).any():
        return
    raise EqcatInputError(
        f"--mc-ref {mc_ref:g}: no true event at or above it (true magnitudes "
        f"{np.nanmin(magnitudes):.1f} to {np.nanmax(magnitudes):.1f})"
    )


def score_run(
    run_dir: Path,
    truth_dir: Path,
    time_tol_s: float = 2.0,
    distance_tol_km: float = 10.0,
    pick_tol_s: float = 0.5,
    mc_ref: float | None = None,
) -> dict:
    """Compute the truth table of ``run_dir`` against ``truth_dir``; write ``score.json``.

    ``mc_ref`` (magnitude, finite; negative magnitudes are real) fixes the cut of the
    "at/above Mc" figures; by default they use ``mc_true``. Returns the dict written (keys
    in the module docstring).

    Raises:
        EqcatInputError: a non-finite ``mc_ref`` or one above every true magnitude, a
            folder that is not a run (:func:`pipeline.rundir.require_run_dir`), unusable
            truth (:func:`read_truth`), a truth outside the run's time span
            (:func:`check_spans_overlap`) or an unreadable run table
            (:func:`pipeline.rundir.read_run_table`).
    """
    if mc_ref is not None and not math.isfinite(mc_ref):
        raise EqcatInputError(f"--mc-ref {mc_ref}: expected a finite magnitude")
    run_dir, notes = require_run_dir(run_dir), []
    truth, truth_picks, scenario = read_truth(truth_dir)
    truth = truth_in_span(truth, scenario)
    check_mc_ref(mc_ref, truth)
    tol = (time_tol_s, distance_tol_km)
    score: dict = {
        "run_dir": str(run_dir),
        "truth_dir": str(truth_dir),
        "tolerances": {
            "time_tol_s": time_tol_s,
            "distance_tol_km": distance_tol_km,
            "pick_tol_s": pick_tol_s,
        },
        "n_true_events": len(truth),
    }
    notes += damaged_run_notes(run_dir)
    events, source = _event_table(run_dir, notes)
    check_spans_overlap(events, truth, source, truth_dir)
    score["event_source"] = source
    score["n_detected_events"] = None if events is None else len(events)
    matches = match_events(events, truth, *tol) if events is not None else None
    true_m = truth.magnitude.to_numpy(float)
    detected = np.zeros(len(truth), dtype=bool)
    if matches is not None:
        detected[matches.truth.to_numpy(int)] = True
        score["n_matched_events"] = len(matches)
        score["recall"] = _finite(len(matches) / len(truth)) if len(truth) else None
        score["precision"] = _finite(len(matches) / len(events)) if len(events) else None
    else:
        score |= {"n_matched_events": None, "recall": None, "precision": None}
    score["by_location_stage"] = _by_location_stage(events, matches)
    bins = _by_magnitude(true_m, detected) if matches is not None else []
    score["by_magnitude"] = bins
    score["m_recall90"] = _m_recall90(bins)
    mc_true = _mc_b(true_m[detected])[0] if detected.sum() else None
    score["mc_true"], score["mc_ref"] = mc_true, mc_ref
    mc_cut = mc_true if mc_ref is None else mc_ref
    run_m = _magnitudes(run_dir, events, notes)
    score["recall_above_mc_true"] = score["precision_above_mc_true"] = None
    if mc_cut is not None and matches is not None:
        above = true_m >= mc_cut - 0.05
        score["recall_above_mc_true"] = _finite(detected[above].mean()) if above.any() else None
        if run_m is not None:
            run_above = run_m.to_numpy(float) >= mc_cut - 0.05
            matched_run = np.zeros(len(events), dtype=bool)
            matched_run[matches.run.to_numpy(int)] = True
            if run_above.any():
                score["precision_above_mc_true"] = _finite(matched_run[run_above].mean())

    picks_path = run_dir / "picks" / "picks.parquet"
    pick_truth = None
    if picks_path.is_file():
        run_picks = read_run_table(picks_path, PICK_COLUMNS)
        run_picks["time"] = pd.to_datetime(run_picks.time, utc=True)
        matched_picks = match_picks(run_picks, truth_picks, pick_tol_s)
        score["picks"] = pick_residuals(run_picks, truth_picks, pick_tol_s, matched_picks)
        pick_truth = pd.Series(matched_picks, index=run_picks.pick_id.astype(str).to_numpy())
    else:
        notes.append(f"picks: {picks_path} missing")
        score["picks"] = None

    locations = _read_table(run_dir / "location" / "locations.parquet", notes, "hypoinverse")
    score["stage_losses"] = _stage_losses(
        run_dir, truth, truth_picks, pick_truth, locations, events, matches, detected, mc_cut
    )
    score["catalog_all"] = _score_full_catalog(run_dir, source, truth, tol, mc_cut)
    score["hypoinverse"] = location_errors(locations, truth, "located", tol)
    relocations = _read_table(run_dir / "relocation" / "relocations.parquet", notes, "hypodd")
    score["hypodd"] = location_errors(relocations, truth, "relocated", tol)

    score["magnitude"] = None
    if run_m is not None and matches is not None and len(matches):
        diff = run_m.to_numpy(float)[matches.run] - true_m[matches.truth]
        diff = diff[np.isfinite(diff)]
        if diff.size:
            med = float(np.median(diff))
            score["magnitude"] = {
                "n": int(diff.size),
                "bias": _finite(med),
                "mean": _finite(diff.mean()),
                "mad": _finite(np.median(np.abs(diff - med))),
            }
    config = scenario.get("config", {})
    score["b_true"] = _finite(config.get("b_value")) if config else None
    mc, b, b_std = (None, None, None)
    if run_m is not None:
        finite = run_m.to_numpy(float)
        mc, b, b_std = _mc_b(finite[np.isfinite(finite)])
    score |= {"mc_recovered": mc, "b_recovered": b, "b_recovered_std": b_std}
    score["notes"] = notes
    write_text_atomic(run_dir / "score.json", json.dumps(score, indent=2))
    return score


def _fmt(value, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def _mc_cut_label(score: dict) -> str:
    """How the truth table names the magnitude cut of its "at/above" figures."""
    if score.get("mc_ref") is None:
        return f"true Mc {_fmt(score['mc_true'], '.1f')}"
    return f"reference M {score['mc_ref']:.1f} (true Mc {_fmt(score['mc_true'], '.1f')})"


def format_truth_table(score: dict) -> str:
    """The truth table as plain text (events by magnitude, picks, locations, magnitudes)."""
    lines = [
        f"Truth table  (events from {score.get('event_source') or '—'})",
        f"  events: true {score['n_true_events']}, detected {_fmt(score['n_detected_events'], 'd')}"
        f", matched {_fmt(score['n_matched_events'], 'd')}; recall {_fmt(score['recall'])},"
        f" precision {_fmt(score['precision'])}",
        f"  at/above {_mc_cut_label(score)}: recall "
        f"{_fmt(score['recall_above_mc_true'])}, precision {_fmt(score['precision_above_mc_true'])}"
        f"; 90% recall from M {_fmt(score['m_recall90'], '.1f')}",
    ]
    if score.get("by_location_stage"):
        lines.append(
            "  by location stage: "
            + "; ".join(
                f"{r['stage']} {r['n_matched']}/{r['n']} matched (precision {_fmt(r['precision'])})"
                for r in score["by_location_stage"]
            )
        )
    full = score.get("catalog_all")
    if full:
        lines.append(
            "  full catalog (catalog_all, every quality class): "
            f"{counted(full['n_events'], 'event')}, "
            f"{full['n_matched']} matched; recall {_fmt(full['recall'])}, precision "
            f"{_fmt(full['precision'])}, at/above the same cut recall "
            f"{_fmt(full['recall_above_mc_true'])}"
        )
    lines.append("  magnitude bin   true  detected  recall")
    for row in score["by_magnitude"]:
        lines.append(
            f"  [{row['m_low']:4.1f}, {row['m_high']:4.1f})  {row['n_true']:6d}  "
            f"{row['n_detected']:8d}  {row['recall']:6.2f}"
        )
    if score.get("stage_losses"):
        lines += format_loss_table(score["stage_losses"])
    lines.append("  picks     n   matched  precision  recall(snr>=50)  mean(s)  std(s)  MAE(s)")
    for phase, p in (score.get("picks") or {}).items():
        lines.append(
            f"  {phase}  {p['n_picks']:7d}  {p['n_matched']:7d}  {_fmt(p['precision']):>9}  "
            f"{_fmt(p['recall_high_snr']):>15}  {_fmt(p['mean_s'], '+.3f'):>7}  "
            f"{_fmt(p['std_s'], '.3f'):>6}  {_fmt(p['mae_s'], '.3f'):>6}"
        )
    for name in ("hypoinverse", "hypodd"):
        loc = score.get(name)
        if loc is None:
            lines.append(f"  {name}: —")
            continue
        lines.append(
            f"  {name}: {loc['n_located']} located, {loc['n_matched']} matched; median "
            f"epicentral error {_fmt(loc['median_epicentral_error_km'])} km, |depth error| "
            f"{_fmt(loc['median_abs_depth_error_km'])} km (bias "
            f"{_fmt(loc['median_depth_bias_km'], '+.2f')} km)"
        )
    mag = score.get("magnitude")
    lines.append(
        "  magnitude: —"
        if mag is None
        else f"  magnitude: n {mag['n']}, bias {mag['bias']:+.2f}, MAD {mag['mad']:.2f}"
    )
    lines.append(
        f"  Mc recovered {_fmt(score['mc_recovered'], '.1f')}"
        f" vs true {_fmt(score['mc_true'], '.1f')}"
        f";  b recovered {_fmt(score['b_recovered'])} ± {_fmt(score['b_recovered_std'])}"
        f" vs true {_fmt(score['b_true'])}"
    )
    lines += [f"  note: {n}" for n in score.get("notes", [])]
    return "\n".join(lines)
