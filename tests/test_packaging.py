"""TensorFlow packaging: the CPU and GPU set-ups are mutually exclusive.

Both use the one ``tensorflow`` wheel; the ``gpu`` extra (``make setup GPU=1``) only adds
NVIDIA's CUDA wheels through ``tensorflow[and-cuda]``. No other distribution that ships the
``tensorflow`` module (``tensorflow-cpu``, ``tensorflow-gpu``) may be required or installed.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tomllib
from importlib.metadata import distributions, packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OTHER_TF = re.compile(r"^(tensorflow-cpu|tensorflow-gpu|tensorflow-intel|tf-nightly)", re.I)


def _requirements() -> tuple[list[str], dict[str, list[str]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project["dependencies"], project["optional-dependencies"]


def test_gpu_extra_is_the_same_tensorflow_with_cuda():
    deps, extras = _requirements()
    [cpu] = [d for d in deps if re.match(r"tensorflow\b(?!-)", d)]
    [gpu] = extras["gpu"]
    assert gpu == cpu.replace("tensorflow", "tensorflow[and-cuda]", 1)
    everything = deps + [r for reqs in extras.values() for r in reqs]
    assert not [r for r in everything if OTHER_TF.match(r)]
    constraints = (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
    assert not [line for line in constraints if OTHER_TF.match(line)]


def test_one_distribution_provides_tensorflow():
    assert packages_distributions()["tensorflow"] == ["tensorflow"]
    names = {d.metadata["Name"].lower() for d in distributions()}
    assert not [n for n in names if OTHER_TF.match(n)]
    # A CPU set-up (its stamp is the hash of pyproject.toml + constraints.txt) has no CUDA
    # wheels; a GPU=1 set-up (stamp with "gpu") has them.
    stamp = REPO / ".venv" / ".eqcat-install-stamp"
    if stamp.is_file():
        files = b"".join((REPO / f).read_bytes() for f in ("pyproject.toml", "constraints.txt"))
        cuda = [n for n in names if re.match(r"nvidia-.*-cu\d+$", n)]
        if stamp.read_text().strip() == hashlib.sha256(files).hexdigest():
            assert cuda == []
        else:
            assert hashlib.sha256(files + b"gpu\n").hexdigest() == stamp.read_text().strip()
            assert cuda


def test_setup_rejects_unknown_gpu_value():
    env = {**os.environ, "GPU": "yes"}
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup.sh")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "GPU must be 0 or 1, got 'yes'" in result.stderr
