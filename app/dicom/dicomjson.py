"""Dataset → DICOM JSON (PS3.18 Annex F) and Native DICOM Model XML (PS3.19 Annex A).

The dataset is walked here rather than with ``Dataset.to_json_dict`` so that the
nesting path of every element is known (it makes the BulkDataURI) and so that
binary values are never loaded to be described: a file read with
``dcmread(defer_size=...)`` keeps its PixelData on disk. pydicom still renders
the leaf values (``DataElement.to_json_dict``): PN groups, IS/DS as numbers,
AT as hex, strings decoded with the dataset's SpecificCharacterSet (nested
sequences inherit it, PS3.5 §6.1.2.5.1).

Binary VRs (OB, OD, OF, OL, OV, OW and UN) follow Orthanc's ``OtherBinaryMode``:

* ``BulkDataURI``: ``{bulk_prefix}/bulk[/{seq}/{item}]*/{tag}`` (tags lowercase,
  items 1-based); ``bulk_prefix=None`` drops the element (QIDO, STOW answers);
* ``InlineBinary``: base64 of the value in little endian (PS3.18 §8.7.3.3);
* ``ArrayOfValues``: OD/OF/OL/OV as a ``Value`` array of numbers (Orthanc's old
  output); OB and OW, which have no number form, fall back to ``InlineBinary``;
* ``Ignore``: dropped.

UN and the top-level pixel data elements always use a BulkDataURI when a prefix
is given, else are dropped. Empty binary values give ``{"vr": ..}`` alone,
except PixelData, which always gets its URI (as Orthanc, issue 195).

Values pydicom cannot convert never raise. A value pydicom read but cannot
render (an IS of ``"1A"``) keeps its numbers where they parse and its text
otherwise; an element pydicom cannot convert at all gives its raw text split on
backslashes, or, if binary or a broken sequence, its raw bytes as UN. An
invalid VR (``"XX"``) becomes UN.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from pydicom.charset import decode_bytes
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks
from pydicom.valuerep import AMBIGUOUS_VR, VR

from backends.base import DicomJson

BINARY_VRS: frozenset[str] = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
BINARY_MODES: tuple[str, ...] = ("BulkDataURI", "InlineBinary", "ArrayOfValues", "Ignore")
PIXEL_DATA = 0x7FE00010
# Float / Double Float / Pixel Data: never inlined, whatever the binary mode.
PIXEL_TAGS: frozenset[int] = frozenset({0x7FE00008, 0x7FE00009, PIXEL_DATA})
UNDEFINED_LENGTH = 0xFFFFFFFF
BULK_KEY = '"BulkDataURI":"'  # the literal json_dumps writes before every URI

_WORD_SIZE = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_NUMBER_FORMAT = {"OF": "f", "OD": "d", "OL": "I", "OV": "Q"}
_FLOAT_VRS = frozenset({"DS", "FL", "FD"})
_KNOWN_VRS = frozenset(str(vr.value) for vr in VR) - AMBIGUOUS_VR


class TooManyElements(Exception):
    """An instance with more data elements and sequence items than ingest takes
    (``Limits.MaximumInstanceElements``); raised while parsing, never swallowed here."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit:,} data elements and sequence items")
        self.limit = limit


@dataclass(frozen=True)
class JsonOptions:
    """How binary values are written: ``prefix`` of BulkDataURIs (None: dropped), mode."""

    prefix: str | None
    mode: str


def dataset_to_json(
    ds: Dataset,
    *,
    bulk_prefix: str | None,
    binary_mode: str = "BulkDataURI",
    skip: Container[int] = frozenset(),
) -> DicomJson:
    """DICOM JSON of ``ds`` (PS3.18 F.2); ``skip``: top-level tags to leave out.

    Group 0002 and group lengths (gggg,0000) are never included (PS3.18 F.2.1).
    ``bulk_prefix`` has no trailing slash, e.g. ``studies/1/series/2/instances/3``.
    """
    if binary_mode not in BINARY_MODES:
        raise ValueError(f"unknown binary mode {binary_mode!r}")
    return _dataset(ds, "/bulk", JsonOptions(bulk_prefix, binary_mode), skip)


