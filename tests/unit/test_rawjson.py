"""The direct reading (app.dicom.rawjson) gives exactly pydicom's record, or declines.

Every bundled pydicom file (charset files included) and generated files with arbitrary
element values are read both ways: whenever the direct reading gives a record, it must
equal the one built from pydicom's reading (metadata text, level attributes, frames...).
"""

from __future__ import annotations

import codecs
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.dicom import dictionary, rawjson
from app.dicom.dicomjson import BINARY_MODES, json_dumps
from app.dicom.dictionary import charset_codecs
from app.dicom.ingest import (
    IngestError,
    build_record,
    direct_record,
    pydicom_record,
    split_levels,
)
from app.settings import ENCODINGS
from backends.base import InstanceRecord
from tests.api.data import ct_bytes, uid
from tests.dicom_compare import ALL_FILES

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on invalid values

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _both(data: bytes, mode: str = "BulkDataURI",
          encoding: str | None = None) -> tuple[InstanceRecord | None, Any]:
    """(direct record or None, pydicom record or its IngestError)."""
    direct = direct_record(io.BytesIO(data), 0, storage_key="k", size=len(data),
                           binary_mode=mode, encoding=encoding)
    try:
        slow: Any = pydicom_record(io.BytesIO(data), storage_key="k", size=len(data),
                                   binary_mode=mode, encoding=encoding)
    except IngestError as exc:
        slow = exc
    return direct, slow


def _assert_same(data: bytes, mode: str = "BulkDataURI", encoding: str | None = None) -> bool:
    """True if the direct reading took the file (and then gave pydicom's record)."""
    direct, slow = _both(data, mode, encoding)
    if direct is None:
        return False
    assert isinstance(slow, InstanceRecord), slow
    assert direct.metadata == slow.metadata
    assert direct == slow
    return True


# --- files ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", BINARY_MODES)
@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_bundled_file_read_directly_as_pydicom_reads_it(path: Path, mode: str) -> None:
    _assert_same(path.read_bytes(), mode)


