#!/usr/bin/env python
"""What the int8-friendly Mamba costs: validation macro-F1, exact vs int8-friendly maths.

TFLM runs EXP and LOG in float only, so ``build_model("mamba", ..., int8_friendly=True)``
replaces ``exp(dt*A)`` by ``relu(1 + dt*A/16)^16`` and ``softplus`` by
``relu(x) + ln2 * sech(x)^2`` (``docs/mamba.md``). This script trains both forms with the
same seed, data and schedule (CRF loss, early stopping on validation macro-F1 of the
Viterbi path) and prints, per configuration and seed:

- ``exact``: validation macro-F1 of the exact form (Keras, float);
- ``int8-friendly``: the same for the int8-friendly form (Keras, float);
- ``int8-friendly, int8 TFLM``: the int8-friendly model converted to full int8 and run in
  host TFLM (the tflite-micro wheel), Viterbi on the dequantized emissions;
- ``exact, int8 + float EXP/LOG TFLM``: the exact model converted to int8 except EXP and LOG,
  which stay float islands (the deployable alternative to the int8-friendly form; more
  arena, float kernels on the MCU). ``--no-tflm`` skips both TFLM columns.

``--family mdcsa`` runs the same comparison for MDCSA's int8-friendly option.
The test split is never touched. Usage::

    python scripts/measure_int8_friendly.py DATA_DIR [--family mamba] [--configs H8L1 H16L1] [--seeds 0 1 2]
        [--epochs 20] [--patience 5] [--lr 5e-3] [--batch-size 32] [--json OUT.json]

It prints a Markdown table (paste into the README) and, with ``--json``, writes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tinyloc_tf.errors import TinylocError  # noqa: E402  (after the TF log level)
from tinyloc_tf.families import get_family  # noqa: E402

FORMS = (("exact", False), ("int8-friendly", True))


def parse_config(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"H(\d+)L(\d+)", text.strip(), flags=re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"configuration {text!r} is not of the form H8L1")
    return int(match.group(1)), int(match.group(2))


def train_one(data, hidden: int, layers: int, int8_friendly: bool, args) -> tuple:
    """Train one model; returns (tagger, val macro-F1, best epoch, epochs run, seconds)."""
    from tinyloc_tf.training.metrics import macro_f1
    from tinyloc_tf.training.recipe import Recipe
    from tinyloc_tf.training.trainer import fit_model

    form = "int8-friendly" if int8_friendly else "exact"
    # the recipe these measurements were made with: plain Adam, no augmentation
    tagger, _, best_epoch, epochs_run, seconds = fit_model(
        data, args.family, hidden, layers, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        patience=args.patience, seed=args.seed_now, int8_friendly=int8_friendly, recipe=Recipe.legacy(),
        desc=f"{args.family} H{hidden}L{layers} {form} seed {args.seed_now}",
    )
    f1 = macro_f1(data.val.y, tagger.decode(data.val.X))
    return tagger, f1, best_epoch, epochs_run, seconds


def tflm_val_f1(tagger, data, int8_friendly: bool, trim_percent: float = 0.0) -> tuple[float, dict]:
    """int8 conversion, host TFLM emissions, Viterbi with the tagger's CRF.

    int8-friendly: full int8, no float op allowed. Exact: int8 with EXP and LOG kept in float
    (``selective`` with an infinite outlier threshold keeps exactly the ops TFLM only runs in float).
    """
    from tinyloc_tf.compression.convert import convert_model, float_ops, op_counts
    from tinyloc_tf.deployment.host import predict_paths
    from tinyloc_tf.training.metrics import macro_f1

    if int8_friendly:
        buf = convert_model(tagger, quant="int8", representative=data.train.X, calibration_trim=trim_percent)
    else:
        buf = convert_model(tagger, quant="selective", representative=data.train.X,
                            selective_threshold=float("inf"), calibration_trim=trim_percent)
    left = float_ops(buf)
    if int8_friendly and left:
        raise TinylocError(f"int8-friendly model kept float ops after int8 conversion: {left}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(buf)
        paths, _ = predict_paths(path, data.val.X, runtime="tflm", progress=True)
    return macro_f1(data.val.y, paths), {"flash_bytes": len(buf), "float_ops": left, "ops": op_counts(buf)}


def markdown(rows: list[dict], data_name: str, family: str, tflm: bool) -> str:
    head = "| data | model | seed | exact | int8-friendly | difference |"
    rule = "|---|---|---|---|---|---|"
    if tflm:
        head += " int8-friendly, int8 in TFLM | exact, int8 + float EXP/LOG in TFLM |"
        rule += "---|---|"
    lines = [head, rule]
    for row in rows:
        line = (
            f"| {data_name} | {get_family(family).display_name} {row['model']} | {row['seed']} | {100 * row['exact']['val_macro_f1']:.2f} "
            f"| {100 * row['int8-friendly']['val_macro_f1']:.2f} | {100 * row['difference']:+.2f} |"
        )
        if tflm:
            line += (f" {100 * row['int8-friendly']['tflm_val_macro_f1']:.2f}"
                     f" | {100 * row['exact']['tflm_val_macro_f1']:.2f} |")
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="prepared dataset folder (train/val/test .npz + meta.json)")
    # the families whose int8-friendly form differs from the exact one
    parser.add_argument("--family", choices=("mamba", "mdcsa"), default="mamba")
    parser.add_argument("--configs", nargs="+", type=parse_config, default=[(8, 1), (16, 1)],
                        metavar="HxLy", help="model sizes, e.g. H8L1 H16L1 (default)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-tflm", dest="tflm", action="store_false",
                        help="skip the int8 conversion and the TFLM column")
    parser.add_argument("--trim-calibration", type=float, default=0.0, metavar="PCT",
                        help="leave the PCT %% of training windows with the largest emissions out "
                             "of the int8 calibration set (default 0: all training windows)")
    parser.add_argument("--json", type=Path, help="write all numbers here")
    args = parser.parse_args(argv)

    from tinyloc_tf.data import load_prepared

    try:
        data = load_prepared(args.data)
        rows = []
        for hidden, layers in args.configs:
            for seed in args.seeds:
                args.seed_now = seed
                row = {"model": f"H{hidden}L{layers}", "seed": seed}
                for form, int8_friendly in FORMS:
                    tagger, f1, best_epoch, epochs_run, seconds = train_one(data, hidden, layers, int8_friendly, args)
                    row[form] = {"val_macro_f1": f1, "best_epoch": best_epoch, "epochs_run": epochs_run,
                                 "fit_seconds": round(seconds, 1)}
                    if args.tflm:
                        f1_tflm, info = tflm_val_f1(tagger, data, int8_friendly, args.trim_calibration)
                        row[form].update(tflm_val_macro_f1=f1_tflm, **info)
                row["difference"] = row["int8-friendly"]["val_macro_f1"] - row["exact"]["val_macro_f1"]
                rows.append(row)
    except TinylocError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    meta = data.meta
    data_name = str(meta.get("dataset", Path(args.data).name))
    if "house" in meta:
        data_name += f" house {meta['house']}"
    data_name += f" ({meta['labels']})"
    table = markdown(rows, data_name, args.family, args.tflm)
    mean_diff = float(np.mean([row["difference"] for row in rows]))
    print()
    print(f"Validation macro-F1 (%), Viterbi path; {args.epochs} epochs max, patience {args.patience}, "
          f"lr {args.lr}, batch {args.batch_size}; data {args.data} (fingerprint {data.fingerprint()[:12]})"
          + (f"; int8 calibration without the top {args.trim_calibration:g} % windows" if args.trim_calibration else ""))
    print(table)
    print(f"\nmean difference (int8-friendly - exact): {100 * mean_diff:+.2f} points over {len(rows)} runs")
    if args.json:
        result = {
            "data": str(Path(args.data).absolute()), "data_fingerprint": data.fingerprint(),
            "settings": {k: getattr(args, k) for k in ("family", "epochs", "patience", "lr", "batch_size", "seeds",
                                                         "trim_calibration")},
            "rows": rows, "mean_difference": mean_diff, "markdown": table,
            "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        tmp = args.json.with_name(args.json.name + ".partial")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
