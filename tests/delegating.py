"""A StorageArea that hands every call to another one: tests subclass it to count, fail or
hide one method without rewriting the others."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO

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


class CountingStorage(DelegatingStorage):
    """Counts every byte read, by ranged reads or through ``open``, the ranged reads
    themselves, the blobs opened and the seeks on them."""

    def __init__(self, inner: StorageArea) -> None:
        super().__init__(inner)
        self.bytes_read = self.opened = self.seeks = 0
        self.ranged_reads: list[tuple[int, int]] = []

    def open(self, key: str) -> BinaryIO:
        self.opened += 1
        return _CountingFile(self, self.inner.open(key))  # type: ignore[return-value]

    def read_range(self, key: str, start: int, length: int) -> bytes:
        data = self.inner.read_range(key, start, length)
        self.ranged_reads.append((start, length))
        self.bytes_read += len(data)
        return data


class _CountingFile(io.RawIOBase):
    def __init__(self, owner: CountingStorage, f: BinaryIO) -> None:
        self._owner, self._f = owner, f

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._f.read(len(buffer))
        self._owner.bytes_read += len(data)
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._owner.seeks += 1
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()
        super().close()
