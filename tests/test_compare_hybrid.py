"""scripts/compare_hybrid.py: a run averaged with a logistic regression, scored on validation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers import write_toy_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import compare_hybrid  # noqa: E402


def test_weights_outside_the_unit_interval_are_refused(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["compare_hybrid.py", "--data", "d", "--runs", "r", "--weights", "0.2", "1.5"])
    with pytest.raises(SystemExit):
        compare_hybrid.main()
    assert "--weights must be in (0, 1], got 0.2 1.5" in capsys.readouterr().err


@pytest.mark.slow
def test_weight_zero_is_the_run_alone_and_a_full_weight_the_regression(tmp_path, monkeypatch, capsys):
    from tinyloc_tf.training.trainer import train_run

    data = write_toy_dataset(tmp_path / "toy", steps=1, features=6, classes=3, sizes=(96, 48, 48))
    run = tmp_path / "run"
    train_run(data, "mlp", 8, 1, run, epochs=3, batch_size=16, lr=5e-3, patience=3, seed=0, verbose=0)
    monkeypatch.setattr(sys, "argv", ["compare_hybrid.py", "--data", str(data), "--runs", str(run),
                                      "--weights", "1"])
    assert compare_hybrid.main() == 0
    out = capsys.readouterr().out
    regression = float(out.split("alone: validation macro-F1 ")[1].split()[0])
    row = [line for line in out.splitlines() if line.startswith("|")][2]  # header, rule, the run
    alone, full = (float(v) for v in row.strip("| ").split(" | ")[1:])
    assert alone == pytest.approx(100 * json.loads((run / "metrics.json").read_text())["val_macro_f1"], abs=0.01)
    assert full == pytest.approx(regression, abs=0.01)  # w = 1: the regression's argmax (T = 1)
