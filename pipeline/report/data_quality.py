"""The report's data-quality section: what the waveforms of each station were like.

Built from ``<run>/waveforms/quality.parquet`` (one row per channel-day,
:mod:`pipeline.waveforms.quality`), the picks table and the manifest. One row per station
(:data:`STATION_COLUMNS`):

================= ======================================================================
station           ``NET.STA`` (``NET.STA.LOC`` with a location code)
channels          channel codes assessed
data_s            seconds with data on the station's best-covered channel, summed over days
gap_s             seconds of the requested span without data on that channel
flat              channels that are flat (dead: constant value) on some day
clipped           channels with clipped samples, with their count
missing           channels without any data in the span (no file, or no sample in the span)
truncated         channels whose data stop early or start late
picks             picks of the station
picks_per_hour    picks / data hours (NaN without data)
problems          every flagged channel-day reason, '; '-joined ('' when none)
================= ======================================================================

A station with problems is listed in the report summary next to the failed station-days,
so the page never says "none" over a dead or missing station. When the catalog is empty,
:func:`empty_catalog_reason` says why (no data, dead data, no picks, no association).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.catalog import RELIABLE_CLASSES
from pipeline.rundir import RunDir, read_run_table

STATION_COLUMNS = [
    "station",
    "channels",
    "data_s",
    "gap_s",
    "flat",
    "clipped",
    "missing",
    "truncated",
    "picks",
    "picks_per_hour",
    "problems",
]


@dataclass
class DataQuality:
    """The data-quality findings of a run.

    Attributes:
        stations: one row per station (:data:`STATION_COLUMNS`); empty without a quality table.
        problems: station label -> its problems, for the stations that have any.
        empty_reason: why the catalog has no event (None when it has events).
        source: the quality table read (None when the run has none).
    """

    stations: pd.DataFrame
    problems: dict[str, str] = field(default_factory=dict)
    empty_reason: str | None = None
    source: Path | None = None

    def to_dict(self) -> dict:
        """JSON-able summary for ``completeness.json``."""
        rows = self.stations.astype(object).where(self.stations.notna(), None)
        return {
            "quality_table": str(self.source) if self.source else None,
            "stations": rows.to_dict(orient="records"),
            "problems": self.problems,
            "empty_reason": self.empty_reason,
        }


def _station_label(table: pd.DataFrame) -> pd.Series:
    """``NET.STA`` or ``NET.STA.LOC`` (with a location code) per row."""
    location = table["location"].fillna("") if "location" in table else ""
    label = table["network"] + "." + table["station"]
    return label.where(location == "", label + "." + location)


def station_quality(quality: pd.DataFrame, picks: pd.DataFrame) -> pd.DataFrame:
    """Per-station summary (:data:`STATION_COLUMNS`) of a quality table and the picks."""
    if quality.empty:
        return pd.DataFrame(columns=STATION_COLUMNS)
    quality = quality.assign(label=_station_label(quality))
    pick_counts = pd.Series(dtype=int)
    if not picks.empty:
        pick_counts = _station_label(picks).value_counts()
    rows = []
    for label, group in quality.groupby("label", sort=True):
        per_day = group.groupby("day").agg(best=("data_s", "max"), span=("span_s", "first"))
        data_s = float(per_day["best"].sum())
        gap_s = float((per_day["span"] - per_day["best"]).clip(lower=0).sum())
        by_channel = group.groupby("channel")
        missing = [c for c, g in by_channel if (g["n_samples"] == 0).all()]
        flat = sorted(group.loc[group["flat"], "channel"].unique())
        clipped = [
            f"{c} ({int(g['clipped_samples'].sum())})" for c, g in by_channel if g["clipped"].any()
        ]
        truncated = sorted(group.loc[group["reason"].str.contains("truncated"), "channel"].unique())
        flagged = group[group["flagged"]]
        problems = "; ".join(
            f"{r.channel} {r.day:%Y-%m-%d}: {r.reason}" for r in flagged.itertuples(index=False)
        )
        if missing and len(missing) == by_channel.ngroups:
            problems = "no data at all in the span; " + problems
        n_picks = int(pick_counts.get(label, 0))
        rows.append(
            {
                "station": label,
                "channels": ", ".join(sorted(group["channel"].unique())),
                "data_s": data_s,
                "gap_s": gap_s,
                "flat": ", ".join(flat),
                "clipped": ", ".join(clipped),
                "missing": ", ".join(missing),
                "truncated": ", ".join(truncated),
                "picks": n_picks,
                "picks_per_hour": n_picks / (data_s / 3600.0) if data_s > 0 else math.nan,
                "problems": problems,
            }
        )
    return pd.DataFrame(rows, columns=STATION_COLUMNS)


def empty_catalog_reason(
    run: RunDir, quality: pd.DataFrame | None, picks: pd.DataFrame, n_events: int
) -> str | None:
    """Why a run's catalog has no event, in one sentence; None when it has events."""
    if n_events > 0:
        return None
    if quality is not None and not quality.empty:
        with_data = quality[quality["n_samples"] > 0]
        if with_data.empty:
            return "no waveform data in the requested span: every channel-day is missing or empty"
        if with_data["flat"].all():
            return "every channel with data is flat (dead: constant value); nothing to pick"
    if picks.empty:
        return "the picker found no pick in the waveform data"
    manifest = run.read_manifest()
    associated = manifest.get("association", {}).get("counts", {}).get("events")
    n_stations = picks.drop_duplicates(["network", "station"]).shape[0]
    if not associated:
        phases = picks["phase"].value_counts() if "phase" in picks else pd.Series(dtype=int)
        n_p, n_s = int(phases.get("P", 0)), int(phases.get("S", 0))
        config = manifest.get("association", {}).get("details", {}).get("config")
        why = _minimum_out_of_reach(picks, config)
        if why is None and "phase" in picks and not (n_p and n_s):
            missing = "P" if not n_p else "S"
            why = f"no {missing} pick at all; the associator's minimums count P and S picks"
        why = why or "too few stations with coinciding picks"
        return (
            f"{len(picks)} picks ({n_p} P, {n_s} S) at {n_stations} station(s), but the "
            f"associator formed no event from them ({why})"
        )
    located = manifest.get("catalog", {}).get("counts", {}).get("events_all")
    if located:
        return (
            f"{located} event(s) have a hypocentre, but none is of quality class "
            f"{' or '.join(RELIABLE_CLASSES)}; catalog/catalog_all.csv holds them all"
        )
    return f"{associated} associated event(s), but none has a hypocentre"


