"""``tinyloc deploy``'s test windows: a default that covers the classes, a warning when they don't."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np

from tinyloc_tf.cli import main
from tinyloc_tf.data import Split, write_prepared
from tinyloc_tf.deployment.export_c import DEFAULT_WINDOWS, WINDOWS_PER_CLASS, class_coverage, default_windows

CLASSES = 59
MODEL = str(Path(__file__).resolve().parents[1] / "models" / "ujiindoorloc" / "32kb.tflite")


def many_classes(tmp_path, windows=600):
    y = (np.arange(windows) % CLASSES).astype(np.int32)[:, None]
    X = np.full((windows, 1, 2), 0.5, np.float32)
    meta = {"features": ["a", "b"], "classes": [f"area{k}" for k in range(CLASSES)], "T": 1,
            "scaling": {"min": [0, 0], "max": [1, 1]}, "labels": "area", "source": "windows",
            "source_sha256": "0" * 64}
    return write_prepared(tmp_path / "data", {name: Split(X, y) for name in ("train", "val", "test")}, meta)


def test_the_default_covers_the_classes(tmp_path):
    data = many_classes(tmp_path)
    assert default_windows(None, "test", None) == DEFAULT_WINDOWS
    assert default_windows(data, "test", None) == WINDOWS_PER_CLASS * CLASSES
    assert default_windows(data, "test", 16) == 16
    assert class_coverage(data, "test", WINDOWS_PER_CLASS * CLASSES) == (CLASSES, CLASSES)
    covered, classes = class_coverage(data, "test", 16)
    assert covered < classes == CLASSES


def test_a_score_over_too_few_classes_carries_a_warning(tmp_path, monkeypatch, capsys):
    data = many_classes(tmp_path)
    seen = {}

    def deploy(tflite, **options):
        seen.update(options)
        return {"windows": options["windows"], "macro_f1": 0.4}

    module = types.ModuleType("tinyloc_tf.deployment.firmware")
    module.deploy = deploy
    module.FirmwareError = module.RamBudgetError = type("Never", (Exception,), {})
    monkeypatch.setitem(sys.modules, "tinyloc_tf.deployment.firmware", module)

    assert main(["deploy", MODEL, "--data", str(data), "--windows", "16"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "16 windows hold" in report["macro_f1_note"] and "warning" in captured.err
    assert main(["deploy", MODEL, "--data", str(data)]) == 0
    assert seen["windows"] == WINDOWS_PER_CLASS * CLASSES
    assert "macro_f1_note" not in json.loads(capsys.readouterr().out)
