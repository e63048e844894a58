"""``tinyloc``: one command line with verbs over the whole pipeline.

Each stage owns its verbs in its own ``cli.py`` (``register(subparsers)``); this module
only collects them, so ``tinyloc --help`` lists the pipeline in order. Heavy imports
(TensorFlow) happen inside the handlers, keeping ``--help`` fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tinyloc_tf import __version__
from tinyloc_tf.errors import TinylocError

# Stage modules in pipeline order; each exposes ``register(subparsers)``.
STAGES = (
    "tinyloc_tf.data.cli",
    "tinyloc_tf.training.cli",
    "tinyloc_tf.training.sweep_cli",
    "tinyloc_tf.compression.cli",
    "tinyloc_tf.deployment.cli",
    "tinyloc_tf.deployment.aot_cli",
    "tinyloc_tf.reports.cli",
    "tinyloc_tf.pipeline",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyloc",
        description="Room-level indoor localisation with tiny Keras models on TensorFlow Lite Micro.",
    )
    parser.add_argument("--version", action="version", version=f"tinyloc-tf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in STAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # stage not present in this build
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ logging (oneDNN notices, graph-rewrite chatter every epoch) buries the
    # progress bars; real failures still surface as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except TinylocError as exc:
        print(f"tinyloc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tinyloc {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
