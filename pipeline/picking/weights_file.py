"""EQTransformer weights files, read without TensorFlow (h5py only).

Reads the two formats the published weights come in:

- a Keras 3 ``.keras`` file (``config.json`` + ``model.weights.h5``; variables stored per
  layer under ``layers/<class_snake_case>[_<k>]/vars/<i>``, numbered in config order), or
- a legacy Keras 2 HDF5 file (``EqT_original_model.h5``, ``EqT_model_conservative.h5``;
  ``model_weights/<layer>/<layer>/<var>:0`` with a ``weight_names`` list per layer).

Kept apart from :mod:`pipeline.picking.model` so that ``eqcat validate`` checks a weights file
without importing TensorFlow (seconds of start-up).
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.errors import EqcatInputError

log = logging.getLogger(__name__)

#: SpatialDropout1D rate of the trained model.
DROP_RATE = 0.1


class WeightsMismatchError(EqcatInputError):
    """A weights file does not fit the network; the message names the file and the layer."""


def _snake_case(class_name: str) -> str:
    """Keras's file key of a class name: ``Conv1D`` -> ``conv1d``, ``LSTM`` -> ``lstm``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras3_file_keys(config: dict) -> dict[str, str]:
    """Layer name -> its group under ``layers/`` in a ``.keras`` weights file.

    Keras numbers the groups per class in the order the config lists the layers:
    the first ``Conv1D`` is ``conv1d``, the second ``conv1d_1``, and so on.
    """
    counts: Counter[str] = Counter()
    keys = {}
    for layer in config["config"]["layers"]:
        base = _snake_case(layer["class_name"])
        keys[layer["config"]["name"]] = base if counts[base] == 0 else f"{base}_{counts[base]}"
        counts[base] += 1
    return keys


#: Order of the sub-groups of one layer's group in a ``.keras`` weights file.
_KERAS3_SUBGROUPS = ("vars", "forward_layer", "backward_layer", "cell")


def _keras3_layer_arrays(group: h5py.Group, where: str) -> list[np.ndarray]:
    """The arrays of one layer's group, in the layer's variable order."""
    unknown = set(group) - set(_KERAS3_SUBGROUPS)
    if unknown:
        raise WeightsMismatchError(f"{where}: unexpected groups {sorted(unknown)}")
    arrays = []
    for sub in _KERAS3_SUBGROUPS:
        if sub == "vars" and sub in group:
            arrays += [np.asarray(group["vars"][str(i)]) for i in range(len(group["vars"]))]
        elif sub in group:
            arrays += _keras3_layer_arrays(group[sub], f"{where}/{sub}")
    return arrays


@dataclass(frozen=True)
class WeightsFile:
    """The contents of a weights file that the network needs.

    Attributes:
        path: the file.
        keras_format: ``"keras3"`` (``.keras`` archive) or ``"keras2"`` (legacy HDF5).
        weights: arrays of every layer with weights, by layer name, in variable order.
        bilstm_blocks: number of BiLSTM blocks (``bidirectional_*`` layers).
        lstm_gate: the LSTMs' ``recurrent_activation`` in the file's model config,
            ``"sigmoid"`` or ``"hard_sigmoid"`` (``"hard_sigmoid"`` when the file has none).
        drop_rate: the SpatialDropout1D rate in the file's model config (:data:`DROP_RATE`
            when the file has none).
    """

    path: Path
    keras_format: str
    weights: dict[str, list[np.ndarray]]
    bilstm_blocks: int
    lstm_gate: str
    drop_rate: float = DROP_RATE

    @property
    def size(self) -> int:
        """Number of values in the file's weights."""
        return sum(a.size for arrays in self.weights.values() for a in arrays)


def _activation_name(value) -> str:
    """``"hard_sigmoid"`` from a Keras 2 string or a Keras 3 serialised function."""
    return value["config"] if isinstance(value, dict) else str(value)


