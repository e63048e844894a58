"""Classical baselines on the same splits and metrics: k-NN, random forest, logistic regression.

What users would try first, so every neural result has a side-by-side ratio.

Samples. Every time step is one sample: ``X [N, T, F] -> [N*T, F]``, ``y [N, T] ->
[N*T]`` (for UJIIndoorLoc, T = 1, one scan per sample). A baseline sees only the RSSI of
its own step - no window context; that is the plain fingerprinting baseline, and the gap
to the sequence models is what context (and the CRF) buys. Overlapping in-home windows
repeat each step, so exact duplicate training rows (same features and label) are removed
before fitting; validation and test keep every step of every window, exactly as the
neural models are scored.

Selection. A small grid per model (``GRIDS``), fitted on train and scored by macro-F1 on
validation; the best point (first in grid order on ties) is scored once on test.

Memory footprint (bytes a microcontroller would hold for the model; the input window
and code are not counted). Two figures per model: ``footprint_bytes`` with 8-bit storage
(features are in [0, 1] after min-max scaling, so 8 bits per value is 256 levels, finer
than the 1 dBm RSSI resolution) and ``footprint_bytes_float32``:

- k-NN: the stored training set, ``rows * F`` values + one label per row (1 byte for
  K <= 256 classes, else 2).
- Random forest: ``nodes * bytes_per_node`` over all trees, in a pre-order layout where
  the left child follows its parent: feature index (1 byte if F < 256, else 2; one spare
  value marks a leaf), threshold (1 byte int8 / 4 bytes float32; a leaf keeps its class
  there), right-child offset (2 bytes, 4 if a tree has 65,536 nodes or more).
- Logistic regression: ``F * K`` weights (1 byte / 4 bytes) + ``K`` biases (4 bytes); the
  8-bit form adds one float32 scale per class.

The accuracy figures are measured with scikit-learn's float models; the 8-bit footprint
says what storage would cost, not how 8-bit storage would score.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np

from tinyloc_tf.atomic import check_output, staged_folder
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.training.metrics import accuracy, macro_f1, score_paths

BASELINES = ("knn", "random_forest", "logistic_regression")

GRIDS = {
    "knn": [{"n_neighbors": k} for k in (1, 3, 5, 9, 15)],
    "random_forest": [
        {"n_estimators": n, "max_depth": d} for n in (10, 30, 100) for d in (8, 16, None)
    ],
    "logistic_regression": [{"C": c} for c in (0.1, 1.0, 10.0, 100.0)],
}

#: lbfgs' stopping tolerance for the logistic regression. Its problem is convex, so the fit has
#: one answer; scikit-learn's default (1e-4) stops short of it at a point that depends on the
#: BLAS thread count (UJIIndoorLoc areas, relative, C = 100: 140 or 149 iterations and
#: validation macro-F1 71.09 or 71.20 with 2 or 1 threads). At 1e-7 both give the same fit
#: (about 360 iterations, 72.82).
LOGISTIC_TOL = 1e-7
LOGISTIC_MAX_ITER = 10_000

SUMMARY_FIELDS = (
    "name", "params", "val_macro_f1", "val_accuracy", "test_macro_f1", "test_accuracy",
    "footprint_bytes", "footprint_bytes_float32", "fit_seconds",
    "refit_test_macro_f1", "refit_test_accuracy", "refit_footprint_bytes",
)


# --------------------------------------------------------------------------- samples


def per_step(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``X [N, T, F]``, ``y [N, T]`` -> ``[N*T, F]``, ``[N*T]``: one sample per time step."""
    return X.reshape(-1, X.shape[-1]), y.reshape(-1)


