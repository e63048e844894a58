"""Knowledge distillation: every method trains a student; teacher targets are computed once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import write_toy_dataset
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.training import distill


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy")


@pytest.fixture(scope="module")
def teacher_run(toy, tmp_path_factory):
    from tinyloc_tf.training.trainer import train_run

    out = tmp_path_factory.mktemp("runs") / "teacher"
    train_run(toy, "mdcsa", 8, 1, out, epochs=3, batch_size=16, lr=0.02, patience=3, verbose=0)
    return out


@pytest.fixture(scope="module")
def second_teacher_run(toy, tmp_path_factory):
    """The teacher's configuration with another seed: with ``teacher_run``, an ensemble of two."""
    from tinyloc_tf.training.trainer import train_run

    out = tmp_path_factory.mktemp("runs") / "teacher-seed1"
    train_run(toy, "mdcsa", 8, 1, out, epochs=3, batch_size=16, lr=0.02, patience=3, seed=1, verbose=0)
    return out


@pytest.fixture(scope="module")
def teacher(teacher_run):
    return distill.load_teacher(teacher_run)[0]


@pytest.mark.parametrize("method", distill.METHODS)
def test_each_method_trains_a_student_and_predicts_the_teacher_once(method, toy, teacher_run, tmp_path, monkeypatch):
    calls = []
    original = distill.compute_teacher_targets

    def counted(*args, **kwargs):
        calls.append(args[1].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(distill, "compute_teacher_targets", counted)
    out = tmp_path / "student"
    result = distill.distill_run(teacher_run, toy, "mamba", 2, 1, out, method=method, epochs=3,
                                 batch_size=16, lr=0.02, patience=3, verbose=0)
    assert calls == [(96, 5, 6)], "teacher targets must be computed once, on the training windows"

    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.csv", "metrics.json", "model.keras"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["distill"]["method"] == method and saved["distill"]["alpha"] == 0.1
    assert saved["distill"]["teacher_params"] > saved["params"]
    assert saved["family"] == "mamba" and saved["epochs_run"] == 3
    history = pd.read_csv(out / "history.csv")
    expected = {"loss", "nll", "kd", "val_macro_f1"} | ({"feature"} if method == "features" else set())
    assert expected <= set(history.columns)
    assert ("feature" in history.columns) == (method == "features")
    # the loss logged is the documented mix of its parts
    feature = history["feature"] if method == "features" else 0.0
    mix = 0.1 * history["nll"] + 0.9 * history["kd"] + feature
    np.testing.assert_allclose(history["loss"], mix, rtol=1e-4)
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "distill" and config["distill"]["method"] == method


def test_student_saves_as_a_plain_tagger(toy, teacher_run, tmp_path):
    """The feature tap and projection are training-only: the saved student is the normal model."""
    import keras

    import tinyloc_tf.models  # noqa: F401
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.models import build_model
    from tinyloc_tf.training.metrics import macro_f1

    out = tmp_path / "student"
    result = distill.distill_run(teacher_run, toy, "mdcsa", 4, 1, out, method="features", epochs=2,
                                 batch_size=16, verbose=0)
    student = keras.models.load_model(out / "model.keras", compile=False)
    assert "call" not in student.encoder.head.__dict__
    fresh = build_model("mdcsa", features=6, classes=3, hidden=4, layers=1, steps=5)
    assert [w.shape for w in student.weights] == [w.shape for w in fresh.weights]
    data = load_prepared(toy)
    assert macro_f1(data.test.y, student.decode(data.test.X)) == pytest.approx(result["test_macro_f1"])


def test_distillation_with_ema_keeps_the_validated_average(toy, teacher_run, tmp_path):
    """``--ema`` through the distillation wrapper (whose optimiser also holds the feature
    projection): the student written is the one its best validation epoch scored."""
    from tinyloc_tf.training.recipe import Recipe

    out = tmp_path / "student"
    result = distill.distill_run(teacher_run, toy, "mamba", 2, 1, out, method="features", epochs=3,
                                 batch_size=16, lr=0.02, patience=3, verbose=0, recipe=Recipe(ema=0.9))
    history = pd.read_csv(out / "history.csv")
    assert result["val_macro_f1"] == pytest.approx(history["val_macro_f1"][result["best_epoch"] - 1])
    assert json.loads((out / "config.json").read_text())["training"]["recipe"]["ema"] == 0.9


def test_teacher_targets(teacher, toy):
    from tinyloc_tf.data import load_prepared

    X = load_prepared(toy).train.X[:40]
    paths = teacher.decode(X)
    hard = distill.compute_teacher_targets(teacher, X, "viterbi", batch_size=16)["soft"]
    np.testing.assert_array_equal(hard.argmax(-1), paths)
    assert set(np.unique(hard)) == {0.0, 1.0}

    soft = distill.compute_teacher_targets(teacher, X, "marginals", batch_size=16)["soft"]
    assert soft.shape == (40, 5, 3)
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-5)
    assert (soft > 0).all() and (soft < 1).all()

    features = distill.compute_teacher_targets(teacher, X, "features", batch_size=16)
    assert features["hidden"].shape == (40, 5, 8)  # the teacher's H
    np.testing.assert_allclose(features["hidden"].mean(axis=(0, 1)), 0.0, atol=1e-4)
    assert "call" not in teacher.encoder.head.__dict__, "tap must be removed after use"


