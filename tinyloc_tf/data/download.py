"""Download a dataset file with a progress bar, verify it, and only then give it its name.

Plain ``urllib`` (no extra dependency). The file streams into ``<name>.part`` next to the
destination while its sha256 is computed; it is renamed into place only after the check
passes, so a half-finished or corrupt download never sits under the real name.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from tinyloc_tf.atomic import staged_folder
from tinyloc_tf.errors import DataError, TinylocError

CHUNK = 1 << 16
TIMEOUT_S = 60
USER_AGENT = "tinyloc-tf (dataset download)"


def _stream(url: str, part: Path, desc: str, progress: bool) -> str:
    """Write ``url`` to ``part``; return the sha256 of what arrived."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with open(part, "wb") as handle, tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress
        ) as bar:
            while block := response.read(CHUNK):
                handle.write(block)
                digest.update(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size != total:
        raise DataError(f"{url}: connection closed after {part.stat().st_size} of {total} bytes")
    return digest.hexdigest()


def download(
    urls: str | Sequence[str],
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    verify: Callable[[Path, str], None] | None = None,
    manual_hint: str = "",
    progress: bool = True,
) -> Path:
    """Fetch the first of ``urls`` that answers into ``dest`` and return ``dest``.

    Verification, before the rename: when ``sha256`` is given, the file must match it unless
    ``verify(part_path, actual_sha256)`` is given, which then decides (raising
    :class:`DataError` to reject). A file already at ``dest`` that passes the same check is
    kept without downloading. Offline (no URL reachable) raises :class:`TinylocError` whose
    message names ``dest`` and adds ``manual_hint``.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def check(path: Path, actual: str) -> None:
        if verify is not None:
            verify(path, actual)
        elif sha256 is not None and actual != sha256:
            raise DataError(f"{path}: sha256 {actual} does not match the expected {sha256}")

    if dest.is_file():
        from tinyloc_tf.data.prepared import sha256_file

        check(dest, sha256_file(dest))
        return dest

    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in urls:
        try:
            actual = _stream(url, part, desc=dest.name, progress=progress)
        except (urllib.error.URLError, OSError, DataError) as exc:
            part.unlink(missing_ok=True)
            reason = getattr(exc, "reason", exc)
            failures.append(f"{url}: {reason}")
            continue
        try:
            check(part, actual)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)
        return dest
    raise TinylocError(
        f"could not download {dest.name} ({'; '.join(failures)}). If this machine is offline, "
        f"fetch it elsewhere and place it at {dest}" + (f". {manual_hint}" if manual_hint else "")
    )


def extract_zip(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Unpack ``archive`` into the folder ``dest`` (created whole, or not at all).

    ``zipfile`` already refuses member names that would escape the folder (absolute paths,
    ``..``); unpacking goes to a hidden sibling first and is renamed when complete.
    """
    import zipfile

    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise TinylocError(f"{dest}: already exists; remove it to unpack {archive.name} again")
    try:
        with staged_folder(dest, overwrite=False) as staging, zipfile.ZipFile(archive) as handle:
            handle.extractall(staging)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive}: not a zip archive ({exc})") from exc
    return dest
