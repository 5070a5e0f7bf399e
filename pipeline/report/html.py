"""``report/index.html``: summary table, completeness numbers and figures of a run.

The page is self-contained for offline viewing: PNG figures sit beside it in
``report/figures/`` and are linked relatively; there are no scripts, fonts or styles from
the internet. ``report/completeness.json`` holds every number the page shows.
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
from pydantic import BaseModel, ConfigDict, Field

from pipeline.catalog import _picks_path, arrival_residuals, assemble_catalog
from pipeline.completeness import (
    CompletenessConfig,
    CompletenessResult,
    analyze_magnitudes,
    json_clean,
    read_catalog_csv,
)
from pipeline.report import figures
from pipeline.rundir import RunDir, write_text_atomic

log = logging.getLogger(__name__)


class ReferenceCatalog(BaseModel):
    """A reference catalog to compare with (e.g. the JMA catalog of the same span).

    Give the numbers directly, or ``path`` to a catalog CSV (``magnitude`` column) from which
    the number of events and Mc/b are computed with the same settings as the run's.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="label in the report, e.g. 'JMA'")
    n_events: int | None = Field(None, ge=0, description="number of events in the reference")
    mc: float | None = Field(None, description="reference Mc")
    b: float | None = Field(None, description="reference b-value")
    path: Path | None = Field(None, description="reference catalog CSV (optional)")
    magnitude_column: str = Field("magnitude", description="magnitude column of the CSV")


