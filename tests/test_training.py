"""Training loop, run folders, metrics: small data written with ``helpers.write_toy_dataset``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import write_toy_dataset
from tinyloc_tf.errors import DataError, TinylocError
from tinyloc_tf.training import metrics

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy")


TIMING = {"fit_seconds", "seconds_per_epoch", "wall_time_s"}


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    from tinyloc_tf.training.trainer import train_run

    out = tmp_path_factory.mktemp("runs") / "mdcsa"
    result = train_run(toy, "mdcsa", 4, 1, out, epochs=4, batch_size=16, lr=0.02, patience=4, seed=3, verbose=0)
    return out, result


# --------------------------------------------------------------------------- metrics


def test_macro_f1_counts_classes_present_in_truth_or_prediction():
    y_true = np.array([[0, 0, 1, 1]])
    y_pred = np.array([[0, 1, 1, 1]])
    # class 0: P=1, R=.5 -> 2/3; class 1: P=2/3, R=1 -> 0.8; class 2 absent: not averaged
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx((2 / 3 + 0.8) / 2)
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(0.75)
    per_class = metrics.per_class_f1(y_true, y_pred, ["a", "b", "c"])
    assert per_class["a"] == pytest.approx(2 / 3) and per_class["b"] == pytest.approx(0.8)
    assert per_class["c"] is None
    assert metrics.confusion(y_true, y_pred, 3) == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]


def test_windows_and_scans_score_the_same_way():
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(4, size=(10, 6)), rng.integers(4, size=(10, 6))
    as_windows = metrics.score_paths(y_true, y_pred, list("abcd"))
    as_scans = metrics.score_paths(y_true.reshape(-1, 1), y_pred.reshape(-1, 1), list("abcd"))
    assert as_windows == as_scans
    assert as_windows["steps"] == 60
    assert np.sum(as_windows["confusion_matrix"]) == 60


def test_metrics_reject_mismatched_or_empty_labels():
    with pytest.raises(TinylocError, match="differ in size"):
        metrics.macro_f1(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(TinylocError, match="empty"):
        metrics.accuracy(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(TinylocError, match="outside"):
        metrics.score_paths(np.array([0, 3]), np.array([0, 1]), ["a", "b"])


# --------------------------------------------------------------------------- train_run


def test_train_writes_every_file_with_the_contract_fields(trained, toy):
    out, result = trained
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.csv", "metrics.json", "model.keras"]
    assert not list(out.parent.glob(".*partial*")), "staging folder left behind"

    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(result))
    for key in ("params", "val_macro_f1", "val_accuracy", "test_macro_f1", "test_accuracy", "epochs_run",
                "best_epoch", "wall_time_s", "seed", "data_sha256", "source_sha256"):
        assert key in saved, key
    assert saved["params"] > 0 and saved["seed"] == 3 and saved["epochs_run"] == 4
    for split in ("val", "test"):
        assert set(saved[split]["per_class_f1"]) == {"room0", "room1", "room2"}
        assert np.array(saved[split]["confusion_matrix"]).shape == (3, 3)
        assert np.sum(saved[split]["confusion_matrix"]) == 32 * 5  # every step of every window
    from tinyloc_tf.data import load_prepared

    assert saved["data_sha256"] == load_prepared(toy).fingerprint()

    history = pd.read_csv(out / "history.csv")
    assert list(history.columns[:2]) == ["epoch", "loss"]
    assert {"val_macro_f1", "val_accuracy", "val_nll"} <= set(history.columns)
    assert len(history) == saved["epochs_run"]
    # the saved model is the best epoch's: re-scored validation equals that epoch's logged value
    best = history.loc[saved["best_epoch"] - 1, "val_macro_f1"]
    assert saved["val_macro_f1"] == pytest.approx(best)
    assert best == history["val_macro_f1"].max()

    config = json.loads((out / "config.json").read_text())
    assert config["build_config"]["family"] == "mdcsa" and config["build_config"]["hidden"] == 4
    assert config["training"]["epochs"] == 4 and config["training"]["seed"] == 3
    assert config["data_fingerprint"] == saved["data_sha256"]


def test_saved_model_reloads_and_decodes_like_the_scores(trained, toy):
    import keras

    import tinyloc_tf.models  # noqa: F401
    from tinyloc_tf.data import load_prepared

    out, result = trained
    model = keras.models.load_model(out / "model.keras", compile=False)
    data = load_prepared(toy)
    assert metrics.macro_f1(data.test.y, model.decode(data.test.X)) == pytest.approx(result["test_macro_f1"])


def test_same_seed_same_metrics(trained, toy, tmp_path):
    from tinyloc_tf.training.trainer import train_run

    first = trained[1]
    again = train_run(toy, "mdcsa", 4, 1, tmp_path / "again", epochs=4, batch_size=16, lr=0.02, patience=4,
                      seed=3, verbose=0)
    strip = lambda m: {k: v for k, v in m.items() if k not in TIMING}  # noqa: E731
    assert strip(again) == strip(first)
    h1 = pd.read_csv(trained[0] / "history.csv")
    h2 = pd.read_csv(tmp_path / "again" / "history.csv")
    pd.testing.assert_frame_equal(h1, h2)


def test_early_stopping_restores_the_best_epoch(toy, monkeypatch):
    """Scripted validation scores: best at epoch 2, then two worse epochs -> stop at 4."""
    import keras

    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.models import build_model
    from tinyloc_tf.training.trainer import fit_with_validation, seed_everything

    scripted = iter([0.2, 0.5, 0.3, 0.1, 0.9, 0.9])
    monkeypatch.setattr(metrics, "macro_f1", lambda y_true, y_pred: next(scripted))
    data = load_prepared(toy)
    seed_everything(0)
    model = build_model("mamba", features=6, classes=3, hidden=4, layers=1, steps=5)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    weights_after = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: weights_after.append(model.get_weights()))
    history, best_epoch, epochs_run, _ = fit_with_validation(
        model, model, data.train.X, data.train.y, (data.val.X, data.val.y),
        epochs=6, batch_size=32, patience=2, verbose=0, callbacks=(record,),
    )
    assert (best_epoch, epochs_run) == (2, 4)
    assert list(history["val_macro_f1"]) == [0.2, 0.5, 0.3, 0.1]
    assert not np.allclose(weights_after[1][0], weights_after[3][0]), "training did not move the weights"
    for restored, best in zip(model.get_weights(), weights_after[1]):
        np.testing.assert_array_equal(restored, best)


def test_with_ema_the_weight_average_is_validated_and_kept(toy, monkeypatch):
    """``--ema``: validation scores the moving average, not the last step's weights, and
    early stopping restores the average of the best epoch."""
    import keras

    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.models import build_model
    from tinyloc_tf.training.recipe import Recipe
    from tinyloc_tf.training.trainer import fit_with_validation, seed_everything

    scripted = iter([0.2, 0.5, 0.3, 0.1, 0.9, 0.9])
    monkeypatch.setattr(metrics, "macro_f1", lambda y_true, y_pred: next(scripted))
    data = load_prepared(toy)
    seed_everything(0)
    model = build_model("mamba", features=6, classes=3, hidden=4, layers=1, steps=5)
    model.compile(optimizer=Recipe(ema=0.9, schedule="constant").optimizer(0.05, 6, 4))
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == 0.9
    raw, validated = [], []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: raw.append(model.get_weights()),
        on_epoch_end=lambda epoch, logs: validated.append(model.get_weights()),
    )
    _, best_epoch, epochs_run, _ = fit_with_validation(
        model, model, data.train.X, data.train.y, (data.val.X, data.val.y),
        epochs=6, batch_size=32, patience=2, verbose=0, callbacks=(record,),
    )
    assert (best_epoch, epochs_run) == (2, 4)
    steps = len(raw) // epochs_run
    assert not np.allclose(validated[1][0], raw[2 * steps - 1][0]), "validation saw the raw weights"
    for kept, best in zip(model.get_weights(), validated[1]):
        np.testing.assert_array_equal(kept, best)


def test_recipe_ema_is_checked_and_off_for_older_runs():
    from tinyloc_tf.training.recipe import Recipe

    with pytest.raises(TinylocError, match="--ema"):
        Recipe(ema=1.0)
    assert Recipe.from_dict({"schedule": "cosine"}).ema == 0.0  # a run written before --ema
    assert Recipe.from_dict(Recipe(ema=0.998).to_dict()).ema == 0.998
    assert Recipe.from_dict({"schedule": "cosine"}).train_steps == 0  # a run written before --train-steps
    # In a sweep --train-steps reaches the recurrent families' runs only.
    recipe = Recipe(train_steps=60, ema=0.99)
    assert recipe.for_family("mamba") == recipe
    assert recipe.for_family("mdcsa") == Recipe(train_steps=0, ema=0.99)
    recipe.check_family("mdcsa", "mamba")  # a sweep needs one recurrent family
    with pytest.raises(TinylocError, match="mdcsa cannot train on longer windows than it is built for"):
        recipe.check_family("mdcsa")
    Recipe(train_steps=0).check_family("mdcsa")
    with pytest.raises(TinylocError, match="--train-steps"):
        Recipe(train_steps=-1)
    assert not getattr(Recipe(ema=0.0).optimizer(1e-3, 2, 2), "use_ema", False)


def test_constant_validation_score_stops_after_patience(toy, tmp_path):
    from tinyloc_tf.training.trainer import train_run

    # a vanishing learning rate keeps the validation path unchanged: no epoch beats the first
    result = train_run(toy, "mamba", 2, 1, tmp_path / "flat", epochs=10, batch_size=32, lr=1e-12, patience=1,
                       verbose=0)
    assert (result["best_epoch"], result["epochs_run"]) == (1, 2)


def test_cli_train_on_single_scan_data(tmp_path, capsys):
    """UJIIndoorLoc-shaped data (T = 1) goes through the same code; the CLI prints the headline."""
    import warnings

    from tinyloc_tf.cli import main

    data = write_toy_dataset(tmp_path / "scans", steps=1, features=10, classes=4, sizes=(64, 24, 24))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["train", "--data", str(data), "--model", "mamba", "--hidden", "4", "--layers", "1",
                     "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "16", "--quiet"])
    assert code == 0
    # with one scan per window the transitions and the decay have no gradient, by design
    assert not [str(w.message) for w in caught if "Gradients do not exist" in str(w.message)]
    printed = json.loads(capsys.readouterr().out)
    assert printed["family"] == "mamba" and printed["epochs_run"] == 2
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert np.sum(saved["test"]["confusion_matrix"]) == 24
    assert printed["test_macro_f1"] == saved["test_macro_f1"]


# --------------------------------------------------------------------------- bad input


def test_missing_data_dir_is_a_data_error(tmp_path):
    from tinyloc_tf.training.trainer import train_run

    with pytest.raises(DataError, match="meta.json"):
        train_run(tmp_path / "nowhere", "mdcsa", 4, 1, tmp_path / "run", epochs=1, verbose=0)
    assert not (tmp_path / "run").exists()


def test_bad_arguments_are_named(toy, tmp_path):
    from tinyloc_tf.training.trainer import train_run

    with pytest.raises(TinylocError, match="unknown model family 'lstm'"):
        train_run(toy, "lstm", 4, 1, tmp_path / "run", verbose=0)
    with pytest.raises(TinylocError, match="--hidden must be at least 1"):
        train_run(toy, "mamba", 0, 1, tmp_path / "run", verbose=0)
    with pytest.raises(TinylocError, match="--lr"):
        train_run(toy, "mamba", 4, 1, tmp_path / "run", lr=-1.0, verbose=0)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "model.keras").write_text("an earlier run")  # an empty folder would be fine
    with pytest.raises(TinylocError, match="already exists"):
        train_run(toy, "mamba", 4, 1, tmp_path / "taken", verbose=0)


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    from tinyloc_tf.cli import main

    code = main(["train", "--data", str(tmp_path), "--model", "lstm", "--hidden", "4", "--layers", "1",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    assert "unknown model family 'lstm'" in capsys.readouterr().err


# --------------------------------------------------------------------------- refit


def test_refit_trains_on_train_and_val_for_the_best_epoch_count(trained, toy, tmp_path):
    from tinyloc_tf.training.trainer import refit_run

    run, metrics = trained
    out = tmp_path / "refit"
    refit = refit_run(run, out, verbose=0)
    assert refit["epochs_run"] == metrics["best_epoch"] and refit["val_in_sample"] is True
    assert refit["refit"]["of"] == run.name and refit["refit"]["fit_splits"] == ["train", "val"]
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "refit" and config["build_config"] == json.loads((run / "config.json").read_text())["build_config"]
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == metrics["best_epoch"] + 1  # header + one row per epoch, no validation columns
    assert "val_macro_f1" not in history[0]


def test_cli_refit_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    from tinyloc_tf.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["refit", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not a finished run folder" in err and "Traceback" not in err
