"""A sweep's terminal shows its progress and results; what TensorFlow prints goes to a log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyloc_tf.data import Split, write_prepared

REPO = Path(__file__).resolve().parents[1]
# what TensorFlow, absl and LiteRT print: C++ log prefixes, retracing warnings, delegate notices
NOISE = ("absl::", "retracing", "XNNPACK", "INFO: ", "W0000", "E0000", "I0000", "oneDNN")


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sweep_terminal_carries_no_tensorflow_noise(tmp_path, jobs):
    rng = np.random.default_rng(0)

    def split(count):
        y = rng.integers(3, size=(count, 6)).astype(np.int32)
        X = np.clip(0.2 + 0.2 * y[..., None] + rng.normal(0, 0.1, (count, 6, 4)), 0, 1).astype(np.float32)
        return Split(X, y)

    meta = {"features": ["a", "b", "c", "d"], "classes": ["x", "y", "z"], "T": 6,
            "scaling": {"min": [0.0] * 4, "max": [1.0] * 4}, "labels": "room", "source": "windows",
            "source_sha256": "0" * 64}
    data = write_prepared(tmp_path / "data", {"train": split(48), "val": split(16), "test": split(16)}, meta)
    done = subprocess.run(
        [sys.executable, "-m", "tinyloc_tf", "sweep", "--data", str(data), "--out", str(tmp_path / "sweep"),
         "--family", "mamba", "--max-params", "700", "--epochs", "2", "--patience", "1", "--no-distill",
         "--no-baselines", "--quant", "int8,dynamic", "--jobs", jobs],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    noise = [line for line in done.stderr.replace("\r", "\n").splitlines() if any(mark in line for mark in NOISE)]
    assert not noise, noise[:5]
    assert (tmp_path / "sweep" / "tensorflow.log").is_file()
