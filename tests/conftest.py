"""Shared fixtures. Tests that need the UJIIndoorLoc archive skip with a message when it is
absent; set TINYLOC_UJI_ZIP to point at a copy elsewhere."""

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
