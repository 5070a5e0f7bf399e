"""Smoke tests of the eqcat command line, run as a real subprocess."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _eqcat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_help_lists_commands():
    result = _eqcat("--help")
    assert result.returncode == 0
    for command in ("validate", "install-weights"):
        assert command in result.stdout


def test_validate_good_config():
    result = _eqcat("validate", "station_configs/example_fdsn.yaml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_validate_bad_config_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstarttime: 2000-01-01\nendtime: 2000-01-02\nwibble: 3\n")
    result = _eqcat("validate", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown key 'wibble'" in result.stderr
