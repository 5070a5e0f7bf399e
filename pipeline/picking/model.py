"""EQTransformer (Mousavi et al. 2020, Nature Communications 11:3952) for inference.

The network is rebuilt in Keras 3 from the architecture of the paper and the layer list of the
published weights, and loads the authors' weights from either

- a Keras 3 ``.keras`` file (``config.json`` + ``model.weights.h5``; variables stored per
  layer under ``layers/<class_snake_case>[_<k>]/vars/<i>``, numbered in config order), or
- a legacy Keras 2 HDF5 file (``EqT_original_model.h5``, ``EqT_model_conservative.h5``;
  ``model_weights/<layer>/<layer>/<var>:0`` with a ``weight_names`` list per layer).

Architecture (input (batch, 6000, 3): 60 s of E, N, Z at 100 Hz, standardised per channel):

- encoder: 7 x [Conv1D + ReLU, MaxPool 2] (6000 -> 47 samples), 7 residual CNN blocks
  (BatchNorm, ReLU, SpatialDropout1D, Conv1D, twice, plus the skip), 3 BiLSTM blocks
  (BiLSTM 16, Conv1D 1x1, BatchNorm), 2 transformer blocks (additive self-attention,
  feed-forward, each with a residual connection and layer normalisation);
- decoders, each upsampling 47 -> 6000 through 7 x [UpSampling 2, Conv1D + ReLU] (cropping
  752 -> 750 once; the other six pairs are computed at the lower rate by
  :class:`~pipeline.picking.layers.UpsamplingConv1D`) and a sigmoid Conv1D head:
  ``detector`` from the encoder output, ``picker_P`` and ``picker_S`` each after an LSTM 16
  and local self-attention (width 3).

Only the 14 SpatialDropout1D layers are stochastic, and only when Monte-Carlo dropout is
requested: the deterministic pass has dropout off. (The published model's config calls them
with ``training=True``, so running that file as-is in Keras gives one random draw per pass.)
BatchNormalization always uses its moving statistics, and the dropout that LSTMs and the
feed-forward blocks use in training is absent.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.picking.backend import keras, ops, tf
from pipeline.picking.layers import (
    LSTM_GATES,
    FeedForward,
    LayerNormalization,
    SeqSelfAttention,
    UpsamplingConv1D,
)
from pipeline.picking.weights_file import (  # noqa: F401 - re-exported: the model's file API
    DROP_RATE,
    WeightsFile,
    WeightsMismatchError,
    read_keras3_weights,
    read_legacy_h5_weights,
    read_weights,
)
from pipeline.rundir import sha256_file
from pipeline.weights import WeightsUnavailableError, resolve_weights

log = logging.getLogger(__name__)

#: Samples per input window (60 s at 100 Hz) and input channels (E, N, Z).
WINDOW_SAMPLES = 6000
CHANNELS = 3
#: Output traces, one probability per input sample.
OUTPUT_NAMES = ("detector", "picker_P", "picker_S")
#: Most passes per forward call on CPU: larger batches ran slower (2 cores, measured with
#: ``benchmarks/eqt_inference.py``: 32-64 fastest, 256 about 35% slower).
CPU_MAX_BATCH = 64

#: (filters, kernel size) of the encoder's downsampling convolutions.
ENCODER_CONVS = ((8, 11), (16, 9), (16, 7), (32, 7), (32, 5), (64, 5), (64, 3))
#: Kernel sizes of the 7 residual CNN blocks (64 filters each).
RESIDUAL_KERNELS = (3, 3, 3, 3, 2, 3, 2)
#: LSTM units; the conservative model has 3 BiLSTM blocks, the original model 2.
LSTM_UNITS = 16
#: Additive-attention units and feed-forward units of the transformer blocks.
ATTENTION_UNITS = 32
FEED_FORWARD_UNITS = 128
#: Local attention width of the phase pickers.
PICKER_ATTENTION_WIDTH = 3
#: (filters, kernel size) of each decoder's upsampling convolutions.
DECODER_CONVS = ((64, 3), (64, 5), (32, 5), (32, 7), (16, 7), (16, 9), (8, 11))
#: The decoder crops one sample at each end before this (0-based) convolution: 752 -> 750.
DECODER_CROP_AT = 3


def _conv(
    filters: int, kernel: int, name: str, activation: str | None = "relu", dtype=None
) -> keras.Layer:
    return keras.layers.Conv1D(
        filters, kernel, padding="same", activation=activation, name=name, dtype=dtype
    )


def _lstm(name: str, gate: str) -> keras.Layer:
    return keras.layers.LSTM(
        LSTM_UNITS, return_sequences=True, recurrent_activation=LSTM_GATES[gate], name=name
    )


class EqTNetwork(keras.Model):
    """The EQTransformer network; layer names are those of the authors' model.

    ``call(x, mc_dropout=False)`` maps (batch, 6000, 3) float32 to a dict of three
    (batch, 6000) probabilities named as in :data:`OUTPUT_NAMES`. With ``mc_dropout=True``
    the SpatialDropout1D layers drop whole channels at ``drop_rate``, independently for each
    batch element; nothing else changes.

    Layers are numbered per class in the order the authors' code creates them (Keras
    naming), so the numbers after the BiLSTM blocks depend on how many there are.

    Args:
        bilstm_blocks: BiLSTM blocks (3 in the conservative model, 2 in the original).
        lstm_gate: the LSTMs' gate activation, a key of
            :data:`~pipeline.picking.layers.LSTM_GATES`.
        mixed_precision: compute the convolutions and batch normalisations in float16
            (``mixed_float16``; variables stay float32). LSTMs, attention, feed-forward, layer
            normalisation and the sigmoid heads stay float32.
        drop_rate: SpatialDropout1D rate of the MC-dropout passes, the one the weights were
            trained with (0.1 in the conservative model, 0.2 in the original).
    """

    def __init__(
        self,
        bilstm_blocks: int = 3,
        lstm_gate: str = "hard_sigmoid_keras3",
        mixed_precision: bool = False,
        drop_rate: float = DROP_RATE,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if lstm_gate not in LSTM_GATES:
            raise ValueError(f"lstm_gate must be one of {sorted(LSTM_GATES)}, got {lstm_gate!r}")
        if bilstm_blocks < 1:
            raise ValueError(f"bilstm_blocks must be at least 1, got {bilstm_blocks}")
        self.bilstm_blocks = bilstm_blocks
        self.lstm_gate = lstm_gate
        fast = "mixed_float16" if mixed_precision else None

        def conv(filters, kernel, index, activation="relu"):
            return self._add(_conv(filters, kernel, f"conv1d_{index}", activation, dtype=fast))

        def norm(index):
            return self._add(
                keras.layers.BatchNormalization(
                    epsilon=1e-3, name=f"batch_normalization_{index}", dtype=fast
                )
            )

        self.weighted: list[keras.Layer] = []
        self.encoder_convs = [conv(f, k, i + 1) for i, (f, k) in enumerate(ENCODER_CONVS)]
        n_res = 2 * len(RESIDUAL_KERNELS)
        first = len(ENCODER_CONVS) + 1
        self.res_norms = [norm(i + 1) for i in range(n_res)]
        self.res_drops = [
            keras.layers.SpatialDropout1D(drop_rate, name=f"spatial_dropout1d_{i + 1}", dtype=fast)
            for i in range(n_res)
        ]
        self.res_convs = [
            conv(64, RESIDUAL_KERNELS[i // 2], first + i, activation=None) for i in range(n_res)
        ]
        first += n_res
        self.bilstms = [
            self._add(
                keras.layers.Bidirectional(
                    _lstm(f"lstm_{i + 1}", lstm_gate), name=f"bidirectional_{i + 1}"
                )
            )
            for i in range(bilstm_blocks)
        ]
        self.bilstm_convs = [
            conv(LSTM_UNITS, 1, first + i, activation=None) for i in range(bilstm_blocks)
        ]
        first += bilstm_blocks
        self.bilstm_norms = [norm(n_res + 1 + i) for i in range(bilstm_blocks)]
        self.attentions = [
            self._add(SeqSelfAttention(ATTENTION_UNITS, name=name))
            for name in ("attentionD0", "attentionD")
        ]
        self.feed_forwards = [
            self._add(FeedForward(FEED_FORWARD_UNITS, name=f"feed_forward_{i}")) for i in (1, 2)
        ]
        self.layer_norms = [
            self._add(LayerNormalization(name=f"layer_normalization_{i}")) for i in range(1, 5)
        ]
        self.picker_lstms = [
            self._add(_lstm(f"lstm_{bilstm_blocks + i}", lstm_gate)) for i in (1, 2)
        ]
        self.picker_attentions = [
            self._add(
                SeqSelfAttention(ATTENTION_UNITS, PICKER_ATTENTION_WIDTH, name=f"attention{phase}")
            )
            for phase in "PS"
        ]
        self.decoder_convs = [
            [
                conv(f, k, first_index + j)
                if j == DECODER_CROP_AT
                else self._add(UpsamplingConv1D(f, k, name=f"conv1d_{first_index + j}", dtype=fast))
                for j, (f, k) in enumerate(DECODER_CONVS)
            ]
            for first_index in range(first, first + 3 * len(DECODER_CONVS), len(DECODER_CONVS))
        ]
        self.heads = [self._add(_conv(1, 11, name, activation="sigmoid")) for name in OUTPUT_NAMES]

    def _add(self, layer: keras.Layer) -> keras.Layer:
        """Register a layer that holds weights (the unit of weight loading)."""
        self.weighted.append(layer)
        return layer

    def weighted_layers(self) -> dict[str, keras.Layer]:
        """The layers holding weights, by their name in the authors' model."""
        return {layer.name: layer for layer in self.weighted}

    def downsample(self, x):
        """The deterministic encoder stem: (batch, 6000, 3) -> (batch, 47, 64)."""
        for conv in self.encoder_convs:
            x = ops.max_pool(conv(x), pool_size=2, strides=2, padding="same")
        return x

    def _encode(self, x, mc_dropout: bool):
        for i in range(0, len(self.res_convs), 2):
            y = x
            for j in (i, i + 1):
                y = ops.relu(self.res_norms[j](y, training=False))
                y = self.res_convs[j](self.res_drops[j](y, training=mc_dropout))
            x = x + y
        for bilstm, conv, norm in zip(
            self.bilstms, self.bilstm_convs, self.bilstm_norms, strict=True
        ):
            x = norm(conv(bilstm(x, training=False)), training=False)
        x = ops.cast(x, "float32")  # the transformer runs in float32 (matters if mixed)
        norms = iter(self.layer_norms)
        for attention, feed_forward in zip(self.attentions, self.feed_forwards, strict=True):
            x = next(norms)(x + attention(x))
            x = next(norms)(x + feed_forward(x))
        return x

    @staticmethod
    def _decode(x, convs, head):
        """Upsample 2x and convolve 7 times (fused except at the crop), then the head."""
        for j, conv in enumerate(convs):
            if j == DECODER_CROP_AT:
                x = conv(ops.repeat(x, 2, axis=1)[:, 1:-1, :])
            else:
                x = conv(x)
        return ops.squeeze(head(x), -1)

    def call(self, inputs, mc_dropout: bool = False):
        return self.from_downsampled(self.downsample(inputs), mc_dropout)

    def from_downsampled(self, x, mc_dropout: bool = False):
        """The network after :meth:`downsample`, where the first dropout layer acts."""
        encoded = self._encode(x, mc_dropout)
        branches = [encoded] + [
            attention(lstm(encoded, training=False))
            for lstm, attention in zip(self.picker_lstms, self.picker_attentions, strict=True)
        ]
        return {
            name: self._decode(branch, convs, head)
            for name, branch, convs, head in zip(
                OUTPUT_NAMES, branches, self.decoder_convs, self.heads, strict=True
            )
        }