def test_most_explicit_little_endian_files_are_read_directly() -> None:
    taken = [p.name for p in ALL_FILES if _assert_same(p.read_bytes())]
    assert len(taken) >= 45, taken  # 50 of the 95 with pydicom 3.0
    assert {"CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "chrRuss.dcm"} <= set(taken)
    assert "chrH31.dcm" not in taken  # ISO 2022 code extensions: pydicom reads it


def test_benchmark_instance_is_read_directly() -> None:
    data = ct_bytes(uid(), uid(), number=7, rows=512, columns=512)
    assert _assert_same(data)
    record = build_record(io.BytesIO(data), storage_key="k", size=len(data))
    assert record.frames == ((((len(data) - 512 * 512 * 2), 512 * 512 * 2),),)


def test_file_on_disk_is_read_through_mmap(tmp_path: Path) -> None:
    data = ct_bytes(uid(), uid(), rows=2048, columns=2048)  # 8 MiB of pixels
    path = tmp_path / "big.dcm"
    path.write_bytes(data)
    with open(path, "rb") as f:
        direct = direct_record(f, 0, storage_key="k", size=len(data))
        f.seek(0)
        assert direct is not None
        assert direct == pydicom_record(f, storage_key="k", size=len(data))


def test_file_after_other_bytes() -> None:
    data = ct_bytes(uid(), uid())
    f = io.BytesIO(b"x" * 10 + data)
    record = direct_record(f, 10, storage_key="k", size=len(data))
    assert record is not None
    assert record == pydicom_record(io.BytesIO(data), storage_key="k", size=len(data))


def test_whole_metadata_small_means_no_attribute_too_large() -> None:
    record = build_record(io.BytesIO(ct_bytes(uid(), uid())), storage_key="k", size=0)
    full = json.loads(record.metadata)
    assert len(json_dumps(full)) < 8192
    assert split_levels(full, all_small=True) == split_levels(full)


def test_iso8859_is_latin_1() -> None:  # pydicom's default_encoding, decoded as latin-1
    assert codecs.lookup("iso8859").name == codecs.lookup("latin-1").name


# --- generated files --------------------------------------------------------------------

_LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UR", "UT", "UV", "UN"}
_TEXT_BYTES = [b"A", b"z", b"0", b"7", b" ", b"\\", b"\x00", b"=", b"^", b".", b"-", b"+",
               b"e", b"\t", b"\xe9", b"\xc3\xa9", b"\xff", b"\x1b", b"\xd0\x96"]
_NUMBER_BYTES = [b"0", b"1", b"9", b" ", b"\\", b"\x00", b"+", b"-", b".", b"e", b"E",
                 b"_", b"i", b"n", b"f", b"\t"]
_VRS = ["UI", "LO", "PN", "DS", "IS", "US", "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD",
        "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ",
        "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"]
# Tags with a meaning of their own to pydicom or ingest, and a few ordinary ones.
_TAGS = [0x00080000, 0x00080008, 0x00080012, 0x00080020, 0x00081030, 0x00091010,
         0x00100010, 0x00100020, 0x00280002, 0x00280004, 0x00280008, 0x00280010,
         0x00280011, 0x00280100, 0x00281101, 0x00283002, 0x00431029, 0x7FE00001,
         0x7FE00008, 0x7FE00010]
_FRAME_VRS = {0x00280002: "US", 0x00280004: "CS", 0x00280008: "IS", 0x00280010: "US",
              0x00280011: "US", 0x00280100: "US"}
_CHARSETS = [None, None, b"", b"ISO_IR 100", b"ISO_IR 100", b"ISO_IR 192", b"ISO_IR 192",
             b"ISO_IR 144 ", b"ISO_IR 13", b"\\ISO 2022 IR 87", b"ISO 2022 IR 100", b"GB18030"]
_UIDS = {0x00080016: b"1.2.840.10008.5.1.4.1.1.7", 0x00080018: b"1.2.3.4",
         0x0020000D: b"1.2.3", 0x0020000E: b"1.2.3.5"}


def _element(tag: int, vr: str, value: bytes) -> bytes:
    group, element = tag >> 16, tag & 0xFFFF
    if vr in _LONG:
        return struct.pack("<HH2sHL", group, element, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr.encode(), len(value)) + value


def _undefined(tag: int, vr: str, body: bytes) -> bytes:
    head = struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, 0xFFFFFFFF)
    return head + body + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _text(alphabet: list[bytes], max_size: int = 12) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(alphabet), max_size=max_size).map(b"".join)


_NUMBERS = st.one_of(st.integers(-(10**6), 10**6).map(str), st.floats(allow_nan=False).map(repr),
                    st.sampled_from(["1e3", ".5", "-0", "+7", " 12 ", "1.", "3.25E-2"]))


def _value(vr: str) -> st.SearchStrategy[bytes]:
    """Raw values: well-formed ones, and arbitrary bytes of the kinds pydicom reads apart."""
    if vr in ("IS", "DS"):
        numbers = st.lists(_NUMBERS, min_size=1, max_size=3).map(lambda v: "\\".join(v).encode())
        return st.one_of(numbers, _text(_NUMBER_BYTES))
    if vr in ("FD", "FL", "SL", "SS", "SV", "UL", "US", "UV", "AT", "OB", "OD", "OF", "OL",
              "OV", "OW", "UN"):
        sizes = st.sampled_from([0, 2, 4, 8, 16, 3])
        return sizes.flatmap(lambda n: st.binary(min_size=n, max_size=n))
    return st.one_of(_text([b for b in _TEXT_BYTES if b != b"\x1b"]), _text(_TEXT_BYTES))


