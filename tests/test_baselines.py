"""Classical baselines: selection on validation, test once, footprints by their definitions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import write_toy_dataset
from tinyloc_tf.data import Split, load_prepared, write_prepared
from tinyloc_tf.errors import DataError, TinylocError
from tinyloc_tf.training import baselines


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory):
    """Toy windows whose training split holds every window twice (as overlapping windows
    repeat steps), so duplicate removal has something to remove."""
    base = load_prepared(write_toy_dataset(tmp_path_factory.mktemp("base") / "toy", sizes=(60, 30, 30)))
    train = Split(np.concatenate([base.train.X] * 2), np.concatenate([base.train.y] * 2))
    meta = {key: value for key, value in base.meta.items() if key != "counts"}
    return write_prepared(tmp_path_factory.mktemp("data") / "twice", {"train": train, "val": base.val,
                                                                      "test": base.test}, meta)


@pytest.fixture(scope="module")
def results(overlapping, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "baselines"
    return out, baselines.run_baselines(overlapping, out, verbose=0)


def test_every_baseline_is_scored_and_written(results, overlapping):
    out, found = results
    assert [r["name"] for r in found] == list(baselines.BASELINES)
    assert json.loads((out / "baselines.json").read_text()) == json.loads(json.dumps(found))
    with open(out / "baselines.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["name"] for row in rows] == list(baselines.BASELINES)
    for row, result in zip(rows, found):
        assert float(row["refit_test_macro_f1"]) == pytest.approx(result["refit"]["test_macro_f1"])
        assert int(row["refit_footprint_bytes"]) == result["refit"]["footprint_bytes"]
    data = load_prepared(overlapping)
    for result in found:
        assert 0.0 <= result["test_macro_f1"] <= 1.0 and 0.0 <= result["test_accuracy"] <= 1.0
        # validation and test keep every step of every window, like the neural models
        assert result["val"]["steps"] == data.val.y.size and result["test"]["steps"] == data.test.y.size
        assert result["data_sha256"] == data.fingerprint()
        assert result["train_rows"] == 120 * 5 and result["duplicate_rows_removed"] == 60 * 5
        assert len(result["grid"]) == len(baselines.GRIDS[result["name"]])
        # the chosen point is the grid's best on validation (first one on ties)
        scores = [trial["val_macro_f1"] for trial in result["grid"]]
        assert result["params"] == result["grid"][int(np.argmax(scores))]["params"]
        assert result["val_macro_f1"] == pytest.approx(max(scores))
        assert 0 < result["footprint_bytes"] < result["footprint_bytes_float32"]
    # the toy rooms are separable per step: every baseline beats chance (1/3) clearly
    assert min(r["test_accuracy"] for r in found) > 0.6


def test_logistic_regression_is_fitted_to_its_optimum(results):
    """The logistic regression's problem is convex: its fit must be the optimum, not where a
    loose tolerance stopped (which moves with the BLAS thread count), and say it converged."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20))
    y = (X[:, :3] + rng.normal(scale=2.0, size=(300, 3))).argmax(axis=1)  # overlapping classes
    ours = baselines.make_estimator("logistic_regression", {"C": 100.0}, 0, 1).fit(X, y)
    optimum = LogisticRegression(C=100.0, tol=1e-12, max_iter=100_000).fit(X, y)
    loose = LogisticRegression(C=100.0, max_iter=100_000).fit(X, y)  # scikit-learn's default tol
    scale = np.abs(optimum.coef_).max()
    assert np.abs(ours.coef_ - optimum.coef_).max() < 1e-4 * scale
    assert np.abs(loose.coef_ - optimum.coef_).max() > 1e-4 * scale  # the check can fail
    _, found = results
    logistic = next(r for r in found if r["name"] == "logistic_regression")
    assert all(trial["converged"] and trial["iterations"] > 0 for trial in logistic["grid"])
    assert logistic["refit"]["converged"]
    assert "iterations" not in next(r for r in found if r["name"] == "knn")["grid"][0]


