"""The quality-class diagnosis against the truth (pipeline/catalog_diagnose.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.catalog import quality_classes
from pipeline.catalog_diagnose import diagnose_classes, failing_limits, main, summarize

T0 = pd.Timestamp("2000-10-08T05:00:00", tz="UTC")
GOOD = {
    "location_stage": "hypoinverse",
    "n_p": 5,
    "n_s": 4,
    "n_stations": 5,
    "azimuthal_gap_deg": 120.0,
    "rms_s": 0.1,
    "horizontal_error_km": 0.5,
    "vertical_error_km": 1.0,
    "nearest_station_km": 5.0,
    "magnitude": 1.0,
}


def _catalog(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table["event_id"] = [f"ev{k}" for k in range(len(table))]
    table["quality_class"] = quality_classes(table)
    return table


def test_failing_limits_name_each_b_limit_a_class_c_event_fails():
    catalog = _catalog(
        [
            GOOD,  # A
            GOOD | {"azimuthal_gap_deg": 250.0},  # C: gap
            GOOD | {"azimuthal_gap_deg": 250.0, "horizontal_error_km": 4.0},  # C: gap, ERH
            GOOD | {"n_p": 2, "n_s": 2, "nearest_station_km": 30.0},  # C: 4 readings, far
            GOOD | {"rms_s": float("nan")},  # C: unknown RMS fails
            GOOD | {"location_stage": "association"},  # D
        ]
    )
    assert list(catalog["quality_class"]) == ["A", "C", "C", "C", "C", "D"]
    assert list(failing_limits(catalog)) == ["", "gap", "gap+erh", "readings", "rms", "unlocated"]


def test_adds_counts_true_events_the_default_catalog_lacks():
    truth = pd.DataFrame(
        {
            "origin_time": T0 + pd.to_timedelta([0, 60, 120, 180], unit="s"),
            "latitude": 35.3,
            "longitude": 133.3,
            "magnitude": [1.2, 1.1, 0.5, 0.9],
        }
    )
    gap = {"azimuthal_gap_deg": 250.0}
    rows = [
        GOOD | {"origin_time": truth.origin_time[0]},  # A, true
        GOOD | gap | {"origin_time": truth.origin_time[1] + pd.Timedelta(0.5, "s")},  # adds
        GOOD | gap | {"origin_time": truth.origin_time[2]},  # true but below m_min
        GOOD | gap | {"origin_time": truth.origin_time[3] + pd.Timedelta(5, "s")},  # 5 s off
        GOOD | gap | {"origin_time": truth.origin_time[0] + pd.Timedelta(1, "s")},  # duplicate
    ]
    catalog = _catalog(rows).assign(latitude=35.3, longitude=133.32)
    table = diagnose_classes(catalog, truth, m_min=0.8)
    assert list(table["true"]) == [True, True, True, False, False]
    assert list(table["adds"]) == [False, True, False, False, False]
    np.testing.assert_allclose(table["true_magnitude"][:3], [1.2, 1.1, 0.5])
    summary = summarize(table).set_index(["quality_class", "failing"])
    assert summary.loc[("C", "gap"), ["n", "n_true", "adds"]].tolist() == [4, 2, 1]
    assert summary.loc[("C", "gap"), "true_share"] == 0.5
    assert summary.loc[("A", "all"), ["n", "n_true", "adds"]].tolist() == [1, 1, 0]


def test_a_run_without_catalog_is_an_input_error(tmp_path, capsys):
    (tmp_path / "picks").mkdir()  # a build that stopped after picking
    assert main([str(tmp_path)]) == 2
    assert "catalog_all.parquet" in capsys.readouterr().err
