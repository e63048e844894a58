"""The linear shortcut (``--shortcut``): its parameters, serialisation, the recipe switch that
carries it through training and sweeps, its int8 conversion, and the streaming refusal."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from helpers import write_toy_dataset
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.families import family_names
from tinyloc_tf.training.recipe import Recipe, add_recipe_arguments, recipe_from_args
from tinyloc_tf.workflows import plan

SIZES = dict(features=9, classes=5, hidden=4, layers=1, steps=6)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy")


@pytest.mark.parametrize("family", family_names())
def test_shortcut_adds_f_times_k_plus_k_parameters_and_the_plan_counts_them(family):
    from tinyloc_tf.models import build_model

    plain = build_model(family, **SIZES, int8_friendly=True)
    wide = build_model(family, **SIZES, int8_friendly=True, shortcut=True)
    extra = SIZES["features"] * SIZES["classes"] + SIZES["classes"]
    assert wide.count_params() - plain.count_params() == extra
    counted = plan.param_count(family, SIZES["features"], SIZES["classes"], SIZES["hidden"], SIZES["layers"],
                               shortcut=True)
    assert counted - plan.param_count(family, SIZES["features"], SIZES["classes"], SIZES["hidden"],
                                      SIZES["layers"]) == extra
    assert wide.build_config["shortcut"] is True and "shortcut" not in plain.build_config
    # the emissions are the encoder's plus the input's linear map
    x = np.random.default_rng(0).random((3, SIZES["steps"], SIZES["features"]), dtype=np.float32)
    inner = wide.encoder.encoder(x, training=False)
    linear = x @ wide.encoder.shortcut.kernel.numpy() + wide.encoder.shortcut.bias.numpy()
    np.testing.assert_allclose(wide.emissions(x), np.asarray(inner) + linear, rtol=1e-5, atol=1e-5)
    assert wide.encoder.head is wide.encoder.encoder.head


def test_shortcut_model_saves_and_loads(tmp_path):
    import keras

    from tinyloc_tf.models import build_model

    model = build_model("mdcsa", **SIZES, int8_friendly=True, shortcut=True)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(1).random((2, SIZES["steps"], SIZES["features"]), dtype=np.float32)
    np.testing.assert_array_equal(model.emissions(x), loaded.emissions(x))
    assert loaded.build_config == model.build_config


def test_recipe_switch_parses_names_itself_only_when_on_and_is_off_for_old_runs():
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    on = recipe_from_args(parser.parse_args(["--shortcut"]))
    off = recipe_from_args(parser.parse_args([]))
    assert on.shortcut and not off.shortcut
    assert on.family_options() == {"shortcut": True} and off.family_options() == {}
    assert on.changed_flags() == ["--shortcut"] and off.changed_flags() == []
    assert Recipe(dropout=0.3, shortcut=True).family_options() == {"dropout": 0.3, "shortcut": True}
    written_before = {k: v for k, v in Recipe().to_dict().items() if k != "shortcut"}
    assert Recipe.from_dict(written_before).shortcut is False
    assert Recipe.from_dict(on.to_dict()) == on


def test_max_params_counts_the_shortcut():
    specs = plan.plan_baseline_runs(["mdcsa"], "small", features=100, classes=20, max_params=None)
    limit = max(plan.param_count("mdcsa", 100, 20, s.hidden, s.layers) for s in specs)
    assert len(plan.plan_baseline_runs(["mdcsa"], "small", 100, 20, limit)) == len(specs)
    kept = plan.plan_baseline_runs(["mdcsa"], "small", 100, 20, limit, shortcut=True)
    assert len(kept) < len(specs)
    assert all(plan.param_count("mdcsa", 100, 20, s.hidden, s.layers, shortcut=True) <= limit for s in kept)


def test_cli_trains_converts_evaluates_and_refits_a_shortcut_run(toy, tmp_path, capsys):
    from tinyloc_tf.cli import main
    from tinyloc_tf.compression.convert import convert, op_table
    from tinyloc_tf.deployment.host import tflm_blocker
    from tinyloc_tf.models import build_model
    from tinyloc_tf.training.trainer import load_data

    run = tmp_path / "wide"
    fit = ["--epochs", "2", "--batch-size", "16", "--lr", "0.02", "--patience", "2", "--int8-friendly", "--quiet"]
    assert main(["train", "--data", str(toy), "--model", "mdcsa", "--hidden", "4", "--layers", "1",
                 "--shortcut", "--out", str(run), *fit]) == 0
    capsys.readouterr()
    config = json.loads((run / "config.json").read_text())
    assert config["build_config"]["shortcut"] is True and config["training"]["recipe"]["shortcut"] is True
    out = tmp_path / "wide.tflite"
    assert main(["convert", str(run), "--quant", "int8", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["float_ops"] == {} and tflm_blocker(out.read_bytes()) is None
    # one FULLY_CONNECTED more than the same architecture without the shortcut
    sizes = {k: config["build_config"][k] for k in ("features", "classes", "hidden", "layers", "steps")}
    plain = convert(build_model("mdcsa", **sizes, int8_friendly=True), "int8",
                    representative=load_data(toy).train.X)
    (tmp_path / "plain.tflite").write_bytes(plain.tflite)
    fully_connected = [sum(op["op"] == "FULLY_CONNECTED" for op in op_table(path))
                       for path in (tmp_path / "plain.tflite", out)]
    assert fully_connected[1] == fully_connected[0] + 1
    assert main(["evaluate", str(out), "--data", str(toy), "--split", "val"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["macro_f1"] <= 1.0
    assert main(["refit", str(run), "--out", str(tmp_path / "refit"), "--quiet"]) == 0
    refit = json.loads((tmp_path / "refit" / "config.json").read_text())
    assert refit["build_config"]["shortcut"] is True


def test_streaming_refuses_a_shortcut_model():
    from tinyloc_tf.models import build_model
    from tinyloc_tf.models.mamba_step import build_step_model

    model = build_model("mamba", **SIZES, int8_friendly=True, shortcut=True)
    with pytest.raises(TinylocError, match="linear shortcut"):
        build_step_model(model)