def _lstm_gate(config: dict | None, path: Path) -> str:
    """The single ``recurrent_activation`` of the LSTMs of a model config."""
    if config is None:
        log.warning("%s has no model config; assuming hard-sigmoid LSTM gates", path)
        return "hard_sigmoid"
    gates = set()
    for layer in config["config"]["layers"]:
        inner = layer["config"].get("layer", {}) if layer["class_name"] == "Bidirectional" else {}
        for cfg in (layer["config"], inner.get("config", {})):
            if "recurrent_activation" in cfg:
                gates.add(_activation_name(cfg["recurrent_activation"]))
    if len(gates) != 1 or not gates <= {"sigmoid", "hard_sigmoid"}:
        raise WeightsMismatchError(
            f"{path}: expected one LSTM recurrent_activation, sigmoid or hard_sigmoid; "
            f"found {sorted(gates)}"
        )
    return gates.pop()


def _drop_rate(config: dict | None, path: Path) -> float:
    """The single SpatialDropout1D rate of a model config (:data:`DROP_RATE` without one)."""
    if config is None:
        return DROP_RATE
    rates = {
        float(layer["config"]["rate"])
        for layer in config["config"]["layers"]
        if layer["class_name"] == "SpatialDropout1D"
    }
    if len(rates) > 1:
        raise WeightsMismatchError(f"{path}: expected one SpatialDropout1D rate, found {rates}")
    return rates.pop() if rates else DROP_RATE


def _weights_file(path: Path, keras_format: str, weights, config) -> WeightsFile:
    blocks = sum(1 for name in weights if name.startswith("bidirectional"))
    return WeightsFile(
        path,
        keras_format,
        weights,
        blocks,
        _lstm_gate(config, path),
        _drop_rate(config, path),
    )


def read_keras3_weights(path: Path) -> WeightsFile:
    """The weights and architecture of a Keras 3 ``.keras`` file."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            payload = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise WeightsMismatchError(
            f"{path}: not a Keras 3 model archive with config.json and model.weights.h5 ({exc})"
        ) from exc
    weights = {}
    with h5py.File(io.BytesIO(payload), "r") as store:
        for name, key in _keras3_file_keys(config).items():
            if key in store["layers"]:
                arrays = _keras3_layer_arrays(store["layers"][key], f"{path}:layers/{key}")
                if arrays:
                    weights[name] = arrays
    return _weights_file(path, "keras3", weights, config)


def _text(value: bytes | str) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_legacy_h5_weights(path: Path) -> WeightsFile:
    """The weights (and architecture, from ``model_config``) of a Keras 2 HDF5 file.

    Reads full-model files (``model_weights/<layer>/...``, the model config in the
    ``model_config`` attribute) and weights-only files (layer groups at the root); each
    layer group lists its datasets in order in ``weight_names``.
    """
    weights = {}
    with h5py.File(path, "r") as store:
        config = store.attrs.get("model_config")
        root = store["model_weights"] if "model_weights" in store else store
        names = [_text(n) for n in root.attrs.get("layer_names", list(root))]
        for name in names:
            group = root[name]
            weight_names = [_text(w) for w in group.attrs.get("weight_names", [])]
            if weight_names:
                weights[name] = [np.asarray(group[w]) for w in weight_names]
    if not weights:
        raise WeightsMismatchError(
            f"{path}: no Keras 2 weights found (expected model_weights/<layer>/<layer>/<var>:0 "
            "with a weight_names attribute per layer)"
        )
    return _weights_file(path, "keras2", weights, None if config is None else json.loads(config))


def read_weights(path: Path) -> WeightsFile:
    """Weights and architecture from a ``.keras`` or legacy Keras 2 ``.h5`` weights file.

    Raises:
        WeightsMismatchError: not a weights file, one that does not fit the network, or
            one HDF5 cannot read (cut short, damaged: h5py's ``OSError``/``RuntimeError``,
            a missing group's ``KeyError``, which named no file), naming ``path``.
    """
    try:
        if zipfile.is_zipfile(path):
            return read_keras3_weights(path)
        if h5py.is_hdf5(path):
            return read_legacy_h5_weights(path)
    except WeightsMismatchError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise WeightsMismatchError(
            f"{path}: damaged weights file, HDF5 cannot read it ({exc}); install or copy it again"
        ) from exc
    raise WeightsMismatchError(
        f"{path}: neither a Keras 3 .keras archive nor a Keras 2 HDF5 weights file"
    )
