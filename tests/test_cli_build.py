"""``eqcat build`` as a user runs it: clean default logs, progress bars, output paths, and
a run directory holding what DESIGN.md says (every file, every table with its columns).

Each build is a real ``eqcat`` subprocess (Prefect's ephemeral server in a temporary
``PREFECT_HOME``) on a tiny synthetic scenario with the STA/LTA picker.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.synthetic import generate_scenario
from pipeline.synthetic.params import ScenarioConfig
from pipeline.waveforms.inventory import read_stations_csv

REPO = Path(__file__).resolve().parents[1]

#: What a user must not see at default verbosity (``-v`` shows it): httpx request lines,
#: Prefect's per-task timeout-in-thread warning, the server telemetry traceback, lines per
#: station-day or program run (the progress bars count those), matplotlib's font fallbacks.
NOISE = (
    "HTTP Request:",
    "Timeout of",
    "Traceback",
    "send_telemetry_heartbeat",
    "hyp1.40 in",
    "running HypoDD",
    "findfont",
)


def eqcat(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """Run ``eqcat ARGS`` in ``cwd`` with its own Prefect home, as a user would."""
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    for key in ("PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    """A finished default-verbosity build: (config path, completed process, work folder)."""
    folder = tmp_path_factory.mktemp("cli_build")
    start = "2000-10-10T23:40:00"
    spec = {
        "name": "clitest",
        "starttime": start,
        "endtime": "2000-10-11T00:20:00",
        "velocity_model": "tottori",
        "output_dir": str(folder / "runs"),
        "scenario": {"seed": 7, "start_time": start, "duration_s": 2400, "max_stations": 6},
        "picking": {"picker": "stalta"},
        "association": {"associator": "time"},
    }
    config = folder / "clitest.yaml"
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = eqcat("build", str(config), cwd=folder, home=folder / "prefect")
    return config, result, folder


def test_build_prints_output_paths_and_no_noise(tiny_build):
    _, result, folder = tiny_build
    assert result.returncode == 0, result.stderr[-3000:]
    for noise in NOISE:
        assert noise not in result.stderr, noise
    # the scenario says when a station is written, not each of its days
    assert "synthetic: station XX." in result.stderr
    assert not re.search(r"synthetic: \S+ \d{4}-\d\d-\d\d written", result.stderr)
    # one progress bar per stage; picking counts station-days (6 stations x 2 days)
    bars = {x.split()[2]: x for x in result.stderr.splitlines() if "clitest: " in x}
    assert re.search(r"12/12\s+station-days", bars["pick"])
    assert re.search(r"6/6\s+stations", bars["magnitude"])  # amplitudes: station by station
    assert "clitest: report" in result.stderr
    run = folder / "runs" / "clitest"
    lines = result.stdout.strip().splitlines()
    expected = {
        "catalog CSV:": run / "catalog" / "catalog.csv",
        "catalog QuakeML:": run / "catalog" / "catalog.xml",
        "report HTML:": run / "report" / "index.html",
    }
    for label, path in expected.items():
        line = next(x for x in lines if x.startswith(label))
        shown = Path(line.split(maxsplit=len(label.split()))[-1])
        assert shown == path.resolve() and shown.is_file()
    assert lines[-1].startswith("report HTML:")


def test_verbose_shows_what_default_hides(tiny_build):
    config, _, folder = tiny_build
    result = eqcat("-v", "build", str(config), "--stage", "associate", cwd=folder,
                   home=folder / "prefect")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HTTP Request:" in result.stderr
    assert "DEBUG" in result.stderr


def test_example_sds_config_validates_and_reads_its_archive(tmp_path):
    """station_configs/example_sds.yaml on an SDS archive laid where it expects one.

    The archive is a short piece of the synthetic replica (6 of its 18 stations, 10 minutes,
    inside the config's span) written to ``runs/demo/waveforms`` under the folder eqcat
    runs from, as ``make demo`` does; the inline stations are the config's own.
    """
    example = REPO / "station_configs" / "example_sds.yaml"
    scenario = ScenarioConfig(
        start_time=datetime(2000, 10, 8, 5, 0, tzinfo=UTC), duration_s=600, max_stations=6
    )
    generate_scenario(tmp_path / "runs" / "demo", scenario)
    result = eqcat("validate", str(example), cwd=tmp_path, home=tmp_path / "prefect")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout

    result = eqcat("build", str(example), "--stage", "download", cwd=tmp_path,
                   home=tmp_path / "prefect")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "runs" / "example_sds" / "waveforms"
    stations = read_stations_csv(folder / "stations.csv").set_index("station")
    cited = pd.read_csv(REPO / "station_configs" / "replica_stations.csv", comment="#")
    assert sorted(stations.index) == sorted(cited["station"])
    for row in cited.itertuples():
        assert stations.loc[row.station, "latitude"] == pytest.approx(row.latitude)
        assert stations.loc[row.station, "longitude"] == pytest.approx(row.longitude)
    quality = pd.read_parquet(folder / "quality.parquet")
    present = set(quality.loc[quality["status"] == "ok", "station"])
    assert len(present) == 6 and present <= set(cited["station"])


#: A station-day picks file, as DESIGN.md names it.
STATION_DAY = re.compile(r"^picks/[^/]+\.\d{4}-\d{2}-\d{2}\.parquet$")


def design_section(title: str) -> str:
    """The text of DESIGN.md's section whose heading starts with ``title``."""
    text = (REPO / "DESIGN.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def documented_tables() -> dict[str, set[str]]:
    """DESIGN.md's tables: run-relative path -> the columns its entry names.

    An entry is one bullet of the "Tables" section; its paths are the backticked names with
    a folder and a .parquet/.csv suffix, its columns the backticked plain identifiers.
    """
    tables: dict[str, set[str]] = {}
    for entry in re.split(r"\n- ", design_section("Tables"))[1:]:
        names = re.findall(r"`([^`]+)`", entry)
        columns = {n for n in names if re.fullmatch(r"[a-z_][a-z0-9_]*", n)}
        for path in (n for n in names if re.fullmatch(r"[\w.-]+/[\w.-]+\.(parquet|csv)", n)):
            tables[path] = columns
    return tables


def table_columns(path: Path) -> list[str]:
    """Column names of a Parquet or CSV table (without reading its rows)."""
    if path.suffix == ".parquet":
        return list(pd.read_parquet(path).columns)
    return list(pd.read_csv(path, nrows=0).columns)


def test_every_table_of_a_run_is_documented_with_its_columns(tiny_build):
    """Each Parquet/CSV table the build wrote has an entry in DESIGN.md's "Tables" section
    naming exactly its columns (none missing, none that the table lacks)."""
    _, result, folder = tiny_build
    assert result.returncode == 0, result.stderr[-3000:]
    run = folder / "runs" / "clitest"
    documented = documented_tables()
    found = sorted(p for p in run.rglob("*") if p.suffix in (".parquet", ".csv"))
    assert len(found) >= 15, found  # every stage wrote its tables
    problems = []
    for path in found:
        rel = path.relative_to(run).as_posix()
        key = "picks/NET.STA.YYYY-MM-DD.parquet" if STATION_DAY.match(rel) else rel
        if key not in documented:
            problems.append(f"{rel}: no entry in DESIGN.md's Tables section")
            continue
        columns = set(table_columns(path))
        if columns != documented[key]:
            problems.append(
                f"{rel}: undocumented {sorted(columns - documented[key])}, "
                f"documented but absent {sorted(documented[key] - columns)}"
            )
    assert not problems, "\n".join(problems)


def test_every_file_of_a_run_is_in_the_design_layout(tiny_build):
    """Each file the build wrote is named in DESIGN.md's run-directory layout: by its name,
    or, below a stage folder's subfolder (trial depths, HypoDD iterations, figures), by that
    subfolder; the SDS archive's day files by the archive's pattern."""
    _, result, folder = tiny_build
    assert result.returncode == 0, result.stderr[-3000:]
    run = folder / "runs" / "clitest"
    layout = design_section("Run directory")
    # names given as a pattern, such as pyocto_tt_*.bin (a subfolder's *.json is the subfolder's)
    patterns = re.findall(r"(?<![\w/*])\w[\w.-]*\*[\w.*-]*", layout)
    missing = []
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        parts = path.relative_to(run).parts
        if parts[0] == "waveforms" and re.fullmatch(r"\d{4}", parts[1]):
            continue  # the SDS archive: YYYY/NET/STA/CHA.D/NET.STA.LOC.CHA.D.YYYY.DOY
        rel = "/".join(parts)
        if STATION_DAY.match(rel):
            name = "NET.STA.YYYY-MM-DD.parquet"
        elif len(parts) > 2:
            name = parts[1] + "/"
        else:
            name = parts[-1]
        named = re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", layout)
        if not named and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            missing.append(rel)
    assert not missing, f"not in DESIGN.md's run-directory layout: {missing}"