def _dataset(
    ds: Dataset, path: str, opts: JsonOptions, skip: Container[int] = ()
) -> DicomJson:
    out: DicomJson = {}
    top = path == "/bulk"
    for key in sorted(ds.keys()):
        tag = int(key)
        if tag in skip or tag >> 16 == 0x0002 or tag & 0xFFFF == 0:
            continue
        entry = _element(ds, tag, path, opts, top)
        if entry is not None:
            out[f"{tag:08X}"] = entry
    return out


def _element(
    ds: Dataset, tag: int, path: str, opts: JsonOptions, top: bool
) -> dict[str, Any] | None:
    raw = ds.get_item(tag, keep_deferred=True)
    if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
        # Deferred (not read): decide from the header alone, load only if not binary.
        vr = _raw_vr(ds, raw)
        if vr in BINARY_VRS:
            return _binary(ds, tag, vr, raw, path, opts, top)
    try:
        elem = ds[tag]  # may parse a sequence: ingest counts its items and elements
    except TooManyElements:
        raise
    except Exception:  # unreadable content: keep its raw bytes or text
        return _raw_fallback(ds, tag, raw, path, opts, top)
    vr = _resolved_vr(elem)
    if vr in BINARY_VRS:
        return _binary(ds, tag, vr, elem, path, opts, top)
    if vr == "SQ":
        return _sequence(elem, f"{path}/{tag:08x}", opts)
    return _leaf(elem, vr)


def _raw_vr(ds: Dataset, raw: RawDataElement) -> str:
    """VR of an unconverted element, as pydicom would give it, without reading the value."""
    data: dict[str, Any] = {}
    try:
        hooks.raw_element_vr(raw, data, encoding=None, ds=ds)
    except Exception:  # unknown tag in implicit VR under pydicom's RAISE validation mode
        return "UN"
    vr = str(data.get("VR") or "UN")
    if vr == "OB or OW":  # PS3.5 A.1 (implicit: OW), A.4 (encapsulated: OB)
        if raw.length == UNDEFINED_LENGTH:
            return "OB"
        if raw.is_implicit_VR:
            return "OW"
        bits = ds.get("BitsAllocated")
        return "OW" if isinstance(bits, int) and bits > 8 else "OB"
    if vr in AMBIGUOUS_VR:
        # A value too large to be kept in memory is the OW alternative.
        return "OW" if vr.endswith("OW") else vr.split(" ", 1)[0]
    return vr if vr in _KNOWN_VRS else "UN"


def _resolved_vr(elem: DataElement) -> str:
    """The element's VR: ambiguities pydicom could not settle decided, invalid VRs → UN."""
    vr = str(elem.VR)
    if vr in AMBIGUOUS_VR:
        return "OW" if isinstance(elem.value, bytes | bytearray) else vr.split(" ", 1)[0]
    return vr if vr in _KNOWN_VRS else "UN"


def _value_bytes(source: DataElement | RawDataElement) -> bytes:
    """Value of a binary element; text kept by pydicom under an invalid VR is re-encoded."""
    value = source.value
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return value.encode("latin-1", "replace") if isinstance(value, str) else b""


def _binary(
    ds: Dataset,
    tag: int,
    vr: str,
    source: DataElement | RawDataElement,
    path: str,
    opts: JsonOptions,
    top: bool,
) -> dict[str, Any] | None:
    """A binary element; ``source`` is its converted or raw (possibly deferred) form."""
    deferred = isinstance(source, RawDataElement) and source.value is None
    length = source.length if deferred else len(_value_bytes(source))

    def read() -> bytes:
        return _little_endian(ds, vr, _value_bytes(ds[tag] if deferred else source))

    return binary_entry(tag, vr, length, read, path, opts, top)


def binary_entry(
    tag: int,
    vr: str,
    length: int,
    read: Callable[[], bytes],
    path: str,
    opts: JsonOptions,
    top: bool,
) -> dict[str, Any] | None:
    """DICOM JSON of a binary element of ``length`` bytes; ``read`` gives its value in
    little endian and is only called for InlineBinary / ArrayOfValues (shared with
    :mod:`app.dicom.rawjson`)."""
    is_pixels = top and tag in PIXEL_TAGS
    mode = "BulkDataURI" if vr == "UN" or is_pixels else opts.mode
    if mode == "Ignore" or (mode == "BulkDataURI" and opts.prefix is None):
        return None
    if length == 0 and not (top and tag == PIXEL_DATA):
        return {"vr": vr}
    if mode == "BulkDataURI":
        return {"vr": vr, "BulkDataURI": f"{opts.prefix}{path}/{tag:08x}"}
    try:
        value = read()
    except Exception:  # a deferred value that cannot be read back
        return {"vr": vr}
    if mode == "ArrayOfValues" and vr in _NUMBER_FORMAT:
        return {"vr": vr, "Value": _numbers(vr, value)}
    return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}


