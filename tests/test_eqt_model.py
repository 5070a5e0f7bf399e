"""EQTransformer network: weights loading, parity with an independent implementation, MC dropout."""

from __future__ import annotations

import functools
import json

import h5py
import keras
import numpy as np
import pytest

from pipeline.picking import EQTransformer, load_eqt
from pipeline.picking.layers import LSTM_GATES, hard_sigmoid_keras2
from pipeline.picking.model import (
    DROP_RATE,
    OUTPUT_NAMES,
    EqTNetwork,
    WeightsMismatchError,
    assign_weights,
    build_network,
    lstm_gate_for,
    read_keras3_weights,
    read_legacy_h5_weights,
)

#: Values in the published weights (README of ../shared).
TOTAL_WEIGHTS = 378_311
SHARED_SHA256 = "ba3846abf793c693e5ab9ee2f793ed0e801007dfda57523cb7c200553aa7ae9b"
PARITY_TOLERANCE = 1e-4


@functools.cache
def _load(path: str) -> EQTransformer:
    """The model with Keras-3 hard-sigmoid gates, as the parity reference was computed.

    ``eqt_parity_o2wilz.npz`` holds the outputs of the converted ``.keras`` file run in
    Keras 3, whose ``hard_sigmoid`` is ``clip(x/6+0.5)``; the default gate of
    :func:`load_eqt` is Keras 2's ``clip(0.2x+0.5)``, which the weights were trained with.
    """
    return load_eqt(path, hard_sigmoid="keras3")


@pytest.fixture
def weights_path(shared):
    return shared("models", "eqt", "EqT_conservative.keras")


@pytest.fixture
def eqt(weights_path) -> EQTransformer:
    """The shared conservative model with Keras-3 gates, loaded once per test session."""
    return _load(str(weights_path))


@pytest.fixture
def reference(shared):
    return np.load(shared("reference", "eqt_parity_o2wilz.npz"))


def test_parity_with_reference_implementation(eqt, reference):
    out = eqt.predict_windows(reference["x"], batch_size=8)
    diffs = {k: float(np.abs(out[k] - reference[k]).max()) for k in OUTPUT_NAMES}
    print("max |ours - reference|:", diffs)
    assert all(d <= PARITY_TOLERANCE for d in diffs.values()), diffs
    # The reference windows hold events: the detector fires on most of them.
    assert (out["detector"].max(axis=1) > 0.5).sum() >= 10


def test_outputs_names_shapes_and_identity(eqt, reference):
    out = eqt.predict_windows(reference["x"][:3])
    assert set(out) == set(OUTPUT_NAMES)
    for values in out.values():
        assert values.shape == (3, 6000)
        assert values.dtype == np.float32
        assert values.min() >= 0.0 and values.max() <= 1.0
    assert eqt.name == "EqT_conservative+hard_sigmoid_keras3"
    assert eqt.sha256 == SHARED_SHA256
    assert eqt.device in ("CPU", "GPU")


def test_every_weight_assigned_once_with_matching_shape(weights_path, eqt):
    contents = read_keras3_weights(weights_path)
    assert (contents.keras_format, contents.bilstm_blocks, contents.lstm_gate) == (
        "keras3",
        3,
        "hard_sigmoid",
    )
    assert contents.size == TOTAL_WEIGHTS
    weights = contents.weights
    network = eqt.network  # reassigning the same values leaves the shared model unchanged
    assert assign_weights(network, weights, weights_path) == TOTAL_WEIGHTS
    assert sum(int(np.prod(v.shape)) for v in network.weights) == TOTAL_WEIGHTS
    # No BatchNormalization in the network is left with its initial statistics.
    norms = [layer for layer in network.weighted if "batch_normalization" in layer.name]
    assert len(norms) == 17
    assert all(not np.allclose(n.moving_variance.numpy(), 1.0) for n in norms)


def test_mismatched_weights_name_the_layer_and_assign_nothing(weights_path, eqt):
    weights = read_keras3_weights(weights_path).weights
    before = [v.numpy().copy() for v in eqt.network.weights]
    zeros = {k: [np.zeros_like(a) for a in arrays] for k, arrays in weights.items()}
    wrong_shape = dict(zeros, attentionP=[a.T for a in weights["attentionP"]])
    with pytest.raises(WeightsMismatchError, match="attentionP"):
        assign_weights(eqt.network, wrong_shape, weights_path)
    missing = {k: v for k, v in zeros.items() if k != "lstm_5"}
    with pytest.raises(WeightsMismatchError, match="lstm_5"):
        assign_weights(eqt.network, missing, weights_path)
    assert all(
        np.array_equal(v.numpy(), b) for v, b in zip(eqt.network.weights, before, strict=True)
    )


