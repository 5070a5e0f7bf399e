"""The embedded default: the synthetic Tottori-like replica, built with EQTransformer and with
the STA/LTA baseline on the same waveforms, each scored against the ground truth.

This reproduces, on the replica, the comparison of the EQTransformer paper (Mousavi et al.
2020): how many more events, and how much lower an Mc, the deep-learning picker gives than a
classic STA/LTA picker on the same data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flows.build import build_catalog
from pipeline.config import REPO_ROOT, load_config
from pipeline.rundir import write_text_atomic
from pipeline.score import score_run

DEMO_CONFIG = REPO_ROOT / "station_configs" / "demo.yaml"


def _write_config(path: Path, spec: dict[str, Any]) -> Path:
    write_text_atomic(path, yaml.safe_dump(spec, sort_keys=False))
    return path


def demo_configs(out: Path) -> tuple[Path, Path]:
    """Write the EQTransformer and STA/LTA demo configs into ``out``; return their paths.

    The STA/LTA build reads the EQTransformer build's generated archive in place (``sds``
    source + its StationXML), and the EQTransformer report shows the STA/LTA catalog as its
    reference.
    """
    out = out.resolve()
    spec = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    spec["output_dir"] = str(out)
    eqt_run = out / spec["name"]
    stalta = {k: v for k, v in spec.items() if k != "scenario"}
    stalta_name = f"{spec['name']}_stalta"
    stalta.update(
        name=stalta_name,
        description="STA/LTA baseline on the same synthetic waveforms",
        stations={"kind": "stationxml", "path": str(eqt_run / "waveforms" / "inventory.xml")},
        waveforms={"source": {"kind": "sds", "path": str(eqt_run / "waveforms")}},
        picking={**spec.get("picking", {}), "picker": "stalta"},
    )
    spec["report"] = {
        **spec.get("report", {}),
        "reference": {
            "name": "STA/LTA baseline (same data)",
            "path": str(out / stalta_name / "catalog" / "catalog.csv"),
        },
    }
    return _write_config(out / "demo.yaml", spec), _write_config(out / "demo_stalta.yaml", stalta)


def run_demo(out: Path) -> dict[str, dict]:
    """Generate the replica, build both catalogs and score both: {"eqt": ..., "stalta": ...}."""
    eqt_config, stalta_config = demo_configs(Path(out))
    build_catalog(str(eqt_config), stage="download")
    build_catalog(str(stalta_config))
    build_catalog(str(eqt_config))
    scores = {}
    for key, config in (("eqt", eqt_config), ("stalta", stalta_config)):
        run_dir = load_config(config).run_dir
        truth = load_config(eqt_config).run_dir / "truth"
        scores[key] = score_run(run_dir, truth)
    return scores


def _with_stage_counts(score: dict) -> dict:
    """``score`` plus ``hypodd_n`` / ``hypodd_n_matched``: catalog events HypoDD relocated.

    Events with only a HypoInverse or associator origin are mostly the poorly constrained
    ones (and most false events); the relocated ones are the well-constrained catalog.
    """
    stages = {row["stage"]: row for row in score.get("by_location_stage") or []}
    hypodd = stages.get("hypodd", {"n": 0, "n_matched": 0}) if stages else {}
    return {**score, "hypodd_n": hypodd.get("n"), "hypodd_n_matched": hypodd.get("n_matched")}


def format_comparison(scores: dict[str, dict]) -> str:
    """EQTransformer vs STA/LTA side by side (events, recall, precision, Mc, b, locations)."""

    def cell(score: dict, *keys: str, spec: str = ".2f") -> str:
        value: Any = score
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return "—" if value is None else format(value, spec)

    rows = [
        ("catalog events", ("n_detected_events",), "d"),
        ("matched true events", ("n_matched_events",), "d"),
        ("events relocated by HypoDD", ("hypodd_n",), "d"),
        ("events relocated by HypoDD, matched", ("hypodd_n_matched",), "d"),
        ("event recall", ("recall",), ".2f"),
        ("event precision", ("precision",), ".2f"),
        ("recall at/above true Mc", ("recall_above_mc_true",), ".2f"),
        ("Mc recovered", ("mc_recovered",), ".1f"),
        ("b recovered", ("b_recovered",), ".2f"),
        ("P picks", ("picks", "P", "n_picks"), "d"),
        ("P pick MAE (s)", ("picks", "P", "mae_s"), ".3f"),
        (
            "HypoInverse median epicentral error (km)",
            ("hypoinverse", "median_epicentral_error_km"),
            ".2f",
        ),
        ("HypoDD median epicentral error (km)", ("hypodd", "median_epicentral_error_km"), ".2f"),
    ]
    scores = {name: _with_stage_counts(score) for name, score in scores.items()}
    width = max(len(r[0]) for r in rows)
    lines = [f"{'EQTransformer vs STA/LTA (same data)':{width}s}  {'EQT':>8s}  {'STA/LTA':>8s}"]
    for label, keys, spec in rows:
        lines.append(
            f"{label:{width}s}  {cell(scores['eqt'], *keys, spec=spec):>8s}  "
            f"{cell(scores['stalta'], *keys, spec=spec):>8s}"
        )
    return "\n".join(lines)
