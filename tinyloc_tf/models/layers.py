"""Building blocks shared by the MDCSA and Mamba encoders.

Every layer here is written so that the same Keras graph converts to a full-integer int8
``.tflite`` that TensorFlow Lite Micro can run (see ``docs/models.md``):

* :class:`LayerNorm` spells out ``(x - mean) * rsqrt(var + eps) * gamma + beta``; Keras'
  own ``LayerNormalization`` lowers to a fused op that the int8 converter leaves in float.
* :class:`CausalDepthwiseConv1D` pads on the left explicitly, because Keras'
  ``DepthwiseConv1D`` has no ``padding="causal"``.
* :class:`ScaledDotProductAttention` has no mask at all (MDCSA attends over the whole
  window, as the reference does), so no large additive constants wreck the int8 scales.
* :func:`elu` offers an int8-friendly form: no TFLite quantizer handles ``ELU``.

Shapes use ``B`` batch, ``T`` time steps, ``H`` hidden size.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tinyloc_tf.errors import TinylocError

register = keras.saving.register_keras_serializable(package="tinyloc")


@register
class LayerNorm(keras.layers.Layer):
    """Layer normalisation over the last axis, quantizable: ``[..., H] -> [..., H]``.

    Same maths as ``torch.nn.LayerNorm`` (biased variance, ``eps`` inside the root);
    weights ``gamma [H]`` (ones) and ``beta [H]`` (zeros), ``2H`` parameters.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(dim,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(dim,), initializer="zeros")

    def call(self, x):
        mean = ops.mean(x, axis=-1, keepdims=True)
        centred = x - mean
        variance = ops.mean(centred * centred, axis=-1, keepdims=True)
        return centred * ops.rsqrt(variance + self.epsilon) * self.gamma + self.beta

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def checked_sizes(owner: str, **sizes) -> dict[str, int]:
    """``sizes`` as ints, each checked >= 1 (an encoder's features, classes, hidden, ...);
    ``TinylocError`` naming ``owner`` and the size otherwise."""
    for name, value in sizes.items():
        if int(value) < 1:
            raise TinylocError(f"{owner} needs {name} >= 1, got {value!r}")
    return {name: int(value) for name, value in sizes.items()}


def checked_rate(owner: str, name: str, value) -> float:
    """A dropout rate as a float in [0, 1); ``TinylocError`` naming ``owner`` otherwise."""
    if not 0.0 <= float(value) < 1.0:
        raise TinylocError(f"{owner} needs 0 <= {name} < 1, got {value!r}")
    return float(value)


def sinusoidal_table(steps: int, dim: int) -> np.ndarray:
    """The reference MDCSA positional table, float32 ``[steps, dim]``.

    Column ``j`` is ``sin`` (even ``j``) or ``cos`` (odd ``j``) of
    ``pos / 10000 ** (2 * j / dim)``. This is the reference code's exponent (``2j``, not the
    ``2 * floor(j / 2)`` of "Attention is all you need"); kept so ported weights match.
    """
    pos = np.arange(steps, dtype=np.float64)[:, None]
    j = np.arange(dim, dtype=np.float64)[None, :]
    angle = pos / np.power(10000.0, 2.0 * j / dim)
    table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return table.astype(np.float32)


@register
class SinusoidalPositionalEncoding(keras.layers.Layer):
    """``x * sqrt(H) + PE[:T]``: ``[B, T, H] -> [B, T, H]``, no weights.

    ``max_steps`` bounds ``T``; the table is a constant, so the converted graph holds one
    ``ADD`` of a constant tensor.
    """

    def __init__(self, max_steps: int, **kwargs):
        super().__init__(**kwargs)
        if int(max_steps) < 1:
            raise TinylocError(f"positional encoding needs max_steps >= 1, got {max_steps}")
        self.max_steps = int(max_steps)

    def build(self, input_shape):
        self.dim = int(input_shape[-1])
        self.scale = math.sqrt(self.dim)
        self.table = sinusoidal_table(self.max_steps, self.dim)

    def call(self, x):
        steps = x.shape[1]
        if steps is not None and steps > self.max_steps:
            raise TinylocError(
                f"input has {steps} time steps but the positional encoding was built for at "
                f"most {self.max_steps} (the model's `steps`)"
            )
        table = ops.convert_to_tensor(self.table[None, :steps], dtype=x.dtype)
        return x * self.scale + table

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_steps": self.max_steps}


@register
class CausalDepthwiseConv1D(keras.layers.DepthwiseConv1D):
    """Depthwise Conv1D that only looks back: ``[B, T, C] -> [B, T, C]``.

    Pads ``kernel_size - 1`` zeros on the left (``PAD`` + ``DEPTHWISE_CONV_2D`` in TFLite),
    like ``torch.nn.Conv1d(C, C, k, groups=C, padding=k-1)`` truncated to the first ``T``.
    """

    def __init__(self, kernel_size, **kwargs):
        kwargs.pop("padding", None)
        super().__init__(kernel_size=kernel_size, padding="valid", **kwargs)

    def call(self, inputs):
        left = (self.kernel_size[0] - 1) * self.dilation_rate[0]
        if left:
            inputs = ops.pad(inputs, [[0, 0], [left, 0], [0, 0]])
        return super().call(inputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] * self.depth_multiplier)

    def get_config(self):
        config = super().get_config()
        config.pop("padding", None)
        return config


