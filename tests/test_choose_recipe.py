"""scripts/choose_recipe.py: recipe variants scored on validation, float and (--quant) int8."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from helpers import write_toy_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import choose_recipe  # noqa: E402


def test_variants_combine_and_unknown_parts_are_refused(monkeypatch, capsys):
    recipe = choose_recipe.recipe_for("gain_20+dropout_0.1+wd_1e-3")
    assert (recipe.gain_db, recipe.dropout, recipe.weight_decay) == (20.0, 0.1, 1e-3)
    monkeypatch.setattr(sys, "argv", ["choose_recipe.py", "--data", "d", "--out", "o", "--variants", "gain_20+nope"])
    with pytest.raises(SystemExit):
        choose_recipe.main()
    assert "unknown variant(s) gain_20+nope" in capsys.readouterr().err


@pytest.mark.slow
def test_quant_scores_the_int8_file_on_validation_and_reuses_it(tmp_path, monkeypatch, capsys):
    data = write_toy_dataset(tmp_path / "toy", steps=1, features=6, classes=3, sizes=(96, 48, 48))
    out = tmp_path / "work"
    argv = ["choose_recipe.py", "--data", str(data), "--out", str(out), "--model", "mlp", "--hidden", "8",
            "--layers", "1", "--variants", "default", "--epochs", "3", "--patience", "3", "--batch-size", "16",
            "--quant", "int8"]
    monkeypatch.setattr(sys, "argv", argv)
    assert choose_recipe.main() == 0
    rows = list(csv.DictReader(open(out / "choose_recipe.csv")))
    assert len(rows) == 1 and 0 <= float(rows[0]["val_int8_macro_f1_mean"]) <= 100
    cached = out / data.name / "mlp-H8L1-default-s0" / "val_int8.json"
    first = json.loads(cached.read_text())
    assert set(first) == {"macro_f1", "accuracy"}
    assert "int8 val macro-F1" in capsys.readouterr().out
    # A second call reads the run and its int8 score back instead of training or converting again.
    assert choose_recipe.main() == 0
    assert json.loads(cached.read_text()) == first
    assert float(list(csv.DictReader(open(out / "choose_recipe.csv")))[0]["val_int8_macro_f1_mean"]) == round(
        100 * first["macro_f1"], 2)


def test_validation_only_scoring_never_reads_the_test_split(monkeypatch):
    import numpy as np

    import tinyloc_tf.deployment.host as host
    from tinyloc_tf.workflows.compress import score_variant

    class ValOnly:
        class_names = ["a", "b"]
        val = type("Split", (), {"X": np.zeros((4, 1, 3), np.float32), "y": np.array([[0], [1], [1], [0]])})

        def split(self, name):
            if name != "val":
                raise AssertionError(f"the {name} split was read")
            return self.val

    monkeypatch.setattr(host, "predict_paths", lambda buf, X, runtime: (np.array([[0], [1], [0], [0]]), None))
    scores = score_variant(b"", ValOnly(), "tflm", splits=("val",))
    assert set(scores) == {"val"} and scores["val"]["accuracy"] == 0.75
