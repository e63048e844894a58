"""A new model family and a new quantisation variant are one file plus one registry line.

The toy family (a per-step MLP) and the toy variant (int8 calibrated on the first windows
only) live in this file; registering them is all it takes for ``train``, ``convert``,
``evaluate`` and ``sweep`` to accept them.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from helpers import write_toy_dataset
from tinyloc_tf.cli import main
from tinyloc_tf.compression.variants import Variant, register_variant, sweep_variant_names, unregister_variant, variant_names
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.families import Family, family_names, get_family, register_family, unregister_family

# --------------------------------------------------------------------------- the toy family


@keras.saving.register_keras_serializable(package="tinyloc_test")
class ToyEncoder(keras.layers.Layer):
    """``[B, T, F] -> [B, T, K]``: one ReLU layer per step, then the emission ``head``."""

    def __init__(self, features, classes, hidden, layers, steps, int8_friendly=False, dropout=None, **kwargs):
        super().__init__(**kwargs)
        self.features, self.classes, self.hidden, self.layers_, self.steps = features, classes, hidden, layers, steps
        self.int8_friendly = int8_friendly
        self.body = keras.layers.Dense(hidden, activation="relu", name="body")
        self.head = keras.layers.Dense(classes, name="head")

    def build(self, input_shape):
        self.body.build(input_shape)
        self.head.build((*input_shape[:-1], self.hidden))

    def call(self, x, training=None):
        return self.head(self.body(x))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.classes)

    def get_config(self):
        return {**super().get_config(), "features": self.features, "classes": self.classes, "hidden": self.hidden,
                "layers": self.layers_, "steps": self.steps, "int8_friendly": self.int8_friendly}


def toy_param_count(features, classes, hidden, layers):
    return (features + 1) * hidden + (hidden + 1) * classes + classes * classes + 2 * classes  # + the CRF


def convert_toy(graph, windows, options):
    """int8, calibrated on the first eight windows only."""
    from tinyloc_tf.compression.convert import convert_int8

    raw, report = convert_int8(graph, windows[:8], options)
    return raw, {**report, "toy_calibration_windows": 8}


@pytest.fixture
def toy_registries():
    register_family(Family("toy", encoder=f"{__name__}:ToyEncoder", param_count=f"{__name__}:toy_param_count",
                           grids={"tiny": [(4, 1)]}, marker="D"))
    register_variant(Variant("toy", "int8 from eight calibration windows", f"{__name__}:convert_toy",
                             calibrated=True, int8_io=True, runs_in_tflm=True))
    yield
    unregister_family("toy")
    unregister_variant("toy")


def test_registering_adds_to_every_list(toy_registries):
    assert "toy" in family_names() and "toy" in variant_names() and "toy" in sweep_variant_names()
    assert get_family("toy").count_params(6, 3, 4, 1) == 7 * 4 + 5 * 3 + 9 + 6
    with pytest.raises(TinylocError, match="unknown model family 'gru'; choose one of .*toy"):
        get_family("gru")


def test_a_family_must_name_its_emission_head():
    @keras.saving.register_keras_serializable(package="tinyloc_test")
    class Headless(ToyEncoder):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.head = None

    globals()["Headless"] = Headless
    register_family(Family("headless", encoder=f"{__name__}:Headless", param_count=f"{__name__}:toy_param_count"))
    try:
        from tinyloc_tf.models import build_model

        with pytest.raises(TinylocError, match="layer named `head`"):
            build_model("headless", features=4, classes=2, hidden=3, layers=1, steps=2)
    finally:
        unregister_family("headless")


@pytest.mark.slow
def test_toy_family_and_variant_through_train_convert_evaluate_and_sweep(toy_registries, tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "data")
    run, tflite = tmp_path / "run", tmp_path / "toy.tflite"
    assert main(["train", "--data", str(data), "--model", "toy", "--hidden", "4", "--layers", "1",
                 "--epochs", "2", "--batch-size", "16", "--out", str(run), "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["family"] == "toy"
    assert metrics["params"] == get_family("toy").count_params(6, 3, 4, 1)
    capsys.readouterr()

    assert main(["convert", str(run), "--quant", "toy", "--out", str(tflite)]) == 0
    converted = json.loads(capsys.readouterr().out)
    assert converted["toy_calibration_windows"] == 8 and converted["tflm_deployable"]
    assert not converted["float_ops"]

    assert main(["evaluate", str(tflite), "--data", str(data), "--run", str(run), "--quiet"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["runtime"] == "tflm" and 0.0 <= evaluated["macro_f1"] <= 1.0
    assert evaluated["agreement"] > 0.5

    sweep = tmp_path / "sweep"
    assert main(["sweep", "--data", str(data), "--out", str(sweep), "--family", "toy", "--grid", "tiny",
                 "--epochs", "2", "--batch-size", "16", "--quant", "toy", "--representative-size", "32",
                 "--no-distill", "--no-baselines"]) == 0
    record = json.loads((sweep / "runs" / "toy-H4L1" / "variants" / "toy.json").read_text())
    assert record["deployable"] and record["conversion"]["toy_calibration_windows"] == 8
    # a conversion option given to the sweep reaches the converter and is recorded for resuming
    settings = json.loads((sweep / "sweep.json").read_text())
    assert settings["convert_options"]["representative_size"] == 32
    assert record["conversion"]["representative"]["windows"] == 32
    np.testing.assert_array_equal(
        np.asarray(record["test"]["confusion_matrix"]).sum(), np.asarray(record["test"]["steps"])
    )
