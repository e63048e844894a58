#!/usr/bin/env python
"""Benchmark the shipped models on the emulated Cortex-M boards: TFLM (reference kernels, CMSIS-NN
kernels, CMSIS-NN with tinyloc's optimisations) against the AOT-compiled C, and write the tables.

    TFLM_ROOT=... TINYLOC_RENODE=... .venv/bin/python scripts/measure_firmware.py \
        --out docs/results/firmware --readme README.md

For every model (default: every shipped window model, models/*/*.tflite with its model card;
the streaming step models are measured in docs/streaming.md) x target (m55 and
m4 on QEMU, stm32l4 on Renode) x runtime (tflm-reference, tflm-cmsis-nn, tflm-cmsis-nn+optimized:
`deploy --optimize`, aot) it runs
`tinyloc deploy` (tinyloc_tf.deployment.firmware.deploy, release build) with the card's RAM
budget on --windows test windows of the card's data, and writes

  OUT/<model folder>_<budget>.json   every report (or the reason a runtime was not measured)
  OUT/README.md                      the tables, the flash breakdown and this command
  README's device table              between <!-- device-table:begin --> and <!-- device-table:end -->

A runtime whose TFLM library or emulator is missing here is listed as not measured, with the
reason. Rows of OUT/*.json that this run does not measure again (other --targets/--runtimes)
are kept, with the command that measured them, as long as their model file is unchanged
(same sha256); a model that changed drops its old rows. Instruction counts are the emulators'
(QEMU -icount, Renode's virtual time): instructions, not cycles. A model whose file is
identical to one measured before in the list (the synthetic house ships one model for both
budgets) is measured once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from tinyloc_tf.deployment import firmware as fw
from tinyloc_tf.deployment.targets import target_names
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.reports.card import find_models

REPO = Path(__file__).resolve().parents[1]
RUNTIMES = {  # name: (backend, TFLM kernels, tinyloc's optimisations: deploy --optimize)
    "tflm-reference": ("tflm", "reference", False),
    "tflm-cmsis-nn": ("tflm", "cmsis-nn", False),
    "tflm-cmsis-nn+optimized": ("tflm", "cmsis-nn", True),
    "aot": ("aot", None, False),
}
#: The README's short names of the runtimes.
RUNTIME_TITLES = {"tflm-reference": "TFLM reference", "tflm-cmsis-nn": "TFLM CMSIS-NN",
                  "tflm-cmsis-nn+optimized": "TFLM CMSIS-NN optimized", "aot": "AOT"}
README_BEGIN, README_END = "<!-- device-table:begin -->", "<!-- device-table:end -->"
#: The part class the paper targets (its Table 1): what "fits" means in the tables.
PART_FLASH_BYTES, PART_RAM_BYTES = 128 * 1024, 32 * 1024


def card_data_dir(model: Path, override: dict) -> Path | None:
    """The prepared data of a model: --data-for DATASET=DIR, else the card's `data prepare --out`."""
    card = json.loads(model.with_suffix(".json").read_text())
    if card["dataset"] in override:
        return Path(override[card["dataset"]])
    for command in card.get("commands", {}).get("data", []):
        words = shlex.split(command)
        if "prepare" in words and "--out" in words:
            return (REPO / words[words.index("--out") + 1]).resolve()
    return None


