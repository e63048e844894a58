"""Mamba (selective state-space model) encoder: RSSI windows -> CRF emissions.

Layering, outermost first (mamba-minimal naming)::

    MambaEncoder   [B, T, F] -> [B, T, K]   embed -> L x MambaBlock -> head
    MambaBlock     [B, T, H] -> [B, T, H]   x + MambaMixer(RMSNorm(x))
    MambaMixer     [B, T, H] -> [B, T, H]   in_proj, causal conv, selective scan, gate, out_proj
    selective_scan (function)               h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t; y_t = C_t h_t + D x_t

Sizes follow the standard Mamba/S6 block: ``d_state`` N = 16, ``expand`` 2 so the inner
width is D = 2H, ``d_conv`` 4, ``dt_rank`` r = ceil(H / 16).

Deployable by construction (see ``docs/mamba.md``): the scan is a Python loop unrolled over
the fixed window length T, so the converted graph holds only MUL/ADD per step (no WHILE).
TFLM runs EXP and LOG in float only, so ``int8_friendly=True`` swaps the two runtime
transcendental functions for forms built from int8 kernels:

- ``exp(u)``, u <= 0  ->  ``relu(1 + u/16) ** 16`` (four squarings), |error| <= 0.0173;
- ``softplus(x)``     ->  ``relu(x) + ln2 * sech(x) ** 2``, |error| <= 0.0814.

``A = -exp(A_log)`` depends on weights only, so the converter folds it into a constant in
either form; no runtime EXP comes from it.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tinyloc_tf.errors import TinylocError
from tinyloc_tf.models.layers import causal_conv1d, checked_rate, checked_sizes

# (1 + u/n)^n -> exp(u); n = 2^4 so the power is four squarings (four int8 MULs).
EXP_SQUARINGS = 4
EXP_POWER = 2**EXP_SQUARINGS
LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------
# The two transcendental functions of the scan, exact and int8-friendly.
# --------------------------------------------------------------------------------------


def positive_step(x, int8_friendly: bool = False):
    """Step size ``dt`` from its pre-activation, elementwise, any shape.

    Exact: ``softplus(x)``. Int8-friendly: ``relu(x) + ln2 * sech(x)^2``, softplus' linear
    part plus a bump for the soft corner. It is exact at 0 and for x -> +inf, positive,
    monotone, and within 0.0814 of softplus everywhere. ``sech(x)^2`` is written as
    ``4 s (1 - s)`` with ``s = sigmoid(2x)``: RELU, LOGISTIC, MUL, SUB, ADD, all int8 in TFLM.
    (``1 - tanh(x)^2`` is the same function, but float32 tanh rounds to -1 below x = -7.5,
    which would zero dt and its gradient there; the sigmoid form stays accurate.) ``2x`` is
    written ``x + x`` (the same float): the converter folds ``2.0 * x`` into a second copy of
    the layer that computes ``x``, weights and bias included.
    """
    if not int8_friendly:
        return ops.softplus(x)
    s = ops.sigmoid(x + x)
    return ops.relu(x) + (4.0 * LN2) * s * (1.0 - s)


def inverse_positive_step(dt: np.ndarray, int8_friendly: bool = False) -> np.ndarray:
    """numpy inverse of :func:`positive_step` for 0 < dt < ln2 (used to initialise dt_proj's bias).

    Exact: ``x = dt + log(-expm1(-dt))`` (inverse softplus). Int8-friendly: on the branch
    x < 0 the relu term is 0, so ``ln2 * sech(x)^2 = dt`` gives ``x = -arccosh(sqrt(ln2/dt))``.
    """
    dt = np.asarray(dt, dtype=np.float64)
    if not int8_friendly:
        return dt + np.log(-np.expm1(-dt))
    return -np.arccosh(np.sqrt(LN2 / dt))


def decay(dt, A, int8_friendly: bool = False):
    """Discretised state decay ``exp(dt * A)``.

    Args:
        dt: positive step sizes that broadcast against ``A``: ``[..., D, 1]`` for the window
            scan's and the step model's ``A [D, N]``.
        A: the negative state matrix (diagonal per channel), weight-only.

    Returns:
        ``exp(dt * A)`` in (0, 1], broadcast to ``[..., D, N]``.

    Int8-friendly: ``exp(u) ~ relu(1 + u/16)^16`` for u = dt*A <= 0 (a compound-interest
    limit). ``A / 16`` depends on weights only, so the converter folds it; at run time this is
    MUL, ADD (with fused RELU) and four MULs (squarings).
    """
    if not int8_friendly:
        return ops.exp(dt * A)
    v = ops.relu(1.0 + dt * (A / EXP_POWER))
    for _ in range(EXP_SQUARINGS):
        v = v * v
    return v


def selective_scan(x, dt, A, B, C, D, int8_friendly: bool = False):
    """The S6 recurrence, unrolled over the (static) time axis.

    Args:
        x: ``[b, T, D]`` input after conv + SiLU.
        dt: ``[b, T, D]`` positive step sizes.
        A: ``[D, N]`` state matrix (negative).
        B: ``[b, T, N]`` input matrix per step.
        C: ``[b, T, N]`` output matrix per step.
        D: ``[D]`` skip connection.

    Returns:
        ``y [b, T, D]`` with ``h_t = exp(dt_t A) * h_{t-1} + dt_t * B_t * x_t`` (h_0 = 0, h of
        shape ``[b, D, N]``) and ``y_t = sum_n h_t C_t + D * x_t``.

    Why unrolled: TFLM cannot run the int8 WHILE a ``tf.scan`` becomes. Each step is then
    one MUL and one ADD for the state plus one MUL for ``dBx_t``, laid out for TFLM's arena:

    - ``dA`` is computed once for all steps, and only steps 1..T-1 are unstacked (h_0 = 0
      needs none). An UNPACK output that nothing reads made the int8 converter now and then
      leave that UNPACK in float, with 19 QUANTIZE ops after it.
    - ``dBx_t = (dt_t x_t) outer B_t`` is formed per step from small ``[b, D]`` / ``[b, N]``
      slices, so no ``[b, T, D, N]`` copy of it (and of its unstacked pieces) sits in the arena.
    - The readout ``sum_n h_t C_t`` is one batched matmul over the stacked states.
    """
    steps = x.shape[1]
    if steps > 1:
        dA_t = ops.unstack(decay(ops.expand_dims(dt, -1), A, int8_friendly)[:, 1:], num=steps - 1, axis=1)  # (T-1) x [b, D, N]
    dtx_t = ops.unstack(ops.expand_dims(dt * x, -1), num=steps, axis=1)  # T x [b, D, 1]
    B_t = ops.unstack(ops.expand_dims(B, 2), num=steps, axis=1)  # T x [b, 1, N]
    h = dtx_t[0] * B_t[0]  # [b, D, N]
    states = [h]
    for t in range(1, steps):
        h = dA_t[t - 1] * h + dtx_t[t] * B_t[t]
        states.append(h)
    h = ops.stack(states, axis=1)  # [b, T, D, N]
    y = ops.squeeze(ops.matmul(h, ops.expand_dims(C, -1)), -1)  # [b, T, D]: sum_n h C
    return y + x * D


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tinyloc")
class DtBiasInitializer(keras.initializers.RandomUniform):
    """Mamba's ``dt_proj`` bias init: ``dt ~ logUniform[dt_min, dt_max]``, bias = inverse(dt).

    The inverse matches the chosen ``positive_step`` form, so both forms start with the same
    step sizes.
    """

    def __init__(self, dt_min=1e-3, dt_max=1e-1, int8_friendly=False, seed=None):
        super().__init__(minval=math.log(dt_min), maxval=math.log(dt_max), seed=seed)
        self.dt_min = dt_min
        self.dt_max = dt_max
        self.int8_friendly = int8_friendly

    def __call__(self, shape, dtype=None):
        log_dt = keras.ops.convert_to_numpy(super().__call__(shape, dtype="float32"))
        dt = np.maximum(np.exp(log_dt), 1e-4)
        bias = inverse_positive_step(dt, self.int8_friendly)
        return ops.convert_to_tensor(bias.astype(np.float32), dtype=dtype)

    def get_config(self):
        config = super().get_config()  # seed, minval, maxval; the last two follow from dt_min/max
        config.pop("minval")
        config.pop("maxval")
        return {**config, "dt_min": self.dt_min, "dt_max": self.dt_max, "int8_friendly": self.int8_friendly}


@keras.saving.register_keras_serializable(package="tinyloc")
class MambaMixer(keras.layers.Layer):
    """The Mamba/S6 mixer: ``[b, T, H] -> [b, T, H]``.

    ``in_proj`` (H -> 2D) split into ``x`` and gate ``z``; ``x`` -> causal depthwise conv
    (kernel ``d_conv``, bias) -> SiLU; ``x_proj`` (D -> r + 2N) split into ``dt_in, B, C``;
    ``dt = positive_step(dt_proj(dt_in))``; selective scan; ``y * SiLU(z)``; ``out_proj`` (D -> H).
    """

    def __init__(self, hidden, int8_friendly=False, d_state=16, expand=2, d_conv=4, **kwargs):
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        self.int8_friendly = bool(int8_friendly)
        self.d_state = int(d_state)
        self.expand = int(expand)
        self.d_conv = int(d_conv)
        self.d_inner = self.expand * self.hidden
        self.dt_rank = math.ceil(self.hidden / 16)

        self.in_proj = keras.layers.Dense(2 * self.d_inner, use_bias=False, name="in_proj")
        # Causal: output t sees inputs t-d_conv+1 .. t (left zero padding).
        self.conv = causal_conv1d(self.d_inner, self.d_conv, depthwise=True, use_bias=True, name="conv")
        self.x_proj = keras.layers.Dense(self.dt_rank + 2 * self.d_state, use_bias=False, name="x_proj")
        dt_std = self.dt_rank**-0.5
        self.dt_proj = keras.layers.Dense(
            self.d_inner,
            use_bias=True,
            kernel_initializer=keras.initializers.RandomUniform(-dt_std, dt_std),
            bias_initializer=DtBiasInitializer(int8_friendly=self.int8_friendly),
            name="dt_proj",
        )
        self.out_proj = keras.layers.Dense(self.hidden, use_bias=False, name="out_proj")

    def build(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        self.in_proj.build(input_shape)
        inner_shape = (batch, steps, self.d_inner)
        self.conv.build(inner_shape)
        self.x_proj.build(inner_shape)
        self.dt_proj.build((batch, steps, self.dt_rank))
        self.out_proj.build(inner_shape)
        # A_log row = log(1..N) for every channel (S4D-real init); D_skip = 1.
        a_init = np.tile(np.log(np.arange(1, self.d_state + 1, dtype=np.float32)), (self.d_inner, 1))
        self.A_log = self.add_weight(
            shape=(self.d_inner, self.d_state),
            initializer=keras.initializers.Constant(a_init),
            name="A_log",
        )
        self.D = self.add_weight(shape=(self.d_inner,), initializer="ones", name="D")
        super().build(input_shape)

    def call(self, inputs):
        xz = self.in_proj(inputs)  # [b, T, 2D]
        x, z = ops.split(xz, 2, axis=-1)  # 2 x [b, T, D]
        x = ops.silu(self.conv(x))  # [b, T, D]

        x_dbl = self.x_proj(x)  # [b, T, r + 2N]
        dt_in, B, C = ops.split(x_dbl, [self.dt_rank, self.dt_rank + self.d_state], axis=-1)
        dt = positive_step(self.dt_proj(dt_in), self.int8_friendly)  # [b, T, D]

        A = -ops.exp(self.A_log)  # [D, N]; weights only, folded to a constant by the converter
        y = selective_scan(x, dt, A, B, C, self.D, self.int8_friendly)  # [b, T, D]
        y = y * ops.silu(z)
        return self.out_proj(y)  # [b, T, H]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.hidden,)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden=self.hidden,
            int8_friendly=self.int8_friendly,
            d_state=self.d_state,
            expand=self.expand,
            d_conv=self.d_conv,
        )
        return config


@keras.saving.register_keras_serializable(package="tinyloc")
class RMSNorm(keras.layers.Layer):
    """Root-mean-square norm over the last axis: ``x * rsqrt(mean(x*x) + eps) * g``, any shape.

    Written out rather than ``keras.layers.RMSNormalization``: that one squares with
    ``square``, which becomes a TFLite SQUARE op that stays float in an int8 model; ``x * x``
    is an int8 MUL, so this form quantizes fully (MUL, MEAN, ADD, RSQRT, MUL, MUL).
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")
        super().build(input_shape)

    def call(self, x):
        mean_square = ops.mean(x * x, axis=-1, keepdims=True)
        return x * ops.rsqrt(mean_square + self.epsilon) * self.scale

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package="tinyloc")
class MambaBlock(keras.layers.Layer):
    """Pre-norm residual block ``x + MambaMixer(RMSNorm(x))``: ``[b, T, H] -> [b, T, H]``."""

    def __init__(self, hidden, int8_friendly=False, d_state=16, expand=2, d_conv=4, **kwargs):
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        self.int8_friendly = bool(int8_friendly)
        self.d_state = int(d_state)
        self.expand = int(expand)
        self.d_conv = int(d_conv)
        self.norm = RMSNorm(epsilon=1e-5, name="norm")
        self.mixer = MambaMixer(
            self.hidden, self.int8_friendly, self.d_state, self.expand, self.d_conv, name="mixer"
        )

    def build(self, input_shape):
        self.norm.build(input_shape)
        self.mixer.build(input_shape)
        super().build(input_shape)

    def call(self, inputs):
        return inputs + self.mixer(self.norm(inputs))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden=self.hidden,
            int8_friendly=self.int8_friendly,
            d_state=self.d_state,
            expand=self.expand,
            d_conv=self.d_conv,
        )
        return config


