"""The storage contract on the local filesystem, plus its on-disk layout."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from backends import storage_fs
from backends.storage_fs import FilesystemStorage
from tests.contract.storage import FailingStream, StorageContract


class TestFilesystemStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> FilesystemStorage:
        return FilesystemStorage(tmp_path / "storage")

    def test_orthanc_layout(self, storage: FilesystemStorage) -> None:
        key = storage.new_key()
        storage.write(key, io.BytesIO(b"data"))
        assert (storage.root / key[:2] / key).read_bytes() == b"data"

    def test_failed_write_removes_temp_file(self, storage: FilesystemStorage) -> None:
        key = storage.new_key()
        with pytest.raises(ConnectionResetError):
            storage.write(key, io.BufferedReader(FailingStream(10)))
        assert [p for p in storage.root.rglob("*") if p.is_file()] == []

    def test_keys_ignore_temp_and_foreign_files(self, storage: FilesystemStorage) -> None:
        key = storage.new_key()
        storage.write(key, io.BytesIO(b"data"))
        folder = storage.root / key[:2]
        (folder / f".tmp-{storage.new_key()}").write_bytes(b"half")  # a write in progress
        (folder / "notes.txt").write_bytes(b"?")
        assert list(storage.keys()) == [key]

    def test_sweep_interrupted_writes(self, storage: FilesystemStorage) -> None:
        """A process killed between creating its temporary file and the rename leaves it
        behind: swept once older than the grace period, a fresh one (a write in progress)
        left alone."""
        key = storage.new_key()
        storage.write(key, io.BytesIO(b"data"))
        old = storage.root / "ab" / f".tmp-{storage.new_key()}"
        old.write_bytes(b"half")
        os.utime(old, (time.time() - 3600, time.time() - 3600))
        fresh = storage.root / "cd" / f".tmp-{storage.new_key()}"
        fresh.write_bytes(b"in progress")
        assert storage.sweep_interrupted(600) == [f"ab/{old.name}"]
        assert old.exists()
        assert storage.sweep_interrupted(600, delete=True) == [f"ab/{old.name}"]
        assert not old.exists() and fresh.exists()
        assert sorted(storage.sweep_interrupted(0)) == [f"cd/{fresh.name}"]
        assert list(storage.keys()) == [key]

    def test_folders_made_when_opened(self, storage: FilesystemStorage,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
        assert sorted(p.name for p in storage.root.iterdir()) == [f"{i:02x}" for i in range(256)]
        synced: list[int] = []
        monkeypatch.setattr(storage_fs.os, "fsync", synced.append)
        storage.write(storage.new_key(), io.BytesIO(b"data"))
        assert len(synced) == 2  # the file and its folder, nothing else

    def test_removed_folder_made_again(self, storage: FilesystemStorage) -> None:
        key = storage.new_key()
        (storage.root / key[:2]).rmdir()
        storage.write(key, io.BytesIO(b"data"))
        assert storage.read_range(key, 0, 4) == b"data"

    def test_in_memory_stream_written_from_its_position(self,
                                                        storage: FilesystemStorage) -> None:
        key, stream = storage.new_key(), io.BytesIO(b"headerbody")
        stream.seek(6)
        assert storage.write(key, stream) == 4
        assert stream.read() == b""
        assert storage.read_range(key, 0, 10) == b"body"

    def test_stream_without_readinto(self, storage: FilesystemStorage) -> None:
        class Reader:
            def __init__(self) -> None:
                self.parts = [b"ab", b"c"]

            def read(self, size: int = -1) -> bytes:
                return self.parts.pop(0) if self.parts else b""

        key = storage.new_key()
        assert storage.write(key, Reader()) == 3  # type: ignore[arg-type]
        assert storage.read_range(key, 0, 3) == b"abc"
