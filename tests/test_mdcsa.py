"""MDCSA: parameter counts against MODELS.md, the maths against a numpy port of the reference,
building blocks, and int8 conversion running in host TFLM."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from helpers import learnable_windows
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.models import build_model
from tinyloc_tf.models.layers import (
    CausalDepthwiseConv1D,
    LayerNorm,
    causal_conv1d,
    elu,
    sinusoidal_table,
)
from tinyloc_tf.models.mdcsa import MDCSAEncoder
from tinyloc_tf.param_counts import mdcsa_param_count

# MODELS.md, MDCSA table: (data, F, K, model, paper params incl. unused, used params).
MDCSA_TABLE = [
    ("House A", 8, 4, "H16L1", 10_588, 8_988),
    ("House A", 8, 4, "H8L1", 2_812, 2_396),
    ("House A", 8, 4, "H256L1", 2_565_148, 2_170_908),
    ("House B", 11, 11, "H16L1", 10_874, 9_274),
    ("House B", 11, 11, "H8L1", 3_018, 2_602),
    ("House C", 11, 9, "H16L1", 10_796, 9_196),
    ("House C", 11, 9, "H8L1", 2_956, 2_540),
    ("House D", 11, 10, "H16L1", 10_834, 9_234),
    ("House D", 11, 10, "H8L1", 2_986, 2_570),
    ("UJIIndoorLoc", 520, 59, "H16L1", 23_290, 21_690),
    ("UJIIndoorLoc", 520, 59, "H8L1", 10_978, 10_562),
    ("UJIIndoorLoc", 520, 59, "H256L3", 9_802_058, 7_439_690),
]


def parse(model: str) -> tuple[int, int]:
    hidden, layers = model[1:].split("L")
    return int(hidden), int(layers)


@pytest.mark.parametrize("data,features,classes,model,paper,used", MDCSA_TABLE)
def test_trainable_parameters_match_models_md(data, features, classes, model, paper, used):
    hidden, layers = parse(model)
    steps = 1 if data == "UJIIndoorLoc" else 20
    tagger = build_model("mdcsa", features=features, classes=classes, hidden=hidden, layers=layers, steps=steps)
    trainable = sum(int(np.prod(w.shape)) for w in tagger.trainable_weights)
    assert trainable == used
    assert not tagger.non_trainable_weights  # the positional table is a constant, not a weight
    assert mdcsa_param_count(features, classes, hidden, layers) == used
    assert mdcsa_param_count(features, classes, hidden, layers, unused=True) == paper


# -- a numpy port of the reference forward pass (inference mode) -----------------------


def np_causal_conv(x, kernel, bias, stride=1):
    """torch Conv1d on [T, C] with kernel_size-1 zeros on the left; kernel [k, C, O]."""
    k = kernel.shape[0]
    padded = np.concatenate([np.zeros((k - 1, x.shape[1])), x])
    return np.stack([sum(padded[t + j] @ kernel[j] for j in range(k)) + bias for t in range(0, len(x), stride)])


def np_layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_attention(q, k, v):
    scores = q @ k.T / math.sqrt(q.shape[-1])
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)) @ v


def np_reference_pe(steps, dim):
    """The reference PositionalEncoder's double loop, verbatim in maths."""
    pe = np.zeros((steps, dim))
    for pos in range(steps):
        for i in range(0, dim, 2):
            pe[pos, i] = math.sin(pos / (10000 ** ((2 * i) / dim)))
            pe[pos, i + 1] = math.cos(pos / (10000 ** ((2 * (i + 1)) / dim)))
    return pe