def skip_reason(target: str, backend: str, kernels: str | None) -> str | None:
    """Why a runtime cannot be measured here, or None."""
    reason = fw.deploy_skip_reason(backend, target)
    if reason or backend != "tflm":
        return reason
    library = fw.tflm_library(fw.tflm_root(), fw.get_target(target), kernels, "release")
    return None if library.is_file() else f"no {kernels} library ({library.name} in {library.parent}; scripts/get_tflm.sh)"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure(models, targets, runtimes, windows, data_for, lto, command, profile=False) -> list[dict]:
    rows = []
    jobs = [(m, t, r) for m in models for t in targets for r in runtimes]
    for model, target, runtime in tqdm(jobs, desc="deploy", unit="run"):
        card = json.loads(model.with_suffix(".json").read_text())
        backend, kernels, optimize = RUNTIMES[runtime]
        row = {"model": str(model.relative_to(REPO)) if model.is_relative_to(REPO) else str(model),
               "model_sha256": _sha256(model), "dataset": card["dataset"], "budget_kb": card["budget_kb"],
               "target": target, "runtime": runtime, "measured_with": command}
        reason = skip_reason(target, backend, kernels)
        data = card_data_dir(model, data_for)
        if reason is None and (data is None or not data.is_dir()):
            reason = f"the model card's data folder {data} is not prepared (see the card's commands)"
        if reason:
            rows.append({**row, "not_measured": reason})
            continue
        try:
            report = fw.deploy(model, target=target, ram_kb=card["budget_kb"], backend=backend, data_dir=data,
                               windows=windows, kernels=kernels, lto=lto, progress=False,
                               profile=profile and backend == "tflm", optimize=optimize)
            rows.append({**row, **report, "model": row["model"], "windows_requested": windows})
        except TinylocError as exc:
            rows.append({**row, "error": str(exc)})
    return rows


def _kib(n) -> str:
    return f"{n / 1024:.1f}"


def _exact(r) -> str:
    if r["emissions_bit_exact"]:
        return "bit-exact"
    return (f"{100 * r['emission_agreement']:.2f} % equal (max diff {r['emission_max_abs_diff']}), "
            f"paths {100 * r['path_agreement']:.1f} %")


def _fits(r) -> str:
    return "yes" if r["flash_bytes"] <= PART_FLASH_BYTES and r["ram_bytes"] <= PART_RAM_BYTES else "no"


def results_table(rows) -> str:
    head = ("| model | target | runtime | emissions vs host TFLM | macro-F1 / acc. | arena KiB | "
            "flash KiB (model + code) | RAM KiB | fits 128 KB / 32 KB | instructions / inference | vs reference |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    reference = {(r["model"], r["target"]): r["instructions_per_inference"] for r in rows
                 if r["runtime"] == "tflm-reference" and "instructions_per_inference" in r}
    for r in rows:
        name = f"{r['dataset']} {r['budget_kb']} KiB"
        if "instructions_per_inference" not in r:
            why = r.get("not_measured") or r.get("error")
            lines.append(f"| {name} | {r['target']} | {r['runtime']} | not measured: {why} |" + " |" * 7)
            continue
        base = reference.get((r["model"], r["target"]))
        ratio = f"{r['instructions_per_inference'] / base:.2f}x" if base else "-"
        f1 = "-" if r["macro_f1"] is None else f"{100 * r['macro_f1']:.2f} / {100 * r['accuracy']:.2f}"
        lines.append(
            f"| {name} | {r['target']} | {r['runtime']} | {_exact(r)} | {f1} | {_kib(r['arena_bytes'])} | "
            f"{_kib(r['flash_bytes'])} ({_kib(r['model_bytes'])} + {_kib(r['code_bytes'])}) | {_kib(r['ram_bytes'])} | "
            f"{_fits(r)} | {r['instructions_per_inference']:,.0f} | {ratio} |")
    return "\n".join(lines)


def breakdown_table(rows) -> str:
    parts = [p for p in fw.FLASH_PARTS if p != "test_data"]
    head = "| model | target | runtime | " + " | ".join(f"{p} KiB" for p in parts) + " | total KiB |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        b = r.get("flash_breakdown")
        if not b:
            continue
        total = sum(b[p] for p in parts)
        lines.append(f"| {r['dataset']} {r['budget_kb']} KiB | {r['target']} | {r['runtime']} | "
                     + " | ".join(_kib(b[p]) for p in parts) + f" | {_kib(total)} |")
    return "\n".join(lines)