def unique_rows(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop exact duplicate (features, label) rows; keeps first-seen order."""
    joined = np.concatenate([X, y[:, None].astype(X.dtype)], axis=1)
    _, first = np.unique(joined, axis=0, return_index=True)
    keep = np.sort(first)
    return X[keep], y[keep]


# --------------------------------------------------------------------------- footprints


def _label_bytes(classes: int) -> int:
    return 1 if classes <= 256 else 2


def knn_footprint(rows: int, features: int, classes: int) -> dict:
    return {
        "footprint_bytes": rows * features + rows * _label_bytes(classes),
        "footprint_bytes_float32": rows * features * 4 + rows * _label_bytes(classes),
        "stored_rows": rows,
    }


def forest_footprint(forest, features: int) -> dict:
    node_counts = [int(tree.tree_.node_count) for tree in forest.estimators_]
    feature_bytes = 1 if features < 256 else 2
    child_bytes = 2 if max(node_counts) < 65536 else 4
    nodes = sum(node_counts)
    return {
        "footprint_bytes": nodes * (feature_bytes + 1 + child_bytes),
        "footprint_bytes_float32": nodes * (feature_bytes + 4 + child_bytes),
        "nodes": nodes,
    }


def logistic_footprint(features: int, classes: int) -> dict:
    # scikit-learn keeps one weight row per class (K > 2) or a single row (K = 2).
    rows = classes if classes > 2 else 1
    return {
        "footprint_bytes": rows * features + rows * 4 + rows * 4,
        "footprint_bytes_float32": rows * features * 4 + rows * 4,
        "weights": rows * (features + 1),
    }


# --------------------------------------------------------------------------- models


def make_estimator(name: str, params: dict, seed: int, n_jobs: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    if name == "knn":
        return KNeighborsClassifier(**params, n_jobs=n_jobs)
    if name == "random_forest":
        return RandomForestClassifier(**params, random_state=seed, n_jobs=n_jobs)
    if name == "logistic_regression":
        return LogisticRegression(**params, tol=LOGISTIC_TOL, max_iter=LOGISTIC_MAX_ITER, random_state=seed)
    raise TinylocError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")


def footprint(name: str, estimator, rows: int, features: int, classes: int) -> dict:
    if name == "knn":
        return knn_footprint(rows, features, classes)
    if name == "random_forest":
        return forest_footprint(estimator, features)
    return logistic_footprint(features, int(len(estimator.classes_)))


def _iterations(estimator) -> dict:
    """An iterative fit's iterations and whether it stopped on its tolerance (logistic
    regression), so that a fit cut short by ``max_iter`` shows in the results."""
    if not hasattr(estimator, "n_iter_"):
        return {}
    iterations = int(np.max(estimator.n_iter_))
    return {"iterations": iterations, "converged": iterations < estimator.max_iter}


def _predict(estimator, X: np.ndarray) -> np.ndarray:
    return estimator.predict(X).astype(np.int64)


def refit_estimator(name: str, params: dict, train, val, *, seed: int = 0, n_jobs: int = 1):
    """``(estimator, X)``: grid point ``params`` fitted again on train + val (``(X, y)`` per step
    each; a row in both once), the baseline's counterpart of a neural model shipped with
    ``--refit``, and the rows it was fitted on."""
    X, y = unique_rows(np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]]))
    return make_estimator(name, params, seed, n_jobs).fit(X, y), X


def select_and_score(name, grid, train, val, test, class_names, *, seed=0, n_jobs=1, progress=None) -> dict:
    """Fit every grid point on ``train``, pick by validation macro-F1, score test once.

    ``refit``: the chosen grid point fitted again on train + val and scored on test, the
    baseline's counterpart of a neural model shipped with ``--refit`` (same data seen)."""
    (Xtr, ytr), (Xva, yva), (Xte, yte) = train, val, test
    classes = len(class_names)
    trials, best, best_score = [], None, -1.0
    for params in grid:
        started = time.perf_counter()
        estimator = make_estimator(name, params, seed, n_jobs).fit(Xtr, ytr)
        fit_seconds = time.perf_counter() - started
        predicted = _predict(estimator, Xva)
        score = macro_f1(yva, predicted)
        trials.append({
            "params": params, "val_macro_f1": score, "val_accuracy": accuracy(yva, predicted),
            "fit_seconds": round(fit_seconds, 3), **_iterations(estimator),
        })
        if score > best_score:
            best, best_score = (params, estimator, fit_seconds), score
        if progress is not None:
            progress.update(1)
    params, estimator, fit_seconds = best
    val_scores = score_paths(yva, _predict(estimator, Xva), class_names)
    test_scores = score_paths(yte, _predict(estimator, Xte), class_names)
    refitted, Xall = refit_estimator(name, params, (Xtr, ytr), (Xva, yva), seed=seed, n_jobs=n_jobs)
    refit_scores = score_paths(yte, _predict(refitted, Xte), class_names)
    refit = {"test_macro_f1": refit_scores["macro_f1"], "test_accuracy": refit_scores["accuracy"],
             "rows": int(len(Xall)), **_iterations(refitted), **footprint(name, refitted, len(Xall), Xall.shape[1], classes)}
    return {
        "name": name,
        "params": params,
        "val_macro_f1": val_scores["macro_f1"],
        "val_accuracy": val_scores["accuracy"],
        "test_macro_f1": test_scores["macro_f1"],
        "test_accuracy": test_scores["accuracy"],
        **footprint(name, estimator, len(Xtr), Xtr.shape[1], classes),
        "fit_seconds": round(fit_seconds, 3),
        "val": val_scores,
        "test": test_scores,
        "grid": trials,
        "refit": refit,
    }


