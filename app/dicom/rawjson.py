"""DICOM JSON read straight from the bytes of an Explicit VR Little Endian file.

Most of the cost of ingesting a typical instance (a few dozen elements, then the pixel
data) is pydicom's per-element machinery: the reader, then one conversion per element
through hooks, value classes and ``to_json_dict``. This module reads such a file in one
pass over its bytes and gives exactly what :func:`app.dicom.dicomjson.dataset_to_json`
gives for ``dcmread(f, defer_size="64 KB", force=True)``, plus what ingest needs besides
(the transfer syntax, where PixelData is). Values are converted the way pydicom's
``pydicom.values`` converters and ``DataElement.to_json_dict`` do, then as
:mod:`app.dicom.dicomjson` does (non-finite numbers → null, an empty value among several
→ null).

It takes only what it reproduces exactly and raises :class:`Unsupported` for anything
else; the caller then reads the file with pydicom. Taken:

* the file: 128-byte preamble and ``DICM``, a File Meta group, and a Transfer Syntax that
  pydicom reads as Explicit VR Little Endian (not implicit, big endian, deflated or a
  registered private syntax), no Command group;
* elements in strictly ascending order, each inside its parent; known VRs except UN
  (pydicom may replace it with the dictionary VR); undefined lengths only for SQ and
  the top-level encapsulated PixelData (whose fragments are walked as pydicom does
  first);
* text: a single-valued Specific Character Set whose Python codec is in :data:`_CODECS`
  (ISO 8859 family, UTF-8), at the top level only, or none and a DefaultEncoding
  (ingest's ``encoding``) of one such codec or cp1251; values without ESC (ISO 2022
  code extensions) that decode without error;
* IS and DS values that ``int`` / ``float`` read as pydicom does (:data:`_IS`,
  :data:`_DS`), no empty value among several IS/DS values, no multi-valued PN with an
  empty name, no LUT Descriptor (pydicom adjusts its first value);
* the frame attributes ingest reads (Rows, NumberOfFrames, ...) with their standard VRs;
* pydicom at its default settings (:func:`_pydicom_defaults`).

Past ``max_elements`` data elements and sequence items it raises
:class:`~app.dicom.dicomjson.TooManyElements` as soon as it counts one too many: the
file is refused, not handed to pydicom.

``tests/unit/test_rawjson.py`` compares both readings on every file bundled with
pydicom and on generated element values.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom import config
from pydicom.charset import convert_encodings
from pydicom.hooks import hooks, raw_element_value, raw_element_vr
from pydicom.uid import PrivateTransferSyntaxes
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from app.dicom.dicomjson import (
    BINARY_VRS,
    PIXEL_DATA,
    UNDEFINED_LENGTH,
    JsonOptions,
    TooManyElements,
    binary_entry,
    finite,
)
from backends.base import DicomJson


class Unsupported(Exception):
    """Something this reader does not reproduce exactly: read the file with pydicom."""


@dataclass
class RawFile:
    """A file read by :func:`read_file`; offsets are positions in the buffer read."""

    json: DicomJson  # BulkDataURIs relative to the prefix given to :meth:`set_bulk_prefix`
    transfer_syntax: str
    pixel_data: tuple[int, int] | None  # value offset and length (UNDEFINED_LENGTH if encapsulated)
    extended_offsets: bytes | None  # (7FE0,0001) value, when binary
    bulk: list[dict[str, Any]] = field(default_factory=list)

    def set_bulk_prefix(self, prefix: str) -> None:
        """Prefix every BulkDataURI (they are built before the UIDs are known)."""
        for entry in self.bulk:
            entry["BulkDataURI"] = prefix + entry["BulkDataURI"]
        self.bulk = []


_EXPLICIT_LE = "1.2.840.10008.1.2.1"
# Read by pydicom as something else than plain Explicit VR Little Endian, or
# (JPIP Referenced Deflate) re-read by ingest without deferred values.
_OTHER_SYNTAXES = frozenset({
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.95",
})
_TRANSFER_SYNTAX = 0x00020010
_CHARSET = 0x00080005
_EXTENDED_OFFSETS = 0x7FE00001
# LUT Descriptors: pydicom's raw_element_value hook makes a negative first value unsigned.
_LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})
# Attributes ingest reads to find frames, with the only VR taken for each.
_FRAME_ATTRIBUTES = {0x00280008: "IS", 0x00280010: "US", 0x00280011: "US",
                     0x00280100: "US", 0x00280002: "US", 0x00280004: "CS"}
# Tags :meth:`_Reader.element` looks at before converting (the others take a short cut).
_SPECIAL = frozenset({*_LUT_DESCRIPTORS, *_FRAME_ATTRIBUTES, PIXEL_DATA, _EXTENDED_OFFSETS})
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_ITEM_BYTES, _SEQUENCE_END_BYTES = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"

# Python codecs (pydicom's names for them) that decode one byte string one way: no
# code extensions, no multi-byte state.
_CODECS = frozenset({
    "iso8859", "latin_1", "iso8859_2", "iso8859_3", "iso8859_4", "iso_ir_126",
    "iso_ir_127", "iso_ir_138", "iso_ir_144", "iso_ir_148", "iso_ir_166", "UTF8",
})
# Codecs for files without Specific Character Set (DefaultEncoding Windows1251 is no
# DICOM character set, but as single-byte as the others).
_DEFAULT_CODECS = _CODECS | {"cp1251"}

_HEADER = struct.Struct("<HH2sH").unpack_from  # tag, VR, 16-bit length
_LENGTH = struct.Struct("<L").unpack_from  # 32-bit length after 2 reserved bytes
_ITEM_HEADER = struct.Struct("<HHL").unpack_from

# IS: digits int() reads as pydicom's IS does (at most 15, beyond that pydicom goes
# through a float); DS: plain decimal numbers, read by float() as by pydicom's DSfloat.
# Anything else (inf, nan, '_', tabs, '1.0' as IS...) is left to pydicom.
_IS = re.compile(r" *[+-]?[0-9]{1,15} *")
_DS = re.compile(r" *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *")


# --- value conversions (pydicom.values), each to the JSON "Value" list or None --------


def _values(items: list[str]) -> list[str | None] | None:
    """One empty string is no value; an empty value among several is null (PS3.18 F.2.5)."""
    if len(items) == 1:
        return items if items[0] else None
    return [item or None for item in items]


def _decode(raw: bytes, codec: str) -> str:
    """Text of the VRs decoded with the Specific Character Set (pydicom ``decode_bytes``)."""
    if b"\x1b" in raw:
        raise Unsupported("ISO 2022 escape sequence")
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:  # pydicom would replace with a warning
        raise Unsupported("undecodable text") from None


def _ae(raw: bytes, codec: str) -> list[Any] | None:
    return _values([s.strip() for s in raw.decode("latin-1").split("\\")])


def _string(raw: bytes, codec: str) -> list[Any] | None:  # AS CS DA DT TM
    return _values(raw.decode("latin-1").rstrip(" \x00").split("\\"))


def _ui(raw: bytes, codec: str) -> list[Any] | None:
    return _values([s.strip() for s in raw.decode("latin-1").rstrip("\x00 ").split("\\")])


def _ur(raw: bytes, codec: str) -> list[Any] | None:
    return _values([raw.decode("latin-1").rstrip()])


def _text(raw: bytes, codec: str) -> list[Any] | None:  # SH LO UC
    return _values([s.rstrip("\x00 ") for s in _decode(raw, codec).split("\\")])


def _single_text(raw: bytes, codec: str) -> list[Any] | None:  # ST LT UT
    return _values([_decode(raw, codec).rstrip("\x00 ")])


def _person_names(raw: bytes, codec: str) -> list[Any] | None:
    """PN: one {Alphabetic, Ideographic, Phonetic} object per name, trailing empty groups
    dropped (pydicom ``PersonName``)."""
    names = _decode(raw.rstrip(b"\x00 "), codec).split("\\")
    out = []
    for name in names:
        groups = name.split("=")
        while groups and not groups[-1]:
            groups.pop()
        if not groups:
            if len(names) == 1:
                return None
            raise Unsupported("empty name among several")  # pydicom falls back to text
        value = {"Alphabetic": groups[0]}
        if len(groups) > 1:
            value["Ideographic"] = groups[1]
        if len(groups) > 2:
            value["Phonetic"] = groups[2]
        out.append(value)
    return out


def _checked(items: list[str], pattern: re.Pattern[str]) -> list[str] | None:
    if items == [""]:
        return None
    if not all(pattern.fullmatch(item) for item in items):
        raise Unsupported("number pydicom reads another way")
    return items


def _is(raw: bytes, codec: str) -> list[Any] | None:
    items = _checked(raw.decode("latin-1").rstrip(" \x00").split("\\"), _IS)
    return None if items is None else [int(item) for item in items]


def _ds(raw: bytes, codec: str) -> list[Any] | None:
    items = _checked(raw.decode("latin-1").strip().rstrip(" \x00").split("\\"), _DS)
    return None if items is None else [finite(float(item)) for item in items]


def _at(raw: bytes, codec: str) -> list[Any] | None:
    """AT: tags as 8 hex digits (group then element, each little endian)."""
    if len(raw) % 4:
        raise Unsupported("AT length not a multiple of 4")  # pydicom truncates
    words = struct.unpack(f"<{len(raw) // 2}H", raw)
    return [f"{words[i]:04X}{words[i + 1]:04X}" for i in range(0, len(words), 2)]


def _binary_numbers(code: str, floats: bool) -> Callable[[bytes, str], list[Any]]:
    size = struct.calcsize(f"<{code}")  # standard sizes: "L" is 4 bytes

    def convert(raw: bytes, codec: str) -> list[Any]:
        count, rest = divmod(len(raw), size)
        if rest:
            raise Unsupported("length not a multiple of the value size")  # pydicom: UN
        values = list(struct.unpack(f"<{count}{code}", raw))
        return [finite(v) for v in values] if floats else values

    return convert


_CONVERT: dict[str, Callable[[bytes, str], list[Any] | None]] = {
    "AE": _ae, "AS": _string, "CS": _string, "DA": _string, "DT": _string, "TM": _string,
    "UI": _ui, "UR": _ur, "SH": _text, "LO": _text, "UC": _text, "ST": _single_text,
    "LT": _single_text, "UT": _single_text, "PN": _person_names, "IS": _is, "DS": _ds,
    "AT": _at,
    "US": _binary_numbers("H", False), "SS": _binary_numbers("h", False),
    "UL": _binary_numbers("L", False), "SL": _binary_numbers("l", False),
    "SV": _binary_numbers("q", False), "UV": _binary_numbers("Q", False),
    "FL": _binary_numbers("f", True), "FD": _binary_numbers("d", True),
}
_CHARSET_VRS = frozenset({"SH", "LO", "UC", "ST", "LT", "UT", "PN"})
_VRS = {vr.encode(): vr for vr in [*_CONVERT, *(BINARY_VRS - {"UN"}), "SQ"]}
_LONG = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)


# --- the walk -----------------------------------------------------------------------


@dataclass
class _Reader:
    buf: Any  # bytes or mmap: slicing gives bytes
    opts: JsonOptions
    default_codec: str | None = "iso8859"  # without (0008,0005); None: not taken
    codec: str | None = None  # known once past (0008,0005) at the top level
    pixel_data: tuple[int, int] | None = None
    extended_offsets: bytes | None = None
    bulk: list[dict[str, Any]] = field(default_factory=list)
    limit: int = 0  # data elements + sequence items taken (0: no limit)
    left: int = 1 << 62  # of the limit, still allowed

    def dataset(
        self, pos: int, end: int, path: str, top: bool, delimited: bool
    ) -> tuple[DicomJson, int]:
        """Elements from ``pos`` up to ``end`` (or the item delimiter if ``delimited``)."""
        out: DicomJson = {}
        last = -1
        buf = self.buf
        while pos < end:
            if pos + 8 > end:
                if top:
                    break  # pydicom ignores a few trailing bytes
                raise Unsupported("truncated item")
            group, element, vr_bytes, length = _HEADER(buf, pos)
            tag = group << 16 | element
            if tag == _ITEM_END and delimited:
                return out, pos + 8
            vr = _VRS.get(vr_bytes)
            if vr is None or tag <= last or (tag == _CHARSET and not top):
                raise Unsupported(f"element ({tag:08X}) {vr_bytes!r}")
            last = tag
            self.left -= 1
            if self.left < 0:  # before the value: a hostile file costs no more than this
                raise TooManyElements(self.limit)
            pos += 8
            if vr in _LONG:
                if pos + 4 > end:
                    raise Unsupported("truncated header")
                (length,) = _LENGTH(buf, pos)
                pos += 4
            if top and self.codec is None and tag >= _CHARSET:
                self.codec = self._charset(pos, length) if tag == _CHARSET else \
                    self._default_charset()
            convert = _CONVERT.get(vr)
            if (convert is None or tag in _SPECIAL or self.codec is None
                    or length == UNDEFINED_LENGTH or pos + length > end):
                entry, pos = self.element(tag, vr, pos, length, end, path, top)
            else:  # the common element, inline: a text or number value
                values = convert(buf[pos:pos + length], self.codec) if length else None
                entry = {"vr": vr, "Value": values} if values else {"vr": vr}
                pos += length
            if entry is not None and group != 2 and element != 0:
                out[f"{tag:08X}"] = entry
        if delimited:
            raise Unsupported("no item delimiter")
        return out, pos

    def _charset(self, pos: int, length: int) -> str:
        """Python codec of the Specific Character Set (pydicom ``convert_encodings``)."""
        value = self.buf[pos:pos + length].decode("latin-1").rstrip(" \x00")
        if "\\" in value:
            raise Unsupported("several character sets")
        try:
            codecs = convert_encodings(value)
        except Exception as exc:  # unknown under pydicom's RAISE mode
            raise Unsupported(str(exc)) from None
        if len(codecs) != 1 or codecs[0] not in _CODECS:
            raise Unsupported(f"character set {value!r}")
        return codecs[0]

    def _default_charset(self) -> str:
        if self.default_codec is None:
            raise Unsupported("default character set")
        return self.default_codec

    def element(
        self, tag: int, vr: str, pos: int, length: int, end: int, path: str, top: bool
    ) -> tuple[dict[str, Any] | None, int]:
        """JSON of one element whose value starts at ``pos``, and the offset after it."""
        if top and tag in _FRAME_ATTRIBUTES and vr != _FRAME_ATTRIBUTES[tag]:
            raise Unsupported("frame attribute with another VR")
        if self.codec is None and (vr in _CHARSET_VRS or vr == "SQ"):
            raise Unsupported("text before the Specific Character Set")
        if length == UNDEFINED_LENGTH:
            return self.undefined_length(tag, vr, pos, end, path, top)
        value_end = pos + length
        if value_end > end:
            raise Unsupported("value past its parent")
        if top and tag == PIXEL_DATA:
            self.pixel_data = (pos, length)
        if vr in BINARY_VRS:
            if top and tag == _EXTENDED_OFFSETS:
                self.extended_offsets = self.buf[pos:value_end]
            return self.binary(tag, vr, pos, length, path, top), value_end
        if vr == "SQ":
            entry, _ = self.sequence(pos, value_end, f"{path}/{tag:08x}", delimited=False)
            return entry, value_end
        if length == 0:
            return {"vr": vr}, value_end
        if tag in _LUT_DESCRIPTORS:
            raise Unsupported("LUT Descriptor")
        values = _CONVERT[vr](self.buf[pos:value_end], self.codec or "iso8859")
        return ({"vr": vr, "Value": values} if values else {"vr": vr}), value_end

    def undefined_length(
        self, tag: int, vr: str, pos: int, end: int, path: str, top: bool
    ) -> tuple[dict[str, Any] | None, int]:
        if vr == "SQ":
            return self.sequence(pos, end, f"{path}/{tag:08x}", delimited=True)
        if not (top and tag == PIXEL_DATA and vr in ("OB", "OW")):
            raise Unsupported("undefined length")
        after = _fragments_end(self.buf, pos, end)
        self.pixel_data = (pos, UNDEFINED_LENGTH)
        return self.binary(tag, vr, pos, UNDEFINED_LENGTH, path, top), after

    def binary(
        self, tag: int, vr: str, pos: int, length: int, path: str, top: bool
    ) -> dict[str, Any] | None:
        entry = binary_entry(tag, vr, length, lambda: self.buf[pos:pos + length],
                             path, self.opts, top)
        if entry is not None and "BulkDataURI" in entry:
            self.bulk.append(entry)
        return entry

    def sequence(
        self, pos: int, end: int, path: str, delimited: bool
    ) -> tuple[dict[str, Any], int]:
        """Items up to ``end`` (defined length) or the sequence delimiter."""
        items: list[DicomJson] = []
        while pos < end:
            if pos + 8 > end:
                raise Unsupported("truncated sequence")
            group, element, length = _ITEM_HEADER(self.buf, pos)
            tag = group << 16 | element
            pos += 8
            if tag == _SEQUENCE_END:
                delimited = False
                break
            if tag != _ITEM:
                raise Unsupported("not an item")
            self.left -= 1
            if self.left < 0:
                raise TooManyElements(self.limit)
            item_path = f"{path}/{len(items) + 1}"
            if length == UNDEFINED_LENGTH:
                item, pos = self.dataset(pos, end, item_path, top=False, delimited=True)
            elif pos + length > end:
                raise Unsupported("item past its sequence")
            else:
                item, _ = self.dataset(pos, pos + length, item_path, top=False, delimited=False)
                pos += length
            items.append(item)
        if delimited:
            raise Unsupported("no sequence delimiter")
        return ({"vr": "SQ", "Value": items} if items else {"vr": "SQ"}), pos


def _fragments_end(buf: Any, pos: int, end: int) -> int:
    """Offset after encapsulated pixel data: items then the sequence delimiter, as
    pydicom's first attempt reads them (its byte scan fallback is not reproduced)."""
    while pos + 4 <= end:
        tag = buf[pos:pos + 4]
        if tag == _SEQUENCE_END_BYTES:
            if pos + 8 > end:
                break
            return pos + 8
        if tag != _ITEM_BYTES or pos + 8 > end:
            break
        pos += 8 + _LENGTH(buf, pos + 4)[0]
    raise Unsupported("encapsulated pixel data pydicom scans for")


