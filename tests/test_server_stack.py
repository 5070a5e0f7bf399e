"""Scheduled builds on a real server stack, without Docker.

PostgreSQL from Debian's package (a fresh cluster on a temporary data directory, port on
127.0.0.1, started as the ``postgres`` user when the test runs as root), ``prefect server
start`` on it, a process work pool and a worker, the deployment of ``prefect.yaml`` made with
``prefect deploy``, and flow runs of it on a short span of the demo scenario (4 stations,
STA/LTA picker, 23:40-00:10 UTC across a day boundary):

1. a run up to 00:00 picks the 4 station-days of the first day;
2. a run extended to 00:10 picks only the 4 new station-days (the first day's pick files are
   not rewritten); its worker is killed (SIGKILL, worker and flow-run process) once the
   picks are merged and the later stages run;
3. a new worker and a new run of the same span finish it: no station-day is picked again,
   and its catalog equals the one of an uninterrupted build of the same config.

The same commands are in the README ("Server deployment without Docker"). Nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPLOYMENT = "extend_catalog/eqcat-daily"
FIRST_END, SECOND_END = "2000-10-09T00:00:00+00:00", "2000-10-09T00:10:00+00:00"
RUN_TIMEOUT_S = 300

pytestmark = pytest.mark.slow


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("PostgreSQL is not installed (scripts/setup.sh --test-tools installs it)")
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh --test-tools installs it)")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(check, timeout_s: float, what: str, step_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def _descendants(pid: int) -> list[int]:
    """Process ids of all descendants of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL cluster on 127.0.0.1 with a ``prefect`` database; yields the URL."""
    pg_bin = _pg_bin()
    as_user = []
    root = Path(tempfile.mkdtemp(prefix="eqcat-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(
        [*as_user, pg_bin / "initdb", "-D", data, "-U", "postgres", "-A", "trust"], **run
    )
    options = f"-h 127.0.0.1 -p {port} -k {root}"
    subprocess.run(
        [*as_user, pg_bin / "pg_ctl", "-D", data, "-o", options, "-l", root / "log", "-w", "start"],
        **run,
    )
    try:
        subprocess.run(
            [pg_bin / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "prefect"],
            **run,
        )
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run([*as_user, pg_bin / "pg_ctl", "-D", data, "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(postgres, tmp_path_factory):
    """Prefect server on PostgreSQL, work pool, deployment; yields (env, api url, folder)."""
    home = tmp_path_factory.mktemp("prefect")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait(lambda: _healthy(api), 180, "prefect server health")
        run = {"env": env, "cwd": REPO, "check": True, "capture_output": True, "text": True}
        subprocess.run(
            [BIN / "prefect", "work-pool", "create", "eqcat", "--type", "process"], **run
        )
        # The repository's prefect.yaml, with the checkout as working directory and the
        # test's build config as parameter.
        spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
        spec["pull"] = [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]
        [deployment] = spec["deployments"]
        deployment["parameters"] = {"config_path": str(_build_config(home)), "days": 1}
        prefect_file = home / "prefect.yaml"
        prefect_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
        out = subprocess.run(
            [BIN / "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", prefect_file],
            **run,
        )
        assert "eqcat-daily" in out.stdout + out.stderr
        yield env, api, home
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).json() is True
    except (httpx.HTTPError, ValueError):
        return False


def _build_config(folder: Path) -> Path:
    """The demo scenario cut to 4 stations and 23:40-00:10 UTC, STA/LTA picker."""
    spec = yaml.safe_load((REPO / "station_configs" / "demo.yaml").read_text(encoding="utf-8"))
    spec.update(
        name="served",
        starttime="2000-10-08T23:40:00",
        endtime="2000-10-09T00:00:00",
        output_dir=str(folder / "runs"),
        picking={"picker": "stalta"},
    )
    spec["scenario"].update(start_time="2000-10-08T23:40:00", duration_s=1800, max_stations=4)
    path = folder / "served.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


#: Seconds between a worker's queries for scheduled runs (Prefect's default, 10 s, left each
#: triggered run waiting up to 10 s for its worker to notice it).
WORKER_QUERY_S = 1


def _start_worker(env: dict, home: Path, label: str) -> subprocess.Popen:
    log = (home / f"worker-{label}.log").open("w")
    return subprocess.Popen(
        [BIN / "prefect", "worker", "start", "--pool", "eqcat", "--type", "process"],
        env={**env, "PREFECT_WORKER_QUERY_SECONDS": str(WORKER_QUERY_S)},
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and every process it started (the flow run)."""
    for pid in [*_descendants(worker.pid), worker.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.wait(30)


def _trigger(api: str, end: str) -> str:
    deployment = httpx.get(f"{api}/deployments/name/{DEPLOYMENT}", timeout=30).json()
    parameters = {**deployment["parameters"], "end": end}
    flow_run = httpx.post(
        f"{api}/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": parameters},
        timeout=30,
    ).json()
    return flow_run["id"]