class ReportConfig(BaseModel):
    """HTML report settings."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field("eqcat catalog report", description="page title")
    completeness: CompletenessConfig = Field(
        default_factory=CompletenessConfig, description="Mc / b-value settings"
    )
    reference: ReferenceCatalog | None = Field(None, description="catalog to compare with")
    map_color_by: Literal["origin_time", "depth_km"] = Field(
        "origin_time", description="colour of the epicentre map"
    )


def _load_catalog(run: RunDir) -> pd.DataFrame:
    path = run.root / "catalog" / "catalog.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    return assemble_catalog(run)[0]


def _quality_class_counts(run: RunDir) -> dict[str, int]:
    """Events per quality class in ``catalog/catalog_all.parquet`` ({} when absent)."""
    path = run.root / "catalog" / "catalog_all.parquet"
    if not path.is_file():
        return {}
    classes = pd.read_parquet(path, columns=["quality_class"])["quality_class"]
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
        mags, _ = read_catalog_csv(ref.path, ref.magnitude_column, time_column=None)
        res = analyze_magnitudes(mags, cfg=cfg.completeness)
        out["n_events"] = res.n_valid if ref.n_events is None else ref.n_events
        out["mc"] = res.mc_selected if ref.mc is None else ref.mc
        out["b"] = res.b if ref.b is None else ref.b
        out["computed"] = res.to_dict()
        out["location_quality"] = location_quality(pd.read_csv(ref.path))
    return json_clean(out), res


def _comparison_rows(
    summary: dict[str, Any], result: CompletenessResult, reference: dict[str, Any]
) -> list[tuple[str, str]]:
    """Rows "this run vs reference": events, Mc, b and location quality."""
    own, other = summary["location_quality"], reference.get("location_quality") or {}
    rows = [
        ("Catalog", f"this run vs {_fmt(reference['name'])}"),
        ("Events", f"{summary['events']} vs {_fmt(reference.get('n_events'))}"),
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


def data_gaps(run: RunDir) -> dict[str, str]:
    """Station-days that failed (download or picking) per the manifest: label -> reason."""
    manifest = run.read_manifest()
    gaps: dict[str, str] = {}
    for stage in ("waveforms", "picks"):
        failures = manifest.get(stage, {}).get("details", {}).get("failures", {})
        if isinstance(failures, dict):
            gaps.update({k: f"{stage}: {v}" for k, v in failures.items()})
        elif isinstance(failures, list):
            gaps.update({str(f): stage for f in failures})
    return gaps


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


CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 4px 10px; text-align: left; }
th { background: #eef; }
figure { margin: 1.5em 0; }
img { max-width: 100%; border: 1px solid #ddd; }
.warn { color: #a00; font-weight: bold; }
"""


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
    picks = pd.read_parquet(picks_path) if picks_path else pd.DataFrame()
    stations_path = run.root / "waveforms" / "stations.csv"
    stations = pd.read_csv(stations_path) if stations_path.is_file() else None
    residuals = arrival_residuals(run)

    result = analyze_magnitudes(catalog["magnitude"], catalog["origin_time"], cfg.completeness)
    reference, reference_result = _reference(cfg)

    figs: list[tuple[str, Path]] = [
        (
            "Frequency–magnitude distribution",
            figures.plot_fmd(
                result,
                fig_dir / "fmd.png",
                reference=reference_result,
                reference_name=cfg.reference.name if cfg.reference else "",
            ),
        ),
        ("Mc and b through time", figures.plot_mc_b_time(result, fig_dir / "mc_b_time.png")),
        (
            "b versus cut-off magnitude",
            figures.plot_b_vs_cutoff(result, fig_dir / "b_vs_cutoff.png"),
        ),
        (
            "Epicentres",
            figures.plot_epicentres(
                catalog, stations, fig_dir / "map.png", color_by=cfg.map_color_by
            ),
        ),
        ("Depth sections", figures.plot_depth_sections(catalog, fig_dir / "depth_sections.png")),
        ("Events per day", figures.plot_events_per_day(catalog, fig_dir / "events_per_day.png")),
    ]
    if not picks.empty:
        by_phase = {p: picks[picks["phase"].str.upper().str[0] == p] for p in ("P", "S")}
        prob = {f"{p} probability": t.get("probability") for p, t in by_phase.items()}
        prob.update(
            {
                f"{p} probability std (MC dropout)": t.get("probability_std")
                for p, t in by_phase.items()
            }
        )
        unc = {f"{p} pick time std (s)": t.get("time_std_s") for p, t in by_phase.items()}
        figs.append(
            (
                "Pick probabilities",
                figures.plot_histograms(
                    prob, fig_dir / "pick_probability.png", "Pick probabilities"
                ),
            )
        )
        figs.append(
            (
                "Pick-time uncertainties",
                figures.plot_histograms(
                    unc, fig_dir / "pick_uncertainty.png", "Pick-time uncertainties (MC dropout)"
                ),
            )
        )
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
        "events": int(len(catalog)),
        "events_with_magnitude": int(catalog["magnitude"].notna().sum()),
        "events_by_location_stage": catalog["location_stage"].value_counts().to_dict(),
        "events_by_quality_class": _quality_class_counts(run),
        "picks": int(len(picks)),
        "stations": int(len(stations)) if stations is not None else None,
        "time_span": span,
        "magnitude_types": sorted(set(catalog["magnitude_type"].dropna()) - {""}),
        "data_gaps": data_gaps(run),
        "location_quality": location_quality(catalog),
    }
    numbers = {
        "summary": summary,
        "completeness": result.to_dict(),
        "reference": reference,
        "figures": [str(p.relative_to(out)) for _, p in figs],
    }
    write_text_atomic(
        out / "completeness.json", json.dumps(numbers, indent=2, allow_nan=False, default=str)
    )

    b_text = (
        f"{result.b:.2f} ± {result.b_std:.2f} (Shi &amp; Bolt); bootstrap "
        f"{_fmt(result.b_ci_low)} – {_fmt(result.b_ci_high)}"
        if result.estimable
        else f"<span class='warn'>{_fmt(result.reason)}</span>"
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
        (
            "Magnitudes",
            f"{result.n_valid} valid, {result.n_nan} missing (excluded); "
            f"type {_fmt(', '.join(summary['magnitude_types']) or '–')}",
        ),
        ("Mc used for b", f"{_fmt(result.mc_selected, 1)} ({_fmt(result.mc_method or '')})"),
        ("b-value", b_text),
        ("a-value", f"{_fmt(result.a)} (N ≥ Mc: {result.n_above_mc})"),
        (
            "Failed station-days",
            "<span class='warn'>"
            + html.escape("; ".join(f"{k}: {v}" for k, v in summary["data_gaps"].items()))
            + "</span>"
            if summary["data_gaps"]
            else "none",
        ),
    ]
    ref_html = ""
    if reference is not None:
        ref_rows = _comparison_rows(summary, result, reference)
        ref_html = "<h2>Comparison with the reference catalog</h2>\n" + _table(ref_rows)
    fig_html = "\n".join(
        f"<figure><img src='{p.relative_to(out).as_posix()}' alt='{html.escape(t)}'>"
        f"<figcaption>{html.escape(t)}</figcaption></figure>"
        for t, p in figs
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(cfg.title)}</title><style>{CSS}</style></head>
<body>
<h1>{html.escape(cfg.title)}</h1>
<p>Run <code>{html.escape(run.root.name)}</code>, written {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.
All numbers are in <a href="completeness.json">completeness.json</a>.</p>
<h2>Summary</h2>
{_table(rows)}
<h2>Magnitude of completeness</h2>
<p>Magnitude bin {result.delta_m:g}; MAXC correction {result.config["maxc_correction"]:+g};
{result.config["n_bootstrap"]} bootstrap resamples (seed {result.config["seed"]}).</p>
{_mc_table(result, reference)}
{ref_html}
<h2>Figures</h2>
{fig_html}
</body></html>
"""  # noqa: E501
    path = write_text_atomic(out / "index.html", page)
    run.record_stage(
        "report",
        outputs=[str(p.relative_to(run.root)) for p in [path, out / "completeness.json"]]
        + [str(p.relative_to(run.root)) for _, p in figs],
        counts={"events": summary["events"], "figures": len(figs)},
        wall_time_s=time.monotonic() - started,
        details={"mc": result.mc_selected, "b": result.b, "estimable": result.estimable},
    )
    return path
