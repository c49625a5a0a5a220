"""A StorageArea that hands every call to another one: tests subclass it to count, fail or
hide one method without rewriting the others."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from backends.base import StorageArea


class DelegatingStorage(StorageArea):
    def __init__(self, inner: StorageArea) -> None:
        self.inner = inner

    def write(self, key: str, stream: BinaryIO) -> int:
        return self.inner.write(key, stream)

    def open(self, key: str) -> BinaryIO:
        return self.inner.open(key)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        return self.inner.read_range(key, start, length)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def keys(self) -> Iterator[str]:
        return self.inner.keys()