@st.composite
def _items(draw: st.DrawFn, depth: int) -> bytes:
    """Sequence items (defined or undefined length) of a few elements each."""
    out = b""
    for _ in range(draw(st.integers(0, 2))):
        elements = draw(_elements(depth + 1, [0x00080100, 0x00080104, 0x0040A160, 0x00431030]))
        body = _dataset(elements)
        if draw(st.booleans()):
            out += struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body
        else:
            out += struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + body
            out += b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    return out


@st.composite
def _elements(draw: st.DrawFn, depth: int, tags: list[int]) -> dict[int, bytes]:
    """Encoded elements by tag: random VRs (SQ nested twice at most), random values."""
    out = {}
    for tag in draw(st.sets(st.sampled_from(tags), max_size=6)):
        vrs = _VRS if depth < 2 else [v for v in _VRS if v != "SQ"]
        standard = _FRAME_VRS.get(tag)  # mostly the VR ingest needs, sometimes another
        vr = draw(st.sampled_from([standard] * 3 + vrs[:3] if standard else vrs))
        if vr == "SQ":
            items = draw(_items(depth))
            out[tag] = (_undefined(tag, vr, items) if draw(st.booleans())
                        else _element(tag, vr, items))
        else:
            out[tag] = _element(tag, vr, draw(_value(vr)))
    return out


def _dataset(elements: dict[int, bytes]) -> bytes:
    return b"".join(elements[tag] for tag in sorted(elements))


def _encapsulated(fragments: list[bytes]) -> bytes:
    items = [struct.pack("<HHL", 0xFFFE, 0xE000, len(f)) + f for f in [b"", *fragments]]
    return _undefined(0x7FE00010, "OB", b"".join(items))


def _uids() -> dict[int, bytes]:
    return {tag: _element(tag, "UI", value) for tag, value in _UIDS.items()}


@st.composite
def _files(draw: st.DrawFn) -> bytes:
    """A Part 10 file, Explicit VR Little Endian, with the four UIDs and random elements."""
    elements = draw(_elements(0, _TAGS))
    charset = draw(st.sampled_from(_CHARSETS))
    if charset is not None:
        elements[0x00080005] = _element(0x00080005, "CS", charset)
    pixels = draw(st.sampled_from(["random", "native", "encapsulated"]))
    if pixels == "encapsulated":
        fragments = draw(st.lists(st.binary(max_size=6), max_size=3))
        elements[0x7FE00010] = _encapsulated(fragments)
    elif pixels == "native":
        elements[0x7FE00010] = _element(0x7FE00010, "OW", draw(st.binary(max_size=32)))
    return _part10(_dataset(elements | _uids()))


def _part10(dataset: bytes) -> bytes:
    syntax = EXPLICIT_LE.encode() + b"\x00"
    meta = _element(0x00020001, "OB", b"\x00\x01") + _element(0x00020010, "UI", syntax)
    meta = _element(0x00020000, "UL", struct.pack("<L", len(meta))) + meta
    return b"\x00" * 128 + b"DICM" + meta + dataset


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_files(), mode=st.sampled_from(BINARY_MODES))
def test_generated_files_read_directly_as_pydicom_reads_them(data: bytes, mode: str) -> None:
    _assert_same(data, mode)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_files(), encoding=st.sampled_from(ENCODINGS))
def test_default_encodings_read_directly_as_pydicom_reads_them(data: bytes,
                                                                encoding: str) -> None:
    _assert_same(data, encoding=encoding)


