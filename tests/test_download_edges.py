"""Edges of serving scheduled builds that need no data server."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
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


def _restricted_config(tmp_path: Path) -> Path:
    """A build of one inline station from a restricted FDSN service (nothing listens there:
    the account is checked before any request)."""
    spec = {
        "name": "nightly",
        "starttime": "2024-02-03T00:00:00",
        "endtime": "2024-02-03T01:00:00",
        "output_dir": str(tmp_path / "runs"),
        "stations": {
            "kind": "inline",
            "stations": [
                {"network": "XX", "station": "A", "latitude": 0.0, "longitude": 0.0},
            ],
        },
        "waveforms": {
            "source": {"kind": "fdsn", "base_url": "http://127.0.0.1:19", "restricted": True}
        },
    }
    config = tmp_path / "nightly.yaml"
    config.write_text(yaml.safe_dump(spec))
    return config


def _hold_run_dir(run_dir: Path) -> subprocess.Popen:
    """Another process holding ``run_dir`` (a scheduled run still going on); returns once
    it holds it."""
    code = (
        "import sys, time\n"
        "from pipeline.rundir import RunDir\n"
        "with RunDir(sys.argv[1]).exclusive():\n"
        "    print('held', flush=True); time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_scheduled_run_stopped_by_input_ends_failed_in_one_line(
    prefect_server, tmp_path, monkeypatch
):
    """A scheduled run stopped by an input problem — half an account in the worker's
    environment (FDSN_USER without FDSN_PASSWORD), the run directory held by a run still going
    on, a config edited into an invalid one — logged Prefect's traceback once per flow (the
    stage's, the build's, its own) and raised; now it ends Failed with the problem's line as
    its message, and no traceback."""
    from datetime import datetime

    from flows.scheduled import extend_catalog

    config = _restricted_config(tmp_path)
    monkeypatch.setenv("FDSN_USER", "alice")
    monkeypatch.delenv("FDSN_PASSWORD", raising=False)
    end = datetime(2024, 2, 4)
    console = io.StringIO()  # a console of the flow-run process (eqcat serve, a worker)
    handler = logging.StreamHandler(console)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.getLogger("prefect").addHandler(handler)
    monkeypatch.setattr(logging.getLogger("prefect"), "level", logging.INFO)

    state = extend_catalog(str(config), days=1, end=end, return_state=True)
    assert state.is_failed()
    assert state.message == (
        "waveforms.source (http://127.0.0.1:19, restricted) needs credentials: FDSN_PASSWORD "
        "is not set (or empty) while FDSN_USER is; set both, or name a secret in "
        "waveforms.source.secret_block"
    )

    holder = _hold_run_dir(tmp_path / "runs" / "nightly")
    try:
        state = extend_catalog(str(config), days=1, end=end, return_state=True)
    finally:
        holder.kill()
        holder.wait()
    assert state.is_failed()
    assert "runs/nightly: in use by another eqcat build (pid " in state.message

    config.write_text(config.read_text().replace("name: nightly", "name: night ly"))
    state = extend_catalog(str(config), days=1, end=end, return_state=True)
    assert state.is_failed()
    assert state.message.startswith(f"{config}: name = 'night ly': must be 1-64 characters")

    logging.getLogger("prefect").removeHandler(handler)
    text = console.getvalue()
    assert (
        "Finished in state Failed('waveforms.source (http://127.0.0.1:19, restricted) needs "
        "credentials: FDSN_PASSWORD is not set" in text
    )
    assert "Traceback" not in text and "Encountered exception" not in text


def test_scheduled_run_without_data_says_so_in_its_log(prefect_server, tmp_path):
    """A scheduled run over a span without any data finished "Completed" with nothing in its
    log about the data (``eqcat build`` prints its data lines, a scheduled run has no
    terminal); now it logs them, naming each station, day and what was wrong."""
    from datetime import datetime

    from flows.scheduled import extend_catalog

    (tmp_path / "sds").mkdir()
    spec = yaml.safe_load(_restricted_config(tmp_path).read_text())
    spec["waveforms"] = {"source": {"kind": "sds", "path": str(tmp_path / "sds")}}
    spec["picking"] = {"picker": "stalta"}
    config = tmp_path / "nightly.yaml"
    config.write_text(yaml.safe_dump(spec))
    console = io.StringIO()
    handler = logging.StreamHandler(console)
    logging.getLogger("prefect").addHandler(handler)
    try:
        state = extend_catalog(str(config), days=1, end=datetime(2024, 2, 4), return_state=True)
    finally:
        logging.getLogger("prefect").removeHandler(handler)
    assert state.is_completed()
    assert "data: problems at 1 station(s): XX.A (3 channel-days; " in console.getvalue()
    assert "2024-02-03: no data file" in console.getvalue()
