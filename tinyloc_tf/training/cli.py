"""``tinyloc train``, ``tinyloc distill``, ``tinyloc refit``, ``tinyloc ensemble``, ``tinyloc baselines``.

    tinyloc train --data DIR --model mamba|mdcsa|mlp --hidden H --layers L --out RUN
                  [--epochs N --batch-size B --lr LR --patience P --seed S --int8-friendly]
    tinyloc distill --teacher RUN [RUN ...] --data DIR --student-model mamba|mdcsa|mlp --hidden H
                    --layers L --out RUN2 [--alpha 0.1 --method viterbi|marginals|features]
    tinyloc refit RUN --out RUN2     (train + val, the run's best epoch count; test once)
    tinyloc ensemble RUN RUN [RUN ...] --out RUN2   (average several runs of one configuration)
    tinyloc baselines --data DIR --out DIR [--models knn,random_forest,logistic_regression]

Each prints the run's headline metrics as JSON on stdout; the full results are in the
output folder (see docs/training.md). TensorFlow is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinyloc_tf.arguments import jobs, non_negative_float, non_negative_int, positive_float, positive_int, seed, unit_interval
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.training.recipe import add_recipe_arguments, recipe_from_args
from tinyloc_tf.families import family_names
from tinyloc_tf.training.trainer import DEFAULTS

HEADLINE = (
    "family", "hidden", "layers", "params", "val_macro_f1", "val_accuracy", "test_macro_f1",
    "test_accuracy", "epochs_run", "best_epoch", "seconds_per_epoch", "wall_time_s",
)


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"],
                       help=f"most epochs to run (default {DEFAULTS['epochs']})")
    group.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"],
                       help=f"windows per batch (default {DEFAULTS['batch_size']})")
    group.add_argument("--lr", type=positive_float, default=DEFAULTS["lr"], help=f"Adam learning rate (default {DEFAULTS['lr']})")
    group.add_argument("--patience", type=non_negative_int, default=DEFAULTS["patience"],
                       help="epochs without a better validation macro-F1 before stopping "
                            f"(default {DEFAULTS['patience']})")
    group.add_argument("--seed", type=seed, default=DEFAULTS["seed"], help=f"random seed (default {DEFAULTS['seed']})")
    group.add_argument("--int8-friendly", action="store_true",
                       help="build the int8-friendly form of the model (Mamba: no EXP/LOG ops)")
    group.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    group.add_argument("--quiet", action="store_true", help="no progress bar")
    add_recipe_arguments(parser)


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train a model on a prepared dataset (CRF NLL, early stopping on val macro-F1)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    train.add_argument("--model", required=True, help=f"model family: {' | '.join(family_names())}")
    train.add_argument("--hidden", type=positive_int, required=True, help="hidden size H")
    train.add_argument("--layers", type=positive_int, required=True, help="layers L (MDCSA: 1 or 3)")
    train.add_argument("--out", type=Path, required=True, help="run folder to write")
    _add_fit_options(train)
    train.set_defaults(handler=_train)

    distill = subparsers.add_parser(
        "distill", help="train a student from a teacher run (knowledge distillation)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    distill.add_argument("--teacher", type=Path, nargs="+", required=True, metavar="RUN",
                         help="teacher run folder (with model.keras); several runs are an ensemble teacher "
                              "(viterbi and marginals: their targets are averaged)")
    distill.add_argument("--data", type=Path, required=True, help="prepared dataset folder (the teacher's)")
    distill.add_argument("--student-model", required=True, help=f"student family: {' | '.join(family_names())}")
    distill.add_argument("--hidden", type=positive_int, required=True, help="student hidden size H")
    distill.add_argument("--layers", type=positive_int, required=True, help="student layers L")
    distill.add_argument("--out", type=Path, required=True, help="run folder to write")
    distill.add_argument("--alpha", type=unit_interval, default=0.1,
                         help="weight of the CRF loss; 1 - alpha weighs the teacher term (default 0.1)")
    distill.add_argument("--method", default="viterbi",
                         help="viterbi (paper: one-hot teacher path) | marginals (teacher CRF posteriors) | "
                              "features (viterbi + hidden-state matching); default viterbi")
    distill.add_argument("--feature-weight", type=non_negative_float, default=1.0,
                         help="weight of the hidden-state term for --method features (default 1)")
    _add_fit_options(distill)
    distill.set_defaults(handler=_distill)

    refit = subparsers.add_parser(
        "refit", help="retrain a run's configuration on train + val for its best epoch count, score test once",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    refit.add_argument("run", type=Path, help="finished run folder (its config, recipe and best epoch are reused)")
    refit.add_argument("--out", type=Path, required=True, help="run folder to write")
    refit.add_argument("--data", type=Path, help="prepared dataset folder (default: the run's own)")
    refit.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    refit.add_argument("--quiet", action="store_true", help="no output but the headline")
    refit.set_defaults(handler=_refit)

    ensemble = subparsers.add_parser(
        "ensemble", help="one model from several runs of a configuration: emissions and CRF weights averaged",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ensemble.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                          help="finished runs of one configuration on the same data (e.g. seeds 0, 1, 2)")
    ensemble.add_argument("--out", type=Path, required=True, help="run folder to write")
    ensemble.add_argument("--data", type=Path, help="prepared dataset folder (default: the runs' own)")
    ensemble.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    ensemble.set_defaults(handler=_ensemble)

    baselines = subparsers.add_parser(
        "baselines", help="k-NN, random forest and logistic regression on the same splits",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    baselines.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    baselines.add_argument("--out", type=Path, required=True, help="folder for baselines.json and baselines.csv")
    baselines.add_argument("--models", default="knn,random_forest,logistic_regression",
                           help="comma-separated subset (default: all three)")
    baselines.add_argument("--seed", type=seed, default=0, help="random forest / solver seed (default 0)")
    baselines.add_argument("--jobs", type=jobs, default=1, help="parallel jobs for k-NN and the forest (default 1)")
    baselines.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    baselines.add_argument("--quiet", action="store_true", help="no progress bar")
    baselines.set_defaults(handler=_baselines)


def _fit_kwargs(args) -> dict:
    return {
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "patience": args.patience, "seed": args.seed, "int8_friendly": args.int8_friendly,
        "overwrite": args.overwrite, "verbose": 0 if args.quiet else 1, "recipe": recipe_from_args(args),
    }


def _print_headline(metrics: dict, out: Path) -> None:
    summary = {key: metrics[key] for key in HEADLINE if key in metrics}
    if "distill" in metrics:
        summary["method"] = metrics["distill"]["method"]
    summary["out"] = str(out)
    print(json.dumps(summary, indent=2))


def _train(args) -> int:
    from tinyloc_tf.training.trainer import check_family, train_run

    check_family(args.model)  # before TensorFlow loads: a typo fails in milliseconds
    metrics = train_run(args.data, args.model, args.hidden, args.layers, args.out, **_fit_kwargs(args))
    _print_headline(metrics, args.out)
    return 0


def _distill(args) -> int:
    from tinyloc_tf.training.distill import METHODS, distill_run
    from tinyloc_tf.training.trainer import check_family

    check_family(args.student_model)
    if args.method not in METHODS:
        raise TinylocError(f"unknown --method {args.method!r}; expected one of {', '.join(METHODS)}")
    metrics = distill_run(
        args.teacher, args.data, args.student_model, args.hidden, args.layers, args.out,
        alpha=args.alpha, method=args.method, feature_weight=args.feature_weight, **_fit_kwargs(args),
    )
    _print_headline(metrics, args.out)
    return 0


def _refit(args) -> int:
    from tinyloc_tf.training.trainer import refit_run

    if not (args.run / "config.json").is_file() or not (args.run / "metrics.json").is_file():
        raise TinylocError(f"{args.run}: not a finished run folder (config.json and metrics.json missing)")
    metrics = refit_run(args.run, args.out, data_dir=args.data, overwrite=args.overwrite,
                        verbose=0 if args.quiet else 1)
    _print_headline(metrics, args.out)
    return 0


def _ensemble(args) -> int:
    from tinyloc_tf.training.ensemble import ensemble_run

    metrics = ensemble_run(args.runs, args.out, data_dir=args.data, overwrite=args.overwrite)
    _print_headline(metrics, args.out)
    return 0


def _baselines(args) -> int:
    from tinyloc_tf.training.baselines import run_baselines

    models = tuple(name.strip() for name in args.models.split(",") if name.strip())
    if not models:
        raise TinylocError(f"--models {args.models!r} names no model; give a comma-separated subset of "
                           "knn,random_forest,logistic_regression")
    results = run_baselines(
        args.data, args.out, models=models, seed=args.seed, n_jobs=args.jobs,
        overwrite=args.overwrite, verbose=0 if args.quiet else 1,
    )
    table = [
        {key: result[key] for key in ("name", "params", "val_macro_f1", "test_macro_f1", "test_accuracy",
                                      "footprint_bytes", "footprint_bytes_float32")}
        for result in results
    ]
    print(json.dumps(table, indent=2))
    print(f"wrote {args.out / 'baselines.json'} and {args.out / 'baselines.csv'}", file=sys.stderr)
    return 0
