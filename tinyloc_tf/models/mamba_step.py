"""Streaming Mamba: one RSSI sample per call, the recurrent state carried between calls.

::

    step = build_step_model(tagger)             # a trained window tagger (its weights, shared)
    state = zero_state(step)                    # list of arrays, one per state input
    emission, state = run_step(step, x_t, state)          # x_t float [F] -> emission [K]
    emissions = run_stream(step, X)                        # X float [n, F] -> [n, K]

The window model (:class:`~tinyloc_tf.models.mamba.MambaEncoder`) unrolls the scan over
``T`` samples and starts every window from a zero state. The step model runs the same
layers on one sample ``x_t``:

    inputs   sample [1, 1, 1, F], then per block l: conv_state_l [1, 1, d_conv-1, D], ssm_state_l [1, 1, D, N]
    outputs  emissions [1, 1, 1, K], then per block l: the new conv_state_l, ssm_state_l

Every tensor is 4-D, ``[1, 1, width, channels]``: the layout DEPTHWISE_CONV_2D computes in.
FULLY_CONNECTED keeps those dimensions, element-wise operators broadcast over them and
BATCH_MATMUL treats the leading two as batch axes, so no RESHAPE sits between 2-D and 4-D.
``conv_state`` holds the last ``d_conv - 1`` inputs of the causal depthwise convolution
(what its left zero padding stands for in the window model), ``ssm_state`` is ``h_{t-1}`` in
the window scan's ``[D, N]`` layout.
From a zero state, ``T`` steps reproduce the window model's ``T`` emissions (tested), and
keep going for as long as samples come. The layers are the trained encoder's own objects,
so the weights are exactly the window model's.

Per block and sample the graph is: in_proj, CONCATENATION of the conv buffer with x_t and a
VALID DEPTHWISE_CONV_2D over it (the new buffer is a SLICE of the same concatenation),
SiLU, x_proj, dt_proj and the step function, the decay (:func:`~tinyloc_tf.models.mamba.decay`,
int8-friendly or exact) as ``[D, N]``, ``h = dA * h + (dt x)^T B`` (the outer product as one
BATCH_MATMUL with ``adj_x``), the readout ``C h + D x`` as one BATCH_MATMUL with ``adj_y`` (TFLM
keeps a transposed copy of a right-hand side it has to transpose: 512 bytes of arena for H16),
the gate and out_proj. One RESHAPE per block: ``dt`` from a row into a column. (With the state
as ``[N, D]`` the row ``dt`` would broadcast over ``A^T`` without it, but the readout ``C h``
would then read ``h`` without ``adj_y``, and TFLM keeps a transposed copy of such a right-hand
side: 1 KiB for H16 in int16x8, which took the house H16L1's TFLM arena to 8,816 B on the M55.)

``norm`` says how each block's RMSNorm is written (:data:`NORM_FORMS`): ``layer``, the trained
layer itself (MUL, MEAN, ADD, RSQRT, MUL); ``l2``, an L2 normalization (:func:`l2_rms_norm`),
which TFLite's converter fuses into one L2_NORMALIZATION operator, quantized to int8 only (the
int8 step model); ``no_epsilon``, the layer without its epsilon (:func:`rms_norm_without_epsilon`,
four operators: the int16x8 step model). The two short forms differ from the layer by the
factor ``sqrt(1 + eps / mean(x^2))`` only.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tinyloc_tf.errors import TinylocError
from tinyloc_tf.models.mamba import MambaEncoder, decay, positive_step
from tinyloc_tf.models.shortcut import LinearShortcut


def matmul_transposed(a, b):
    """``a @ b^T`` over the last two axes, as one BATCH_MATMUL with ``adj_y`` (no TRANSPOSE)."""
    import tensorflow as tf

    return tf.linalg.matmul(a, b, transpose_b=True)


def outer(a, b):
    """``a^T b`` over the last two axes, ``[.., 1, D]`` and ``[.., 1, N]`` -> ``[.., D, N]``: one
    BATCH_MATMUL with ``adj_x``, where ``reshape(a, column) * b`` takes a RESHAPE and a MUL."""
    import tensorflow as tf

    return tf.linalg.matmul(a, b, transpose_a=True)


def mixer_step(mixer, u, conv_state, ssm_state):
    """One sample through a :class:`~tinyloc_tf.models.mamba.MambaMixer` (a batch of 1).

    Args:
        mixer: the trained mixer (its layers and weights are used as they are).
        u: ``[1, 1, 1, H]`` the block's normalised input at this sample.
        conv_state: ``[1, 1, d_conv - 1, D]`` the conv's previous inputs, oldest first.
        ssm_state: ``[1, 1, D, N]`` ``h_{t-1}``.

    Returns:
        ``(out [1, 1, 1, H], conv_state [1, 1, d_conv - 1, D], ssm_state [1, 1, D, N])``.
    """
    xz = mixer.in_proj(u)  # [1, 1, 1, 2D]
    x, z = ops.split(xz, 2, axis=-1)  # 2 x [1, 1, 1, D]
    window = ops.concatenate([conv_state, x], axis=2)  # [1, 1, d_conv, D]
    # The window model's conv pads on the left; here the buffer is the padding.
    kernel = ops.expand_dims(mixer.conv.kernel, 0)  # [1, d_conv, D, 1]
    x = ops.silu(ops.depthwise_conv(window, kernel, padding="valid") + mixer.conv.bias)  # [1, 1, 1, D]
    # SLICE (begin, size): two constant inputs where window[:, :, 1:] makes a STRIDED_SLICE with
    # three and an options table.
    new_conv_state = ops.slice(window, (0, 0, 1, 0), (1, 1, mixer.d_conv - 1, window.shape[-1]))

    x_dbl = mixer.x_proj(x)  # [1, 1, 1, r + 2N]
    dt_in, B, C = ops.split(x_dbl, [mixer.dt_rank, mixer.dt_rank + mixer.d_state], axis=-1)
    dt = positive_step(mixer.dt_proj(dt_in), mixer.int8_friendly)  # [1, 1, 1, D]
    column = (1, 1, -1, 1)
    A = -ops.exp(mixer.A_log)  # [D, N], folded to a constant by the converter
    dA = decay(ops.reshape(dt, column), A, mixer.int8_friendly)  # [1, 1, D, N]
    h = dA * ssm_state + outer(dt * x, B)  # [1, 1, D, N]
    y = matmul_transposed(C, h) + x * mixer.D  # [1, 1, 1, D]: sum_n C_n h_n + D x
    y = y * ops.silu(z)
    return mixer.out_proj(y), new_conv_state, h


def rms_norm_without_epsilon(norm, x):
    """:class:`~tinyloc_tf.models.mamba.RMSNorm` ``norm`` applied to ``x [..., H]`` without its epsilon:
    ``x * rsqrt(mean(x^2)) * g``, four operators (MUL, MEAN, RSQRT, MUL) where the layer's form
    has an ADD more, and two tensors fewer. Like :func:`l2_rms_norm`, it differs from the layer
    by the factor ``sqrt(1 + eps / mean(x^2))``. For the int16x8 graph: a mean square that
    quantizes to 0 gets RSQRT's largest output (TFLM's integer RSQRT maps 0 there), so the norm's
    output is 0 for a block input that is 0; in float that input would give NaN."""
    return x * ops.rsqrt(ops.mean(x * x, axis=-1, keepdims=True)) * norm.scale


def l2_rms_norm(norm, x):
    """:class:`~tinyloc_tf.models.mamba.RMSNorm` ``norm`` applied to ``x [..., H]`` as an L2 normalization.

    ``x * rsqrt(mean(x^2) + eps) * g = l2_normalize(x) * sqrt(H) * g`` up to the epsilon: the
    two differ by a factor ``sqrt(1 + eps / mean(x^2))``, 1 to within 1e-4 for
    ``mean(x^2) >= 0.05`` (eps = 1e-5). ``tf.math.l2_normalize`` is the pattern TFLite's converter
    fuses into one L2_NORMALIZATION operator (int8 in TFLM), and the constant ``sqrt(H) * g``
    folds into the next FULLY_CONNECTED's weights.
    """
    import tensorflow as tf

    return tf.math.l2_normalize(x, axis=-1) * (math.sqrt(x.shape[-1]) * norm.scale)


#: How a step model writes each block's RMSNorm (module docstring).
NORM_FORMS = ("layer", "l2", "no_epsilon")


def _check_norm(norm: str) -> str:
    if norm not in NORM_FORMS:
        raise TinylocError(f"unknown step-model norm {norm!r}; expected one of {', '.join(NORM_FORMS)}")
    return norm


@keras.saving.register_keras_serializable(package="tinyloc")
class MambaStepEncoder(keras.layers.Layer):
    """A trained :class:`MambaEncoder` run one sample at a time.

    ``call(sample [1, 1, 1, F], conv_states, ssm_states)`` with ``conv_states`` a list of
    ``[1, 1, d_conv - 1, D]`` and ``ssm_states`` a list of ``[1, 1, D, N]`` (one per block) returns
    ``(emissions [1, 1, 1, K], new conv_states, new ssm_states)``. One stream: a batch of 1.
    ``norm``: how the blocks' RMSNorms are written (:data:`NORM_FORMS`).
    """

    def __init__(self, encoder, norm: str = "layer", **kwargs):
        super().__init__(**kwargs)
        self.norm = _check_norm(norm)
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        if not isinstance(encoder, MambaEncoder):
            raise TinylocError(f"a step model needs a Mamba encoder, got {type(encoder).__name__}")
        self.encoder = encoder

    @property
    def state_shapes(self) -> list[tuple[int, ...]]:
        """Shapes (without batch) of the state tensors, in input order: conv, ssm per block."""
        e = self.encoder
        inner = e.expand * e.hidden
        return [shape for _ in range(e.num_layers) for shape in ((1, e.d_conv - 1, inner), (1, inner, e.d_state))]

    def call(self, sample, conv_states, ssm_states):
        e = self.encoder
        if sample.shape[0] not in (None, 1):
            raise TinylocError(f"a step model runs one stream (a batch of 1), got a batch of {sample.shape[0]}")
        x = e.embed(sample)  # [1, 1, 1, H]
        new_conv, new_ssm = [], []
        for block, conv_state, ssm_state in zip(e.blocks, conv_states, ssm_states):
            if self.norm == "l2":
                u = l2_rms_norm(block.norm, x)
            elif self.norm == "no_epsilon":
                u = rms_norm_without_epsilon(block.norm, x)
            else:
                u = block.norm(x)
            out, conv_state, ssm_state = mixer_step(block.mixer, u, conv_state, ssm_state)
            x = x + out
            new_conv.append(conv_state)
            new_ssm.append(ssm_state)
        return e.head(x), new_conv, new_ssm

    def get_config(self):
        return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder),
                "norm": self.norm}


def step_encoder(model, norm: str = "layer") -> MambaStepEncoder:
    """The step encoder of a trained Mamba ``SequenceTagger`` (or a bare ``MambaEncoder``)."""
    encoder = getattr(model, "encoder", model)
    if isinstance(encoder, LinearShortcut):
        raise TinylocError("streaming: this model has a linear shortcut (--shortcut), which the step model "
                           "does not build; convert it as a window model")
    if not isinstance(encoder, MambaEncoder):
        family = (getattr(model, "build_config", None) or {}).get("family", type(encoder).__name__)
        raise TinylocError(
            f"streaming needs a Mamba model (a recurrence); this one is {family!r}, which attends over "
            "the whole window and stays a window model"
        )
    return MambaStepEncoder(encoder, norm=norm, name="step_encoder")


def build_step_model(model, norm: str = "layer") -> keras.Model:
    """A Keras model ``[sample, *states] -> [emissions, *new states]`` with a batch of 1.

    Inputs: ``sample [1, 1, 1, F]``, then per block ``conv_state [1, 1, d_conv-1, D]``,
    ``ssm_state [1, 1, D, N]``. Outputs: ``emissions [1, 1, 1, K]``, then the new states in the same
    order. ``model`` is a trained Mamba ``SequenceTagger``; its layers are shared, not copied.
    ``norm``: how each RMSNorm is written (:data:`NORM_FORMS`; ``layer``, the trained layer's own).
    """
    step = step_encoder(model, norm=norm)
    e = step.encoder
    sample = keras.Input((1, 1, e.features), batch_size=1, name="sample")
    shapes = step.state_shapes
    states = [keras.Input(shape, batch_size=1, name=f"{'conv' if i % 2 == 0 else 'ssm'}_state_{i // 2}")
              for i, shape in enumerate(shapes)]
    emissions, conv, ssm = step(sample, states[0::2], states[1::2])
    outputs = [emissions]
    for c, s in zip(conv, ssm):
        outputs += [c, s]
    return keras.Model([sample, *states], outputs, name="tinyloc_step")


def zero_state(step_model) -> list[np.ndarray]:
    """The state before the first sample: zeros, one float32 array per state input."""
    return [np.zeros(tuple(t.shape), dtype=np.float32) for t in step_model.inputs[1:]]


def _compiled(step_model):
    compiled = getattr(step_model, "_tinyloc_step_fn", None)
    if compiled is None:
        import tensorflow as tf

        compiled = tf.function(lambda inputs: step_model(inputs, training=False), reduce_retracing=True)
        step_model._tinyloc_step_fn = compiled
    return compiled


def run_step(step_model, sample, state) -> tuple[np.ndarray, list[np.ndarray]]:
    """One sample: ``sample`` float ``[F]`` and ``state`` -> ``(emission [K], new state)``."""
    sample = np.asarray(sample, dtype=np.float32).reshape(1, 1, 1, -1)
    outputs = _compiled(step_model)([sample, *state])
    outputs = [np.asarray(o) for o in outputs]
    return outputs[0].reshape(-1), outputs[1:]


def run_stream(step_model, X, state=None, return_states: bool = False, reset_every: int | None = None):
    """Float emissions of a whole stream: ``X`` float ``[n, F]`` -> ``[n, K]`` (zero start state).

    ``reset_every``: the state goes back to zero before samples ``N, 2N, ...`` (as the int8
    ``StreamRunner`` and the firmware do with ``--reset-every``).

    With ``return_states`` also returns the inputs each step saw: a list (per state input) of
    ``[n, *shape]`` arrays, the state *before* each sample (for int8 calibration).
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != step_model.inputs[0].shape[-1]:
        raise TinylocError(f"a stream must be [n, {step_model.inputs[0].shape[-1]}] samples, got shape {X.shape}")
    state = zero_state(step_model) if state is None else state
    emissions = np.empty((len(X), step_model.outputs[0].shape[-1]), dtype=np.float32)
    seen = [[] for _ in state] if return_states else None
    for t, sample in enumerate(X):
        if reset_every and t and t % reset_every == 0:
            state = zero_state(step_model)
        if seen is not None:
            for store, value in zip(seen, state):
                store.append(value[0])
        emissions[t], state = run_step(step_model, sample, state)
    if return_states:
        return emissions, [np.stack(s) if s else np.zeros((0, *v.shape[1:]), np.float32) for s, v in zip(seen, state)]
    return emissions
