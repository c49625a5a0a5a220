"""Transparent zlib compression of the stored blobs (Orthanc's ``StorageCompression``), as a
``StorageArea`` wrapping any other one (filesystem or S3). Keys are the inner storage's;
callers see the uncompressed bytes and sizes, only the inner storage sees smaller blobs.

Blob format (every integer little endian)::

    offset 0    4 bytes   magic b"DWZ1"
           4    u32       segment size S (uncompressed bytes per segment; a power of two)
           8    u64       uncompressed size N
          16    N_seg × 12 bytes, the segment index, N_seg = ceil(N / S); entry k:
                  u64     end of segment k's compressed bytes, from the start of the data
                  u32     CRC-32 of segment k's uncompressed bytes
    16 + 12·N_seg         data: ONE raw DEFLATE stream (RFC 1951, zlib wbits = -15)

Segment k is the uncompressed bytes [k·S, min(N, (k+1)·S)). The compressor emits a full
flush (``Z_FULL_FLUSH``: byte-aligned, dictionary reset) at the end of every segment, so
the compressed bytes of segment k, [end(k-1), end(k)) with end(-1) = 0, decompress on their
own with a fresh raw inflater. The stream ends with ``Z_FINISH`` (a final empty block) after
the last segment's flush point. Decompress by hand: ``zlib.decompressobj(-15)`` on the bytes
after the index.

What that buys:

- ``read_range(start, length)`` reads the head of the blob (header, index and, for small
  blobs, everything), then the compressed bytes of only the segments covering the range with
  ONE ranged read of the inner storage: a frame at the end of a large multi-frame instance
  costs a few segments of decompression, not the whole blob. On S3 that is two ranged GETs;
  one for a range ending in the first MiB (the head read is sized to hold all it can need);
  three for a blob over about 1.3 GiB whose index does not fit in the 64 KiB head read.
  A blob stored uncompressed costs the head read plus its own ranged read (one read for a
  range ending in the first MiB).
- ``open`` returns a seekable reader that decompresses as it goes; a seek restarts at the
  segment holding the target (one seek of the inner file), never at the start of the blob;
  short backward seeks (pydicom's) are served from the bytes last decompressed (64 KiB more
  than the reader's buffer holds), without touching the inner blob.
- Every segment's CRC-32 is checked when it has been decompressed whole, so corruption is
  reported as :class:`CorruptBlobError` (an ``OSError``), never as wrong bytes.

Writes stream: the input is compressed segment by segment into a spooled temporary file
(memory up to :data:`SPOOL_SIZE`, then disk), then handed to the inner storage's atomic
``write`` behind the header and index: the blob becomes visible whole or not at all, and a
failing input stream leaves nothing. ``write`` returns the uncompressed size.

Which blobs are compressed is told by their key (:meth:`CompressedStorage.new_key`), so a
plain blob is served by the inner storage with no extra read, and the wrapper stays in place
when compression is off: blobs written before compression was turned on, and compressed
blobs after it is turned off, read back unchanged. Under a compressed key, a blob without
the magic is still served as it is (see :func:`_layout` for why the magic cannot be mistaken
for the start of a DICOM file).
"""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from .base import BlobStat, StorageArea
from .blob_io import BufferedBlob, PositionedReader

MAGIC = b"DWZ1"
COMPRESSED_MARK = "c"  # character 12 of the key of a compressed blob (see new_key)


def is_compressed_key(key: str) -> bool:
    """Whether the blob under ``key`` was written compressed (keys from new_key)."""
    return len(key) == 32 and key[12] == COMPRESSED_MARK
_HEADER = struct.Struct("<4sIQ")  # magic, segment size, uncompressed size
_ENTRY = struct.Struct("<QI")  # compressed end offset (from the data start), CRC-32
HEADER_SIZE = _HEADER.size  # 16

