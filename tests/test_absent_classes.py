"""scripts/absent_classes.py: macro-F1 over the classes present in the truth, from a confusion matrix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import absent_classes  # noqa: E402

from tinyloc_tf.training.metrics import confusion, macro_f1  # noqa: E402


def test_confusion_round_trip_and_the_absent_class():
    # class 2 has no true sample; one scan of class 1 is predicted as class 2
    t = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0, 0, 0, 1, 1, 1, 2])
    matrix = confusion(t, p, 3)
    back_t, back_p = absent_classes.labels_from_confusion(matrix)
    assert sorted(zip(back_t, back_p)) == sorted(zip(t, p))
    # today's metric: F1 = 0 for class 2 enters the mean of three
    assert macro_f1(t, p) == pytest.approx((1.0 + 6 / 7 + 0.0) / 3)
    # over the classes in the truth, the miss costs class 1's recall only
    assert absent_classes.macro_f1_present(matrix) == pytest.approx((1.0 + 6 / 7) / 2)


def test_report_of_a_sweep(tmp_path):
    runs = tmp_path / "sweep" / "runs"
    good = [[5, 0, 0], [0, 5, 0], [0, 0, 0]]
    stray = [[5, 0, 0], [0, 4, 1], [0, 0, 0]]  # predicts the absent class once
    for name, val, flash, test in (("a", good, 20_000, [[5, 0, 0], [0, 5, 0], [0, 0, 5]]),
                                   ("b", stray, 10_000, [[5, 0, 0], [0, 5, 0], [0, 1, 4]])):
        (runs / name / "variants").mkdir(parents=True)
        scores = {split: {"macro_f1": macro_f1(*absent_classes.labels_from_confusion(matrix)), "accuracy": 0.9,
                          "confusion_matrix": matrix} for split, matrix in (("val", val), ("test", test))}
        (runs / name / "metrics.json").write_text(json.dumps({
            "family": "mlp", "hidden": 16, "layers": 1, "params": 1_000,
            **{f"{split}_{key}": scores[split][key] for split in ("val", "test") for key in ("macro_f1", "accuracy")}}))
        record = {"variant": "int8", "runtime": "tflm", "deployable": True, "flash_bytes": flash,
                  "arena_bytes": 2_000, **scores}
        (runs / name / "variants" / "int8.json").write_text(json.dumps(record))
    lines = absent_classes.report_lines(tmp_path / "sweep")
    assert "validation 1, test 0" in lines[0]
    assert any(line.strip().startswith("b int8: validation") for line in lines)
    with pytest.raises(SystemExit, match="no int8"):
        absent_classes.report_lines(tmp_path)
