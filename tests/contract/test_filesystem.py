"""The storage contract on the local filesystem, plus its on-disk layout."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

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