@keras.saving.register_keras_serializable(package="tinyloc")
class MambaEncoder(keras.layers.Layer):
    """RSSI windows to CRF emissions: ``x [b, T, F] -> emissions [b, T, K]``.

    ``Dense(F -> H, bias)`` embedding, ``layers`` x :class:`MambaBlock`, ``Dense(H -> K, no
    bias)`` head; no final norm (as the paper's reference model).

    Args:
        features: F, input features (access points).
        classes: K, output classes (rooms / areas).
        hidden: H, model width.
        layers: L, number of residual blocks.
        steps: T, window length; the scan is unrolled over it, so it is fixed.
        int8_friendly: replace exp / softplus by int8-friendly forms (module docstring).
        d_state, expand, d_conv: Mamba sizes (16, 2, 4).
        dropout: dropout rate on the embedding and before the head, training only (0: none).
    """

    def __init__(
        self,
        features,
        classes,
        hidden,
        layers,
        steps,
        int8_friendly=False,
        d_state=16,
        expand=2,
        d_conv=4,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dropout = checked_rate("Mamba", "dropout", dropout)
        sizes = checked_sizes("Mamba", features=features, classes=classes, hidden=hidden, layers=layers, steps=steps,
                              d_state=d_state, expand=expand, d_conv=d_conv)
        self.features, self.classes, self.hidden = sizes["features"], sizes["classes"], sizes["hidden"]
        self.num_layers, self.steps = sizes["layers"], sizes["steps"]
        self.d_state, self.expand, self.d_conv = sizes["d_state"], sizes["expand"], sizes["d_conv"]
        self.int8_friendly = bool(int8_friendly)

        self.embed = keras.layers.Dense(self.hidden, use_bias=True, name="embed")
        self.embed_dropout = keras.layers.Dropout(self.dropout, name="embed_dropout")
        self.head_dropout = keras.layers.Dropout(self.dropout, name="head_dropout")
        self.blocks = [
            MambaBlock(self.hidden, self.int8_friendly, self.d_state, self.expand, self.d_conv,
                       name=f"block_{i}")
            for i in range(self.num_layers)
        ]
        self.head = keras.layers.Dense(self.classes, use_bias=False, name="head")

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise TinylocError(f"MambaEncoder expects input [batch, T, F], got shape {tuple(input_shape)}")
        if input_shape[1] is not None and input_shape[1] != self.steps:
            raise TinylocError(
                f"MambaEncoder was built for T={self.steps} steps (the scan is unrolled over T), "
                f"got input with T={input_shape[1]}"
            )
        if input_shape[2] is not None and input_shape[2] != self.features:
            raise TinylocError(f"MambaEncoder expects F={self.features} features, got {input_shape[2]}")
        batch = input_shape[0]
        self.embed.build(input_shape)
        hidden_shape = (batch, self.steps, self.hidden)
        for block in self.blocks:
            block.build(hidden_shape)
        self.head.build(hidden_shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = self.embed(inputs)  # [b, T, H]
        if self.dropout:
            x = self.embed_dropout(x, training=training)
        for block in self.blocks:
            x = block(x)
        if self.dropout:
            x = self.head_dropout(x, training=training)
        return self.head(x)  # [b, T, K]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.classes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            features=self.features,
            classes=self.classes,
            hidden=self.hidden,
            layers=self.num_layers,
            steps=self.steps,
            int8_friendly=self.int8_friendly,
            d_state=self.d_state,
            expand=self.expand,
            d_conv=self.d_conv,
            dropout=self.dropout,
        )
        return config
