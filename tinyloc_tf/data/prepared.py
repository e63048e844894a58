"""The prepared-dataset contract every later stage reads.

A prepared dataset is a folder with

- ``train.npz``, ``val.npz``, ``test.npz``: arrays ``X`` float32 ``[N, T, F]`` in ``[0, 1]``
  and ``y`` int32 ``[N, T]`` (one class per time step);
- ``meta.json``: ``features`` (names, in column order), ``classes`` (names, index = label),
  ``T``, ``scaling`` (``min``/``max`` used for min-max scaling, per feature), ``labels``
  (label scheme), ``source`` and ``source_sha256``, plus loader-specific counts
  (for example rows removed by the documented preprocessing).

Files are written to a temporary folder and renamed into place last, so an interrupted
``prepare`` never leaves a folder that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyloc_tf.atomic import staged_folder
from tinyloc_tf.errors import DataError, read_json_object, shown

SPLITS = ("train", "val", "test")
REQUIRED_META = ("features", "classes", "T", "scaling", "labels", "source", "source_sha256")


@dataclass
class Split:
    """One split: ``X`` float32 ``[N, T, F]``, ``y`` int32 ``[N, T]``."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.X.shape[0])


@dataclass
class PreparedDataset:
    """A prepared dataset loaded from disk."""

    path: Path
    train: Split
    val: Split
    test: Split
    meta: dict

    @property
    def steps(self) -> int:
        return int(self.meta["T"])

    @property
    def num_features(self) -> int:
        return len(self.meta["features"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["classes"])

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def fingerprint(self) -> str:
        """sha256 over the three split files, identifying exactly the data a model saw."""
        digest = hashlib.sha256()
        for name in SPLITS:
            digest.update(sha256_file(self.path / f"{name}.npz").encode())
        return digest.hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_split(name: str, split: Split, steps: int, features: int, classes: int) -> None:
    """The contract of one split: shapes, X finite in [0, 1], y integer labels in 0..K-1,
    at least one window (every later stage trains, selects or scores on each split)."""
    X, y = split.X, split.y
    if X.ndim != 3 or y.ndim != 2 or X.shape[:2] != y.shape:
        raise DataError(f"{name}: X must be [N, T, F] and y [N, T]; got {X.shape} and {y.shape}")
    if X.shape[1] != steps or X.shape[2] != features:
        raise DataError(f"{name}: X has shape {X.shape}, expected [N, {steps}, {features}]")
    if len(X) == 0:
        raise DataError(f"{name}: the split is empty (no windows)")
    if X.dtype.kind != "f":
        raise DataError(f"{name}: X must be floating point, got {X.dtype}")
    if not np.isfinite(X).all():
        raise DataError(f"{name}: X holds NaN or infinite values")
    low, high = float(X.min()), float(X.max())
    if low < 0.0 or high > 1.0:
        raise DataError(f"{name}: X must be min-max scaled into [0, 1], found values in [{low:g}, {high:g}]")
    if y.dtype.kind not in "iu":
        raise DataError(f"{name}: y must hold integer class indices, got {y.dtype}")
    if y.min() < 0 or y.max() >= classes:
        raise DataError(f"{name}: labels outside 0..{classes - 1} (min {y.min()}, max {y.max()})")


def write_prepared(out: str | os.PathLike, splits: dict[str, Split], meta: dict, *, overwrite: bool = False) -> Path:
    """Write the contract files atomically into ``out`` and return its path.

    An existing non-empty ``out`` is replaced only with ``overwrite``, and never when it
    holds ``meta["source"]`` (the raw data it was prepared from).
    """
    out = Path(out)
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise DataError(f"meta.json would miss fields: {', '.join(missing)}")
    steps, features, classes = int(meta["T"]), len(meta["features"]), len(meta["classes"])
    for name in SPLITS:
        if name not in splits:
            raise DataError(f"split {name!r} missing")
        _check_split(name, splits[name], steps, features, classes)

    with staged_folder(out, overwrite=overwrite, inputs=(meta["source"],)) as staging:
        for name in SPLITS:
            split = splits[name]
            np.savez_compressed(
                staging / f"{name}.npz",
                X=split.X.astype(np.float32, copy=False),
                y=split.y.astype(np.int32, copy=False),
            )
        meta = dict(meta)
        meta["counts"] = {name: int(len(splits[name])) for name in SPLITS}
        with open(staging / "meta.json", "w") as handle:
            json.dump(meta, handle, indent=2, sort_keys=True)
            handle.write("\n")
    return out


def load_prepared(path: str | os.PathLike) -> PreparedDataset:
    """Load a prepared dataset folder, checking it against the contract."""
    path = Path(path)
    meta_path = path / "meta.json"
    meta = read_json_object(meta_path, missing="not found (run `tinyloc data prepare ...` first)", error=DataError)
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise DataError(f"{meta_path}: missing fields {', '.join(missing)}")
    for key in ("features", "classes"):
        if not isinstance(meta[key], list) or not meta[key]:
            raise DataError(f"{meta_path}: {key!r} must be a non-empty list of names")
    steps = meta["T"] if isinstance(meta["T"], int) and not isinstance(meta["T"], bool) else 0
    if steps < 1:
        raise DataError(f"{meta_path}: 'T' must be a positive integer, got {shown(meta['T'])}")
    if "scaling" in meta:
        _check_scaling(meta_path, meta["scaling"], len(meta["features"]))
    splits = {}
    for name in SPLITS:
        file = path / f"{name}.npz"
        if file.is_dir():
            raise DataError(f"{file}: a folder, expected an .npz file")
        if not file.is_file():
            raise DataError(f"{file}: not found")
        split = _read_split(file)
        _check_split(str(file), split, steps, len(meta["features"]), len(meta["classes"]))
        # The contract's dtypes, converted only after the checks (a cast would hide float labels).
        splits[name] = Split(split.X.astype(np.float32, copy=False), split.y.astype(np.int32, copy=False))
    return PreparedDataset(path=path, meta=meta, **splits)


def _check_scaling(meta_path: Path, scaling, features: int) -> None:
    """``meta.json``'s ``scaling`` must rebuild a representation (``data/representation.py``)."""
    from tinyloc_tf.data.representation import Representation

    if not isinstance(scaling, dict):
        raise DataError(f"{meta_path}: 'scaling' must be an object, got {shown(scaling, 60)}")
    try:
        rep = Representation.from_meta(scaling)
    except DataError as exc:
        raise DataError(f"{meta_path}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{meta_path}: 'scaling' is malformed ({shown(exc, 80)})") from None
    if rep.kind == "minmax" and not (np.shape(rep.minimum) == np.shape(rep.maximum) == (features,)):
        raise DataError(f"{meta_path}: 'scaling' min and max need one value per feature ({features})")


def _read_split(file: Path) -> Split:
    """``X`` and ``y`` of one ``.npz`` as stored (dtypes unchanged), or a :class:`DataError`."""
    import zipfile
    import zlib

    try:
        arrays = np.load(file, allow_pickle=False)
        if not isinstance(arrays, np.lib.npyio.NpzFile):  # a bare .npy under an .npz name
            raise DataError(f"{file}: not an .npz archive of arrays 'X' and 'y'")
        with arrays:
            if "X" not in arrays or "y" not in arrays:
                raise DataError(f"{file}: needs arrays 'X' and 'y', has {sorted(arrays.files)}")
            return Split(arrays["X"], arrays["y"])
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise DataError(f"{file}: cannot be read; truncated or not an .npz file ({shown(exc, 120)})") from exc


def class_counts(split: Split, num_classes: int) -> np.ndarray:
    """Labelled time steps per class."""
    return np.bincount(split.y.reshape(-1), minlength=num_classes)