_SAMPLES = {  # DefaultEncoding: a text in it, and whether the direct reading takes it
    "Ascii": ("Doe^John", True), "Utf8": ("Dvořák^Jiří", True), "Latin1": ("Müller", True),
    "Latin2": ("Dvořák", True), "Latin3": ("Ħaġar", True), "Latin4": ("Šķēle", True),
    "Latin5": ("Yılmaz", True), "Cyrillic": ("Иванов", True), "Arabic": ("محمد", True),
    "Greek": ("Διονυσιος", True), "Hebrew": ("שרון", True), "Thai": ("สมชาย", True),
    "Windows1251": ("Иванов", True), "Japanese": ("ﾔﾏﾀﾞ", False), "Chinese": ("王小东", False),
    "JapaneseKanji": ("Yamada", False), "Korean": ("Hong", False),
    "SimplifiedChinese": ("Wang", False),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_default_encoding_decodes_files_without_charset(encoding: str) -> None:
    text, taken = _SAMPLES[encoding]
    codecs = charset_codecs(encoding)
    raw = text.encode(codecs[-1])
    data = _part10(_dataset(_uids() | {0x00081030: _element(0x00081030, "LO", raw)}))
    assert _assert_same(data, encoding=encoding) is taken
    record = build_record(io.BytesIO(data), storage_key="k", size=0, encoding=encoding)
    assert json.loads(record.metadata)["00081030"]["Value"] == [text]


def test_dictionary_entries_give_the_same_record_both_ways() -> None:
    private = {0x00090010: _element(0x00090010, "LO", b"Lunit "),
               0x00091001: _element(0x00091001, "DS", b"98.41 "),
               0x44440010: _element(0x44440010, "LO", b"SITE7 ")}
    data = _part10(_dataset(_uids() | private))
    dictionary.configure({"0009,1001": ["DS", "Score", 1, 1, "Lunit"],
                          "4444,0010": ["LO", "SiteCode"]})
    try:
        assert _assert_same(data)
        as_un = _part10(_dataset(_uids() | private | {
            0x00091001: _element(0x00091001, "UN", b"98.41 ")}))
        assert not _assert_same(as_un)  # UN: declined, pydicom uses the dictionary's VR
        metadata = build_record(io.BytesIO(as_un), storage_key="k", size=0).metadata
        assert json.loads(metadata)["00091001"] == {"vr": "DS", "Value": [98.41]}
    finally:
        dictionary.configure({})


def test_generated_like_files_are_taken() -> None:
    """Files like the generated ones are read directly (the property above tests something)."""
    assert _assert_same(_part10(_dataset(_uids())))
    person = _element(0x00100010, "PN", "Ж^Иван=^=".encode())
    charset = _element(0x00080005, "CS", b"ISO_IR 192")
    data = _part10(_dataset(_uids() | {0x00100010: person, 0x00080005: charset}))
    assert _assert_same(data)
    assert '{"Alphabetic":"Ж^Иван","Ideographic":"^"}' in build_record(
        io.BytesIO(data), storage_key="k", size=0).metadata


@pytest.mark.parametrize("extra", [
    {0x00080005: _element(0x00080005, "CS", b"\\ISO 2022 IR 87")},  # code extensions
    {0x00091010: _element(0x00091010, "UN", b"abcd")},  # pydicom may look the VR up
    {0x00081030: _element(0x00081030, "LO", b"\x1b$B")},  # an escape sequence
    {0x00200013: _element(0x00200013, "IS", b"1_000")},  # int() reads it, pydicom warns
    {0x00280010: _element(0x00280010, "SS", b"\x00\x02")},  # Rows with another VR
], ids=["charsets", "UN", "ESC", "IS", "Rows"])
def test_declines_what_it_does_not_reproduce(extra: dict[int, bytes]) -> None:
    data = _part10(_dataset(_uids() | extra))
    with pytest.raises(rawjson.Unsupported):
        rawjson.read_file(data, 0, "BulkDataURI")
    slow = pydicom_record(io.BytesIO(data), storage_key="k", size=0)
    assert build_record(io.BytesIO(data), storage_key="k", size=0) == slow


def test_repeated_tag_is_declined() -> None:
    twice = _element(0x00081030, "LO", b"x") + _element(0x00081030, "LO", b"y")
    data = _part10(_dataset(_uids()) + twice)
    with pytest.raises(rawjson.Unsupported):
        rawjson.read_file(data, 0, "BulkDataURI")
