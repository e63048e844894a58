"""Per-window inference time in host TFLM vs LiteRT, and the arena each model needs.

    python scripts/bench_tflm.py M1.tflite M2.tflite ...            # given models
    python scripts/bench_tflm.py --data DIR --build mamba:8:1 mdcsa:8:1:exact --quant int8

``--build FAMILY:H:L[:exact]`` builds an (untrained) model for the data's shape and converts
it with ``--quant``, calibrated on the data's training windows; timing and arena do not
depend on the weights. Each model runs ``--windows`` windows (default 200, after 20 warm-up
windows) one at a time, as on the MCU; both runtimes are single-threaded. Prints a Markdown
table and, with ``--json``, writes the rows. Host numbers: the tflite-micro wheel uses
TFLM's reference kernels, LiteRT its optimised ones (XNNPACK for float), so the ratio says
little about a Cortex-M; the arena is for 64-bit host pointers (a Cortex-M needs a little less).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def time_per_window(buf: bytes, X: np.ndarray, runtime: str, warmup: int = 20) -> float:
    """Median seconds per invoke (quantize + set + invoke + get), one window at a time."""
    from tinyloc_tf.deployment.host import make_runner, quantize

    runner = make_runner(buf, runtime)
    inputs = [quantize(X[i : i + 1], runner.input) for i in range(len(X))]
    for q in inputs[:warmup]:
        runner(q)
    times = []
    for q in inputs:
        start = time.perf_counter()
        runner(q)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def build_and_convert(spec: str, data, quant: str) -> tuple[str, bytes]:
    from tinyloc_tf.compression.convert import convert, data_metadata
    from tinyloc_tf.models import build_model

    parts = spec.split(":")
    family, hidden, layers = parts[0], int(parts[1]), int(parts[2])
    exact = len(parts) > 3 and parts[3] == "exact"
    tagger = build_model(family, features=data.num_features, classes=data.num_classes, hidden=hidden,
                         layers=layers, steps=data.steps, int8_friendly=not exact)
    result = convert(tagger, quant, representative=data.train.X, metadata=data_metadata(data),
                     labels=data.train.y, validation=(data.val.X, data.val.y), qat_options={"progress": False})
    return f"{family} H{hidden}L{layers}{' exact' if exact else ''} {quant}", result.tflite


def bench(name: str, buf: bytes, X: np.ndarray) -> dict:
    from tinyloc_tf.compression.metadata import metadata_bytes
    from tinyloc_tf.deployment.host import find_arena_bytes, printed_arena_bytes, tflm_blocker

    row = {"model": name, "flash_bytes": len(buf), "metadata_bytes": metadata_bytes(buf)}
    blocker = tflm_blocker(buf)
    row["tflm_deployable"] = blocker is None
    if blocker is None:
        row["arena_bytes"] = find_arena_bytes(buf)
        row["arena_bytes_printed_by_tflm"] = printed_arena_bytes(buf)
        row["tflm_us_per_window"] = 1e6 * time_per_window(buf, X, "tflm")
    row["litert_us_per_window"] = 1e6 * time_per_window(buf, X, "litert")
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path, help=".tflite files (made by tinyloc convert)")
    parser.add_argument("--data", type=Path, help="prepared dataset: windows to time (test split) and to build for")
    parser.add_argument("--build", nargs="*", default=[], help="FAMILY:H:L[:exact] models to build and convert")
    parser.add_argument("--quant", default="int8", help="variant for --build (default int8)")
    parser.add_argument("--windows", type=int, default=200, help="windows to time per model (default 200)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)

    from tinyloc_tf.compression.flatbuffer import model_bytes
    from tinyloc_tf.compression.metadata import read_metadata
    from tinyloc_tf.data import load_prepared

    data = load_prepared(args.data) if args.data else None
    if args.build and data is None:
        parser.error("--build needs --data")
    jobs = [(str(path), model_bytes(path)) for path in args.models]
    jobs += [build_and_convert(spec, data, args.quant) for spec in args.build]
    if not jobs:
        parser.error("give .tflite files or --data with --build")

    rows = []
    for name, buf in jobs:
        if data is not None:
            X = data.test.X[: args.windows]
        else:  # windows of the model's own shape, uniformly in [0, 1] (timing only)
            meta = read_metadata(buf)
            X = np.random.default_rng(0).random((args.windows, meta["T"], len(meta["features"]))).astype(np.float32)
        rows.append(bench(name, buf, X))
        print(json.dumps(rows[-1]), file=sys.stderr)

    print("| model | flash B | arena B (TFLM) | TFLM us/window | LiteRT us/window |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        arena = row.get("arena_bytes", "not deployable")
        tflm = f"{row['tflm_us_per_window']:.0f}" if "tflm_us_per_window" in row else "-"
        print(f"| {row['model']} | {row['flash_bytes']} | {arena} | {tflm} | {row['litert_us_per_window']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from tinyloc_tf.errors import script_status

    raise SystemExit(script_status(main, "bench_tflm"))
