"""``StorageArea`` on a local filesystem, laid out as ``root/ab/<key>``.

Keys are checked against a strict pattern (32 lowercase hex digits, as made by
``StorageArea.new_key``) before any path is built, so no client input can reach a path.
A write goes to a temporary file in the final directory, is flushed and fsynced, renamed
over the final name and the directory is fsynced: readers see the whole blob or nothing.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .base import StorageArea

_KEY = re.compile(r"[0-9a-f]{32}")
_TEMP_PREFIX = ".tmp-"
CHUNK_SIZE = 1 << 20


def check_key(key: str) -> str:
    """Return ``key`` if it is a storage key; ``ValueError`` otherwise."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError("invalid storage key")
    return key


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (POSIX: fsync the directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemStorage(StorageArea):
    """Blobs as files under ``root``; safe for concurrent processes on one filesystem."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        check_key(key)
        # One level of 256 folders: few enough that new folders (and their fsyncs) are
        # rare after the first writes, enough to keep ~4,000 files per folder at 1M blobs.
        return self.root / key[:2] / key

    def _make_dirs(self, directory: Path) -> None:
        """Create ``ab`` as needed, fsyncing the root when it got a new entry."""
        if not directory.is_dir():
            directory.mkdir(exist_ok=True)  # another process may win the race: fine
            _fsync_dir(directory.parent)

    def write(self, key: str, stream: BinaryIO) -> int:
        path = self._path(key)
        self._make_dirs(path.parent)
        temp = path.parent / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            with open(temp, "xb") as out:
                size = 0
                while chunk := stream.read(CHUNK_SIZE):
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return size

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")  # the caller closes it
        except FileNotFoundError:
            raise FileNotFoundError(f"no blob {key}") from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """One positioned read (``pread``); shorter only past the end of the blob."""
        if start < 0 or length < 0:
            raise ValueError("negative range")
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            raise FileNotFoundError(f"no blob {key}") from None
        try:
            parts = []
            while length > 0:
                part = os.pread(fd, length, start)
                if not part:  # end of file
                    break
                parts.append(part)
                start, length = start + len(part), length - len(part)
            return b"".join(parts)
        finally:
            os.close(fd)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        """Every stored key; temporary files of writes in progress are not keys."""
        for _dirpath, _dirnames, filenames in os.walk(self.root):
            yield from (name for name in filenames if _KEY.fullmatch(name))
