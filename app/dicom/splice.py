"""Fast path of one transcoding: an encapsulated instance decoded to Explicit VR Little
Endian, the WADO-RS default (PS3.18 §8.7.3.5), by splicing bytes instead of parsing and
re-writing the whole dataset with pydicom.

Every encapsulated transfer syntax encodes the dataset in Explicit VR Little Endian
(PS3.5 §A.4), which is the target's encoding too, so the output is:

* the preamble and File Meta Information, copied with Transfer Syntax UID replaced and
  the group length fixed (PS3.10 §7.1);
* the elements before Pixel Data, copied, except what the slow path changes in the
  Image Pixel module (PS3.3 C.7.6.3): Photometric Interpretation of the decoded pixels
  (YBR_* decoded to RGB), Planar Configuration 0 for colour;
* a native Pixel Data element (OB up to 8 bits allocated, OW above, PS3.5 §8.1.1)
  holding the frames decoded one at a time with :mod:`app.dicom.pixels`, each read from
  the byte ranges :mod:`app.dicom.frames` finds (the ones the index records at ingest);
* the elements after Pixel Data (trailing padding), copied.

Its output is the slow path's (:func:`app.dicom.transcode.transcode` through pydicom):
a unit test compares both on every bundled pydicom file. Anything this module does not
reproduce exactly (no preamble, incomplete or unsorted file meta, deflate, odd lengths,
unknown VRs, UN of undefined length, frames without offsets, an Extended Offset Table,
1-bit pixels, a decoder that refuses a lone frame) makes it decline: it returns None and
the slow path answers.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from app.dicom import frames, pixels
from app.dicom.dicomjson import UNDEFINED_LENGTH
from app.errors import NotAcceptable

_PIXEL_DATA = 0x7FE00010
_EXTENDED_OFFSETS = (0x7FE00001, 0x7FE00002)
_PHOTOMETRIC, _PLANAR = 0x00280004, 0x00280006
_TRANSFER_SYNTAX = 0x00020010
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
# File meta elements pydicom adds when absent (PS3.10 Table 7.1-1): with any of them
# missing, the slow path's output differs from a copy.
_REQUIRED_META = (0x00020000, 0x00020001, 0x00020002, 0x00020003, _TRANSFER_SYNTAX,
                  0x00020012, 0x00020013)
# PS3.5 §7.1.2: these VRs have a 2-byte reserved field and a 4-byte length.
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_VRS = _LONG_VRS | frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split())
# Image Pixel attributes read to decode, with their dictionary VRs: another VR (a damaged
# file) is rewritten by the slow path, not copied.
_PIXEL_VRS = {0x00280002: b"US", 0x00280004: b"CS", 0x00280006: b"US", 0x00280008: b"IS",
              0x00280010: b"US", 0x00280011: b"US", 0x00280100: b"US", 0x00280101: b"US",
              0x00280102: b"US", 0x00280103: b"US"}
_MAX_DEPTH = 32  # nested sequences; deeper ones go to pydicom
_READ = 1 << 16


class Declined(Exception):
    """The fast path does not reproduce the slow one for this instance."""


class _Head:
    """The file's first bytes, read from ``f`` as far as the walk needs (everything up
    to the Pixel Data element, which is copied anyway)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.data = f, bytearray()
        f.seek(0)

    def need(self, end: int) -> None:
        while len(self.data) < end:
            more = self.f.read(max(end - len(self.data), _READ))
            if not more:
                raise Declined("the file ends inside its dataset")
            self.data += more

    def element(self, pos: int) -> tuple[int, bytes, int, int]:
        """(tag, VR, value offset, value length) of the element at ``pos`` (PS3.5 §7.1.2,
        §7.5 for item and delimitation tags, which have no VR)."""
        self.need(pos + 8)
        group, number, vr, short = struct.unpack_from("<HH2sH", self.data, pos)
        tag = group << 16 | number
        if group == 0xFFFE:
            return tag, b"", pos + 8, struct.unpack_from("<I", self.data, pos + 4)[0]
        if vr not in _VRS:
            raise Declined(f"unknown VR {vr!r}")  # perhaps implicit VR after all
        if vr not in _LONG_VRS:
            return tag, vr, pos + 8, short
        self.need(pos + 12)
        return tag, vr, pos + 12, struct.unpack_from("<I", self.data, pos + 8)[0]


def explicit_little_endian(f: BinaryIO) -> bytes | None:
    """The instance in Explicit VR Little Endian as a Part 10 file, or None when it is not
    an encapsulated instance this fast path reproduces exactly (the caller then takes the
    slow path, from any position of ``f``)."""
    try:
        return _splice(f)
    except (Declined, NotAcceptable):
        # A decoder refusing a lone frame may still decode the whole dataset: the slow
        # path decides, and words its own 406 if it cannot either.
        return None


