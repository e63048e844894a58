#!/usr/bin/env python
"""Test scores of UJIIndoorLoc models split by where each test scan's phone was seen.

    .venv/bin/python scripts/score_by_phone.py --data DIR --models A.tflite [B.tflite ...] \
        [--logistic-regression DIR2:C ...]

A phone's receiver shifts every reading it makes, and two thirds of UJIIndoorLoc's test scans
come from phones no split holds (``tinyloc data info DIR``). This prints, for each ``.tflite``
(run in host TFLM on DIR's test split) and each logistic regression (refit on DIR2's train +
val with inverse regularisation C, as ``tinyloc baselines`` refits it), accuracy and macro-F1
over all test scans and over the scans whose phone is in the train split, only in val, or in
neither. The phone of each test scan is read from the source archive recorded in DIR's
``meta.json`` (the test split is ``validationData.csv`` whole, in file order). It reads the
test split of final models only; nothing here chooses a model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

GROUPS = ("in train", "in val only", "in neither")


def phone_groups(meta: dict) -> np.ndarray:
    """Per test scan of a grouped UJIIndoorLoc split, the index in :data:`GROUPS` of where its
    phone was seen."""
    from tinyloc_tf.data.uji import read_uji
    from tinyloc_tf.errors import TinylocError

    split = meta.get("split", {})
    if meta.get("dataset") != "ujiindoorloc" or "val_groups" not in split:
        raise TinylocError("score_by_phone needs a UJIIndoorLoc folder prepared with the grouped split")
    tables = read_uji(meta["source"])
    users, phones = tables.train["USERID"].to_numpy(), tables.train["PHONEID"].to_numpy()
    in_val = np.array([f"U{u}P{p}" in set(split["val_groups"]) for u, p in zip(users, phones)])
    train_phones, val_phones = set(phones[~in_val].tolist()), set(phones[in_val].tolist())
    return np.array([0 if p in train_phones else 1 if p in val_phones else 2
                     for p in tables.test["PHONEID"].to_numpy().tolist()])


def scores_by_group(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> list[tuple[float, float, int]]:
    """``(accuracy, macro-F1, scans)`` in percent over all scans, then per group of :data:`GROUPS`."""
    from tinyloc_tf.training.metrics import accuracy, macro_f1

    masks = [np.ones(len(groups), bool)] + [groups == g for g in range(len(GROUPS))]
    return [(100 * accuracy(y_true[m], y_pred[m]), 100 * macro_f1(y_true[m], y_pred[m]), int(m.sum()))
            if m.any() else (float("nan"), float("nan"), 0) for m in masks]


def logistic_regression_paths(spec: str, test_len: int) -> tuple[str, np.ndarray]:
    """``DIR:C`` -> (its name, test predictions of the logistic regression refit on DIR's train + val)."""
    from tinyloc_tf.errors import TinylocError
    from tinyloc_tf.training.baselines import make_estimator, per_step, unique_rows
    from tinyloc_tf.training.trainer import load_data

    folder, _, c = spec.rpartition(":")
    try:
        c = float(c)
    except ValueError:
        raise TinylocError(f"--logistic-regression {spec}: expected DIR:C, C a number") from None
    data = load_data(folder)
    X = np.concatenate([data.split("train").X, data.split("val").X])
    y = np.concatenate([data.split("train").y, data.split("val").y])
    estimator = make_estimator("logistic_regression", {"C": c}, seed=0, n_jobs=1)
    estimator.fit(*unique_rows(*per_step(X, y)))
    test = data.split("test")
    if len(test) != test_len:
        raise TinylocError(f"{folder}: {len(test)} test scans, not the {test_len} of --data")
    return f"logistic regression, {Path(folder).name}, C = {c:g}, refit", estimator.predict(per_step(test.X, test.y)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the prepared UJIIndoorLoc folder of the models")
    parser.add_argument("--models", type=Path, nargs="*", default=[], help=".tflite files to run in host TFLM")
    parser.add_argument("--logistic-regression", nargs="*", default=[], metavar="DIR:C",
                        help="a logistic regression refit on DIR's train + val with this C")
    args = parser.parse_args()
    if not args.models and not args.logistic_regression:
        parser.error("give --models, --logistic-regression or both")

    from tinyloc_tf.deployment.host import predict_paths
    from tinyloc_tf.training.trainer import load_data

    data = load_data(args.data)
    test = data.split("test")
    groups = phone_groups(data.meta)
    if len(groups) != len(test):
        parser.error(f"{args.data}: {len(test)} test scans, but the source's validationData.csv has {len(groups)}")
    rows = [(str(model), predict_paths(model, test.X)[0][:, 0]) for model in args.models]
    rows += [logistic_regression_paths(spec, len(test)) for spec in args.logistic_regression]

    counts = scores_by_group(test.y[:, 0], test.y[:, 0], groups)
    header = ["model", f"all ({counts[0][2]})", *(f"phone {g} ({c[2]})" for g, c in zip(GROUPS, counts[1:]))]
    print("Test accuracy / macro-F1 (%), by where the scan's phone was seen (scans)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, predicted in rows:
        cells = [f"{acc:.2f} / {f1:.2f}" for acc, f1, _ in scores_by_group(test.y[:, 0], predicted, groups)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