# Level 3: on CT-like 16-bit images, 99.5 % of level 6's ratio at about five times its speed
# (measured: 1.947 vs 1.956, 48 vs 8 MB/s); level 6 would make compression STOW's bottleneck.
LEVEL = 3
# 256 KiB segments cost 0.5 % of ratio against 1 MiB ones and bound what a frame read or a
# seek decompresses beyond what it needs to one segment on either side.
SEGMENT_SIZE = 256 << 10
MIN_SEGMENT, MAX_SEGMENT = 4 << 10, 64 << 20
MAX_SIZE = 1 << 48  # a larger declared size is a corrupt header, not a blob
SPOOL_SIZE = 4 << 20  # compressed bytes kept in memory while writing, then a temporary file
IN_MEMORY_BODY = 1 << 20  # a compressed blob this small goes to the inner write as one buffer
HEAD_READ = 64 << 10  # first ranged read of read_range: header, index, small blobs whole
SMALL_RANGE_END = 1 << 20  # a range ending before this is read with the head (one read)
READ_CHUNK = 256 << 10  # compressed bytes read from the inner storage at a time
READER_BUFFER = 32 << 10  # buffer of the reader ``open`` returns
# Decompressed bytes kept for backward seeks: 64 KiB before whatever the buffered reader
# holds (a seek back past its buffer reaches the raw reader, at most a buffer further on).
WINDOW = READER_BUFFER + (64 << 10)


class CorruptBlobError(OSError):
    """A compressed blob that cannot be decompressed: truncated, altered or not ours."""


def _corrupt(key: str, what: str) -> CorruptBlobError:
    return CorruptBlobError(f"compressed blob {key} is corrupt: {what}")


def _max_compressed(uncompressed: int, segments: int) -> int:
    """An upper bound of the DEFLATE bytes of ``segments`` segments holding ``uncompressed``
    bytes (stored blocks: 5 bytes per 64 KiB, plus a flush marker per segment)."""
    return uncompressed + uncompressed // 8192 + 16 * segments + 64