#: What each per-event minimum (:func:`pipeline.association.params.minimums`) counts, over
#: stations: an event holds at most one P and one S pick per station.
_MINIMUM_COUNTS = {
    "n_p_picks": "stations with P picks",
    "n_s_picks": "stations with S picks",
    "n_p_and_s_picks": "stations with both P and S picks",
    "min_stations": "stations with picks",
    "n_picks": "station-phases with a pick",
}


def _minimum_out_of_reach(picks: pd.DataFrame, config: dict | None) -> str | None:
    """The first of the associator's per-event minimums that all the picks together do not
    reach (so no event could), naming the setting; None when each is within reach or the
    association section is unknown (``config``: the manifest's copy of it)."""
    if not config or "phase" not in picks:
        return None
    from pipeline.association.params import AssociationConfig, minimums

    cfg = AssociationConfig.model_validate(config)
    station = picks["network"].astype(str) + "." + picks["station"].astype(str)
    p_st, s_st = set(station[picks["phase"] == "P"]), set(station[picks["phase"] == "S"])
    have = {
        "n_picks": len(p_st) + len(s_st),
        "n_p_picks": len(p_st),
        "n_s_picks": len(s_st),
        "n_p_and_s_picks": len(p_st & s_st),
        "min_stations": len(p_st | s_st),
    }
    need_of = minimums(cfg)
    for name in sorted(need_of, key=list(_MINIMUM_COUNTS).index):  # phases first
        need = need_of[name]
        if have[name] < need:
            field = (
                f"association.pyocto.{name}"
                if cfg.associator == "pyocto" and name != "min_stations"
                else "association.min_stations"
            )
            return (
                f"{have[name]} {_MINIMUM_COUNTS[name]} in all, fewer than the {need} an event "
                f"of the {cfg.associator} associator needs ({field} = {need})"
            )
    return None


def assess(run: RunDir, picks: pd.DataFrame, n_events: int) -> DataQuality:
    """The data-quality findings of ``run`` (reads ``waveforms/quality.parquet`` if present)."""
    path = run.root / "waveforms" / "quality.parquet"
    quality = read_run_table(path) if path.is_file() else None
    if quality is not None and "reason" not in quality:  # a table from before the reasons
        quality = None
    stations = station_quality(quality if quality is not None else pd.DataFrame(), picks)
    problems = {r.station: r.problems for r in stations.itertuples(index=False) if r.problems}
    return DataQuality(
        stations=stations,
        problems=problems,
        empty_reason=empty_catalog_reason(run, quality, picks, n_events),
        source=path if quality is not None else None,
    )


