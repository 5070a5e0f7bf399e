"""Build config validation: good configs pass, bad ones give one readable line each."""

import re
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipeline.config import BuildConfig, ConfigError, load_config, write_resolved_config
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
        (  # a box no stage read (it selected nothing), so it is no field: refused, not ignored
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
        (  # a depth in feet, or a placeholder: no station lies there
            {
                "stations": {
                    "kind": "inline",
                    "stations": [{**MINIMAL_STATION, "elevation_m": -99999}],
                }
            },
            "stations.inline.stations.0.elevation_m = -99999: expected -12262 to 8848.86 m above "
            "sea level",
        ),
        (  # PyOcto ran for minutes; a section's rule names its field, not the whole section
            {"association": {"pyocto": {"tolerance_s": 100}}},
            "build.yaml: association.pyocto.tolerance_s = 100 s: expected 0 < tolerance_s <= "
            "pick_match_tolerance_s (0.6 s)",
        ),
        (
            {"association": {"pyocto": {"min_node_size_km": 1.0}}},
            "association.pyocto.min_node_size_location_km = 1.5 km: expected below "
            "min_node_size_km (1 km)",
        ),
        (
            {"association": {"pyocto": {"time_before_s": 30, "time_slicing_s": 10}}},
            "association.pyocto.time_slicing_s = 10 s: expected at least time_before_s (30 s)",
        ),
        (
            {"association": {"pyocto": {"margin_km": 5000}}},
            "build.yaml: association.pyocto.margin_km = 5000.0 km: at most 400 km",
        ),
    ],
)
def test_bad_config_gives_one_line_naming_the_field(tmp_path, change, expected):
    _one_line_naming(tmp_path, change, expected)


def _one_line_naming(tmp_path, change: dict, expected: str) -> None:
    """``change`` to :data:`MINIMAL` gives one line, naming the file and holding ``expected``."""
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


def _fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """(dotted path, field) of every field of ``model`` and of the sections inside it
    (through unions, lists and optionals)."""
    for name, info in model.model_fields.items():
        yield prefix + name, info
        stack = [info.annotation]
        while stack:
            kind = stack.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                yield from _fields(kind, f"{prefix}{name}.")
            else:
                stack.extend(typing.get_args(kind))


def test_every_config_field_has_a_description():
    """The fields' descriptions are the config reference (README "Build configs"): a field
    without one is undocumented. Sections are documented by their class docstrings."""
    undocumented = [
        path
        for path, info in _fields(BuildConfig)
        if not (isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel))
        and not (info.description or "").strip()
    ]
    assert len(list(_fields(BuildConfig))) > 300
    assert not undocumented, undocumented


#: Suffixes that make a dotted name a file (``stations.csv``), not a config field.
FILE_SUFFIXES = {"csv", "json", "xml", "yaml", "parquet", "py"}


def test_every_config_field_the_docs_name_exists():
    """Each backticked ``section.field`` (``section.field: value``, ``= value``) in README.md,
    DESIGN.md and the shipped configs' comments is a field of the schema: a renamed or
    removed field leaves no instruction behind that a config would refuse."""
    known = {path for path, _ in _fields(BuildConfig)}
    sections = {path for path in known if "." not in path}
    repo = CONFIG_DIR.parent
    docs = [repo / "README.md", repo / "DESIGN.md", *sorted(CONFIG_DIR.glob("*.yaml"))]
    named, unknown = set(), []
    for doc in docs:
        for ref in re.findall(r"`([a-z_]+(?:\.[a-z_0-9]+)+)(?:\s*[:=][^`]*)?`", doc.read_text()):
            if ref.split(".")[0] in sections and ref.rsplit(".", 1)[1] not in FILE_SUFFIXES:
                named.add(ref)
                if ref not in known:
                    unknown.append(f"{doc.name}: {ref}")
    assert len(named) >= 25, sorted(named)
    assert not unknown, unknown


_STALTA = "build.yaml: picking.stalta."


