"""Every conversion variant of trained runs, scored in host TFLM: the numbers of docs/compression.md.

    python scripts/compression_variants.py RUN [RUN ...] --data DIR --out DIR
        [--variants float32 int8 dynamic selective qat] [--split test] [--qat-epochs 3]

For each run folder (``tinyloc train`` output) and variant: ``tinyloc convert`` (the same
function), then ``tinyloc evaluate`` on ``--split`` with agreement against the run's Keras
model. The extra variant ``finetune-int8`` is QAT's control: the same fine-tune without
fake quantization, then int8 (QAT's gain over it is what quantization-awareness buys). Variants TFLM cannot run (dynamic range with hybrid ops, int8 EXP/LOG) are scored
with LiteRT and marked. Writes ``OUT/<run>.<variant>.tflite``, ``OUT/results.json`` and
prints a Markdown table (macro-F1 / accuracy in %, flash and arena in bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="training run folders")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset the runs were trained on")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .tflite files and results.json")
    parser.add_argument("--variants", nargs="+", default=["float32", "int8", "dynamic", "selective", "qat"])
    parser.add_argument("--split", default="test")
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from tinyloc_tf.atomic import write_atomic
    from tinyloc_tf.training.artifacts import load_run
    from tinyloc_tf.compression.convert import convert, data_metadata
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.deployment.host import evaluate_tflite

    data = load_prepared(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for run in args.runs:
        tagger, config = load_run(run)
        keras_metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
        for variant in args.variants:
            started = time.perf_counter()
            metadata = {**data_metadata(data), "run": {"path": str(run)}}
            source, quant, control = tagger, variant, None
            if variant == "finetune-int8":
                from tinyloc_tf.compression.qat import fine_tune

                source, control = fine_tune(tagger, data.train.X, data.train.y, validation=(data.val.X, data.val.y),
                                            epochs=args.qat_epochs, seed=args.seed, progress=False, fake_quant=False)
                quant = "int8"
            result = convert(source, quant, representative=data.train.X, metadata=metadata,
                             labels=data.train.y, validation=(data.val.X, data.val.y), seed=args.seed,
                             qat_options={"epochs": args.qat_epochs, "progress": False})
            if control is not None:
                result.report["qat"] = control
            path = args.out / f"{run.name}.{variant}.tflite"
            write_atomic(path, result.tflite)
            convert_s = time.perf_counter() - started
            report = evaluate_tflite(path, data, split=args.split, runtime="tflm", run_dir=run)
            report.pop("per_class_f1", None)
            row = {
                "run": run.name, "variant": variant, **report,
                "keras_test_macro_f1": keras_metrics.get("test_macro_f1"),
                "float_ops": result.report["float_ops"],
                "kept_float": result.report.get("kept_float"),
                "int8_weight_tensors": result.report["int8_weight_tensors"],
                "qat": {k: v for k, v in result.report.get("qat", {}).items() if k != "history"} or None,
                "convert_seconds": round(convert_s, 1),
            }
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("run", "variant", "runtime", "macro_f1", "accuracy",
                                                  "flash_bytes", "arena_bytes", "agreement")}), file=sys.stderr)
            (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")

    print("| run | variant | runtime | macro-F1 % | acc % | agreement % | flash B (metadata) | arena B | float ops left |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        floats = ", ".join(f"{op} x{n}" for op, n in r["float_ops"].items()) or "none"
        if r["variant"] in ("float32", "dynamic"):
            floats = "all" if r["int8_weight_tensors"] == 0 or r["variant"] == "float32" else f"hybrid: {floats}"
        runtime = r["runtime"] + ("" if r["tflm_deployable"] else " (not on TFLM)")
        arena = r["arena_bytes"] if r["arena_bytes"] is not None else "-"
        print(f"| {r['run']} | {r['variant']} | {runtime} | {100 * r['macro_f1']:.2f} | {100 * r['accuracy']:.2f} | "
              f"{100 * r['agreement']:.1f} | {r['flash_bytes']} ({r['metadata_bytes']}) | {arena} | {floats} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
