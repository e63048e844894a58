"""scripts/compare_distill.py: the recipe flags reach every run, and bad ones stop it before training."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import compare_distill  # noqa: E402


def run(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["compare_distill.py", "--data", "d", "--work", "w", *args])
    return compare_distill.main()


@pytest.mark.parametrize("args, message", [
    (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    (["--teacher", "mlp:8:1", "--student", "mlp:4:1", "--train-steps", "5"], "mlp cannot train on longer windows"),
    (["--teacher", "mamba:8:1", "--student", "mamba:4:1", "--train-steps", "5"], "distilled students learn"),
])
def test_bad_recipe_is_a_usage_error(monkeypatch, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        run(monkeypatch, *args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_recipe_reaches_the_teacher_and_every_student(monkeypatch, tmp_path):
    seen = []

    def fake(kind):
        def train(*args, **kwargs):
            seen.append((kind, kwargs["recipe"]))
            return {"params": 1, "val_macro_f1": 0.5, "test_macro_f1": 0.5, "test_accuracy": 0.5, "epochs_run": 1}
        return train

    monkeypatch.setattr(compare_distill, "train_run", fake("train"))
    monkeypatch.setattr(compare_distill, "distill_run", fake("distill"))
    monkeypatch.setattr(sys, "argv", ["compare_distill.py", "--data", "d", "--work", str(tmp_path), "--teacher",
                                      "mlp:8:1", "--student", "mlp:4:1", "--methods", "none,marginals", "--seeds", "0",
                                      "--gain-db", "20", "--dropout", "0.1"])
    assert compare_distill.main() == 0
    assert [kind for kind, _ in seen] == ["train", "train", "distill"]
    assert all(recipe.gain_db == 20.0 and recipe.dropout == 0.1 for _, recipe in seen)