def test_marginals_match_brute_force(teacher):
    """Posterior marginals from forward-backward equal the enumeration over all K**T paths."""
    import itertools

    rng = np.random.default_rng(0)
    emissions = rng.normal(size=(2, 3, 3)).astype(np.float32)
    transitions, start, end = teacher.crf.get_weights()
    expected = np.zeros_like(emissions)
    for b in range(2):
        weights = {}
        for path in itertools.product(range(3), repeat=3):
            score = start[path[0]] + end[path[-1]] + sum(emissions[b, t, k] for t, k in enumerate(path))
            score += sum(transitions[i, j] for i, j in zip(path, path[1:]))
            weights[path] = np.exp(score)
        total = sum(weights.values())
        for path, w in weights.items():
            for t, k in enumerate(path):
                expected[b, t, k] += w / total
    np.testing.assert_allclose(np.asarray(teacher.crf.marginals(emissions)), expected, atol=1e-5)


def test_distiller_does_not_carry_the_teacher(teacher):
    from tinyloc_tf.models import build_model

    student = build_model("mamba", features=6, classes=3, hidden=2, layers=1, steps=5)
    distiller = distill._distiller_class()(student, teacher_width=8)
    distiller.build((None, 5, 6))
    try:
        ids = {id(w) for w in distiller.trainable_weights}
        assert {id(w) for w in student.trainable_weights} <= ids
        assert not ids & {id(w) for w in teacher.weights}
        assert len(distiller.trainable_weights) == len(student.trainable_weights) + 1  # the projection
    finally:
        distiller.close()


# --------------------------------------------------------------------------- ensemble teacher


