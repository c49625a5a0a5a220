"""The STOW spool: a part in memory (shared bytes) or, past the limit, in a temporary file."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from app.dicom import store


def test_small_part_is_one_in_memory_buffer() -> None:
    with store.spool([b"ab", b"", b"cde"]) as (f, size):
        assert isinstance(f, io.BytesIO)
        assert (size, f.tell(), f.read()) == (5, 0, b"abcde")
    assert f.closed


def test_large_part_goes_to_a_temporary_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "SPOOL_IN_MEMORY", 4)
    with store.spool([b"ab", b"cd", b"ef", b"g"]) as (f, size):
        assert not isinstance(f, io.BytesIO)
        assert f.fileno() >= 0  # a real file: ingest maps it instead of reading it
        assert (size, f.tell(), f.read()) == (7, 0, b"abcdefg")
    assert f.closed


def test_failed_part_closes_its_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "SPOOL_IN_MEMORY", 1)
    spooled = store.spool(_failing())
    with pytest.raises(ConnectionResetError):
        spooled.__enter__()
    assert spooled.file is not None and spooled.file.closed


def _failing() -> Iterator[bytes]:
    yield b"abc"
    raise ConnectionResetError("client went away")
