"""SequenceTagger and build_model: the shared model interface."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tinyloc_tf.models  # noqa: F401  (registers the custom layers for load_model)
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.decoding import viterbi_decode
from tinyloc_tf.models import CRF, SequenceTagger, build_model

SMALL = dict(features=6, classes=4, hidden=8, steps=10)


def windows(n=12, steps=10, features=6, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, steps, features)).astype("float32"), rng.integers(0, classes, (n, steps)).astype("int32")


@pytest.mark.parametrize("family,layers", [("mdcsa", 1), ("mdcsa", 3), ("mamba", 1)])
def test_interface_shapes_and_build_config(family, layers):
    model = build_model(family, layers=layers, **SMALL)
    assert isinstance(model, SequenceTagger) and isinstance(model, keras.Model)
    assert isinstance(model.crf, CRF)
    x, _ = windows()
    emissions = model(x)
    assert tuple(emissions.shape) == (12, 10, 4) and emissions.dtype == "float32"
    np.testing.assert_allclose(np.asarray(model.encoder(x)), np.asarray(emissions))
    assert [tuple(w.shape) for w in model.crf.weights] == [(4, 4), (4,), (4,)]
    assert model.build_config == {"family": family, **SMALL, "layers": layers, "int8_friendly": False}
    paths = model.decode(x)
    assert paths.shape == (12, 10) and paths.dtype == np.int32


def test_decode_is_the_viterbi_path_of_the_emissions():
    model = build_model("mdcsa", layers=1, **SMALL)
    x, _ = windows(n=40)
    emissions = np.asarray(model(x, training=False))
    expected = viterbi_decode(emissions, *model.crf.get_weights())
    np.testing.assert_array_equal(model.decode(x, batch_size=7), expected)
    np.testing.assert_array_equal(np.asarray(model.crf.viterbi(emissions)), expected)
    assert model.decode(x[:0]).shape == (0, 10)
    with pytest.raises(TinylocError, match="windows"):
        model.decode(x[0])


def test_inference_of_many_models_and_split_sizes_never_retraces(caplog):
    """A sweep decodes splits of every size with model after model, epoch after epoch: no
    graph is traced per model, so TensorFlow has no retracing to warn about."""
    import logging

    caplog.set_level(logging.WARNING, logger="tensorflow")
    for seed in range(6):
        model = build_model("mamba", layers=1, **SMALL)
        for n in (198, 300):  # a validation and a test split, as the compress stage decodes them
            x, _ = windows(n=n, seed=seed)
            np.testing.assert_allclose(model.emissions(x, batch_size=256), np.asarray(model(x, training=False)),
                                       atol=1e-5)
            model.decode(x)
    assert not [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()]
    assert model.emissions(np.zeros((0, 10, 6), np.float32)).shape == (0, 10, 4)


def test_compile_and_fit_use_the_crf_nll():
    keras.utils.set_random_seed(1)
    model = build_model("mdcsa", layers=1, **SMALL)
    x, y = windows(n=32)
    before = float(model.crf.nll(model(x, training=False), y))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, y, batch_size=8, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    evaluated = model.evaluate(x, y, batch_size=32, verbose=0)
    assert np.isclose(evaluated, float(model.crf.nll(model(x, training=False), y)), rtol=1e-4)
    assert evaluated < before


def test_a_compiled_loss_replaces_the_crf_nll():
    model = build_model("mdcsa", layers=1, **SMALL)
    x, y = windows()
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = model.evaluate(x, y, verbose=0)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, model(x, training=False))
    assert np.isclose(loss, float(expected), rtol=1e-4)


@pytest.mark.parametrize(
    "family,layers,int8_friendly,train_after_load",
    [("mdcsa", 3, False, False), ("mdcsa", 1, True, True), ("mamba", 2, True, False)],
)
def test_save_and_load_round_trip(tmp_path, family, layers, int8_friendly, train_after_load):
    model = build_model(family, layers=layers, int8_friendly=int8_friendly, **SMALL)
    rng = np.random.default_rng(3)
    # Weights away from their initial values, so a rebuilt-but-unloaded model would differ.
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.weights])
    x, y = windows()
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SequenceTagger)
    assert loaded.build_config == model.build_config
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False)))
    np.testing.assert_array_equal(loaded.decode(x), model.decode(x))
    for ours, theirs in zip(model.crf.get_weights(), loaded.crf.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    if train_after_load:  # the loaded model trains with the CRF loss after compiling
        loaded.compile(optimizer="adam")
        assert np.isfinite(loaded.fit(x, y, epochs=1, verbose=0).history["loss"][0])


def test_family_options_reach_the_encoder():
    model = build_model("mdcsa", layers=1, dropout=0.0, head_dropout=0.0, **SMALL)
    assert model.build_config["dropout"] == 0.0
    x, _ = windows()
    # No dropout: training mode is deterministic and equals inference.
    np.testing.assert_allclose(np.asarray(model(x, training=True)), np.asarray(model(x, training=False)), atol=1e-6)


@pytest.mark.parametrize(
    "family,kwargs,message",
    [
        ("lstm", {}, "unknown model family 'lstm'"),
        ("mdcsa", {"hidden": 0}, "hidden must be a positive integer, got 0"),
        ("mdcsa", {"classes": -3}, "classes must be a positive integer"),
        ("mdcsa", {"steps": 2.5}, "steps must be a positive integer"),
        ("mdcsa", {"features": True}, "features must be a positive integer"),
        ("mdcsa", {"layers": 2}, "layers=1 .* or layers=3"),
        ("mdcsa", {"colour": "red"}, "bad option"),
    ],
)
def test_build_model_rejects_bad_arguments(family, kwargs, message):
    args = {**SMALL, "layers": 1, **kwargs}
    with pytest.raises(TinylocError, match=message):
        build_model(family, **args)


def test_mamba_parameter_count_through_build_model():
    # MODELS.md, Mamba table, House A H8L1: 1,432 (including the CRF).
    model = build_model("mamba", features=8, classes=4, hidden=8, layers=1, steps=20)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 1_432
