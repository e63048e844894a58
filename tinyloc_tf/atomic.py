"""Outputs that appear whole or not at all.

Every file or folder the project writes goes through a hidden temporary name beside its
destination and is renamed into place last, so an interrupted command never leaves a partial
output that looks complete (and a resumable sweep never mistakes one for a finished run).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tinyloc_tf.errors import TinylocError


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, renamed last."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_folder(out: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``out`` to fill; on success it replaces ``out``.

    On an exception the staging folder is removed and ``out`` is left as it was. With
    ``overwrite=False`` an ``out`` that exists by the time the work is done is an error.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the finished folder is not
    try:
        yield staging
        if out.exists():
            if not overwrite:
                raise TinylocError(f"{out} appeared meanwhile; not replacing it (pass --overwrite)")
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
