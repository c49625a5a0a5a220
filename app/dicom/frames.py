"""Byte ranges of every frame in a stored file, found at ingest (PS3.5 §8.2 native, A.4
encapsulated), so that a frame is later served with ranged reads and no decoding.

* native: frame *i* is ``Rows*Columns*SamplesPerPixel*BitsAllocated/8`` bytes
  (two thirds of that for YBR_*_422) at ``i`` frame sizes after the value start;
  no frames when a frame is not a whole number of bytes (BitsAllocated 1) or the
  value is shorter than NumberOfFrames frames;
* encapsulated: fragments are located by reading item headers only; one frame
  takes every fragment, as many fragments as frames give one each, otherwise
  the Basic then the Extended Offset Table group them. Without offsets the
  frame boundaries could only be found by scanning for JPEG markers, which means
  reading the data: the instance then has no frame ranges;
* deflated transfer syntaxes: offsets in the file mean nothing, no frames; nor for 8-bit
  big-endian data (possibly OW, swapped in byte pairs).

The attributes involved come from a :class:`FrameAttributes`: a pydicom dataset
(:class:`DatasetAttributes`) or the DICOM JSON read by :mod:`app.dicom.rawjson`
(:class:`JsonAttributes`), which give the same answers.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, BinaryIO, Protocol

from pydicom.dataset import Dataset
from pydicom.uid import UID

from app.dicom.dicomjson import UNDEFINED_LENGTH
from app.dicom.rawjson import RawFile, Unsupported

_BIG_ENDIAN = "1.2.840.10008.1.2.2"
# Recorded ranges cost ~300 bytes of memory per frame at ingest and in the index: beyond this
# (whole-slide images reach tens of thousands of tiles), a hostile 1 MB upload declaring a
# million 1-byte frames would cost hundreds of MB.
MAX_FRAMES = 100_000
MIN_FRAME_BYTES = 32  # so that the ranges never take more than ~10x the pixel data
MAX_FRAGMENTS = 4 * MAX_FRAMES
DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})

_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD
_EXTENDED_OFFSETS = 0x7FE00001
_TAGS = {"NumberOfFrames": "00280008", "Rows": "00280010", "Columns": "00280011",
         "BitsAllocated": "00280100", "SamplesPerPixel": "00280002"}
_PHOTOMETRIC = "00280004"

Frames = tuple[tuple[tuple[int, int], ...], ...]


class FrameAttributes(Protocol):
    def number(self, keyword: str, default: int | None = None) -> int | None:
        """One integer attribute; ``default`` if absent or empty, None if unusable."""

    def photometric(self) -> str:
        """PhotometricInterpretation, '' if absent."""

    def extended_offsets(self, count: int) -> list[int] | None:
        """The Extended Offset Table (7FE0,0001) if it has ``count`` offsets."""


class DatasetAttributes:
    """Frame attributes of a pydicom dataset."""

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds

    def number(self, keyword: str, default: int | None = None) -> int | None:
        try:
            value: Any = self._ds.get(keyword)
            return default if value is None or value == "" else int(value)
        except Exception:  # unconvertible or not a single number
            return None

    def photometric(self) -> str:
        return str(self._ds.get("PhotometricInterpretation", "") or "")

    def extended_offsets(self, count: int) -> list[int] | None:
        element = self._ds.get(_EXTENDED_OFFSETS)
        value = element.value if element is not None else None
        if not isinstance(value, bytes) or len(value) != 8 * count:
            return None
        little = self._ds.original_encoding[1] is not False
        return list(struct.unpack(f"{'<' if little else '>'}{count}Q", value))


class JsonAttributes:
    """Frame attributes of a file read by rawjson (which took them only with their
    standard VRs: IS, US and CS, so that they mean what pydicom's values mean)."""

    def __init__(self, raw: RawFile) -> None:
        self._json = raw.json
        self._offsets = raw.extended_offsets

    def number(self, keyword: str, default: int | None = None) -> int | None:
        values = self._json.get(_TAGS[keyword], {}).get("Value")
        if not values:
            return default
        return int(values[0]) if len(values) == 1 else None

    def photometric(self) -> str:
        values = self._json.get(_PHOTOMETRIC, {}).get("Value")
        if values and len(values) > 1:
            raise Unsupported("several PhotometricInterpretation values")
        return str(values[0]) if values else ""

    def extended_offsets(self, count: int) -> list[int] | None:
        if self._offsets is None or len(self._offsets) != 8 * count:
            return None
        return list(struct.unpack(f"<{count}Q", self._offsets))


def frame_ranges(
    pixel_data: tuple[int, int] | None,
    attrs: FrameAttributes,
    f: BinaryIO,
    start: int,
    syntax: str,
) -> Frames:
    """Per frame, the (offset, length) ranges of its bytes in the file (offsets from
    ``start``); ``pixel_data`` is the (file offset, length) of the PixelData value."""
    count = attrs.number("NumberOfFrames", 1)
    if pixel_data is None or count is None or count <= 0 or syntax in DEFLATED:
        return ()
    tell, length = pixel_data
    end = f.seek(0, 2)
    span = end - tell if length == UNDEFINED_LENGTH else length
    if count > MAX_FRAMES or count * MIN_FRAME_BYTES > span:
        return ()  # decoded from the file instead: ranges cost ~300 bytes of memory a frame
    if length == UNDEFINED_LENGTH:
        frames = _encapsulated_frames(attrs, f, tell, end, count)
    elif syntax == _BIG_ENDIAN and attrs.number("BitsAllocated") == 8:
        # 8-bit pixels of a big-endian file may be OW: bytes swapped in pairs across frame
        # boundaries (PS3.5 §7.3), so a frame is not a contiguous range. Decode instead.
        frames = ()
    elif not UID(syntax).is_compressed:
        frames = _native_frames(attrs, tell, length, end, count)
    else:
        frames = ()
    return tuple(tuple((offset - start, length) for offset, length in frame) for frame in frames)


def _native_frames(
    attrs: FrameAttributes, tell: int, length: int, end: int, count: int
) -> Frames:
    """PS3.5 §8.2: frames are contiguous, each of a fixed bit count."""
    dims = [attrs.number(k) for k in ("Rows", "Columns", "BitsAllocated")]
    samples = attrs.number("SamplesPerPixel", 1)
    if None in dims or not samples:
        return ()
    rows, columns, bits = (int(d or 0) for d in dims)
    frame_bits = rows * columns * samples * bits
    photometric = attrs.photometric()
    if samples == 3 and photometric.startswith("YBR") and photometric.endswith("_422"):
        frame_bits = frame_bits // 3 * 2  # PS3.3 C.7.6.3.1.2: two samples per pixel pair
    if frame_bits <= 0 or frame_bits % 8:
        return ()  # frames not byte aligned (BitsAllocated 1): decode instead
    frame_size = frame_bits // 8
    if count * frame_size > length or tell + count * frame_size > end:
        return ()
    return tuple(((tell + i * frame_size, frame_size),) for i in range(count))


def _items(f: BinaryIO, tell: int, end: int) -> list[tuple[int, int]] | None:
    """(value offset, length) of every item of encapsulated pixel data (PS3.5 A.4)."""
    items: list[tuple[int, int]] = []
    position = tell
    f.seek(position)
    while True:
        header = f.read(8)
        if len(header) < 8:
            return None
        group, element, length = struct.unpack("<HHI", header)
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            return items
        position += 8 + length
        if tag != _ITEM or length == UNDEFINED_LENGTH or position > end:
            return None
        items.append((position - length, length))
        if len(items) > MAX_FRAGMENTS:
            return None  # a hostile count of empty fragments: decode from the file instead
        f.seek(position)


def _encapsulated_frames(
    attrs: FrameAttributes, f: BinaryIO, tell: int, end: int, count: int
) -> Sequence[Sequence[tuple[int, int]]]:
    items = _items(f, tell, end)
    if not items or len(items) < 2:
        return ()
    table, fragments = items[0], items[1:]
    if count == 1:
        return (tuple(fragments),)
    if len(fragments) == count:
        return tuple((fragment,) for fragment in fragments)
    offsets = _basic_offsets(f, table, count) or attrs.extended_offsets(count)
    return _group(fragments, offsets) if offsets else ()


def _basic_offsets(f: BinaryIO, table: tuple[int, int], count: int) -> list[int] | None:
    """Basic Offset Table: one UL per frame, from the first fragment's item tag."""
    position, length = table
    if length != 4 * count:
        return None
    f.seek(position)
    return list(struct.unpack(f"<{count}I", f.read(length)))


def _group(fragments: list[tuple[int, int]], offsets: list[int]) -> Frames:
    """Fragments grouped by frame start offsets; () unless each offset starts a fragment."""
    origin = fragments[0][0] - 8  # first byte of the first fragment's item tag
    starts = {position - 8 - origin: i for i, (position, _) in enumerate(fragments)}
    if offsets[0] != 0 or any(o not in starts for o in offsets):
        return ()
    bounds = [starts[o] for o in offsets] + [len(fragments)]
    if any(a >= b for a, b in zip(bounds, bounds[1:], strict=False)):
        return ()
    return tuple(tuple(fragments[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