def data_gaps(run: RunDir) -> dict[str, str]:
    """What the stages could not use, per the manifest: label -> reason.

    Station-days that failed (download or picking) or that the picker skipped (every
    component dead), stations the download skipped (no channel matching the priorities,
    invalid codes), HypoInverse trial-depth starts that failed, a relocation whose engine
    failed (HypoInverse locations kept), duplicate picks the association left out and
    stations the magnitude stage skipped (no instrument response).
    """
    manifest = run.read_manifest()
    gaps: dict[str, str] = {}
    for stage in ("waveforms", "picks", "association", "location", "relocation", "magnitude"):
        details = manifest.get(stage, {}).get("details", {})
        failures = details.get("failures", {})
        if isinstance(failures, dict):
            gaps.update({k: f"{stage}: {v}" for k, v in failures.items()})
        elif isinstance(failures, list):
            gaps.update({str(f): stage for f in failures})
        skipped = details.get("skipped", {})
        if isinstance(skipped, dict):
            gaps.update({k: f"{stage}: {v}" for k, v in skipped.items()})
    return gaps


def station_notes(run: RunDir) -> dict[str, str]:
    """What a user should know about stations the build used, per the manifest:
    ``NET.STA`` -> note. From the download (entries far apart, channels that leave part of
    the span uncovered; :func:`pipeline.waveforms.inventory.select_channels`) and from the
    picker (a component missing or dead and picked as zeros, horizontals rotated by their
    azimuths, a stretch dead within the data taken as a gap;
    :func:`pipeline.picking.preprocess.preprocess_stream`), several joined by "; ". Not
    failures: these stations are used, so they are kept apart from :func:`data_gaps`."""
    manifest = run.read_manifest()
    details = manifest.get("waveforms", {}).get("details", {})
    notes = details.get("station_notes", {})
    out = {str(k): str(v) for k, v in notes.items()} if isinstance(notes, dict) else {}
    picked = manifest.get("picks", {}).get("details", {}).get("notes", [])
    for note in picked if isinstance(picked, list) else []:
        source, _, text = str(note).partition(": ")
        label = ".".join(source.split(".")[:2])  # NET.STA of 'NET.STA.LOC' or a channel id
        text = f"{source}: {text}" if source.count(".") == 3 else text  # keep the channel
        out[label] = f"{out[label]}; {text}" if label in out else text
    return out


#: Most failed or skipped units a terminal line names before "and N more".
TERMINAL_MAX_NAMED = 8


def _named(labels: list[str]) -> str:
    shown = ", ".join(labels[:TERMINAL_MAX_NAMED])
    more = len(labels) - TERMINAL_MAX_NAMED
    return shown + (f" and {more} more" if more > 0 else "")


def terminal_lines(run: RunDir) -> list[str]:
    """What went wrong with the data, one line per kind, for the end of a build's output.

    Why the catalog is empty (the report's reason, :func:`empty_catalog_reason`), failed or
    skipped station-days and stations (:func:`data_gaps`), notes on stations used
    (:func:`station_notes`) and the stations with flagged channel-days in
    ``waveforms/quality.parquet``; [] when nothing went wrong.
    """
    lines = []
    reason = _empty_reason_reported(run)
    if reason:
        lines.append(f"catalog: no events: {reason}")
    gaps = data_gaps(run)
    if gaps:
        lines.append(
            f"data: {len(gaps)} failed or skipped: "
            + _named([f"{label} ({why})" for label, why in gaps.items()])
        )
    notes = station_notes(run)
    if notes:
        lines.append(
            f"data: notes on {len(notes)} station(s) used: "
            + _named([f"{label} ({note})" for label, note in notes.items()])
        )
    path = run.root / "waveforms" / "quality.parquet"
    quality = read_run_table(path) if path.is_file() else pd.DataFrame()
    if {"flagged", "reason"} <= set(quality.columns) and quality["flagged"].any():
        problems = station_problems(quality[quality["flagged"]])
        lines.append(
            f"data: problems at {len(problems)} station(s): "
            + _named([f"{label} ({what})" for label, what in problems.items()])
            + "; all in the report's Data quality section"
        )
    return lines


def _empty_reason_reported(run: RunDir) -> str | None:
    """The empty-catalog reason of the run's report (``report/completeness.json``), None when
    the catalog has events or no report was written."""
    path = run.root / "report" / "completeness.json"
    try:
        numbers = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    reason = numbers.get("summary", {}).get("data_quality", {}).get("empty_reason")
    return str(reason) if reason else None


