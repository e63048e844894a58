#!/usr/bin/env python
"""How much a sweep's validation macro-F1 owes to classes absent from the validation split.

    python scripts/absent_classes.py SWEEP [SWEEP ...]

``tinyloc_tf.training.metrics.macro_f1`` averages F1 over the classes present in the truth *or*
the prediction (scikit-learn's default). A class with no validation sample that a model predicts
once (a false positive) enters that mean with F1 = 0: on the 13 floors, where the grouped split's
validation users never visited one floor, a single such scan costs 1/13 of the score, 7.7 points.
This script recomputes, from the confusion matrices every int8-family variant of a sweep records
(`runs/*/variants/{int8,selective,qat}.json`), the macro-F1 over the classes present in the
truth only, on validation and on test, and prints per sweep: how many classes each split lacks,
the Spearman rank correlation between validation and test under each definition, the variants
whose validation score moves by more than a point, and the best candidate under 32 and 64 KiB
(flash and arena both within) by each definition. Nothing is trained or converted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TFLM_VARIANTS = ("int8", "selective", "qat")


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


def sweep_rows(sweep: Path) -> list[dict]:
    from tinyloc_tf.training.metrics import macro_f1

    rows = []
    for path in sorted(sweep.glob("runs/*/variants/*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(f"absent_classes: cannot read {path}: {error}")
        if record.get("variant") not in TFLM_VARIANTS:
            continue
        row = {"model": f"{path.parent.parent.name} {record['variant']}", "flash": record["flash_bytes"],
               "arena": record.get("arena_bytes")}
        for split in ("val", "test"):
            matrix = record[split]["confusion_matrix"]
            row[f"{split}_union"] = 100 * macro_f1(*labels_from_confusion(matrix))
            row[f"{split}_present"] = 100 * macro_f1_present(matrix)
            row[f"{split}_absent"] = int((np.asarray(matrix).sum(axis=1) == 0).sum())
        rows.append(row)
    if not rows:
        raise SystemExit(f"absent_classes: {sweep}: no int8, selective or qat variants (runs/*/variants/*.json)")
    return rows


def best_under(rows: list[dict], budget_kb: int, score: str) -> dict | None:
    limit = budget_kb * 1024
    fitting = [r for r in rows if r["arena"] is not None and r["flash"] <= limit and r["arena"] <= limit]
    return max(fitting, key=lambda r: (r[score], -r["flash"])) if fitting else None


def report_lines(sweep: Path) -> list[str]:
    from scipy.stats import spearmanr

    rows = sweep_rows(sweep)
    lines = [f"{sweep}: {len(rows)} int8-family variants; classes without a sample: "
             f"validation {rows[0]['val_absent']}, test {rows[0]['test_absent']}"]
    for definition in ("union", "present"):
        rho = spearmanr([r[f"val_{definition}"] for r in rows], [r[f"test_{definition}"] for r in rows])[0]
        lines.append(f"  Spearman validation vs test, macro-F1 over classes {definition_name(definition)}: {rho:.3f}")
    for r in rows:
        if abs(r["val_union"] - r["val_present"]) > 1:
            lines.append(f"  {r['model']}: validation {r['val_union']:.2f} -> {r['val_present']:.2f}")
    for budget in (32, 64):
        for definition in ("union", "present"):
            best = best_under(rows, budget, f"val_{definition}")
            if best is not None:
                lines.append(f"  best under {budget} KiB, classes {definition_name(definition)}: {best['model']}, "
                             f"validation {best[f'val_{definition}']:.2f}, test {best[f'test_{definition}']:.2f}")
    return lines


def definition_name(definition: str) -> str:
    return "in truth or prediction (today's)" if definition == "union" else "in the truth"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep folders (tinyloc sweep --out)")
    args = parser.parse_args(argv)
    for sweep in args.sweeps:
        print("\n".join(report_lines(sweep)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
