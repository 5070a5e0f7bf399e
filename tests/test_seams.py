"""The seams a user hits: one-line errors, no retries of what cannot heal, data problems shown.

Each test is a case found by trying the commands on bad input (see the review of the seams):
a config that is not text, a folder given as a config, a velocity model that is not YAML, run
tables from another version, a corrupt miniSEED file in an SDS archive, a StationXML without
responses, the model loaded once per process, ``eqcat validate`` without TensorFlow.
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from obspy import read_inventory
from test_bad_data import (  # noqa: F401 - ``archive`` is a fixture
    T0,
    archive,
    build_direct,
    copy_archive,
    day_file,
    report_text,
    station_codes,
    summary_of,
    write_config,
)

from pipeline.config import ConfigError, load_config
from pipeline.errors import EqcatInputError, is_retryable
from pipeline.location.runner import HypoInverseError
from pipeline.picking.stage import PickingError
from pipeline.relocation.engine import HypoDDError
from pipeline.report.data_quality import terminal_lines
from pipeline.waveforms.reader import read_station

REPO = Path(__file__).resolve().parents[1]
EQCAT = [sys.executable, "-m", "pipeline.cli"]


def _config(tmp_path: Path, text: str | bytes, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


MINIMAL = "name: t\nstarttime: 2000-10-08T05:00:00\nendtime: 2000-10-08T06:00:00\n"


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"\xff\xfe\x00 not text", "not valid YAML text"),
        (MINIMAL + "velocity_model: {vm}\nscenario: {{}}\n", "not valid YAML text"),
        (MINIMAL + "velocity_model: {vm_list}\nscenario: {{}}\n", "expected a YAML mapping"),
        (MINIMAL + "velocity_model: {vm_vpvs}\nscenario: {{}}\n", "'vp_vs' = 'fast'"),
        (MINIMAL + "velocity_model: {vm_csv}\nscenario: {{}}\n", "vm.csv: expected a YAML map"),
        (MINIMAL + "stations: {{kind: csv}}\n", "stations.kind = 'csv': expected one of inline,"),
        ("", "empty; expected a YAML mapping"),
        ("- name: t\n", "expected a YAML mapping of fields .name: ...., got a list"),
    ],
    ids=[
        "binary-config",
        "velocity-not-yaml",
        "velocity-a-list",
        "velocity-vpvs-text",
        "velocity-csv-path",
        "unknown-station-source-kind",
        "empty-config",
        "config-a-list",
    ],
)
def test_unreadable_config_or_velocity_model_is_a_config_error(tmp_path, content, expected):
    models = {
        "vm": _config(tmp_path, "layers: [1, 2\n", "vm.yaml"),
        "vm_list": _config(tmp_path, "- 1\n- 2\n", "vm_list.yaml"),
        "vm_vpvs": _config(tmp_path, "vp_vs: fast\nlayers: [{top_km: 0, vp: 6}]\n", "v3.yaml"),
        "vm_csv": _config(tmp_path, "top_km,vp\n0,6\n", "vm.csv"),
    }
    if isinstance(content, str):
        content = content.format(**models)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(_config(tmp_path, content))
    assert str(tmp_path) in str(info.value)


def test_folder_or_binary_config_exits_2_with_one_line(tmp_path):
    binary = _config(tmp_path, b"\xff\xfe\x00 not text")
    for target, expected in ((tmp_path, "is a folder"), (binary, "not valid YAML text")):
        done = subprocess.run(
            [*EQCAT, "validate", str(target)], capture_output=True, text=True, cwd=REPO
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and str(target) in lines[0]
        assert "Traceback" not in done.stderr


def test_validate_checks_weights_without_tensorflow():
    """``eqcat validate`` reads the weights file with h5py; TensorFlow is never imported."""
    code = (
        "import sys\n"
        "from pipeline.config import load_config\n"
        "from pipeline.preflight import check_weights\n"
        "cfg = load_config('station_configs/demo.yaml')\n"
        "print(check_weights(cfg))\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.splitlines() == ["[]", "[]"], done.stdout + done.stderr


def test_validate_still_refuses_a_file_that_is_not_weights(tmp_path):
    from pipeline.picking.weights_file import WeightsMismatchError, read_weights

    fake = _config(tmp_path, "not weights", "w.h5")
    with pytest.raises(WeightsMismatchError, match="neither a Keras 3"):
        read_weights(fake)


def test_model_is_loaded_once_when_threads_ask_together(caplog):
    """Mapped picking tasks start together on threads: one load, one load line."""
    from flows import build

    build._load_model.cache_clear()
    models = []
    with caplog.at_level(logging.INFO, logger="pipeline.picking.model"):
        threads = [
            threading.Thread(target=lambda: models.append(build._model("original", "keras2")))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(models) == 3 and all(m is models[0] for m in models)
    loaded = [r for r in caplog.records if r.getMessage().startswith("loaded ")]
    assert len(loaded) == 1
    # Another content of the weights file (its sha256 in the picking key): loaded again.
    assert build._model("original", "keras2", "another-sha256") is not models[0]
    assert build._model("original", "keras2") is models[0]


@pytest.mark.parametrize(
    "exc, retry",
    [
        (ValueError("bad value"), False),
        (KeyError("column"), False),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), False),
        (EqcatInputError("missing", path="x"), False),
        (FileNotFoundError(2, "No such file", "x"), False),
        (TimeoutError("read timed out"), True),
        (ConnectionRefusedError(111, "refused"), True),
        (RuntimeError("some other failure"), True),
        (HypoDDError("HypoDD (python) failed with exit status 1"), False),
        (HypoInverseError("HypoInverse did not finish within 600 s"), False),
    ],
)
def test_retry_only_what_can_heal(exc, retry):
    assert is_retryable(exc) is retry


def test_a_wrapped_deterministic_error_is_not_retried():
    try:
        try:
            raise ValueError("julday out of bounds")
        except ValueError as inner:
            raise PickingError("station-day XX.X01.2000-10-08: ValueError: ...") from inner
    except PickingError as outer:
        assert not is_retryable(outer)
    assert is_retryable(PickingError("station-day: time-out"))


def test_run_table_from_another_version_names_file_and_what_to_do(tmp_path):
    from pipeline.catalog import _read

    path = tmp_path / "locations.parquet"
    pd.DataFrame({"event_id": ["e1"], "latitude": [35.0]}).to_parquet(path)
    with pytest.raises(EqcatInputError, match="missing columns.*another eqcat version.*--from"):
        _read(path)


def test_reader_leaves_out_a_corrupt_file(archive, tmp_path):  # noqa: F811
    sds = copy_archive(archive, tmp_path / "sds")
    station = station_codes(sds)[0]
    net = day_file(sds, station, "HHZ").parents[2].name
    intact = read_station(sds, net, station, "", "HH", T0, T0 + 600)
    day_file(sds, station, "HHZ").write_bytes(np.random.default_rng(0).bytes(3000))
    damaged = read_station(sds, net, station, "", "HH", T0, T0 + 600)
    assert sorted(tr.stats.channel for tr in damaged) == ["HHE", "HHN"]
    for tr in damaged:
        (same,) = intact.select(channel=tr.stats.channel)
        np.testing.assert_array_equal(tr.data, same.data)


def test_corrupt_file_and_missing_responses_show_in_report_and_terminal(
    archive,  # noqa: F811
    tmp_path,
):
    """A corrupt Z file: the station-day is still picked (Z missing) and flagged; a station
    without responses in the StationXML gets no magnitude and is named, not fatal."""
    sds = copy_archive(archive, tmp_path / "sds")
    corrupt, no_response = station_codes(sds)[:2]
    day_file(sds, corrupt, "HHZ").write_bytes(np.random.default_rng(1).bytes(3000))
    inventory = read_inventory(str(sds / "inventory.xml"))
    for network in inventory:
        for station in network:
            for channel in station if station.code == no_response else []:
                channel.response = None
    net = inventory[0].code
    inventory.write(str(sds / "inventory.xml"), format="STATIONXML")
    run = build_direct(write_config(tmp_path, sds, "seams"))

    manifest = run.read_manifest()
    picking = manifest["picks"]["details"]
    assert not picking["failures"]  # the station-day is picked, with Z as a missing component
    assert any(n.startswith(f"{net}.{corrupt}.") and "Z missing" in n for n in picking["notes"])
    skipped = manifest["magnitude"]["details"]["skipped"]
    assert (
        list(skipped) == [f"{net}.{no_response}"]
        and "no response" in skipped[f"{net}.{no_response}"]
    )
    mags = pd.read_parquet(run.root / "magnitude" / "station_magnitudes.parquet")
    assert not (mags["station"] == no_response).any() and len(mags) > 0

    gaps = summary_of(run)["data_gaps"]
    assert gaps[f"{net}.{no_response}"].startswith("magnitude: inventory.xml: no response")
    text = report_text(run)
    assert f"{net}.{no_response}" in text and "corrupt file" in text
    lines = terminal_lines(run)
    assert len(lines) == 3
    assert f"{net}.{no_response} (magnitude: " in lines[0]
    assert lines[1].startswith("data: notes on 1 station(s) used: ")  # the picker's note
    assert f"{net}.{corrupt} (" in lines[1] and "Z missing (zeros)" in lines[1]
    assert f"{net}.{corrupt} (HHZ 2000-10-08: corrupt file (" in lines[2]
    assert lines[2].endswith("; all in the report's Data quality section")


def test_terminal_lines_are_empty_for_a_clean_run(tmp_path):
    from pipeline.rundir import RunDir

    assert terminal_lines(RunDir(tmp_path / "run")) == []
    (tmp_path / "run" / "waveforms").mkdir(parents=True)
    quality = pd.DataFrame({"network": ["XX"], "station": ["X01"], "location": [""]})
    quality = quality.assign(flagged=[False], reason=[""])
    quality.to_parquet(tmp_path / "run" / "waveforms" / "quality.parquet")
    assert terminal_lines(RunDir(tmp_path / "run")) == []


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"starttime": "2024-02-01", "endtime": "2024-01-01"}, "--start .* must be before --end"),
        ({"minlatitude": 40.0, "maxlatitude": 30.0}, "--min-latitude 40.0 must be below"),
        ({"minlongitude": 200.0}, r"--min-longitude 200.0: expected degrees in \[-180, 180\]"),
    ],
)
def test_mc_selection_that_can_hold_no_event_is_refused(options, expected):
    from pipeline.catalog_io import CatalogFilter

    times = {k: pd.Timestamp(v, tz="UTC") for k, v in options.items() if k.endswith("time")}
    with pytest.raises(EqcatInputError, match=expected):
        CatalogFilter(**{**options, **times})


@pytest.mark.parametrize(
    "body, status, line",
    [
        ("raise EqcatInputError('no picks column', path='run/picks.parquet')", 2, "error: run"),
        (
            "raise RuntimeError('engine crashed')",
            1,
            "error: RuntimeError: engine crashed (run with -v",
        ),
        ("raise KeyboardInterrupt", 130, "error: interrupted (SIGINT)"),
        ("return 0", 0, None),
    ],
)
def test_scripts_end_like_eqcat_commands(body, status, line):
    """Diagnosis and benchmark scripts run their ``main`` through ``script_main``."""
    code = (
        "from pipeline.cli import script_main\n"
        "from pipeline.errors import EqcatInputError\n"
        f"def main():\n    {body}\n"
        "script_main(main)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == status
    lines = done.stderr.strip().splitlines()
    assert (lines == []) if line is None else (len(lines) == 1 and lines[0].startswith(line))


@pytest.mark.parametrize("with_config", [False, True], ids=["not-a-run", "no-truth"])
def test_pick_losses_checks_its_inputs_before_loading_the_model(tmp_path, with_config):
    expected = f"error: {tmp_path}: not a run directory (none of config.resolved.yaml"
    if with_config:
        (tmp_path / "config.resolved.yaml").write_text(
            "starttime: 2000-10-08T05:00:00\nendtime: 2000-10-08T06:00:00\n"
            "picking: {}\nassociation: {min_stations: 3}\n"
        )
        expected = (
            f"error: {tmp_path / 'truth' / 'catalog.csv'}: truth file not found "
            "(expected a scenario's truth/ folder)"
        )
    done = subprocess.run(
        [sys.executable, "benchmarks/pick_losses.py", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(expected)


# ------------------------------------------------------------------------ cache keys


def test_pyocto_table_is_named_by_the_code_that_computes_it(tmp_path, monkeypatch):
    from test_association import _square_network

    from pipeline.association import octo
    from pipeline.association.params import PyOctoConfig
    from pipeline.velocity import load_velocity_model

    model, cfg = load_velocity_model("tottori"), PyOctoConfig()
    first = octo.velocity_model_for(model, _square_network(10.0), cfg, tmp_path)
    monkeypatch.setattr(octo, "TABLE_CODE_VERSION", "changed-ray-tracer")
    second = octo.velocity_model_for(model, _square_network(10.0), cfg, tmp_path)
    assert len(list(tmp_path.glob("pyocto_tt_*.bin"))) == 2  # a new table, not the old one
    assert first is not second


def test_a_damaged_pyocto_table_is_rewritten_not_handed_to_pyocto(tmp_path, caplog):
    """PyOcto's compiled reader trusts the table's header and size: a table cut short (a full
    disk, a copy interrupted) or overwritten was reused because its name (the model's hash)
    matched."""
    from test_association import _square_network

    from pipeline.association import octo
    from pipeline.association.params import PyOctoConfig
    from pipeline.velocity import load_velocity_model

    model, cfg = load_velocity_model("tottori"), PyOctoConfig()
    octo.velocity_model_for(model, _square_network(10.0), cfg, tmp_path)
    (table,) = tmp_path.glob("pyocto_tt_*.bin")
    whole = table.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"\0" * len(whole), whole + b"x"):
        table.write_bytes(damaged)
        octo.velocity_model_for(model, _square_network(10.0), cfg, tmp_path)
        assert table.read_bytes() == whole
    assert caplog.text.count("is damaged (size or header); rewritten") == 3


def test_stage_keys_cover_programs_and_the_units_the_report_lists(tmp_path):
    from flows import build
    from pipeline.location.runner import find_hypoinverse
    from pipeline.rundir import RunDir

    config = _config(tmp_path, MINIMAL + f"output_dir: {tmp_path}\nscenario: {{}}\n")
    cfg = load_config(config)
    run = RunDir(cfg.run_dir)
    run.record_stage("magnitude", details={"skipped": {"XX.X01": "no response"}})
    inputs, _ = build._stage_inputs("locate", cfg, run)
    assert find_hypoinverse() in inputs
    _, extra = build._stage_inputs("relocate", cfg, run)
    assert set(extra["engine"]) & {"binary", "python"}
    _, extra = build._stage_inputs("report", cfg, run)
    assert extra["failures"] == {"XX.X01": "magnitude: no response"}


def test_dask_address_without_a_scheduler_is_refused_before_work():
    import socket

    from flows.build import check_scheduler
    from pipeline.errors import DataSourceError

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        check_scheduler(f"tcp://127.0.0.1:{listening.getsockname()[1]}")  # answers
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]  # bound, not listening: refused
            with pytest.raises(DataSourceError, match=f"tcp://127.0.0.1:{port}.*does not answer"):
                check_scheduler(f"tcp://127.0.0.1:{port}")
            # Dask reads an address without a scheme as tcp:// (it used to pass unchecked)
            with pytest.raises(DataSourceError, match=f" 127.0.0.1:{port} .*does not answer"):
                check_scheduler(f"127.0.0.1:{port}")
    with pytest.raises(DataSourceError, match="the port is not a number"):
        check_scheduler("tcp://127.0.0.1:dask")  # was a ValueError: exit 1


def test_serve_refuses_a_span_of_no_days(tmp_path):
    config = _config(tmp_path, MINIMAL + "scenario: {}\n")
    done = subprocess.run(
        [*EQCAT, "serve", str(config), "--days", "0"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --days 0: expected a whole number of days, at least 1"
    ]


@pytest.mark.parametrize(
    "section, file_text, expected",
    [
        (
            "stations:\n  kind: stationxml\n  path: {path}\n",
            "name: x\n",
            "not a readable StationXML",
        ),
        (
            "stations:\n  kind: stationxml\n  path: {path}\n",
            '<?xml version="1.0"?>\n<FDSNStationXML>\n<Network code="XX">\n',
            "not a readable StationXML file (not well-formed XML: Premature end of data",
        ),
        ("scenario:\n  stations_csv: {path}\n", "a,b\n1,2\n", "station list lacks column(s)"),
        (
            "scenario:\n  stations_csv: {path}\n",
            "network,station,latitude,longitude,elevation_m\nXX,../x,35,133,0\n",
            "row 1: invalid station code '../x'",
        ),
    ],
    ids=["stationxml-not-xml", "stationxml-cut", "station-list-columns", "station-code-with-path"],
)
def test_validate_reads_the_station_files_it_names(tmp_path, section, file_text, expected):
    from pipeline.preflight import preflight_problems

    station_file = _config(tmp_path, file_text, "stations.data")
    spec = MINIMAL + f"output_dir: {tmp_path}\n" + section.format(path=station_file)
    if "stationxml" in section:
        spec += f"waveforms:\n  source: {{kind: sds, path: {tmp_path}}}\n"
    problems = preflight_problems(load_config(_config(tmp_path, spec)), ["download"])
    assert len(problems) == 1 and expected in problems[0] and str(station_file) in problems[0]


def test_validate_names_a_station_file_that_is_a_folder(tmp_path):
    from pipeline.preflight import preflight_problems

    spec = MINIMAL + f"output_dir: {tmp_path}\nstations: {{kind: stationxml, path: {tmp_path}}}\n"
    spec += f"waveforms:\n  source: {{kind: sds, path: {tmp_path}}}\n"
    (problem,) = preflight_problems(load_config(_config(tmp_path, spec)), ["download"])
    assert problem == f"stations.path = '{tmp_path}': is a folder; expected a StationXML file"


def test_station_without_usable_channels_is_listed_as_skipped(archive, tmp_path):  # noqa: F811
    """A station whose inventory channels match no channel priority is named in the report's
    failed/skipped units and the terminal lines, not only logged; a station listed twice far
    apart is used, and named apart from them (a note, not a failure)."""
    import copy

    from pipeline.config import write_resolved_config
    from pipeline.report.data_quality import data_gaps, notes_cell, station_notes
    from pipeline.waveforms import download_waveforms

    sds = copy_archive(archive, tmp_path / "sds")
    *_, moved, dropped = station_codes(sds)
    inventory = read_inventory(str(sds / "inventory.xml"))
    for network in inventory:
        for station in network:
            for channel in station if station.code == dropped else []:
                channel.code = "BH" + channel.code[-1]
        (entry,) = [s for s in network if s.code == moved]
        second = copy.deepcopy(entry)
        second.latitude = float(entry.latitude) + 0.5
        network.stations.append(second)
    inventory.write(str(sds / "inventory.xml"), format="STATIONXML")
    cfg = load_config(write_config(tmp_path, sds, "skipped"))
    run = write_resolved_config(cfg)
    download_waveforms(run, cfg.stations, cfg.waveforms, cfg.starttime, cfg.endtime, progress=False)
    net = inventory[0].code
    label = f"{net}.{dropped}"
    assert data_gaps(run)[label].startswith("waveforms: skipped: no channel in the inventory")
    assert f"{net}.{moved}" not in data_gaps(run)
    assert list(station_notes(run)) == [f"{net}.{moved}"]
    assert "listed in 2 entries" in station_notes(run)[f"{net}.{moved}"]
    assert f"{net}.{moved}" in notes_cell(station_notes(run))
    lines = terminal_lines(run)
    assert any(label in line and "failed or skipped" in line for line in lines)
    assert any(
        line.startswith(f"data: notes on 1 station(s) used: {net}.{moved} (listed")
        for line in lines
    )


def test_score_refuses_a_folder_that_is_not_a_run(tmp_path):
    """No stage folder: one error line and exit 2, and no score.json left in the folder."""
    (tmp_path / "truth").mkdir()
    done = subprocess.run(
        [*EQCAT, "score", str(tmp_path), str(tmp_path / "truth")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path}: not a run directory")
    assert not (tmp_path / "score.json").exists()


def test_score_names_the_truth_file_row_and_value(tmp_path):
    from pipeline.score import read_truth

    truth = tmp_path / "truth"
    truth.mkdir()
    columns = "event_id,origin_time,latitude,longitude,depth_km,magnitude\n"
    (truth / "catalog.csv").write_text(columns + "e1,2000-10-08T05:00:00Z,35,133,10,1.0\n")
    (truth / "picks.csv").write_text("")
    with pytest.raises(EqcatInputError, match="picks.csv: not readable as CSV"):
        read_truth(truth)
    (truth / "picks.csv").write_text("event_id,network,station,phase,time\ne1,XX,X01,P,soon\n")
    with pytest.raises(EqcatInputError, match=r"picks.csv: unreadable time 'soon' in row 1"):
        read_truth(truth)


@pytest.mark.parametrize(
    "content",
    ["{truncated", "[1, 2]", '{"report": "oops"}', '{"catalog": {"output_sha256": ["x"]}}'],
)
def test_a_damaged_manifest_names_the_file_and_what_to_do(tmp_path, content):
    from pipeline.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    run.manifest_path.write_text(content)
    with pytest.raises(EqcatInputError, match="manifest.json: not a run manifest.*delete the run"):
        run.read_manifest()


def test_mc_out_that_is_a_file_or_cannot_be_made_is_refused(tmp_path):
    catalog = _config(tmp_path, "time,mag\n2024-01-01T00:00:00,2.0\n", "cat.csv")
    out = _config(tmp_path, "keep me", "report.txt")
    done = subprocess.run(
        [*EQCAT, "mc", str(catalog), "--out", str(out)], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 2 and out.read_text() == "keep me"
    assert done.stderr.strip().splitlines() == [
        f"error: --out {out}: is a file; expected a report folder (new or not)"
    ]
    below = out / "figures"  # a folder that cannot be made: its parent is a file
    done = subprocess.run(
        [*EQCAT, "mc", str(catalog), "--out", str(below)], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 2 and out.read_text() == "keep me"
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: --out {below}: cannot create a report folder (Not a directory)"
    )


def test_validate_reads_the_reference_catalog(tmp_path):
    from pipeline.preflight import check_report

    reference = _config(tmp_path, "time,mag\n2000-10-08T05:00:00,M2\n", "jma.csv")
    spec = MINIMAL + f"output_dir: {tmp_path}\nscenario: {{}}\n"
    spec += f"report:\n  reference: {{name: JMA, path: {reference}, magnitude_column: mag}}\n"
    (problem,) = check_report(load_config(_config(tmp_path, spec)))
    assert "report.reference.path" in problem and "non-numeric magnitude 'M2'" in problem


def test_hinet_build_without_credentials_or_win32tools_fails_validate(monkeypatch, tmp_path):
    """Neither heals by retrying (the download task used to retry them for 70 s)."""
    from pipeline.preflight import check_download
    from pipeline.waveforms.hinet import HinetCredentialsError

    monkeypatch.delenv("HINET_USER", raising=False)
    monkeypatch.delenv("HINET_PASSWORD", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no catwin32 / win2sac_32
    problems = check_download(load_config(REPO / "station_configs" / "tottori2000.yaml"))
    assert len(problems) == 2
    assert "win32tools programs catwin32, win2sac_32" in problems[0]
    assert "HINET_USER and HINET_PASSWORD" in problems[1]
    assert not is_retryable(HinetCredentialsError("no credentials"))


@pytest.mark.parametrize(
    "script, args",
    [
        ("completeness.py", ["--seeds", "-1"]),
        ("eqt_inference.py", ["--repeats", "0"]),
        ("picking_throughput.py", ["--workers", "x"]),
        ("download_throughput.py", ["--repeats", "0"]),
        ("prefect_overhead.py", ["--repeats", "0"]),
        ("completeness.py", ["--repeats", "0"]),
    ],
)
def test_benchmark_counts_must_be_positive(script, args):
    """A count of 0, a negative one or a word is refused by the argument parser, at once."""
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines()[-1].endswith(f"expected an integer > 0, got {args[1]!r}")
    )
    assert "tensorflow" not in done.stderr.lower()


def test_validate_warns_of_stations_without_responses(tmp_path):
    """Missing responses cost the magnitudes only: ``validate`` passes and says so."""
    from obspy.core.inventory import InstrumentSensitivity, Response

    from pipeline.preflight import response_notes
    from pipeline.waveforms.inventory import inline_inventory
    from pipeline.waveforms.params import InlineStations

    inline = InlineStations(
        stations=[
            {"network": "XX", "station": s, "latitude": 35.0, "longitude": 133.0}
            for s in ("A1", "B2", "C3")
        ]
    )
    inventory = inline_inventory(inline, pd.Timestamp("2000-10-08").to_pydatetime())
    for channel in inventory.select(station="A1")[0][0]:
        channel.response = Response.from_paz([0j], [-1 + 0j], 1e9, input_units="M/S")
    for channel in inventory.select(station="C3")[0][0]:  # evalresp needs stages
        channel.response = Response(
            instrument_sensitivity=InstrumentSensitivity(1e9, 1.0, "M/S", "COUNTS")
        )
    inventory.write(str(tmp_path / "st.xml"), format="STATIONXML")
    spec = (
        MINIMAL + f"output_dir: {tmp_path}\nwaveforms:\n  source: {{kind: sds, path: {tmp_path}}}\n"
    )
    xml_cfg = load_config(
        _config(tmp_path, spec + f"stations:\n  kind: stationxml\n  path: {tmp_path / 'st.xml'}\n")
    )
    assert response_notes(xml_cfg) == [
        f"stations.path = '{tmp_path / 'st.xml'}': 2 station(s) have channels without an "
        "instrument response, or with an overall sensitivity only (XX.B2, XX.C3): no "
        "magnitudes from those channels"
    ]
    inline_spec = spec + "stations:\n  kind: inline\n  stations:\n"
    inline_spec += "    - {network: XX, station: A1, latitude: 35.0, longitude: 133.0}\n"
    notes = response_notes(load_config(_config(tmp_path, inline_spec, "i.yaml")))
    assert len(notes) == 1 and "inline station list carries no instrument responses" in notes[0]
    assert (
        response_notes(load_config(_config(tmp_path, MINIMAL + "scenario: {}\n", "s.yaml"))) == []
    )


# ------------------------------------------------- run folders, run tables and truth (session 8)

TRUTH_CATALOG = (
    "event_id,origin_time,latitude,longitude,depth_km,magnitude\n"
    "e1,2000-10-08T05:00:00Z,35.3,133.3,10.0,1.2\n"
    "e2,2000-10-08T05:01:00Z,35.2,133.4,8.0,0.9\n"
)
TRUTH_PICKS = (
    "event_id,network,station,phase,time,snr\n"
    "e1,XX,X01,P,2000-10-08T05:00:02Z,12.0\n"
    "e2,XX,X01,S,2000-10-08T05:01:04Z,8.0\n"
)


def _truth_folder(folder: Path, catalog: str = TRUTH_CATALOG, picks: str = TRUTH_PICKS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.csv").write_text(catalog)
    (folder / "picks.csv").write_text(picks)
    return folder


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p / "missing", "missing: run directory not found"),
        (lambda p: _config(p, "text", "file.txt"), "file.txt: is a file; expected a run"),
        (lambda p: p, "not a run directory (none of config.resolved.yaml"),
    ],
    ids=["missing", "a-file", "not-a-run"],
)
def test_run_folder_is_checked_by_one_helper(tmp_path, make, expected):
    """``eqcat score``, catalog_diagnose, association diagnose and pick_losses share it."""
    from pipeline.catalog_diagnose import diagnose_run
    from pipeline.rundir import require_run_dir
    from pipeline.score import score_run

    target = make(tmp_path)
    for check in (
        require_run_dir,
        lambda run: diagnose_run(run, 0.75),
        lambda run: score_run(run, _truth_folder(tmp_path / "truth")),
    ):
        with pytest.raises(EqcatInputError, match=re.escape(expected)):
            check(target)
    assert not (tmp_path / "score.json").exists()


def test_catalog_diagnose_of_a_run_without_events_says_so(tmp_path, capsys):
    from pipeline.catalog_diagnose import CLASS_COLUMNS, main
    from pipeline.score import RUN_EVENT_COLUMNS

    (tmp_path / "catalog").mkdir()
    empty = pd.DataFrame({c: [] for c in (*RUN_EVENT_COLUMNS, *CLASS_COLUMNS)})
    empty.to_parquet(tmp_path / "catalog" / "catalog_all.parquet")
    _truth_folder(tmp_path / "truth")
    assert main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path}: catalog_all has no located event; nothing to diagnose"
    ]


def test_catalog_diagnose_of_a_missing_run_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.catalog_diagnose", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope'}: run directory not found"
    ]


@pytest.mark.parametrize(
    "table, damage, expected",
    [
        ("catalog/catalog.parquet", "bytes", "not a readable Parquet table"),
        ("catalog/catalog.parquet", "latitude", r"missing column\(s\) \['latitude'\]"),
        ("picks/picks.parquet", "bytes", "not a readable Parquet table"),
        ("picks/picks.parquet", "pick_id", r"missing column\(s\) \['pick_id'\]"),
    ],
)
def test_damaged_or_old_run_table_names_the_file(tmp_path, table, damage, expected):
    from pipeline.score import score_run

    run = tmp_path / "run"
    path = run / table
    path.parent.mkdir(parents=True)
    columns = {
        "event_id": ["e1"],
        "origin_time": [pd.Timestamp("2000-10-08T05:00:00Z")],
        "latitude": [35.3],
        "longitude": [133.3],
        "depth_km": [10.0],
        "pick_id": ["p1"],
        "network": ["XX"],
        "station": ["X01"],
        "phase": ["P"],
        "time": [pd.Timestamp("2000-10-08T05:00:02Z")],
    }
    if damage == "bytes":
        path.write_bytes(b"PAR1 truncated")
    else:
        pd.DataFrame(columns).drop(columns=[damage]).to_parquet(path)
    with pytest.raises(EqcatInputError, match=expected) as info:
        score_run(run, _truth_folder(tmp_path / "truth"))
    stage = "report" if table.startswith("catalog") else "pick"
    assert str(path) in str(info.value) and f"--from {stage}" in str(info.value)


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_stage_run_alone_refuses_an_earlier_output_changed_since_written(tmp_path, damage):
    """``eqcat report`` after ``location/locations.parquet`` was deleted built a catalog
    without the HypoInverse origins (exit 0); a truncated one failed inside the report. Both
    now stop before any work and name the file and the stage to rebuild from."""
    from flows.build import _begin
    from pipeline.rundir import RunDir, StaleStageError

    scenario = "scenario: {seed: 1, start_time: 2000-10-08T05:00:00, duration_s: 600}\n"
    config = _config(tmp_path, MINIMAL + f"output_dir: {tmp_path}\n" + scenario)
    run = RunDir(tmp_path / "t")
    table = run.root / "location" / "locations.parquet"
    table.parent.mkdir(parents=True)
    pd.DataFrame({"event_id": ["e1"]}).to_parquet(table)
    run.record_stage("location", outputs=["location/locations.parquet"])
    run.mark_current(("location",), "k")
    assert _begin(run, "report", str(config), "key", True) is False  # earlier stage intact
    if damage == "delete":
        table.unlink()
    else:
        table.write_bytes(table.read_bytes()[:20])
    with pytest.raises(StaleStageError) as info:
        _begin(run, "report", str(config), "key", True)
    assert "location/locations.parquet changed or deleted since stage 'locate'" in str(info.value)
    assert str(info.value).endswith(f"eqcat build {config} --from locate")
    assert not is_retryable(info.value)


@pytest.mark.parametrize(
    "file, old, new, expected",
    [
        ("catalog.csv", "1.2", "big", "non-numeric magnitude 'big' in row 1 (line 2)"),
        ("catalog.csv", "0.9", "", "blank magnitude in row 2 (line 3)"),
        ("catalog.csv", "35.2", "95", "latitude 95 in row 2 (line 3): every true event needs"),
        ("catalog.csv", "10.0", "deep", "non-numeric depth 'deep' in row 1"),
        ("catalog.csv", "2000-10-08T05:01:00Z", "", "blank origin_time in row 2"),
        ("catalog.csv", "e2,", "e1,", "event_id 'e1' in row 2 (line 3) is given twice"),
        ("picks.csv", "2000-10-08T05:01:04Z", "", "blank time in row 2"),
        ("picks.csv", "12.0", "loud", "non-numeric snr 'loud' in row 1"),
    ],
)
def test_truth_values_are_checked_row_by_row(tmp_path, file, old, new, expected):
    from pipeline.score import read_truth

    text = {"catalog.csv": TRUTH_CATALOG, "picks.csv": TRUTH_PICKS}
    text[file] = text[file].replace(old, new, 1)
    truth = _truth_folder(tmp_path, text["catalog.csv"], text["picks.csv"])
    with pytest.raises(EqcatInputError, match=re.escape(expected)) as info:
        read_truth(truth)
    assert str(truth / file) in str(info.value)


@pytest.mark.parametrize(
    "scenario, expected",
    [
        ("{truncated", "scenario.json: not a scenario record"),
        ("[1, 2]", "scenario.json: not a scenario record"),
        ('{"summary": {"start_time": "soon"}}', "scenario.json: summary start_time/end_time"),
    ],
)
def test_a_damaged_scenario_record_names_the_file(tmp_path, scenario, expected):
    from pipeline.score import read_truth

    truth = _truth_folder(tmp_path)
    (truth / "scenario.json").write_text(scenario)
    with pytest.raises(EqcatInputError, match=expected):
        read_truth(truth)
    (truth / "scenario.json").unlink()
    (truth / "catalog.csv").write_text(TRUTH_CATALOG.splitlines()[0] + "\n")
    with pytest.raises(EqcatInputError, match=r"catalog.csv: no true events \(header only\)"):
        read_truth(truth)


@pytest.mark.parametrize("mc_ref", [math.nan, math.inf])
def test_score_refuses_a_reference_magnitude_that_is_not_finite(tmp_path, mc_ref):
    from pipeline.score import score_run

    (tmp_path / "picks").mkdir()
    with pytest.raises(EqcatInputError, match=f"--mc-ref {mc_ref}: expected a finite magnitude"):
        score_run(tmp_path, _truth_folder(tmp_path / "truth"), mc_ref=mc_ref)
    assert not (tmp_path / "score.json").exists()


def test_score_refuses_a_reference_magnitude_above_every_true_event(tmp_path):
    from pipeline.score import score_run

    (tmp_path / "picks").mkdir()
    with pytest.raises(EqcatInputError, match=r"--mc-ref 20: no true event at or above it \(tr"):
        score_run(tmp_path, _truth_folder(tmp_path / "truth"), mc_ref=20.0)
    assert not (tmp_path / "score.json").exists()


def test_score_says_a_run_is_damaged_and_refuses_a_truth_file(tmp_path):
    """A run whose catalog was deleted after its stage wrote it was scored as if every event
    had been lost at picking, without a word; a truth *file* was reported as
    ``catalog.csv/catalog.csv`` not found."""
    from pipeline.rundir import RunDir
    from pipeline.score import score_run

    run = RunDir(tmp_path / "run")
    table = run.root / "catalog" / "catalog.parquet"
    table.parent.mkdir(parents=True)
    table.write_bytes(b"PAR1")
    run.record_stage("catalog", outputs=["catalog/catalog.parquet"])
    table.unlink()
    truth = _truth_folder(tmp_path / "truth")
    notes = score_run(run.root, truth)["notes"]
    assert (
        "damaged run: catalog/catalog.parquet changed or deleted since stage 'catalog' wrote "
        "it; rebuild: eqcat build CONFIG --from report"
    ) in notes
    with pytest.raises(EqcatInputError, match=r"truth/catalog\.csv: is a file; expected the truth"):
        score_run(run.root, truth / "catalog.csv")


def test_a_stage_run_alone_refuses_an_earlier_stage_whose_config_changed(tmp_path):
    """``eqcat report`` after ``magnitude:`` changed in the config exited 0 with the old
    magnitudes, while config.resolved.yaml now showed the new values (and still did after
    the refusal)."""
    from flows.build import _begin, _mark_current
    from pipeline.rundir import RunDir, StaleStageError

    scenario = "scenario: {seed: 1, start_time: 2000-10-08T05:00:00, duration_s: 600}\n"
    config = _config(tmp_path, MINIMAL + f"output_dir: {tmp_path}\n" + scenario)
    run = RunDir(tmp_path / "t")
    _mark_current(run, "magnitude", "key", load_config(config))
    _begin(run, "report", str(config), "k2", True)  # same config: fine
    config.write_text(config.read_text() + "report: {title: another}\n")
    _begin(run, "report", str(config), "k2", True)  # the report's own section: fine
    config.write_text(config.read_text() + "magnitude: {hb_ref_magnitude: 5.0}\n")
    with pytest.raises(StaleStageError) as info:
        _begin(run, "report", str(config), "k2", True)
    assert "the config's magnitude / velocity_model changed since stage 'magnitude' ran" in str(
        info.value
    )
    assert str(info.value).endswith(f"eqcat build {config} --from magnitude")
    # the refused stage left the config the results were built with (score reads it)
    resolved = yaml.safe_load((run.root / "config.resolved.yaml").read_text())
    assert resolved["report"]["title"] == "another"
    assert resolved["magnitude"]["hb_ref_magnitude"] != 5.0


def _replica_station(index: int) -> dict:
    """Station ``index`` of the synthetic replica's made-up list, as an inline station."""
    from pipeline.synthetic.params import ScenarioConfig
    from pipeline.synthetic.stations import read_station_list

    row = read_station_list(ScenarioConfig().stations_csv).iloc[index]
    keys = ("network", "station", "latitude", "longitude", "elevation_m")
    return {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in keys}


def _merged(base: dict, change: dict) -> dict:
    """``base`` with ``change`` merged in, nested mappings field by field."""
    out = dict(base)
    for key, value in change.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _merged(base[key], value) if both else value
    return out


@pytest.mark.parametrize(
    "source, change, stage, refused_by",
    [
        # another scenario: its waveforms were not generated, yet picks were made on the old
        ("scenario", {"scenario": {"seed": 2}}, "pick", "download"),
        ("scenario", {"waveforms": {"quality": {"flat_max_ptp": 1.0}}}, "associate", "download"),
        # a scenario's data do not depend on the span, the picks do
        ("scenario", {"endtime": "2000-10-08T07:00:00"}, "pick", None),
        ("scenario", {"endtime": "2000-10-08T07:00:00"}, "associate", "pick"),
        # another span or station list of a data source: not downloaded
        ("sds", {"endtime": "2000-10-08T07:00:00"}, "pick", "download"),
        ("sds", {"stations": {"stations": [1]}}, "associate", "download"),
    ],
)
def test_a_stage_run_alone_refuses_when_the_config_of_downloading_or_picking_changed(
    tmp_path, source, change, stage, refused_by
):
    """``eqcat build --stage pick`` after the scenario's seed, the span or the station list
    changed picked the old waveforms, exit 0: the download stage recorded no config digest,
    and the picking's covered its section only, not the span and the flat-trace threshold
    its cache key also holds."""
    from flows.build import _begin, _mark_current
    from pipeline.rundir import RunDir, StaleStageError

    spec = {**yaml.safe_load(MINIMAL), "output_dir": str(tmp_path)}
    if source == "scenario":
        spec["scenario"] = {"seed": 1, "start_time": spec["starttime"], "duration_s": 600}
    else:
        spec["waveforms"] = {"source": {"kind": "sds", "path": str(tmp_path)}}
        spec["stations"] = {"kind": "inline", "stations": [_replica_station(0)]}
    if "stations" in change:
        change = {"stations": {"stations": [_replica_station(1)]}}
    config = _config(tmp_path, yaml.safe_dump(spec))
    run = RunDir(tmp_path / "t")
    for done in ("download", "pick"):
        _mark_current(run, done, "key", load_config(config))
    config.write_text(yaml.safe_dump(_merged(spec, change)))
    if refused_by is None:
        _begin(run, stage, str(config), "k2", True)
        return
    with pytest.raises(StaleStageError, match=f"since stage '{refused_by}' ran") as info:
        _begin(run, stage, str(config), "k2", True)
    assert str(info.value).endswith(f"eqcat build {config} --from {refused_by}")


def test_score_refuses_a_truth_outside_the_runs_span(tmp_path):
    """The truth of another scenario (a month later) scored recall 0.00, exit 0."""
    from pipeline.score import check_spans_overlap

    times = lambda *t: pd.DataFrame({"origin_time": pd.to_datetime(list(t), utc=True)})  # noqa: E731
    run = times("2000-10-08T05:00Z", "2000-10-08T11:00Z")
    check_spans_overlap(run, times("2000-10-08T10:00Z", "2000-10-09T00:00Z"), "x", tmp_path)
    check_spans_overlap(None, times("2000-11-07T05:00Z"), None, tmp_path)  # nothing to compare
    with pytest.raises(EqcatInputError, match="do not overlap in time") as info:
        check_spans_overlap(run, times("2000-11-07T05:00Z"), "catalog/catalog.parquet", tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: its true events (2000-11-07 05:00")


def test_stage_order_says_deleted_when_the_stage_ran(tmp_path):
    """``eqcat report`` after magnitude/magnitudes.parquet was deleted said the magnitude
    stage "has not run" although its manifest entry records the file."""
    from pipeline.preflight import check_stage_order
    from pipeline.rundir import RunDir

    config = _config(tmp_path, MINIMAL + f"output_dir: {tmp_path}\n" + "scenario: {seed: 1}\n")
    cfg = load_config(config)
    assert "which has not run" in check_stage_order(cfg, ["report"])[0]
    run = RunDir(cfg.run_dir)
    table = run.root / "magnitude" / "magnitudes.parquet"
    table.parent.mkdir(parents=True)
    table.write_bytes(b"PAR1")
    run.record_stage("magnitude", outputs=["magnitude/magnitudes.parquet"])
    assert check_stage_order(cfg, ["report"]) == []
    table.unlink()
    assert check_stage_order(cfg, ["report"]) == [
        f"stage 'report' needs {table}, deleted since stage 'magnitude' wrote it: build with "
        "--from magnitude (or without --stage/--from)"
    ]


def _quakeml_without_magnitudes(path: Path) -> Path:
    from obspy import UTCDateTime
    from obspy.core.event import Catalog, Event, Origin

    origin = Origin(time=UTCDateTime(2024, 1, 1), latitude=35.0, longitude=133.0, depth=1e4)
    Catalog(events=[Event(origins=[origin])]).write(str(path), format="QUAKEML")
    return path


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: _config(p, "time,mag\n2024-01-01,\n2024-01-02,nan\n", "c.csv"), "none of its 2"),
        (lambda p: _quakeml_without_magnitudes(p / "c.xml"), "none of its 1 event(s) has a mag"),
        (lambda p: _config(p, "time,mag\n2024-01-01,inf\n", "c.csv"), "infinite magnitude 'inf'"),
        (lambda p: p, "is a folder; expected a QuakeML or CSV catalog file"),
    ],
    ids=["csv-blank-magnitudes", "quakeml-without-magnitudes", "csv-infinite", "a-folder"],
)
def test_mc_refuses_a_catalog_without_magnitudes(tmp_path, make, expected):
    from pipeline.catalog_io import CatalogReadError, read_catalog

    with pytest.raises(CatalogReadError, match=re.escape(expected)):
        read_catalog(make(tmp_path))


