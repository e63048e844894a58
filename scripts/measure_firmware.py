#!/usr/bin/env python
"""Deploy .tflite models on the emulated Cortex-M targets and tabulate what the firmware measured.

    TFLM_ROOT=... .venv/bin/python scripts/measure_firmware.py models/*.tflite --data DIR \
        --targets m55 m4 --ram-kb 64 [--stack-bytes 4096] --out docs/results/firmware.json

For every model x target (x backend) it runs `tinyloc deploy` (tinyloc_tf.deployment.firmware)
and prints a Markdown table: agreement with host TFLM, macro-F1 on the exported windows, arena,
flash (model + code), RAM (ELF: .data + .bss + heap + stack reserves) and instructions per
inference (QEMU -icount). A model card JSON next to a model (same stem, .json) may name its
data folder under "data"; --data overrides it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinyloc_tf.deployment.firmware import FirmwareError, RamBudgetError, deploy
from tinyloc_tf.errors import TinylocError


def _data_for(model: Path, override: str | None) -> str | None:
    if override:
        return override
    card = model.with_suffix(".json")
    if card.is_file():
        data = json.loads(card.read_text()).get("data")
        if data and Path(data).is_dir():
            return data
    return None


def _kb(n) -> str:
    return "-" if n is None else f"{n / 1024:.1f}"


def table(rows: list[dict]) -> str:
    head = ("| model | target | backend | RAM budget | bit-exact | path agree | macro-F1 / acc. | arena KB | "
            "flash KB (model + code) | RAM KB (ELF) | stack used B | instr./inference |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['target']} | {r['backend']} | {r['ram_kb']} KB | {r['error']} |"
                         + " |" * 7)
            continue
        f1 = "-" if r["macro_f1"] is None else f"{r['macro_f1']:.3f} / {r['accuracy']:.3f}"
        lines.append(
            f"| {Path(r['model']).name} | {r['target']} | {r['backend']} | {r['ram_kb']} KB | "
            f"{'yes' if r['emissions_bit_exact'] else 'NO'} | {r['path_agreement']:.3f} | {f1} | "
            f"{_kb(r['arena_bytes'])} | {_kb(r['flash_bytes'])} ({_kb(r['model_bytes'])} + {_kb(r['code_bytes'])}) | "
            f"{_kb(r['ram_bytes'])} | {r['stack_used_bytes']} | {r['instructions_per_inference']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--data", help="prepared dataset for the test windows (default: from the model card)")
    p.add_argument("--windows", type=int, default=32)
    p.add_argument("--targets", nargs="+", default=["m55", "m4"])
    p.add_argument("--backends", nargs="+", default=["tflm"])
    p.add_argument("--ram-kb", type=int, default=64)
    p.add_argument("--stack-bytes", type=int, default=4096, help="stack reserved in the RAM budget")
    p.add_argument("--out", type=Path, help="write the reports as JSON here")
    args = p.parse_args(argv)

    rows = []
    for model in args.models:
        for target in args.targets:
            for backend in args.backends:
                print(f"deploying {model} on {target} ({backend}, {args.ram_kb} KB)", file=sys.stderr, flush=True)
                try:
                    rows.append(deploy(model, target=target, ram_kb=args.ram_kb, backend=backend,
                                       data_dir=_data_for(model, args.data), windows=args.windows,
                                       stack_bytes=args.stack_bytes))
                except (RamBudgetError, FirmwareError, TinylocError) as exc:
                    rows.append({"model": str(model), "target": target, "backend": backend, "ram_kb": args.ram_kb,
                                 "error": str(exc)})
    print(table(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
