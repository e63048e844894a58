"""Outputs that appear whole or not at all, and never at the cost of the user's files.

Every file or folder the project writes goes through a hidden temporary name beside its
destination (``.NAME.partial-<pid>-<random suffix>``) and is renamed into place last, so an interrupted
command never leaves a partial output that looks complete (and a resumable sweep never
mistakes one for a finished run). The PID in the name lets the next run remove what a
killed run left behind, and only that.

:func:`check_output` is the one check every writing command makes before its long work:
an existing non-empty output is refused without ``--overwrite``, an output that is (or
holds) one of the command's inputs is always refused, and an output that cannot be
created (read-only folder, a path below a regular file) fails in milliseconds.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tinyloc_tf.errors import TinylocError

PARTIAL_MARK = ".partial-"
_PARTIAL_PID = re.compile(r"\.partial-(\d+)-")


def _partial_prefix(path: Path) -> str:
    return f".{path.name}{PARTIAL_MARK}{os.getpid()}-"


def _umask() -> int:
    """The process umask: read from /proc on Linux; elsewhere os.umask can only be read by
    setting it, so it is set straight back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_partials(out: str | os.PathLike) -> list[Path]:
    """Remove the staging leftovers of ``out`` whose writing process is gone; returns them.

    Leftovers without a PID in their name (or whose process still runs) are only reported.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    removed = []
    for leftover in sorted(out.parent.glob(f".{glob.escape(out.name)}{PARTIAL_MARK}*")):
        match = _PARTIAL_PID.search(leftover.name[len(out.name) + 1:])
        if match is None:
            print(f"tinyloc: note: {leftover} looks like the leftover of an interrupted run; "
                  "remove it if no other tinyloc command is writing there", file=sys.stderr)
            continue
        if _pid_alive(int(match.group(1))):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        print(f"tinyloc: removed {leftover}, left by an interrupted run", file=sys.stderr)
        removed.append(leftover)
    return removed


def _holds(outer: Path, inner: Path) -> bool:
    return outer == inner or outer in inner.parents


#: What the commands read inside an input folder: a run's files, a prepared dataset's, the raw
#: UJIIndoorLoc tables and the in-home houses. An output inside an input folder may not be (or
#: lie inside) one of them, even with --overwrite; anything else there is the user's to replace.
INPUT_MEMBERS = ("model.keras", "config.json", "metrics.json", "history.csv", "meta.json", "train.npz", "val.npz",
                 "test.npz", "trainingData.csv", "validationData.csv", "*.zip", "house_*")


def _read_member(relative: Path) -> bool:
    import fnmatch

    return any(fnmatch.fnmatchcase(relative.parts[0], pattern) for pattern in INPUT_MEMBERS)


def _resolved_inputs(out: Path, inputs):
    """``(input as given, its resolved path, out's resolved path)`` for each input given."""
    target = out.resolve()
    return [(source, Path(source).resolve(), target) for source in inputs if source is not None]


def check_output(
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    option: str = "--out",
    kind: str | None = None,
) -> Path:
    """Check before any long work that ``out`` may be written; returns it as a ``Path``.

    Raises :class:`TinylocError` when ``out`` is (or is a folder holding) one of ``inputs``;
    when it is or lies inside one of an input folder's :data:`INPUT_MEMBERS` (even with
    ``overwrite``); when it exists and is not an empty folder and ``overwrite`` is false; when
    it is a folder where ``kind`` is ``"file"`` (or a file where it is ``"folder"``); or when it
    cannot be created. Also removes staging leftovers of ``out`` from killed runs.
    """
    out = Path(out)
    for source, source_path, target in _resolved_inputs(out, inputs):
        if _holds(target, source_path):
            raise TinylocError(
                f"{option} {out} would replace the input {source}; choose an {option} outside it"
            )
        # Inside an input folder an output of its own is fine (RUN/int8.tflite, written again
        # with --overwrite), but not one that replaces what the commands read there.
        if source_path.is_dir() and source_path in target.parents and _read_member(target.relative_to(source_path)):
            raise TinylocError(
                f"{option} {out} would replace {source_path.name}/{target.relative_to(source_path).parts[0]}, "
                f"part of the input {source}; choose an {option} outside it"
            )
    if kind == "file" and out.is_dir():
        raise TinylocError(f"{option} {out} is a folder; {option} names a file to write")
    if kind == "folder" and (out.is_file() or (out.is_symlink() and not out.is_dir())):
        raise TinylocError(f"{option} {out} is a file; {option} names a folder to write")
    if out.is_symlink() or out.exists():
        if out.is_dir() and not out.is_symlink():
            if any(out.iterdir()) and not overwrite:
                raise TinylocError(f"{out} already exists and is not empty; choose another {option} "
                                   "or pass --overwrite")
        elif not overwrite:
            raise TinylocError(f"{out} already exists; choose another {option} or pass --overwrite")
    _check_creatable(out, option)
    clean_stale_partials(out)
    return out


def check_resumable_output(out: str | os.PathLike, *, own: Iterable[str],
                           inputs: Iterable[str | os.PathLike | None] = (), option: str = "--out") -> Path:
    """:func:`check_output` for the commands that resume (``sweep``, ``pipeline``): ``out`` may
    exist when it holds one of the command's ``own`` entries (``sweep.json``), so a rerun
    continues; a non-empty folder holding none of them is someone else's and is refused, as is
    an ``out`` that is, holds or lies inside an input."""
    out = Path(out)
    for source, source_path, target in _resolved_inputs(out, inputs):
        if _holds(target, source_path) or _holds(source_path, target):
            raise TinylocError(f"{option} {out} would write into the input {source}; choose an {option} outside it")
    if out.is_dir() and any(out.iterdir()) and not any((out / name).exists() for name in own):
        raise TinylocError(f"{option} {out} is a folder with other content (no {' or '.join(own)} of an earlier run "
                           f"to resume); choose a new or empty {option}")
    if out.exists() and not out.is_dir():
        raise TinylocError(f"{option} {out} is a file, not a folder")
    _check_creatable(out, option)
    return out


def _check_creatable(out: Path, option: str) -> None:
    """``out``'s nearest existing ancestor must be a folder we can create files in."""
    ancestor = out.absolute().parent
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link: following it fails below
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise TinylocError(f"{option} {out}: {ancestor} is a file, not a folder")
    try:
        probe = tempfile.TemporaryFile(dir=ancestor)
    except OSError as exc:
        raise TinylocError(f"{option} {out}: cannot write in {ancestor} ({exc.strerror})") from exc
    probe.close()


def _os_error(path: Path, exc: OSError) -> TinylocError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on the device"
    return TinylocError(f"cannot write {path}: {reason}")


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, renamed last.

    The file gets the usual permissions for new files (``0666`` less the umask), not the
    private ``0600`` of a temporary file.
    """
    path = Path(path)
    clean_stale_partials(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_partial_prefix(path), dir=path.parent)
    except OSError as exc:
        raise _os_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _os_error(path, exc) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_folder(
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``out`` to fill; on success it replaces ``out``.

    On an exception the staging folder is removed and ``out`` is left as it was. An ``out``
    that is not an empty folder by the time the work is done is replaced only with
    ``overwrite=True``, and never when it is (or holds) one of ``inputs``.
    """
    out = Path(out)
    inputs = tuple(inputs)
    check_output(out, overwrite=overwrite, inputs=inputs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_partial_prefix(out), dir=out.parent))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the finished folder is not
    except OSError as exc:
        raise _os_error(out, exc) from exc
    try:
        yield staging
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if str(exc.filename or "").startswith(str(staging)):
            raise _os_error(out, exc) from exc
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        # Checked again: the work may have taken hours, and something may have appeared.
        check_output(out, overwrite=overwrite, inputs=inputs)
        if out.is_symlink() or out.is_file():
            out.unlink()
        elif out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise _os_error(out, exc) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
