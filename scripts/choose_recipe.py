#!/usr/bin/env python
"""Choose the input representation and the training recipe on validation data.

    .venv/bin/python scripts/choose_recipe.py --data DIR [DIR ...] --out WORK \
        [--model mamba --hidden 16 --layers 1] [--variants default,noaug,ema_0.998+strong_aug,...] [--seeds 0]

Trains one model configuration for every (prepared data folder, recipe variant, seed) and
prints validation macro-F1 only (test scores stay unread here: this is where defaults are
chosen). Data folders differ in what ``tinyloc data prepare`` made (representation, split);
recipe variants are named changes to the default :class:`~tinyloc_tf.training.recipe.Recipe`
(``VARIANTS``). ``--quant int8|qat`` also converts each run as the sweep does and scores the
``.tflite`` on validation in host TFLM, the form a device runs (input on the int8 grid
included). Runs are reused when the same command is repeated. Writes
``WORK/choose_recipe.csv`` and prints it as a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from dataclasses import replace
from pathlib import Path

from tinyloc_tf.training.recipe import Recipe, no_augmentation

NO_AUG = no_augmentation()
VARIANTS = {
    "default": {},
    "legacy": "legacy",  # constant lr, Adam, no augmentation: the recipe before recipes
    "noaug": NO_AUG,
    "no_wd": dict(weight_decay=0.0),
    "constant_lr": dict(schedule="constant", warmup_epochs=0),
    "ap_dropout_only": dict(NO_AUG, ap_dropout=0.1),
    "gain_only": dict(NO_AUG, gain_db=5.0),
    "noise_only": dict(NO_AUG, noise_db=2.0),
    "strong_aug": dict(ap_dropout=0.2, noise_db=3.0, gain_db=8.0),
    "stronger_aug": dict(ap_dropout=0.3, noise_db=4.0, gain_db=10.0),
    "ap_dropout_0.3": dict(ap_dropout=0.3),
    "gain_10": dict(gain_db=10.0),
    "gain_15": dict(gain_db=15.0),
    "gain_20": dict(gain_db=20.0),
    "gain_30": dict(gain_db=30.0),
    "gain_40": dict(gain_db=40.0),
    "sensitivity_10": dict(sensitivity_db=10.0),
    "sensitivity_20": dict(sensitivity_db=20.0),
    "sensitivity_30": dict(sensitivity_db=30.0),
    "slope_0.1": dict(slope=0.1),
    "slope_0.2": dict(slope=0.2),
    "slope_0.3": dict(slope=0.3),
    "ap_dropout_0.2": dict(ap_dropout=0.2),
    "noise_4": dict(noise_db=4.0),
    "noise_1": dict(noise_db=1.0),
    "ap_dropout_0.05": dict(ap_dropout=0.05),
    "wd_1e-3": dict(weight_decay=1e-3),
    "dropout_0.3": dict(dropout=0.3),
    "dropout_0.1": dict(dropout=0.1),
    "dropout_0.5": dict(dropout=0.5),
    "windows": dict(packet_drop=0.1, time_shift=1),
    "windows_drop": dict(packet_drop=0.1),
    "windows_shift": dict(time_shift=1),
    "ema_0.98": dict(ema=0.98),
    "ema_0.99": dict(ema=0.99),
    "ema_0.998": dict(ema=0.998),
    "shortcut": dict(shortcut=True),
}


def recipe_for(variant: str) -> Recipe:
    """The recipe of a variant name; ``a+b`` applies the changes of ``a`` and then ``b``."""
    if variant == "legacy":
        return Recipe.legacy()
    changes = {}
    for part in variant.split("+"):
        changes.update(VARIANTS[part])
    return replace(Recipe(), **changes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="mamba")
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--variants", default="default,legacy,noaug")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--quant", choices=("int8", "qat"), default=None,
                        help="also score each run's int8 .tflite (this variant) on validation in host TFLM")
    args = parser.parse_args()

    from tinyloc_tf.training.trainer import train_run

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if any(part not in VARIANTS for part in v.split("+"))]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    combined_legacy = [v for v in variants if v != "legacy" and "legacy" in v.split("+")]
    if combined_legacy:
        parser.error(f"'legacy' is a whole recipe and combines with nothing: {', '.join(combined_legacy)}")
    rows = []
    for data in args.data:
        for variant in variants:
            scores, int8_scores = [], []
            for seed in args.seeds:
                out = args.out / data.name / f"{args.model}-H{args.hidden}L{args.layers}-{variant}-s{seed}"
                metrics_path = out / "metrics.json"
                if metrics_path.is_file():
                    metrics = json.loads(metrics_path.read_text())
                else:
                    metrics = train_run(data, args.model, args.hidden, args.layers, out, epochs=args.epochs,
                                        batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=seed,
                                        int8_friendly=True, recipe=recipe_for(variant), verbose=0)
                scores.append(100 * metrics["val_macro_f1"])
                line = f"{data.name} {variant} seed {seed}: val macro-F1 {scores[-1]:.2f}"
                if args.quant:
                    int8_scores.append(100 * int8_val_macro_f1(out, data, args.quant))
                    line += f", {args.quant} {int8_scores[-1]:.2f}"
                print(line, flush=True)
            row = {"data": data.name, "variant": variant, "seeds": len(scores), **mean_sd("val_macro_f1", scores)}
            if args.quant:
                row.update(mean_sd(f"val_{args.quant}_macro_f1", int8_scores))
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "choose_recipe.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    quant_column = f" {args.quant} val macro-F1 (mean ± sd) |" if args.quant else ""
    print(f"\n| data | recipe | val macro-F1 (mean ± sd) |{quant_column}\n|---|---|---|{'---|' if args.quant else ''}")
    for row in rows:
        line = f"| {row['data']} | {row['variant']} | {row['val_macro_f1_mean']:.2f} ± {row['val_macro_f1_sd']:.2f} |"
        if args.quant:
            key = f"val_{args.quant}_macro_f1"
            line += f" {row[key + '_mean']:.2f} ± {row[key + '_sd']:.2f} |"
        print(line)
    return 0


def mean_sd(name: str, scores: list[float]) -> dict:
    return {f"{name}_mean": round(statistics.mean(scores), 2),
            f"{name}_sd": round(statistics.stdev(scores), 2) if len(scores) > 1 else 0.0}


def int8_val_macro_f1(run_dir: Path, data_dir: Path, quant: str) -> float:
    """Validation macro-F1 of the run's ``quant`` ``.tflite`` in host TFLM (converted as the sweep
    converts, kept as ``RUN/val_<quant>.json``); the test split is not read."""
    cached = run_dir / f"val_{quant}.json"
    if cached.is_file():
        return json.loads(cached.read_text())["macro_f1"]
    from tinyloc_tf.compression.variants import ConvertOptions
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.training.artifacts import load_run
    from tinyloc_tf.workflows.compress import convert_variant, score_variant

    data = load_prepared(data_dir)
    tagger, _ = load_run(run_dir)
    result = convert_variant(tagger, data, quant, ConvertOptions())
    scores = score_variant(result.tflite, data, "tflm", splits=("val",))["val"]
    cached.write_text(json.dumps({"macro_f1": scores["macro_f1"], "accuracy": scores["accuracy"]}))
    return scores["macro_f1"]


if __name__ == "__main__":
    raise SystemExit(main())
