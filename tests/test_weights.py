"""Installing EQTransformer weights into the user cache."""

import json

import pytest

from pipeline import weights
from pipeline.rundir import sha256_file

CONSERVATIVE_SHA256 = "ba3846abf793c693e5ab9ee2f793ed0e801007dfda57523cb7c200553aa7ae9b"


def test_install_from_env_path_records_sha256(tmp_path, monkeypatch, shared):
    source = shared("models", "eqt", "EqT_conservative.keras")
    monkeypatch.setenv("EQCAT_WEIGHTS", str(source))
    monkeypatch.setenv("EQCAT_MODEL_DIR", str(tmp_path / "cache"))
    installed = weights.install_weights()
    assert installed == {"EqT_conservative.keras": CONSERVATIVE_SHA256}
    recorded = json.loads((tmp_path / "cache" / "weights.json").read_text())
    assert recorded == installed
    assert weights.default_weights_path() == tmp_path / "cache" / "EqT_conservative.keras"
    # second run: idempotent, same content
    assert weights.install_weights() == installed
    assert sha256_file(weights.default_weights_path()) == CONSERVATIVE_SHA256


def test_offline_without_source_names_url_and_path(tmp_path, monkeypatch):
    monkeypatch.delenv("EQCAT_WEIGHTS", raising=False)
    monkeypatch.setenv("EQCAT_SHARED", str(tmp_path / "no_shared"))

    def refuse(url, target, timeout_s=60.0):
        raise OSError("network unreachable")

    monkeypatch.setattr(weights, "_download", refuse)
    with pytest.raises(weights.WeightsUnavailableError) as err:
        weights.install_weights(tmp_path / "cache")
    message = str(err.value)
    assert weights.ORIGINAL_MODEL_URL in message
    assert str(tmp_path / "cache" / "EqT_original_model.h5") in message


def test_missing_weights_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("EQCAT_MODEL_DIR", str(tmp_path / "empty"))
    with pytest.raises(weights.WeightsUnavailableError, match="make setup"):
        weights.default_weights_path()
