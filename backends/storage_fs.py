"""``StorageArea`` on a local filesystem, laid out as ``root/ab/<key>``.

Keys are checked against a strict pattern (32 lowercase hex digits, as made by
``StorageArea.new_key``) before any path is built, so no client input can reach a path.
A write goes to a temporary file in the final directory, is fsynced, renamed over the
final name and the directory is fsynced: readers see the whole blob or nothing, and an
acknowledged blob survives a crash. That is two fsyncs per blob and no more: the 256
``ab`` folders are made (and the root fsynced once) when the storage is opened, not by
writes. An in-memory stream is written from its buffer, without a copy; others through
one reused 1 MiB buffer.
"""

from __future__ import annotations

import io
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .base import BlobStat, StorageArea

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


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


def _copy(stream: BinaryIO, fd: int) -> int:
    """Write the rest of ``stream`` to ``fd``; the byte count."""
    if isinstance(stream, io.BytesIO):  # getvalue() shares the bytes: no copy
        data = memoryview(stream.getvalue())[stream.tell():]
        _write_all(fd, data)
        stream.seek(0, os.SEEK_END)
        return len(data)
    size = 0
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        while chunk := stream.read(CHUNK_SIZE):
            _write_all(fd, memoryview(chunk))
            size += len(chunk)
        return size
    buffer = bytearray(CHUNK_SIZE)  # one buffer, reused: no allocation per chunk
    view = memoryview(buffer)
    while count := readinto(buffer):
        _write_all(fd, view[:count])
        size += count
    return size


class FilesystemStorage(StorageArea):
    """Blobs as files under ``root``; safe for concurrent processes on one filesystem."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._make_folders()

    def __repr__(self) -> str:
        return f"FilesystemStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        check_key(key)
        # One level of 256 folders: enough to keep ~4,000 files per folder at 1M blobs.
        return self.root / key[:2] / key

    def _make_folders(self) -> None:
        """Create the 256 ``ab`` folders; fsync the root once if any was new."""
        created = False
        for i in range(256):
            try:
                os.mkdir(self.root / f"{i:02x}")
                created = True
            except FileExistsError:  # made before, maybe by another process right now
                pass
        if created:
            _fsync_dir(self.root)

    def _create(self, temp: Path) -> int:
        """Open a new temporary file; a folder removed since opening is made again."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(temp, flags, 0o666)
        except FileNotFoundError:
            temp.parent.mkdir(exist_ok=True)
            _fsync_dir(temp.parent.parent)
            return os.open(temp, flags, 0o666)

    def write(self, key: str, stream: BinaryIO) -> int:
        path = self._path(key)
        temp = path.parent / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
        fd = self._create(temp)
        try:
            try:
                size = _copy(stream, fd)
                os.fsync(fd)
            finally:
                os.close(fd)
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

    def stat(self, key: str) -> BlobStat:
        """The file's size and mtime: its last write, just before the rename that made it
        visible."""
        try:
            info = os.stat(self._path(key))
        except FileNotFoundError:
            raise FileNotFoundError(f"no blob {key}") from None
        return BlobStat(info.st_size, info.st_mtime)

    def sweep_interrupted(self, older_than: float, *, delete: bool = False) -> list[str]:
        """Temporary files of writes whose process died before the rename (SIGKILL, power
        loss), as ``ab/.tmp-...``; a write in progress keeps touching its own."""
        limit, found = time.time() - older_than, []
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if not entry.name.startswith(_TEMP_PREFIX):
                    continue
                try:
                    if entry.stat(follow_symlinks=False).st_mtime > limit:
                        continue
                    if delete:
                        os.unlink(entry.path)
                except FileNotFoundError:  # finished (renamed) or removed meanwhile
                    continue
                found.append(f"{folder.name}/{entry.name}")
        return found