def test_mc_refuses_a_selection_that_keeps_no_event(tmp_path):
    catalog = _config(tmp_path, "time,mag,magType\n2024-01-01T00:00:00,2.0,ML\n", "cat.csv")
    done = subprocess.run(
        [*EQCAT, "mc", str(catalog), "--magnitude-type", "Mw", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2 and not (tmp_path / "r").exists()
    assert done.stderr.strip().splitlines() == [
        f"error: {catalog}: none of its 1 event(s) passes the selection (magnitude type in Mw); "
        "its magnitude types: ML"
    ]


def _stationxml(path: Path, network: str, stations: list[tuple[str, int]]) -> Path:
    """A StationXML file: ``stations`` as (code, number of HH channels)."""
    from obspy import Inventory, UTCDateTime
    from obspy.core.inventory import Channel, Network, Station

    made = []
    for code, n_channels in stations:
        station = Station(code, 35.0, 133.0, 0.0, creation_date=UTCDateTime(2000, 1, 1))
        for component in "ZNE"[:n_channels]:
            station.channels.append(
                Channel(f"HH{component}", "", 35.0, 133.0, 0.0, 0.0, sample_rate=100.0)
            )
        made.append(station)
    networks = [Network(network, stations=made)] if stations else []
    Inventory(networks=networks, source="eqcat test").write(str(path), format="STATIONXML")
    return path


@pytest.mark.parametrize(
    "network, stations, expected",
    [
        ("XX", [("A1", 0)], "no usable station between .*: XX.A1 skipped: no channel"),
        ("XX", [("A B", 3)], "no usable station .*'XX.A B' skipped: invalid station code"),
        ("../n", [("A1", 3)], "no usable station .*invalid network code '../n'"),
        ("XX", [], "no station is active between 2000-10-08 05:00 and 2000-10-08 06:00 UTC"),
    ],
    ids=["no-channels", "bad-station-code", "network-code-with-path", "no-stations"],
)
def test_validate_refuses_a_stationxml_without_a_usable_station(
    tmp_path, network, stations, expected
):
    from pipeline.preflight import preflight_problems, station_notes

    xml = _stationxml(tmp_path / "st.xml", network, stations)
    spec = MINIMAL + f"output_dir: {tmp_path}\nstations: {{kind: stationxml, path: {xml}}}\n"
    spec += f"waveforms:\n  source: {{kind: sds, path: {tmp_path}}}\n"
    cfg = load_config(_config(tmp_path, spec))
    (problem,) = preflight_problems(cfg, ["download"])
    assert problem.startswith(f"stations.path = '{xml}': ")
    assert re.search(expected, problem), problem
    assert station_notes(cfg) == []  # the problem says it; no warning repeats it


def test_validate_warns_of_stations_without_a_day_file_in_a_local_archive(tmp_path):
    """A wrong archive path, span or code validated fine and built an empty catalog."""
    from pipeline.preflight import sds_notes

    sds = tmp_path / "sds"
    day_file = sds / "2000/XX/A1/HHZ.D/XX.A1..HHZ.D.2000.282"
    day_file.parent.mkdir(parents=True)
    day_file.write_bytes(b"")
    rows = ", ".join(
        f"{{network: XX, station: {code}, latitude: 35.0, longitude: 133.0}}"
        for code in ("A1", "B2")
    )
    spec = MINIMAL + f"output_dir: {tmp_path}\nstations: {{kind: inline, stations: [{rows}]}}\n"
    spec += f"waveforms:\n  source: {{kind: sds, path: {sds}}}\n"
    field = f"waveforms.source.path = '{sds}'"
    cfg = load_config(_config(tmp_path, spec))
    assert sds_notes(cfg) == [f"{field}: no day file in the span for 1 station(s): XX.B2"]
    later = load_config(_config(tmp_path, spec.replace("2000-10-08", "2000-10-09")))
    (note,) = sds_notes(later)
    assert note.startswith(f"{field}: no day file of any station in the span (looked for e.g.")
    assert note.endswith("XX.A1..HHE.D.2000.283); the build will find no data")
    # B2's files under location 00 (or another band) are named, here and in the quality table
    other = sds / "2000/XX/B2/EHZ.D/XX.B2.00.EHZ.D.2000.282"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"")
    assert sds_notes(cfg) == [
        f"{field}: no day file in the span for 1 station(s): XX.B2; the archive has "
        "XX.B2.00.EHZ: other location or channel codes"
    ]
    from obspy import UTCDateTime

    from pipeline.waveforms.inventory import inline_inventory, select_channels
    from pipeline.waveforms.params import QualityConfig
    from pipeline.waveforms.quality import quality_table

    choices = select_channels(
        inline_inventory(cfg.stations, cfg.starttime), ["HH?"], ["*"], cfg.starttime, cfg.endtime
    )
    day = cfg.starttime.date()
    span = (UTCDateTime(cfg.starttime), UTCDateTime(cfg.endtime))
    table = quality_table(sds, choices, [day], span, QualityConfig())
    reasons = set(table[table.station == "B2"].reason)
    assert reasons == {
        "no data file (the archive has XX.B2.00.EHZ that day: other location or channel codes)"
    }


def test_station_whose_epochs_miss_the_span_is_named(tmp_path):
    """A StationXML station whose epochs all ended before the span vanished without a word
    (no validate warning, no report line) although the archive held its data."""
    from obspy import UTCDateTime, read_inventory

    from pipeline.config import write_resolved_config
    from pipeline.preflight import station_notes
    from pipeline.report.data_quality import data_gaps
    from pipeline.waveforms import download_waveforms

    xml = _stationxml(tmp_path / "st.xml", "XX", [("A1", 3), ("B2", 3)])
    inventory = read_inventory(str(xml))
    inventory[0][1].start_date = UTCDateTime(1990, 1, 1)
    inventory[0][1].end_date = UTCDateTime(1999, 12, 31)
    inventory.write(str(xml), format="STATIONXML")
    sds = tmp_path / "sds"
    sds.mkdir()
    spec = MINIMAL + f"output_dir: {tmp_path}\nstations: {{kind: stationxml, path: {xml}}}\n"
    spec += f"waveforms:\n  source: {{kind: sds, path: {sds}}}\n"
    cfg = load_config(_config(tmp_path, spec))
    why = "skipped: its inventory epoch(s) 1990-01-01 - 1999-12-31 do not overlap the span"
    assert station_notes(cfg) == [
        f"stations.path = '{xml}': station XX.B2 {why}",
        f"stations.path = '{xml}': 1 usable station(s), fewer than association.min_stations "
        "= 3: picks only, no event can be associated",
    ]
    run = write_resolved_config(cfg)
    download_waveforms(run, cfg.stations, cfg.waveforms, cfg.starttime, cfg.endtime,
                       progress=False)  # fmt: skip
    assert data_gaps(run)["XX.B2"] == f"waveforms: {why}"


@pytest.mark.parametrize("kind", ["stationxml", "inline"])
def test_a_station_listed_twice_is_one_station_and_named_when_it_moved(tmp_path, kind):
    """Two entries of one station are one station; entries far apart are named, and the
    first entry's coordinates are used."""
    from pipeline.preflight import preflight_problems, station_notes
    from pipeline.waveforms.inventory import select_channels
    from pipeline.waveforms.station_sources import load_inventory

    if kind == "stationxml":  # identical entries: nothing to say
        xml = _stationxml(tmp_path / "st.xml", "XX", [("A1", 3), ("A1", 3), ("B2", 3)])
        section, expected = f"{{kind: stationxml, path: {xml}}}", []
    else:
        rows = ", ".join(
            f"{{network: XX, station: {s}, latitude: {lat}, longitude: 133.0}}"
            for s, lat in (("A1", 35.0), ("A1", 36.0), ("B2", 35.0))
        )
        section = f"{{kind: inline, stations: [{rows}]}}"
        expected = [
            "stations: station XX.A1 (used): listed in 2 entries up to 110950 m apart; the "
            "coordinates of the first with the chosen channels are used"
        ]
    spec = MINIMAL + f"output_dir: {tmp_path}\nstations: {section}\n"
    spec += f"waveforms:\n  source: {{kind: sds, path: {tmp_path}}}\n"
    cfg = load_config(_config(tmp_path, spec))
    assert preflight_problems(cfg, ["download"]) == []
    field = "stations" if kind == "inline" else f"stations.path = '{xml}'"
    assert station_notes(cfg) == [
        *expected,
        f"{field}: 2 usable station(s), fewer than association.min_stations = 3: picks "
        "only, no event can be associated",
    ]
    inventory = load_inventory(cfg.stations, cfg.starttime, cfg.endtime)
    choices = select_channels(inventory, ["HH?"], ["*"], cfg.starttime, cfg.endtime, {})
    assert [(c.station, c.latitude, c.channels) for c in choices] == [
        ("A1", 35.0, ("HHE", "HHN", "HHZ")),
        ("B2", 35.0, ("HHE", "HHN", "HHZ")),
    ]


def test_station_epochs_join_their_channels_and_a_sensor_change_is_named():
    """A station whose metadata changed within the span (two epochs) gets the channels of
    both; when the chosen channels stop mid-span (the other epoch has other ones) it says so."""
    from obspy import Inventory, UTCDateTime
    from obspy.core.inventory import Channel, Network, Station

    from pipeline.waveforms.inventory import select_channels

    t0, change, t1 = (UTCDateTime(2000, 10, d) for d in (6, 8, 10))

    def epoch(start, end, codes):
        sta = Station("A1", 35.0, 133.0, 0.0, start_date=start, end_date=end)
        for code in codes:
            sta.channels.append(
                Channel(code, "", 35.0, 133.0, 0.0, 0.0, sample_rate=100.0,
                        start_date=start, end_date=end)
            )  # fmt: skip
        return sta

    joined = Inventory(
        [Network("XX", stations=[epoch(t0, change, ["HHZ"]), epoch(change, None, ["HHN", "HHE"])])]
    )
    skipped: dict[str, str] = {}
    notes: dict[str, str] = {}
    (choice,) = select_channels(joined, ["HH?"], ["*"], t0.datetime, t1.datetime, skipped, notes)
    assert choice.channels == ("HHE", "HHN", "HHZ")
    assert notes == {}

    hh, eh = ["HHZ", "HHN", "HHE"], ["EHZ", "EHN", "EHE"]
    changed = Inventory([Network("XX", stations=[epoch(t0, change, hh), epoch(change, None, eh)])])
    (choice,) = select_channels(
        changed, ["HH?", "EH?"], ["*"], t0.datetime, t1.datetime, skipped, notes
    )
    assert choice.channel_prefix == "HH" and skipped == {}
    assert notes == {
        "XX.A1": "channels HH? at location '' are listed for all but 48.0 h of the "
        "span; other channels listed in the span are not used: EH? at ''"
    }

    notes = {}
    ended = Inventory([Network("XX", stations=[epoch(t0, change, hh), epoch(change, None, [])])])
    select_channels(ended, ["HH?", "EH?"], ["*"], t0.datetime, t1.datetime, skipped, notes)
    assert skipped == {} and notes == {
        "XX.A1": "channels HH? at location '' are listed for all but 48.0 h of the "
        "span; no other channels are listed for that time"
    }


def test_a_station_whose_channels_ended_before_the_span_says_so():
    """An active station whose matching channels are listed only outside the span is skipped
    with those channels' epochs, not with "no channel matches"."""
    from obspy import Inventory, UTCDateTime
    from obspy.core.inventory import Channel, Network, Station

    from pipeline.waveforms.inventory import select_channels

    ended = UTCDateTime(2023, 1, 1)
    sta = Station("A1", 35.0, 133.0, 0.0, start_date=UTCDateTime(2020, 1, 1))
    for code in ("HHZ", "HHN", "HHE"):
        sta.channels.append(
            Channel(code, "", 35.0, 133.0, 0.0, 0.0, sample_rate=100.0,
                    start_date=UTCDateTime(2020, 1, 1), end_date=ended)
        )  # fmt: skip
    skipped: dict[str, str] = {}
    t0, t1 = UTCDateTime(2024, 3, 10).datetime, UTCDateTime(2024, 3, 11).datetime
    assert (
        select_channels(Inventory([Network("XX", stations=[sta])]), ["HH?"], ["*"], t0, t1, skipped)
        == []
    )
    assert skipped == {
        "XX.A1": "skipped: its channels matching ['HH?'] are listed only outside the span "
        "(HHE 2020-01-01 - 2023-01-01, HHN 2020-01-01 - 2023-01-01, HHZ 2020-01-01 - 2023-01-01)"
    }


@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("benchmarks/replica_full.py", ["--stages", "foo"], "--stages: expected stages among"),
        ("benchmarks/replica_full.py", ["--stage-limit", "pick=x"], "expected STAGE=SECONDS"),
        ("benchmarks/replica_full.py", ["--skip-days", "-1"], "expected a number >= 0, got '-1'"),
        ("benchmarks/replica_full.py", ["--days", "inf"], "expected a number > 0, got 'inf'"),
        ("benchmarks/pick_losses.py", ["run", "--mc", "nan"], "expected a finite number, got"),
        ("-m", ["pipeline.catalog_diagnose", "run", "--m-min", "inf"], "expected a finite"),
        ("benchmarks/seisbench_throughput.py", ["--repeats", "0"], "--repeats must be at least"),
        ("benchmarks/pick_losses.py", ["run", "--out", "/"], "'/' is a folder; expected a file"),
        ("benchmarks/pick_losses.py", ["run", "--hours", "0"], "expected a number > 0, got '0'"),
        ("benchmarks/pick_losses.py", ["run", "--start", "x"], "invalid UTCDateTime value: 'x'"),
        # picking settings and models are checked before a case loads a model (every case
        # used to fail that way, printing its traceback, and the script exited 0)
        ("benchmarks/picking_throughput.py", ["--overlap", "5"], "overlap = 5.0: Input should"),
        ("benchmarks/picking_throughput.py", ["--mc", "1"], "mc_samples = 1: must be 0 (off) or"),
        ("benchmarks/picking_throughput.py", ["--models", "orignal"], "model 'orignal': expected"),
        (
            "-m",
            ["pipeline.catalog_diagnose", "run", "--csv", "/no/t.csv"],
            "folder '/no' not found",
        ),
    ],
)
def test_script_options_are_refused_by_the_parser(tmp_path, script, args, expected):
    if script.startswith("benchmarks/replica_full"):
        args = ["--out", str(tmp_path / "bench"), *args]
    done = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 2
    assert expected in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "bench").exists()


