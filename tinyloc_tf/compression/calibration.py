"""Calibration windows for full-integer conversion: a seeded subset of real training
windows, optionally without the few whose emissions set extreme activation ranges.

Used by every calibrated variant (``convert.py``) and by QAT's range tracking (``qat.py``).
"""

from __future__ import annotations

import numpy as np

from tinyloc_tf.errors import TinylocError

DEFAULT_REPRESENTATIVE_SIZE = 256


def representative_subset(X, size: int = DEFAULT_REPRESENTATIVE_SIZE, seed: int = 0) -> np.ndarray:
    """A seeded random subset of real windows ``X [N, T, F]`` for calibration, in index order."""
    if int(size) < 1:
        raise TinylocError(f"the representative size must be at least 1 window, got {size}")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3 or len(X) == 0:
        raise TinylocError(f"representative windows must be a non-empty [N, T, F] array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise TinylocError("representative windows contain NaN or infinite values")
    if size >= len(X):
        return X
    rows = np.sort(np.random.default_rng(seed).choice(len(X), size=int(size), replace=False))
    return X[rows]


def trim_calibration(model, X, percent: float) -> np.ndarray:
    """``X [N, T, F]`` minus the ``percent`` % of windows whose emissions reach the largest
    magnitude under ``model``.

    Min/max calibration lets a handful of extreme windows set every activation range, which
    leaves a coarse int8 scale for all the ordinary ones; on some synthetic-house Mamba models
    leaving out 10 % of the windows recovered most of the int8 accuracy (``docs/mamba.md``).
    """
    X = np.asarray(X, dtype=np.float32)
    if not 0.0 <= float(percent) < 100.0:
        raise TinylocError(f"calibration trim must be a percentage in [0, 100), got {percent}")
    if not percent:
        return X
    import keras

    emissions = np.concatenate([
        keras.ops.convert_to_numpy(model(X[start:start + 256])) for start in range(0, len(X), 256)
    ])
    magnitude = np.abs(emissions).reshape(len(X), -1).max(axis=1)
    return X[magnitude <= np.percentile(magnitude, 100.0 - float(percent))]
