"""Shared fixtures (plain helper functions are in helpers.py). Tests that need the UJIIndoorLoc
archive skip with a message when it is absent; set TINYLOC_UJI_ZIP to point at a copy elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep TensorFlow quiet and small: CI machines have two cores.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_UJI_ZIP = REPO.parent / "shared" / "data" / "UJIndoorLoc.zip"


@pytest.fixture(scope="session")
def uji_zip() -> Path:
    path = Path(os.environ.get("TINYLOC_UJI_ZIP", DEFAULT_UJI_ZIP))
    if not path.is_file():
        pytest.skip(f"UJIIndoorLoc archive not found at {path}; set TINYLOC_UJI_ZIP to run these tests")
    return path


@pytest.fixture(scope="session")
def kernel_objects(tmp_path_factory):
    """The AOT kernels compiled once per session with the host C compiler, for host builds;
    skips when there is no C compiler."""
    from tinyloc_tf.deployment.aot.host import compile_kernel_objects, host_compiler
    from tinyloc_tf.errors import TinylocError

    try:
        host_compiler()
    except TinylocError as exc:  # no C compiler on this machine
        pytest.skip(str(exc))
    return compile_kernel_objects(tmp_path_factory.mktemp("aot-kernel-objects"))


@pytest.fixture(scope="module")
def stream_data(tmp_path_factory):
    """A prepared folder whose windows (T = 20, hop 10) are cut from continuous runs."""
    import numpy as np

    from tinyloc_tf.data.prepared import Split, load_prepared, write_prepared

    rng = np.random.default_rng(11)
    signatures = rng.random((3, 5))

    def windows(runs, length):
        X, y = [], []
        for _ in range(runs):
            rooms = np.repeat(rng.integers(0, 3, length // 25 + 1), 25)[:length]
            run = np.clip(signatures[rooms] + rng.normal(0, 0.05, (length, 5)), 0, 1)
            for s in range(0, length - 20 + 1, 10):
                X.append(run[s:s + 20])
                y.append(rooms[s:s + 20])
        return Split(np.stack(X).astype(np.float32), np.stack(y).astype(np.int32))

    splits = {"train": windows(4, 200), "val": windows(1, 100), "test": windows(2, 150)}
    meta = {"features": [f"ap{i}" for i in range(5)], "classes": ["a", "b", "c"], "T": 20,
            "scaling": {"min": [-110.0] * 5, "max": [-30.0] * 5}, "labels": "room", "source": "test runs",
            "source_sha256": "0" * 64}
    return load_prepared(write_prepared(tmp_path_factory.mktemp("data") / "runs", splits, meta))
