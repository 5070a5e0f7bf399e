"""Run directory: atomic writes and the manifest."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.rundir import RunDir, atomic_write, sha256_file, write_parquet_atomic

REPO = Path(__file__).resolve().parents[1]


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("finished result")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half a res")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "finished result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind


def test_atomic_write_replaces_on_success(tmp_path):
    target = tmp_path / "deep" / "out.bin"
    with atomic_write(target, "wb") as fh:
        fh.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_parquet_round_trip_keeps_utc_times(tmp_path):
    df = pd.DataFrame(
        {"pick_id": ["a", "b"], "time": pd.to_datetime(["2000-10-06T04:30:00Z"] * 2, utc=True)}
    )
    path = write_parquet_atomic(df, tmp_path / "picks" / "picks.parquet")
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, df)
    assert str(back["time"].dtype) == "datetime64[ns, UTC]"


def test_manifest_records_each_stage(tmp_path):
    run = RunDir(tmp_path / "run")
    out = run.path("picks", "picks.parquet")
    out.write_text("x")
    run.record_stage(
        "pick", inputs={"cfg": "abc"}, outputs=[str(out)], counts={"picks": 3}, wall_time_s=1.5
    )
    run.record_stage("associate", counts={"events": 1})
    manifest = json.loads(run.manifest_path.read_text())
    assert list(manifest) == ["pick", "associate"]
    assert manifest["pick"]["counts"] == {"picks": 3}
    assert manifest["pick"]["wall_time_s"] == 1.5
    assert "numpy" in manifest["pick"]["versions"]
    assert len(sha256_file(out)) == 64


def test_written_files_are_world_readable(tmp_path):
    target = tmp_path / "report.html"
    with atomic_write(target) as fh:
        fh.write("<html></html>")
    assert target.stat().st_mode & 0o777 == 0o644


def test_one_build_at_a_time_holds_a_run_directory(tmp_path):
    """Another process fails at once naming the holder (pid, host, start); within the holding
    process the lock is re-entrant; it is free again when the holder lets go."""
    from pipeline import interrupt

    run = RunDir(tmp_path / "run")
    other = [sys.executable, "-c", "import sys; from pipeline.rundir import RunDir\n"
             "with RunDir(sys.argv[1]).exclusive(): print('held')", str(run.root)]  # fmt: skip
    with run.exclusive():
        with run.exclusive():  # a scheduled run: holds it, then builds (holds it again)
            assert run.root in interrupt._state["run_dirs"]  # an interrupt cleans it
        busy = subprocess.run(other, capture_output=True, text=True, cwd=REPO)
        assert busy.returncode != 0 and "RunDirBusyError" in busy.stderr
        assert f"{run.root}: in use by another eqcat build (pid {os.getpid()} on " in busy.stderr
        assert "wait for it to end or stop it" in busy.stderr
    assert run.root not in interrupt._state["run_dirs"]
    free = subprocess.run(other, capture_output=True, text=True, cwd=REPO)
    assert free.returncode == 0 and free.stdout.strip() == "held", free.stderr


def test_changed_outputs_names_edited_and_deleted_files(tmp_path):
    run = RunDir(tmp_path / "run")
    for name in ("a.csv", "b.csv", "c.csv"):
        (run.root / "catalog").mkdir(parents=True, exist_ok=True)
        (run.root / "catalog" / name).write_text(name)
    outputs = ["catalog/a.csv", "catalog/b.csv", "catalog/c.csv", "catalog/"]
    run.record_stage("catalog", outputs=outputs)
    assert run.changed_outputs(("catalog",)) == []
    os.utime(run.root / "catalog" / "c.csv", (1, 1))  # touched, same content: not changed
    copied = RunDir(tmp_path / "copy")  # a copy without file times: not changed
    shutil.copytree(run.root, copied.root, copy_function=shutil.copyfile)
    assert run.changed_outputs(("catalog",)) == copied.changed_outputs(("catalog",)) == []
    (run.root / "catalog" / "a.csv").write_text("edited")
    (run.root / "catalog" / "b.csv").unlink()
    assert run.changed_outputs(("catalog", "report")) == ["catalog/a.csv", "catalog/b.csv"]


def test_counted_agrees_with_its_number():
    from pipeline.wording import counted

    assert [counted(n, "event") for n in (0, 1, 2)] == ["0 events", "1 event", "2 events"]
    assert counted(1, "station-day") == "1 station-day"
    assert counted(3, "analysis", "analyses") == "3 analyses"