def _keras2_config(gate: str) -> str:
    """A (much shortened) Keras 2 model config with LSTM gates ``gate``."""
    lstm = {"class_name": "LSTM", "config": {"name": "lstm_4", "recurrent_activation": gate}}
    layers = [
        {"class_name": "InputLayer", "config": {"name": "input"}},
        {"class_name": "Bidirectional", "config": {"name": "bidirectional_1", "layer": lstm}},
        lstm,
    ]
    return json.dumps({"class_name": "Model", "config": {"name": "model", "layers": layers}})


def _write_keras2_h5(
    path, weights: dict[str, list[np.ndarray]], full_model: bool, gate: str = "hard_sigmoid"
) -> None:
    """Write ``weights`` in the Keras 2 HDF5 layout (``model_weights/<layer>/<layer>/<var>:0``).

    The variable names are made up; Keras 2 readers (and ours) follow ``weight_names``.
    A weightless layer is included, as Keras 2 lists every layer. A full-model file carries
    a model config.
    """
    with h5py.File(path, "w") as f:
        if full_model:
            f.attrs["model_config"] = _keras2_config(gate)
        root = f.create_group("model_weights") if full_model else f
        names = ["input", *weights]
        root.attrs["layer_names"] = [n.encode() for n in names]
        root.create_group("input").attrs["weight_names"] = []
        for name, arrays in weights.items():
            group = root.create_group(name)
            weight_names = [f"{name}/var_{len(arrays) - i}:0" for i in range(len(arrays))]
            group.attrs["weight_names"] = [w.encode() for w in weight_names]
            for weight_name, array in zip(weight_names, arrays, strict=True):
                group.create_dataset(weight_name, data=array)


def test_legacy_keras2_h5_round_trip(tmp_path, weights_path, eqt, reference):
    weights = read_keras3_weights(weights_path).weights
    legacy = tmp_path / "EqT_model_conservative.h5"
    _write_keras2_h5(legacy, weights, full_model=True)
    weights_only = tmp_path / "weights_only.h5"
    _write_keras2_h5(weights_only, weights, full_model=False)
    for path in (legacy, weights_only):
        read = read_legacy_h5_weights(path)
        assert (read.keras_format, read.bilstm_blocks, read.lstm_gate) == (
            "keras2",
            3,
            "hard_sigmoid",
        )
        assert read.weights.keys() == weights.keys()
        assert all(
            np.array_equal(a, b)
            for name in weights
            for a, b in zip(read.weights[name], weights[name], strict=True)
        )
        # A Keras 2 file runs with Keras 2's hard sigmoid unless told otherwise.
        assert lstm_gate_for(read) == "hard_sigmoid_keras2"
        assert lstm_gate_for(read, "keras3") == "hard_sigmoid_keras3"

    model = load_eqt(legacy, hard_sigmoid="keras3")
    assert model.name == "EqT_model_conservative+hard_sigmoid_keras3"
    x = reference["x"][:2]
    ours, expected = model.predict_windows(x), eqt.predict_windows(x)
    for k in OUTPUT_NAMES:
        np.testing.assert_array_equal(ours[k], expected[k])


def test_mc_dropout_mean_and_std(eqt, reference):
    x = reference["x"][[3, 5]]  # two windows with an event
    det = eqt.predict_windows(x)
    mc = eqt.predict_windows(x, mc_samples=5, batch_size=10)
    assert set(mc) == set(OUTPUT_NAMES) | {f"{k}_std" for k in OUTPUT_NAMES}
    for k in OUTPUT_NAMES:
        assert mc[k].shape == mc[f"{k}_std"].shape == (2, 6000)
        assert mc[f"{k}_std"].max() > 1e-3  # the passes differ
        assert mc[f"{k}_std"].min() >= 0.0
        assert np.abs(mc[k] - det[k]).mean() < 0.01
        np.testing.assert_allclose(mc[k].max(axis=1), det[k].max(axis=1), atol=0.05)
        assert np.all(np.abs(mc[k].argmax(axis=1) - det[k].argmax(axis=1)) <= 5)
    # Two calls draw different masks.
    again = eqt.predict_windows(x, mc_samples=5, batch_size=10)
    assert not np.array_equal(again["picker_P"], mc["picker_P"])
    # The single passes: (windows, passes, samples), all different.
    passes = eqt.predict_passes(x, passes=3, batch_size=4)
    assert passes["picker_P"].shape == (2, 3, 6000)
    assert len({p.tobytes() for p in passes["picker_P"].reshape(6, 6000)}) == 6
    assert np.abs(passes["picker_P"].mean(axis=1) - det["picker_P"]).mean() < 0.01


def test_mc_passes_run_the_deterministic_stem_once_per_window(eqt, reference):
    """The passes start from the stem of each window, bit-identical to the stem of copies,
    so only the dropout masks differ from running every pass as its own window."""
    x = reference["x"][:3]
    once = eqt.network.downsample(x).numpy()
    copies = eqt.network.downsample(np.repeat(x, 4, axis=0)).numpy()
    np.testing.assert_array_equal(np.repeat(once, 4, axis=0), copies)