@dataclass(frozen=True)
class _Layout:
    """A compressed blob's header."""

    key: str
    segment: int
    size: int

    @property
    def count(self) -> int:
        return -(-self.size // self.segment)

    @property
    def index_size(self) -> int:
        return self.count * _ENTRY.size

    @property
    def data_start(self) -> int:
        return HEADER_SIZE + self.index_size

    def segment_end(self, k: int) -> int:
        """Uncompressed end of segment ``k``."""
        return min(self.size, (k + 1) * self.segment)


def _layout(key: str, head: bytes) -> _Layout | None:
    """The header at the start of ``head``, or None for a blob stored uncompressed.

    Why b"DWZ1" cannot be the start of a DICOM file stored before compression was on: a
    PS3.10 file starts with a 128-byte preamble that is all zeros unless an application
    profile uses it (TIFF "II*\\0" / "MM\\0*" headers in dual-personality files), followed by
    "DICM". A dataset stored without preamble starts with its first tag, group 0x0002 (file
    meta) or 0x0008 (identification), i.e. bytes 02 00 or 08 00 (00 02 / 00 08 big endian);
    "DW" would be group 0x5744 (0x4457 big endian), which does not exist. Only a client that
    deliberately put "DWZ1" at the start of its own preamble before compression was turned on
    could make its own blob unreadable (a clear ``CorruptBlobError``); it cannot reach another
    blob, and the fields below are checked before anything is sized from them.
    """
    if len(head) < HEADER_SIZE or head[:4] != MAGIC:
        return None
    _magic, segment, size = _HEADER.unpack_from(head)
    if not MIN_SEGMENT <= segment <= MAX_SEGMENT or segment & (segment - 1):
        raise _corrupt(key, f"segment size {segment} in its header")
    if size > MAX_SIZE:
        raise _corrupt(key, f"size {size} in its header")
    return _Layout(key, segment, size)


def _read_exact(f: BinaryIO, count: int, key: str, what: str) -> bytes:
    """``count`` bytes of ``f`` (read in bounded pieces: a corrupt header cannot make it
    allocate more than the blob holds); ``CorruptBlobError`` if the blob ends first."""
    parts, left = [], count
    while left > 0:
        part = f.read(min(left, 1 << 20))
        if not part:
            raise _corrupt(key, f"truncated in its {what}")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class _Index:
    """The segment index: compressed boundaries and checksums, unpacked on demand."""

    def __init__(self, layout: _Layout, data: bytes, first: int = 0) -> None:
        self.layout, self._data, self._first = layout, data, first  # entries first, first+1...

    def end(self, k: int) -> int:
        """Compressed end of segment ``k`` (from the data start); 0 for k = -1."""
        return 0 if k < 0 else _ENTRY.unpack_from(self._data, (k - self._first) * _ENTRY.size)[0]

    def crc(self, k: int) -> int:
        return _ENTRY.unpack_from(self._data, (k - self._first) * _ENTRY.size)[1]

    def check(self, k: int, crc: int) -> None:
        if crc != self.crc(k):
            raise _corrupt(self.layout.key, f"checksum mismatch in segment {k}")


class _Inflater:
    """Streaming decompression from the start of one segment, checked segment by segment.

    ``feed()`` gives the next compressed bytes (b"" at the end of what there is).
    """

    def __init__(self, index: _Index, segment: int, feed: Callable[[], bytes]) -> None:
        self._index, self._layout, self._feed = index, index.layout, feed
        self.segment = segment
        self.pos = segment * self._layout.segment  # uncompressed offset of the next byte
        self._end = self._layout.segment_end(segment)
        self._crc = 0
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._tail = b""

    def produce(self, limit: int) -> bytes:
        """The next bytes: at least one, at most ``limit``, never past a segment's end;
        b"" at the end of the blob."""
        if self.pos >= self._layout.size:
            return b""
        want = min(limit, self._end - self.pos)
        key = self._layout.key
        while True:
            data = self._tail or self._feed()
            try:  # with no input left, b"" still flushes what the inflater holds
                out = self._inflate.decompress(data, want)
            except zlib.error as exc:
                raise _corrupt(key, f"{exc} in segment {self.segment}") from None
            self._tail = self._inflate.unconsumed_tail
            if out:
                break
            if self._inflate.eof:
                raise _corrupt(key, f"its data ends before its size ({self._layout.size})")
            if not data:
                raise _corrupt(key, "truncated in its data")
        self._crc = zlib.crc32(out, self._crc)
        self.pos += len(out)
        if self.pos == self._end:
            self._index.check(self.segment, self._crc)
            self.segment += 1
            self._end = self._layout.segment_end(self.segment)
            self._crc = 0
        return out


def _open_inner(inner: StorageArea, key: str) -> tuple[BinaryIO, _Index | None]:
    """The inner blob opened, positioned at its data; its index, None if stored plain
    (then positioned at 0)."""
    f = inner.open(key)
    try:
        head = f.read(HEADER_SIZE)
        while len(head) < HEADER_SIZE and (more := f.read(HEADER_SIZE - len(head))):
            head += more
        layout = _layout(key, head)
        if layout is None:
            f.seek(0)
            return f, None
        return f, _Index(layout, _read_exact(f, layout.index_size, key, "index"))
    except BaseException:
        f.close()
        raise


class _RawReader(PositionedReader):
    """Decompressed bytes of one blob, seekable; wrapped in a buffered reader by ``open``.

    A seek only moves the position; the next read gets there: from the window of the last
    bytes decompressed if it holds the target, by decompressing forward within the current
    segment, or by restarting at the target's segment (a seek of the inner file).
    """

    def __init__(self, f: BinaryIO, index: _Index) -> None:
        super().__init__(index.layout.size)
        self._file, self._index, self._layout = f, index, index.layout
        self._window = bytearray()  # the bytes just before self._inflater.pos
        self._inflater = _Inflater(index, 0, self._read_inner)

    def _read_inner(self) -> bytes:
        return self._file.read(READ_CHUNK)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = self.target(offset, whence)  # the next read gets there
        return self._pos

    def _remember(self, out: bytes) -> None:
        if len(out) >= WINDOW:
            self._window = bytearray(out[-WINDOW:])
            return
        self._window += out
        if len(self._window) > WINDOW:
            del self._window[:len(self._window) - WINDOW]  # cheap: bytearray keeps an offset

    def _restart(self, segment: int) -> None:
        self._file.seek(self._layout.data_start + self._index.end(segment - 1))
        self._inflater = _Inflater(self._index, segment, self._read_inner)
        self._window = bytearray()

    def _reach(self, target: int) -> None:
        """Make the inflater's position ``target``, or the window hold it."""
        inflater = self._inflater
        if inflater.pos - len(self._window) <= target <= inflater.pos:
            return
        segment = target // self._layout.segment
        if target < inflater.pos or segment > inflater.segment:
            self._restart(segment)
            inflater = self._inflater
        while inflater.pos < target:
            self._remember(inflater.produce(target - inflater.pos))

    def _next(self, limit: int) -> bytes | bytearray:
        """Up to ``limit`` bytes at the position (at least one before the end)."""
        if self._pos >= self._layout.size or limit <= 0:
            return b""
        self._reach(self._pos)
        inflater = self._inflater
        if self._pos < inflater.pos:  # in the window
            start = len(self._window) - (inflater.pos - self._pos)
            out: bytes | bytearray = self._window[start:start + limit]  # a copy
        else:
            out = inflater.produce(limit)
            self._remember(out)
        self._pos += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        out = self._next(len(view))
        count = len(out)
        view[:count] = out
        return count

    def readall(self) -> bytes:
        parts = []
        while chunk := self._next(1 << 20):
            parts.append(bytes(chunk))
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class _Concat(io.RawIOBase):
    """Header and index bytes, then the spooled compressed data: the inner write's input."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        return self._rest.readinto(view)  # type: ignore[attr-defined]


def _compress(stream: BinaryIO, out: BinaryIO, level: int, segment: int) -> tuple[int, bytes]:
    """Compress the rest of ``stream`` into ``out``; the uncompressed size and the index."""
    deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    index = bytearray()
    size = used = crc = 0
    while True:
        chunk = stream.read(segment - used)
        if chunk:
            out.write(deflate.compress(chunk))
            crc = zlib.crc32(chunk, crc)
            used += len(chunk)
            size += len(chunk)
        if used and (used == segment or not chunk):
            out.write(deflate.flush(zlib.Z_FULL_FLUSH))
            index += _ENTRY.pack(out.tell(), crc)
            used = crc = 0
        if not chunk:
            out.write(deflate.flush(zlib.Z_FINISH))
            return size, bytes(index)


class CompressedStorage(StorageArea):
    """Blobs of ``inner`` compressed with zlib; see the module docstring for the format."""

    def __init__(self, inner: StorageArea, *, compress: bool = True, level: int = LEVEL,
                 segment_size: int = SEGMENT_SIZE) -> None:
        if not MIN_SEGMENT <= segment_size <= MAX_SEGMENT or segment_size & (segment_size - 1):
            raise ValueError("the segment size must be a power of two from 4 KiB to 64 MiB")
        if not 0 <= level <= 9:
            raise ValueError("the zlib level goes from 0 to 9")
        self.inner, self.level, self.segment_size = inner, level, segment_size
        self.compress = compress

    def __repr__(self) -> str:
        return f"CompressedStorage({self.inner!r}, level={self.level})"

    def new_key(self) -> str:  # type: ignore[override]
        """A key that says how its blob is stored, as Orthanc records an attachment's
        compression in its database: a uuid4 has the version nibble ``4`` at position 12,
        a compressed blob's key has ``c`` there. Reads route on it with no I/O, so plain
        blobs cost nothing extra and compressed ones stay readable after
        ``StorageCompression`` is turned off (the wrapper is always in place)."""
        key = super().new_key()
        return key[:12] + COMPRESSED_MARK + key[13:] if self.compress else key

    def write(self, key: str, stream: BinaryIO) -> int:
        if not is_compressed_key(key):
            return self.inner.write(key, stream)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE) as spool:
            size, index = _compress(stream, spool, self.level, self.segment_size)
            head = _HEADER.pack(MAGIC, self.segment_size, size) + index
            compressed = spool.tell()
            spool.seek(0)
            if compressed <= IN_MEMORY_BODY:
                body: BinaryIO = io.BytesIO(head + spool.read())
            else:
                body = io.BufferedReader(_Concat(head, spool))  # type: ignore[arg-type]
            self.inner.write(key, body)
        return size

    def open(self, key: str) -> BinaryIO:
        if not is_compressed_key(key):
            return self.inner.open(key)
        f, index = _open_inner(self.inner, key)
        if index is None:
            return f  # stored uncompressed: the inner storage's own reader
        return BufferedBlob(_RawReader(f, index), READER_BUFFER)  # the caller closes it

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        if not is_compressed_key(key):
            yield from self.inner.iter_chunks(key, chunk_size)
            return
        f, index = _open_inner(self.inner, key)
        with f:
            if index is None:
                while chunk := f.read(chunk_size):
                    yield chunk
                return
            inflater = _Inflater(index, 0, lambda: f.read(READ_CHUNK))
            parts: list[bytes] = []
            filled = 0
            while piece := inflater.produce(chunk_size - filled):
                parts.append(piece)
                filled += len(piece)
                if filled == chunk_size:
                    yield parts[0] if len(parts) == 1 else b"".join(parts)
                    parts, filled = [], 0
            if parts:
                yield b"".join(parts)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """The head of the blob (one read), then the segments covering the range (one more
        read unless the head holds them), decompressed and checked."""
        if start < 0 or length < 0:
            raise ValueError("negative range")
        if length == 0 or not is_compressed_key(key):
            return self.inner.read_range(key, start, length)
        end = start + length
        wanted = self._head_size(end)
        head = self.inner.read_range(key, 0, wanted)
        layout = _layout(key, head)
        if layout is None:  # stored uncompressed
            if end <= len(head) or len(head) < wanted:  # in hand, or the blob ends there
                return head[start:end]
            return self.inner.read_range(key, start, length)
        if start >= layout.size:
            return b""
        end = min(end, layout.size)
        first, last = start // layout.segment, (end - 1) // layout.segment
        index = self._index_part(layout, head, first - 1 if first else 0, last)
        cstart, cend = index.end(first - 1), index.end(last)
        ustart, uend = first * layout.segment, layout.segment_end(last)
        if not 0 <= cstart < cend or cend - cstart > _max_compressed(uend - ustart,
                                                                       last - first + 1):
            raise _corrupt(key, f"index entries of segments {first}-{last}")
        data = self._slice(layout, head, layout.data_start + cstart, cend - cstart, "data")
        inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            out = inflate.decompress(data, uend - ustart)
        except zlib.error as exc:
            raise _corrupt(key, f"{exc} in segments {first}-{last}") from None
        if len(out) != uend - ustart:
            raise _corrupt(key, f"segments {first}-{last} are shorter than their size")
        view = memoryview(out)
        for k in range(first, last + 1):
            begin = (k - first) * layout.segment
            index.check(k, zlib.crc32(view[begin:begin + layout.segment]))
        return out[start - ustart:end - ustart]

    def _head_size(self, end: int) -> int:
        """How much of the blob the first read takes: the header and index (up to 5,000
        segments), and for a range ending in the first MiB, all the compressed bytes it can
        need (incompressible data included), so that it is the only read: a whole small
        instance, or a header plus the first frame of a large one."""
        if end > SMALL_RANGE_END:
            return HEAD_READ
        segments = -(-end // self.segment_size)
        return HEAD_READ + _max_compressed(segments * self.segment_size, segments)

    def _index_part(self, layout: _Layout, head: bytes, first: int, last: int) -> _Index:
        """Index entries ``first`` to ``last`` (from the head, or one more read)."""
        offset = HEADER_SIZE + first * _ENTRY.size
        count = (last - first + 1) * _ENTRY.size
        return _Index(layout, self._slice(layout, head, offset, count, "index"), first)

    def _slice(self, layout: _Layout, head: bytes, offset: int, count: int, what: str) -> bytes:
        """Bytes [offset, offset + count) of the inner blob: from the head if it holds them."""
        if offset + count <= len(head):
            return head[offset:offset + count]
        data = self.inner.read_range(layout.key, offset, count)
        if len(data) != count:
            raise _corrupt(layout.key, f"truncated in its {what}")
        return data

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def keys(self) -> Iterator[str]:
        return self.inner.keys()

    def stat(self, key: str) -> BlobStat:
        """The inner blob's time, and the uncompressed size (from the header: one ranged
        read of 16 bytes) of a compressed one."""
        inner = self.inner.stat(key)
        if not is_compressed_key(key):
            return inner
        layout = _layout(key, self.inner.read_range(key, 0, HEADER_SIZE))
        return inner if layout is None else BlobStat(layout.size, inner.modified)

    def sweep_interrupted(self, older_than: float, *, delete: bool = False) -> list[str]:
        return self.inner.sweep_interrupted(older_than, delete=delete)
