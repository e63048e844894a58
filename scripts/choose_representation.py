#!/usr/bin/env python
"""Choose UJIIndoorLoc's input representation by grouped cross-validation on trainingData.

    .venv/bin/python scripts/choose_representation.py --source ../shared/data/UJIndoorLoc.zip \
        [--labels area] [--folds 6] [--references -80 -70 -60 -50 -40 -20 0] [--out WORK/representation.csv]

One prepared validation split holds out four (user, phone) groups, and one of them (U11P13)
has 64 % of its scans: a representation that suits that user's phone wins it. Here every
(user, phone) group of trainingData is held out once (scikit-learn's ``GroupKFold``), a
multinomial logistic regression is fitted on the rest in each representation
(``data.representation``; ``relative`` at each ``--references`` dBm; ``minmax`` refitted on
each fold's training part), and the held-out macro-F1 is averaged over the folds. The test
file (validationData) is never read. Prints a markdown table, best first, and writes the
rows to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="UJIndoorLoc.zip or a folder with the two CSVs")
    parser.add_argument("--labels", choices=("area", "floor"), default="area")
    parser.add_argument("--folds", type=int, default=6, help="GroupKFold folds over the (user, phone) groups (default 6)")
    parser.add_argument("--references", type=float, nargs="+", default=[-80, -70, -60, -50, -40, -20, 0],
                        help="reference_dbm values of the relative representation to try")
    parser.add_argument("--out", type=Path, default=None, help="write the table as CSV here")
    args = parser.parse_args()
    if args.folds < 2:
        parser.error(f"--folds must be at least 2, got {args.folds}")

    from tinyloc_tf.data.uji import NOT_HEARD_DBM
    from tinyloc_tf.errors import TinylocError

    bad = [r for r in args.references if not NOT_HEARD_DBM < r <= 0]
    if bad:
        parser.error(f"--references must lie in ({NOT_HEARD_DBM:g}, 0] dBm, got {', '.join(f'{r:g}' for r in bad)}")
    try:
        rows = score(args)
    except TinylocError as exc:
        print(f"choose_representation: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(f"\n{args.folds}-fold grouped cross-validation on trainingData, logistic regression, {args.labels} labels\n")
    print("| representation | reference dBm | held-out macro-F1 (mean ± sd over folds) | per fold |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['representation']} | {row['reference_dbm']} | {row['macro_f1_mean']:.2f} ± "
              f"{row['macro_f1_sd']:.2f} | {row['per_fold']} |")
    return 0


def score(args) -> list[dict]:
    """One row per candidate representation, best first."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import GroupKFold
    from tqdm.auto import tqdm

    from tinyloc_tf.data.representation import fit_representation
    from tinyloc_tf.data.uji import NOT_HEARD_DBM, label_scans, read_uji, rssi_dbm, user_phone_groups
    from tinyloc_tf.errors import TinylocError

    # A quick screen: 200 lbfgs iterations (the baselines allow 2000), not always converged.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    tables = read_uji(args.source)
    y = label_scans(tables, args.labels).train
    groups = user_phone_groups(tables.train)
    if args.folds > len(set(groups.tolist())):
        raise TinylocError(f"--folds {args.folds}: {args.source} has only {len(set(groups.tolist()))} (user, phone) groups")
    dbm = rssi_dbm(tables.train)
    candidates = [("dbm", None), ("minmax", None), ("powed", None)] + [("relative", r) for r in args.references]
    folds = list(GroupKFold(args.folds).split(dbm, y, groups))
    rows = []
    for kind, reference in tqdm(candidates, desc="representations"):
        scores = []
        for train, held_out in folds:
            options = {} if reference is None else {"reference_dbm": reference}
            representation, _ = fit_representation(kind, dbm[train], NOT_HEARD_DBM, **options)
            X_train, _ = representation.apply(dbm[train])
            X_held_out, _ = representation.apply(dbm[held_out])
            model = LogisticRegression(C=10.0, max_iter=200).fit(X_train, y[train])
            scores.append(100 * f1_score(y[held_out], model.predict(X_held_out), average="macro"))
        rows.append({"representation": kind, "reference_dbm": "" if reference is None else reference,
                     "macro_f1_mean": round(statistics.mean(scores), 2),
                     "macro_f1_sd": round(statistics.stdev(scores), 2),
                     "per_fold": " ".join(f"{s:.1f}" for s in scores)})
    rows.sort(key=lambda row: -row["macro_f1_mean"])
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
