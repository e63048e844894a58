"""Verbs of the on-device stage: ``tinyloc export-c``, ``tinyloc deploy`` and ``tinyloc predict``
(a ``.tflite`` in the host runtime on a recording without labels, ``deployment/predict.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinyloc_tf.arguments import non_negative_int, positive_int
from tinyloc_tf.atomic import check_output, write_atomic
from tinyloc_tf.deployment.export_c import DEFAULT_WINDOWS, WINDOWS_PER_CLASS, class_coverage, default_windows
from tinyloc_tf.deployment.targets import DEFAULT_TARGET, get_target, target_names
from tinyloc_tf.errors import TinylocError

#: Exit status of ``deploy`` when the firmware does not fit the RAM budget (link failure).
EXIT_RAM_BUDGET = 3

#: Test windows exported by default, and per class of the data when that is more: a
#: macro-F1 over a handful of windows that miss most classes says nothing about the model.
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-c",
        help="write a .tflite as C++ sources for the firmware (model array, op list, settings, test windows)",
        description="Generate the model-specific sources of tflm_app/: the flatbuffer as a C array, "
        "the op resolver registration, T/F/K, quantization, class names, scaling, CRF parameters and "
        "N int8 test windows with their host-TFLM emissions and Viterbi paths.",
    )
    p.add_argument("tflite", help="full-integer int8 .tflite (tinyloc convert --quant int8)")
    p.add_argument("--out", required=True, help="output folder (must be new or empty; see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing non-empty --out")
    _window_args(p)
    p.set_defaults(handler=_export_c)

    p = subparsers.add_parser(
        "deploy",
        help="build the firmware for a Cortex-M, run it on an emulated board, report agreement, F1, bytes, instructions",
        description="Export the model, build tflm_app/ for the target within the RAM budget (the linker "
        "script's RAM region), run it on the board's emulator (QEMU or Renode) and print a JSON report. "
        "The tflm backend needs TFLM_ROOT (scripts/get_tflm.sh); the aot backend runs the model compiled "
        "by `tinyloc compile`.",
    )
    p.add_argument("tflite", help="full-integer int8 .tflite")
    p.add_argument("--target", choices=target_names(), default=DEFAULT_TARGET, help=_target_help())
    p.add_argument("--ram-kb", type=positive_int, default=64, help="RAM budget in KiB (default 64)")
    p.add_argument("--backend", choices=("tflm", "aot"),
                   help="model runner (default tflm; aot with --streaming)")
    p.add_argument("--kernels", choices=("cmsis-nn", "reference"),
                   help="TFLM kernels: Arm's CMSIS-NN or TFLM's reference ones (default cmsis-nn when "
                   "scripts/get_tflm.sh built its library and it runs the model: an int16x8 model with "
                   "per-channel weights gets the reference kernels)")
    p.add_argument("--debug", action="store_true",
                   help="link TFLM's debug library, which logs why a model fails (get_tflm.sh --debug)")
    p.add_argument("--optimize", action="store_true",
                   help="tflm backend: tinyloc's bit-exact optimisations for TFLM's kernels: int8 LOGISTIC "
                   "and TANH from 256-entry tables the host TFLM computes, single-row fully connected "
                   "layers as 2-D (docs/firmware.md)")
    p.add_argument("--profile", action="store_true",
                   help="tflm backend: also run a build that times every operator type, and add the "
                   "instructions per operator (op_profile) to the report")
    p.add_argument("--arena-bytes", type=positive_int, help="force the TFLM tensor arena size (default: measured on the target)")
    p.add_argument("--stack-bytes", type=positive_int, default=4096, help="stack reserved in the RAM budget (default 4096)")
    p.add_argument("--build-dir", help="keep the build here (default: a temporary folder)")
    p.add_argument("--json-out", help="also write the report to this file")
    p.add_argument("--overwrite", action="store_true", help="replace --json-out and reuse a non-empty --build-dir")
    _window_args(p)
    p.add_argument("--streaming", action="store_true",
                   help="a step model (convert --streaming): the firmware replays one stream of --data sample "
                   "by sample with its own state buffers and online decoder (--backend aot)")
    p.add_argument("--stream", type=int, help="--streaming: index of the split's stream (default the longest)")
    p.add_argument("--samples", type=positive_int, help="--streaming: only the stream's first N samples")
    p.add_argument("--decoder", choices=("viterbi", "filter"), default="viterbi",
                   help="--streaming: fixed-lag Viterbi (default) or forward filtering")
    p.add_argument("--lag", type=int, default=10, help="--streaming: fixed-lag Viterbi's lag in samples (default 10)")
    p.add_argument("--reset-every", type=positive_int, metavar="N",
                   help="--streaming: reset the state to zero every N samples (default never)")
    p.set_defaults(handler=_deploy)

    predict = subparsers.add_parser(
        "predict", help="localise new recordings: a CSV of RSSI in dBm -> a CSV with a room per row",
        description=predict_doc(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("model", type=Path, help=".tflite made by tinyloc convert (window or --streaming)")
    predict.add_argument("--input", type=Path, required=True,
                         help="CSV with one column per feature the model reads (its metadata's names), RSSI in dBm")
    predict.add_argument("--out", type=Path, required=True, help="CSV to write: the input's other columns, then room")
    predict.add_argument("--stream-column", metavar="COL",
                         help="rows sharing COL's value form one stream (recording); default: the whole file")
    predict.add_argument("--runtime", default="tflm", choices=("tflm", "litert"), help="interpreter (default tflm)")
    predict.add_argument("--decoder", choices=("viterbi", "filter"),
                         help="streaming models: fixed-lag Viterbi or forward filtering (default: the model card's, "
                              "else viterbi)")
    predict.add_argument("--lag", type=non_negative_int,
                         help="streaming models: fixed-lag Viterbi's lag in samples (default: the card's, else 10)")
    predict.add_argument("--reset-every", type=non_negative_int, metavar="N",
                         help="streaming models: reset the state to zero every N samples, 0 never (default: the "
                              "card's, else never)")
    predict.add_argument("--truth-column", metavar="COL",
                         help="a column of true class names (empty: unknown): the summary adds accuracy and macro-F1")
    predict.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(handler=_predict)


def predict_doc() -> str:
    from tinyloc_tf.deployment import predict

    return predict.__doc__


def _target_help() -> str:
    """``--target``'s help: each board of tflm_app/targets with its target.mk's description."""
    boards = "; ".join(f"{name}: {_describe(name)}" for name in target_names())
    # argparse %-formats help strings.
    return f"{boards} (default {DEFAULT_TARGET}; a board is a folder of tflm_app/targets)".replace("%", "%%")


def _describe(board: str) -> str:
    # A board whose target.mk is incomplete must not break every verb's parser: say why here,
    # and `deploy --target` with it fails with the same message.
    try:
        return get_target(board).description
    except TinylocError as exc:
        return f"unusable ({exc})"


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="prepared dataset the test windows come from (default: random windows, no labels)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split of --data (default test)")
    p.add_argument("--windows", type=positive_int,
                   help=f"number of test windows (default: {DEFAULT_WINDOWS}, or {WINDOWS_PER_CLASS} per class "
                        "of --data when that is more, at most the whole split)")
    p.add_argument("--crf", help="JSON side file with CRF parameters, for a .tflite without tinyloc metadata")


def _export_c(args) -> int:
    from tinyloc_tf.deployment.export_c import export_c

    check_output(args.out, overwrite=args.overwrite, inputs=(args.tflite, args.data, args.crf), kind="folder")
    args.windows = default_windows(args.data, args.split, args.windows)
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
    from tinyloc_tf.compression.flatbuffer import read_model
    from tinyloc_tf.deployment.firmware import FirmwareError, RamBudgetError, deploy

    read_model(args.tflite)  # a missing or broken file is named before any toolchain or TFLM tree
    inputs = (args.tflite, args.data, args.crf)
    if args.json_out:
        check_output(args.json_out, overwrite=args.overwrite, inputs=inputs, option="--json-out", kind="file")
    if args.build_dir:
        check_output(args.build_dir, overwrite=args.overwrite, inputs=inputs, option="--build-dir", kind="folder")
    if args.streaming:
        args.backend = args.backend or "aot"
        return _deploy_streaming(args)
    if args.reset_every is not None:
        raise TinylocError("--reset-every applies to --streaming step models")
    args.backend = args.backend or "tflm"
    if args.backend == "aot" and args.arena_bytes is not None:
        raise TinylocError("--arena-bytes sets the TFLM tensor arena; the aot backend plans its own (drop it, or "
                           "--backend tflm)")
    args.windows = default_windows(args.data, args.split, args.windows)
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
            kernels=args.kernels,
            build_type="debug" if args.debug else "release",
            profile=args.profile,
            optimize=args.optimize,
        )
    except (RamBudgetError, FirmwareError) as exc:
        return _failed(exc)
    if args.data is not None and report.get("macro_f1") is not None:
        covered, classes = class_coverage(args.data, args.split, args.windows)
        if covered < classes:
            report["macro_f1_note"] = (
                f"{report['windows']} windows hold {covered} of {classes} classes: this macro-F1 is not the "
                f"model's (`tinyloc evaluate` scores the whole split); pass a larger --windows")
            print(f"tinyloc deploy: warning: {report['macro_f1_note']}", file=sys.stderr)
    return _print_report(report, args.json_out)


def _failed(exc) -> int:
    """The exit status and one line for a firmware that did not fit or did not run."""
    from tinyloc_tf.deployment.firmware import RamBudgetError

    if isinstance(exc, RamBudgetError):
        print(f"tinyloc deploy: does not fit: {exc}", file=sys.stderr)
        return EXIT_RAM_BUDGET
    print(f"tinyloc deploy: {exc}", file=sys.stderr)
    return exc.status or 1


def _print_report(report: dict, json_out) -> int:
    text = json.dumps(report, indent=2)
    print(text)
    if json_out:
        write_atomic(json_out, (text + "\n").encode())
    return 0


def _deploy_streaming(args) -> int:
    from tinyloc_tf.deployment.firmware import FirmwareError, RamBudgetError
    from tinyloc_tf.deployment.streaming_firmware import deploy_streaming

    window_only = {"--windows": args.windows, "--crf": args.crf, "--arena-bytes": args.arena_bytes,
                   "--debug": args.debug or None, "--optimize": args.optimize or None}
    given = [name for name, value in window_only.items() if value is not None]
    if given:
        raise TinylocError(f"{', '.join(given)} apply to window models, not to --streaming")

    try:
        report = deploy_streaming(args.tflite, target=args.target, ram_kb=args.ram_kb, backend=args.backend,
                                  data_dir=args.data, split=args.split, stream=args.stream, samples=args.samples,
                                  method=args.decoder, lag=args.lag, out_dir=args.build_dir,
                                  stack_bytes=args.stack_bytes, kernels=args.kernels,
                                  reset_every=args.reset_every, profile=args.profile)
    except (RamBudgetError, FirmwareError) as exc:
        return _failed(exc)
    return _print_report(report, args.json_out)


# --------------------------------------------------------------------------- predict


def _predict(args) -> int:
    import numpy as np

    from tinyloc_tf.compression.metadata import read_metadata
    from tinyloc_tf.deployment.predict import (model_kind, predict_rooms, read_recording, read_truth, score_rooms,
                                                streaming_decoding, write_predictions)

    check_output(args.out, overwrite=args.overwrite, inputs=(args.model, args.input), kind="file")
    meta = read_metadata(args.model)
    missing = [key for key in ("features", "scaling", "classes", "crf") if key not in meta]
    if missing:
        raise TinylocError(f"{args.model}: its metadata lacks {', '.join(missing)}; convert it again with tinyloc convert")
    kind = model_kind(meta)
    given = [flag for flag, value in (("--decoder", args.decoder), ("--lag", args.lag),
                                      ("--reset-every", args.reset_every)) if value is not None]
    if kind != "streaming" and given:
        raise TinylocError(f"{' and '.join(given)} apply to streaming step models; {args.model} is a {kind} model")
    decoding = None
    if kind == "streaming":  # decoded as its card (the .json beside it, as ship_models.py writes it) says
        from tinyloc_tf.reports.card import read_card

        card_path = args.model.with_suffix(".json")
        card = read_card(card_path) if card_path.is_file() else None
        decoding = streaming_decoding(card, args.decoder, args.lag, args.reset_every, f"the card {card_path.name}")
    other, inputs, streams = read_recording(args.input, list(meta["features"]), meta["scaling"], args.stream_column)
    truth = read_truth(other, args.truth_column, list(meta["classes"]), str(args.input)) if args.truth_column else None
    rooms = predict_rooms(args.model, meta, inputs, streams, runtime=args.runtime, **(decoding or {}).get("settings", {}),
                          progress=not args.quiet and sys.stderr.isatty(), where=str(args.input))
    write_predictions(args.out, other, list(meta["classes"]), rooms)
    counts = np.bincount(rooms, minlength=len(meta["classes"]))
    summary = {"out": str(args.out), "model": str(args.model), "kind": kind, "rows": int(len(rooms)),
               "streams": int(len(np.unique(streams))),
               "rooms": {name: int(n) for name, n in zip(meta["classes"], counts) if n}}
    if decoding is not None:
        summary["decoding"] = {**decoding["settings"], "from": decoding["from"]}
    if truth is not None:
        summary["scored"] = {"column": args.truth_column, **score_rooms(*truth, rooms)}
    print(json.dumps(summary, indent=2))
    return 0
