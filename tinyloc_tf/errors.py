"""Errors the command line reports as a one-line message instead of a traceback.

Exit statuses (docs/errors.md): 0 success, 1 a check the command ran failed (for example
``compile --check`` found a difference), 2 bad input or usage (:class:`TinylocError`, or
argparse), 3 ``deploy``: the firmware does not fit the RAM budget, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

#: Status of a command whose stdout reader went away (128 + SIGPIPE), as a shell reports a tool's.
EXIT_STDOUT_CLOSED = 141

#: Longest echo of a user's value inside an error message, in characters.
SHOWN_LIMIT = 80


class TinylocError(Exception):
    """Base class: a problem with the user's input or environment, explained in the message."""


class DataError(TinylocError):
    """Bad or missing input data. The message names the file, row, column or value."""


def shown(value, limit: int = SHOWN_LIMIT) -> str:
    """``repr(value)`` (``str`` for exceptions) cut to ``limit`` characters, for error messages.

    A cell of a malformed file can be hundreds of megabytes; only its start is echoed.
    Strings are cut before ``repr`` so a huge value is never copied whole.
    """
    if isinstance(value, BaseException):
        text = str(value)
        if len(text) > limit:
            text = text[:limit] + f"... ({len(text)} characters)"
        return text
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def not_utf8(data: bytes) -> str:
    """Where ``data`` stops being UTF-8: ``"line L, byte B: not UTF-8 text (0x..)"``."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"line {line}, byte {exc.start}: not UTF-8 text (0x{data[exc.start]:02x})"
    return "not UTF-8 text"


def script_status(main, prog: str, *args) -> int:
    """``main(*args)``'s status for a script under ``scripts/``: a :class:`TinylocError` (or a
    missing file) is one line ``PROG: error: ...`` on stderr and status 2, as ``tinyloc`` verbs
    report it, not a traceback."""
    import sys

    try:
        return main(*args) or 0
    except BrokenPipeError:
        if stdout_closed():
            return EXIT_STDOUT_CLOSED  # ``script.py | head``: the reader asked for no more
        raise
    except TinylocError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
    except (FileNotFoundError, IsADirectoryError) as error:
        print(f"{prog}: error: {error.filename}: {error.strerror.lower()}", file=sys.stderr)
    return 2


def stdout_closed() -> bool:
    """Whether the reader of stdout has gone (``tinyloc data info DIR | head``). If so, stdout
    now writes to the null device, so that Python's flush at exit does not fail again."""
    import os
    import select
    import sys

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        closed = any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no real stdout, or no poll() on this platform
        return False
    if closed:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    return closed


def read_json_object(path, missing: str = "not found", error=None) -> dict:
    """The JSON object in the file ``path``; a missing file (``missing`` says what to do), a
    folder, invalid JSON or another JSON type is an ``error`` (default :class:`TinylocError`)
    naming the file."""
    import json
    from pathlib import Path

    path, error = Path(path), error or TinylocError
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise error(f"{path}: a folder, expected a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({shown(exc, 120)})") from exc
    if not isinstance(payload, dict):
        raise error(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload
