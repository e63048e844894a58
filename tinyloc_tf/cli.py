"""``tinyloc``: one command line with verbs over the whole pipeline.

Each stage owns its verbs in its own ``cli.py`` (``register(subparsers)``); this module
only collects them, so ``tinyloc --help`` lists the pipeline in order. Heavy imports
(TensorFlow) happen inside the handlers, keeping ``--help`` fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from tinyloc_tf import __version__, lifetime
from tinyloc_tf.errors import EXIT_STDOUT_CLOSED, TinylocError, stdout_closed

# Stage modules in pipeline order; each exposes ``register(subparsers)``.
STAGES = (
    "tinyloc_tf.data.cli",
    "tinyloc_tf.training.cli",
    "tinyloc_tf.compression.cli",
    "tinyloc_tf.deployment.cli",
    "tinyloc_tf.deployment.aot_cli",
    "tinyloc_tf.reports.cli",
    "tinyloc_tf.workflows.cli",
)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (the full usage is one ``--help`` away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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


#: Exit statuses of every verb (docs/errors.md).
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 70, 130

#: Longest error message printed; a longer one is cut (its value echoes are capped already).
MESSAGE_LIMIT = 1000

#: What an interrupted verb leaves behind; every other verb writes nothing partial.
KEPT_ON_INTERRUPT = {
    "sweep": "finished runs are kept; rerun the same command to resume",
    "pipeline": "finished stages and runs are kept; rerun the same command to resume",
}


class _Interrupted:
    """SIGINT handler: remember the interrupt, ignore further ones while the stack unwinds
    (staging folders are removed on the way), and raise ``KeyboardInterrupt`` once.

    The flag is what ``main`` trusts: TensorFlow may catch the ``KeyboardInterrupt`` and
    raise another exception type from inside ``fit``, or the interrupt may land in a
    finaliser that drops it; long loops then stop at their next
    :func:`~tinyloc_tf.lifetime.raise_if_interrupted`. Inside
    :func:`~tinyloc_tf.lifetime.deferred_interrupts` (Keras ``fit``) it only records.
    """

    def __init__(self):
        self.seen = False

    def __call__(self, signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.seen = True
        lifetime.note_interrupt()
        if not lifetime.interrupts_deferred():
            raise KeyboardInterrupt


def _close_progress_bars() -> None:
    """Close open tqdm bars so the interrupt message is the last line, not a bar redrawn after it."""
    module = sys.modules.get("tqdm.std")
    if module is not None:
        for bar in list(getattr(module.tqdm, "_instances", ())):  # tqdm's registry of open bars
            bar.close()


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + " ..."


def _internal_error(command: str, exc: BaseException) -> int:
    """An unexpected exception: one line on the terminal, the traceback in a log file."""
    import tempfile
    import traceback

    fd, log = tempfile.mkstemp(prefix=f"tinyloc-{command}-", suffix=".log")
    with os.fdopen(fd, "w") as handle:
        traceback.print_exception(exc, file=handle)
    print(f"tinyloc {command}: internal error: {type(exc).__name__}: {_one_line(exc)} "
          f"(traceback in {log}; please report it)", file=sys.stderr)
    return EXIT_INTERNAL


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ logging (oneDNN notices, graph-rewrite chatter every epoch) buries the
    # progress bars; real failures still surface as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    interrupted = _Interrupted()
    previous = signal.getsignal(signal.SIGINT)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        signal.signal(signal.SIGINT, interrupted)
    try:
        result = args.handler(args)
    except BaseException as exc:  # noqa: BLE001  (every way out gets one line and a status)
        if interrupted.seen or isinstance(exc, KeyboardInterrupt):
            _close_progress_bars()
            kept = KEPT_ON_INTERRUPT.get(args.command, "nothing written")
            print(f"\ntinyloc {args.command}: interrupted; {kept}", file=sys.stderr)
            return EXIT_INTERRUPTED
        if isinstance(exc, TinylocError):
            print(f"tinyloc {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, OSError) and exc.filename is not None:
            print(f"tinyloc {args.command}: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, SystemExit):
            raise
        if isinstance(exc, BrokenPipeError) and stdout_closed():
            return EXIT_STDOUT_CLOSED  # as a shell tool does: no message, the reader asked for no more
        if os.environ.get("TINYLOC_TRACEBACK"):
            raise
        return _internal_error(args.command, exc)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
        lifetime.clear_interrupt()
    if interrupted.seen:  # the interrupt was swallowed inside a library; its output is not trusted
        print(f"\ntinyloc {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
