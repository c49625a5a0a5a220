"""The ``StorageArea`` contract: mix ``StorageContract`` into a ``Test*`` class that provides
a ``storage`` fixture (an empty storage area)."""

from __future__ import annotations

import io
import os
import time

import pytest

from backends.base import StorageArea

BLOB = os.urandom(3 * (1 << 20) + 12345)  # more than a few 1 MiB chunks


class FailingStream(io.RawIOBase):
    """Yields some bytes, then fails like a client that drops the connection."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.left <= 0:
            raise ConnectionResetError("client went away")
        n = min(len(buffer), self.left, 64 * 1024)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


class StorageContract:
    """Behaviour every storage area shares."""

    def test_new_keys_are_unique_hex(self, storage: StorageArea) -> None:
        keys = {storage.new_key() for _ in range(100)}
        assert len(keys) == 100
        assert all(len(k) == 32 and int(k, 16) >= 0 for k in keys)

    def test_write_then_open(self, storage: StorageArea) -> None:
        key = storage.new_key()
        assert storage.write(key, io.BytesIO(BLOB)) == len(BLOB)
        with storage.open(key) as f:
            assert f.read() == BLOB

    def test_open_is_seekable(self, storage: StorageArea) -> None:
        """render, transcode and bulk data read opened blobs with pydicom: seek and tell."""
        key, mib = storage.new_key(), 1 << 20
        storage.write(key, io.BytesIO(BLOB))
        with storage.open(key) as f:
            assert f.read(10) == BLOB[:10]
            assert f.tell() == 10
            f.seek(2 * mib)
            assert f.read(100) == BLOB[2 * mib:2 * mib + 100]
            f.seek(5)
            assert f.read(5) == BLOB[5:10]
            f.seek(2, io.SEEK_CUR)
            assert f.read(3) == BLOB[12:15]
            f.seek(-5, io.SEEK_END)
            assert f.read() == BLOB[-5:]
            f.seek(len(BLOB) + 10)
            assert f.read(1) == b""
            f.seek(0)
            assert f.read() == BLOB

    def test_empty_blob(self, storage: StorageArea) -> None:
        key = storage.new_key()
        assert storage.write(key, io.BytesIO(b"")) == 0
        with storage.open(key) as f:
            assert f.read() == b""
        assert key in set(storage.keys())

    def test_write_reads_rest_of_stream(self, storage: StorageArea) -> None:
        stream = io.BytesIO(b"headerBODY")
        stream.read(6)
        key = storage.new_key()
        assert storage.write(key, stream) == 4
        assert storage.read_range(key, 0, 100) == b"BODY"

    def test_rewrite_replaces(self, storage: StorageArea) -> None:
        key = storage.new_key()
        storage.write(key, io.BytesIO(b"first version"))
        storage.write(key, io.BytesIO(b"second"))
        with storage.open(key) as f:
            assert f.read() == b"second"
        assert list(storage.keys()) == [key]

    def test_failed_write_leaves_nothing(self, storage: StorageArea) -> None:
        key = storage.new_key()
        with pytest.raises(ConnectionResetError):
            storage.write(key, io.BufferedReader(FailingStream(2 * (1 << 20) + 7)))
        assert list(storage.keys()) == []
        with pytest.raises(FileNotFoundError):
            storage.open(key)

    def test_failed_rewrite_keeps_old_blob(self, storage: StorageArea) -> None:
        key = storage.new_key()
        storage.write(key, io.BytesIO(b"old"))
        with pytest.raises(ConnectionResetError):
            storage.write(key, io.BufferedReader(FailingStream(100)))
        assert list(storage.keys()) == [key]
        assert storage.read_range(key, 0, 10) == b"old"

    @pytest.mark.parametrize(
        ("start", "length"),
        [(0, 10), (1 << 20, 1000), (len(BLOB) - 5, 5), (12345, 0), (len(BLOB) - 5, 100),
         (len(BLOB), 10), (len(BLOB) + 10, 10)],
    )
    def test_read_range(self, storage: StorageArea, start: int, length: int) -> None:
        key = storage.new_key()
        storage.write(key, io.BytesIO(BLOB))
        assert storage.read_range(key, start, length) == BLOB[start:start + length]

    def test_iter_chunks(self, storage: StorageArea) -> None:
        key = storage.new_key()
        storage.write(key, io.BytesIO(BLOB))
        chunks = list(storage.iter_chunks(key, chunk_size=1 << 20))
        assert b"".join(chunks) == BLOB
        assert max(map(len, chunks)) <= 1 << 20

    def test_missing_key(self, storage: StorageArea) -> None:
        key = storage.new_key()
        with pytest.raises(FileNotFoundError):
            storage.open(key)
        with pytest.raises(FileNotFoundError):
            storage.read_range(key, 0, 1)
        with pytest.raises(FileNotFoundError):
            list(storage.iter_chunks(key))

    def test_delete(self, storage: StorageArea) -> None:
        keep, gone = storage.new_key(), storage.new_key()
        storage.write(keep, io.BytesIO(b"keep"))
        storage.write(gone, io.BytesIO(b"gone"))
        storage.delete(gone)
        storage.delete(gone)  # absent is fine
        storage.delete(storage.new_key())
        assert list(storage.keys()) == [keep]
        with pytest.raises(FileNotFoundError):
            storage.open(gone)

    def test_keys(self, storage: StorageArea) -> None:
        written = {storage.new_key() for _ in range(20)}
        for key in written:
            storage.write(key, io.BytesIO(key.encode()))
        assert set(storage.keys()) == written
        assert len(list(storage.keys())) == 20

    def test_stat(self, storage: StorageArea) -> None:
        """Size as read back (uncompressed), time of the write (S3: whole seconds)."""
        key = storage.new_key()
        before = time.time()
        storage.write(key, io.BytesIO(BLOB))
        after = time.time()
        stat = storage.stat(key)
        assert stat.size == len(BLOB)
        assert before - 2 <= stat.modified <= after + 2
        storage.write(key, io.BytesIO(b"short"))
        assert storage.stat(key).size == 5

    def test_stat_missing(self, storage: StorageArea) -> None:
        with pytest.raises(FileNotFoundError):
            storage.stat(storage.new_key())
        with pytest.raises(ValueError):
            storage.stat("../../etc/passwd")

    def test_finished_and_failed_writes_leave_nothing_to_sweep(self,
                                                               storage: StorageArea) -> None:
        storage.write(storage.new_key(), io.BytesIO(BLOB))
        with pytest.raises(ConnectionResetError):
            storage.write(storage.new_key(), io.BufferedReader(FailingStream(9 << 20)))
        assert storage.sweep_interrupted(0) == []
        assert storage.sweep_interrupted(0, delete=True) == []
        assert len(list(storage.keys())) == 1

    @pytest.mark.parametrize(
        "key",
        ["", "../../etc/passwd", "a" * 31, "A" * 32, "g" * 32, "a" * 33, "ab/cd" + "e" * 27,
         "0123456789abcdef0123456789abcde\n", ".tmp-" + "a" * 27],
    )
    def test_invalid_keys_rejected(self, storage: StorageArea, key: str) -> None:
        for call in (lambda: storage.write(key, io.BytesIO(b"x")), lambda: storage.open(key),
                     lambda: storage.read_range(key, 0, 1), lambda: storage.delete(key)):
            with pytest.raises(ValueError):
                call()
        assert list(storage.keys()) == []
