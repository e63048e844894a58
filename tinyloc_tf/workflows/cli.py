"""``tinyloc sweep`` and ``tinyloc pipeline``, the orchestration verbs.

``tinyloc sweep``: train the grid, pick teachers, distil, convert and score every variant.

    tinyloc sweep --data DIR --out SWEEP [--family mamba|mdcsa|mlp|LIST|both|all] [--grid paper|small]
                  [--max-params N] [--ensemble N] [--jobs N | --ray ADDRESS|auto|local]
                  [--epochs --patience --batch-size --lr --seed]
                  [--distill-method viterbi|marginals|features] [--quant int8,dynamic,...|none]
                  [--no-distill] [--no-baselines]

Rerunning the same command resumes: finished runs, variants and baselines are skipped.
Then ``tinyloc report SWEEP`` writes the tables and plots. See docs/sweeps.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tinyloc_tf.arguments import jobs, non_negative_int, positive_float, positive_int, seed, unit_interval
from tinyloc_tf.compression.variants import add_convert_arguments, convert_options_from_args, sweep_variant_names
from tinyloc_tf.data.representation import REPRESENTATIONS
from tinyloc_tf.deployment.targets import target_names
from tinyloc_tf.families import family_names, grid_names
from tinyloc_tf.training.recipe import add_recipe_arguments, recipe_from_args
from tinyloc_tf.workflows.plan import DEFAULT_VARIANTS, check_families, parse_variants


def register(subparsers) -> None:
    _register_sweep(subparsers)
    _register_pipeline(subparsers)


def _register_sweep(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="train a grid of models, distil the best into the smaller ones, convert and score them",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder")
    parser.add_argument("--out", required=True, help="sweep folder (created; reused to resume)")
    parser.add_argument("--family", default="both",
                        help=f"{' | '.join(family_names())}, a comma-separated list of them, both (mdcsa and mamba, "
                             "the paper's; default) or all (every family)")
    parser.add_argument("--grid", default="small", help=f"configuration grid: {' | '.join(grid_names())} (default small)")
    parser.add_argument("--max-params", type=positive_int,
                        help="skip configurations (and ensembles, counting all members) with more trainable parameters")
    parser.add_argument("--ensemble", type=positive_int, default=1, metavar="N",
                        help="also train every configuration with N-1 more seeds and score the ensembles of its "
                             "first 2..N seeds (emissions and CRF averaged) as candidates (default 1: none)")
    where = parser.add_argument_group("where runs execute")
    where.add_argument("--jobs", type=jobs, default=1,
                       help="parallel worker processes (default 1); with --ray local: the instance's CPUs")
    where.add_argument("--ray", metavar="ADDRESS",
                       help="run each job as a Ray task: 'auto' (running cluster), 'local' (start one here) "
                            "or a cluster address; the sweep folder must be on a file system all nodes share")
    fit = parser.add_argument_group("training (every run)")
    fit.add_argument("--epochs", type=positive_int, default=30, help="most epochs per run (default 30)")
    fit.add_argument("--patience", type=non_negative_int, default=5, help="early-stopping patience on val macro-F1 (default 5)")
    fit.add_argument("--batch-size", type=positive_int, default=64, help="batch size (default 64)")
    fit.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    fit.add_argument("--seed", type=seed, default=0, help="seed of training and of the conversion (calibration subset, QAT) (default 0)")
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
                      help=f"variants to convert and score, comma-separated from {', '.join(sweep_variant_names())}, "
                           f"or 'none' (default {','.join(DEFAULT_VARIANTS)})")
    add_convert_arguments(parser, with_seed=False, sweep=True)  # the sweep's --seed seeds conversion too
    parser.add_argument("--no-baselines", action="store_true", help="skip k-NN, random forest, logistic regression")
    parser.set_defaults(handler=_sweep)


def _sweep(args) -> int:
    # Argument errors before TensorFlow or Ray load.
    check_families(args.family)
    recipe_from_args(args)
    variants = parse_variants(args.quant)
    from tinyloc_tf.workflows.sweep import sweep

    result = sweep(
        args.data, args.out, family=args.family, grid=args.grid, max_params=args.max_params,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=args.seed,
        int8_friendly=not args.exact, recipe=recipe_from_args(args), alpha=args.alpha, distill_method=args.distill_method,
        distill=not args.no_distill, baselines=not args.no_baselines, variants=variants,
        convert_options=convert_options_from_args(args), jobs=args.jobs, ray_address=args.ray,
        ensemble=args.ensemble,
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


def _register_pipeline(subparsers) -> None:
    from tinyloc_tf.workflows import pipeline

    parser = subparsers.add_parser(
        "pipeline", help="main job: synthetic house -> sweep -> int8 -> report -> deploy on an emulated Cortex-M",
        description=pipeline.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--work", type=Path, default=Path("runs/pipeline"), help="working folder (default runs/pipeline)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the house, the split and training (default 0)")
    parser.add_argument("--grid", default="small",
                        help=f"sweep grid: {' | '.join(grid_names())} (default small; paper: hours)")
    # 40 epochs of batch 32 at lr 5e-3: enough optimiser steps for the smallest models on the
    # house's ~700 training windows (25 epochs of batch 64 at 1e-3 left H4 models untrained;
    # docs/training.md, "Recipe").
    parser.add_argument("--epochs", type=positive_int, default=40, help="most epochs per run (default 40)")
    parser.add_argument("--patience", type=non_negative_int, default=10, help="early-stopping patience (default 10)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="batch size (default 32)")
    parser.add_argument("--lr", type=positive_float, default=5e-3, help="peak learning rate (default 5e-3)")
    # Distillation is off by default: on the house it has not been shown to help (the plain KD
    # made Mamba H4L1 worse, docs/training.md), and it doubles the sweep's time.
    parser.add_argument("--distill", action="store_true",
                        help="distil each family's teacher into its smaller models (needs --train-steps 0)")
    # Mamba trained on 60-sample windows needs no state resets over a whole stream and is the
    # streaming pick of the house's budget grid (docs/streaming.md, "Training on longer windows").
    parser.add_argument("--train-steps", type=non_negative_int, default=60,
                        help="Mamba runs train on windows of N samples cut from the training streams "
                             "(0: the prepared 20-sample windows; default 60)")
    parser.add_argument("--no-streaming", action="store_true",
                        help="no Mamba streaming step models (stream-int16x8): window models only")
    parser.add_argument("--representation", choices=REPRESENTATIONS, default="powed",
                        help="input representation of the prepared house (default powed; docs/data.md)")
    parser.add_argument("--jobs", type=jobs, default=2,
                        help="runs in parallel worker processes (default 2: small models use one core well)")
    parser.add_argument("--target", choices=target_names(), default="m55", help="Cortex-M board (default m55; docs/firmware.md)")
    parser.add_argument("--ram-kb", type=positive_int, default=32, help="RAM and flash budget of the deployed model in KiB (default 32)")
    parser.add_argument("--backend", choices=("auto", "tflm", "aot"), default="auto",
                        help="firmware model runner: auto = tflm when TFLM_ROOT is set, else aot")
    parser.set_defaults(handler=pipeline.run_pipeline)
