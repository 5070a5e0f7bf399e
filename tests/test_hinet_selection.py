"""Hi-net stations selected by rule from a recorded station list, parsed by HinetPy itself.

Recorded response: the five Hi-net stations that HinetPy's documentation prints from
``client.get_station_list("0101")`` (seisman/HinetPy, commit 7198856c,
docs/tutorial/get-started.md: N.WNNH, N.SFNH, N.WNWH, N.WNEH, N.SFSH with latitude,
longitude, elevation). No NIED station-list file (NIED_SeismicStation_*.csv) is available
offline, and none near Tottori: the rows are written back in the CSV layout HinetPy's parser
reads (``organization_id``, ``network_id``, ``station_cd``, ``latitude``, ``longitude``,
``height(m)``, values quoted as NIED quotes them), and served to HinetPy's own
``get_station_list`` in place of the HTTP response. MOCKED, at the network boundary only:
``requests.get`` (that station-list download) and the client's ``session`` (the selection
POST, recorded). Everything else — HinetPy's parsing and ``select_stations``, our rule — is
the real code.
"""

from __future__ import annotations

from pathlib import Path

import HinetPy.client
import pytest
from HinetPy import Client
from obspy.geodetics import locations2degrees
from pydantic import ValidationError

from pipeline.config import load_config
from pipeline.waveforms.hinet import select_hinet_stations, stations_by_rule
from pipeline.waveforms.params import HinetSource, HinetStationRule

REPO = Path(__file__).resolve().parents[1]

#: name, latitude, longitude, elevation (m) as recorded in HinetPy's get-started.md.
RECORDED = [
    ("N.WNNH", 45.4883, 141.885, -159.06),
    ("N.SFNH", 45.3346, 142.1185, -81.6),
    ("N.WNWH", 45.2531, 141.6334, -130.6),
    ("N.WNEH", 45.2303, 141.8806, -174.6),
    ("N.SFSH", 45.2163, 142.2254, -96.6),
]
HEADER = "organization_id,network_id,station_cd,latitude,longitude,height(m)"


def station_list_csv() -> bytes:
    """The recorded rows in the station-list CSV layout that HinetPy parses."""
    rows = [f"'01','01',{n},{lat},{lon},{elev}" for n, lat, lon, elev in RECORDED]
    return "\n".join([HEADER, *rows]).encode("utf-8")


class RecordedResponse:
    """MOCK of the HTTP response to HinetPy's station-list request."""

    content = station_list_csv()


class RecordingSession:
    """MOCK of the logged-in session: records the selection POST HinetPy sends."""

    def __init__(self):
        self.posts: list[tuple[str, dict]] = []

    def post(self, url, data=None, timeout=None):
        self.posts.append((url, data))


@pytest.fixture
def client(monkeypatch):
    """A HinetPy Client without login whose station list is the recorded response."""

    def fake_get(url, timeout=None):
        assert url == Client._STATION_INFO
        return RecordedResponse()

    monkeypatch.setattr(HinetPy.client.requests, "get", fake_get)
    hinet = Client.__new__(Client)  # no login: __init__ would reach the server
    hinet.session = RecordingSession()
    hinet.timeout = 30
    return hinet


def test_hinetpy_parses_the_recorded_list(client):
    stations = client.get_station_list("0101")
    assert [(s.code, s.name, s.latitude, s.longitude, s.elevation) for s in stations] == [
        ("0101", *row) for row in RECORDED
    ]


def test_circle_nearest_first(client):
    rule = HinetStationRule(latitude=45.4883, longitude=141.885, max_radius_deg=0.3, max_stations=3)
    names = select_hinet_stations(client, HinetSource(select=rule))
    # Distances from N.WNNH (degrees): SFNH 0.224, WNEH 0.258, WNWH 0.294, SFSH 0.362.
    dist = {n: locations2degrees(45.4883, 141.885, lat, lon) for n, lat, lon, _ in RECORDED}
    assert dist["N.WNWH"] < 0.3 < dist["N.SFSH"]
    assert dist["N.SFNH"] < dist["N.WNEH"] < dist["N.WNWH"]
    assert names == ["N.WNNH", "N.SFNH", "N.WNEH"]  # 4 inside, the 3 nearest kept
    # HinetPy's select_stations sent exactly these names to the server.
    [(url, payload)] = client.session.posts
    assert url == Client._CONT_SELECT
    assert payload == {"net": "0101", "stcds": "N.WNNH:N.SFNH:N.WNEH", "mode": "1"}


def test_box_ranked_from_its_centre(client):
    rule = HinetStationRule(
        min_latitude=45.22, max_latitude=45.40, min_longitude=141.6, max_longitude=142.0
    )
    # Inside: WNWH and WNEH (SFNH east of 142.0, SFSH south of 45.22, WNNH north of 45.40);
    # WNEH is nearer the centre (45.31 N, 141.8 E).
    assert stations_by_rule(client.get_station_list("0101"), rule) == ["N.WNEH", "N.WNWH"]


def test_tottori_config_selects_by_rule_and_reports_no_match(client):
    cfg = load_config(REPO / "station_configs" / "tottori2000.yaml")
    source = cfg.waveforms.source
    assert source.stations == [] and source.select is not None
    rule = source.select
    # JMA's epicentre, 35°16'N 133°19'E (cited in the config), not the synthetic replica's
    # made-up fault centre (35.27 N, 133.35 E)
    assert (rule.latitude, rule.longitude, rule.max_stations) == (35.267, 133.317, 18)
    # The recorded list holds northern-Hokkaido stations only: nothing within 1 degree of
    # Tottori, and the error says which rule found nothing; nothing is sent to the server.
    with pytest.raises(ValueError, match=r"no station of Hi-net network 0101 matches"):
        select_hinet_stations(client, source)
    assert client.session.posts == []
    text = (REPO / "station_configs" / "tottori2000.yaml").read_text(encoding="utf-8")
    assert "N.HINH" not in text and "stations: [" not in text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"latitude": 35.0, "longitude": 133.0}, "circle needs"),
        ({"min_latitude": 35.0, "max_latitude": 36.0, "min_longitude": 133.0}, "box needs"),
        ({}, "give a circle"),
        (
            {"latitude": 35, "longitude": 133, "max_radius_deg": 1, "min_latitude": 34},
            "not both",
        ),
    ],
)
def test_rule_errors(fields, message):
    with pytest.raises(ValidationError, match=message):
        HinetStationRule(**fields)


def test_names_or_rule_not_both():
    rule = HinetStationRule(latitude=35.27, longitude=133.35, max_radius_deg=1.0)
    with pytest.raises(ValidationError, match="not both"):
        HinetSource(stations=["N.AAKH"], select=rule)
