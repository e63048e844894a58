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

def phone_groups(data) -> np.ndarray:
    """Per test scan of a prepared dataset's grouped UJIIndoorLoc split, the index in
    ``data.uji.PHONE_SEEN`` of where its phone was seen."""
    from tinyloc_tf.data.uji import group_name, phone_seen, read_uji, user_phone_groups
    from tinyloc_tf.errors import TinylocError

    meta = data.meta
    split = meta.get("split", {})
    if meta.get("dataset") != "ujiindoorloc" or "val_groups" not in split:
        raise TinylocError(f"{data.path}: not a UJIIndoorLoc folder prepared with the grouped split "
                           f"(dataset {meta.get('dataset')!r}, split {split.get('scheme')!r})")
    tables = read_uji(meta["source"])
    phones = tables.train["PHONEID"].to_numpy()
    in_val = np.isin([group_name(g) for g in user_phone_groups(tables.train).tolist()], split["val_groups"])
    return phone_seen(tables.test["PHONEID"].to_numpy(), phones[~in_val], phones[in_val])


def scores_by_group(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> list[tuple[float, float, int]]:
    """``(accuracy, macro-F1, scans)`` in percent over all scans, then per group of ``PHONE_SEEN``."""
    from tinyloc_tf.data.uji import PHONE_SEEN
    from tinyloc_tf.training.metrics import accuracy, macro_f1

    masks = [np.ones(len(groups), bool)] + [groups == g for g in range(len(PHONE_SEEN))]
    return [(100 * accuracy(y_true[m], y_pred[m]), 100 * macro_f1(y_true[m], y_pred[m]), int(m.sum()))
            if m.any() else (float("nan"), float("nan"), 0) for m in masks]


def logistic_regression_paths(spec: str, test_len: int) -> tuple[str, np.ndarray]:
    """``DIR:C`` -> (its name, test predictions of the logistic regression refit on DIR's train + val)."""
    from tinyloc_tf.errors import TinylocError
    from tinyloc_tf.training.baselines import per_step, refit_estimator
    from tinyloc_tf.training.trainer import load_data

    folder, _, c = spec.rpartition(":")
    try:
        c = float(c)
    except ValueError:
        raise TinylocError(f"--logistic-regression {spec}: expected DIR:C, C a number") from None
    data = load_data(folder)
    train, val = (per_step(data.split(name).X, data.split(name).y) for name in ("train", "val"))
    estimator, _ = refit_estimator("logistic_regression", {"C": c}, train, val)
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

    from tinyloc_tf.data.uji import PHONE_SEEN
    from tinyloc_tf.deployment.host import predict_paths
    from tinyloc_tf.training.trainer import load_data

    data = load_data(args.data)
    test = data.split("test")
    groups = phone_groups(data)
    if len(groups) != len(test):
        parser.error(f"{args.data}: {len(test)} test scans, but the source's validationData.csv has {len(groups)}")
    rows = [(str(model), predict_paths(model, test.X)[0][:, 0]) for model in args.models]
    rows += [logistic_regression_paths(spec, len(test)) for spec in args.logistic_regression]

    counts = scores_by_group(test.y[:, 0], test.y[:, 0], groups)
    header = ["model", f"all ({counts[0][2]})", *(f"phone {g.replace('_', ' ')} ({c[2]})" for g, c in zip(PHONE_SEEN, counts[1:]))]
    print("Test accuracy / macro-F1 (%), by where the scan's phone was seen (scans)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, predicted in rows:
        cells = [f"{acc:.2f} / {f1:.2f}" for acc, f1, _ in scores_by_group(test.y[:, 0], predicted, groups)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    from tinyloc_tf.errors import script_status

    raise SystemExit(script_status(main, "score_by_phone"))