def device_table(rows) -> str:
    """The README's table: the runtimes side by side per model and target."""
    runtimes = [name for name in RUNTIMES if any(r["runtime"] == name for r in rows)]
    head = ("| model | target | " + " | ".join(f"{RUNTIME_TITLES[n]}: instr. / flash KiB" for n in runtimes)
            + " | emissions vs host TFLM | RAM KiB (" + " / ".join(RUNTIME_TITLES[n] for n in runtimes) + ") |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    keys = []
    for r in rows:
        if (r["model"], r["target"]) not in keys:
            keys.append((r["model"], r["target"]))
    for model, target in keys:
        by = {r["runtime"]: r for r in rows if r["model"] == model and r["target"] == target}
        first = next(iter(by.values()))
        cells, ram, inexact = [], [], []
        for runtime in runtimes:
            r = by.get(runtime)
            if r is None or "instructions_per_inference" not in r:
                cells.append("not measured")
                ram.append("-")
                continue
            cells.append(f"{r['instructions_per_inference']:,.0f} / {_kib(r['flash_bytes'])}")
            ram.append(_kib(r["ram_bytes"]))
            if not r["emissions_bit_exact"]:
                inexact.append(f"{RUNTIME_TITLES[runtime]}: {_exact(r)}")
        measured = [r for r in by.values() if "instructions_per_inference" in r]
        exact = "; ".join(inexact) if inexact else ("bit-exact" if measured else "-")
        lines.append(f"| {first['dataset']} {first['budget_kb']} KiB | {target} | " + " | ".join(cells)
                     + f" | {exact} | {' / '.join(ram)} |")
    return "\n".join(lines)


#: Operators under this share of every profiled runtime's invoke are summed into one row.
PROFILE_MIN_SHARE = 0.02


def profile_table(rows) -> str:
    """Per model, target and operator type: instructions per inference of every profiled TFLM
    runtime (``deploy --profile``), and each against TFLM's reference kernels."""
    runtimes = [name for name in RUNTIMES if any(r["runtime"] == name and "op_profile" in r for r in rows)]
    faster = [name for name in runtimes if name != "tflm-reference"]
    head = ("| model | target | operator | calls | "
            + " | ".join(f"{RUNTIME_TITLES[n]}: instr. (share)" for n in runtimes)
            + "".join(f" | {RUNTIME_TITLES[n]} / reference" for n in faster) + " |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    keys = []
    for r in rows:
        if "op_profile" in r and (r["model"], r["target"]) not in keys:
            keys.append((r["model"], r["target"]))
    for model, target in keys:
        by = {r["runtime"]: r["op_profile"] for r in rows
              if r["model"] == model and r["target"] == target and "op_profile" in r}
        first = next(r for r in rows if r["model"] == model)
        ops = {}
        for runtime, prof in by.items():
            for o in prof["ops"]:
                ops.setdefault(o["op"], {})[runtime] = dict(o)
            ops.setdefault("outside kernels", {})[runtime] = {"instructions": prof["outside_kernels"], "calls": None}
        for o in ops.values():
            for runtime, entry in o.items():
                entry["share"] = entry["instructions"] / by[runtime]["instructions_per_inference"]
        major = {n: o for n, o in ops.items()
                 if n == "outside kernels" or max(e["share"] for e in o.values()) >= PROFILE_MIN_SHARE}
        minor = [o for n, o in ops.items() if n not in major]
        if minor:
            rest = {}
            for o in minor:
                for runtime, entry in o.items():
                    acc = rest.setdefault(runtime, {"instructions": 0.0, "share": 0.0, "calls": None})
                    acc["instructions"] += entry["instructions"]
                    acc["share"] += entry["share"]
            major[f"{len(minor)} other operator types"] = rest
        totals = {runtime: {"instructions": prof["instructions_per_inference"], "share": 1.0, "calls": None}
                  for runtime, prof in by.items()}
        order = sorted(major, key=lambda n: (n == "outside kernels" or n.endswith("operator types"),
                                             -max(e["instructions"] for e in major[n].values())))
        for name, o in [*((n, major[n]) for n in order), ("invoke (profiled build)", totals)]:
            cells = []
            for runtime in runtimes:
                e = o.get(runtime)
                cells.append("-" if e is None else f"{e['instructions']:,.0f} ({100 * e['share']:.0f} %)")
            ref = o.get("tflm-reference")
            for runtime in faster:
                e = o.get(runtime)
                cells.append(f"{e['instructions'] / ref['instructions']:.2f}x"
                             if ref and e and ref["instructions"] else "-")
            calls = next((e["calls"] for e in o.values() if e.get("calls") is not None), None)
            calls = "" if calls is None else f"{calls:g}"
            lines.append(f"| {first['dataset']} {first['budget_kb']} KiB | {target} | {name} | {calls} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def _group(row) -> str:
    return f"{Path(row['model']).parent.name}_{row['budget_kb']}"


def merge_previous(rows, out: Path) -> list[dict]:
    """This run's rows, plus earlier rows of OUT/*.json for other (model, target, runtime) whose model is unchanged."""
    measured = {(r["model"], r["target"], r["runtime"]) for r in rows}
    kept = []
    for path in sorted(out.glob("*.json")):
        for old in json.loads(path.read_text()):
            if not {"model", "target", "runtime", "model_sha256"} <= set(old):
                continue  # written by an older version of this script: not comparable
            model = REPO / old["model"]
            key = (old["model"], old["target"], old["runtime"])
            if key in measured or not model.is_file() or old.get("model_sha256") != _sha256(model):
                continue
            kept.append(old)
    order = {name: i for i, name in enumerate(RUNTIMES)}
    return sorted(kept + rows, key=lambda r: (r["model"], r["target"], order[r["runtime"]]))


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[^\s;,)'\"|]+")


def repo_relative_text(value):
    """``value`` (a row field) with every absolute path made relative to the repository, so
    committed results name no folder of the machine that measured them."""
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(lambda m: os.path.relpath(m.group(0), REPO), value)
    if isinstance(value, dict):
        return {key: repo_relative_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [repo_relative_text(item) for item in value]
    return value


def write_outputs(rows, out: Path, readme: Path | None) -> None:
    rows = [repo_relative_text(row) for row in rows]
    out.mkdir(parents=True, exist_ok=True)
    groups = {}
    for r in rows:
        groups.setdefault(_group(r), []).append(r)
    for path in out.glob("*.json"):
        if path.stem not in groups:
            path.unlink()  # a model no longer shipped
    for name, group in groups.items():
        (out / f"{name}.json").write_text(json.dumps(group, indent=2) + "\n")
    commands = sorted({r["measured_with"] for r in rows if "measured_with" in r})
    text = [
        "# Shipped models on the emulated Cortex-M boards: TFLM (reference, CMSIS-NN) vs AOT", "",
        "Runtimes: `tflm-reference` = TFLM's portable kernels; `tflm-cmsis-nn` = TFLM's CMSIS-NN kernels (Helium on "
        "the M55, the DSP extension on the M4), TFLM's reference kernels for the operators CMSIS-NN lacks; "
        "`tflm-cmsis-nn+optimized` = the same with tinyloc's bit-exact optimisations (`tinyloc deploy --optimize`): "
        "int8 LOGISTIC and TANH answered from 256-entry tables (`tflm_app/src/table_kernel.cc`; CMSIS-NN has no int8 "
        "kernel for either) and, on boards without Helium, single-row fully connected layers given a 2-D output, "
        "which CMSIS-NN runs with `arm_fully_connected_s8` (`tinyloc_tf/deployment/graph_rewrite.py`); `aot` = the "
        "model compiled to C by "
        "`tinyloc compile`.", "",
        "Made with (TFLM libraries from `scripts/get_tflm.sh`, Renode from `scripts/get_renode.sh`, data prepared "
        "as each model card records; each row of the JSON files names its command):", "", "```", *commands, "```", "",
        "m55 = Cortex-M55 on QEMU mps3-an547, m4 = Cortex-M4F on QEMU mps2-an386, stm32l4 = Cortex-M4F "
        "STM32L432-like board on Renode. Release builds: TFLM without error strings or DCHECKs, everything `-Os`, "
        "`--gc-sections`. Instructions are the emulators' counts (QEMU `-icount`, Renode's virtual time at the "
        "part's 80 MIPS), **not cycles**, averaged over the test windows. Flash = model + code, without the "
        "exported test windows; RAM = .data + .bss (arena included) + 512 B heap + 4 KiB stack reserves. "
        "\"fits\" = flash <= 128 KB and RAM <= 32 KB, the paper's smallest class of part. \"vs reference\" = "
        "instructions against TFLM's reference kernels on the same target.", "",
        "## Per model, target and runtime", "", results_table(rows), "",
        "## Flash breakdown (from the linker map)", "",
        "Bytes per origin of every input section placed in flash: `tflm` = TFLM's library (interpreter, "
        "kernels, flatbuffers), `cmsis_nn` = CMSIS-NN's `arm_*` functions, `app` = harness (and the AOT "
        "runner with its weights), `model` = the .tflite array, `libc` = newlib-nano, libm, libgcc, "
        "libstdc++; `other` = alignment padding.", "", breakdown_table(rows), "",
    ]
    if any("op_profile" in r for r in rows):
        text += [
            "## Where the instructions go (per operator type)", "",
            "`tinyloc deploy --profile`: a second build in which every operator type's kernel is called "
            "through a timer read (`tflm_app/src/tflm_op_profile.cc`); instructions per inference summed over "
            "the nodes of each type, and the share of the profiled invoke. \"outside kernels\" is the rest of "
            "the invoke: TFLM's interpreter loop, the harness' input and output copies and the timer reads. "
            f"Operator types under {100 * PROFILE_MIN_SHARE:.0f} % of both invokes are summed in one row.", "",
            profile_table(rows), "",
        ]
    (out / "README.md").write_text("\n".join(text))
    if readme is not None:
        content = readme.read_text()
        if README_BEGIN not in content or README_END not in content:
            raise TinylocError(f"{readme} has no {README_BEGIN} ... {README_END} markers for the device table")
        head, rest = content.split(README_BEGIN, 1)
        _, tail = rest.split(README_END, 1)
        readme.write_text(f"{head}{README_BEGIN}\n{device_table(rows)}\n{README_END}{tail}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", type=Path, help="models with cards (default: models/*/*.tflite)")
    p.add_argument("--targets", nargs="+", default=list(target_names()), choices=target_names())
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    p.add_argument("--windows", type=int, default=64, help="test windows per model (default 64)")
    p.add_argument("--data-for", action="append", default=[], metavar="DATASET=DIR",
                   help="prepared data of a card's dataset, instead of the card's `data prepare --out`")
    p.add_argument("--lto", action="store_true", help="link with -flto")
    p.add_argument("--profile", action="store_true",
                   help="TFLM runtimes: also time every operator type (tinyloc deploy --profile) and write "
                   "the per-operator table")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "firmware")
    p.add_argument("--readme", type=Path, help="also rewrite this README's device table")
    p.add_argument("--tables-only", action="store_true", help="measure nothing: rewrite the tables from OUT/*.json")
    args = p.parse_args(argv)

    models, seen = [], set()
    shipped = find_models(REPO / "models", streaming=False)  # the step models: docs/streaming.md
    for model in (args.models or shipped):
        model = model.resolve()
        if not model.with_suffix(".json").is_file():
            p.error(f"{model} has no model card ({model.with_suffix('.json').name})")
        digest = _sha256(model)
        if digest not in seen:  # one model shipped under two budgets is measured once
            seen.add(digest)
            models.append(model)
    data_for = dict(item.split("=", 1) for item in args.data_for)
    command = ".venv/bin/python scripts/measure_firmware.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    command = re.sub(r"\s+", " ", command).strip()
    rows = [] if args.tables_only else measure(models, args.targets, args.runtimes, args.windows, data_for, args.lto,
                                               command, args.profile)
    all_rows = merge_previous(rows, args.out)
    write_outputs(all_rows, args.out, args.readme)
    print(results_table(rows))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
