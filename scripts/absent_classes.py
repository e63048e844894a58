#!/usr/bin/env python
"""How much a sweep's validation macro-F1 owes to classes absent from the validation split.

    python scripts/absent_classes.py SWEEP [SWEEP ...]

``tinyloc_tf.training.metrics.macro_f1`` averages F1 over the classes present in the truth *or*
the prediction (scikit-learn's default). A class with no validation sample that a model predicts
once (a false positive) enters that mean with F1 = 0: on the 13 floors, where the grouped split's
validation users never visited one floor, a single such scan costs 1/13 of the score, 7.7 points.
This script recomputes, from the confusion matrices every int8-family variant of a sweep records
(`runs/*/variants/{int8,selective,qat}.json`, read with the report's ``collect_rows``), the macro-F1 over the classes present in the
truth only, on validation and on test, and prints per sweep: how many classes each split lacks,
the Spearman rank correlation between validation and test under each definition, the variants
whose validation score moves by more than a point, and the best candidate under 32 and 64 KiB
(the report's ``best_under``) by each definition. Nothing is trained or converted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def labels_from_confusion(matrix) -> tuple[np.ndarray, np.ndarray]:
    """The (truth, prediction) pairs a ``[K, K]`` confusion matrix counts (rows: truth)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    true, pred = np.nonzero(matrix)
    counts = matrix[true, pred]
    return np.repeat(true, counts), np.repeat(pred, counts)


def macro_f1_present(matrix) -> float:
    """Macro-F1 over the classes present in the truth (absent classes predicted: only the
    recall of the true class pays)."""
    from sklearn.metrics import f1_score

    t, p = labels_from_confusion(matrix)
    return float(f1_score(t, p, labels=np.unique(t), average="macro", zero_division=0))


def sweep_frame(sweep: Path):
    """The sweep's int8-family rows (``reports.report.collect_rows``) with ``val_present`` and
    ``test_present`` (macro-F1 over the classes in the truth, from each variant's confusion
    matrices) and ``val_absent`` / ``test_absent`` (classes without a sample)."""
    from tinyloc_tf.errors import TinylocError
    from tinyloc_tf.reports.report import INT8_VARIANTS, collect_rows
    from tinyloc_tf.training.artifacts import sweep_run, variant_path

    try:
        frame = collect_rows(sweep)
    except TinylocError as error:  # e.g. no finished run
        raise SystemExit(f"absent_classes: {sweep}: no int8, selective or qat variants to read ({error})")
    frame = frame[frame["variant"].isin(INT8_VARIANTS)].copy()
    if frame.empty:
        raise SystemExit(f"absent_classes: {sweep}: no int8, selective or qat variants (runs/*/variants/*.json)")
    for index, row in frame.iterrows():
        record = json.loads(variant_path(sweep_run(sweep, row["run"]), row["variant"], ".json").read_text())
        for split in ("val", "test"):
            matrix = np.asarray(record[split]["confusion_matrix"])
            frame.loc[index, f"{split}_present"] = macro_f1_present(matrix)
            frame.loc[index, f"{split}_absent"] = int((matrix.sum(axis=1) == 0).sum())
    return frame


#: The two definitions: the frame's columns (validation, test) and their names.
DEFINITIONS = {"union": (("val_macro_f1", "test_macro_f1"), "in truth or prediction (today's)"),
               "present": (("val_present", "test_present"), "in the truth")}


def report_lines(sweep: Path) -> list[str]:
    from tinyloc_tf.reports.report import best_under, rank_agreement

    frame = sweep_frame(sweep)
    first = frame.iloc[0]
    lines = [f"{sweep}: {len(frame)} int8-family variants; classes without a sample: "
             f"validation {int(first['val_absent'])}, test {int(first['test_absent'])}"]
    for (val, test), name in DEFINITIONS.values():
        agreement = rank_agreement(frame, val=val, test=test)
        rho = "fewer than 3 variants" if agreement is None else f"{agreement[0]:.3f}"
        lines.append(f"  Spearman validation vs test, macro-F1 over classes {name}: {rho}")
    for _, row in frame.iterrows():
        if abs(row["val_macro_f1"] - row["val_present"]) > 0.01:
            lines.append(f"  {row['run']} {row['variant']}: validation {100 * row['val_macro_f1']:.2f} -> "
                         f"{100 * row['val_present']:.2f}")
    for budget in (32, 64):
        for (val, test), name in DEFINITIONS.values():
            best = best_under(frame, budget, score=val)
            if best is not None:
                lines.append(f"  best under {budget} KiB, classes {name}: {best['run']} {best['variant']}, "
                             f"validation {100 * best[val]:.2f}, test {100 * best[test]:.2f}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep folders (tinyloc sweep --out)")
    args = parser.parse_args(argv)
    for sweep in args.sweeps:
        print("\n".join(report_lines(sweep)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
