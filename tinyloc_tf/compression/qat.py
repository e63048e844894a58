"""Quantization-aware fine-tuning (QAT) of a trained tagger before int8 conversion.

Keras 3 has no QAT mode (``model.quantize`` offers int8 / int4 / float8 / GPTQ / AWQ weight
quantization for Keras inference, not fake-quant training), and tensorflow-model-optimization
only handles Keras 2 models. So this is a short, explicit loop built on
``keras.quantizers.fake_quant_with_min_max_vars`` (``tf.quantization.fake_quant_*``):

- **Weights**: every Dense / Conv1D / DepthwiseConv1D kernel is trained through the int8 grid
  TFLite will use (per output channel, symmetric, ``[-127, 127]``, scale = max|w| / 127).
  During each step the kernels are swapped for their fake-quantized values, the loss and
  gradients are computed there, the float "shadow" kernels are restored and the optimizer
  updates them: the straight-through estimator, for any such layer without wrapping it.
- **Input and emissions**: fake-quantized to the ranges the converter will calibrate (the
  representative windows' min/max; the emissions' min/max over those windows, refreshed each
  epoch), since those two tensors are the model's int8 interface.
- Internal activations are not fake-quantized; their ranges come from calibration as in
  plain post-training int8. This is the honest limit of the approach.

The loss is the CRF negative log-likelihood on the fake-quantized emissions. Validation
macro-F1 (Viterbi, with fake-quantized weights) is measured before fine-tuning and after
every epoch; the best epoch wins, so QAT never returns a worse model than it started from
(on validation). The returned model's kernels lie exactly on the int8 grid.
"""

from __future__ import annotations

import numpy as np

from tinyloc_tf.errors import TinylocError
from tinyloc_tf.lifetime import raise_if_interrupted

DEFAULTS = dict(epochs=3, batch_size=64, lr=1e-4)


def _quantizable_kernels(model):
    """``[(variable, depthwise)]`` for every Dense / Conv1D / DepthwiseConv1D kernel."""
    import keras

    kernels = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D)):
            kernels.append((layer.kernel, False))
        elif isinstance(layer, keras.layers.DepthwiseConv1D):
            kernels.append((layer.kernel, True))
    return kernels


def fake_quant_kernel(kernel, depthwise: bool = False):
    """Kernel values on TFLite's per-channel symmetric int8 grid (any backend tensor).

    Channels are the last axis (Dense ``[in, out]``, Conv1D ``[k, in, out]``); a depthwise
    kernel ``[k, C, m]`` has ``C * m`` channels, as TFLite's DEPTHWISE_CONV_2D.
    """
    import keras
    from keras import ops

    shape = ops.shape(kernel)
    flat = ops.reshape(kernel, (shape[0], -1)) if depthwise else ops.reshape(kernel, (-1, shape[-1]))
    bound = ops.maximum(ops.max(ops.abs(flat), axis=0), 1e-8)
    # narrow_range over [-m, m] gives 254 steps of m/127 with zero exactly representable.
    quantized = keras.quantizers.fake_quant_with_min_max_vars(flat, -bound, bound, num_bits=8, narrow_range=True, axis=-1)
    return ops.reshape(quantized, shape)