def test_replica_benchmark_exits_with_the_status_of_a_failed_stage(tmp_path):
    base = yaml.safe_load((REPO / "station_configs" / "tottori_replica.yaml").read_text())
    base["velocity_model"] = str(tmp_path / "no_such_model.yaml")
    config = _config(tmp_path, yaml.safe_dump(base), "replica.yaml")
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "benchmarks/replica_full.py", "--out", str(out), "--config", str(config)]
        + ["--stages", "download", "--days", "0.01"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: stage download failed (exit 2; log {out / 'download.log'}): ")
    assert "no_such_model.yaml" in line
    record = json.loads((out / "benchmark.json").read_text())
    assert record["stages"]["download"]["complete"] is False


@pytest.mark.parametrize(
    "parse, text, ok",
    [
        ("positive_or_zero", "0", 0.0),
        ("positive_or_zero", "-0.5", None),
        ("positive", "nan", None),
        ("positive", "inf", None),
        ("finite", "-1.5", -1.5),
        ("finite", "nan", None),
        ("finite", "x", None),
    ],
)
def test_argument_types(parse, text, ok):
    import argparse

    from pipeline.cli import finite, positive

    function = {
        "positive_or_zero": positive(float, or_zero=True),
        "positive": positive(float),
        "finite": finite,
    }[parse]
    if ok is None:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text))):
            function(text)
    else:
        assert function(text) == ok


