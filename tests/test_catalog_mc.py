"""``eqcat mc`` on real public catalogs: QuakeML and CSV layouts, filters, errors, screenshot.

Catalogs (real, public; shipped inside the seismostats 1.0.1 wheel from PyPI, a dev
dependency, and referenced in place, never copied into this repository):

- ``seismostats/catalogs/tests/data/query_full.xml``: QuakeML of an FDSN event query to the
  Swiss Seismological Service (SED), 93 events, 2024-01-01 – 2024-01-12, MLhc.
- ``seismostats/analysis/tests/data/catalog_sed.csv``: SED catalog of 2023, 1,924 events
  (time, latitude, longitude, depth in metres, magnitude, magnitude_type). The tests write it
  in the ComCat export layout (``time,latitude,longitude,depth,mag,magType,...``, depth in km)
  and in eqcat's own ``catalog.csv`` layout.

Mc (MAXC, MBS) and b are cross-checked against seismostats on the same magnitudes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.catalog_io import CatalogFilter, CatalogReadError, filter_catalog, read_catalog

seismostats = pytest.importorskip("seismostats")
DATA = Path(seismostats.__file__).parent
QUAKEML = DATA / "catalogs" / "tests" / "data" / "query_full.xml"
SED_CSV = DATA / "analysis" / "tests" / "data" / "catalog_sed.csv"
REPO = Path(__file__).resolve().parents[1]


def _eqcat(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "mc", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=180,
    )


def _sed() -> pd.DataFrame:
    return pd.read_csv(SED_CSV)


def _comcat_csv(path: Path) -> Path:
    """The SED catalog in the ComCat CSV export layout (depth km, ISO times with Z)."""
    sed = _sed()
    pd.DataFrame(
        {
            "time": pd.to_datetime(sed["time"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "latitude": sed["latitude"],
            "longitude": sed["longitude"],
            "depth": sed["depth"] / 1000.0,
            "mag": sed["magnitude"],
            "magType": sed["magnitude_type"],
            "nst": "",
            "gap": "",
            "net": "ch",
            "id": [f"ch{i}" for i in range(len(sed))],
            "type": sed["event_type"],
        }
    ).to_csv(path, index=False)
    return path


def _eqcat_csv(path: Path) -> Path:
    """The SED catalog in eqcat's catalog.csv layout."""
    sed = _sed()
    pd.DataFrame(
        {
            "event_id": np.arange(len(sed)),
            "origin_time": sed["time"],
            "latitude": sed["latitude"],
            "longitude": sed["longitude"],
            "depth_km": sed["depth"] / 1000.0,
            "magnitude": sed["magnitude"],
            "magnitude_type": sed["magnitude_type"],
        }
    ).to_csv(path, index=False)
    return path


def test_quakeml_report(tmp_path):
    import obspy

    events = read_catalog(QUAKEML)
    expected = [
        (e.preferred_magnitude() or e.magnitudes[0]).mag for e in obspy.read_events(QUAKEML)
    ]
    assert events["magnitude"].tolist() == pytest.approx(expected)
    assert events["origin_time"].notna().all() and (events["depth_km"] < 50).all()

    done = _eqcat(QUAKEML, "--out", tmp_path / "report")
    assert done.returncode == 0, done.stderr
    assert "93 of 93 events selected" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("report: ")
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Magnitude of completeness" in page and "bootstrap interval" in page
    numbers = json.loads((tmp_path / "report" / "completeness.json").read_text())
    assert numbers["completeness"]["n_valid"] == 93
    for name in ("fmd", "b_vs_cutoff"):
        assert (tmp_path / "report" / "figures" / f"{name}.png").stat().st_size > 10_000
    # 93 events: Mc(t)/b(t) is a figure too (a placeholder while windows need more events).
    assert (tmp_path / "report" / "figures" / "mc_b_time.png").is_file()


