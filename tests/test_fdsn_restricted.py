"""Restricted FDSN data: HTTP Digest accounts from the environment or a named secret.

The server is the real ``portable-fdsnws-dataselect`` of ``test_waveforms_fdsn.py`` behind the
test proxy holding its data restricted (``tests/fdsn_server.py``: plain ``query`` refused with
HTTP 401, ``queryauth`` behind an HTTP Digest challenge), so ObsPy's authentication path runs
over real sockets. The Prefect secret store is the one boundary replaced here: a dict stands
in for the secret loader the flow passes (``Secret.load(name).get()``).
"""

from __future__ import annotations

import logging

import pytest
from fdsn_server import FlakyProxy
from test_waveforms_fdsn import END, START, UNITS, _configs, served, synthetic  # noqa: F401, F811

from pipeline.errors import DataSourceError
from pipeline.rundir import RunDir
from pipeline.waveforms import download_waveforms
from pipeline.waveforms.credentials import CredentialsError

ACCOUNT = ("alice", "s3cret-Pw")


def _download(run_dir, stations, waveforms, **kwargs) -> dict:
    return download_waveforms(RunDir(run_dir), stations, waveforms, START, END, progress=False,
                              **kwargs)  # fmt: skip


def test_restricted_data_with_an_account_from_env_or_secret(
    served,  # noqa: F811 - the fixture imported above
    tmp_path,
    monkeypatch,
    caplog,
):
    caplog.set_level(logging.DEBUG)
    for name in ("FDSN_USER", "FDSN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with FlakyProxy(served["url"], credentials=ACCOUNT) as proxy:
        stations, public = _configs(served, proxy.base_url, retries=0)
        # every station-day refused: the build stops with one line (it ended in an empty
        # catalog with exit status 0)
        with pytest.raises(DataSourceError) as info:
            _download(tmp_path / "public", stations, public)
        assert str(info.value).startswith(
            f"waveforms.source: no data from {proxy.base_url}: 8 station-day(s) failed and 0 "
            "had no data; first failure: "
        )
        assert "HTTP 401: restricted data; set restricted: true" in str(info.value)

        # restricted without an account: one line before any request
        _, restricted = _configs(served, proxy.base_url, retries=0, restricted=True)
        asked = len(proxy.requests)
        with pytest.raises(CredentialsError) as info:
            _download(tmp_path / "none", stations, restricted)
        assert str(info.value) == (
            f"waveforms.source ({proxy.base_url}, restricted) needs credentials: set the "
            "environment variables FDSN_USER and FDSN_PASSWORD, or name a secret in "
            "waveforms.source.secret_block"
        )
        assert len(proxy.requests) == asked

        # a wrong password: every unit refused by the service
        monkeypatch.setenv("FDSN_USER", ACCOUNT[0])
        monkeypatch.setenv("FDSN_PASSWORD", "wrong")
        with pytest.raises(DataSourceError, match="Unauthorized"):
            _download(tmp_path / "wrong", stations, restricted)
        assert proxy.auth_failures > 0

        # the account from the environment: the data of an open server (6 units with data)
        monkeypatch.setenv("FDSN_PASSWORD", ACCOUNT[1])
        ok = _download(tmp_path / "env", stations, restricted)
        assert (ok["units_downloaded"], ok["units_nodata"], ok["units_failed"]) == (6, 2, 0)

        # or from a named secret (the environment emptied)
        for name in ("FDSN_USER", "FDSN_PASSWORD"):
            monkeypatch.delenv(name)
        _, by_secret = _configs(
            served, proxy.base_url, restricted=True, secret_block="fdsn-account"
        )
        secrets = {"fdsn-account": ":".join(ACCOUNT) + "\n"}  # as pasted into a secret
        ok = _download(tmp_path / "secret", stations, by_secret, secret_loader=secrets.__getitem__)
        assert ok["units_downloaded"] == 6
        with pytest.raises(CredentialsError, match="secret 'fdsn-account' must hold 'user:pass"):
            _download(tmp_path / "bad", stations, by_secret, secret_loader=lambda _: "alice")
    assert ACCOUNT[1] not in caplog.text


def test_validate_names_a_missing_account_before_any_request(tmp_path, monkeypatch):
    """``eqcat validate`` (and the build's own checks) of a restricted station service
    without an account: one problem line; a named secret is left to the run."""
    from pipeline.config import parse_config
    from pipeline.preflight import preflight_problems

    for name in ("FDSN_USER", "FDSN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    url = "http://127.0.0.1:9999"
    spec = {
        "name": "restricted",
        "starttime": "2024-02-03T00:00:00",
        "endtime": "2024-02-03T01:00:00",
        "output_dir": str(tmp_path),
        "stations": {"kind": "fdsn", "base_url": url, "restricted": True},
        "waveforms": {
            "source": {"kind": "fdsn", "base_url": url, "restricted": True, "secret_block": "x"}
        },
    }
    assert preflight_problems(parse_config(spec), ["download"]) == [
        f"stations ({url}, restricted) needs credentials: set the environment variables "
        "FDSN_USER and FDSN_PASSWORD, or name a secret in stations.secret_block"
    ]
    # one of the two set (an account half passed to a worker): the line says which is not
    for given, unset in (("FDSN_USER", "FDSN_PASSWORD"), ("FDSN_PASSWORD", "FDSN_USER")):
        monkeypatch.delenv(unset, raising=False)
        monkeypatch.setenv(given, "x")
        assert preflight_problems(parse_config(spec), ["download"]) == [
            f"stations ({url}, restricted) needs credentials: {unset} is not set (or empty) "
            f"while {given} is; set both, or name a secret in stations.secret_block"
        ]
    monkeypatch.setenv("FDSN_USER", ACCOUNT[0])
    monkeypatch.setenv("FDSN_PASSWORD", ACCOUNT[1])
    assert preflight_problems(parse_config(spec), ["download"]) == []
