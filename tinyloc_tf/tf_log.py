"""What TensorFlow prints goes to a log file, not the terminal.

TensorFlow, absl and LiteRT write straight to file descriptors 1 and 2 from C++ (oneDNN
notices, ``absl::InitializeLog`` warnings, "Created TensorFlow Lite XNNPACK delegate"),
and Python-level retracing warnings go to stderr as well. Long commands (``sweep``,
``pipeline``) send all of it to ``SWEEP/tensorflow.log`` and keep the terminal for their
progress bars and results; errors still reach the terminal as one-line messages.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

LOG_NAME = "tensorflow.log"


def _point_at(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def send_output_to(path: str | os.PathLike) -> None:
    """For the rest of this process (a worker), append fds 1 and 2 to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    _point_at(Path(path))


@contextlib.contextmanager
def output_to(path: str | os.PathLike) -> Iterator[None]:
    """While the block runs, append what this process writes to fds 1 and 2 to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        _point_at(Path(path))
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
