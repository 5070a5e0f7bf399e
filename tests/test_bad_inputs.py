"""Bad input and interruptions through the real ``eqcat`` command (issue 15, items 6-9).

Every case runs ``eqcat`` as a subprocess, as a user would, and checks the exit status, that
the error is one line naming the file, field or station (no traceback), and that nothing
stale or half-written is left. Data: the real O2.WILZ record from ``../shared`` (cut to 10
minutes, in an SDS archive), HypoDD example 1 from ``../shared`` and a small cut of the
demo replica (the synthetic Tottori-like scenario, 4 stations, 20 minutes).

The last test stops a real build with SIGINT at the start of every stage in turn, resuming
each time, and checks that the final catalog is byte-identical to an uninterrupted build.

A build starts Prefect's ephemeral server unless ``PREFECT_API_URL`` names one; builds whose
subject is not that server report to the session's (``served_env``), which saves the
server's start in each of them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import shared_path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("download", "pick", "associate", "locate", "relocate", "magnitude", "report")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Environment of the subprocesses: this checkout first, a private Prefect home."""
    home = tmp_path_factory.mktemp("prefect_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


@pytest.fixture(scope="module")
def served_env(env, prefect_server) -> dict[str, str]:
    """``env`` reporting to the session's Prefect server (conftest ``prefect_server``), for
    builds where Prefect's ephemeral server is not what the test is about.

    A build of ``env`` starts its own ephemeral server, a child process whose start took
    15-25 s of every build here (2 cores, loaded); with ``PREFECT_API_URL`` set the build runs
    the same flows, tasks and cache against an already running server. The interrupt tests
    keep ``env`` for the runs that check that a signal also ends that child.
    """
    return {**env, "PREFECT_API_URL": os.environ["PREFECT_API_URL"]}


def eqcat(env, *args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=timeout,
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The ``error:`` lines of stderr, after checking there is no traceback."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_one_error(result, code: int, *needles: str) -> str:
    """Exit ``code``, exactly one ``error:`` line, and it contains every needle."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    lines = error_lines(result)
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def wilz_sds(tmp_path_factory) -> Path:
    """10 minutes of the real O2.WILZ record as an SDS archive."""
    from obspy import read

    root = tmp_path_factory.mktemp("sds")
    stream = read(str(shared_path("data", "continuous", "O2.WILZ") / "*.mseed"))
    start = max(tr.stats.starttime for tr in stream)
    stream.trim(start, start + 600)
    for tr in stream:
        s = tr.stats
        name = f"{s.network}.{s.station}.{s.location}.{s.channel}.D.{s.starttime.year}."
        name += f"{s.starttime.julday:03d}"
        path = root / str(s.starttime.year) / s.network / s.station / f"{s.channel}.D" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tr.write(str(path), format="MSEED")
    return root


def write_config(folder: Path, name: str, **fields) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **fields}, sort_keys=False))
    return path


def wilz_config(folder: Path, sds: Path, **fields) -> Path:
    """A build config of the O2.WILZ archive (station metadata from a StationXML file)."""
    spec = {
        "starttime": "2024-02-03T05:15:00",
        "endtime": "2024-02-03T05:24:00",
        "output_dir": str(folder / "runs"),
        "stations": {"kind": "stationxml", "path": str(folder / "O2.WILZ.xml")},
        "waveforms": {"source": {"kind": "sds", "path": str(sds)}},
        "picking": {"picker": "stalta"},
    }
    spec.update(fields)
    return write_config(folder, "wilz", **spec)


def placeholder_stationxml(path: Path) -> None:
    """A StationXML of O2.WILZ (EH channels, no responses), for the cases about other inputs
    (validate reads the StationXML a config names and needs a usable station in it)."""
    from obspy import Inventory, UTCDateTime
    from obspy.core.inventory import Channel, Network, Station

    station = Station("WILZ", 46.0, 7.0, 500.0, creation_date=UTCDateTime(2020, 1, 1))
    station.channels = [
        Channel(f"EH{c}", "", 46.0, 7.0, 500.0, 0.0, sample_rate=100.0) for c in "ZNE"
    ]
    inventory = Inventory(networks=[Network("O2", stations=[station])], source="eqcat test")
    inventory.write(str(path), format="STATIONXML")


# ------------------------------------------------------------------------ config and files


def test_missing_stationxml_fails_validate_and_build_at_once(env, wilz_sds, tmp_path):
    config = wilz_config(tmp_path, wilz_sds)
    validate = eqcat(env, "validate", config)
    assert_one_error(validate, 2, "stations.path", "O2.WILZ.xml", "not found")
    began = time.monotonic()
    build = eqcat(env, "build", config)
    assert_one_error(build, 2, "stations.path", "O2.WILZ.xml")
    assert time.monotonic() - began < 60  # no retries (it took 70 s of them before)
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_unreadable_stationxml_is_one_line(env, wilz_sds, tmp_path):
    config = wilz_config(tmp_path, wilz_sds)
    (tmp_path / "O2.WILZ.xml").write_text("<not-stationxml/>")
    result = eqcat(env, "build", config, "--stage", "download")
    assert_one_error(result, 2, "O2.WILZ.xml", "not a readable StationXML file")


def test_missing_weights_file_names_the_field(env, wilz_sds, tmp_path):
    placeholder_stationxml(tmp_path / "O2.WILZ.xml")
    missing = tmp_path / "no_such_model.keras"
    config = wilz_config(tmp_path, wilz_sds, picking={"picker": "eqt", "weights": str(missing)})
    line = assert_one_error(eqcat(env, "validate", config), 2, "picking.weights", missing.name)
    assert "not found" in line
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x00" * 64)
    config = wilz_config(tmp_path, wilz_sds, picking={"picker": "eqt", "weights": str(corrupt)})
    assert_one_error(eqcat(env, "validate", config), 2, "picking.weights", "corrupt.h5")


def test_output_dir_that_cannot_be_written(env, wilz_sds, tmp_path):
    placeholder_stationxml(tmp_path / "O2.WILZ.xml")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    config = wilz_config(tmp_path, wilz_sds, output_dir=str(blocker / "runs"))
    assert_one_error(eqcat(env, "validate", config), 2, "output_dir", "a_file", "not a folder")
    result = eqcat(env, "build", config)
    assert_one_error(result, 2, "output_dir")
    assert blocker.read_text() == "not a folder"


def test_velocity_model_beyond_hypoinverse_limit(env, wilz_sds, tmp_path):
    placeholder_stationxml(tmp_path / "O2.WILZ.xml")
    layers = [{"top_km": float(k), "vp": 4.0 + 0.1 * k} for k in range(21)]
    model = tmp_path / "many_layers.yaml"
    model.write_text(yaml.safe_dump({"name": "many", "vp_vs": 1.73, "layers": layers}))
    config = wilz_config(tmp_path, wilz_sds, velocity_model=str(model))
    assert_one_error(eqcat(env, "validate", config), 2, "velocity_model", "21 layers", "20")


@pytest.mark.parametrize(
    ("layers", "needles"),
    [
        (
            [{"top_km": 0.0, "vp": 6.0}, {"top_km": 5.0, "vp": 5.0}, {"top_km": 20.0, "vp": 7.0}],
            ["layer 2 (top 5 km)", "low-velocity zone"],
        ),
        ([{"top_km": 0.0, "vp": float("nan")}], ["layer 1 of 1", "'vp' = nan"]),
        ([{"top_km": 0.0, "vp": 5.0, "Vs": 3.0}], ["unknown key(s) 'Vs'"]),
    ],
)
def test_velocity_model_problems_stop_validate_and_build(env, wilz_sds, tmp_path, layers, needles):
    """A low-velocity zone passed ``eqcat validate`` and failed the build at the locate stage
    ("HypoInverse failed (exit status 0, no hypoinverse.arc ...)"); a NaN velocity or a
    misspelt key passed both. Now one line naming the model file's field, before any work."""
    placeholder_stationxml(tmp_path / "O2.WILZ.xml")
    model = tmp_path / "model.yaml"
    model.write_text(yaml.safe_dump({"name": "m", "vp_vs": 1.73, "layers": layers}))
    config = wilz_config(tmp_path, wilz_sds, velocity_model=str(model))
    assert_one_error(eqcat(env, "validate", config), 2, "velocity_model", *needles)
    assert_one_error(eqcat(env, "build", config), 2, "velocity_model", *needles)
    assert not (tmp_path / "runs").exists()


def test_offline_fdsn_is_one_line_after_its_retries(served_env, wilz_sds, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    stations = {"kind": "fdsn", "base_url": url, "network": "O2", "retries": 1, "backoff_s": 0}
    config = wilz_config(tmp_path, wilz_sds, stations=stations)
    assert eqcat(served_env, "validate", config).returncode == 0  # offline checks cannot know
    result = eqcat(served_env, "build", config, "--stage", "download")
    assert_one_error(result, 2, url, "unreachable after 2 attempt")
    assert "Retry 1/3" not in result.stderr  # Prefect did not retry it again


def test_option_values_are_validated(env, wilz_sds, tmp_path):
    placeholder_stationxml(tmp_path / "O2.WILZ.xml")
    config = wilz_config(tmp_path, wilz_sds)
    both = eqcat(env, "build", config, "--stage", "pick", "--from", "locate")
    assert_one_error(both, 2, "--stage", "--from", "not both")
    unknown = eqcat(env, "build", config, "--stage", "pik")
    assert_one_error(unknown, 2, "'pik'")
    early = eqcat(env, "build", config, "--stage", "locate")
    assert_one_error(early, 2, "events.parquet", "--from associate")
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------- relocate --hypodd-dir


@pytest.fixture
def hypodd_dir(shared, tmp_path) -> Path:
    folder = tmp_path / "example1"
    shutil.copytree(shared("data", "hypodd_example1"), folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


def test_relocate_hypodd_dir_bad_folders(env, tmp_path):
    missing = eqcat(env, "relocate", "--hypodd-dir", tmp_path / "nowhere")
    assert_one_error(missing, 2, "nowhere", "not a folder")
    (tmp_path / "empty").mkdir()
    empty = eqcat(env, "relocate", "--hypodd-dir", tmp_path / "empty")
    assert_one_error(empty, 2, "hypoDD.inp not found")
    assert list((tmp_path / "empty").iterdir()) == []


def test_relocate_bad_engine_options(env, hypodd_dir):
    foo = eqcat(env, "relocate", "--hypodd-dir", hypodd_dir, "--engine", "foo")
    assert_one_error(foo, 2, "--engine", "'foo'", "'python'")
    no_path = {**env, "PATH": "/nonexistent"}
    binary = eqcat(no_path, "relocate", "--hypodd-dir", hypodd_dir, "--engine", "binary")
    assert_one_error(binary, 2, "no program 'hypoDD' is on PATH")


@pytest.mark.parametrize("corruption", ["truncated", "garbage numbers"])
def test_corrupt_hypodd_inp_keeps_the_folder_results(env, hypodd_dir, corruption):
    before = {p.name: p.read_bytes() for p in hypodd_dir.iterdir()}
    inp = hypodd_dir / "hypoDD.inp"
    lines = [ln for ln in inp.read_text().splitlines() if not ln.startswith("*")]
    if corruption == "truncated":
        inp.write_text("\n".join(lines[:5]) + "\n")
    else:
        inp.write_text("\n".join([*lines[:10], "garbage x y z", *lines[11:]]) + "\n")
    result = eqcat(env, "relocate", "--hypodd-dir", hypodd_dir, "--engine", "python")
    assert_one_error(result, 2, "hypoDD.inp")
    after = {p.name: p.read_bytes() for p in hypodd_dir.iterdir()}
    for name in ("hypoDD.reloc", "hypoDD.loc", "hypoDD.res", "hypoDD.sta", "hypoDD.log"):
        assert after[name] == before[name], name  # the user's earlier results are untouched
    assert set(after) - set(before) <= {"hypoDD.engine.log"}  # no temporary leftovers


# ---------------------------------------------------------------------------- score and mc


def test_score_of_missing_run_or_truth_creates_nothing(env, tmp_path):
    result = eqcat(env, "score", tmp_path / "runs" / "nope", tmp_path / "truth")
    assert_one_error(result, 2, "nope", "run directory not found")
    assert not (tmp_path / "runs").exists()
    run = tmp_path / "run"
    run.mkdir()
    result = eqcat(env, "score", run, tmp_path / "truth")
    assert_one_error(result, 2, "run", "not a run directory")
    (run / "waveforms").mkdir()  # a build that stopped after its download
    result = eqcat(env, "score", run, tmp_path / "truth")
    assert_one_error(result, 2, "catalog.csv", "truth file not found")
    assert list(run.iterdir()) == [run / "waveforms"]


def test_mc_names_the_file_and_the_row(env, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert_one_error(eqcat(env, "mc", empty, "--out", tmp_path / "r1"), 2, "empty.csv", "empty")
    text = tmp_path / "text.csv"
    text.write_text("origin_time,magnitude\n2020-01-01T00:00:00,1.2\n2020-01-01T00:01:00,M2\n")
    result = eqcat(env, "mc", text, "--out", tmp_path / "r2")
    assert_one_error(result, 2, "text.csv", "non-numeric magnitude 'M2' in row")
    result = eqcat(env, "mc", text, "--delta-m", "-1", "--out", tmp_path / "r3")
    assert_one_error(result, 2, "--delta-m")
    assert not any((tmp_path / name).exists() for name in ("r1", "r2", "r3"))


# ------------------------------------------------------------------------ interrupt, resume


def demo_cut(folder: Path, output_dir: Path, picker: str) -> Path:
    """The demo replica (station_configs/demo.yaml) cut to 4 stations and 20 minutes."""
    spec = yaml.safe_load((REPO / "station_configs" / "demo.yaml").read_text())
    spec.update(
        name="democut",
        endtime="2000-10-08T05:20:00",
        output_dir=str(output_dir),
        picking={"picker": picker},
    )
    spec["scenario"].update(duration_s=1200, max_stations=4)
    path = folder / f"democut-{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def build_until(
    env, config: Path, stage: str | None, sig=signal.SIGINT, timeout=300, trigger=None, group=False
):
    """Run ``eqcat build``; send ``sig`` as soon as ``stage`` starts (None: run to the end).

    ``trigger``: send it instead at the first output line holding this text; ``group``: run
    the build in a session of its own and signal its whole process group (its children, and
    Prefect's API server, get the signal too, as with ``docker stop`` or ``kill -- -PGID``).
    Returns (exit status, stderr, seconds from the signal to the exit).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "build", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=group,
    )
    trigger = trigger or (stage and f"stage {stage} started")
    lines, signalled = [], None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if trigger and signalled is None and trigger in line:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
            signalled = time.monotonic()
        assert time.monotonic() < deadline, "build did not finish"
    code = proc.wait(timeout=60)
    stopped_in = None if signalled is None else time.monotonic() - signalled
    return code, "".join(lines), stopped_in


def test_a_second_build_of_a_busy_run_directory_stops_at_once(served_env, tmp_path):
    """A build (here: this test) holds the run directory: a second ``eqcat build`` of it
    exits 2 with one line naming the directory and the holder, and writes nothing there."""
    from pipeline.rundir import RunDir

    config = demo_cut(tmp_path, tmp_path / "runs", picker="stalta")
    run = RunDir(tmp_path / "runs" / "democut")
    with run.exclusive():
        result = eqcat(served_env, "build", config)
    assert_one_error(result, 2, f"{run.root}: in use by another eqcat build (pid {os.getpid()}")
    assert sorted(p.name for p in run.root.iterdir()) == [".eqcat.lock"]


def test_sigterm_to_the_process_group_during_generation_stops_the_build(env, tmp_path):
    """SIGTERM to the whole group (the build, its generator processes, Prefect's server)
    while the scenario is generated: one line, status 143, in seconds. Prefect's own SIGTERM
    handler used to retry reporting the crash to its stopped server for minutes."""
    spec = yaml.safe_load((REPO / "station_configs" / "demo.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    code, out, stopped_in = build_until(
        env, config, None, signal.SIGTERM, trigger="written", group=True
    )
    assert stopped_in is not None, out[-2000:]
    assert code == 128 + signal.SIGTERM, out[-3000:]
    assert stopped_in < 10, stopped_in
    assert out.strip().splitlines()[-1].startswith("interrupted (SIGTERM): stopped")
    assert "Traceback" not in out
    assert "Crash detected" not in out  # Prefect's crash lines only with -v


def test_a_thread_failing_after_the_interrupt_prints_no_traceback(monkeypatch, capsys, caplog):
    """CI once saw a process pool's manager thread raise InvalidStateError while the build
    stopped on SIGTERM (its workers gone, its futures cancelled by the unwinding main thread):
    after a signal a thread's exception is a debug line; before one, Python's usual report."""
    from pipeline import interrupt

    def fail() -> None:
        raise ValueError("futures already cancelled")

    def run_failing_thread() -> None:
        thread = threading.Thread(target=fail, name="pool-manager")
        thread.start()
        thread.join()

    caplog.set_level("DEBUG", logger="pipeline.interrupt")
    monkeypatch.setattr(threading, "excepthook", interrupt._thread_exception)
    monkeypatch.setattr(interrupt, "_python_excepthook", threading.__excepthook__)  # not pytest's
    monkeypatch.setitem(interrupt._state, "signal", int(signal.SIGTERM))
    run_failing_thread()
    assert capsys.readouterr().err == ""
    assert "pool-manager ended after the interrupt with ValueError" in caplog.text
    monkeypatch.setitem(interrupt._state, "signal", None)
    run_failing_thread()
    err = capsys.readouterr().err
    assert "Traceback" in err and "futures already cancelled" in err


def test_interrupt_during_each_stage_then_resume_is_byte_identical(env, served_env, tmp_path):
    """SIGINT (SIGTERM once) at the start of every stage; each resume goes on; same catalog.

    EQTransformer picks here (the pick stage is interrupted with it); the reference is an
    uninterrupted build of the same config into another output folder. The SIGINT at the
    download and the SIGTERM at the relocation stop a build with its own ephemeral Prefect
    server (a child the signal must end too); the other builds report to the session's
    server (``served_env``: same flows and cache, without a server start each).
    """
    reference = demo_cut(tmp_path, tmp_path / "reference", picker="eqt")
    code, out, _ = build_until(served_env, reference, None)
    assert code == 0, out[-3000:]
    config = demo_cut(tmp_path, tmp_path / "interrupted", picker="eqt")
    run_dir = tmp_path / "interrupted" / "democut"
    for stage in STAGES:
        sig = signal.SIGTERM if stage == "relocate" else signal.SIGINT
        own_server = stage in ("download", "relocate")
        code, out, stopped_in = build_until(env if own_server else served_env, config, stage, sig)
        assert stopped_in is not None, f"stage {stage} never started: {out[-2000:]}"
        assert code == 128 + sig, (stage, code, out[-3000:])
        assert stopped_in < 10, (stage, stopped_in)
        last = out.strip().splitlines()[-1]
        assert last.startswith("interrupted (") and f"resume with: eqcat build {config}" in last
        assert "Traceback" not in out and "Crash detected" not in out
        assert not list(run_dir.rglob("*.eqcat-tmp.*")), stage  # only whole files remain
    code, out, _ = build_until(served_env, config, None)
    assert code == 0, out[-3000:]
    for name in ("catalog.csv", "catalog.parquet"):
        ours = (run_dir / "catalog" / name).read_bytes()
        theirs = (tmp_path / "reference" / "democut" / "catalog" / name).read_bytes()
        assert ours == theirs, name
