#!/usr/bin/env python
"""A markdown table of classical-baseline runs (the ``baselines.csv`` of ``tinyloc baselines``).

    python scripts/baselines_table.py DIR/baselines.csv [DIR2/baselines.csv ...]

One row per model, each run named by its folder: the grid point chosen on validation, validation
macro-F1, test macro-F1 / accuracy, the same grid point refit on train + val and scored on test,
and the 8-bit footprint of the refit model (``training/baselines.py``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

COLUMNS = ("name", "params", "val_macro_f1", "test_macro_f1", "test_accuracy", "refit_test_macro_f1",
           "refit_test_accuracy", "refit_footprint_bytes")


def read_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise SystemExit(f"baselines_table: cannot read {path}: {error}")
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise SystemExit(f"baselines_table: {path}: no rows, or no column {', '.join(missing)} "
                         "(a baselines.csv of `tinyloc baselines`)")
    return rows


def table_lines(paths: list[Path]) -> list[str]:
    lines = ["| data | model | chosen on validation | val macro-F1 | test macro-F1 / acc. "
             "| refit: test macro-F1 / acc. | refit footprint KiB (8-bit) |",
             "|---|---|---|---|---|---|---|"]
    for path in paths:
        for row in read_rows(path):
            pct = {c: 100 * float(row[c]) for c in COLUMNS[2:7]}
            lines.append(
                f"| {path.parent.name} | {row['name']} | `{row['params']}` | {pct['val_macro_f1']:.2f} "
                f"| {pct['test_macro_f1']:.2f} / {pct['test_accuracy']:.2f} "
                f"| {pct['refit_test_macro_f1']:.2f} / {pct['refit_test_accuracy']:.2f} "
                f"| {int(row['refit_footprint_bytes']) / 1024:,.1f} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baselines", nargs="+", type=Path, help="baselines.csv files")
    args = parser.parse_args(argv)
    print("\n".join(table_lines(args.baselines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
