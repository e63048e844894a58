"""Argument types for the command line: a bad number is rejected while parsing, before any work.

Used as ``parser.add_argument("--windows", type=positive_int)``; argparse turns the
``ArgumentTypeError`` into ``tinyloc VERB: error: argument --windows: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        name = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {name}, got {text[:40]!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text[:40]!r}")
    return value


def _bounded(name: str, kind, accept, rule: str, doc: str):
    """An argument type: a ``kind`` number for which ``accept(value)`` holds, else ``rule``."""

    def parse(text: str):
        value = _number(text, kind)
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{rule}, got {value if kind is int else format(value, 'g')}")
        return value

    parse.__name__ = parse.__qualname__ = name
    parse.__doc__ = doc
    return parse


positive_int = _bounded("positive_int", int, lambda v: v >= 1, "must be at least 1",
                        "An integer >= 1 (counts, sizes, epochs).")
non_negative_int = _bounded("non_negative_int", int, lambda v: v >= 0, "must be 0 or more",
                            "An integer >= 0 (seeds, patience).")
#: Seeds go to NumPy, Keras and scikit-learn, which take 32-bit unsigned seeds.
MAX_SEED = 2**32 - 1
seed = _bounded("seed", int, lambda v: 0 <= v <= MAX_SEED, f"must be in 0..{MAX_SEED}",
                "A random seed: an integer in 0 .. 2**32 - 1.")
#: Most parallel jobs (processes or threads) a command starts: beyond it a machine runs out of
#: threads before it runs out of work.
MAX_JOBS = 256
jobs = _bounded("jobs", int, lambda v: 1 <= v <= MAX_JOBS, f"must be in 1..{MAX_JOBS}",
                "A number of parallel jobs: 1 .. 256.")

#: Largest tensor arena a host run accepts, in KiB: 1 GiB, far above any microcontroller's RAM and
#: below the 2 GiB where TFLM's 32-bit arena size would wrap.
MAX_ARENA_KIB = 1024 * 1024
arena_kib = _bounded("arena_kib", float, lambda v: 0 < v <= MAX_ARENA_KIB,
                     f"must be more than 0 and at most {MAX_ARENA_KIB}", "A tensor arena in KiB: more than 0, at most 1 GiB.")


def c_identifier_prefix(text: str) -> str:
    """A prefix for C symbols: empty, or a C identifier's start (a letter or _, then letters,
    digits or _)."""
    import re

    if text and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise argparse.ArgumentTypeError(f"must be empty or a C identifier (letters, digits, _; not starting with "
                                         f"a digit), got {text[:40]!r}")
    return text


positive_float = _bounded("positive_float", float, lambda v: v > 0, "must be more than 0",
                          "A finite number > 0 (learning rates, sizes in KiB, durations).")
non_negative_float = _bounded("non_negative_float", float, lambda v: v >= 0, "must be 0 or more",
                              "A finite number >= 0 (weights, thresholds).")
fraction = _bounded("fraction", float, lambda v: 0.0 < v < 1.0, "must be between 0 and 1 (exclusive)",
                    "A share strictly between 0 and 1 (validation fraction).")
unit_interval = _bounded("unit_interval", float, lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]",
                         "A weight in [0, 1] (distillation alpha).")
percent = _bounded("percent", float, lambda v: 0.0 <= v < 100.0, "must be in [0, 100)",
                   "A percentage in [0, 100).")
