#!/usr/bin/env python
"""Measure the AOT compiler on the host: memory plan and bit-exactness against TFLM.

    .venv/bin/python scripts/bench_aot.py models/*/*.tflite --out aot.json

For each int8 .tflite:
  * compiles it (tinyloc_tf.deployment.aot.compile_tflite) and reports the static memory plan:
    arena peak, the same without in-place writes, without any reuse, the sum of all activation
    tensors, and the smallest arena host TFLM accepts (tflite-micro wheel, 64-bit host);
  * builds the C with the host compiler and compares every output value with the wheel on
    --windows random int8 windows (tinyloc_tf.deployment.aot.host.check_against_tflm, the
    check of ``tinyloc compile --check``);

TFLM and AOT side by side on the emulated Cortex-M targets (flash, RAM, instructions) is
``scripts/measure_firmware.py --runtimes tflm-reference aot``.

Without model paths it builds four untrained demo models with the real architectures (MDCSA
H8L1 and int8-friendly Mamba H8L1 at F=8, K=4, T=20; Mamba H4L1 and MDCSA H8L1 at the
UJIIndoorLoc size F=520, K=59, T=1), calibrated on random windows, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinyloc_tf.arguments import positive_int


DEMO_MODELS = (
    # name, family, hidden, features, classes, steps, int8_friendly
    ("demo_mdcsa_h8l1_house", "mdcsa", 8, 8, 4, 20, False),
    ("demo_mamba_h8l1_house", "mamba", 8, 8, 4, 20, True),
    ("demo_mamba_h4l1_uji", "mamba", 4, 520, 59, 1, True),
    ("demo_mdcsa_h8l1_uji", "mdcsa", 8, 520, 59, 1, False),
)


def demo_models(folder: Path) -> list[Path]:
    """Untrained models with the real architectures: house-sized (F=8, K=4, T=20) and
    UJIIndoorLoc-sized (F=520, K=59, T=1), calibrated on random windows."""
    from tinyloc_tf.compression.convert import convert_model, model_metadata
    from tinyloc_tf.models import build_model

    rng = np.random.default_rng(0)
    paths = []
    for name, family, hidden, features, classes, steps, friendly in DEMO_MODELS:
        model = build_model(family, features=features, classes=classes, hidden=hidden, layers=1,
                            steps=steps, int8_friendly=friendly)
        X = rng.random((64, steps, features)).astype(np.float32)
        path = folder / f"{name}.tflite"
        path.write_bytes(convert_model(model, quant="int8", representative=X, metadata=model_metadata(model)))
        paths.append(path)
    return paths


def measure(path: Path, args, work: Path) -> dict:
    from tinyloc_tf.deployment.aot import compile_tflite
    from tinyloc_tf.deployment.aot.host import check_against_tflm
    from tinyloc_tf.deployment.host import find_arena_bytes

    report = compile_tflite(path, work / path.stem)
    row = {
        "model": str(path),
        "tflite_bytes": path.stat().st_size,
        "operators": report.operators,
        "kernel_calls": report.kernel_calls,
        "constant_bytes": report.constant_bytes,
        "arena_bytes": report.arena_bytes,
        "arena_bytes_without_inplace": report.arena_bytes_without_inplace,
        "arena_bytes_without_reuse": report.arena_bytes_without_reuse,
        "activation_bytes_total": report.activation_bytes_total,
        "views": report.views,
        "inplace_writes": report.inplace_writes,
        "op_counts": report.op_counts,
    }
    row["tflm_host_arena_bytes"] = find_arena_bytes(path.read_bytes())
    row["host_check"] = check_against_tflm(path, report, args.windows)
    return row


def _kb(n) -> str:
    return "-" if n is None else f"{n / 1024:.1f}"


def plan_table(rows: list[dict]) -> str:
    lines = [
        "| model | ops -> calls | const KB (.tflite KB) | AOT arena KB | no in-place | no reuse | "
        "all tensors KB | TFLM host arena KB | host bit-exact |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        hc = r["host_check"]
        lines.append(
            f"| {Path(r['model']).name} | {r['operators']} -> {r['kernel_calls']} | {_kb(r['constant_bytes'])} "
            f"({_kb(r['tflite_bytes'])}) | {_kb(r['arena_bytes'])} | {_kb(r['arena_bytes_without_inplace'])} | "
            f"{_kb(r['arena_bytes_without_reuse'])} | {_kb(r['activation_bytes_total'])} | "
            f"{_kb(r['tflm_host_arena_bytes'])} | {hc['equal']}/{hc['values']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", type=Path, help="int8 .tflite files (default: the four demo models)")
    p.add_argument("--windows", type=positive_int, default=16, help="random windows for the host check (default 16)")
    p.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    with tempfile.TemporaryDirectory(prefix="bench-aot-") as tmp:
        tmp = Path(tmp)
        models = args.models or demo_models(tmp)
        rows = []
        for path in models:
            print(f"measuring {path}", file=sys.stderr, flush=True)
            rows.append(measure(path, args, tmp))
    print(plan_table(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    ok = all(r["host_check"]["equal"] == r["host_check"]["values"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    from tinyloc_tf.errors import script_status

    raise SystemExit(script_status(main, "bench_aot"))
