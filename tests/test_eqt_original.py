"""The original EQTransformer model as eqcat runs it equals the network its file defines.

:func:`pipeline.picking.load_eqt` rebuilds EQTransformer from our own architecture code and
assigns the file's weights by layer name. Here an independent forward pass, written in NumPy
(float64) from the layer formulas of Keras 2 and of the authors' custom layers, walks the
layer graph of the file's OWN model config (``inbound_nodes``) and reads every weight by its
name in the file. Nothing of ``pipeline.picking`` is used to build it, so a difference in
layer order, wiring, padding, cropping, attention settings or LSTM weight layout between our
network and the file would show as a difference in the outputs.

The conservative model (Keras 3 ``.keras`` archive) is the control: the same pass must also
reproduce the shared parity reference.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.picking import load_eqt
from pipeline.weights import WeightsUnavailableError, resolve_weights

#: Largest |difference| allowed between our network (float32) and the graph pass (float64).
TOLERANCE = 1e-4
OUTPUTS = ("detector", "picker_P", "picker_S")
#: Keras 2's ``K.epsilon()``, added to the attention softmax denominator.
KERAS_EPSILON = 1e-7


# ------------------------------------------------------------------ the model file's graph


class GraphModel:
    """A model config's layer graph and its weights, by layer and variable name.

    Attributes:
        layers: ``name -> (class_name, config, inbound layer names, call kwargs)`` in
            config order.
        weights: ``name -> {variable: array}``; variable names as in Keras 2
            (``kernel``, ``recurrent_kernel``, ``bias``, ``gamma``, ``Wt``, ``W1`` ...);
            a ``Bidirectional`` layer's are prefixed ``forward_`` or ``backward_``.
        outputs: names of the output layers.
    """

    def __init__(self, layers: dict, weights: dict, outputs: list[str]):
        self.layers = layers
        self.weights = weights
        self.outputs = outputs


def _keras2_node(node: list) -> tuple[list[str], dict]:
    """Inbound layer names and call kwargs of one Keras 2 node ``[[name, i, j, kwargs], ...]``."""
    kwargs = {}
    for entry in node:
        if len(entry) > 3:
            kwargs.update(entry[3])
    return [entry[0] for entry in node], kwargs


def _keras2_variable(full: str) -> str:
    """Short variable name of a Keras 2 weight name.

    ``conv1d_1/kernel:0`` -> ``kernel``; ``attentionP/attentionP_Add_Wt:0`` -> ``Wt``;
    ``feed_forward_1/feed_forward_1_W1:0`` -> ``W1``;
    ``bidirectional_1/backward_lstm_1/recurrent_kernel:0`` -> ``backward_recurrent_kernel``.
    """
    parts = full.removesuffix(":0").split("/")
    last = parts[-1]
    if last not in ("recurrent_kernel", "moving_mean", "moving_variance"):
        last = last.split("_")[-1]
    side = parts[1].split("_")[0] if len(parts) == 3 else ""
    return f"{side}_{last}" if side in ("forward", "backward") else last


def read_keras2_model(path: Path) -> GraphModel:
    """The graph and weights of a Keras 2 full-model HDF5 file (``model_config`` attribute)."""
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        root = f["model_weights"]
        weights = {}
        for name in root.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            names = [
                n.decode() if isinstance(n, bytes) else n for n in root[name].attrs["weight_names"]
            ]
            variables = {_keras2_variable(n): np.asarray(root[name][n], np.float64) for n in names}
            assert len(variables) == len(names), f"{name}: ambiguous weight names {names}"
            if variables:
                weights[name] = variables
    layers = {}
    for layer in config["config"]["layers"]:
        nodes = layer["inbound_nodes"]
        inbound, kwargs = _keras2_node(nodes[0]) if nodes else ([], {})
        layers[layer["config"]["name"]] = (layer["class_name"], layer["config"], inbound, kwargs)
    return GraphModel(layers, weights, [o[0] for o in config["config"]["output_layers"]])


#: Variable names of a Keras 3 ``.keras`` weights group, in storage order, by class.
_KERAS3_VARIABLES = {
    "Conv1D": ("kernel", "bias"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "LSTM": ("kernel", "recurrent_kernel", "bias"),
    "SeqSelfAttention": ("Wt", "Wx", "bh", "Wa", "ba"),
    "FeedForward": ("W1", "b1", "W2", "b2"),
    "LayerNormalization": ("gamma", "beta"),
}


def _keras3_history(args) -> list[str]:
    """Names of the layers whose tensors appear in a Keras 3 node's arguments."""
    if isinstance(args, dict) and args.get("class_name") == "__keras_tensor__":
        return [args["config"]["keras_history"][0]]
    if isinstance(args, list):
        return [name for arg in args for name in _keras3_history(arg)]
    return []


