"""``tinyloc compile``: ahead-of-time compile an int8 or int16x8 .tflite to C (no interpreter)."""

from __future__ import annotations

import json

from tinyloc_tf.arguments import c_identifier_prefix, non_negative_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compile",
        help="compile an int8 or int16x8 .tflite to C: const weights, a static memory plan, straight-line kernel calls",
        description="Emit C for the model (tinyloc_model.c/.h plus the tl_* kernels) implementing "
        "the firmware's runner interface (runner_init / runner_invoke / runner_arena_used), bit-exact "
        "with TensorFlow Lite Micro's reference kernels. Prints the memory plan: arena peak vs the sum "
        "of all activation tensors.",
    )
    p.add_argument("tflite", help="full-integer .tflite: int8 (tinyloc convert --quant int8), or int16x8 (--quant int16x8 --streaming)")
    p.add_argument("--out", required=True, help="output folder for the C sources (new or empty; see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing non-empty --out")
    p.add_argument("--prefix", default="", type=c_identifier_prefix,
                   help="prefix for the runner symbols and file names, a C identifier (default none)")
    p.add_argument("--no-inplace", action="store_true",
                   help="never let an element-wise op overwrite its dying input (larger arena)")
    p.add_argument("--no-tables", action="store_true",
                   help="compute int8 LOGISTIC / TANH / SOFTMAX in fixed point at run time instead of "
                   "compile-time lookup tables (less flash, more instructions)")
    p.add_argument("--alignment", type=int, default=16, help="byte alignment of arena buffers (default 16)")
    p.add_argument("--check", type=non_negative_int, default=0, metavar="N",
                   help="also build the C with the host compiler and compare N random windows (a step model: N "
                   "calls with random samples and states) with the tflite-micro wheel (exit 1 on any difference)")
    p.add_argument("--json", action="store_true", help="print the compile report as JSON")
    p.set_defaults(handler=_compile)


def _compile(args) -> int:
    from tinyloc_tf.deployment.aot import compile_tflite
    from tinyloc_tf.deployment.aot.host import check_against_tflm
    from tinyloc_tf.errors import TinylocError

    from tinyloc_tf.atomic import check_output

    if args.alignment < 1 or args.alignment & (args.alignment - 1):
        raise TinylocError(f"--alignment must be a power of two, got {args.alignment}")
    check_output(args.out, overwrite=args.overwrite, inputs=(args.tflite,), kind="folder")
    report = compile_tflite(args.tflite, args.out, symbol_prefix=args.prefix,
                            inplace=not args.no_inplace, tables=not args.no_tables,
                            alignment=args.alignment)
    check = None
    if args.check > 0:
        check = check_against_tflm(args.tflite, report, args.check)
    if args.json:
        out = report.to_dict()
        if check is not None:
            out["check"] = check
        print(json.dumps(out, indent=2))
    else:
        ops = ", ".join(f"{k} x{v}" for k, v in report.op_counts.items())
        print(f"wrote {report.out_dir}: {report.operators} operators -> {report.kernel_calls} kernel calls ({ops})")
        print(
            f"memory plan: arena {report.arena_bytes} B (no in-place: {report.arena_bytes_without_inplace} B, "
            f"no reuse: {report.arena_bytes_without_reuse} B); all activation tensors together "
            f"{report.activation_bytes_total} B; {report.views} views, {report.inplace_writes} in-place writes"
        )
        print(f"constants {report.constant_bytes} B; sources: {' '.join(report.sources)}")
        if check is not None:
            from tinyloc_tf.compression.streaming import is_step_model

            inputs = "calls with random samples and states" if is_step_model(args.tflite) else "random windows"
            print(f"check: {check['equal']} of {check['values']} output values equal to TFLM "
                  f"on {check['windows']} {inputs}")
    if check is not None and check["equal"] != check["values"]:
        return 1
    return 0
