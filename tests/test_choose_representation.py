"""scripts/choose_representation.py: grouped cross-validation of UJIIndoorLoc's input
representations, with a logistic regression or a neural model."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import choose_representation  # noqa: E402


@pytest.mark.parametrize("argv, message", [
    (["--model", "tree"], "expected logistic or FAMILY:H:L"),
    (["--model", "mlp:wide:1"], "expected logistic or FAMILY:H:L"),
    (["--model", "mlp:8:1", "--train-steps", "5"], "--train-steps 5: mlp cannot train on longer windows"),
    (["--folds", "1"], "--folds must be at least 2"),
    (["--references", "-120"], "--references must lie in"),
])
def test_bad_arguments_are_usage_errors(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["choose_representation.py", "--source", "missing.zip", *argv])
    with pytest.raises(SystemExit) as exit_info:
        choose_representation.main()
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_neural_model_scores_every_representation_on_every_fold(uji_zip, tmp_path, monkeypatch, capsys):
    out = tmp_path / "representation.csv"
    monkeypatch.setattr(sys, "argv", [
        "choose_representation.py", "--source", str(uji_zip), "--model", "mlp:4:1", "--folds", "2",
        "--representations", "powed", "relative", "--references", "-50", "-20", "--epochs", "1",
        "--out", str(out)])
    assert choose_representation.main() == 0
    rows = list(csv.DictReader(open(out)))
    assert sorted((row["representation"], row["reference_dbm"]) for row in rows) == [
        ("powed", ""), ("relative", "-20.0"), ("relative", "-50.0")]
    for row in rows:
        per_fold = [float(s) for s in row["per_fold"].split()]
        assert len(per_fold) == 2 and all(0 <= s <= 100 for s in per_fold)
    means = [float(row["macro_f1_mean"]) for row in rows]
    assert means == sorted(means, reverse=True)
    assert "2-fold grouped cross-validation on trainingData, mlp H4L1, area labels" in capsys.readouterr().out
