"""Plain training vs the paper's KD vs the KD variants, on one prepared dataset.

    .venv/bin/python scripts/compare_distill.py --data DIR --work DIR \
        --teacher mamba:32:1 --student mamba:4:1 --student mamba:8:1 --seeds 0,1,2

Trains the teacher once (``WORK/teacher``), then for every student and seed: the student
without a teacher (``none``), and one distillation per method (``viterbi`` = the paper's
one-hot KD, ``marginals``, ``features``). ``--teacher-seeds 0,1,2`` trains the teacher once
per seed (``WORK/teacher``, ``WORK/teacher-seed1``, ...) and distils from the ensemble; its
students are kept apart (``METHOD-ensemble3``), so one WORK holds both comparisons and shares
the ``none`` runs. Every run is an ordinary run folder under
``WORK``; finished runs are reused, so an interrupted comparison resumes. The recipe flags of
``tinyloc train`` (``--gain-db``, ``--dropout``, ...) apply to the teacher and every student. Prints a
markdown table of mean and standard deviation over seeds of validation and test macro-F1
and test accuracy (the test set is scored once per run, selection is on validation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from tinyloc_tf.errors import TinylocError
from tinyloc_tf.training.artifacts import read_metrics
from tinyloc_tf.training.distill import METHODS, distill_run
from tinyloc_tf.training.recipe import add_recipe_arguments, recipe_from_args
from tinyloc_tf.training.trainer import DEFAULTS, train_run


def model_spec(text: str) -> tuple[str, int, int]:
    family, hidden, layers = text.split(":")
    return family, int(hidden), int(layers)


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--work", type=Path, required=True, help="folder for every run (resumable)")
    parser.add_argument("--teacher", type=model_spec, default=("mamba", 32, 1), help="FAMILY:H:L (default mamba:32:1)")
    parser.add_argument("--student", type=model_spec, action="append", help="FAMILY:H:L, repeatable (default mamba:4:1)")
    parser.add_argument("--methods", default="none," + ",".join(METHODS), help="comma-separated; none = no teacher")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--feature-weight", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=DEFAULTS["patience"])
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    parser.add_argument("--teacher-lr", type=float, default=None, help="default: --lr")
    parser.add_argument("--teacher-seeds", default="0",
                        help="comma-separated teacher seeds; more than one is an ensemble teacher (default 0)")
    parser.add_argument("--json", type=Path, help="also write every run's headline numbers here")
    add_recipe_arguments(parser)
    args = parser.parse_args()
    students = args.student or [("mamba", 4, 1)]
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    try:
        recipe = recipe_from_args(args)
        for family in dict.fromkeys([args.teacher[0], *(family for family, _, _ in students)]):
            recipe.check_family(family)  # the teacher and every student train with the recipe
        if any(method != "none" for method in methods):
            recipe.check_distillation()
    except TinylocError as exc:
        parser.error(str(exc))
    fit = {"epochs": args.epochs, "patience": args.patience, "batch_size": args.batch_size, "verbose": 1,
           "recipe": recipe}

    teacher_seeds = [int(s) for s in args.teacher_seeds.split(",") if s]
    if "features" in methods and len(teacher_seeds) > 1:
        parser.error("method 'features' takes one teacher; drop it from --methods or use one --teacher-seeds")
    teacher_runs = [args.work / ("teacher" if s == 0 else f"teacher-seed{s}") for s in teacher_seeds]
    teachers = [
        read_metrics(run) or train_run(args.data, *args.teacher, run, lr=args.teacher_lr or args.lr, seed=s, **fit)
        for s, run in zip(teacher_seeds, teacher_runs)
    ]
    ensemble = f"-ensemble{len(teacher_runs)}" if len(teacher_runs) > 1 else ""
    rows = []
    for family, hidden, layers in students:
        for method in methods:
            for seed in seeds:
                folder = method if method == "none" else method + ensemble
                run = args.work / f"{family}_H{hidden}L{layers}" / folder / f"seed{seed}"
                result = read_metrics(run)
                if result is None and method == "none":
                    result = train_run(args.data, family, hidden, layers, run, lr=args.lr, seed=seed, **fit)
                elif result is None:
                    result = distill_run(
                        teacher_runs, args.data, family, hidden, layers, run, method=method, alpha=args.alpha,
                        feature_weight=args.feature_weight, lr=args.lr, seed=seed, **fit,
                    )
                rows.append({
                    "student": f"{family} H{hidden}L{layers}", "method": folder, "seed": seed,
                    "params": result["params"], "val_macro_f1": result["val_macro_f1"],
                    "test_macro_f1": result["test_macro_f1"], "test_accuracy": result["test_accuracy"],
                    "epochs_run": result["epochs_run"],
                })

    t_family, t_hidden, t_layers = args.teacher
    for seed, teacher in zip(teacher_seeds, teachers):
        print(f"\nteacher {t_family} H{t_hidden}L{t_layers} seed {seed}: {teacher['params']:,} params, "
              f"val macro-F1 {100 * teacher['val_macro_f1']:.2f}, test macro-F1 {100 * teacher['test_macro_f1']:.2f}, "
              f"test accuracy {100 * teacher['test_accuracy']:.2f}")
    if ensemble:
        print(f"ensemble teacher of {len(teachers)} seeds: targets averaged over them")
    print(f"alpha {args.alpha}, seeds {seeds}, mean ± sd over seeds (%)\n")
    print("| student | params | method | val macro-F1 | test macro-F1 | test accuracy |")
    print("|---|---:|---|---:|---:|---:|")
    for student in dict.fromkeys(row["student"] for row in rows):
        for method in dict.fromkeys(row["method"] for row in rows):
            group = [row for row in rows if row["student"] == student and row["method"] == method]
            print(f"| {student} | {group[0]['params']:,} | {method} | "
                  f"{mean_sd([r['val_macro_f1'] for r in group])} | {mean_sd([r['test_macro_f1'] for r in group])} | "
                  f"{mean_sd([r['test_accuracy'] for r in group])} |")
    if args.json:
        args.json.write_text(json.dumps({"teachers": teachers, "runs": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
