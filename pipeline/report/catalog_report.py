"""Completeness report of any catalog (``eqcat mc``): ``index.html`` + figures + JSON.

The page carries the same completeness section as a build's report (FMD, Mc by method with
bootstrap intervals, b with its uncertainty, Mc(t)/b(t), b versus cut-off; the shared
functions of :mod:`pipeline.report.html`) with a summary of the source file and the filters.
Layout of ``out_dir``: ``index.html``, ``completeness.json``, ``figures/*.png``.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import pandas as pd

from pipeline.catalog_io import CatalogFilter
from pipeline.completeness import CompletenessConfig, CompletenessResult, analyze_magnitudes
from pipeline.report.html import (
    _fmt,
    _table,
    completeness_figures,
    render_completeness_section,
    render_page,
)
from pipeline.rundir import write_text_atomic


def write_catalog_report(
    events: pd.DataFrame,
    out_dir: str | Path,
    source: str | Path,
    *,
    n_read: int | None = None,
    selection: CatalogFilter | None = None,
    cfg: CompletenessConfig | None = None,
    title: str | None = None,
) -> tuple[Path, CompletenessResult]:
    """Analyse ``events`` and write the completeness report into ``out_dir``.

    Args:
        events: :data:`pipeline.catalog_io.EVENT_COLUMNS` table (already filtered).
        out_dir: report folder (created).
        source: the catalog file, for the page and the JSON.
        n_read: events in the file before filtering (defaults to ``len(events)``).
        selection: the filter applied, described on the page.
        cfg: Mc/b settings (defaults when None).
        title: page title (default "Completeness of <file name>").

    Returns:
        (path of ``index.html``, the completeness result).
    """
    out = Path(out_dir)
    source = Path(source)
    selection = selection or CatalogFilter()
    title = title or f"Completeness of {source.name}"
    times = events["origin_time"] if events["origin_time"].notna().any() else None
    result = analyze_magnitudes(events["magnitude"], times, cfg)
    figs = completeness_figures(result, out / "figures")

    span = "–"
    if times is not None:
        span = f"{times.min():%Y-%m-%d %H:%M} – {times.max():%Y-%m-%d %H:%M} UTC"
    types = events["magnitude_type"].fillna("").value_counts()
    types = types[types.index != ""]
    summary = {
        "source": str(source),
        "events_read": int(len(events) if n_read is None else n_read),
        "filters": selection.describe(),
        "events_selected": int(len(events)),
        "time_span": span,
        "magnitude_types": {str(k): int(v) for k, v in types.items()},
    }
    numbers = {
        "summary": summary,
        "completeness": result.to_dict(),
        "figures": [str(p.relative_to(out)) for _, p in figs],
    }
    write_text_atomic(
        out / "completeness.json", json.dumps(numbers, indent=2, allow_nan=False, default=str)
    )
    rows = [
        ("Catalog", f"<code>{html.escape(str(source))}</code>"),
        ("Events read", str(summary["events_read"])),
        ("Filters", _fmt(summary["filters"])),
        ("Events selected", str(summary["events_selected"])),
        ("Time span", _fmt(span)),
        (
            "Magnitude types",
            _fmt(", ".join(f"{k}: {v}" for k, v in summary["magnitude_types"].items()) or "–"),
        ),
    ]
    sources = [(caption, p.relative_to(out).as_posix()) for caption, p in figs]
    body = f"""<p>Written by <code>eqcat mc</code> {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.
All numbers are in <a href="completeness.json">completeness.json</a>.</p>
<h2>Summary</h2>
{_table(rows)}
{render_completeness_section(result, None, sources)}"""  # noqa: E501
    return write_text_atomic(out / "index.html", render_page(title, body)), result