@pytest.mark.parametrize(
    "section, field",
    [
        (
            "stations: {kind: inline, stations: [{network: XX, station: A1, latitude: 35.0, "
            "longitude: 133.0, elevation_m: .inf}]}",
            "stations.inline.stations.0.elevation_m",
        ),
        ("magnitude: {watanabe_b: .nan}", "magnitude.watanabe_b"),
        ("relocation: {hypodd: {max_gap_deg: .inf}}", "relocation.hypodd.max_gap_deg"),
        ("scenario: {magnitude_max: .nan}", "scenario.magnitude_max"),
    ],
)
def test_config_numbers_refuse_nan_and_infinity(tmp_path, section, field):
    """Every section shares one pydantic configuration (pipeline.sections)."""
    spec = MINIMAL + section + "\n" + ("" if "scenario" in section else "scenario: {}\n")
    if section.startswith("stations"):
        spec = MINIMAL + section + f"\nwaveforms:\n  source: {{kind: sds, path: {tmp_path}}}\n"
    with pytest.raises(ConfigError, match=re.escape(field) + ".*finite number"):
        load_config(_config(tmp_path, spec))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["demo", "--out", "{file}"], "--out {file}: is a file; expected a folder for the demo"),
        (["demo", "--out", "{file}/runs"], "cannot create a folder for the demo runs (Not a dir"),
        (["serve", "{config}", "--cron", "61 * * * *"], "--cron '61 * * * *': expected a cron"),
        (["serve", "{demo}"], "{demo}: has a scenario section (a synthetic replica at fixed"),
    ],
    ids=["demo-out-file", "demo-out-under-file", "serve-bad-cron", "serve-scenario"],
)
def test_demo_and_serve_options_are_checked_before_any_work(tmp_path, args, expected):
    """One line and status 2, before a scenario is generated or a server is started."""
    names = {
        "file": _config(tmp_path, "keep me", "runs.txt"),
        "config": REPO / "station_configs" / "example_fdsn.yaml",
        "demo": REPO / "station_configs" / "demo.yaml",
    }
    done = subprocess.run(
        [*EQCAT, *(a.format(**names) for a in args)], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected.format(**names) in line
    assert names["file"].read_text() == "keep me"


def test_a_scheduled_run_keeps_the_span_start_of_the_one_before(tmp_path):
    """Extend, never shrink: the next scheduled run starts no later than the last one did
    (a later start would change the part of the first day that is picked, and re-pick it);
    a copy it cannot read is not kept."""
    from datetime import UTC, datetime

    from flows.scheduled import _scheduled_start

    path = tmp_path / "config.scheduled.yaml"
    assert _scheduled_start(path) == []
    path.write_text("name: x\nstarttime: '2000-10-08T00:00:00+00:00'\n", encoding="utf-8")
    assert _scheduled_start(path) == [datetime(2000, 10, 8, tzinfo=UTC)]
    path.write_text("name: x\nstarttime: 2000-10-08 09:00:00+09:00\n", encoding="utf-8")
    assert _scheduled_start(path) == [datetime(2000, 10, 8, tzinfo=UTC)]
    for damaged in ("starttime: [", "starttime: not a time\n", "- a list\n"):
        path.write_text(damaged, encoding="utf-8")
        assert _scheduled_start(path) == []


def test_the_pickers_notes_on_stations_reach_the_report(tmp_path):
    """What the picker noted about the data of a station it used (a stretch dead within the
    data, a component picked as zeros, horizontals rotated) was only in the manifest; the
    report's "Station notes" cell and the terminal's data line name it now, folded after 8."""
    from pipeline.report.data_quality import notes_cell, station_notes, terminal_lines
    from pipeline.rundir import RunDir

    run = RunDir(tmp_path / "run")
    notes = [
        "XX.A..HHZ: 600 s dead (flat) within the data, taken as a gap",
        "XX.A.: component(s) E missing (zeros)",
        *(f"XX.B{k:02d}.: component(s) N missing (zeros)" for k in range(9)),
    ]
    run.record_stage("picks", details={"notes": notes})
    found = station_notes(run)
    assert found["XX.A"] == (
        "XX.A..HHZ: 600 s dead (flat) within the data, taken as a gap; "
        "component(s) E missing (zeros)"
    )
    assert len(found) == 10
    cell = notes_cell(found)
    assert cell.count("XX.B") == 9 and "<details><summary>and 2 more</summary>" in cell
    assert any(line.startswith("data: notes on 10 station(s) used") for line in terminal_lines(run))
