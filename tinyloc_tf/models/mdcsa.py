"""MDCSA: multihead dual convolutional self-attention (Jovan et al., KDD 2023), RSSI only.

A Keras port of the reference PyTorch model (MIT) as ``../shared/spec/MODELS.md`` restates
it, with two deliberate differences: the embedding trains (the reference wraps it in
``no_grad``), and the second-modality modules that RSSI-only models never use are not built.

``[B, T, F]`` RSSI -> ``Dense(F->H)`` -> ``x*sqrt(H) + PE`` -> one :class:`DCSA` branch per
kernel size (L3: 1, 4, 7; L1: 1) -> multihead fusion -> dropout -> ``Dense(H->K)``
emissions ``[B, T, K]``.

Used parameters (what Keras counts)::

    F*H+H + 2H + sum_k [2H + 2(H*H*k+H) + (4H*H+4H) + (16H*H+4H) + (8H*H+2H) + 2H]
          + (3H*H+H) + (H*K+K)                       (+ K*K+2K for the CRF, in the tagger)
"""

from __future__ import annotations

import keras
from keras import ops

from tinyloc_tf.errors import TinylocError
from tinyloc_tf.param_counts import KERNELS_BY_LAYERS
from tinyloc_tf.models.layers import (
    GatedResidualNetwork,
    LayerNorm,
    ScaledDotProductAttention,
    SinusoidalPositionalEncoding,
    causal_conv1d,
    checked_rate,
    checked_sizes,
)

register = keras.saving.register_keras_serializable(package="tinyloc")


@register
class DCSA(keras.layers.Layer):
    """One dual convolutional self-attention branch: ``[B, T, H] -> [B, T, H]``.

    Query and key are ``tanh`` of causal convolutions of the input, the value is the input
    itself; then ``LayerNorm(attention + x)`` and a gated residual network.
    """

    def __init__(
        self, units: int, kernel_size: int, dropout: float = 0.15, int8_friendly: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.kernel_size = int(kernel_size)
        self.dropout = float(dropout)
        self.int8_friendly = bool(int8_friendly)
        self.key_conv = causal_conv1d(self.units, self.kernel_size, name="key_conv")
        self.query_conv = causal_conv1d(self.units, self.kernel_size, name="query_conv")
        self.attention = ScaledDotProductAttention(self.dropout, name="attention")
        self.norm = LayerNorm(name="norm")
        self.grn = GatedResidualNetwork(
            self.units, 4 * self.units, self.dropout, self.int8_friendly, name="grn"
        )

    def build(self, input_shape):
        self.key_conv.build(input_shape)
        self.query_conv.build(input_shape)
        self.norm.build(input_shape)
        self.grn.build(input_shape)

    def call(self, x, training=None):
        key = ops.tanh(self.key_conv(x))
        query = ops.tanh(self.query_conv(x))
        attended = self.attention(query, key, x, training=training)
        return self.grn(self.norm(attended + x), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "kernel_size": self.kernel_size,
            "dropout": self.dropout,
            "int8_friendly": self.int8_friendly,
        }


@register
class MDCSAEncoder(keras.layers.Layer):
    """RSSI windows to CRF emissions: ``[B, T, F] -> [B, T, K]`` (float32).

    ``layers`` is 3 (branches with kernels 1, 4, 7) or 1 (kernel 1 only). The fusion
    interleaves the branch outputs per step into ``3T`` tokens (``t0k1, t0k4, t0k7, t1k1,
    ...``), self-attends over them without projections, and folds them back to ``T`` with
    ``Conv1D(H, 3, strides=3)``. With one branch there is nothing to fold: the reference
    still counts the ``Conv1D(H, H, 3)``, so it is kept with ``padding="causal", strides=1``.

    ``int8_friendly=True`` swaps the GRN's ELU (which no TFLite quantizer handles) for the
    int8-friendly form of :func:`tinyloc_tf.models.layers.elu`; every other op of MDCSA
    already has an int8 TFLM kernel.
    """

    def __init__(
        self,
        features: int,
        classes: int,
        hidden: int,
        layers: int,
        steps: int,
        int8_friendly: bool = False,
        dropout: float = 0.15,
        head_dropout: float = 0.3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(layers) not in KERNELS_BY_LAYERS:
            raise TinylocError(
                f"MDCSA supports layers=1 (kernel 1) or layers=3 (kernels 1, 4, 7), got {layers}"
            )
        sizes = checked_sizes("MDCSA", features=features, classes=classes, hidden=hidden, steps=steps)
        self.features, self.classes, self.hidden = sizes["features"], sizes["classes"], sizes["hidden"]
        self.steps = sizes["steps"]
        self.num_layers = int(layers)
        self.int8_friendly = bool(int8_friendly)
        self.dropout = checked_rate("MDCSA", "dropout", dropout)
        self.head_dropout_rate = checked_rate("MDCSA", "head_dropout", head_dropout)
        self.kernel_sizes = KERNELS_BY_LAYERS[self.num_layers]

        h = self.hidden
        self.embedding = keras.layers.Dense(h, name="embedding")
        self.positional = SinusoidalPositionalEncoding(self.steps, name="positional")
        self.branches = [
            DCSA(h, k, self.dropout, self.int8_friendly, name=f"dcsa_k{k}") for k in self.kernel_sizes
        ]
        self.fusion_attention = ScaledDotProductAttention(self.dropout, name="fusion_attention")
        if len(self.kernel_sizes) > 1:
            fold = len(self.kernel_sizes)
            self.fusion_conv = keras.layers.Conv1D(h, fold, strides=fold, name="fusion_conv")
        else:
            self.fusion_conv = causal_conv1d(h, 3, name="fusion_conv")
        self.fusion_norm = LayerNorm(name="fusion_norm")
        self.head_dropout = keras.layers.Dropout(self.head_dropout_rate)
        self.head = keras.layers.Dense(self.classes, name="head")

    def build(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        hidden_shape = (batch, steps, self.hidden)
        self.embedding.build(input_shape)
        self.positional.build(hidden_shape)
        for branch in self.branches:
            branch.build(hidden_shape)
        tokens = None if steps is None else steps * len(self.branches)
        self.fusion_conv.build((batch, tokens, self.hidden))
        self.fusion_norm.build(hidden_shape)
        self.head.build(hidden_shape)

    def call(self, x, training=None):
        steps = x.shape[1]
        h = self.positional(self.embedding(x))
        outs = [branch(h, training=training) for branch in self.branches]
        if len(outs) > 1:
            # [B, T, n*H] reshaped to [B, n*T, H] is exactly the per-step interleaving.
            h = ops.reshape(ops.concatenate(outs, axis=-1), (-1, steps * len(outs), self.hidden))
        else:
            h = outs[0]
        h = self.fusion_attention(h, h, h, training=training)
        h = self.fusion_norm(self.fusion_conv(h))
        h = self.head_dropout(h, training=training)
        return self.head(h)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.classes)

    def get_config(self):
        return {
            **super().get_config(),
            "features": self.features,
            "classes": self.classes,
            "hidden": self.hidden,
            "layers": self.num_layers,
            "steps": self.steps,
            "int8_friendly": self.int8_friendly,
            "dropout": self.dropout,
            "head_dropout": self.head_dropout_rate,
        }