def np_mdcsa(encoder: MDCSAEncoder, x: np.ndarray) -> np.ndarray:
    """One window [T, F] -> emissions [T, K], from the encoder's weights."""
    w = lambda layer: [np.asarray(v, dtype=np.float64) for v in layer.get_weights()]  # noqa: E731
    steps, hidden = x.shape[0], encoder.hidden
    kernel, bias = w(encoder.embedding)
    h = (x @ kernel + bias) * math.sqrt(hidden) + np_reference_pe(steps, hidden)
    outs = []
    for branch in encoder.branches:
        key = np.tanh(np_causal_conv(h, *w(branch.key_conv)))
        query = np.tanh(np_causal_conv(h, *w(branch.query_conv)))
        a = np_layer_norm(np_attention(query, key, h) + h, *w(branch.norm))
        g1, g2, glu = branch.grn.fc1, branch.grn.fc2, branch.grn.glu
        z = a @ w(g1)[0] + w(g1)[1]
        z = np.where(z > 0, z, np.exp(np.minimum(z, 0)) - 1)  # ELU
        z = z @ w(g2)[0] + w(g2)[1]
        z = z @ w(glu)[0] + w(glu)[1]
        z = z[:, :hidden] / (1 + np.exp(-z[:, hidden:]))
        outs.append(np_layer_norm(z + a, *w(branch.grn.norm)))
    if len(outs) == 3:
        tokens = np.stack(outs, axis=1).reshape(3 * steps, hidden)  # t0k1, t0k4, t0k7, t1k1, ...
        fused = np_attention(tokens, tokens, tokens)
        kernel, bias = w(encoder.fusion_conv)
        folded = np.stack([sum(fused[3 * t + j] @ kernel[j] for j in range(3)) + bias for t in range(steps)])
    else:
        fused = np_attention(outs[0], outs[0], outs[0])
        folded = np_causal_conv(fused, *w(encoder.fusion_conv))
    h = np_layer_norm(folded, *w(encoder.fusion_norm))
    kernel, bias = w(encoder.head)
    return h @ kernel + bias


@pytest.mark.parametrize("layers,steps", [(1, 6), (3, 6), (3, 1), (1, 1)])
def test_encoder_matches_numpy_port_of_reference(layers, steps):
    features, classes, hidden = 5, 3, 4
    tagger = build_model("mdcsa", features=features, classes=classes, hidden=hidden, layers=layers, steps=steps)
    # Random non-default weights so LayerNorm gains, biases and the fold all matter.
    rng = np.random.default_rng(layers * 10 + steps)
    tagger.encoder.set_weights([rng.normal(scale=0.5, size=v.shape).astype("float32") for v in tagger.encoder.weights])
    x = rng.random((2, steps, features)).astype("float32")
    got = np.asarray(tagger(x, training=False))
    for b in range(2):
        np.testing.assert_allclose(got[b], np_mdcsa(tagger.encoder, x[b].astype(np.float64)), rtol=1e-4, atol=1e-4)


# -- building blocks ---------------------------------------------------------------------


def test_positional_table_is_the_reference_formula():
    for dim in (2, 8, 16):
        np.testing.assert_allclose(sinusoidal_table(20, dim), np_reference_pe(20, dim), atol=1e-6)


def test_layer_norm_matches_keras():
    x = np.random.default_rng(0).normal(size=(3, 5, 7)).astype("float32")
    ours, theirs = LayerNorm(), keras.layers.LayerNormalization(epsilon=1e-5)
    ours.build(x.shape)
    theirs.build(x.shape)
    gamma, beta = np.linspace(0.5, 2, 7, dtype="float32"), np.linspace(-1, 1, 7, dtype="float32")
    ours.set_weights([gamma, beta])
    theirs.set_weights([gamma, beta])
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=1e-5)


@pytest.mark.parametrize("depthwise", [False, True])
def test_causal_convolutions_do_not_look_ahead(depthwise):
    conv = causal_conv1d(6, 4, depthwise=depthwise)
    x = np.random.default_rng(1).normal(size=(1, 10, 6)).astype("float32")
    y = np.asarray(conv(x))
    assert y.shape == (1, 10, 6)
    x_changed = x.copy()
    x_changed[:, 6:] += 5.0
    y_changed = np.asarray(conv(x_changed))
    np.testing.assert_allclose(y_changed[:, :6], y[:, :6], atol=1e-6)
    assert not np.allclose(y_changed[:, 6:], y[:, 6:])
    if depthwise:
        assert isinstance(conv, CausalDepthwiseConv1D)
        clone = CausalDepthwiseConv1D.from_config(conv.get_config())
        assert clone.kernel_size == (4,)


def test_int8_friendly_elu_error_bound():
    x = np.linspace(-30, 10, 40001).astype("float32")
    exact = np.asarray(elu(x))
    approx = np.asarray(elu(x, int8_friendly=True))
    np.testing.assert_allclose(approx[x >= 0], exact[x >= 0], atol=1e-6)
    assert np.max(np.abs(approx - exact)) <= 0.0173


