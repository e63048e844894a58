"""MLP family: parameter counts, serialisation, per-step independence, bad settings, and int8
conversion running in host TFLM."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import learnable_windows
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.families import get_family
from tinyloc_tf.models import build_model
from tinyloc_tf.models.mlp import MLPEncoder
from tinyloc_tf.param_counts import mlp_param_count


@pytest.mark.parametrize("features,classes,hidden,layers,expected", [
    # 520*48+48 + 48*59+59 + 59*59+2*59: the 32 KiB UJIIndoorLoc width.
    (520, 59, 48, 1, 25_008 + 2_891 + 3_599),
    # two hidden layers add H*H+H.
    (520, 59, 64, 2, 33_344 + 4_160 + 3_835 + 3_599),
    (11, 10, 16, 1, 192 + 170 + 120),
])
def test_trainable_parameters(features, classes, hidden, layers, expected):
    assert mlp_param_count(features, classes, hidden, layers) == expected
    assert get_family("mlp").count_params(features, classes, hidden, layers) == expected
    model = build_model("mlp", features=features, classes=classes, hidden=hidden, layers=layers, steps=1)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected


def test_each_step_is_mapped_on_its_own_and_the_config_round_trips():
    keras.utils.set_random_seed(0)
    encoder = MLPEncoder(6, 3, 8, 2, steps=5, dropout=0.2, name="encoder")
    x = np.random.default_rng(0).random((2, 5, 6)).astype("float32")
    out = np.asarray(encoder(x, training=False))
    assert out.shape == (2, 5, 3)
    # Changing step 4 moves only step 4's emissions.
    moved = x.copy()
    moved[:, 4] += 1.0
    again = np.asarray(encoder(moved, training=False))
    np.testing.assert_allclose(again[:, :4], out[:, :4], rtol=1e-6)
    assert not np.allclose(again[:, 4], out[:, 4])
    # Dropout is training only.
    np.testing.assert_allclose(np.asarray(encoder(x, training=False)), out, rtol=1e-6)
    clone = MLPEncoder.from_config(encoder.get_config())
    clone.build((None, 5, 6))
    clone.set_weights(encoder.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, training=False)), out, rtol=1e-6)
    assert clone.get_config()["dropout"] == 0.2 and clone.get_config()["layers"] == 2


def test_encoder_rejects_bad_settings():
    with pytest.raises(TinylocError, match="hidden >= 1"):
        MLPEncoder(8, 4, 0, 1, 20)
    with pytest.raises(TinylocError, match="layers >= 1"):
        MLPEncoder(8, 4, 16, 0, 20)
    with pytest.raises(TinylocError, match="dropout"):
        MLPEncoder(8, 4, 16, 1, 20, dropout=1.0)


@pytest.mark.slow
def test_small_mlp_trains_and_runs_int8_in_tflm():
    """The int8 graph is FULLY_CONNECTED only (ReLU fused) and tracks Keras in host TFLM."""
    from tinyloc_tf.compression.convert import convert_model, float_ops, op_counts
    from tinyloc_tf.deployment.host import run_tflite

    steps, features, classes = 20, 8, 4
    keras.utils.set_random_seed(0)
    tagger = build_model("mlp", features=features, classes=classes, hidden=16, layers=2, steps=steps)
    x, y = learnable_windows(96, steps, features, classes, seed=0)
    tagger.compile(optimizer=keras.optimizers.Adam(1e-2))
    losses = tagger.fit(x[:64], y[:64], batch_size=16, epochs=15, verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0]

    buf = convert_model(tagger, quant="int8", representative=x[:64])
    assert float_ops(buf) == {}
    assert set(op_counts(buf)) == {"FULLY_CONNECTED"}
    test = x[64:]
    expected = np.asarray(tagger.encoder(test, training=False))
    got = run_tflite(buf, test, runtime="tflm")
    spread = float(expected.max() - expected.min())
    assert np.abs(got - expected).mean() <= 0.02 * spread
    assert np.mean(got.argmax(-1) == expected.argmax(-1)) >= 0.95


def test_a_saved_mlp_run_loads(tmp_path):
    from tinyloc_tf.training.artifacts import load_run

    tagger = build_model("mlp", features=6, classes=3, hidden=8, layers=1, steps=4)
    run = tmp_path / "run"
    run.mkdir()
    tagger.save(run / "model.keras")
    loaded, _ = load_run(run)
    x = np.random.default_rng(1).random((2, 4, 6)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded.encoder(x)), np.asarray(tagger.encoder(x)), rtol=1e-6)
    assert loaded.build_config["family"] == "mlp"
