"""ZIP archives of DICOM files, as Orthanc's ``POST /instances`` takes them (Orthanc 1.8.2+).

Plain functions over Python's ``zipfile``, no Flask. The archive is a seekable file (the
request body spooled); members are read one at a time, in chunks, in the order of the
central directory (the order Orthanc's minizip reader walks). Member names are never used
as paths: nested folders are only names here.

Everything that can be decided from the central directory is decided before the first
member is read, so a refused archive stores nothing (:func:`check_members`): the number of
entries, each member's declared size, the total, encryption, the compression method, and
two zip-bomb signs. Declared sizes can be trusted for what is read: ``zipfile`` stops a
member at its declared size and checks its CRC-32 at the end.
"""

from __future__ import annotations

import lzma
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from app.errors import BadRequest, PayloadTooLarge

# Orthanc's ZipReader::IsZipMemoryBuffer: a local file header, an end of central directory
# (an empty archive) or a spanning marker (APPNOTE.TXT 4.3.7, 4.3.16, 8.5.3).
SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
# Deflate cannot expand more than 1032:1 (a 258-byte match in at most 2 bits); a member
# declaring more came from another method (bzip2, LZMA reach far more on constant data)
# or declares a size it does not hold: either way a zip bomb's sign, not a DICOM file.
MAX_RATIO = 1100
SUPPORTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                     zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA"}
ENCRYPTED = 0x0001 | 0x0040  # general purpose flags: encrypted, strong encryption (4.4.4)
LOCAL_HEADER = 30  # fixed part of a local file header (4.3.7); name and extra follow
CHUNK = 1 << 20


class ArchiveError(BadRequest):
    """The archive cannot be read, or a member of it (400)."""


class ArchiveTooLarge(PayloadTooLarge):
    """The archive passes a ``Limits`` key (413)."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on one archive, in entries and bytes (0: none)."""

    max_members: int = 0  # entries of the central directory, folders included
    max_member_size: int = 0  # uncompressed bytes of one member
    max_total_size: int = 0  # uncompressed bytes of all members


def is_zip(head: bytes) -> bool:
    """Whether a body starting with ``head`` is a ZIP archive, as Orthanc decides it."""
    return head[:4] in SIGNATURES


def check_members(infos: list[zipfile.ZipInfo], archive_size: int,
                  limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """The members to read (files with content, directory order), once the whole central
    directory passed every check; else :class:`ArchiveTooLarge` or :class:`ArchiveError`.

    Folders and empty members are left out, as Orthanc does (an empty member is no DICOM
    file). Members whose data overlap are refused: several entries sharing one compressed
    kernel is how a non-recursive zip bomb multiplies its output, and no archiver writes it.
    """
    if limits.max_members and len(infos) > limits.max_members:
        raise ArchiveTooLarge(f"The ZIP archive has {len(infos)} entries, more than "
                              f"Limits.MaximumArchiveMembers ({limits.max_members})")
    files = [i for i in infos if not i.is_dir()]
    for info in files:
        _check_member(info, limits)
    _check_no_overlap(files, archive_size)
    total = sum(i.file_size for i in files)
    if limits.max_total_size and total > limits.max_total_size:
        raise ArchiveTooLarge(f"The ZIP archive holds {total} bytes uncompressed, more than "
                              f"Limits.MaximumArchiveSize ({limits.max_total_size >> 20} MiB)")
    return [i for i in files if i.file_size > 0]


def _check_member(info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    name = info.filename[:200]
    if info.flag_bits & ENCRYPTED:
        raise ArchiveError(f"The ZIP member {name!r} is encrypted: encrypted archives are "
                           "not supported, send the archive without a password")
    if info.compress_type not in SUPPORTED_METHODS:
        raise ArchiveError(f"The ZIP member {name!r} uses compression method "
                           f"{info.compress_type} (e.g. Deflate64): only "
                           f"{', '.join(SUPPORTED_METHODS.values())} are supported")
    if limits.max_member_size and info.file_size > limits.max_member_size:
        raise ArchiveTooLarge(f"The ZIP member {name!r} ({info.file_size} bytes "
                              "uncompressed) is larger than Limits.MaximumRequestSize "
                              f"({limits.max_member_size >> 20} MiB)")
    if info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ArchiveError(f"The ZIP member {name!r} expands {info.compress_size} bytes to "
                           f"{info.file_size} (more than {MAX_RATIO}:1): refused as a "
                           "possible zip bomb")


def _check_no_overlap(files: list[zipfile.ZipInfo], archive_size: int) -> None:
    """Each member's data ends before the next local header starts (a lower bound of the
    end: the local name and extra field lengths are not in the central directory)."""
    ordered = sorted(files, key=lambda i: i.header_offset)
    if not ordered:
        return
    starts = [i.header_offset for i in ordered[1:]] + [archive_size]
    for info, start in zip(ordered, starts, strict=True):
        if info.header_offset + LOCAL_HEADER + info.compress_size > start:
            raise ArchiveError(f"The ZIP member {info.filename[:200]!r} overlaps the next "
                               "one: refused as a possible zip bomb")


class Archive:
    """An open archive whose central directory passed :func:`check_members`.

    ``members``: what to read; :meth:`chunks` streams one member's uncompressed bytes.
    """

    def __init__(self, f: BinaryIO, size: int, limits: ArchiveLimits) -> None:
        try:
            self._zip = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
            raise ArchiveError(f"The body starts as a ZIP archive but cannot be read as "
                               f"one: {exc}") from exc
        try:
            self.members = check_members(self._zip.infolist(), size, limits)
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def chunks(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        """The member's bytes, ``CHUNK`` at a time; a damaged member (bad data, CRC-32
        mismatch, truncated) raises :class:`ArchiveError` naming it."""
        try:
            with self._zip.open(info) as member:
                while chunk := member.read(CHUNK):
                    yield chunk
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError,
                ValueError, NotImplementedError, RuntimeError) as exc:
            raise ArchiveError(f"The ZIP member {info.filename[:200]!r} cannot be read: "
                               f"{exc}") from exc