def build_network(
    bilstm_blocks: int = 3,
    lstm_gate: str = "hard_sigmoid_keras3",
    mixed_precision: bool = False,
    drop_rate: float = DROP_RATE,
) -> EqTNetwork:
    """A built :class:`EqTNetwork` with untrained weights (arguments as for the class)."""
    network = EqTNetwork(bilstm_blocks, lstm_gate, mixed_precision, drop_rate, name="EQTransformer")
    # Weight shapes do not depend on the window length: a short eager call builds them fast.
    network(np.zeros((1, 128, CHANNELS), dtype=np.float32))
    return network


def assign_weights(network: EqTNetwork, weights: dict[str, list[np.ndarray]], source: Path) -> int:
    """Assign every variable of ``network`` exactly once from ``weights``; return the count.

    Everything is checked before anything is assigned, so a mismatch leaves the network as
    it was.

    Raises:
        WeightsMismatchError: a layer missing from the file or from the network, a differing
            number of variables, or a differing shape (naming the file, layer and variable).
    """
    layers = network.weighted_layers()
    missing = sorted(set(layers) - set(weights))
    extra = sorted(set(weights) - set(layers))
    if missing or extra:
        raise WeightsMismatchError(
            f"{source}: layers with weights differ from EQTransformer's; "
            f"missing in the file: {missing}; unknown to the network: {extra}"
        )
    pairs = []
    for name, layer in layers.items():
        variables, arrays = layer.weights, weights[name]
        if len(variables) != len(arrays):
            raise WeightsMismatchError(
                f"{source}: layer {name} has {len(arrays)} arrays, expected {len(variables)}"
            )
        for variable, array in zip(variables, arrays, strict=True):
            if tuple(variable.shape) != array.shape:
                raise WeightsMismatchError(
                    f"{source}: layer {name} variable {variable.path} has shape {array.shape}, "
                    f"expected {tuple(variable.shape)}"
                )
            pairs.append((variable, array))
    total = sum(int(np.prod(v.shape)) for v in network.weights)
    assigned = sum(array.size for _, array in pairs)
    if assigned != total or len({id(v) for v, _ in pairs}) != len(network.weights):
        raise WeightsMismatchError(f"{source}: the file covers {assigned} of {total} values")
    for variable, array in pairs:
        variable.assign(array.astype(variable.dtype))
    return assigned


