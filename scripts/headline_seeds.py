#!/usr/bin/env python
"""Reproduce the README's headline rows over several seeds: train, convert, score in TFLM.

    .venv/bin/python scripts/headline_seeds.py --data DIR --model mamba --hidden 16 --layers 1 \
        --quant qat --out WORK [--seeds 0 1 2] [--epochs 20 --patience 5 --batch-size 128 --lr 3e-3] \
        [recipe flags of tinyloc train, e.g. --ema 0.998]

For each seed: ``tinyloc train`` (int8-friendly, the recipe the flags give), with ``--refit``
``tinyloc refit`` (train + val, as the shipped models), ``tinyloc convert
--quant QUANT`` and ``tinyloc evaluate`` of the ``.tflite`` on val and test in host TFLM, then
the mean and sample standard deviation over the seeds. A shipped model is one seed of such a
row; this says how much of its score is the seed. Runs and variants already in ``WORK`` are
reused, so a repeated command only prints. ``--from-run SEED=RUN`` reuses a finished run
folder (for example the sweep's seed-0 run) instead of training that seed again. With
``--ensemble N`` each row seed S is an ensemble (``tinyloc ensemble``) of N runs trained with
seeds S*N .. S*N+N-1 (seed 0: seeds 0 .. N-1, as the sweep's ``--ensemble``), refit member by
member. ``--quant stream-int8|stream-int16x8`` (Mamba) makes the streaming step model as the sweep
does (``compress_run``: calibrated on the training streams) and scores it over whole val and test
streams with fixed-lag Viterbi (``--stream-lag``, default 10) and the state reset every
``--stream-reset-every`` samples (default 0: never), the numbers of ``tinyloc evaluate
--streaming``. Writes ``WORK/headline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
from pathlib import Path

from tinyloc_tf.training.recipe import Recipe, add_recipe_arguments, recipe_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--quant", default="int8", choices=("int8", "qat", "stream-int8", "stream-int16x8"))
    parser.add_argument("--stream-lag", type=int, default=10, help="stream-*: fixed-lag Viterbi's lag (default 10)")
    parser.add_argument("--stream-reset-every", type=int, default=0,
                        help="stream-*: reset the state every N samples (default 0: never)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--from-run", action="append", default=[], metavar="SEED=RUN")
    parser.add_argument("--ensemble", type=int, default=1, metavar="N",
                        help="each seed's model is an ensemble of N runs (seeds S*N .. S*N+N-1; default 1: none)")
    parser.add_argument("--refit", action="store_true",
                        help="convert the run refitted on train + val (`tinyloc refit`), as the shipped models are")
    add_recipe_arguments(parser)
    args = parser.parse_args()
    recipe = recipe_from_args(args)

    from tinyloc_tf.training.artifacts import load_run
    from tinyloc_tf.compression.convert import convert, data_metadata
    from tinyloc_tf.compression.variants import ConvertOptions, get_variant
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.deployment.host import evaluate_tflite
    from tinyloc_tf.training.ensemble import ensemble_run
    from tinyloc_tf.training.trainer import refit_run, train_run
    from tinyloc_tf.workflows.compress import compress_run

    reuse = {int(spec.split("=", 1)[0]): Path(spec.split("=", 1)[1]) for spec in args.from_run}
    data = load_prepared(args.data)
    if args.ensemble < 1:
        parser.error(f"--ensemble must be at least 1, got {args.ensemble}")
    config = f"{args.model}-H{args.hidden}L{args.layers}" + (f"x{args.ensemble}" if args.ensemble > 1 else "")
    name = f"{config}-{args.quant}" + ("-refit" if args.refit else "")
    streaming = get_variant(args.quant).streaming is not None
    if streaming:
        name += f"-lag{args.stream_lag}" + (f"-reset{args.stream_reset_every}" if args.stream_reset_every else "")

    def check_recipe(existing: Path) -> None:
        """A finished run is reused only if these flags made it."""
        trained_with = Recipe.from_dict(json.loads((existing / "config.json").read_text())["training"].get("recipe"))
        if trained_with != recipe:
            parser.error(f"{existing} was trained with another recipe ({trained_with}); give its flags or another --out")

    def single(seed: int) -> Path:
        run = args.out / f"{args.model}-H{args.hidden}L{args.layers}-s{seed}"
        if not (run / "metrics.json").is_file():
            train_run(args.data, args.model, args.hidden, args.layers, run, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=seed,
                      int8_friendly=True, recipe=recipe, verbose=0)
        check_recipe(run)
        return run

    rows = []
    for seed in args.seeds:
        run = args.out / (f"{config}-s{seed}" if args.ensemble > 1 else f"{args.model}-H{args.hidden}L{args.layers}-s{seed}")
        existing = run if (run / "metrics.json").is_file() else reuse.get(seed)
        if existing is not None:
            check_recipe(existing)
        if not (run / "metrics.json").is_file():
            if seed in reuse:
                shutil.copytree(reuse[seed], run, ignore=shutil.ignore_patterns("variants"))
            elif args.ensemble > 1:
                members = [single(seed * args.ensemble + k) for k in range(args.ensemble)]
                ensemble_run(members, run, data_dir=args.data)
            else:
                single(seed)
        if args.refit:
            refit = run.with_name(run.name + "-refit")
            if not (refit / "metrics.json").is_file():
                refit_run(run, refit, data_dir=args.data, verbose=0)
            run = refit
        if streaming:  # the sweep's own conversion and scoring (RUN/variants/stream-*.json)
            options = ConvertOptions(stream_lag=args.stream_lag, stream_reset_every=args.stream_reset_every)
            record = compress_run(run, data, [args.quant], options)[args.quant]
            if (record["streaming"]["lag"], record["streaming"]["reset_every"] or 0) != (
                    args.stream_lag, args.stream_reset_every):
                parser.error(f"{run}/variants/{args.quant}.json was scored with another lag or reset; use another --out")
            flash_bytes, scores = record["flash_bytes"], record
        else:
            tflite = run / f"{args.quant}.tflite"
            if not tflite.is_file():
                tagger, _ = load_run(run)
                result = convert(tagger, args.quant, representative=data.train.X, metadata=data_metadata(data),
                                 labels=data.train.y, validation=(data.val.X, data.val.y), seed=seed,
                                 qat_options={"progress": False, "epochs": 3})  # as the sweep
                tflite.write_bytes(result.tflite)
            flash_bytes = tflite.stat().st_size
            scores = {split: evaluate_tflite(str(tflite), args.data, split=split, runtime="tflm")
                      for split in ("val", "test")}
        rows.append({"seed": seed, "flash_bytes": flash_bytes,
                     **{f"{split}_{key}": scores[split][key] for split in ("val", "test")
                        for key in ("macro_f1", "accuracy")}})
        print(json.dumps(rows[-1]), flush=True)

    def summary(key):
        values = [100 * row[key] for row in rows]
        return {"mean": round(statistics.mean(values), 2),
                "sd": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0}

    # the data folder relative to the repository: the output names no folder of this machine
    data = os.path.relpath(args.data.absolute(), Path(__file__).resolve().parents[1])
    result = {"config": name, "data": data, "seeds": args.seeds, "ensemble": args.ensemble,
              "recipe": recipe.to_dict(), "runs": rows,
              **{key: summary(key) for key in ("val_macro_f1", "test_macro_f1", "test_accuracy")}}
    (args.out / "headline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"| {name} | {result['test_macro_f1']['mean']:.2f} ± {result['test_macro_f1']['sd']:.2f} | "
          f"{result['test_accuracy']['mean']:.2f} ± {result['test_accuracy']['sd']:.2f} | "
          f"{result['val_macro_f1']['mean']:.2f} ± {result['val_macro_f1']['sd']:.2f} | {len(rows)} seeds |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