def station_problems(flagged: pd.DataFrame) -> dict[str, str]:
    """Per station (label, sorted) of flagged quality rows: how many channel-days are
    flagged and the first one's channel, day and first problem, e.g. ``2 channel-days; HHZ
    2000-10-08: no file``; the terminal names the problem itself, not a list of kinds."""
    out = {}
    labels = _station_label(flagged)
    for label in sorted(set(labels)):
        rows = flagged[labels == label].sort_values(["day", "channel"])
        first = rows.iloc[0]
        day = pd.Timestamp(first["day"]).strftime("%Y-%m-%d") if "day" in rows else ""
        problem = first["reason"].split("; ")[0]
        problem = problem if len(problem) <= 160 else problem[:159] + "…"  # an ObsPy error
        what = f"{first.get('channel', '')} {day}".strip() + ": " + problem
        out[label] = (f"{len(rows)} channel-days; " if len(rows) > 1 else "") + what
    return out


def notes_cell(notes: dict[str, str]) -> str:
    """HTML of the summary's "Station notes" cell (:func:`station_notes`)."""
    return _folded_cell([f"{label}: {note}" for label, note in notes.items()])


def _folded_cell(parts: list[str]) -> str:
    """HTML of a summary cell listing ``parts``: "none" when empty; the first
    :data:`TERMINAL_MAX_NAMED` shown and the others folded into a ``<details>`` element (a
    build with hundreds of them keeps a readable summary and loses none)."""
    if not parts:
        return "none"
    shown, folded = parts[:TERMINAL_MAX_NAMED], parts[TERMINAL_MAX_NAMED:]
    cell = "<span class='warn'>" + html.escape("; ".join(shown)) + "</span>"
    if folded:
        cell += (
            f"<details><summary>and {len(folded)} more</summary>"
            + "<br>".join(html.escape(part) for part in folded)
            + "</details>"
        )
    return cell


def failures_cell(failed: dict[str, str], dq: DataQuality) -> str:
    """HTML of the summary's "Failures and data problems" cell: failures and stations with problems.

    The first :data:`TERMINAL_MAX_NAMED` failures are shown; the others fold into a
    ``<details>`` element (a build with hundreds of failed station-days keeps a readable
    summary and loses none of them).
    """
    parts = [f"{k}: {v}" for k, v in failed.items()]
    if dq.problems:
        parts.insert(
            0,
            f"data problems at {len(dq.problems)} station(s): {', '.join(dq.problems)} "
            "(see Data quality)",
        )
    return _folded_cell(parts)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return (
            "–" if not math.isfinite(value) else f"{value:.0f}" if value >= 10 else f"{value:.2f}"
        )
    return html.escape(str(value)) if value not in ("", None) else "–"


def section_html(dq: DataQuality) -> str:
    """The ``<h2>Data quality</h2>`` section: why the catalog is empty, then the station table."""
    out = ["<h2>Data quality</h2>"]
    if dq.empty_reason:
        out.append(f"<p class='warn'>No events: {html.escape(dq.empty_reason)}.</p>")
    if dq.source is None:
        out.append("<p>No quality table (<code>waveforms/quality.parquet</code>) in this run.</p>")
        return "\n".join(out)
    heads = {
        "station": "station",
        "data_s": "data (s)",
        "gap_s": "gap (s)",
        "flat": "flat / dead",
        "clipped": "clipped (samples)",
        "missing": "missing components",
        "truncated": "truncated",
        "picks_per_hour": "picks per hour",
        "problems": "problems",
    }
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in heads.values()) + "</tr>"
    body = []
    for row in dq.stations.itertuples(index=False):
        cls = " class='warn'" if row.problems else ""
        cells = "".join(f"<td>{_cell(getattr(row, k))}</td>" for k in heads)
        body.append(f"<tr{cls}>{cells}</tr>")
    n_bad = len(dq.problems)
    dead_note = (
        " A flat (dead) component is treated by the picker as a missing one (zeros, as "
        "EQTransformer's predictor does); a station-day with every component dead is not "
        "picked."
        if (dq.stations["flat"] != "").any()
        else ""
    )
    out.append(
        f"<p>{len(dq.stations)} station(s); {n_bad} with data problems "
        "(from <code>waveforms/quality.parquet</code>, one row per channel-day with a "
        f"<code>reason</code>).{dead_note}</p>"
    )
    out.append("<table>\n" + head + "\n" + "\n".join(body) + "\n</table>")
    return "\n".join(out)