def _splice(f: BinaryIO) -> bytes:
    head = _Head(f)
    head.need(132)
    if head.data[128:132] != b"DICM":
        raise Declined("no Part 10 preamble")
    meta_end, syntax_at = _file_meta(head)
    source = _text(head, syntax_at)
    if (not UID(source).is_encapsulated or source in frames.DEFLATED
            or not pixels.can_decode(source)):
        raise Declined(f"not an encapsulated syntax with a decoder: {source}")
    elements, pixel_at = _top_level(head, meta_end)
    header = _pixel_header(head, elements)
    ranges = frames.frame_ranges((pixel_at, UNDEFINED_LENGTH),
                                 frames.DatasetAttributes(header), f, 0, source)
    if not ranges:
        raise Declined("frames without byte ranges")
    trailing = _trailing(f, ranges[-1][-1])
    data, opts = _decode(f, header, ranges, source)
    out = [bytes(head.data[:128 + 4]), _meta(head, meta_end, syntax_at)]
    out += _body(head, elements, opts)
    vr = b"OB" if int(opts.get("bits_allocated") or 8) <= 8 else b"OW"
    size = sum(len(frame) for frame in data)
    out.append(b"\xe0\x7f\x10\x00" + vr + b"\0\0" + struct.pack("<I", size + size % 2))
    out += data
    out.append(b"\0" * (size % 2) + trailing)
    return b"".join(out)


def _file_meta(head: _Head) -> tuple[int, int]:
    """End of the File Meta Information and the offset of its Transfer Syntax UID
    element; declined unless it is complete, sorted and exactly as long as its group
    length says (pydicom rewrites it otherwise)."""
    tag, vr, start, length = head.element(132)
    if tag != 0x00020000 or vr != b"UL" or length != 4:
        raise Declined("no File Meta Information Group Length")
    head.need(start + 4)
    end = start + 4 + struct.unpack_from("<I", head.data, start)[0]
    tags, syntax_at, pos = [tag], 0, start + 4
    while pos < end:
        tag, vr, start, length = head.element(pos)
        if tag >> 16 != 0x0002 or tag <= tags[-1] or length in (0, UNDEFINED_LENGTH) or length % 2:
            raise Declined("unusual file meta")
        if tag == _TRANSFER_SYNTAX:
            syntax_at = pos
        tags.append(tag)
        pos = start + length
    head.need(pos + 2)
    if pos != end or struct.unpack_from("<H", head.data, pos)[0] == 0x0002 or any(
            tag not in tags for tag in _REQUIRED_META):
        raise Declined("unusual file meta")
    return end, syntax_at


def _text(head: _Head, pos: int) -> str:
    _, _, start, length = head.element(pos)
    return bytes(head.data[start:start + length]).decode("ascii", "replace").rstrip("\0 ")


def _meta(head: _Head, end: int, syntax_at: int) -> bytes:
    """The file meta with Transfer Syntax UID set to Explicit VR Little Endian."""
    _, _, start, length = head.element(syntax_at)
    element = _short_element(_TRANSFER_SYNTAX, b"UI", ExplicitVRLittleEndian.encode() + b"\0")
    rest = bytes(head.data[144:syntax_at]) + element + bytes(head.data[start + length:end])
    return bytes(head.data[132:140]) + struct.pack("<I", len(rest)) + rest


def _top_level(head: _Head, pos: int) -> tuple[list[tuple[int, int, int]], int]:
    """(tag, start, end) of every element before Pixel Data, and where Pixel Data's
    value starts; declined unless it is encapsulated (undefined length)."""
    elements: list[tuple[int, int, int]] = []
    previous = -1
    while True:
        tag, vr, start, length = head.element(pos)
        if tag <= previous or tag >> 16 in (0x0002, 0xFFFE):
            raise Declined("unsorted or misplaced element")
        previous = tag
        if tag == _PIXEL_DATA:
            if length != UNDEFINED_LENGTH:
                raise Declined("native Pixel Data")
            return elements, start
        if tag in _EXTENDED_OFFSETS:
            raise Declined("Extended Offset Table")  # pydicom prefers it to the BOT
        if tag in _PIXEL_VRS and vr != _PIXEL_VRS[tag]:
            raise Declined(f"Image Pixel attribute {tag:08X} with VR {vr!r}")
        end = _value_end(head, vr, start, length, 0)
        if not _group_length(tag):
            elements.append((tag, pos, end))
        pos = end


def _group_length(tag: int) -> bool:
    """A retired Group Length (gggg,0000) of the dataset (PS3.5 §7.2): pydicom drops them
    when it writes, so the copy does too (their values would be stale anyway)."""
    return tag & 0xFFFF == 0 and tag >> 16 > 0x0006