def causal_conv1d(filters: int, kernel_size: int, *, depthwise: bool = False, name=None, **kwargs):
    """A causal 1-D convolution ``[B, T, C] -> [B, T, filters]`` (output ``t`` sees ``<= t``).

    ``depthwise=True`` gives a per-channel convolution (``filters`` must equal ``C``), as in
    Mamba; otherwise a full ``Conv1D(padding="causal")``, as in MDCSA's query/key convs.
    """
    if depthwise:
        return CausalDepthwiseConv1D(kernel_size, name=name, **kwargs)
    return keras.layers.Conv1D(filters, kernel_size, padding="causal", name=name, **kwargs)


@register
class ScaledDotProductAttention(keras.layers.Layer):
    """``softmax(Q K^T / sqrt(d)) V`` with dropout on the weights, no mask, no projections.

    ``q, k: [B, S, d]``, ``v: [B, S, dv]`` -> ``[B, S, dv]``. The converted graph holds two
    ``BATCH_MATMUL``s and one ``SOFTMAX``.
    """

    def __init__(self, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.dropout = float(dropout)
        self.attention_dropout = keras.layers.Dropout(self.dropout)

    def call(self, q, k, v, training=None):
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = ops.matmul(q, ops.swapaxes(k, -1, -2)) * scale
        if k.shape[1] == 1:
            # One key (UJIIndoorLoc, T = 1): the softmax is exactly 1; skip the op.
            weights = ops.ones_like(scores)
        else:
            weights = ops.softmax(scores, axis=-1)
        weights = self.attention_dropout(weights, training=training)
        return ops.matmul(weights, v)

    def compute_output_shape(self, q_shape, k_shape, v_shape):
        return (*q_shape[:-1], v_shape[-1])

    def get_config(self):
        return {**super().get_config(), "dropout": self.dropout}


#: ``exp(u) ~ relu(1 + u/n) ** n`` with ``n = 2**ELU_SQUARINGS``: four squarings, four int8 MULs.
ELU_SQUARINGS = 4


def elu(x, int8_friendly: bool = False):
    """ELU, elementwise, any shape; exact by default.

    Neither TFLite quantizer handles ``ELU`` ("Quantization not yet supported for op:
    'ELU'"), so the exact form leaves a float island (DEQUANTIZE, ELU, QUANTIZE). The
    int8-friendly form replaces ``exp(u)`` (``u = min(x, 0)``) by ``relu(1 + u/16) ** 16``,
    computed by repeated squaring: ``relu(x) + relu(1 + u/16) ** 16 - 1``. It is exact for
    ``x >= 0`` and within 0.0173 of ELU for ``x < 0``, and uses MINIMUM, RELU, MUL and ADD only.
    """
    if not int8_friendly:
        return ops.elu(x)
    base = ops.relu(1.0 + ops.minimum(x, 0.0) * (1.0 / 2**ELU_SQUARINGS))
    for _ in range(ELU_SQUARINGS):
        base = base * base
    return ops.relu(x) + (base - 1.0)


@register
class GatedResidualNetwork(keras.layers.Layer):
    """The Temporal Fusion Transformer GRN as MDCSA uses it: ``[B, T, H] -> [B, T, H]``.

    ``Dense(H->4H) -> ELU -> Dense(4H->4H) -> Dropout -> Dense(4H->2H) -> GLU -> LayerNorm(
    . + x)`` with ``units = H``, ``inner = 4H``:
    ``(4H*H+4H) + (16H*H+4H) + (8H*H+2H) + 2H`` parameters. ``int8_friendly`` selects the
    int8-friendly :func:`elu`.
    """

    def __init__(self, units: int, inner: int, dropout: float = 0.0, int8_friendly: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.inner = int(inner)
        self.dropout = float(dropout)
        self.int8_friendly = bool(int8_friendly)
        # He init for the two ELU-side layers, Glorot for the GLU: the reference's choices.
        self.fc1 = keras.layers.Dense(self.inner, kernel_initializer="he_normal", name="fc1")
        self.fc2 = keras.layers.Dense(self.inner, kernel_initializer="he_normal", name="fc2")
        self.glu_dropout = keras.layers.Dropout(self.dropout)
        self.glu = keras.layers.Dense(2 * self.units, name="glu")
        self.norm = LayerNorm(name="norm")

    def build(self, input_shape):
        inner_shape = (*input_shape[:-1], self.inner)
        self.fc1.build(input_shape)
        self.fc2.build(inner_shape)
        self.glu.build(inner_shape)
        self.norm.build((*input_shape[:-1], self.units))

    def call(self, x, training=None):
        h = elu(self.fc1(x), self.int8_friendly)
        h = self.fc2(h)
        h = self.glu(self.glu_dropout(h, training=training))
        value, gate = ops.split(h, 2, axis=-1)  # torch.nn.functional.glu: first half gated
        return self.norm(value * ops.sigmoid(gate) + x)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "inner": self.inner,
            "dropout": self.dropout,
            "int8_friendly": self.int8_friendly,
        }
