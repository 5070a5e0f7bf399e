"""The custom layers of EQTransformer (Mousavi et al. 2020), for inference in Keras 3.

The published weights were trained with three layers from outside core Keras; their
formulas and weight layouts are reproduced here so that the weights load unchanged:

- :class:`SeqSelfAttention`: single-head additive self-attention (Bahdanau-style) with an
  optional local window, as in the keras-self-attention package;
- :class:`FeedForward`: the position-wise feed-forward block of a transformer;
- :class:`LayerNormalization`: layer normalisation over the feature axis with the
  tiny epsilon (1e-14) the authors used.

Each layer documents its weights in the order the weight files store them. Dropout inside
the feed-forward block only acts in training, so it is not part of this inference code.
All tensors are ``(batch, time, features)``.
"""

from __future__ import annotations

import numpy as np

from pipeline.picking.backend import keras, ops

#: Keras 2's ``K.epsilon()``, added to the attention softmax denominator.
ATTENTION_EPSILON = 1e-7
#: Keras 2's ``K.epsilon() ** 2``, the layer-normalisation epsilon of the trained model.
LAYER_NORM_EPSILON = 1e-14


@keras.saving.register_keras_serializable(package="eqcat")
def hard_sigmoid_keras2(x):
    """Keras 2's hard sigmoid, ``clip(0.2 x + 0.5, 0, 1)``."""
    return ops.clip(0.2 * x + 0.5, 0.0, 1.0)


#: Gate (recurrent) activations of the LSTMs, by name. The authors' original model uses
#: ``"sigmoid"``; their conservative model ``hard_sigmoid``, which Keras 2 (where the
#: weights were trained) defines as ``clip(0.2 x + 0.5, 0, 1)`` and Keras 3 redefined as
#: ``clip(x / 6 + 0.5, 0, 1)``. Running a converted ``.keras`` file in Keras 3 therefore
#: computes the latter, and so does the parity reference.
LSTM_GATES = {
    "sigmoid": "sigmoid",
    "hard_sigmoid_keras2": hard_sigmoid_keras2,
    "hard_sigmoid_keras3": "hard_sigmoid",
}