# --- the file -----------------------------------------------------------------------


def _pydicom_defaults() -> bool:
    """pydicom converts values as reproduced here only with its default settings."""
    return (config.settings.reading_validation_mode != config.RAISE
            and not (config.datetime_conversion or config.use_DS_decimal
                     or config.use_DS_numpy or config.use_IS_numpy
                     or config.use_none_as_empty_text_VR_value)
            and config.data_element_callback is None
            and hooks.raw_element_vr is raw_element_vr
            and hooks.raw_element_value is raw_element_value
            and not hooks.raw_element_kwargs)


def _file_meta(buf: Any, pos: int, end: int) -> tuple[str, int]:
    """Transfer Syntax UID of the File Meta group at ``pos``, and the offset after it."""
    syntax: list[Any] | None = None
    last = -1
    while pos + 8 <= end:
        group, element, vr_bytes, length = _HEADER(buf, pos)
        tag = group << 16 | element
        if group != 2:
            break
        vr = _VRS.get(vr_bytes)
        if vr is None or tag <= last:
            raise Unsupported("File Meta element")
        last = tag
        pos += 8
        if vr in _LONG:
            (length,) = _LENGTH(buf, pos)
            pos += 4
        if length == UNDEFINED_LENGTH or pos + length > end:
            raise Unsupported("File Meta length")
        if tag == _TRANSFER_SYNTAX:
            syntax = _ui(buf[pos:pos + length], "")
        pos += length
    if not syntax or len(syntax) != 1 or not syntax[0]:
        raise Unsupported("no single Transfer Syntax UID")
    return str(syntax[0]), pos


