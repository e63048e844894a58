"""Scores on room paths: macro-F1, accuracy, per-class F1 and the confusion matrix.

Every model in the project predicts a class per time step (``[N, T]``): in-home windows
score every step of every window, UJIIndoorLoc (``T = 1``) scores each scan. Both go
through the same code: the paths are flattened to ``[N * T]`` first.

Macro-F1 averages over the classes that occur in the true *or* predicted labels
(scikit-learn's default), so a room absent from a split neither counts as a zero nor
inflates the mean; the per-class table lists every class and gives ``None`` for those
absent from both.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from tinyloc_tf.errors import TinylocError


def flatten_paths(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """``[N, T]`` (or ``[N]``) label arrays -> two int arrays ``[N * T]``."""
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_pred = np.asarray(y_pred).reshape(-1).astype(np.int64)
    if y_true.shape != y_pred.shape:
        raise TinylocError(
            f"true and predicted labels differ in size: {y_true.size} vs {y_pred.size}"
        )
    if y_true.size == 0:
        raise TinylocError("cannot score an empty split")
    return y_true, y_pred


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` or ``y_pred``."""
    t, p = flatten_paths(y_true, y_pred)
    return float(f1_score(t, p, average="macro", zero_division=0))


def accuracy(y_true, y_pred) -> float:
    """Fraction of time steps whose class is right."""
    t, p = flatten_paths(y_true, y_pred)
    return float(accuracy_score(t, p))


def per_class_f1(y_true, y_pred, class_names: list[str]) -> dict[str, float | None]:
    """``{class name: F1}`` for every class; ``None`` where a class is neither true nor predicted."""
    t, p = flatten_paths(y_true, y_pred)
    labels = np.arange(len(class_names))
    scores = f1_score(t, p, labels=labels, average=None, zero_division=0)
    seen = np.isin(labels, np.union1d(t, p))
    return {
        name: (float(score) if present else None)
        for name, score, present in zip(class_names, scores, seen)
    }


def confusion(y_true, y_pred, num_classes: int) -> list[list[int]]:
    """``[K, K]`` counts as nested lists (rows: true class, columns: predicted)."""
    t, p = flatten_paths(y_true, y_pred)
    return confusion_matrix(t, p, labels=np.arange(num_classes)).astype(int).tolist()


def score_paths(y_true, y_pred, class_names: list[str]) -> dict:
    """All the scores of one split, JSON-ready.

    Returns ``{"macro_f1", "accuracy", "per_class_f1", "confusion_matrix", "steps"}``.
    """
    t, p = flatten_paths(y_true, y_pred)
    if t.max() >= len(class_names) or p.max() >= len(class_names) or min(t.min(), p.min()) < 0:
        raise TinylocError(f"labels outside 0..{len(class_names) - 1}")
    return {
        "macro_f1": macro_f1(t, p),
        "accuracy": accuracy(t, p),
        "per_class_f1": per_class_f1(t, p, class_names),
        "confusion_matrix": confusion(t, p, len(class_names)),
        "steps": int(t.size),
    }