# --------------------------------------------------------------------------- entry point


def run_baselines(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    models: tuple[str, ...] = BASELINES,
    seed: int = 0,
    n_jobs: int = 1,
    overwrite: bool = False,
    verbose: int = 1,
) -> list[dict]:
    """Select, score and size every baseline on ``data_dir``; write ``out/baselines.json``
    (full results) and ``out/baselines.csv`` (one summary row per model). Returns the list.
    """
    from tqdm.auto import tqdm

    from tinyloc_tf.data import load_prepared

    unknown = [name for name in models if name not in BASELINES]
    if unknown:
        raise TinylocError(f"unknown baseline {unknown[0]!r}; expected one of {', '.join(BASELINES)}")
    out = Path(out).absolute()
    check_output(out, overwrite=overwrite, inputs=(data_dir,), kind="folder")
    data = load_prepared(data_dir)
    Xtr, ytr = per_step(data.train.X, data.train.y)
    rows_all = len(Xtr)
    Xtr, ytr = unique_rows(Xtr, ytr)
    val = per_step(data.val.X, data.val.y)
    test = per_step(data.test.X, data.test.y)
    dataset = {
        "data_dir": str(Path(data_dir).absolute()),
        "data_sha256": data.fingerprint(),
        "source_sha256": data.meta.get("source_sha256"),
        "train_rows": rows_all,
        "train_rows_unique": int(len(Xtr)),
        "duplicate_rows_removed": int(rows_all - len(Xtr)),
    }

    results = []
    total = sum(len(GRIDS[name]) for name in models)
    with tqdm(total=total, desc="baselines", unit="fit", disable=verbose < 1) as progress:
        for name in models:
            progress.set_postfix(model=name)
            result = select_and_score(
                name, GRIDS[name], (Xtr, ytr), val, test, data.class_names,
                seed=seed, n_jobs=n_jobs, progress=progress,
            )
            results.append({**result, **dataset, "seed": seed})

    with staged_folder(out, overwrite=overwrite, inputs=(data_dir,)) as staging:
        with open(staging / "baselines.json", "w") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")
        write_summary(results, staging / "baselines.csv")
    return results


def write_summary(results: list[dict], path: Path) -> None:
    """``baselines.csv``: one row per model, :data:`SUMMARY_FIELDS` (``refit_*``: the chosen grid
    point refit on train + val)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for result in results:
            refit = {f"refit_{key}": value for key, value in (result.get("refit") or {}).items()}
            row = {**result, **refit, "params": json.dumps(result["params"], sort_keys=True)}
            writer.writerow({key: row.get(key, "") for key in SUMMARY_FIELDS})
