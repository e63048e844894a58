"""Verbs of the on-device stage: ``tinyloc export-c`` and ``tinyloc deploy``."""

from __future__ import annotations

import argparse
import json
import sys

from tinyloc_tf.arguments import positive_int

#: Exit status of ``deploy`` when the firmware does not fit the RAM budget (link failure).
EXIT_RAM_BUDGET = 3


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-c",
        help="write a .tflite as C++ sources for the firmware (model array, op list, settings, test windows)",
        description="Generate the model-specific sources of tflm_app/: the flatbuffer as a C array, "
        "the op resolver registration, T/F/K, quantization, class names, scaling, CRF parameters and "
        "N int8 test windows with their host-TFLM emissions and Viterbi paths.",
    )
    p.add_argument("tflite", help="full-integer int8 .tflite (tinyloc convert --quant int8)")
    p.add_argument("--out", required=True, help="output folder")
    _window_args(p)
    p.set_defaults(handler=_export_c)

    p = subparsers.add_parser(
        "deploy",
        help="build the firmware for a Cortex-M, run it on an emulated board, report agreement, F1, bytes, instructions",
        description="Export the model, build tflm_app/ for the target within the RAM budget (the linker "
        "script's RAM region), run it on QEMU and print a JSON report. The tflm backend needs TFLM_ROOT "
        "(scripts/get_tflm.sh); the aot backend runs the model compiled by `tinyloc compile`.",
    )
    p.add_argument("tflite", help="full-integer int8 .tflite")
    p.add_argument("--target", choices=("m55", "m4"), default="m55",
                   help="m55: Cortex-M55 on QEMU mps3-an547; m4: Cortex-M4F on QEMU mps2-an386 (default m55)")
    p.add_argument("--ram-kb", type=positive_int, default=64, help="RAM budget in KiB (default 64)")
    p.add_argument("--backend", choices=("tflm", "aot"), default="tflm", help="model runner (default tflm)")
    p.add_argument("--arena-bytes", type=positive_int, help="force the TFLM tensor arena size (default: measured on the target)")
    p.add_argument("--stack-bytes", type=positive_int, default=4096, help="stack reserved in the RAM budget (default 4096)")
    p.add_argument("--build-dir", help="keep the build here (default: a temporary folder)")
    p.add_argument("--json-out", help="also write the report to this file")
    _window_args(p)
    p.set_defaults(handler=_deploy)


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="prepared dataset the test windows come from (default: random windows, no labels)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split of --data (default test)")
    p.add_argument("--windows", type=positive_int, default=16, help="number of test windows (default 16)")
    p.add_argument("--crf", help="JSON side file with CRF parameters, for a .tflite without tinyloc metadata")


def _export_c(args) -> int:
    from tinyloc_tf.deployment.export_c import export_c

    manifest = export_c(args.tflite, args.out, data_dir=args.data, windows=args.windows, split=args.split,
                        crf_file=args.crf)
    model = manifest["model"]
    print(
        f"wrote {args.out}: model {model['model_bytes']} B, ops {', '.join(model['ops'])}, "
        f"T={model['steps']} F={model['features']} K={model['classes']}, {manifest['windows']} windows "
        f"({manifest['split']})"
    )
    return 0


def _deploy(args) -> int:
    from tinyloc_tf.deployment.firmware import FirmwareError, RamBudgetError, deploy

    try:
        report = deploy(
            args.tflite,
            target=args.target,
            ram_kb=args.ram_kb,
            backend=args.backend,
            data_dir=args.data,
            windows=args.windows,
            out_dir=args.build_dir,
            arena_bytes=args.arena_bytes,
            stack_bytes=args.stack_bytes,
            crf_file=args.crf,
        )
    except RamBudgetError as exc:
        print(f"tinyloc deploy: does not fit: {exc}", file=sys.stderr)
        return EXIT_RAM_BUDGET
    except FirmwareError as exc:
        print(f"tinyloc deploy: {exc}", file=sys.stderr)
        return exc.status or 1
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    return 0