@pytest.mark.parametrize("method", ["viterbi", "marginals"])
def test_ensemble_targets_are_the_mean_of_each_teachers(method, toy, teacher_run, second_teacher_run):
    from tinyloc_tf.training.trainer import load_data

    data = load_data(toy)
    alone = [distill.compute_teacher_targets(distill.load_teacher(run)[0], data.train.X, method)["soft"]
             for run in (teacher_run, second_teacher_run)]
    assert not np.allclose(alone[0], alone[1]), "two seeds should disagree somewhere, or the test proves nothing"
    targets, described = distill.ensemble_targets([teacher_run, second_teacher_run], data, method)
    np.testing.assert_allclose(targets["soft"], (alone[0] + alone[1]) / 2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(targets["soft"].sum(axis=-1), 1.0, rtol=1e-5)
    if method == "viterbi":  # the share of teachers voting for each room: 0, 1/2 or 1
        assert set(np.unique(targets["soft"])) <= {0.0, 0.5, 1.0} and (targets["soft"] == 0.5).any()
    assert [Path(d["run"]).name for d in described] == ["teacher", "teacher-seed1"]


def test_distil_from_an_ensemble_records_every_teacher(toy, teacher_run, second_teacher_run, tmp_path, capsys):
    from tinyloc_tf.cli import main
    from tinyloc_tf.reports.card import distilled_from

    out = tmp_path / "student"
    code = main(["distill", "--teacher", str(teacher_run), str(second_teacher_run), "--data", str(toy),
                 "--student-model", "mamba", "--hidden", "2", "--layers", "1", "--out", str(out),
                 "--method", "marginals", "--epochs", "1", "--quiet"])
    assert code == 0
    saved = json.loads((out / "metrics.json").read_text())["distill"]
    assert [Path(r).name for r in saved["teacher_run"]] == ["teacher", "teacher-seed1"]
    assert len(saved["teacher_params"]) == 2 and len(saved["teacher_val_macro_f1"]) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["distill"] == saved
    assert distilled_from(saved) == "teacher + teacher-seed1"
    assert distilled_from({"teacher_run": str(teacher_run)}) == "teacher"


def test_ensemble_refusals(toy, teacher_run, second_teacher_run, tmp_path):
    with pytest.raises(TinylocError, match="'features' takes one teacher, got 2"):
        distill.distill_run([teacher_run, second_teacher_run], toy, "mamba", 2, 1, tmp_path / "s",
                            method="features", verbose=0)
    with pytest.raises(TinylocError, match="teacher run given twice"):
        distill.distill_run([teacher_run, teacher_run], toy, "mamba", 2, 1, tmp_path / "s", verbose=0)
    assert not (tmp_path / "s").exists()


def test_refit_refuses_a_distilled_run(toy, teacher_run, tmp_path):
    from tinyloc_tf.training.trainer import refit_run

    student = tmp_path / "student"
    distill.distill_run(teacher_run, toy, "mamba", 2, 1, student, epochs=1, batch_size=16, verbose=0)
    with pytest.raises(TinylocError, match="a distilled run; refit retrains plain runs only"):
        refit_run(student, tmp_path / "refit", verbose=0)
    assert not (tmp_path / "refit").exists()


# --------------------------------------------------------------------------- bad input


def test_teacher_run_without_model_is_named(toy, tmp_path):
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(TinylocError, match="has no model.keras"):
        distill.distill_run(tmp_path / "empty_run", toy, "mamba", 2, 1, tmp_path / "s", verbose=0)
    with pytest.raises(TinylocError, match="not found"):
        distill.distill_run(tmp_path / "missing", toy, "mamba", 2, 1, tmp_path / "s", verbose=0)


def test_bad_method_and_alpha(toy, teacher_run, tmp_path):
    with pytest.raises(TinylocError, match="unknown distillation method 'logits'"):
        distill.distill_run(teacher_run, toy, "mamba", 2, 1, tmp_path / "s", method="logits", verbose=0)
    with pytest.raises(TinylocError, match="--alpha"):
        distill.distill_run(teacher_run, toy, "mamba", 2, 1, tmp_path / "s", alpha=1.5, verbose=0)
    with pytest.raises(TinylocError, match="unknown model family"):
        distill.distill_run(teacher_run, toy, "gru", 2, 1, tmp_path / "s", verbose=0)


def test_teacher_trained_on_other_data_is_refused(teacher_run, tmp_path):
    other = write_toy_dataset(tmp_path / "other", seed=7)
    with pytest.raises(TinylocError, match="trained on other data"):
        distill.distill_run(teacher_run, other, "mamba", 2, 1, tmp_path / "s", verbose=0)
    wider = write_toy_dataset(tmp_path / "wider", features=9)
    with pytest.raises(TinylocError, match="features=6"):
        distill.distill_run(teacher_run, wider, "mamba", 2, 1, tmp_path / "s", verbose=0)


def test_cli_distill(toy, teacher_run, tmp_path, capsys):
    from tinyloc_tf.cli import main

    code = main(["distill", "--teacher", str(teacher_run), "--data", str(toy), "--student-model", "mamba",
                 "--hidden", "2", "--layers", "1", "--out", str(tmp_path / "s"), "--method", "marginals",
                 "--epochs", "1", "--quiet"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["method"] == "marginals"
    shutil.rmtree(tmp_path / "s")
    code = main(["distill", "--teacher", str(tmp_path), "--data", str(toy), "--student-model", "mamba",
                 "--hidden", "2", "--layers", "1", "--out", str(tmp_path / "s")])
    assert code == 2 and "model.keras" in capsys.readouterr().err