def test_mc_mode_changes_nothing_but_dropout(eqt, reference):
    """With the dropout rates at zero the stochastic pass equals the deterministic one.

    This shows batch normalisation keeps its moving statistics in MC mode. The rates are
    read when a new wrapper compiles its functions; the shared model's are left as they were.
    """
    drops = eqt.network.res_drops
    try:
        for layer in drops:
            layer.rate = 0.0
        model = EQTransformer(eqt.network, eqt.path, eqt.sha256)
        x = reference["x"][:2]
        det = model.predict_windows(x)
        mc = model.predict_windows(x, mc_samples=3)
        passes = model.predict_passes(x, passes=2)
    finally:
        for layer in drops:
            layer.rate = DROP_RATE
    for k in OUTPUT_NAMES:
        np.testing.assert_allclose(mc[k], det[k], atol=1e-6)
        assert mc[f"{k}_std"].max() <= 1e-6
        np.testing.assert_allclose(passes[k], np.stack([det[k]] * 2, axis=1), atol=1e-6)


def test_lstm_gates():
    """Keras 2 and Keras 3 define ``hard_sigmoid`` differently; the gate is selectable."""
    x = np.array([-3.0, -1.0, 0.0, 1.0, 2.0], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(hard_sigmoid_keras2(x)), [0.0, 0.3, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(
        np.asarray(keras.activations.get(LSTM_GATES["hard_sigmoid_keras3"])(x)),
        [0.0, 1 / 3, 0.5, 2 / 3, 5 / 6],
        rtol=1e-6,
    )
    network = EqTNetwork(lstm_gate="hard_sigmoid_keras2")
    cells = [lstm.cell for lstm in network.picker_lstms] + [
        layer.cell for b in network.bilstms for layer in (b.forward_layer, b.backward_layer)
    ]
    assert len(cells) == 8
    assert all(cell.recurrent_activation is hard_sigmoid_keras2 for cell in cells)
    with pytest.raises(ValueError, match="lstm_gate"):
        EqTNetwork(lstm_gate="tanh")


def test_original_model_architecture_from_the_file(tmp_path, weights_path):
    """A Keras 2 file with 2 BiLSTM blocks and sigmoid gates (the authors' original model's
    architecture) builds that network; its weights are borrowed from the conservative model.
    """
    conservative = read_keras3_weights(weights_path).weights
    three, two = EqTNetwork(3), EqTNetwork(2)
    third_block = {"bidirectional_3", "conv1d_24", "batch_normalization_17"}
    names3 = [layer.name for layer in three.weighted if layer.name not in third_block]
    names2 = [layer.name for layer in two.weighted]
    assert names2[-3:] == list(OUTPUT_NAMES)
    assert {"lstm_3", "lstm_4", "conv1d_24", "conv1d_44"} <= set(names2)
    renamed = {n2: conservative[n3] for n2, n3 in zip(names2, names3, strict=True)}
    original = tmp_path / "EqT_original_model.h5"
    _write_keras2_h5(original, renamed, full_model=True, gate="sigmoid")

    model = load_eqt(original)
    assert (model.network.bilstm_blocks, model.network.lstm_gate) == (2, "sigmoid")
    assert model.name == "EqT_original_model"
    dropped = sum(a.size for name in third_block for a in conservative[name])
    assert sum(int(np.prod(v.shape)) for v in model.network.weights) == TOTAL_WEIGHTS - dropped


def test_mixed_precision_network_runs_close_to_float32(weights_path, reference):
    """The float16 variant (GPU opt-in) computes, on CPU here, within 1e-2 of the reference."""
    network = build_network(mixed_precision=True)
    assign_weights(network, read_keras3_weights(weights_path).weights, weights_path)
    out = network(reference["x"][:1])
    for k in OUTPUT_NAMES:
        assert out[k].dtype == "float32"
        assert np.abs(np.asarray(out[k]) - reference[k][:1]).max() < 1e-2


def test_bad_windows_are_rejected(eqt):
    with pytest.raises(ValueError, match=r"\(N, 6000, 3\)"):
        eqt.predict_windows(np.zeros((2, 3000, 3), dtype=np.float32))
    bad = np.zeros((1, 6000, 3), dtype=np.float32)
    bad[0, 10, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        eqt.predict_windows(bad)


def test_missing_weights_file_is_a_clear_error(tmp_path, monkeypatch):
    missing = tmp_path / "EqT_conservative.keras"
    with pytest.raises(FileNotFoundError, match="make setup") as excinfo:
        load_eqt(missing)
    assert str(missing) in str(excinfo.value)
    monkeypatch.setenv("EQCAT_MODEL_DIR", str(tmp_path / "models"))
    with pytest.raises(FileNotFoundError, match="make setup") as excinfo:
        load_eqt()
    assert str(tmp_path / "models") in str(excinfo.value)


def test_not_a_weights_file(tmp_path):
    junk = tmp_path / "model.keras"
    junk.write_text("not a model")
    with pytest.raises(WeightsMismatchError, match="model.keras"):
        load_eqt(junk)
