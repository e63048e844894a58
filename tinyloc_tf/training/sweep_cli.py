"""``tinyloc sweep``: train the grid, pick teachers, distil, convert and score every variant.

    tinyloc sweep --data DIR --out SWEEP [--family mamba|mdcsa|both] [--grid paper|small]
                  [--max-params N] [--jobs N | --ray ADDRESS|auto|local]
                  [--epochs --patience --batch-size --lr --seed]
                  [--distill-method viterbi|marginals|features] [--quant int8,dynamic,...|none]
                  [--no-distill] [--no-baselines]

Rerunning the same command resumes: finished runs, variants and baselines are skipped.
Then ``tinyloc report SWEEP`` writes the tables and plots. See docs/sweeps.md.
"""

from __future__ import annotations

import argparse
import json

from tinyloc_tf.arguments import non_negative_int, positive_float, positive_int, unit_interval
from tinyloc_tf.training.recipe import add_recipe_arguments, recipe_from_args
from tinyloc_tf.training.sweep import DEFAULT_VARIANTS, GRIDS, VARIANTS, check_families, parse_variants


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="train a grid of models, distil the best into the smaller ones, convert and score them",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder")
    parser.add_argument("--out", required=True, help="sweep folder (created; reused to resume)")
    parser.add_argument("--family", default="both", help="mamba | mdcsa | both (default both)")
    parser.add_argument("--grid", default="small", help=f"configuration grid: {' | '.join(GRIDS)} (default small)")
    parser.add_argument("--max-params", type=positive_int, help="skip configurations with more trainable parameters")
    where = parser.add_argument_group("where runs execute")
    where.add_argument("--jobs", type=positive_int, default=1,
                       help="parallel worker processes (default 1); with --ray local: the instance's CPUs")
    where.add_argument("--ray", metavar="ADDRESS",
                       help="run each job as a Ray task: 'auto' (running cluster), 'local' (start one here) "
                            "or a cluster address; the sweep folder must be on a file system all nodes share")
    fit = parser.add_argument_group("training (every run)")
    fit.add_argument("--epochs", type=positive_int, default=30, help="most epochs per run (default 30)")
    fit.add_argument("--patience", type=non_negative_int, default=5, help="early-stopping patience on val macro-F1 (default 5)")
    fit.add_argument("--batch-size", type=positive_int, default=64, help="batch size (default 64)")
    fit.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    fit.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    fit.add_argument("--exact", action="store_true",
                     help="build the exact models instead of the int8-friendly form TFLM runs in int8")
    add_recipe_arguments(parser)
    kd = parser.add_argument_group("distillation")
    kd.add_argument("--distill-method", default="viterbi",
                    help="viterbi (paper) | marginals | features (default viterbi)")
    kd.add_argument("--alpha", type=unit_interval, default=0.1, help="weight of the CRF loss in KD (default 0.1)")
    kd.add_argument("--no-distill", action="store_true", help="skip distillation")
    comp = parser.add_argument_group("compression")
    comp.add_argument("--quant", default=",".join(DEFAULT_VARIANTS),
                      help=f"variants to convert and score, comma-separated from {', '.join(VARIANTS)}, "
                           f"or 'none' (default {','.join(DEFAULT_VARIANTS)})")
    comp.add_argument("--qat-epochs", type=positive_int, default=3, help="fine-tuning epochs of the qat variant (default 3)")
    parser.add_argument("--no-baselines", action="store_true", help="skip k-NN, random forest, logistic regression")
    parser.set_defaults(handler=_sweep)


def _sweep(args) -> int:
    # Argument errors before TensorFlow or Ray load.
    check_families(args.family)
    recipe_from_args(args)
    variants = parse_variants(args.quant)
    from tinyloc_tf.training.sweep import sweep

    result = sweep(
        args.data, args.out, family=args.family, grid=args.grid, max_params=args.max_params,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=args.seed,
        int8_friendly=not args.exact, recipe=recipe_from_args(args), alpha=args.alpha, distill_method=args.distill_method,
        distill=not args.no_distill, baselines=not args.no_baselines, variants=variants,
        qat_epochs=args.qat_epochs, jobs=args.jobs, ray_address=args.ray,
    )
    summary = {
        "out": str(args.out),
        "teachers": result["teachers"],
        "runs": {name: {"params": m["params"], "val_macro_f1": round(m["val_macro_f1"], 4)}
                 for name, m in result["runs"].items()},
        "variants": {name: sorted(records) for name, records in result["variants"].items()},
        "next": f"tinyloc report {args.out}",
    }
    print(json.dumps(summary, indent=2))
    return 0
