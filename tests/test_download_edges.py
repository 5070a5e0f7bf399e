"""Edges of serving scheduled builds that need no data server."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from flows import scheduled
from pipeline.cli import app

REPO = Path(__file__).resolve().parents[1]


def test_serve_refuses_what_validate_refuses_before_serving(tmp_path, monkeypatch):
    """A config naming a missing StationXML failed at every scheduled run; now at once."""
    served = []
    monkeypatch.setattr(scheduled.extend_catalog, "serve", lambda **kw: served.append(kw))
    spec = yaml.safe_load((REPO / "station_configs" / "example_fdsn.yaml").read_text())
    spec["stations"] = {"kind": "stationxml", "path": str(tmp_path / "missing.xml")}
    spec["output_dir"] = str(tmp_path / "runs")
    config = tmp_path / "nightly.yaml"
    config.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["serve", str(config)])
    assert result.exit_code == 2, result.output
    assert "StationXML file not found" in result.output
    assert served == []