@keras.saving.register_keras_serializable(package="eqcat")
class SeqSelfAttention(keras.layers.Layer):
    """Additive self-attention over time, optionally restricted to a local window.

    For inputs ``h`` (batch, T, d) the score of time ``t`` attending to ``t'`` is
    ``e[t, t'] = W_a . tanh(W_t h_t + W_x h_t' + b_h) + b_a``; the weights ``a[t, :]`` are
    the softmax of ``e[t, :]`` over the allowed ``t'`` (all times, or the
    ``attention_width`` times centred on ``t``), normalised as
    ``exp(e - max_t' e) / (sum_allowed exp(e - max_t' e) + 1e-7)``; the output is
    ``sum_t' a[t, t'] h_t'`` (batch, T, d).

    Weights, in file order: ``W_t`` (d, units), ``W_x`` (d, units), ``b_h`` (units,),
    ``W_a`` (units, 1), ``b_a`` (1,).
    """

    def __init__(self, units: int = 32, attention_width: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.attention_width = attention_width

    def build(self, input_shape):
        features = input_shape[-1]
        self.Wt = self.add_weight(name="Wt", shape=(features, self.units))
        self.Wx = self.add_weight(name="Wx", shape=(features, self.units))
        self.bh = self.add_weight(name="bh", shape=(self.units,), initializer="zeros")
        self.Wa = self.add_weight(name="Wa", shape=(self.units, 1))
        self.ba = self.add_weight(name="ba", shape=(1,), initializer="zeros")

    def _local_mask(self, length):
        """(T, T) 1/0 mask of the ``attention_width`` times centred on each time."""
        t = ops.arange(length)
        lower = ops.expand_dims(t - self.attention_width // 2, 1)
        t_prime = ops.expand_dims(t, 0)
        allowed = ops.logical_and(t_prime >= lower, t_prime < lower + self.attention_width)
        return ops.cast(allowed, self.compute_dtype)

    def call(self, inputs):
        query = ops.expand_dims(ops.matmul(inputs, self.Wt), 2)  # (B, T, 1, units)
        key = ops.expand_dims(ops.matmul(inputs, self.Wx), 1)  # (B, 1, T, units)
        hidden = ops.tanh(query + key + self.bh)  # (B, T, T, units)
        scores = ops.squeeze(ops.matmul(hidden, self.Wa), -1) + self.ba  # (B, T, T)
        weights = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
        if self.attention_width is not None:
            weights = weights * self._local_mask(ops.shape(inputs)[1])
        weights = weights / (ops.sum(weights, axis=-1, keepdims=True) + ATTENTION_EPSILON)
        return ops.matmul(weights, inputs)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "attention_width": self.attention_width,
        }


@keras.saving.register_keras_serializable(package="eqcat")
class FeedForward(keras.layers.Layer):
    """Position-wise feed-forward block: ``relu(x W1 + b1) W2 + b2``, applied per time step.

    Weights, in file order: ``W1`` (d, units), ``b1`` (units,), ``W2`` (units, d), ``b2`` (d,).
    """

    def __init__(self, units: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        features = input_shape[-1]
        self.W1 = self.add_weight(name="W1", shape=(features, self.units))
        self.b1 = self.add_weight(name="b1", shape=(self.units,), initializer="zeros")
        self.W2 = self.add_weight(name="W2", shape=(self.units, features))
        self.b2 = self.add_weight(name="b2", shape=(features,), initializer="zeros")

    def call(self, inputs):
        hidden = ops.relu(ops.matmul(inputs, self.W1) + self.b1)
        return ops.matmul(hidden, self.W2) + self.b2

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="eqcat")
class LayerNormalization(keras.layers.Layer):
    """Normalise each time step over its features: ``(x - mean) / sqrt(var + eps) * gamma + beta``.

    Weights, in file order: ``gamma`` (d,), ``beta`` (d,).
    """

    def __init__(self, epsilon: float = LAYER_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        features = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(features,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(features,), initializer="zeros")

    def call(self, inputs):
        centred = inputs - ops.mean(inputs, axis=-1, keepdims=True)
        variance = ops.mean(ops.square(centred), axis=-1, keepdims=True)
        return centred / ops.sqrt(variance + self.epsilon) * self.gamma + self.beta

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="eqcat")
class UpsamplingConv1D(keras.layers.Layer):
    """``Conv1D(padding="same")`` of the input upsampled 2x by repeating each sample.

    The result equals ``Conv1D(UpSampling1D(2)(x))`` but is computed at the input rate:
    output sample ``2 i + r`` (phase ``r`` = 0, 1) is a convolution of ``x`` around ``i``
    whose taps are sums of the original taps, so one convolution with ``2 * filters``
    outputs and about ``kernel_size / 2 + 1`` taps gives both phases, which a reshape
    interleaves. That halves the multiply-adds of the full-rate decoder convolutions.

    Weights, in file order, as ``Conv1D``: ``kernel`` (kernel_size, in, filters),
    ``bias`` (filters,). Input (batch, T, in) -> output (batch, 2 T, filters).
    """

    def __init__(self, filters: int, kernel_size: int, activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.activation = keras.activations.get(activation)
        # Keras "same" padding puts (K - 1) // 2 zeros before the signal.
        left = (kernel_size - 1) // 2
        offsets = [[(r + j - left) // 2 for j in range(kernel_size)] for r in (0, 1)]
        self.first_offset = min(min(o) for o in offsets)
        self.last_offset = max(max(o) for o in offsets)
        taps = self.last_offset - self.first_offset + 1
        # scatter[r, d, j] = 1 where original tap j of phase r reads x[i + first_offset + d].
        scatter = np.zeros((2, taps, kernel_size), dtype="float32")
        for r in (0, 1):
            for j, offset in enumerate(offsets[r]):
                scatter[r, offset - self.first_offset, j] = 1.0
        self.scatter = scatter

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, input_shape[-1], self.filters)
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        taps = self.scatter.shape[1]
        # (phase, tap, in, filters) -> (tap, in, phase * filters)
        scatter = ops.convert_to_tensor(self.scatter, dtype=self.compute_dtype)
        fused = ops.einsum("rdk,kcf->dcrf", scatter, self.kernel)
        fused = ops.reshape(fused, (taps, ops.shape(self.kernel)[1], 2 * self.filters))
        padded = ops.pad(inputs, ((0, 0), (-self.first_offset, self.last_offset), (0, 0)))
        both = ops.conv(padded, fused, padding="valid") + ops.tile(self.bias, [2])
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        return self.activation(ops.reshape(both, (batch, 2 * length, self.filters)))

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "activation": keras.activations.serialize(self.activation),
        }