def activation_range(lo: float, hi: float) -> tuple[float, float]:
    """A calibrated ``[min, max]`` widened as TFLite does: it always contains 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    return lo, max(hi, lo + 1e-8)


def fake_quant_tensor(x, lo, hi):
    """Per-tensor asymmetric int8 fake quantization of an activation over ``[lo, hi]``."""
    import keras

    return keras.quantizers.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8, narrow_range=False)


def _clone(model):
    from tinyloc_tf.models import build_model

    config = getattr(model, "build_config", None)
    if not isinstance(config, dict) or "family" not in config:
        raise TinylocError("QAT needs a SequenceTagger made by build_model (it has no build_config)")
    config = dict(config)
    copy = build_model(config.pop("family"), **config)
    copy.set_weights(model.get_weights())
    return copy


def fine_tune(
    model,
    X,
    y,
    *,
    validation=None,
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    seed: int = 0,
    calibration_size: int = 256,
    progress: bool = True,
    fake_quant: bool = True,
):
    """Quantization-aware fine-tuning of a copy of ``model`` (the input is left untouched).

    Args:
        model: a ``SequenceTagger``.
        X, y: training windows float ``[N, T, F]`` and labels int ``[N, T]``.
        validation: ``(X_val, y_val)`` to pick the best epoch; without it the last epoch wins.
        epochs, batch_size, lr: the fine-tune (Adam).
        calibration_size: windows used to set the emission range (as the converter's
            representative subset).
        fake_quant: ``False`` runs the same fine-tune without any fake quantization: the
            control that tells QAT's gain from that of a few more epochs of training.

    Returns:
        ``(tagger, report)``; ``report`` has ``epochs``, ``lr``, ``best_epoch`` (0 = before
        fine-tuning), ``val_macro_f1_before`` / ``val_macro_f1_after`` and per-epoch ``history``.
    """
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    from tinyloc_tf.compression.calibration import representative_subset
    from tinyloc_tf.decoding import viterbi_decode
    from tinyloc_tf.training.metrics import macro_f1

    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int32)
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise TinylocError(f"QAT needs windows [N, T, F] and labels [N, T]; got {X.shape} and {y.shape}")
    if int(epochs) < 1 or int(batch_size) < 1 or not lr > 0:
        raise TinylocError(f"QAT needs epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")

    keras.utils.set_random_seed(int(seed))
    tagger = _clone(model)
    kernels = _quantizable_kernels(tagger.encoder) if fake_quant else []
    variables = tagger.trainable_variables
    calibration = representative_subset(X, calibration_size, seed)
    input_range = activation_range(calibration.min(), calibration.max())
    optimizer = keras.optimizers.Adam(learning_rate=float(lr))
    optimizer.build(variables)

    def swap_in_quantized():
        shadows = [tf.identity(kernel.value) for kernel, _ in kernels]
        for (kernel, depthwise), shadow in zip(kernels, shadows):
            kernel.assign(fake_quant_kernel(shadow, depthwise))
        return shadows

    def restore(shadows):
        for (kernel, _), shadow in zip(kernels, shadows):
            kernel.assign(shadow)

    def emissions(x, training):
        return tagger.encoder(fake_quant_tensor(x, *input_range) if fake_quant else x, training=training)

    def quantized_output(out, lo, hi):
        return fake_quant_tensor(out, lo, hi) if fake_quant else out

    steps_, features_ = X.shape[1], X.shape[2]
    windows_spec = tf.TensorSpec((None, steps_, features_), tf.float32)
    scalar = tf.TensorSpec((), tf.float32)

    @tf.function(input_signature=[windows_spec, tf.TensorSpec((None, steps_), tf.int32), scalar, scalar],
                 autograph=False)
    def train_step(x, labels, lo, hi):
        shadows = swap_in_quantized()
        with tf.GradientTape() as tape:
            loss = tagger.crf.nll(quantized_output(emissions(x, True), lo, hi), labels)
        grads = tape.gradient(loss, variables)
        restore(shadows)
        # Weights the loss does not reach (the CRF transitions and the attention convs when
        # T = 1) have no gradient; leave them out rather than have Keras warn every step.
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return loss

    @tf.function(input_signature=[windows_spec], autograph=False)
    def grid_emissions(x):
        """Float emissions of the model with its kernels on the int8 grid (inference mode)."""
        shadows = swap_in_quantized()
        out = emissions(x, False)
        restore(shadows)
        return out

    def emission_range():
        # What calibration will see: the emissions of the int8-grid weights on its windows.
        out = grid_emissions(tf.constant(calibration)).numpy()
        return activation_range(out.min(), out.max())

    def val_score(lo, hi):
        if validation is None:
            return None
        X_val, y_val = validation
        X_val = np.asarray(X_val, dtype=np.float32)
        parts = [np.asarray(quantized_output(grid_emissions(tf.constant(X_val[i : i + 256])), lo, hi))
                 for i in range(0, len(X_val), 256)]
        return macro_f1(np.asarray(y_val), viterbi_decode(np.concatenate(parts), *tagger.crf.get_weights()))

    lo, hi = emission_range()
    before = val_score(lo, hi)
    best = (before, 0, [v.numpy().copy() for v in tagger.weights])
    history = []
    rng = np.random.default_rng(int(seed))
    steps = int(np.ceil(len(X) / int(batch_size)))
    for epoch in range(1, int(epochs) + 1):
        order = rng.permutation(len(X))
        bar = tqdm(range(steps), desc=f"QAT epoch {epoch}/{epochs}", unit="batch", leave=False, disable=not progress)
        losses = []
        for step in bar:
            rows = order[step * int(batch_size) : (step + 1) * int(batch_size)]
            losses.append(float(train_step(tf.constant(X[rows]), tf.constant(y[rows]), tf.constant(lo), tf.constant(hi))))
            raise_if_interrupted()
        lo, hi = emission_range()
        score = val_score(lo, hi)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_macro_f1": score,
                        "emission_range": [lo, hi]})
        if validation is None or score > best[0]:
            best = (score, epoch, [v.numpy().copy() for v in tagger.weights])

    for variable, value in zip(tagger.weights, best[2]):
        variable.assign(value)
    for kernel, depthwise in kernels:  # land exactly on the grid the converter will use
        kernel.assign(fake_quant_kernel(kernel.value, depthwise))
    report = {
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "best_epoch": int(best[1]),
        "val_macro_f1_before": before,
        "val_macro_f1_after": best[0],
        "fake_quant": bool(fake_quant),
        "quantized_kernels": len(kernels),
        "history": history,
    }
    return tagger, report


def prepare(model, X, y, *, validation=None, seed: int = 0, options: dict | None = None):
    """The ``qat`` variant's preparation (``variants.py``): fine-tune, then convert as int8."""
    if y is None:
        raise TinylocError("qat conversion needs the training labels [N, T] for its fine-tuning")
    return fine_tune(model, X, y, validation=validation, seed=seed, **(options or {}))
