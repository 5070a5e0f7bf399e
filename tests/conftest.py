"""Shared pytest fixtures: where ``../shared`` is and how to treat it missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_HOME,
    PREFECT_LOCAL_STORAGE_PATH,
    temporary_settings,
)
from prefect.testing.utilities import prefect_test_harness

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_path(*parts: str) -> Path:
    """A file in the shared data folder (``EQCAT_SHARED``, default ``../shared``).

    Skips the calling test when the file is missing, except under ``CI=true``,
    where a missing shared file is a failure.
    """
    root = Path(os.environ.get("EQCAT_SHARED", REPO_ROOT.parent / "shared"))
    target = root.joinpath(*parts)
    if not target.exists():
        message = f"shared data file missing: {target} (set EQCAT_SHARED)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return target


@pytest.fixture
def shared():
    """The :func:`shared_path` helper as a fixture."""
    return shared_path


@pytest.fixture
def hyp_binary() -> Path:
    """The ``hyp1.40`` built by the set-up; skips when missing, except under CI=true."""
    from pipeline.location.runner import HypoInverseError, find_hypoinverse

    try:
        return find_hypoinverse()
    except HypoInverseError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One temporary Prefect server, home and result storage for the whole session.

    The settings are also exported as environment variables, so processes started
    inside (Dask workers) report to the same server and share the result storage.
    """
    home = tmp_path_factory.mktemp("prefect_home")
    storage = home / "storage"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("PREFECT_LOCAL_STORAGE_PATH", str(storage))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with temporary_settings(updates={PREFECT_HOME: home, PREFECT_LOCAL_STORAGE_PATH: storage}):
            with prefect_test_harness(server_startup_timeout=120):
                mp.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
                yield
