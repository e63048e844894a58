"""Window mode against streaming mode for trained Mamba runs, on the test split's streams.

    python scripts/measure_streaming.py DATA RUN [RUN ...] --out streaming.json

Per run:
- window mode, int8 in host TFLM: the usual test-window score (``evaluate_tflite``), and
  the same window model on the continuous test streams cut into consecutive T-sample
  windows (each from a zero state, Viterbi per window), so both modes score the same samples;
- streaming mode: the step model in host TFLM over whole streams, per --quant (int8, and int16x8:
  int16 activations and state, int8 weights) (``evaluate_streaming``: forward filtering and
  fixed-lag Viterbi at lags 0, 5, 10, 20, drift against float);
- state resets (float step model): the state zeroed every R samples, R in --resets,
  against never, with fixed-lag Viterbi at lag 10.
Prints a markdown table; ``--out`` keeps the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def _window_on_streams(buf, streams, crf, T):
    from tinyloc_tf.deployment.host import run_tflite
    from tinyloc_tf.decoding import viterbi_decode

    paths = []
    for s in streams:
        n = len(s) // T * T
        if n == 0:
            continue
        em = run_tflite(buf, s.X[:n].reshape(-1, T, s.X.shape[1]))
        paths.append((viterbi_decode(em, crf["transitions"], crf["start"], crf["end"]).reshape(-1), s.y[:n]))
    return paths


def _float_resets(step, streams, crf, resets, lag, classes):
    from tinyloc_tf.models.mamba_step import run_stream
    from tinyloc_tf.decoding import decode_stream
    from tinyloc_tf.training.metrics import score_paths

    out = {}
    truth = np.concatenate([s.y for s in streams])[None]
    for every in [None, *resets]:
        paths = []
        for s in streams:
            em = run_stream(step, s.X, reset_every=every)
            paths.append(decode_stream(em, crf["transitions"], crf["start"], "viterbi", lag))
        scores = score_paths(truth, np.concatenate(paths)[None], classes)
        out["never" if every is None else f"every_{every}"] = {"macro_f1": scores["macro_f1"], "accuracy": scores["accuracy"]}
    return out


def measure(data_dir: Path, run: Path, resets, trim: float, quants=("int8", "int16x8")) -> dict:
    from tinyloc_tf.training.artifacts import load_run
    from tinyloc_tf.compression.convert import convert, data_metadata
    from tinyloc_tf.compression.streaming import convert_streaming
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.data.streams import split_streams
    from tinyloc_tf.deployment.host import evaluate_tflite
    from tinyloc_tf.deployment.streaming import evaluate_streaming
    from tinyloc_tf.models.mamba_step import build_step_model
    from tinyloc_tf.training.metrics import score_paths

    dataset = load_prepared(data_dir)
    tagger, _ = load_run(run)
    meta = data_metadata(dataset)
    window = convert(tagger, "int8", dataset.train.X, meta, calibration_trim=trim).tflite
    window_report = evaluate_tflite(window, dataset, split="test")
    streams = split_streams(dataset.test, name="test")
    crf = {k: np.asarray(getattr(tagger.crf, k)) for k in ("transitions", "start", "end")}
    pairs = _window_on_streams(window, streams, crf, dataset.steps)
    chunked = score_paths(np.concatenate([y for _, y in pairs])[None], np.concatenate([p for p, _ in pairs])[None],
                          dataset.class_names)
    train_streams = [s.X for s in split_streams(dataset.train, name="train")]
    streaming = {}
    for quant in quants:
        stream_buf = convert_streaming(tagger, train_streams, meta, quant=quant).tflite
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "step.tflite"
            path.write_bytes(stream_buf)
            streaming[quant] = {**evaluate_streaming(path, dataset, run_dir=run), "model": None}
    step = build_step_model(tagger)
    return {
        "run": str(run),
        "params": window_report["params"],
        "window": {
            "flash_bytes": window_report["flash_bytes"],
            "arena_bytes": window_report["arena_bytes"],
            "test_windows": {"macro_f1": window_report["macro_f1"], "accuracy": window_report["accuracy"]},
            "test_streams_chunked": {"macro_f1": chunked["macro_f1"], "accuracy": chunked["accuracy"]},
        },
        "streaming": streaming,
        "float_state_resets_viterbi_lag10": _float_resets(step, streams, crf, resets, 10, dataset.class_names),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--resets", type=int, nargs="*", default=[20, 100])
    parser.add_argument("--calibration-trim", type=float, default=0.0)
    parser.add_argument("--quant", nargs="+", default=["int8", "int16x8"], choices=["int8", "int16x8"],
                        help="step-model quantizations to score (default both)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = [measure(args.data, run, args.resets, args.calibration_trim, args.quant) for run in args.runs]
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    print("| run | params | window int8: test windows | window int8: streams in T-chunks | step model | "
          "stream: filter | lag 0 | lag 5 | lag 10 | lag 20 | vs float argmax | flash B | state B |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        d = r["window"]
        for quant, report in r["streaming"].items():
            s = report["decoders"]
            print(f"| {r['run']} | {r['params']} | {pct(d['test_windows']['macro_f1'])} | "
                  f"{pct(d['test_streams_chunked']['macro_f1'])} | {quant} | {pct(s['filter']['macro_f1'])} | "
                  + " | ".join(pct(s[f'viterbi_lag{lag}']['macro_f1']) for lag in (0, 5, 10, 20))
                  + f" | {pct(report['float_agreement']['argmax'])} | {report['flash_bytes']:,} | "
                  f"{report['state_bytes']:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