def read_keras3_model(path: Path) -> GraphModel:
    """The graph and weights of a Keras 3 ``.keras`` archive.

    Weight groups are named per class in snake case and numbered in config order
    (``conv1d``, ``conv1d_1`` ...); a Bidirectional layer's LSTM variables lie under
    ``forward_layer/cell`` and ``backward_layer/cell``.
    """
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        payload = archive.read("model.weights.h5")
    layers, weights = {}, {}
    counts: Counter[str] = Counter()
    with h5py.File(io.BytesIO(payload), "r") as store:
        for layer in config["config"]["layers"]:
            cls, name = layer["class_name"], layer["config"]["name"]
            snake = re.sub(r"([a-z])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls))
            snake = snake.lower()
            key = snake if counts[snake] == 0 else f"{snake}_{counts[snake]}"
            counts[snake] += 1
            node = layer["inbound_nodes"][0] if layer["inbound_nodes"] else {"args": []}
            layers[name] = (
                cls,
                layer["config"],
                _keras3_history(node["args"]),
                node.get("kwargs", {}),
            )
            if cls == "Bidirectional":
                group = store["layers"][key]
                weights[name] = {
                    f"{side}_{var}": np.asarray(group[f"{side}_layer/cell/vars/{i}"], np.float64)
                    for side in ("forward", "backward")
                    for i, var in enumerate(_KERAS3_VARIABLES["LSTM"])
                }
            elif cls in _KERAS3_VARIABLES:
                group = store["layers"][key]
                vars_ = group["cell/vars"] if cls == "LSTM" else group["vars"]
                weights[name] = {
                    var: np.asarray(vars_[str(i)], np.float64)
                    for i, var in enumerate(_KERAS3_VARIABLES[cls])
                }
    return GraphModel(layers, weights, [o[0] for o in config["config"]["output_layers"]])


# --------------------------------------------------------------------- NumPy layer formulas


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


#: LSTM gate activations by config name and the Keras version whose definition applies.
GATES = {
    "sigmoid": _sigmoid,
    "hard_sigmoid_keras2": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
    "hard_sigmoid_keras3": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
}


def _activation(name, x):
    name = name["config"] if isinstance(name, dict) else name
    return {"linear": lambda v: v, "relu": lambda v: np.maximum(v, 0.0), "sigmoid": _sigmoid}[name](
        x
    )


def conv1d_same(x, kernel, bias):
    """Stride-1 'same' convolution as TensorFlow pads it: (K - 1) // 2 zeros before.

    x (B, T, C_in), kernel (K, C_in, C_out) -> (B, T, C_out).
    """
    k = kernel.shape[0]
    left = (k - 1) // 2
    padded = np.pad(x, ((0, 0), (left, k - 1 - left), (0, 0)))
    t = x.shape[1]
    out = np.zeros((x.shape[0], t, kernel.shape[2]))
    for j in range(k):
        out += padded[:, j : j + t, :] @ kernel[j]
    return out + bias


def max_pool_same(x):
    """MaxPooling1D(2, 2, 'same'): the odd last sample stands alone. (B, T, C) -> ceil(T/2)."""
    if x.shape[1] % 2:
        x = np.concatenate([x, x[:, -1:, :]], axis=1)
    return np.maximum(x[:, 0::2, :], x[:, 1::2, :])


def lstm(x, kernel, recurrent, bias, gate, reverse=False):
    """Keras LSTM (gates i, f, c, o; tanh activations) returning every step's h.

    x (B, T, C) -> (B, T, units); ``reverse`` runs backwards in time and returns the
    outputs in input order (a Bidirectional layer's backward half).
    """
    units = recurrent.shape[0]
    b, t = x.shape[:2]
    h, c = np.zeros((b, units)), np.zeros((b, units))
    out = np.zeros((b, t, units))
    projected = x @ kernel + bias
    for step in range(t - 1, -1, -1) if reverse else range(t):
        z = projected[:, step] + h @ recurrent
        i, f, g, o = (z[:, n * units : (n + 1) * units] for n in range(4))
        c = gate(f) * c + gate(i) * np.tanh(g)
        h = gate(o) * np.tanh(c)
        out[:, step] = h
    return out


def seq_self_attention(x, w, width):
    """Additive self-attention of the authors' SeqSelfAttention (keras-self-attention).

    ``e[t, t'] = Wa . tanh(Wt h_t + Wx h_t' + bh) + ba``; ``exp(e - max_t' e)``, then zeroed
    outside the local window ``[t - width // 2, t - width // 2 + width)`` when ``width`` is
    set, divided by its sum + 1e-7; output ``sum_t' a[t, t'] h_t'``. x (B, T, d).
    """
    q = (x @ w["Wt"])[:, :, None, :]
    k = (x @ w["Wx"])[:, None, :, :]
    e = (np.tanh(q + k + w["bh"]) @ w["Wa"])[..., 0] + w["ba"]
    e = np.exp(e - e.max(axis=-1, keepdims=True))
    if width is not None:
        t = np.arange(x.shape[1])
        lower = (t - width // 2)[:, None]
        e = e * ((t[None, :] >= lower) & (t[None, :] < lower + width))
    a = e / (e.sum(axis=-1, keepdims=True) + KERAS_EPSILON)
    return a @ x


def layer_norm(x, w, epsilon):
    centred = x - x.mean(axis=-1, keepdims=True)
    std = np.sqrt((centred**2).mean(axis=-1, keepdims=True) + epsilon)
    return centred / std * w["gamma"] + w["beta"]


def _apply(cls, cfg, w, inputs, gate_names):
    """One layer of the graph, in inference mode (every dropout is the identity)."""
    x = inputs[0]
    if cls == "Conv1D":
        assert tuple(cfg["strides"]) == (1,) and tuple(cfg["dilation_rate"]) == (1,)
        assert cfg["padding"] == "same"
        return _activation(cfg["activation"], conv1d_same(x, w["kernel"], w["bias"]))
    if cls == "MaxPooling1D":
        assert tuple(cfg["pool_size"]) == (2,) and tuple(cfg["strides"]) == (2,)
        assert cfg["padding"] == "same"
        return max_pool_same(x)
    if cls == "BatchNormalization":
        scale = w["gamma"] / np.sqrt(w["moving_variance"] + cfg["epsilon"])
        return (x - w["moving_mean"]) * scale + w["beta"]
    if cls == "Activation":
        return _activation(cfg["activation"], x)
    if cls in ("SpatialDropout1D", "Dropout"):
        return x
    if cls == "Add":
        return sum(inputs)
    if cls == "LSTM":
        assert cfg["return_sequences"] and not cfg.get("go_backwards", False)
        gate = GATES[gate_names(cfg["recurrent_activation"])]
        return lstm(x, w["kernel"], w["recurrent_kernel"], w["bias"], gate)
    if cls == "Bidirectional":
        assert cfg.get("merge_mode", "concat") == "concat"
        inner = cfg["layer"]["config"]
        gate = GATES[gate_names(inner["recurrent_activation"])]
        halves = [
            lstm(
                x,
                w[f"{s}_kernel"],
                w[f"{s}_recurrent_kernel"],
                w[f"{s}_bias"],
                gate,
                s == "backward",
            )
            for s in ("forward", "backward")
        ]
        return np.concatenate(halves, axis=-1)
    if cls == "SeqSelfAttention":
        assert cfg["attention_type"] == "additive" and not cfg["history_only"]
        assert cfg["use_additive_bias"] and cfg["use_attention_bias"]
        assert cfg["attention_activation"] in (None, "linear")
        return seq_self_attention(x, w, cfg["attention_width"])
    if cls == "LayerNormalization":
        return layer_norm(x, w, cfg["epsilon"])
    if cls == "FeedForward":
        assert _activation(cfg["activation"], -1.0) == 0.0  # relu
        return np.maximum(x @ w["W1"] + w["b1"], 0.0) @ w["W2"] + w["b2"]
    if cls == "UpSampling1D":
        return np.repeat(x, cfg["size"], axis=1)
    if cls == "Cropping1D":
        first, last = cfg["cropping"]
        return x[:, first : x.shape[1] - last, :]
    raise NotImplementedError(f"layer class {cls}")


def run_graph(model: GraphModel, x: np.ndarray, hard_sigmoid: str = "keras2") -> dict:
    """Outputs of the model's graph for windows x (B, 6000, 3), by output layer name.

    Every layer runs once its inbound layers have; each output is (B, 6000) float64.
    ``hard_sigmoid`` picks which Keras version's hard sigmoid a ``hard_sigmoid`` gate means.
    """

    def gate_names(name):
        name = name["config"] if isinstance(name, dict) else name
        return name if name == "sigmoid" else f"{name}_{hard_sigmoid}"

    values = {}
    for name, (cls, cfg, inbound, _) in model.layers.items():
        if cls == "InputLayer":
            values[name] = np.asarray(x, dtype=np.float64)
            continue
        values[name] = _apply(
            cls, cfg, model.weights.get(name, {}), [values[i] for i in inbound], gate_names
        )
    return {name: values[name][..., 0] for name in model.outputs}


# ------------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def original_path() -> Path:
    try:
        path = resolve_weights("original")
    except WeightsUnavailableError as exc:
        pytest.fail(f"the original EQTransformer model is not installed: {exc}")
    if not path.is_file():
        pytest.fail(f"the original EQTransformer model is not installed at {path} (make setup)")
    return path


@pytest.fixture
def windows(shared) -> np.ndarray:
    return np.load(shared("reference", "eqt_parity_o2wilz.npz"))["x"]


def test_original_model_file_graph(original_path):
    """The file's own graph is EQTransformer with 2 BiLSTM blocks and sigmoid gates, and
    every layer with weights has them in the file."""
    model = read_keras2_model(original_path)
    classes = Counter(cls for cls, *_ in model.layers.values())
    assert classes["Bidirectional"] == 2 and classes["LSTM"] == 2
    assert classes["SpatialDropout1D"] == 14 and classes["Cropping1D"] == 3
    assert model.outputs == list(OUTPUTS)
    weighted = {"Conv1D", "BatchNormalization", "Bidirectional", "LSTM"} | {
        "SeqSelfAttention",
        "FeedForward",
        "LayerNormalization",
    }
    assert {n for n, (cls, *_) in model.layers.items() if cls in weighted} == set(model.weights)
    # Only the spatial dropouts are called with training=True in the file.
    forced = {n for n, (_, _, _, kwargs) in model.layers.items() if kwargs.get("training")}
    assert forced == {n for n, (cls, *_) in model.layers.items() if cls == "SpatialDropout1D"}


def test_original_model_equals_its_file_graph(original_path, windows):
    ours = load_eqt("original").predict_windows(windows, batch_size=16)
    graph = run_graph(read_keras2_model(original_path), windows, hard_sigmoid="keras2")
    diffs = {k: float(np.abs(ours[k] - graph[k]).max()) for k in OUTPUTS}
    print("original model, max |ours - file graph|:", diffs)
    assert all(d <= TOLERANCE for d in diffs.values()), diffs
    # The windows hold events: the comparison is not between two flat outputs.
    assert (graph["picker_P"].max(axis=1) > 0.3).sum() >= 5


def test_conservative_control_matches_the_parity_reference(shared, windows):
    """The same graph pass on the conservative archive reproduces the independent parity
    reference (computed with Keras 3's hard sigmoid), which our network matches too
    (tests/test_eqt_model.py): the pass itself is checked, not only compared with ours."""
    path = shared("models", "eqt", "EqT_conservative.keras")
    reference = np.load(shared("reference", "eqt_parity_o2wilz.npz"))
    graph = run_graph(read_keras3_model(path), windows, hard_sigmoid="keras3")
    diffs = {k: float(np.abs(graph[k] - reference[k]).max()) for k in OUTPUTS}
    print("conservative model, max |file graph - parity reference|:", diffs)
    assert all(d <= TOLERANCE for d in diffs.values()), diffs