def read_file(
    buf: Any, start: int, binary_mode: str, default_codecs: Sequence[str] = ("iso8859",),
    max_elements: int = 0,
) -> RawFile:
    """Read the Part 10 file at ``buf[start:]`` (bytes or mmap) or raise Unsupported;
    ``default_codecs``: pydicom's codecs for a file without Specific Character Set;
    ``max_elements``: data elements + sequence items allowed (0: any number), else
    :class:`TooManyElements`."""
    if not _pydicom_defaults():
        raise Unsupported("pydicom settings")
    if buf[start + 128:start + 132] != b"DICM":
        raise Unsupported("no preamble")
    syntax, pos = _file_meta(buf, start + 132, len(buf))
    if syntax != _EXPLICIT_LE and (syntax in _OTHER_SYNTAXES
                                   or syntax in PrivateTransferSyntaxes):
        raise Unsupported(f"transfer syntax {syntax}")
    if buf[pos:pos + 2] == b"\x00\x00":
        raise Unsupported("Command group")
    single = len(default_codecs) == 1 and default_codecs[0] in _DEFAULT_CODECS
    reader = _Reader(buf, JsonOptions("", binary_mode), default_codecs[0] if single else None)
    if max_elements:
        reader.limit, reader.left = max_elements, max_elements
    json, _ = reader.dataset(pos, len(buf), "/bulk", top=True, delimited=False)
    return RawFile(json, syntax, reader.pixel_data, reader.extended_offsets, reader.bulk)