def _little_endian(ds: Dataset, vr: str, value: bytes) -> bytes:
    """Binary values leave in little endian (PS3.18 §8.7.3.3), whatever the file used."""
    size = _WORD_SIZE.get(vr, 1)
    little = ds.original_encoding[1]
    if size == 1 or little is None or little:
        return value
    usable = len(value) - len(value) % size
    words = struct.unpack(f">{usable // size}{_size_code(size)}", value[:usable])
    return struct.pack(f"<{len(words)}{_size_code(size)}", *words) + value[usable:]


def _size_code(size: int) -> str:
    return {2: "H", 4: "I", 8: "Q"}[size]


def _numbers(vr: str, value: bytes) -> list[Any]:
    code = _NUMBER_FORMAT[vr]
    count = len(value) // struct.calcsize(code)
    numbers = struct.unpack(f"<{count}{code}", value[: count * struct.calcsize(code)])
    return [finite(n) for n in numbers]


def finite(n: Any) -> Any:
    """JSON has no NaN or infinity (RFC 8259 §6): such numbers become null."""
    return None if isinstance(n, float) and not math.isfinite(n) else n


def _sequence(elem: DataElement, path: str, opts: JsonOptions) -> dict[str, Any]:
    """SQ (PS3.18 F.2.3): items are nested objects; an empty sequence has no Value."""
    items = list(elem.value or ())
    if not items:
        return {"vr": "SQ"}
    values = [_dataset(item, f"{path}/{i}", opts) for i, item in enumerate(items, 1)]
    return {"vr": "SQ", "Value": values}


def _leaf(elem: DataElement, vr: str) -> dict[str, Any]:
    if vr != elem.VR:
        elem = DataElement(elem.tag, vr, elem.value)
    try:
        out = elem.to_json_dict(None, 0)
    except Exception:  # e.g. IS "1A": pydicom keeps str, JSON wants int
        return _text_fallback(vr, elem.value)
    values = out.get("Value")
    if values and vr in _FLOAT_VRS:
        out["Value"] = values = [finite(v) for v in values]
    if values and len(values) > 1 and vr != "PN":
        # PS3.18 F.2.5: an empty value among several is null ("\ISO 2022 IR 87").
        out["Value"] = [None if v == "" else v for v in values]
    return out


def _text_fallback(vr: str, value: Any) -> dict[str, Any]:
    """Values pydicom converted but cannot render: numbers where they parse, else text."""
    if value is None or value == "":
        return {"vr": vr}
    values = [value] if isinstance(value, str | bytes) else list(value)
    return {"vr": vr, "Value": [_lenient(vr, v) for v in values]}


def _lenient(vr: str, value: Any) -> Any:
    text = str(value).strip()
    if text == "":
        return None
    if vr in ("IS", "DS"):
        try:
            number = float(text)
        except ValueError:
            return text  # e.g. IS "1A": kept as the string it is
        if math.isfinite(number):
            return int(number) if vr == "IS" and number.is_integer() else number
    return text


def _raw_fallback(
    ds: Dataset, tag: int, raw: Any, path: str, opts: JsonOptions, top: bool
) -> dict[str, Any] | None:
    """An element pydicom could not convert: raw bytes if binary (or a broken SQ), else text."""
    vr = _raw_vr(ds, raw) if isinstance(raw, RawDataElement) else "UN"
    if vr in BINARY_VRS or vr == "SQ":
        return _binary(ds, tag, "UN" if vr == "SQ" else vr, raw, path, opts, top)
    value = raw.value if isinstance(raw.value, bytes) else b""
    try:
        text = decode_bytes(value, ds.original_character_set or ["iso8859"], set())
    except Exception:  # unknown character set
        text = value.decode("latin-1")
    texts = [t.rstrip(" \x00") for t in text.split("\\")]
    return {"vr": vr, "Value": texts} if any(texts) else {"vr": vr}