@pytest.mark.parametrize(
    ("picking", "expected"),
    [  # picked nothing or asked for endless reads, without a word
        (
            {"stalta": {"p_trigger_on": 1e300}},
            f"{_STALTA}p_trigger_on = 1e+300: must lie above p_trigger_off (1.5) and below "
            "lta_s/sta_s (20), the highest ratio the recursive STA/LTA reaches",
        ),
        (
            {"stalta": {"s_trigger_on": 25, "sta_s": 1.0, "lta_s": 20}},
            f"{_STALTA}s_trigger_on = 25: must lie above 1 and below lta_s/sta_s (20)",
        ),
        (
            {"stalta": {"p_trigger_on": 2, "p_trigger_off": 3}},
            f"{_STALTA}p_trigger_on = 2: must lie above p_trigger_off (3)",
        ),
        (
            {"stalta": {"aic_before_s": 1e300}},
            f"{_STALTA}aic_before_s = 1e+300: must be at most lta_s (10): the AIC search",
        ),
        ({"stalta": {"s_aic_before_s": 11}}, f"{_STALTA}s_aic_before_s = 11: must be at most"),
        ({"stalta": {"aic_after_s": 1e6}}, f"{_STALTA}aic_after_s = 1e+06: must be at most"),
        ({"stalta": {"min_trigger_s": 60}}, f"{_STALTA}min_trigger_s = 60: must be at most lta_s"),
        (
            {"stalta": {"s_max_delay_s": 1e300}},
            f"{_STALTA}s_max_delay_s = 1e+300: Input should be less than or equal to 3600",
        ),
        (
            {"stalta": {"s_min_delay_s": 40}},
            f"{_STALTA}s_max_delay_s = 30: must exceed s_min_delay_s (40 s)",
        ),
        ({"stalta": {"lta_s": 0.4}}, f"{_STALTA}lta_s = 0.4: must be longer than sta_s (0.5 s)"),
        ({"gap_guard_s": 1e6}, "picking.gap_guard_s = 1000000.0: Input should be less than or"),
        ({"min_detection_s": 60}, "picking.min_detection_s = 60: Input should be less than 60"),
        ({"detection_margin_s": 61}, "picking.detection_margin_s = 61: Input should be less"),
        ({"min_pick_separation_s": 1e300}, "picking.min_pick_separation_s = 1e+300: Input"),
        ({"mc_time_window_s": 61}, "picking.mc_time_window_s = 61: Input should be less than"),
        ({"freqmax_hz": 50}, "picking.freqmax_hz = 50: Input should be less than 50"),
        ({"freqmin_hz": 30, "freqmax_hz": 20}, "picking.freqmax_hz = 20: must exceed freqmin_hz"),
        (
            {"mc_samples": 5, "max_probability_std": 0},
            "picking.max_probability_std = 0: Input should be greater than 0",
        ),
        (
            {"mc_samples": 5, "max_probability_std": 0.6},
            "picking.max_probability_std = 0.6: Input should be less than or equal to 0.5",
        ),
        (
            {"max_probability_std": 0.1},
            "build.yaml: picking.max_probability_std = 0.1: needs mc_samples >= 2 (got 0",
        ),
        ({"mc_samples": 1}, "build.yaml: picking.mc_samples = 1: must be 0 (off) or at least 2"),
    ],
)
def test_a_picking_setting_beyond_what_the_picker_can_use_is_refused(tmp_path, picking, expected):
    """One line naming the field, the value and the allowed range; before, ``p_trigger_on``
    1e300 (above what STA/LTA reaches) or ``gap_guard_s`` 1e6 gave no picks, ``aic_before_s``
    1e300 crashed the picker (OverflowError) and 1e6 read 11 days around every chunk."""
    _one_line_naming(tmp_path, {"picking": picking}, expected)


def test_every_rule_a_picking_section_breaks_is_one_line(tmp_path):
    """Rules across fields were checked one at a time, and their line quoted the whole
    section as the value."""
    stalta = {"p_trigger_on": 100, "aic_before_s": 20, "s_min_delay_s": 40}
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, {**MINIMAL, "picking": {"stalta": stalta}}))
    lines = str(err.value).splitlines()
    fields = [line.removeprefix(str(tmp_path / _STALTA)).split(" = ")[0] for line in lines]
    assert fields == ["p_trigger_on", "aic_before_s", "s_max_delay_s"]
    assert not any("{" in line for line in lines)


def test_example_fdsn_circle_is_centred_where_its_comment_cites():
    """The circle of example_fdsn.yaml is centred on the point its comment derives from its
    sources (8 km north-west of Prague, Oklahoma, 35.4861 N, 96.6878 W); it was 35.6 N,
    96.8 W, from no source (16 km from that point)."""
    from obspy.geodetics import gps2dist_azimuth

    stations = load_config(CONFIG_DIR / "example_fdsn.yaml").stations
    metres, azimuth, _ = gps2dist_azimuth(35.4861, -96.6878, stations.latitude, stations.longitude)
    assert metres == pytest.approx(8000, abs=600)  # rounded to 0.01 deg
    assert azimuth == pytest.approx(315, abs=5)
