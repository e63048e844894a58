"""Worker processes that never outlive the command that started them.

A sweep's workers are separate Python processes. If the parent is killed (SIGKILL, the
OOM killer, a closed terminal) they must not go on writing runs into the sweep folder and
then idle forever: :func:`die_with_parent` makes the kernel kill them when the parent dies.
Ctrl-C is the parent's to handle (it reports once and tears the workers down), so workers
ignore SIGINT.

The parent remembers a Ctrl-C in a flag (:func:`note_interrupt`). Python raises the
``KeyboardInterrupt`` wherever the main thread happens to be, and inside a finaliser or
some library frames it is printed and dropped; long loops therefore also call
:func:`raise_if_interrupted` at points where stopping is safe (every training batch,
every sweep run), so a dropped interrupt still stops the command within a step. Inside
:func:`deferred_interrupts` (Keras ``fit``) the handler raises nothing at all: an exception
raised into TensorFlow while it builds its datasets or traces its functions can crash the
process, so there the flag alone stops training, at the end of the current batch.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_interrupt = threading.Event()
_deferring = threading.Event()


def note_interrupt() -> None:
    """Record a Ctrl-C (called by the command line's SIGINT handler)."""
    _interrupt.set()


def clear_interrupt() -> None:
    """Forget a recorded Ctrl-C (the command line does this when a command ends)."""
    _interrupt.clear()


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C was recorded, even one a library swallowed."""
    if _interrupt.is_set():
        raise KeyboardInterrupt


def interrupts_deferred() -> bool:
    """True inside :func:`deferred_interrupts`: the SIGINT handler should only record."""
    return _deferring.is_set()


@contextlib.contextmanager
def deferred_interrupts():
    """Run a block in which a Ctrl-C is recorded but not raised; the block must call
    :func:`raise_if_interrupted` at its safe points. A Ctrl-C recorded inside is raised on
    leaving the block, if the block did not raise it itself."""
    _deferring.set()
    try:
        yield
    finally:
        _deferring.clear()
    raise_if_interrupted()


def die_with_parent(parent_pid: int) -> None:
    """Initializer of a worker process started by ``parent_pid``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        # No library exposes prctl; ctypes reaches libc's. The kernel then sends SIGKILL to
        # this process when the thread that started it exits.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            _watch_parent(parent_pid)
    else:
        _watch_parent(parent_pid)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _watch_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Fallback without prctl: a daemon thread that exits the process once it is orphaned."""

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def stop_children() -> None:
    """Terminate the multiprocessing children of this process (on Ctrl-C or an error), so the
    command does not wait for their current task before exiting."""
    import multiprocessing

    for child in multiprocessing.active_children():
        child.terminate()
    for child in multiprocessing.active_children():
        child.join(timeout=5)