def test_footprints_follow_their_definitions(results):
    _, found = results
    by_name = {r["name"]: r for r in found}
    knn = by_name["knn"]
    assert knn["stored_rows"] == 300  # the unique training steps
    assert knn["footprint_bytes"] == 300 * 6 + 300
    assert knn["footprint_bytes_float32"] == 300 * 6 * 4 + 300
    forest = by_name["random_forest"]
    assert forest["footprint_bytes"] == forest["nodes"] * (1 + 1 + 2)
    assert forest["footprint_bytes_float32"] == forest["nodes"] * (1 + 4 + 2)
    logistic = by_name["logistic_regression"]
    assert logistic["footprint_bytes"] == 3 * 6 + 3 * 8
    assert logistic["footprint_bytes_float32"] == (3 * 6 + 3) * 4


def test_footprint_sizes_for_wide_inputs_and_many_classes():
    assert baselines.knn_footprint(10, 520, 300)["footprint_bytes"] == 10 * 520 + 10 * 2
    assert baselines.logistic_footprint(520, 2)["weights"] == 521  # binary: one weight row

    class Tree:
        def __init__(self, count):
            self.tree_ = type("t", (), {"node_count": count})()

    forest = type("f", (), {"estimators_": [Tree(70000), Tree(5)]})()
    assert baselines.forest_footprint(forest, 520)["footprint_bytes"] == 70005 * (2 + 1 + 4)


def test_per_step_and_unique_rows():
    X = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    y = np.array([[0, 1, 2], [0, 1, 2]])
    flat_X, flat_y = baselines.per_step(X, y)
    assert flat_X.shape == (6, 4) and list(flat_y) == [0, 1, 2, 0, 1, 2]
    np.testing.assert_array_equal(flat_X[4], X[1, 1])
    Xd = np.array([[1, 2], [3, 4], [1, 2], [1, 2]], dtype=np.float32)
    yd = np.array([0, 1, 0, 1])
    kept_X, kept_y = baselines.unique_rows(Xd, yd)
    # same features with another label is a different sample; first-seen order kept
    np.testing.assert_array_equal(kept_X, [[1, 2], [3, 4], [1, 2]])
    assert list(kept_y) == [0, 1, 1]


def test_bad_input(overlapping, tmp_path):
    with pytest.raises(TinylocError, match="unknown baseline 'svm'"):
        baselines.run_baselines(overlapping, tmp_path / "b", models=("svm",), verbose=0)
    with pytest.raises(DataError, match="meta.json"):
        baselines.run_baselines(tmp_path / "nowhere", tmp_path / "b", verbose=0)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "baselines.json").write_text("[]")  # an empty folder would be fine
    with pytest.raises(TinylocError, match="already exists"):
        baselines.run_baselines(overlapping, tmp_path / "taken", verbose=0)


def test_cli_baselines_subset(overlapping, tmp_path, capsys):
    from tinyloc_tf.cli import main

    assert main(["baselines", "--data", str(overlapping), "--out", str(tmp_path / "b"), "--models", "knn",
                 "--quiet"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in table] == ["knn"] and table[0]["footprint_bytes"] > 0


def test_baselines_table_reads_the_summary(results, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import baselines_table

    out, found = results
    lines = baselines_table.table_lines([out / "baselines.csv"])
    assert len(lines) == 2 + len(found)
    logistic = next(r for r in found if r["name"] == "logistic_regression")
    row = next(line for line in lines if "| logistic_regression |" in line)
    assert f"{100 * logistic['refit']['test_macro_f1']:.2f} / {100 * logistic['refit']['test_accuracy']:.2f}" in row
    (tmp_path / "empty.csv").write_text("name\n")
    with pytest.raises(SystemExit, match="empty.csv"):
        baselines_table.table_lines([tmp_path / "empty.csv"])
