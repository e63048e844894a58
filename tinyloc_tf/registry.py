"""A named registry with lazily imported entries: what the family and variant registries share.

Entries name their code by import path (``"package.module:attribute"``) and are resolved
on use, so listing a registry (``--help``) loads no TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from tinyloc_tf.errors import TinylocError

T = TypeVar("T")


def resolve(path: str):
    """``"package.module:attribute"`` -> the attribute."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class Registry(Generic[T]):
    """Entries with a ``name``, in registration order; ``what`` names them in errors."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        """Add (or replace) an entry; returns it."""
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> tuple[T, ...]:
        return tuple(self._entries.values())

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise TinylocError(f"unknown {self.what} {name!r}; choose one of {', '.join(self._entries)}") from None
