"""``tinyloc convert`` and ``tinyloc evaluate``.

    tinyloc convert RUN --quant float32|int8|dynamic|selective|qat [--data DIR] --out M.tflite
    tinyloc evaluate M.tflite --data DIR [--split test] [--runtime tflm|litert] [--arena-kb N] [--run RUN]

``convert`` reads a training run folder (``RUN/model.keras``, ``RUN/config.json``), takes
the representative windows (and, for ``qat``, the fine-tuning data) from the prepared
dataset (default: the run's own ``data_dir``), writes the ``.tflite`` atomically and prints a
JSON summary (size, ops, float ops left, ops kept in float, TFLM deployability).
``evaluate`` prints the JSON of :func:`tinyloc_tf.deployment.host.evaluate_tflite`; with an
``--arena-kb`` below what the model needs it fails, naming the size needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinyloc_tf.arguments import arena_kib, non_negative_int, positive_int
from tinyloc_tf.atomic import check_output, write_atomic
from tinyloc_tf.errors import TinylocError

from tinyloc_tf.training.artifacts import check_model_fits_data, load_run
from tinyloc_tf.compression.variants import add_convert_arguments, convert_options_from_args, window_variant_names

#: Quantizations only the streaming step model has (compression/streaming.py).
STREAMING_ONLY_QUANT = ("int16x8",)


def register(subparsers) -> None:
    convert = subparsers.add_parser(
        "convert", help="convert a trained run to .tflite (float32, int8, dynamic, selective, qat)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("run", type=Path, help="training run folder (with model.keras and config.json)")
    convert.add_argument("--quant", required=True, choices=[*window_variant_names(), *STREAMING_ONLY_QUANT],
                         help="conversion variant (int16x8: --streaming only, int16 activations and state)")
    convert.add_argument("--data", type=Path, help="prepared dataset folder (default: the run's data_dir)")
    convert.add_argument("--out", type=Path, required=True, help=".tflite file to write")
    add_convert_arguments(convert)
    convert.add_argument("--streaming", action="store_true",
                         help="Mamba only: the step model (one sample per call, state as inputs/outputs; "
                              "--quant int8, int16x8 or float32; see docs/streaming.md)")
    convert.add_argument("--keep-names", action="store_true", help="do not strip tensor names (debugging)")
    convert.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    convert.set_defaults(handler=_convert)

    evaluate = subparsers.add_parser(
        "evaluate", help="score a .tflite in host TFLM (or LiteRT): macro-F1, accuracy, flash, arena",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("model", type=Path, help=".tflite made by tinyloc convert")
    evaluate.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to score (default test)")
    evaluate.add_argument("--runtime", default="tflm", choices=("tflm", "litert"), help="interpreter (default tflm)")
    evaluate.add_argument("--arena-kb", type=arena_kib, help="TFLM tensor arena to enforce, in KiB")
    evaluate.add_argument("--run", type=Path, help="training run folder: report agreement with its Keras model")
    evaluate.add_argument("--streaming", action="store_true",
                          help="score a step model (convert --streaming) on whole test streams, sample by "
                               "sample, with online decoding (forward filtering, fixed-lag Viterbi)")
    evaluate.add_argument("--lags", type=non_negative_int, nargs="+", default=[0, 5, 10, 20],
                          help="--streaming: fixed-lag Viterbi lags in samples (default 0 5 10 20)")
    evaluate.add_argument("--reset-every", type=positive_int, metavar="N",
                          help="--streaming: reset the state to zero every N samples (default never)")
    evaluate.add_argument("--out", type=Path, help="also write the JSON report to this file")
    evaluate.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(handler=_evaluate)


# --------------------------------------------------------------------------- convert


def _convert(args) -> int:
    if args.quant in STREAMING_ONLY_QUANT and not args.streaming:
        raise TinylocError(f"--quant {args.quant} converts the streaming step model; add --streaming")
    check_output(args.out, overwrite=args.overwrite, inputs=(args.run, args.data), kind="file")
    tagger, config = load_run(args.run)
    data_dir = args.data or (Path(config["data_dir"]) if config.get("data_dir") else None)
    if data_dir is None:
        raise TinylocError(f"{args.run}/config.json names no data_dir; pass --data DIR")
    check_output(args.out, overwrite=args.overwrite, inputs=(args.run, data_dir), kind="file")

    from tinyloc_tf.compression.convert import convert, data_metadata
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.deployment.host import tflm_blocker

    dataset = load_prepared(data_dir)
    check_model_fits_data(tagger, dataset, what=f"the model of {args.run}")
    trained_on = config.get("data_fingerprint")
    if trained_on and trained_on != dataset.fingerprint():
        print(f"tinyloc convert: warning: {data_dir} is not the data {args.run} was trained on "
              "(fingerprints differ); calibrating and labelling with it anyway", file=sys.stderr)
    metadata = data_metadata(dataset)
    # The run's folder name, as the sweep records it; its data's fingerprint only where it is
    # not the data_sha256 the file already carries.
    metadata["run"] = {"name": args.run.resolve().name}
    if trained_on and trained_on != metadata["data_sha256"]:
        metadata["run"]["data_fingerprint"] = trained_on
    if args.streaming:
        from tinyloc_tf.compression.streaming import STREAMING_QUANT_MODES, convert_streaming
        from tinyloc_tf.data.streams import split_streams

        if args.quant not in STREAMING_QUANT_MODES:
            raise TinylocError(f"--streaming converts with --quant {' or '.join(STREAMING_QUANT_MODES)}, not {args.quant}")
        result = convert_streaming(
            tagger, [s.X for s in split_streams(dataset.train, name="train")], metadata, quant=args.quant,
            representative_size=args.representative_size, seed=args.seed,
            per_tensor_weights=args.per_tensor_weights, strip=not args.keep_names,
            progress=sys.stderr.isatty(),
        )
    else:
        result = convert(
            tagger, args.quant, representative=dataset.train.X, metadata=metadata,
            labels=dataset.train.y, validation=(dataset.val.X, dataset.val.y),
            strip=not args.keep_names, **convert_options_from_args(args).convert_kwargs(),
        )
    write_atomic(args.out, result.tflite)
    blocker = tflm_blocker(result.tflite)
    summary = {"out": str(args.out), **result.report, "tflm_deployable": blocker is None, "note": blocker}
    print(json.dumps(summary, indent=2))
    return 0


# --------------------------------------------------------------------------- evaluate


def _evaluate(args) -> int:
    from tinyloc_tf.deployment.host import evaluate_tflite

    if args.out is not None:
        check_output(args.out, overwrite=args.overwrite, inputs=(args.model, args.data, args.run), kind="file")
    if args.reset_every is not None and not args.streaming:
        raise TinylocError("--reset-every applies to --streaming step models")
    if args.streaming:
        from tinyloc_tf.deployment.streaming import evaluate_streaming

        if args.runtime != "tflm" or args.arena_kb is not None:
            raise TinylocError("--streaming evaluates in host TFLM with the arena it needs; drop --runtime / --arena-kb")
        report = evaluate_streaming(args.model, args.data, split=args.split, lags=args.lags, run_dir=args.run,
                                    progress=not args.quiet and sys.stderr.isatty(), reset_every=args.reset_every)
    else:
        from tinyloc_tf.compression.streaming import STEP_MODEL_HINT, is_step_model

        if is_step_model(args.model):
            raise TinylocError(f"{args.model} is {STEP_MODEL_HINT}: score it with `tinyloc evaluate --streaming`")
        report = evaluate_tflite(
            args.model, args.data, split=args.split, runtime=args.runtime,
            arena_kb=args.arena_kb, run_dir=args.run, progress=not args.quiet and sys.stderr.isatty(),
        )
    text = json.dumps(report, indent=2)
    if args.out is not None:
        write_atomic(args.out, (text + "\n").encode())
    print(text)
    return 0