def test_embedding_trains():
    """The reference never trains its embedding (no_grad); this port must."""
    import tensorflow as tf

    tagger = build_model("mdcsa", features=4, classes=3, hidden=8, layers=1, steps=5)
    kernel = tagger.encoder.embedding.kernel
    assert any(w is kernel for w in tagger.trainable_weights)
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 5, 4)).astype("float32"), rng.integers(0, 3, (8, 5)).astype("int32")
    with tf.GradientTape() as tape:
        loss = tagger.crf.nll(tagger(x, training=True), y)
    gradient = tape.gradient(loss, kernel)
    assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0


def test_encoder_rejects_bad_settings():
    with pytest.raises(TinylocError, match="layers=1 .* or layers=3"):
        MDCSAEncoder(8, 4, 16, 2, 20)
    with pytest.raises(TinylocError, match="hidden >= 1"):
        MDCSAEncoder(8, 4, 0, 1, 20)
    with pytest.raises(TinylocError, match="dropout"):
        MDCSAEncoder(8, 4, 16, 1, 20, dropout=1.0)
    encoder = MDCSAEncoder(8, 4, 16, 1, 20)
    encoder.build((None, 20, 8))
    with pytest.raises(TinylocError, match="at most 20"):
        encoder(np.zeros((1, 21, 8), "float32"))


# -- int8 conversion and host TFLM -------------------------------------------------------


# Ops the int8 MDCSA graphs may contain: all have int8 kernels in TFLM.
INT8_MDCSA_OPS = {
    "ADD", "BATCH_MATMUL", "CONCATENATION", "CONV_2D", "FULLY_CONNECTED", "LOGISTIC", "MEAN",
    "MINIMUM", "MUL", "PAD", "RELU", "RESHAPE", "RSQRT", "SOFTMAX", "SPLIT", "SUB", "TANH",
}


@pytest.mark.slow
@pytest.mark.parametrize("layers", [1, 3])
def test_small_mdcsa_trains_and_runs_int8_in_tflm(layers):
    """Tolerance, relative to the range R of the Keras emissions on held-out windows: TFLM's
    dequantized emissions within 2 % of R on average and 10 % of R at the 99th percentile;
    per-step argmax and Viterbi paths agree with Keras on at least 95 % of the steps."""
    from tinyloc_tf.compression.convert import convert_model, float_ops, op_counts
    from tinyloc_tf.deployment.host import run_tflite
    from tinyloc_tf.decoding import viterbi_decode

    steps, features, classes = 20, 8, 4
    keras.utils.set_random_seed(0)
    tagger = build_model(
        "mdcsa", features=features, classes=classes, hidden=8, layers=layers, steps=steps, int8_friendly=True
    )
    x, y = learnable_windows(96, steps, features, classes, seed=layers)
    tagger.compile(optimizer=keras.optimizers.Adam(1e-2))
    losses = tagger.fit(x[:64], y[:64], batch_size=16, epochs=15, verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0]

    buf = convert_model(tagger, quant="int8", representative=x[:64])
    assert float_ops(buf) == {}, f"float ops left in the int8 graph: {float_ops(buf)}"
    ops = set(op_counts(buf))
    assert ops <= INT8_MDCSA_OPS, f"unexpected ops: {ops - INT8_MDCSA_OPS}"

    test = x[64:]
    expected = np.asarray(tagger.encoder(test, training=False))
    got = run_tflite(buf, test, runtime="tflm")
    spread = float(expected.max() - expected.min())
    error = np.abs(got - expected)
    assert error.mean() <= 0.02 * spread, (error.mean(), spread)
    assert np.percentile(error, 99) <= 0.10 * spread, (np.percentile(error, 99), spread)
    assert np.mean(got.argmax(-1) == expected.argmax(-1)) >= 0.95
    paths = tagger.decode(test)
    assert np.mean(viterbi_decode(got, *tagger.crf.get_weights()) == paths) >= 0.95


@pytest.mark.slow
def test_exact_elu_leaves_only_a_float_elu_island():
    """Without int8_friendly, the only float compute in the int8 graph is the GRN's ELU."""
    from tinyloc_tf.compression.convert import convert_model, float_ops, op_counts

    tagger = build_model("mdcsa", features=8, classes=4, hidden=8, layers=1, steps=20)
    x, _ = learnable_windows(16, 20, 8, 4, seed=0)
    buf = convert_model(tagger, quant="int8", representative=x)
    assert float_ops(buf) == {"ELU": 1}
    assert {"DEQUANTIZE", "QUANTIZE"} <= set(op_counts(buf))
