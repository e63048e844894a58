#!/usr/bin/env python
"""Average trained runs with a logistic regression on validation: does the pair beat the run?

    .venv/bin/python scripts/compare_hybrid.py --data DIR --runs RUN [RUN ...] [--C 10] [--weights 0.1 0.2 0.35 0.5]

The logistic regression (``tinyloc baselines``' estimator, fitted to its optimum on DIR's train
split with inverse regularisation ``--C``) and each run are independent models. Per weight w
the pair decodes ``(1 - w) * emissions + w * log p_LR`` with the run's CRF, so w = 0 is the run
alone and reproduces its own validation score. Prints validation macro-F1 only (test stays
unread here, as in ``choose_recipe.py``): a markdown table, one row per run and their mean.
A weight that gains on validation would justify building the pair into one ``.tflite``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np


def log_probabilities(estimator, X: np.ndarray, num_classes: int) -> np.ndarray:
    """``[N, T, K]`` log-probabilities of a per-step classifier; classes it never saw get -30."""
    steps = X.reshape(-1, X.shape[-1])
    out = np.full((len(steps), num_classes), -30.0, dtype=np.float32)
    out[:, estimator.classes_] = estimator.predict_log_proba(steps)
    return out.reshape(X.shape[0], X.shape[1], num_classes)


def hybrid_scores(tagger, val, lr_log_p: np.ndarray, weights) -> list[float]:
    """Validation macro-F1 (percent) of the run alone, then of the pair at each weight."""
    from tinyloc_tf.decoding import viterbi_decode
    from tinyloc_tf.training.metrics import macro_f1

    emissions = tagger.emissions(val.X)
    crf = tagger.crf.get_weights()
    return [100 * macro_f1(val.y, viterbi_decode((1 - w) * emissions + w * lr_log_p, *crf)) for w in (0.0, *weights)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the prepared data the runs were trained on")
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="trained run folders")
    parser.add_argument("--C", type=float, default=10.0, help="the logistic regression's C (default 10)")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.1, 0.2, 0.35, 0.5],
                        help="weights of the logistic regression in the pair, each in (0, 1]")
    args = parser.parse_args()
    if any(not 0 < w <= 1 for w in args.weights):
        parser.error(f"--weights must be in (0, 1], got {' '.join(f'{w:g}' for w in args.weights)}")

    from tinyloc_tf.training.artifacts import check_model_fits_data, load_run
    from tinyloc_tf.training.baselines import make_estimator, per_step, unique_rows
    from tinyloc_tf.training.metrics import macro_f1
    from tinyloc_tf.training.trainer import load_data

    data = load_data(args.data)
    taggers = [load_run(run)[0] for run in args.runs]  # every run readable before the fit
    for run, tagger in zip(args.runs, taggers):
        check_model_fits_data(tagger, data, what=str(run))
    train, val = data.split("train"), data.split("val")
    estimator = make_estimator("logistic_regression", {"C": args.C}, seed=0, n_jobs=1)
    estimator.fit(*unique_rows(*per_step(train.X, train.y)))  # as tinyloc baselines fits it
    lr_log_p = log_probabilities(estimator, val.X, data.num_classes)
    lr_alone = 100 * macro_f1(val.y, lr_log_p.argmax(-1))

    header = ["run", "alone", *(f"w = {w:g}" for w in args.weights)]
    rows = [[run.name, *hybrid_scores(tagger, val, lr_log_p, args.weights)] for run, tagger in zip(args.runs, taggers)]
    print(f"logistic regression (C = {args.C:g}) alone: validation macro-F1 {lr_alone:.2f}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print(f"| {row[0]} | " + " | ".join(f"{v:.2f}" for v in row[1:]) + " |")
    if len(rows) > 1:
        columns = list(zip(*(row[1:] for row in rows)))
        print("| mean ± sd | " + " | ".join(f"{statistics.mean(c):.2f} ± {statistics.stdev(c):.2f}" for c in columns) + " |")
    return 0


if __name__ == "__main__":
    from tinyloc_tf.errors import script_status

    raise SystemExit(script_status(main, "compare_hybrid"))
