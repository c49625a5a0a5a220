"""app/dicom/archive.py: ZIP archives checked from their central directory before a member
is read (limits, encryption, methods, zip-bomb signs), then streamed member by member."""

from __future__ import annotations

import io
import random
import zipfile

import pytest

from app.dicom.archive import (
    CHUNK,
    Archive,
    ArchiveError,
    ArchiveLimits,
    ArchiveTooLarge,
    check_members,
    is_zip,
)

NONE = ArchiveLimits()


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """An archive of ``members`` in that order; a name ending in ``/`` is a folder."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as z:
        for name, data in members.items():
            if name.endswith("/"):
                z.mkdir(name)
            else:
                z.writestr(name, data)
    return out.getvalue()


def infos(data: bytes) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.infolist()


def patched(data: bytes, signature: bytes, offset: int, value: bytes) -> bytes:
    """``data`` with ``value`` written at ``offset`` of every record starting ``signature``
    (local header PK\\3\\4, central directory entry PK\\1\\2)."""
    out = bytearray(data)
    at = out.find(signature)
    while at >= 0:
        out[at + offset:at + offset + len(value)] = value
        at = out.find(signature, at + 4)
    return bytes(out)


def read_all(data: bytes, limits: ArchiveLimits = NONE) -> dict[str, bytes]:
    with Archive(io.BytesIO(data), len(data), limits) as archive:
        return {i.filename: b"".join(archive.chunks(i)) for i in archive.members}


# --------------------------------------------------------------------------- #
# Detection
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize(("head", "expected"), [
    (b"PK\x03\x04rest", True), (b"PK\x05\x06", True), (b"PK\x07\x08", True),
    (b"PK\x01\x02", False), (b"PK", False), (b"", False), (b"\0" * 128, False),
])
def test_is_zip_as_orthanc_decides(head: bytes, expected: bool) -> None:
    assert is_zip(head) is expected


def test_an_empty_archive_is_a_zip_without_members() -> None:
    data = zip_bytes({})
    assert is_zip(data) and read_all(data) == {}


# --------------------------------------------------------------------------- #
# Which members are read
# --------------------------------------------------------------------------- #

def test_folders_and_empty_members_are_left_out_nested_names_kept() -> None:
    data = zip_bytes({"a/": b"", "a/b/": b"", "a/b/one.dcm": b"1" * 10, "empty": b"",
                      "two": b"2" * 5, "a/three": b"3"})
    assert read_all(data) == {"a/b/one.dcm": b"1" * 10, "two": b"2" * 5, "a/three": b"3"}
    assert [i.filename for i in check_members(infos(data), len(data), NONE)] == [
        "a/b/one.dcm", "two", "a/three"]  # the central directory's order


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED,
                                    zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_members_stream_in_chunks_whatever_the_method(method: int) -> None:
    content = random.Random(7).randbytes(3 * CHUNK + 1000)  # 3 chunks and a bit
    data = zip_bytes({"big": content}, method)
    with Archive(io.BytesIO(data), len(data), NONE) as archive:
        chunks = list(archive.chunks(archive.members[0]))
    assert len(chunks) == 4 and all(len(c) <= CHUNK for c in chunks)
    assert b"".join(chunks) == content


# --------------------------------------------------------------------------- #
# Limits
# --------------------------------------------------------------------------- #

def test_entries_beyond_maximum_archive_members_refuse_the_archive() -> None:
    data = zip_bytes({"d/": b"", "x": b"1", "y": b"2"})
    assert len(check_members(infos(data), len(data), ArchiveLimits(max_members=3))) == 2
    with pytest.raises(ArchiveTooLarge, match=r"3 entries.*MaximumArchiveMembers \(2\)"):
        check_members(infos(data), len(data), ArchiveLimits(max_members=2))


def test_a_member_larger_than_the_request_limit_refuses_the_archive() -> None:
    data = zip_bytes({"small": b"s" * 100, "large": b"\0" * (2 << 20)})
    assert len(data) < 1 << 20  # the body itself is within the limit
    with pytest.raises(ArchiveTooLarge, match=r"'large' \(2097152 bytes.*MaximumRequestSize"):
        check_members(infos(data), len(data), ArchiveLimits(max_member_size=1 << 20))
    assert len(check_members(infos(data), len(data), ArchiveLimits(max_member_size=2 << 20)))


def test_the_total_uncompressed_size_is_bounded() -> None:
    data = zip_bytes({"a": b"\0" * (600 << 10), "b": b"\0" * (600 << 10)})
    with pytest.raises(ArchiveTooLarge, match="MaximumArchiveSize"):
        check_members(infos(data), len(data), ArchiveLimits(max_total_size=1 << 20))
    assert len(check_members(infos(data), len(data), ArchiveLimits(max_total_size=2 << 20)))


# --------------------------------------------------------------------------- #
# Zip bombs, encryption, methods, damage
# --------------------------------------------------------------------------- #

def test_deflate_at_its_best_ratio_passes_a_bzip2_bomb_does_not() -> None:
    zeros = b"\0" * (20 << 20)
    deflated = zip_bytes({"zeros": zeros})
    assert len(zeros) / infos(deflated)[0].compress_size > 1000  # deflate's ceiling ~1032
    assert len(check_members(infos(deflated), len(deflated), NONE)) == 1
    bomb = zip_bytes({"zeros": zeros}, zipfile.ZIP_BZIP2)
    with pytest.raises(ArchiveError, match="possible zip bomb"):
        check_members(infos(bomb), len(bomb), NONE)


def test_members_sharing_their_data_are_refused() -> None:
    """Two central directory entries for one local header: a non-recursive zip bomb."""
    data = zip_bytes({"kernel": b"k" * 5000})
    (entry,) = infos(data)
    twin = zipfile.ZipInfo("twin")
    twin.header_offset, twin.compress_size, twin.file_size = (
        entry.header_offset, entry.compress_size, entry.file_size)
    with pytest.raises(ArchiveError, match="overlaps"):
        check_members([entry, twin], len(data), NONE)
    entry.compress_size = len(data)  # data running past the end of the archive
    with pytest.raises(ArchiveError, match="overlaps"):
        check_members([entry], len(data), NONE)


def test_an_encrypted_member_is_a_clear_error() -> None:
    data = zip_bytes({"plain": b"p", "secret": b"s" * 50})
    data = patched(data, b"PK\x01\x02", 8, b"\x01\x00")  # central flags: encrypted
    with pytest.raises(ArchiveError, match=r"'plain' is encrypted.*without a password"):
        read_all(data)


def test_an_unsupported_method_is_named() -> None:
    data = patched(zip_bytes({"x": b"x" * 50}), b"PK\x01\x02", 10, b"\x09\x00")  # Deflate64
    with pytest.raises(ArchiveError, match="compression method 9"):
        read_all(data)


def test_a_damaged_member_is_named_when_read() -> None:
    data = bytearray(zip_bytes({"good": b"g" * 100, "bad": b"0123456789" * 100},
                               zipfile.ZIP_STORED))
    at = data.find(b"0123456789")
    data[at + 50] ^= 0xFF  # stored bytes changed: the CRC-32 no longer matches
    with Archive(io.BytesIO(bytes(data)), len(data), NONE) as archive:
        good, bad = archive.members
        assert b"".join(archive.chunks(good)) == b"g" * 100
        with pytest.raises(ArchiveError, match="'bad' cannot be read"):
            b"".join(archive.chunks(bad))


@pytest.mark.parametrize("data", [b"PK\x03\x04zipped", zip_bytes({"x": b"1"})[:-10]])
def test_a_body_that_only_starts_as_a_zip_is_400(data: bytes) -> None:
    with pytest.raises(ArchiveError, match="cannot be read as one") as info:
        read_all(data)
    assert info.value.status == 400