def _seismostats_check(mags: np.ndarray, numbers: dict) -> None:
    """MAXC, MBS and b at MBS from seismostats equal ours on ``mags``."""
    from seismostats import analysis
    from seismostats.utils import bin_to_precision

    delta_m = 0.1
    binned = bin_to_precision(mags, delta_m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss_maxc, _ = analysis.estimate_mc_maxc(binned, delta_m, correction_factor=0.2)
        ss_mbs, _ = analysis.estimate_mc_b_stability(
            binned, delta_m, b_method=analysis.UtsuBValueEstimator
        )
        ss_b, ss_std = analysis.estimate_b(
            binned[binned >= ss_mbs - delta_m / 2],
            ss_mbs,
            delta_m,
            method=analysis.UtsuBValueEstimator,
            return_std=True,
        )
    ours = numbers["completeness"]
    assert ours["mc"]["maxc"]["mc"] == pytest.approx(ss_maxc, abs=1e-9)
    assert ours["mc"]["mbs"]["mc"] == pytest.approx(ss_mbs, abs=1e-9)
    cut = ours["b_by_cutoff"]
    at = int(np.argmin(np.abs(np.asarray(cut["mc"]) - ss_mbs)))
    assert cut["b"][at] == pytest.approx(ss_b, rel=1e-9)
    assert cut["b_std"][at] == pytest.approx(ss_std, rel=1e-6)


@pytest.mark.parametrize("layout", ["comcat", "eqcat"])
def test_csv_layouts_agree_with_seismostats(tmp_path, layout):
    csv = (_comcat_csv if layout == "comcat" else _eqcat_csv)(tmp_path / f"{layout}.csv")
    events = read_catalog(csv)
    sed = _sed()
    assert len(events) == len(sed)
    assert events["depth_km"].max() == pytest.approx(sed["depth"].max() / 1000.0)

    done = _eqcat(csv, "--magnitude-type", "MLhc", "--out", tmp_path / "mc")
    assert done.returncode == 0, done.stderr
    numbers = json.loads((tmp_path / "mc" / "completeness.json").read_text())
    kept = sed["magnitude_type"] == "MLhc"
    assert numbers["summary"]["events_selected"] == int(kept.sum()) < len(sed)
    assert numbers["completeness"]["time_windows"], "a year of events gives Mc(t)/b(t)"
    _seismostats_check(sed.loc[kept, "magnitude"].to_numpy(), numbers)


def test_filters(tmp_path):
    csv = _comcat_csv(tmp_path / "comcat.csv")
    events = read_catalog(csv)
    box = CatalogFilter(
        starttime=pd.Timestamp("2023-06-01", tz="UTC"),
        endtime=pd.Timestamp("2023-09-01", tz="UTC"),
        minlatitude=46.0,
        maxlatitude=47.0,
        minlongitude=7.0,
        maxlongitude=9.0,
    )
    kept = filter_catalog(events, box, csv)
    sed = _sed()
    t = pd.to_datetime(sed["time"], utc=True)
    expected = (
        (t >= box.starttime)
        & (t < box.endtime)
        & sed["latitude"].between(46.0, 47.0)
        & sed["longitude"].between(7.0, 9.0)
    )
    assert 0 < len(kept) == int(expected.sum())
    assert "46 ≤ latitude ≤ 47" in box.describe()

    done = _eqcat(
        csv, "--start", "2023-06-01", "--end", "2023-09-01", "--min-latitude", "46",
        "--max-latitude", "47", "--min-longitude", "7", "--max-longitude", "9",
        "--out", tmp_path / "box",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{len(kept)} of {len(sed)} events selected" in done.stdout

    no_position = tmp_path / "mags.csv"
    pd.DataFrame({"mag": sed["magnitude"]}).to_csv(no_position, index=False)
    with pytest.raises(
        CatalogReadError, match=r"mags\.csv: --min-latitude needs an event latitude"
    ):
        filter_catalog(read_catalog(no_position), CatalogFilter(minlatitude=46.0), no_position)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"bad\.csv: empty file"),
        ("time,latitude,longitude,depth,size\n2024-01-01T00:00:00Z,46,7,5,1.2\n", r"no magnitude"),
        (
            "time,mag\n2024-01-01T00:00:00Z,1.2\n2024-01-02T00:00:00Z,\n2024-01-03T00:00:00Z,M2\n",
            r"bad\.csv: non-numeric magnitude 'M2' in row 3 \(line 4\)",
        ),
        ("time,mag\nyesterday,1.2\n", r"unreadable time 'yesterday' in row 1"),
        ("time,mag\n08/10/2000 05:00:00,1.2\n", r"unreadable time '08/10/2000 05:00:00'"),
        ("time,mag\n", r"bad\.csv: no events"),
        ("<?xml version='1.0'?><broken", r"bad\.csv: not readable as QuakeML"),
        (
            "time,mag\n2024-01-01T00:00:00Z,1.2\n2024-01-02T00:00:00Z,-999\n",
            r"bad\.csv: magnitude -999 in row 2 \(line 3\) is outside \[-10, 10\]",
        ),
    ],
)
def test_bad_input_one_line_error(tmp_path, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    with pytest.raises(CatalogReadError, match=message):
        read_catalog(bad)
    done = _eqcat(bad, "--out", tmp_path / "out")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "bad.csv" in done.stderr


def test_missing_file_and_missing_column_option(tmp_path):
    done = _eqcat(tmp_path / "nope.xml")
    assert done.returncode == 2 and "nope.xml: catalog file not found" in done.stderr
    csv = _comcat_csv(tmp_path / "comcat.csv")
    done = _eqcat(csv, "--magnitude-column", "ML")
    assert done.returncode == 2
    assert "comcat.csv: no column 'ML' (columns: time, latitude" in done.stderr


def test_report_screenshot_not_empty(tmp_path):
    import browser

    done = _eqcat(QUAKEML, "--out", tmp_path / "report")
    assert done.returncode == 0, done.stderr
    pixels = browser.screenshot(
        tmp_path / "report" / "index.html", tmp_path / "shot.png", height=2000
    )
    assert pixels.shape == (2000, 1200, 3)
    # Not a blank page: text, tables and figures give many dark and coloured pixels.
    dark = (pixels.mean(axis=-1) < 128).mean()
    assert dark > 0.005, f"only {dark:.2%} dark pixels"
    assert pixels.std() > 10


def test_mixed_magnitude_types_are_named_and_a_missing_mc_is_a_dash(tmp_path):
    """A CSV of ML and Mw events gave Mc and b of the mixture without a word; a method that
    found no Mc printed "nan" beside a bootstrap interval."""
    from pipeline.catalog_io import mixed_magnitude_types
    from pipeline.cli import _mc_line
    from pipeline.completeness import McEstimate

    table = pd.DataFrame({"magnitude_type": ["ML", "Mw", "ml", "ML", "", None]})
    assert mixed_magnitude_types(table) == (
        "mixed magnitude types (ML: 3, Mw: 1): Mc and b mix their scales; keep one with "
        "--magnitude-type ML"
    )
    assert mixed_magnitude_types(table.iloc[[0, 2, 4]]) is None
    none_found = McEstimate(method="gft95", mc=float("nan"), reason="no candidate Mc")
    none_found.ci_low, none_found.ci_high, none_found.bootstrap_found_fraction = 1.2, 1.4, 0.12
    assert _mc_line(none_found) == (
        "—  [1.2, 1.4]  (no candidate Mc; found in 12% of the bootstrap resamples)"
    )
    assert _mc_line(McEstimate(method="maxc", mc=1.4)) == "1.4"


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_csv_with_another_separator_reads_like_a_comma_one(tmp_path, sep):
    """A spreadsheet export separated by ';' (or tabs) was refused with "no magnitude column"
    listing one column named 'time;mag;...'."""
    rows = ["time,mag,magType", "2024-01-01T00:00:00Z,1.2,ML", "2024-01-02T12:30:00+01:00,2.5,ML"]
    comma, other = tmp_path / "comma.csv", tmp_path / "other.csv"
    comma.write_text("\n".join(rows) + "\n")
    other.write_text("\n".join(r.replace(",", sep) for r in rows) + "\n")
    pd.testing.assert_frame_equal(read_catalog(other), read_catalog(comma))
    assert read_catalog(comma)["origin_time"].iloc[1] == pd.Timestamp("2024-01-02T11:30Z")