def _state(api: str, flow_run_id: str) -> str:
    return httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=30).json()["state"]["type"]


def _finish(api: str, flow_run_id: str) -> str:
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    return _wait(
        lambda: (s := _state(api, flow_run_id)) in final and s, RUN_TIMEOUT_S, "flow run", 0.25
    )


def _pick_files(run_dir: Path) -> dict[str, int]:
    """Station-day pick tables -> mtime (ns)."""
    return {
        p.relative_to(run_dir).as_posix(): p.stat().st_mtime_ns
        for p in (run_dir / "picks").rglob("*.parquet")
        if p.name != "picks.parquet"
    }


def test_served_builds_extend_and_recover(stack):
    env, api, home = stack
    run_dir = home / "runs" / "served"
    worker = _start_worker(env, home, "1")
    try:
        # 1. Up to 00:00: the 4 station-days of 2000-10-08.
        assert _finish(api, _trigger(api, FIRST_END)) == "COMPLETED"
        first = _pick_files(run_dir)
        assert len(first) == 4 and all(p.endswith(".2000-10-08.parquet") for p in first), first

        # 2. Extended to 00:10: only the 4 station-days of 2000-10-09 are picked; the worker
        # is killed once the merged picks are written and the later stages run.
        merged = run_dir / "picks" / "picks.parquet"
        merged_before = merged.stat().st_mtime_ns
        catalog = run_dir / "catalog" / "catalog.parquet"
        catalog_before = catalog.stat().st_mtime_ns
        second_id = _trigger(api, SECOND_END)
        _wait(
            lambda: merged.stat().st_mtime_ns != merged_before, RUN_TIMEOUT_S, "picks merged", 0.1
        )
        _kill(worker)
        assert _state(api, second_id) == "RUNNING"  # killed: the server never heard the end
        second = _pick_files(run_dir)
        assert len(second) == 8 and sum(p.endswith(".2000-10-09.parquet") for p in second) == 4
        assert {p: second[p] for p in first} == first  # day 1 not picked again
        # The killed run had not reached its catalog (the first run's is there, or none).
        assert not catalog.exists() or catalog.stat().st_mtime_ns == catalog_before

        # 3. A new worker and a new run of the same span finish the build.
        worker = _start_worker(env, home, "2")
        assert _finish(api, _trigger(api, SECOND_END)) == "COMPLETED"
        assert _pick_files(run_dir) == second  # no station-day picked again
    finally:
        _kill(worker)
    recovered = pd.read_parquet(run_dir / "catalog" / "catalog.parquet")

    # Reference: an uninterrupted build of the same (scheduled) config elsewhere.
    spec = yaml.safe_load((run_dir / "config.scheduled.yaml").read_text(encoding="utf-8"))
    assert pd.Timestamp(spec["endtime"]) == pd.Timestamp(SECOND_END)
    spec["output_dir"] = str(home / "reference")
    reference_cfg = home / "reference.yaml"
    reference_cfg.write_text(yaml.safe_dump(spec), encoding="utf-8")
    subprocess.run(
        [BIN / "eqcat", "build", reference_cfg], env=env, cwd=REPO, check=True, timeout=600
    )
    reference = pd.read_parquet(home / "reference" / "served" / "catalog" / "catalog.parquet")
    day2 = recovered["origin_time"] >= pd.Timestamp("2000-10-09", tz="UTC")
    print(f"recovered catalog: {len(recovered)} events, {int(day2.sum())} on the new day")
    assert day2.sum() > 0 and (~day2).sum() > 0  # the extended span, both days
    pd.testing.assert_frame_equal(recovered, reference)
