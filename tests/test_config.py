"""Build config validation: good configs pass, bad ones give one readable line each."""

from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_config, write_resolved_config
from pipeline.yamlfile import load_user_yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "station_configs"
MINIMAL_STATION = {"network": "XX", "station": "X01", "latitude": 35.3, "longitude": 133.4}
MINIMAL = {
    "name": "t",
    "starttime": "2000-10-06T00:00:00",
    "endtime": "2000-10-07T00:00:00",
    "stations": {
        "kind": "inline",
        "stations": [MINIMAL_STATION],
    },
}


def load_config_text(path: Path) -> dict:
    """The raw YAML mapping of a config file."""
    return yaml.safe_load(path.read_text()) or {}


def _write(tmp_path, content) -> Path:
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump(content) if isinstance(content, dict) else content)
    return path


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path, tmp_path, monkeypatch):
    # Run from a fresh folder: example_sds.yaml reads the archive `make demo` leaves in
    # runs/demo/waveforms (relative to where eqcat runs); without it, one clear error.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    sds = load_config_text(path).get("waveforms", {}).get("source", {})
    if sds.get("kind") == "sds":
        with pytest.raises(ConfigError, match=f"SDS archive folder not found: {sds['path']}"):
            load_config(path)
        (tmp_path / sds["path"]).mkdir(parents=True)
    cfg = load_config(path)
    assert cfg.endtime > cfg.starttime


def test_minimal_config_gets_the_picking_defaults(tmp_path):
    cfg = load_config(_write(tmp_path, MINIMAL))
    assert cfg.starttime.tzinfo is not None
    assert cfg.run_dir == Path("runs") / "t"
    picking = cfg.picking
    # the study's detection and P thresholds, overlap and batch; the S threshold measured on
    # the demo replica and NCEDC (pipeline/picking/params.py)
    assert (picking.detection_threshold, picking.p_threshold, picking.s_threshold) == (
        0.5,
        0.3,
        0.2,
    )
    assert (picking.overlap, picking.batch_size) == (0.3, 500)


def test_threshold_out_of_range_names_the_field(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, {**MINIMAL, "picking": {"p_threshold": 1.5}}))
    message = str(err.value)
    assert "picking.p_threshold = 1.5" in message
    assert len(message.splitlines()) == 1


def test_fdsn_build_without_stations_is_refused(tmp_path):
    spec = {k: v for k, v in MINIMAL.items() if k != "stations"}
    with pytest.raises(ConfigError, match="stations: required"):
        load_config(_write(tmp_path, spec))


def test_resolved_config_is_written(tmp_path):
    cfg = load_config(_write(tmp_path, {**MINIMAL, "output_dir": str(tmp_path / "runs")}))
    run = write_resolved_config(cfg)
    text = (run.root / "config.resolved.yaml").read_text()
    assert text.startswith("# config hash: ")
    assert yaml.safe_load(text)["name"] == "t"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"starttime": "not a date"}, "starttime = 'not a date'"),
        ({"colour": "red"}, "unknown key 'colour'"),
        (  # a box that was accepted and never used: the catalog was not limited to it
            {"region": {"min_latitude": 34.9, "max_latitude": 35.7}},
            "unknown key 'region'",
        ),
        ({"endtime": "2000-10-05T00:00:00"}, "endtime must be after starttime"),
        ({"name": "../etc"}, "name = '../etc'"),
        ({"velocity_model": "atlantis"}, "velocity model 'atlantis' not found"),
        ({"starttime": 12345}, "starttime = 12345: expected an ISO 8601 UTC time"),
        (  # ObsPy refused it only when the build made its client, after 5 "unreachable" tries
            {"waveforms": {"source": {"kind": "fdsn", "base_url": "EARTHSCOP"}}},
            "waveforms.source.fdsn.base_url = 'EARTHSCOP': expected an http(s) URL",
        ),
        ({"endtime": 979000000.0}, "endtime = 979000000.0: expected an ISO 8601"),
        (
            {"report": {"completeness": {"delta_m": 0.001}}},
            "report.completeness.delta_m = 0.001: Input should be greater than or equal to 0.01",
        ),
        (
            {"stations": {"kind": "inline", "stations": [{**MINIMAL_STATION, "network": 1}]}},
            "stations.inline.stations.0.network = 1: expected text; YAML read a number, so quote",
        ),
    ],
)
def test_bad_config_gives_one_line_naming_the_field(tmp_path, change, expected):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, {**MINIMAL, **change}))
    message = str(err.value)
    assert expected in message
    assert len(message.splitlines()) == 1
    assert message.startswith(str(tmp_path / "build.yaml"))


def test_sds_path_that_is_a_file_says_so(tmp_path):
    source = {"kind": "sds", "path": str(tmp_path / "build.yaml")}
    with pytest.raises(ConfigError, match="is a file, not an SDS archive folder"):
        load_config(_write(tmp_path, {**MINIMAL, "waveforms": {"source": source}}))


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    """YAML keeps the last of two equal keys: a second ``endtime`` (or ``picking:``) further
    down the file silently replaced the first."""
    path = tmp_path / "twice.yaml"
    path.write_text(
        "name: a\nstarttime: 2024-01-01T00:00:00\nendtime: 2024-01-02T00:00:00\n"
        "picking:\n  p_threshold: 0.2\nendtime: 2024-01-03T00:00:00\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: line 6: key 'endtime' given twice (first at line 3); "
        "YAML would keep only the last"
    )
    # a merge key (<<: *anchor) may override what it merges
    merged = load_user_yaml("a: &base {x: 1, y: 2}\nb:\n  <<: *base\n  x: 3\n")
    assert merged["b"] == {"x": 3, "y": 2}


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "name: [unclosed"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_example_fdsn_circle_is_centred_where_its_comment_cites():
    """The circle of example_fdsn.yaml is centred on the point its comment derives from its
    sources (8 km north-west of Prague, Oklahoma, 35.4861 N, 96.6878 W); it was 35.6 N,
    96.8 W, from no source (16 km from that point)."""
    from obspy.geodetics import gps2dist_azimuth

    stations = load_config(CONFIG_DIR / "example_fdsn.yaml").stations
    metres, azimuth, _ = gps2dist_azimuth(35.4861, -96.6878, stations.latitude, stations.longitude)
    assert metres == pytest.approx(8000, abs=600)  # rounded to 0.01 deg
    assert azimuth == pytest.approx(315, abs=5)
