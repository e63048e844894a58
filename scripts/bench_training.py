"""Seconds per training epoch and peak RSS of ``tinyloc train`` for the benchmark models.

    .venv/bin/python scripts/bench_training.py --data uji=DIR --data house=DIR [--epochs 4]

For every prepared dataset given and every model (Mamba H8L1, Mamba H32L1, MDCSA H8L1,
MDCSA H16L1) a fresh child process loads the data, builds the model and runs the same
fit loop as ``tinyloc train`` (CRF NLL, Viterbi validation after every epoch) for
``--epochs`` epochs without early stopping. It reports:

- ``first epoch s``: the first epoch, which includes tracing the graphs;
- ``s/epoch``: the mean of the remaining epochs (steady state), validation included;
- ``peak RSS MiB``: the child's peak resident memory (``ru_maxrss``), and ``base RSS MiB``
  after TensorFlow and the data were loaded but before the model was built, so the
  difference is what the model and its training cost.

A child per model keeps the peaks separate. Prints a markdown table (and ``--json FILE``
writes the rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

from tinyloc_tf.training.trainer import DEFAULTS

MODELS = (("mamba", 8, 1), ("mamba", 32, 1), ("mdcsa", 8, 1), ("mdcsa", 16, 1))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child(args) -> None:
    """Runs in a fresh process: one model on one dataset; prints one JSON line."""
    import keras

    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.training.recipe import Recipe
    from tinyloc_tf.training.trainer import count_params, fit_model

    data = load_prepared(args.child_data)
    base = rss_mib()
    times, clock = [], {}
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: clock.update(start=time.perf_counter()),
        on_epoch_end=lambda epoch, logs: times.append(time.perf_counter() - clock["start"]),
    )
    model = fit_model(data, args.child_family, args.child_hidden, args.child_layers, epochs=args.epochs,
                      batch_size=args.batch_size, lr=DEFAULTS["lr"], patience=args.epochs, seed=0,
                      recipe=Recipe.legacy(), verbose=0, callbacks=(timer,))[0]
    steady = times[1:] or times
    print(json.dumps({
        "params": count_params(model),
        "train_windows": len(data.train),
        "first_epoch_s": times[0],
        "s_per_epoch": sum(steady) / len(steady),
        "base_rss_mib": base,
        "peak_rss_mib": rss_mib(),
    }))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", default=[], metavar="NAME=DIR",
                        help="a prepared dataset to benchmark on (repeatable)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per model (default 4; the first is tracing)")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                        help=f"batch size (default {DEFAULTS['batch_size']}, as tinyloc train)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--child-data", help=argparse.SUPPRESS)
    parser.add_argument("--child-family", help=argparse.SUPPRESS)
    parser.add_argument("--child-hidden", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-layers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_data:
        child(args)
        return 0
    if not args.data:
        parser.error("give at least one --data NAME=DIR")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first one includes tracing)")

    rows = []
    for spec in args.data:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--data expects NAME=DIR, got {spec!r}")
        for family, hidden, layers in MODELS:
            label = f"{family} H{hidden}L{layers}"
            print(f"{name}: {label} ...", file=sys.stderr, flush=True)
            done = subprocess.run(
                [sys.executable, __file__, "--child-data", path, "--child-family", family,
                 "--child-hidden", str(hidden), "--child-layers", str(layers),
                 "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)],
                capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{name} {label}: child failed with exit code {done.returncode}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"dataset": name, "model": label, **result})

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"batch {args.batch_size}, {args.epochs} epochs per model\n")
    print("| dataset | model | params | train windows | first epoch s | s/epoch | base RSS MiB | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['dataset']} | {row['model']} | {row['params']:,} | {row['train_windows']:,} | "
              f"{row['first_epoch_s']:.2f} | {row['s_per_epoch']:.2f} | {row['base_rss_mib']:.0f} | "
              f"{row['peak_rss_mib']:.0f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
