"""Installing and locating the pretrained EQTransformer weights.

Weights live in the user cache (``~/.cache/eqcat/models``, or ``EQCAT_MODEL_DIR``).
:func:`install_weights` fills it, in this order of preference:

1. ``EQCAT_WEIGHTS``: a path to a ``.keras`` or legacy ``.h5`` weights file, or a
   folder holding them;
2. ``../shared/models/eqt/`` beside the repository (``EQCAT_SHARED`` overrides);
3. a download of the authors' original model, :data:`ORIGINAL_MODEL_URL`.

Every installed file's SHA-256 is recorded in ``weights.json`` in the cache folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import urllib.request
from pathlib import Path

from pipeline.rundir import atomic_path, sha256_file, write_text_atomic

log = logging.getLogger(__name__)

#: The authors' original EQTransformer model, published in their repository.
ORIGINAL_MODEL_URL = (
    "https://github.com/smousavi05/EQTransformer/raw/master/"
    "ModelsAndSampleData/EqT_original_model.h5"
)
#: File name of the default model (the authors' "conservative" weights, Keras 3 format).
DEFAULT_MODEL_FILE = "EqT_conservative.keras"
WEIGHT_SUFFIXES = (".keras", ".h5")
REPO_ROOT = Path(__file__).resolve().parents[1]


class WeightsUnavailableError(RuntimeError):
    """Raised when no weights source is reachable; the message says what to do."""


def model_dir() -> Path:
    """The folder that holds installed weights (``EQCAT_MODEL_DIR`` or the user cache)."""
    override = os.environ.get("EQCAT_MODEL_DIR")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "eqcat" / "models"


def default_weights_path() -> Path:
    """Path of the weights a build uses when its config names none.

    The conservative ``.keras`` model when installed, else the first installed file.
    """
    folder = model_dir()
    preferred = folder / DEFAULT_MODEL_FILE
    if preferred.is_file():
        return preferred
    installed = sorted(p for p in folder.glob("*") if p.suffix in WEIGHT_SUFFIXES)
    if installed:
        return installed[0]
    raise WeightsUnavailableError(
        f"no EQTransformer weights in {folder}; run `make setup` "
        "(or set EQCAT_WEIGHTS to a weights file and run `eqcat install-weights`)"
    )


def _candidate_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(p for p in source.glob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def _shared_model_folder() -> Path:
    shared = Path(os.environ.get("EQCAT_SHARED", REPO_ROOT.parent / "shared"))
    return shared / "models" / "eqt"


def _download(url: str, target: Path, timeout_s: float = 60.0) -> None:
    with atomic_path(target) as tmp, urllib.request.urlopen(url, timeout=timeout_s) as resp:
        with open(tmp, "wb") as fh:
            shutil.copyfileobj(resp, fh)


def install_weights(dest: Path | None = None) -> dict[str, str]:
    """Install weights into ``dest`` (default :func:`model_dir`) and return {file: sha256}.

    Idempotent: a file already present with the same content is not copied again.

    Raises:
        WeightsUnavailableError: offline with no local source; the message names the
            URL and the path to put the file at.
    """
    dest = dest or model_dir()
    dest.mkdir(parents=True, exist_ok=True)
    env_path = os.environ.get("EQCAT_WEIGHTS")
    if env_path:
        sources = _candidate_files(Path(env_path).expanduser())
        if not sources:
            raise WeightsUnavailableError(
                f"EQCAT_WEIGHTS={env_path} holds no .keras or .h5 weights file"
            )
    else:
        sources = _candidate_files(_shared_model_folder())

    installed: dict[str, str] = {}
    for src in sources:
        target = dest / src.name
        digest = sha256_file(src)
        if not (target.is_file() and sha256_file(target) == digest):
            with atomic_path(target) as tmp:
                shutil.copyfile(src, tmp)
        installed[target.name] = digest

    if not installed:
        target = dest / Path(ORIGINAL_MODEL_URL).name
        if not target.is_file():
            try:
                _download(ORIGINAL_MODEL_URL, target)
            except OSError as exc:
                raise WeightsUnavailableError(
                    f"could not download the EQTransformer weights ({exc}). Download\n"
                    f"  {ORIGINAL_MODEL_URL}\nand put the file at\n  {target}\n"
                    "or set EQCAT_WEIGHTS to a weights file you have."
                ) from exc
        installed[target.name] = sha256_file(target)

    write_text_atomic(dest / "weights.json", json.dumps(installed, indent=2, sort_keys=True))
    log.info("EQTransformer weights in %s: %s", dest, installed)
    return installed
