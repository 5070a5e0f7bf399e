"""Location quality: station elevation delays for HypoInverse; what HypoDD takes over from
HypoInverse (rejected picks, S weight)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.location import LocationConfig
from pipeline.location.stage import station_table
from pipeline.relocation import hypodd_formats as fmt
from pipeline.relocation.params import HypoDDConfig, RelocationConfig
from pipeline.relocation.stage import (
    locator_outliers,
    prepare_inputs,
    s_weight_ratio,
    with_s_weight_ratio,
)
from pipeline.relocation.synthetic import make_cluster, write_run
from pipeline.rundir import RunDir
from pipeline.velocity import load_velocity_model


def _residuals(p_spread: float, s_spread: float, n: int = 40, seed: int = 0) -> pd.DataFrame:
    """HypoInverse-like residuals with median |residual| ``p_spread`` (P), ``s_spread`` (S)."""
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(2, n))
    return pd.DataFrame(
        {
            "pick_id": [f"p{i}" for i in range(2 * n)],
            "phase": ["P"] * n + ["S"] * n,
            "residual_s": np.concatenate([p_spread * signs[0], s_spread * signs[1]]),
            "weight": 1.0,
        }
    )


def test_s_weight_ratio_follows_the_residual_spreads():
    assert s_weight_ratio(_residuals(0.08, 0.10)) == pytest.approx(0.8)
    assert s_weight_ratio(_residuals(0.07, 0.05)) == 1.0  # S never above P a priori
    assert s_weight_ratio(_residuals(0.05, 0.20)) == 0.5  # no less than example 1's half
    assert s_weight_ratio(_residuals(0.08, 0.10, n=5)) is None  # too few picks to judge
    assert s_weight_ratio(None) is None
    rejected = _residuals(0.08, 0.10).assign(weight=0.0)  # only weighted picks count
    assert s_weight_ratio(rejected) is None


def test_s_weight_ratio_rewrites_every_set():
    cfg = HypoDDConfig()
    scaled = with_s_weight_ratio(cfg, 0.8)
    for before, after in zip(cfg.iterations, scaled.iterations, strict=True):
        assert after.wtcts == pytest.approx(0.8 * before.wtctp)
        assert after.wtccs == pytest.approx(0.8 * before.wtccp)
        assert (after.wtctp, after.damp, after.wrct) == (before.wtctp, before.damp, before.wrct)
    assert with_s_weight_ratio(cfg, None) is cfg
    with pytest.raises(ValueError, match="s_weight_ratio"):
        HypoDDConfig(s_weight_ratio=-1.0)


def test_locator_outliers_are_zero_weight_picks():
    table = _residuals(0.1, 0.1, n=3)
    table.loc[[1, 4], "weight"] = 0.0
    assert locator_outliers(table) == {"p1", "p4"}
    assert locator_outliers(None) == set()


def test_prepare_inputs_drops_rejected_picks_and_scales_s(tmp_path):
    """With location/phase_residuals.parquet present, the picks HypoInverse rejected are not
    in phase.dat and hypoDD.inp carries the residual-based S weight."""
    model = load_velocity_model("tottori")
    scenario = make_cluster(model, n_events=8, n_stations=6, seed=3)
    run = RunDir(tmp_path / "run")
    write_run(run, scenario, waveforms=False)
    assignments = pd.read_parquet(run.path("association", "assignments.parquet"))
    residuals = pd.DataFrame(
        {
            "pick_id": assignments["pick_id"].astype(str).to_numpy(),
            "phase": assignments["phase"].to_numpy(),
            "residual_s": np.where(assignments["phase"] == "P", 0.08, -0.10),
            "weight": 1.0,
        }
    )
    residuals.loc[0, "weight"] = 0.0
    residuals.to_parquet(run.path("location", "phase_residuals.parquet"), index=False)
    cfg = RelocationConfig(engine="python", cross_correlation={"enabled": False})

    prep = prepare_inputs(run, cfg, model)
    assert prep.locator_outliers_dropped == 1
    assert "location/phase_residuals.parquet" in prep.input_hashes
    _, phases = fmt.read_phase_dat(run.path("relocation", "phase.dat"))
    assert len(phases) == len(assignments) - 1
    assert prep.s_weight_ratio == pytest.approx(0.8)
    rows = [
        line.split()
        for line in run.path("relocation", "hypoDD.inp").read_text().splitlines()
        if len(line.split()) == 10 and not line.startswith("*")
    ]
    assert len(rows) == len(cfg.hypodd.iterations)
    for row in rows:  # NITER WTCCP WTCCS WRCC WDCC WTCTP WTCTS WRCT WDCT DAMP
        assert float(row[6]) == pytest.approx(prep.s_weight_ratio * float(row[5]), abs=1e-3)

    kept = RelocationConfig(
        engine="python",
        cross_correlation={"enabled": False},
        drop_locator_outliers=False,
        hypodd={"s_weight_ratio": None},
    )
    prep = prepare_inputs(run, kept, model)
    assert prep.locator_outliers_dropped == 0 and prep.s_weight_ratio is None
    _, phases = fmt.read_phase_dat(run.path("relocation", "phase.dat"))
    assert len(phases) == len(assignments)  # the rejected pick is back


def test_station_delays_carry_the_elevation_correction():
    """CRH ignores elevations: the station file's P delay gets elevation / Vp(top layer)."""
    stations = pd.DataFrame(
        {
            "network": "TT",
            "station": ["HIGH", "LOW"],
            "location": "",
            "channel_prefix": "HH",
            "latitude": 35.3,
            "longitude": 133.4,
            "elevation_m": [550.0, -110.0],
            "p_delay_s": [0.05, 0.0],
        }
    )
    delays = [float(line[49:54]) / 100 for line in station_table(stations, 5.5).text.splitlines()]
    assert delays == pytest.approx([0.05 + 0.10, -0.02])
    plain = [float(line[49:54]) / 100 for line in station_table(stations).text.splitlines()]
    assert plain == pytest.approx([0.05, 0.0])
    assert LocationConfig().elevation_correction