# ------------------------------------------------------------------------------- inference


class EQTransformer:
    """A loaded EQTransformer: deterministic and Monte-Carlo-dropout window predictions.

    Attributes:
        name: model name for the picks table (default: the weights file's stem).
        sha256: SHA-256 of the weights file.
        path: the weights file.
        device: ``"GPU"`` when TensorFlow sees one (it then runs there), else ``"CPU"``.
    """

    def __init__(self, network: EqTNetwork, path: Path, sha256: str, name: str | None = None):
        self.network = network
        self.path = path
        self.name = name or path.stem
        self.sha256 = sha256
        self.device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
        spec = tf.TensorSpec((None, WINDOW_SAMPLES, CHANNELS), tf.float32)
        self._deterministic = tf.function(self._forward, input_signature=[spec])
        passes = tf.TensorSpec((), tf.int32)
        self._stochastic = tf.function(self._mc_statistics, input_signature=[spec, passes])
        self._passes = tf.function(self._mc_passes, input_signature=[spec, passes])

    def __repr__(self) -> str:
        return f"EQTransformer(name={self.name!r}, path='{self.path}', device={self.device!r})"

    def _forward(self, x):
        return self.network(x, mc_dropout=False)

    def _mc_passes(self, x, passes):
        """(passes, n, 6000) outputs of ``passes`` stochastic passes of n windows, one batch.

        The encoder stem before the first dropout layer is the same in every pass, so it runs
        once per window and only its (47-sample) output is repeated.
        """
        n = tf.shape(x)[0]
        features = tf.tile(self.network.downsample(x), [passes, 1, 1])
        outputs = self.network.from_downsampled(features, mc_dropout=True)
        return {k: tf.reshape(v, [passes, n, WINDOW_SAMPLES]) for k, v in outputs.items()}

    def _mc_statistics(self, x, passes):
        """Mean and std over ``passes`` stochastic passes of each window."""
        stats = {}
        for name, values in self._mc_passes(x, passes).items():
            stats[name] = tf.reduce_mean(values, axis=0)
            stats[f"{name}_std"] = tf.math.reduce_std(values, axis=0)
        return stats

    def _passes_per_call(self, batch_size: int, passes: int) -> int:
        """Windows per forward call so that a call holds about ``batch_size`` passes."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        per_call = batch_size if self.device == "GPU" else min(batch_size, CPU_MAX_BATCH)
        return max(1, per_call // max(passes, 1))

    def predict_passes(
        self, x: np.ndarray, passes: int, batch_size: int = 500
    ) -> dict[str, np.ndarray]:
        """Every one of ``passes`` stochastic (MC-dropout) passes of each window.

        For statistics beyond mean and std, e.g. the spread of pick times across passes.

        Args:
            x: (N, 6000, 3) standardised windows, as for :meth:`predict_windows`.
            passes: stochastic passes per window (at least 1).
            batch_size: as for :meth:`predict_windows`.

        Returns:
            ``detector``, ``picker_P``, ``picker_S``: (N, passes, 6000) float32.
        """
        x = self._check_windows(x)
        if passes < 1:
            raise ValueError(f"passes must be at least 1, got {passes}")
        out = {k: np.empty((len(x), passes, WINDOW_SAMPLES), np.float32) for k in OUTPUT_NAMES}
        step = self._passes_per_call(batch_size, passes)
        for start in range(0, len(x), step):
            result = self._passes(tf.constant(x[start : start + step]), tf.constant(passes))
            for k in OUTPUT_NAMES:
                out[k][start : start + step] = np.swapaxes(result[k].numpy(), 0, 1)
        return out

    def predict_windows(
        self, x: np.ndarray, mc_samples: int = 0, batch_size: int = 500
    ) -> dict[str, np.ndarray]:
        """Probabilities for standardised windows.

        Args:
            x: (N, 6000, 3) windows, channels E, N, Z, each standardised (float32).
            mc_samples: 0 for one deterministic pass (dropout off); M > 0 for M stochastic
                passes with dropout active, returning their mean and standard deviation
                (population std, ddof 0).
            batch_size: most network passes per forward call (on CPU at most
                :data:`CPU_MAX_BATCH`); with MC dropout each call holds
                ``max(1, passes_per_call // M)`` windows, each repeated M times.

        Returns:
            ``detector``, ``picker_P``, ``picker_S``: (N, 6000) float32 in [0, 1]; with
            ``mc_samples > 0`` also ``detector_std``, ``picker_P_std``, ``picker_S_std``.
        """
        x = self._check_windows(x)
        if mc_samples < 0:
            raise ValueError(f"mc_samples must be at least 0, got {mc_samples}")
        keys = (
            OUTPUT_NAMES
            if mc_samples == 0
            else OUTPUT_NAMES + tuple(f"{name}_std" for name in OUTPUT_NAMES)
        )
        out = {k: np.empty((len(x), WINDOW_SAMPLES), dtype=np.float32) for k in keys}
        step = self._passes_per_call(batch_size, mc_samples)
        for start in range(0, len(x), step):
            chunk = tf.constant(x[start : start + step])
            if mc_samples == 0:
                result = self._deterministic(chunk)
            else:
                result = self._stochastic(chunk, tf.constant(mc_samples, tf.int32))
            for k in keys:
                out[k][start : start + step] = result[k].numpy()
        return out

    @staticmethod
    def _check_windows(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (WINDOW_SAMPLES, CHANNELS):
            raise ValueError(
                f"windows must have shape (N, {WINDOW_SAMPLES}, {CHANNELS}), got {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("windows contain NaN or infinite values")
        return x


def lstm_gate_for(weights: WeightsFile, hard_sigmoid: str = "keras2") -> str:
    """The :data:`~pipeline.picking.layers.LSTM_GATES` key to run a weights file with.

    ``hard_sigmoid`` picks the definition of a hard-sigmoid gate: ``"keras2"`` (the one the
    published weights were trained with, whatever format they were converted to) or
    ``"keras3"``. Files with sigmoid gates ignore it.
    """
    if hard_sigmoid not in ("keras2", "keras3"):
        raise ValueError(f"hard_sigmoid must be 'keras2' or 'keras3', got {hard_sigmoid!r}")
    if weights.lstm_gate == "sigmoid":
        return "sigmoid"
    return f"hard_sigmoid_{hard_sigmoid}"


def load_eqt(
    path: str | Path | None = None,
    *,
    hard_sigmoid: str = "keras2",
    mixed_precision: bool = False,
) -> EQTransformer:
    """Load EQTransformer: a named model or a ``.keras`` or legacy Keras 2 ``.h5`` file.

    The number of BiLSTM blocks and the LSTM gate come from the file (the conservative model:
    3 blocks, hard-sigmoid gates; the original model: 2 blocks, sigmoid gates). Runs on the
    GPU when TensorFlow sees one, else on all CPU cores (TensorFlow's default thread pools).

    Args:
        path: ``"original"``, ``"conservative"`` (installed in the user cache; see
            :func:`pipeline.weights.resolve_weights`), a weights file, or None for
            :data:`pipeline.weights.DEFAULT_MODEL` (the original model).
        hard_sigmoid: how to compute hard-sigmoid LSTM gates (see :func:`lstm_gate_for`):
            ``"keras2"`` (default) as the authors trained them; ``"keras3"`` as Keras 3
            computes ``hard_sigmoid``, which is what the parity reference computes. The
            model name records ``"keras3"`` (``EqT_conservative+hard_sigmoid_keras3``).
        mixed_precision: GPU only (ignored with a warning on CPU): float16 convolutions.
            Off by default because it does not keep parity: on the 16 reference windows it
            changed the outputs by up to 4.4e-3 (tolerance 1e-4; float16 measured on CPU).
            With it off, TensorFloat-32 is disabled on the GPU so float32 results match the
            CPU's (not yet measured on a GPU).

    Raises:
        FileNotFoundError: the file is missing (the message says to run ``make setup``).
        ValueError: ``path`` is neither a model name nor a ``.keras``/``.h5`` path.
        WeightsMismatchError: the file's weights do not fit the network.
    """
    try:
        path = resolve_weights(path)
    except WeightsUnavailableError as exc:
        raise FileNotFoundError(str(exc)) from None
    if not path.is_file():
        raise FileNotFoundError(
            f"EQTransformer weights not found: {path}; run `make setup` to install the "
            "default weights, or pass the path of a .keras or Keras 2 .h5 weights file"
        )
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    if mixed_precision and not on_gpu:
        log.warning("mixed precision requested but no GPU is visible; running in float32")
        mixed_precision = False
    if on_gpu and not mixed_precision:
        tf.config.experimental.enable_tensor_float_32_execution(False)
    weights = read_weights(path)
    gate = lstm_gate_for(weights, hard_sigmoid)
    network = build_network(weights.bilstm_blocks, gate, mixed_precision, weights.drop_rate)
    count = assign_weights(network, weights.weights, path)
    name = path.stem
    if gate == "hard_sigmoid_keras3":
        name += f"+{gate}"
    if mixed_precision:
        name += "+fp16"
    model = EQTransformer(network, path, sha256_file(path), name=name)
    log.info(
        "loaded %s (%d weights, %d BiLSTM blocks, %s gates, MC-dropout rate %g) from %s; "
        "running on %s",
        model.name,
        count,
        weights.bilstm_blocks,
        gate,
        weights.drop_rate,
        path,
        model.device,
    )
    return model
