#!/usr/bin/env python
"""Choose UJIIndoorLoc's input representation by grouped cross-validation on trainingData.

    .venv/bin/python scripts/choose_representation.py --source ../shared/data/UJIndoorLoc.zip \
        [--labels area] [--folds 6] [--references -80 -70 -60 -50 -40 -20 0] [--out WORK/representation.csv]
    .venv/bin/python scripts/choose_representation.py --source ../shared/data/UJIndoorLoc.zip \
        --model mlp:48:1 --representations dbm powed relative --references -50 \
        --epochs 100 --patience 15 --batch-size 32 --lr 0.005 --gain-db 20 --dropout 0.1

One prepared validation split holds out four (user, phone) groups, and one of them (U11P13)
has 64 % of its scans: a representation that suits that user's phone wins it. Here every
(user, phone) group of trainingData is held out once (scikit-learn's ``GroupKFold``), a model
is fitted on the rest in each representation (``data.representation``; ``relative`` at each
``--references`` dBm; ``minmax`` refitted on each fold's training part), and the held-out
macro-F1 is averaged over the folds. The test file (validationData) is never read.

``--model logistic`` (default): a multinomial logistic regression, a quick screen.
``--model FAMILY:H:L``: the neural model with the ``tinyloc train`` recipe flags, one run per
fold and representation (about a minute each for an MLP on 2 cores); the held-out fold is also
its early-stopping set, the same for every representation, so the comparison stays paired.
Prints a markdown table, best first, and writes the rows to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

from tinyloc_tf.errors import TinylocError

CANDIDATES = ("dbm", "minmax", "powed", "relative")


def model_spec(text: str) -> tuple[str, int, int] | None:
    """``logistic`` -> None; ``FAMILY:H:L`` -> (family, hidden, layers)."""
    if text == "logistic":
        return None
    from tinyloc_tf.families import family_names

    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in family_names() or not (parts[1].isdigit() and parts[2].isdigit()):
        raise argparse.ArgumentTypeError(f"expected logistic or FAMILY:H:L with FAMILY one of "
                                         f"{', '.join(family_names())}, got {text!r}")
    return parts[0], int(parts[1]), int(parts[2])


def main() -> int:
    from tinyloc_tf.training.recipe import add_recipe_arguments, recipe_from_args
    from tinyloc_tf.training.trainer import DEFAULTS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="UJIndoorLoc.zip or a folder with the two CSVs")
    parser.add_argument("--labels", choices=("area", "floor"), default="area")
    parser.add_argument("--folds", type=int, default=6, help="GroupKFold folds over the (user, phone) groups (default 6)")
    parser.add_argument("--representations", nargs="+", choices=CANDIDATES, default=list(CANDIDATES),
                        help="representations to compare (default: all)")
    parser.add_argument("--references", type=float, nargs="+", default=[-80, -70, -60, -50, -40, -20, 0],
                        help="reference_dbm values of the relative representation to try")
    parser.add_argument("--model", type=model_spec, default=None, metavar="logistic|FAMILY:H:L",
                        help="logistic regression (default) or a neural model, e.g. mlp:48:1")
    training = parser.add_argument_group("training (--model FAMILY:H:L)")
    training.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    training.add_argument("--patience", type=int, default=DEFAULTS["patience"])
    training.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    training.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    training.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    add_recipe_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="write the table as CSV here")
    args = parser.parse_args()
    if args.folds < 2:
        parser.error(f"--folds must be at least 2, got {args.folds}")

    from tinyloc_tf.data.uji import NOT_HEARD_DBM

    bad = [r for r in args.references if not NOT_HEARD_DBM < r <= 0]
    if bad:
        parser.error(f"--references must lie in ({NOT_HEARD_DBM:g}, 0] dBm, got {', '.join(f'{r:g}' for r in bad)}")
    try:
        args.recipe = recipe_from_args(args)
        if args.model is not None:
            args.recipe.check_family(args.model[0])
    except TinylocError as exc:
        parser.error(str(exc))
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
    name = "logistic regression" if args.model is None else "{} H{}L{}".format(*args.model)
    print(f"\n{args.folds}-fold grouped cross-validation on trainingData, {name}, {args.labels} labels\n")
    print("| representation | reference dBm | held-out macro-F1 (mean ± sd over folds) | per fold |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['representation']} | {row['reference_dbm']} | {row['macro_f1_mean']:.2f} ± "
              f"{row['macro_f1_sd']:.2f} | {row['per_fold']} |")
    return 0


def fit_logistic(X_train, y_train, X_held_out):
    """Held-out predictions of a multinomial logistic regression at C = 10, fitted as the
    baselines fit it (to its optimum: ``training.baselines.make_estimator``)."""
    from tinyloc_tf.training.baselines import make_estimator

    return make_estimator("logistic_regression", {"C": 10.0}, seed=0, n_jobs=1).fit(X_train, y_train).predict(X_held_out)


def fit_neural(X_train, y_train, X_held_out, y_held_out, representation, classes: list[str], args):
    """Held-out predictions of ``args.model`` trained with ``args.recipe`` (the held-out fold
    stops the training early, as a prepared validation split would)."""
    import numpy as np

    from tinyloc_tf.data.prepared import PreparedDataset, Split
    from tinyloc_tf.training.trainer import fit_model

    def split(X, y):  # one scan is one sample: T = 1
        return Split(X[:, None, :].astype(np.float32), y[:, None].astype(np.int32))

    held_out = split(X_held_out, y_held_out)
    meta = {"features": [f"WAP{i + 1:03d}" for i in range(X_train.shape[1])], "classes": classes, "T": 1,
            "scaling": representation.to_meta()}
    data = PreparedDataset(path=args.source, train=split(X_train, y_train), val=held_out, test=held_out, meta=meta)
    family, hidden, layers = args.model
    model = fit_model(data, family, hidden, layers, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      patience=args.patience, seed=args.seed, recipe=args.recipe, verbose=0)[0]
    return np.asarray(model.decode(held_out.X)).ravel()


def score(args) -> list[dict]:
    """One row per candidate representation, best first."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import f1_score
    from sklearn.model_selection import GroupKFold
    from tqdm.auto import tqdm

    from tinyloc_tf.data.representation import fit_representation
    from tinyloc_tf.data.uji import NOT_HEARD_DBM, label_scans, read_uji, rssi_dbm, user_phone_groups

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    tables = read_uji(args.source)
    labels = label_scans(tables, args.labels)
    y = labels.train
    groups = user_phone_groups(tables.train)
    if args.folds > len(set(groups.tolist())):
        raise TinylocError(f"--folds {args.folds}: {args.source} has only {len(set(groups.tolist()))} (user, phone) groups")
    dbm = rssi_dbm(tables.train)
    candidates = [(kind, None) for kind in args.representations if kind != "relative"]
    if "relative" in args.representations:
        candidates += [("relative", r) for r in args.references]
    folds = list(GroupKFold(args.folds).split(dbm, y, groups))
    rows = []
    progress = tqdm(total=len(candidates) * len(folds), desc="representation x fold")
    for kind, reference in candidates:
        scores = []
        for train, held_out in folds:
            options = {} if reference is None else {"reference_dbm": reference}
            representation, _ = fit_representation(kind, dbm[train], NOT_HEARD_DBM, **options)
            X_train, _ = representation.apply(dbm[train])
            X_held_out, _ = representation.apply(dbm[held_out])
            if args.model is None:
                predicted = fit_logistic(X_train, y[train], X_held_out)
            else:
                predicted = fit_neural(X_train, y[train], X_held_out, y[held_out], representation,
                                       labels.classes, args)
            scores.append(100 * f1_score(y[held_out], predicted, average="macro"))
            progress.update()
        rows.append({"representation": kind, "reference_dbm": "" if reference is None else reference,
                     "macro_f1_mean": round(statistics.mean(scores), 2),
                     "macro_f1_sd": round(statistics.stdev(scores), 2),
                     "per_fold": " ".join(f"{s:.1f}" for s in scores)})
    progress.close()
    rows.sort(key=lambda row: -row["macro_f1_mean"])
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
