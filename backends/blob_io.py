"""A buffered, seekable reader for blobs that are not local files (S3 objects, compressed
blobs), shared by the storage areas that need one."""

from __future__ import annotations

import io
from typing import Any


class PositionedReader(io.RawIOBase):
    """A raw, seekable reader of a blob of known size: it keeps the position, subclasses
    read from it. ``target`` turns a seek into an absolute position."""

    def __init__(self, size: int) -> None:
        self._size, self._pos = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def target(self, offset: int, whence: int) -> int:
        if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END):
            raise ValueError(f"invalid whence ({whence})")
        target = offset + {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if target < 0:
            raise OSError(f"negative seek position {target}")
        return target


class BufferedBlob(io.BufferedIOBase):
    """What ``open`` returns: a ``BufferedReader`` over a raw reader, wrapped because pydicom
    takes any ``BufferedReader`` for a local file and reopens it by name."""

    def __init__(self, raw: io.RawIOBase, buffer_size: int) -> None:
        self._file = io.BufferedReader(raw, buffer_size=buffer_size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._file.read(size)

    def read1(self, size: int = -1) -> bytes:
        return self._file.read1(size)

    def peek(self, size: int = 0) -> bytes:
        return self._file.peek(size)

    def readinto(self, buffer: Any) -> int:
        return self._file.readinto(buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        super().close()