def without_binary(obj: DicomJson) -> DicomJson:
    """A copy of DICOM JSON with every binary element removed, at every depth."""
    out: DicomJson = {}
    for key, entry in obj.items():
        if entry.get("vr") in BINARY_VRS:
            continue
        if entry.get("vr") == "SQ" and "Value" in entry:
            entry = {"vr": "SQ", "Value": [without_binary(item) for item in entry["Value"]]}
        out[key] = entry
    return out


# --- text -----------------------------------------------------------------------------


# One encoder for every call (json.dumps would build one each time; it keeps no state).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def json_dumps(obj: Any) -> str:
    """Compact JSON, non-ASCII kept: the one serialisation of stored metadata.

    With these separators every BulkDataURI is written ``"BulkDataURI":"<uri>"``,
    which :func:`rebase` relies on.
    """
    return _ENCODER.encode(obj)


def rebase(text: str, base: str) -> str:
    """Make the relative BulkDataURIs of stored metadata absolute (``base`` ends with /).

    A DICOM string cannot produce the literal replaced here: its quotes come out
    escaped (``\\"``), so only real BulkDataURI keys match.
    """
    return text.replace(BULK_KEY, BULK_KEY + base)


# --- XML (PS3.19 A.1, Native DICOM Model) ---------------------------------------------

NATIVE_DICOM_NS = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
_XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_PN_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
# Characters XML 1.0 cannot carry (§2.2), e.g. NUL padding left in a bad value.
_XML_INVALID = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def json_to_xml(obj: DicomJson) -> bytes:
    """PS3.19 Native DICOM Model document of one DICOM JSON object, UTF-8."""
    root = ET.Element("NativeDicomModel", {"xmlns": NATIVE_DICOM_NS, _XML_SPACE: "preserve"})
    _xml_attributes(root, obj)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _xml_attributes(parent: ET.Element, obj: DicomJson) -> None:
    for key in sorted(obj):
        entry = obj[key]
        attrib = {"tag": key.upper(), "vr": str(entry.get("vr", "UN"))}
        tag = int(key, 16)
        keyword = keyword_for_tag(tag) if not (tag >> 16) % 2 else ""
        if keyword:
            attrib["keyword"] = keyword
        creator = _private_creator(obj, tag)
        if creator:
            attrib["privateCreator"] = _xml_text(creator)
        _xml_value(ET.SubElement(parent, "DicomAttribute", attrib), entry)


def _private_creator(obj: DicomJson, tag: int) -> str | None:
    """PS3.5 §7.8.1: element gggg,xxyy is reserved by the creator in gggg,00xx."""
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 0 or element < 0x1000:
        return None
    creator = obj.get(f"{group:04X}{element >> 8:04X}", {}).get("Value")
    return str(creator[0]) if creator else None


def _xml_value(node: ET.Element, entry: dict[str, Any]) -> None:
    vr = entry.get("vr")
    if "BulkDataURI" in entry:
        ET.SubElement(node, "BulkData", {"uri": _xml_text(entry["BulkDataURI"])})
    elif "InlineBinary" in entry:
        ET.SubElement(node, "InlineBinary").text = entry["InlineBinary"]
    for number, value in enumerate(entry.get("Value", ()), 1):
        if vr == "SQ":
            item = ET.SubElement(node, "Item", {"number": str(number)})
            _xml_attributes(item, value or {})
        elif vr == "PN":
            _xml_person_name(node, number, value or {})
        else:
            child = ET.SubElement(node, "Value", {"number": str(number)})
            if value is not None:
                child.text = _xml_text(value)


def _xml_person_name(node: ET.Element, number: int, value: dict[str, str]) -> None:
    name = ET.SubElement(node, "PersonName", {"number": str(number)})
    for group in _PN_GROUPS:
        if not value.get(group):
            continue
        group_node = ET.SubElement(name, group)
        for component, text in zip(_PN_COMPONENTS, value[group].split("^"), strict=False):
            if text:
                ET.SubElement(group_node, component).text = _xml_text(text)


def _xml_text(value: Any) -> str:
    return _XML_INVALID.sub("", value if isinstance(value, str) else str(value))
