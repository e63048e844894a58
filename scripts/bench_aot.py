#!/usr/bin/env python
"""Measure the AOT compiler: memory plan, bit-exactness, and TFLM vs AOT on the Cortex-M targets.

    .venv/bin/python scripts/bench_aot.py models/*.tflite --qemu --targets m55 m4 \
        --ram-kb 64 --out docs/results/aot.json

For each int8 .tflite:
  * compiles it (tinyloc_tf.deployment.aot.compile_tflite) and reports the static memory plan:
    arena peak, the same without in-place writes, without any reuse, the sum of all activation
    tensors, and the smallest arena host TFLM accepts (tflite-micro wheel, 64-bit host);
  * builds the C with the host compiler and compares every output value with the wheel on
    --windows random int8 windows;
  * with --qemu, deploys both backends through the shared firmware harness (tflm needs
    TFLM_ROOT; it is skipped, not failed, without one) and tabulates flash (code + model),
    RAM (.data + .bss + heap + stack reserves) and instructions per inference side by side.

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


def host_check(path: Path, report, windows: int) -> dict:
    from tflite_micro.python.tflite_micro import runtime

    from tinyloc_tf.deployment.aot.host import build_and_load

    model = build_and_load(report)
    interpreter = runtime.Interpreter.from_bytes(path.read_bytes(), arena_size=4 << 20)
    rng = np.random.default_rng(0)
    equal = total = 0
    for _ in range(windows):
        x = rng.integers(-128, 128, size=report.input_shape, dtype=np.int8)
        interpreter.set_input(x, 0)
        interpreter.invoke()
        want = np.asarray(interpreter.get_output(0)).reshape(-1)
        equal += int((model.invoke(x) == want).sum())
        total += int(want.size)
    return {"values": total, "equal": equal}


def measure(path: Path, args, work: Path) -> dict:
    from tinyloc_tf.deployment.aot import compile_tflite
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
    row["host_check"] = host_check(path, report, args.windows)
    if args.qemu:
        row["devices"] = qemu_side_by_side(path, args)
    return row


def qemu_side_by_side(path: Path, args) -> list[dict]:
    from tinyloc_tf.deployment import firmware
    from tinyloc_tf.errors import TinylocError

    rows = []
    for target in args.targets:
        for backend in ("tflm", "aot"):
            reason = firmware.deploy_skip_reason(backend)
            if not reason and backend == "tflm":
                lib = firmware.tflm_library(firmware.tflm_root(), firmware.Target.load(target))
                if not lib.is_file():  # deploy would spend minutes building it
                    reason = f"TFLM library for {target} not built ({lib}); run scripts/get_tflm.sh --build {target}"
            if reason:
                rows.append({"target": target, "backend": backend, "skipped": reason})
                continue
            print(f"  deploy {path.name} on {target} ({backend})", file=sys.stderr, flush=True)
            try:
                r = firmware.deploy(path, target=target, ram_kb=args.ram_kb, backend=backend,
                                    windows=args.device_windows, progress=False)
            except TinylocError as exc:
                rows.append({"target": target, "backend": backend, "error": str(exc)})
                continue
            keep = ("emissions_bit_exact", "arena_bytes", "flash_bytes", "model_bytes", "code_bytes",
                    "ram_bytes", "stack_used_bytes", "instructions_per_inference")
            rows.append({"target": target, "backend": backend, **{k: r.get(k) for k in keep}})
    return rows


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


def device_table(rows: list[dict]) -> str:
    lines = [
        "| model | target | flash KB TFLM / AOT | RAM KB TFLM / AOT | arena KB TFLM / AOT | "
        "instructions / inference TFLM / AOT | bit-exact TFLM / AOT |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(d, key, fmt):
        if d is None:
            return "-"
        if "skipped" in d or "error" in d:
            return "n/a"
        return fmt(d.get(key))

    for r in rows:
        by = {}
        for d in r.get("devices", []):
            by.setdefault(d["target"], {})[d["backend"]] = d
        for target, pair in by.items():
            t, a = pair.get("tflm"), pair.get("aot")
            instr = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
            exact = lambda v: "yes" if v else "NO"  # noqa: E731
            lines.append(
                f"| {Path(r['model']).name} | {target} | {cell(t, 'flash_bytes', _kb)} / {cell(a, 'flash_bytes', _kb)} | "
                f"{cell(t, 'ram_bytes', _kb)} / {cell(a, 'ram_bytes', _kb)} | "
                f"{cell(t, 'arena_bytes', _kb)} / {cell(a, 'arena_bytes', _kb)} | "
                f"{cell(t, 'instructions_per_inference', instr)} / {cell(a, 'instructions_per_inference', instr)} | "
                f"{cell(t, 'emissions_bit_exact', exact)} / {cell(a, 'emissions_bit_exact', exact)} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", type=Path, help="int8 .tflite files (default: two demo models)")
    p.add_argument("--windows", type=int, default=16, help="random windows for the host check (default 16)")
    p.add_argument("--qemu", action="store_true", help="also deploy TFLM and AOT on the emulated boards")
    p.add_argument("--targets", nargs="+", default=["m55", "m4"])
    p.add_argument("--ram-kb", type=int, default=64)
    p.add_argument("--device-windows", type=int, default=4)
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
    if args.qemu:
        print()
        print(device_table(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    ok = all(r["host_check"]["equal"] == r["host_check"]["values"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