def _value_end(head: _Head, vr: bytes, start: int, length: int, depth: int) -> int:
    """Offset after an element's value; sequences are walked so that what pydicom would
    refuse to parse is declined rather than copied."""
    if vr == b"SQ":
        return _sequence_end(head, start, None if length == UNDEFINED_LENGTH else start + length,
                             depth + 1)
    if length == UNDEFINED_LENGTH or length % 2:
        raise Declined("undefined or odd length")
    head.need(start + length)
    return start + length


def _sequence_end(head: _Head, pos: int, end: int | None, depth: int) -> int:
    """Items of a sequence (PS3.5 §7.5): up to ``end``, or to its delimitation item."""
    if depth > _MAX_DEPTH:
        raise Declined("sequences nested too deep")
    while end is None or pos < end:
        tag, _, start, length = head.element(pos)
        if tag == _SEQUENCE_END and end is None:
            return start
        if tag != _ITEM:
            raise Declined("not an item")
        pos = _item_end(head, start, None if length == UNDEFINED_LENGTH else start + length, depth)
    if pos != end:
        raise Declined("sequence items overrun its length")
    return pos


def _item_end(head: _Head, pos: int, end: int | None, depth: int) -> int:
    """Elements of one item: up to ``end``, or to its delimitation item."""
    while end is None or pos < end:
        tag, vr, start, length = head.element(pos)
        if tag == _ITEM_END and end is None:
            return start
        if tag >> 16 == 0xFFFE or _group_length(tag):
            raise Declined("misplaced item tag or group length in an item")
        pos = _value_end(head, vr, start, length, depth)
    if pos != end:
        raise Declined("item elements overrun its length")
    return pos


def _pixel_header(head: _Head, elements: list[tuple[int, int, int]]) -> Dataset:
    """The Image Pixel module alone (group 0028): all the per-frame decoders read."""
    raw = b"".join(bytes(head.data[start:end]) for tag, start, end in elements
                   if tag >> 16 == 0x0028)
    return read_dataset(io.BytesIO(raw), is_implicit_VR=False, is_little_endian=True)


def _trailing(f: BinaryIO, last: tuple[int, int]) -> bytes:
    """Elements after the encapsulated Pixel Data (Data Set Trailing Padding), copied;
    the last fragment must be followed by the sequence delimitation item (PS3.5 A.4)."""
    f.seek(last[0] + last[1])
    if f.read(8) != b"\xfe\xff\xdd\xe0\0\0\0\0":
        raise Declined("no sequence delimiter after the last fragment")
    trailing = f.read()
    head = _Head(io.BytesIO(trailing))
    pos, previous = 0, _PIXEL_DATA
    while pos < len(trailing):
        tag, vr, start, length = head.element(pos)
        if tag <= previous:
            raise Declined("unsorted trailing elements")
        pos, previous = _value_end(head, vr, start, length, 0), tag
    return trailing


def _decode(f: BinaryIO, header: Dataset, ranges: frames.Frames,
            source: str) -> tuple[list[bytes], dict]:
    """Every frame decoded as pixel_array gives it, as native bytes (PS3.5 §8.1.1), and
    the Image Pixel values of the first, as the slow path takes them."""
    data: list[bytes] = []
    first: dict = {}
    for frame in ranges:
        stored = b"".join(_read(f, offset, length) for offset, length in frame)
        arr, opts = pixels.decode_frame_described(header, stored, source)
        if not data:
            first = opts
        if opts.get("bits_allocated") == 1:
            raise Declined("1-bit frames are packed across frame boundaries")
        data.append(pixels.native_bytes(arr, opts))
    return data, first


def _read(f: BinaryIO, offset: int, length: int) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise Declined("fragment past the end of the file")
    return data


def _body(head: _Head, elements: list[tuple[int, int, int]], opts: dict) -> list[bytes]:
    """The elements before Pixel Data, with the Image Pixel values of the decoded pixels
    (PS3.3 C.7.6.3) replacing or joining the stored ones in tag order."""
    photometric = str(opts.get("photometric_interpretation", ""))
    if not photometric:
        raise Declined("no Photometric Interpretation")
    new = {_PHOTOMETRIC: _short_element(_PHOTOMETRIC, b"CS", _padded(photometric))}
    if int(opts.get("samples_per_pixel") or 1) > 1:
        new[_PLANAR] = _short_element(_PLANAR, b"US", struct.pack("<H", 0))
    out: list[bytes] = []
    pending = sorted(new)
    for tag, start, end in elements:
        while pending and pending[0] <= tag:
            out.append(new[pending.pop(0)])
        if tag not in new:
            out.append(bytes(head.data[start:end]))
    out += [new[tag] for tag in pending]
    return out


def _padded(text: str) -> bytes:
    value = text.encode("ascii")
    return value + b" " * (len(value) % 2)


def _short_element(tag: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack("<H", len(value)) + value


__all__ = ["Declined", "explicit_little_endian"]
