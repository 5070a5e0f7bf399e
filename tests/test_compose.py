"""The deployment files: docker-compose.yml (validated by docker-compose 1.29) and prefect.yaml.

No Docker engine runs on the test machines: ``docker-compose config`` parses, validates and
normalises the file (interpolation, profiles, schema) without starting anything. Images,
health checks and the GPU reservation are not exercised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE = REPO_ROOT / "docker-compose.yml"


def _compose_cli() -> str:
    """Path of Debian's ``docker-compose`` (1.29); skip locally / fail in CI when absent."""
    exe = shutil.which("docker-compose")
    if exe is None:
        message = "docker-compose not installed (scripts/setup.sh --test-tools installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return exe


def _compose_config(*profiles: str) -> dict:
    """``docker-compose config`` of the repo's file with ``profiles`` enabled, parsed."""
    args = [_compose_cli(), "-f", str(COMPOSE)]
    for profile in profiles:
        args += ["--profile", profile]
    quiet = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    resolved = subprocess.run([*args, "config"], capture_output=True, text=True, timeout=60)
    assert resolved.returncode == 0, resolved.stderr
    return yaml.safe_load(resolved.stdout)


def test_compose_default_stack_is_valid():
    config = _compose_config()
    services = config["services"]
    assert {"postgres", "prefect-server", "worker"} <= set(services)
    # optional services stay behind their profiles (``config`` lists them with the profile)
    for name, profile in (
        ("gpu-worker", "gpu"),
        ("dask-scheduler", "dask"),
        ("dask-worker", "dask"),
    ):
        assert services[name]["profiles"] == [profile], name
    assert "profiles" not in services["worker"]
    server = services["prefect-server"]
    assert "postgresql+asyncpg://" in server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("postgres", "prefect-server", "worker"):
        assert "healthcheck" in services[name], name
    worker = services["worker"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert {v.split(":")[1] for v in worker["volumes"]} == {"/opt/eqcat/runs", "/models"}
    assert {"runs", "models", "postgres-data"} <= set(config["volumes"])


def test_compose_gpu_and_dask_profiles_are_valid():
    services = _compose_config("gpu", "dask")["services"]
    assert {"gpu-worker", "dask-scheduler", "dask-worker"} <= set(services)
    devices = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["gpu-worker"]["build"]["args"]["EXTRA"] == "gpu"
    assert "tcp://dask-scheduler:8786" in services["dask-worker"]["command"]


def test_prefect_yaml_entrypoint_resolves_to_the_scheduled_flow(monkeypatch):
    spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    (deployment,) = spec["deployments"]
    monkeypatch.chdir(REPO_ROOT)
    flow_obj = load_flow_from_entrypoint(deployment["entrypoint"])
    assert isinstance(flow_obj, Flow)
    assert flow_obj.name == "extend_catalog"
    assert set(deployment["parameters"]) <= set(flow_obj.parameters.properties)
    assert (REPO_ROOT / deployment["parameters"]["config_path"]).is_file()
    assert deployment["schedules"][0]["cron"] == "0 2 * * *"
    # the pull step's directory is the image's working directory (Dockerfile WORKDIR)
    workdir = spec["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"]
    assert f"WORKDIR {workdir}" in (REPO_ROOT / "Dockerfile").read_text()


def test_compose_workers_take_accounts_from_the_shell(monkeypatch):
    """Restricted-data accounts reach the workers from the environment that starts the
    stack (empty when unset), never from the file."""
    for name in ("FDSN_USER", "FDSN_PASSWORD", "HINET_USER", "HINET_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FDSN_USER", "alice")
    services = _compose_config("gpu")["services"]
    for name in ("worker", "gpu-worker"):
        env = services[name]["environment"]
        assert env["FDSN_USER"] == "alice", name
        assert env["FDSN_PASSWORD"] == env["HINET_USER"] == env["HINET_PASSWORD"] == "", name
    assert "alice" not in COMPOSE.read_text()
