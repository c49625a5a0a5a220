"""DICOM attributes as Orthanc's REST API shows them (no Flask).

Three JSON formats of a data set (Orthanc's ``DicomToJsonFormat``, ``FromDcmtkBridge``):

* **Full** (``/instances/{id}/tags``): ``{"0010,0010": {"Name": "PatientName",
  "Type": "String", "Value": "DOE^JOHN"}}``; a sequence is ``{"Name", "Type": "Sequence",
  "Value": [item, ...]}``; a binary value is ``"Type": "Null"`` (Orthanc's default flags
  convert binary to null), a text longer than 256 bytes in UTF-8 ``"Type": "TooLong"``,
  both with ``"Value": null``. Private data elements carry ``"PrivateCreator"``.
* **Human** (``?simplify``, ``/simplified-tags``): ``{"PatientName": "DOE^JOHN"}``,
  sequences as arrays of items, null for binary and too long values.
* **Short** (``?short``): ``{"0010,0010": "DOE^JOHN"}``, the same values.

Values are the text of the file: multiple values joined with ``\\``, numbers of binary VRs
(US, FL, ...) written as decimal text, AT as ``gggg,eeee``.

``MainDicomTags`` of ``/patients|studies|series|instances/{id}`` come from the Index (the
level's DICOM JSON stored at ingest), not from a file: :func:`main_tags` turns DICOM JSON
back into the same text values (DS written from their numbers: ``1.0`` becomes ``1``).

``/instances/{id}/content/...`` (:func:`content`) navigates a data set read with large
values deferred: tags as ``gggg-eeee``, sequence items 0-based (as Orthanc).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom import datadict
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from app.dicom.query import lookup_attribute
from app.errors import BadRequest, NotFound
from backends.base import DicomJson, ResourceType

MAX_TAG_LENGTH = 256  # ORTHANC_MAXIMUM_TAG_LENGTH: longer texts are "TooLong"
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW",
                        "US or OW", "US or SS or OW"})
_FLOAT_DIGITS = {"FL": ".9g", "FD": ".17g"}  # boost::lexical_cast precision
UNKNOWN_NAME = "Unknown Tag & Data"  # DCMTK's name for a tag outside its dictionary
PIXEL_DATA = 0x7FE00010
ITEM = 0xFFFEE000

# Orthanc's main DICOM tags per level (DicomMap.cpp, database schema 6), by keyword.
MAIN_TAGS: dict[ResourceType, tuple[str, ...]] = {
    ResourceType.PATIENT: ("PatientName", "PatientBirthDate", "PatientSex",
                           "OtherPatientIDs", "PatientID"),
    ResourceType.STUDY: ("StudyDate", "StudyTime", "StudyID", "StudyDescription",
                         "AccessionNumber", "StudyInstanceUID",
                         "RequestedProcedureDescription", "InstitutionName",
                         "RequestingPhysician", "ReferringPhysicianName"),
    ResourceType.SERIES: ("SeriesDate", "SeriesTime", "Modality", "Manufacturer",
                          "StationName", "SeriesDescription", "BodyPartExamined",
                          "SequenceName", "ProtocolName", "SeriesNumber",
                          "CardiacNumberOfImages", "ImagesInAcquisition",
                          "NumberOfTemporalPositions", "NumberOfSlices",
                          "NumberOfTimeSlices", "SeriesInstanceUID",
                          "ImageOrientationPatient", "SeriesType", "OperatorsName",
                          "PerformedProcedureStepDescription",
                          "AcquisitionDeviceProcessingDescription", "ContrastBolusAgent"),
    ResourceType.INSTANCE: ("InstanceCreationDate", "InstanceCreationTime",
                            "AcquisitionNumber", "ImageIndex", "InstanceNumber",
                            "NumberOfFrames", "TemporalPositionIdentifier", "SOPInstanceUID",
                            "ImagePositionPatient", "ImageComments",
                            "ImageOrientationPatient"),
}

FORMATS = ("Full", "Short", "Human")


def tag_key(tag: int) -> str:
    """``gggg,eeee`` (lowercase), Orthanc's ``DicomTag::Format``."""
    return f"{tag >> 16:04x},{tag & 0xFFFF:04x}"


def tag_name(tag: int) -> str:
    """DICOM keyword of a tag (Orthanc's Dictionary names included), else DCMTK's
    "Unknown Tag & Data"; private creator elements are "PrivateCreator"."""
    if tag >> 16 & 1 and 0x0010 <= tag & 0xFFFF <= 0x00FF:
        return "PrivateCreator"
    return datadict.keyword_for_tag(tag) or UNKNOWN_NAME


# --------------------------------------------------------------------------- #
# MainDicomTags from the Index's DICOM JSON
# --------------------------------------------------------------------------- #

def main_tags_tags(type_: ResourceType, extra: tuple[int, ...] = ()) -> list[int]:
    """The tags of a level's MainDicomTags, Orthanc's then ExtraMainDicomTags'."""
    tags = [int(datadict.tag_for_keyword(k) or 0) for k in MAIN_TAGS[type_]]
    return tags + [t for t in extra if t not in tags]


def main_tags(attrs: DicomJson, tags: list[int], fmt: str = "Human",
              fallback: DicomJson | None = None) -> dict[str, Any]:
    """MainDicomTags of a resource from its DICOM JSON, in ``fmt`` (Human by default,
    ``?full`` / ``?short`` of Orthanc). Absent attributes are left out, as Orthanc does;
    ``fallback`` supplies those the level does not hold (a series' ImageOrientationPatient
    is instance level here, Orthanc takes it from the first instance)."""
    out: dict[str, Any] = {}
    for tag in sorted(tags):
        key = f"{tag:08X}"
        entry = attrs.get(key)
        if entry is None and fallback is not None:
            entry = fallback.get(key)
        if entry is None or entry.get("vr") == "SQ":
            continue
        value = json_text(entry)
        if fmt == "Human":
            out[tag_name(tag)] = value
        elif fmt == "Short":
            out[tag_key(tag)] = value
        else:
            out[tag_key(tag)] = {"Name": tag_name(tag), "Type": "String", "Value": value}
    return dict(sorted(out.items()))  # jsoncpp writes keys sorted


def json_text(entry: dict[str, Any]) -> str:
    """The DICOM text of one DICOM JSON attribute (PS3.18 F.2): values joined with ``\\``,
    person names as ``Alphabetic=Ideographic=Phonetic``, numbers as decimal text."""
    vr = entry.get("vr", "")
    return "\\".join(_json_value(vr, v) for v in entry.get("Value") or [])


def _json_value(vr: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):  # PN (PS3.18 F.2.2)
        groups = [value.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
        return "=".join(groups).rstrip("=")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if vr == "AT" and isinstance(value, str) and len(value) == 8:
        return f"{value[:4]},{value[4:]}".lower()
    return str(value)


# --------------------------------------------------------------------------- #
# /instances/{id}/tags from a DICOM file
# --------------------------------------------------------------------------- #

@dataclass(frozen=True)
class Leaf:
    """One element as Orthanc types it: String (with its text), Null or TooLong."""

    type: str
    value: str | None


def dataset_tags(ds: Dataset, fmt: str = "Full") -> dict[str, Any]:
    """A data set (read with ``defer_size``; deferred values are never loaded) in one of
    Orthanc's formats. Group lengths and the file meta information are left out."""
    out: dict[str, Any] = {}
    for tag in sorted(int(t) for t in ds.keys()):
        if tag & 0xFFFF == 0 or tag >> 16 == 0x0002:
            continue
        key = tag_name(tag) if fmt == "Human" else tag_key(tag)
        elem = _element(ds, tag)
        if isinstance(elem, DataElement) and elem.VR == "SQ":
            items = [dataset_tags(item, fmt) for item in elem.value or ()]
            out[key] = items if fmt != "Full" else {
                "Name": tag_name(tag), "Type": "Sequence", "Value": items}
            continue
        leaf = leaf_of(elem)
        if fmt != "Full":
            out[key] = leaf.value
            continue
        node: dict[str, Any] = {"Name": tag_name(tag)}
        creator = getattr(elem, "private_creator", None)
        if tag >> 16 & 1 and creator:
            node["PrivateCreator"] = creator
        node["Type"], node["Value"] = leaf.type, leaf.value
        out[key] = node
    return dict(sorted(out.items()))  # jsoncpp writes keys sorted


def _element(ds: Dataset, tag: int) -> DataElement | RawDataElement:
    """The element, converted unless its value was deferred (then its raw header only:
    a binary or too long value Orthanc shows as null). A deferred sequence is read (the
    file must still be open)."""
    raw = ds.get_item(tag, keep_deferred=True)
    if _deferred(raw) and not _is_sequence(raw):
        return raw
    try:
        return ds[tag]
    except Exception:  # an element pydicom cannot convert: typed from its raw bytes
        return ds.get_item(tag, keep_deferred=True)


def leaf_of(elem: DataElement | RawDataElement) -> Leaf:
    """How Orthanc shows one non-sequence element."""
    vr = str(elem.VR or _dictionary_vr(int(elem.tag)))
    if isinstance(elem, RawDataElement):
        if elem.value is None:  # deferred: longer than any text Orthanc shows
            return Leaf("Null" if vr in BINARY_VRS else "TooLong", None)
        if vr in BINARY_VRS or vr == "SQ":
            return Leaf("Null", None)
        text = bytes(elem.value).decode("latin-1").rstrip(" \x00")
        return _text(text)
    if vr in BINARY_VRS:
        return Leaf("Null", None)
    return _text(_element_text(elem.value, vr))


def _text(text: str) -> Leaf:
    if len(text.encode("utf-8")) > MAX_TAG_LENGTH:
        return Leaf("TooLong", None)
    return Leaf("String", text)


def _element_text(value: Any, vr: str) -> str:
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return "\\".join(_value_text(v, vr) for v in values)


def _value_text(value: Any, vr: str) -> str:
    if value is None:
        return ""
    if vr == "AT":
        return tag_key(int(BaseTag(value)))
    if vr in _FLOAT_DIGITS and isinstance(value, float):
        return format(value, _FLOAT_DIGITS[vr])
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)  # DS/IS keep the file's text, PN its formatted groups


def _deferred(elem: DataElement | RawDataElement) -> bool:
    return isinstance(elem, RawDataElement) and elem.value is None and bool(elem.length)


def _is_sequence(elem: DataElement | RawDataElement) -> bool:
    if elem.VR in (None, "UN"):
        return _dictionary_vr(int(elem.tag)) == "SQ"
    return elem.VR == "SQ"


def _dictionary_vr(tag: int) -> str:
    try:
        return str(datadict.dictionary_VR(tag))
    except KeyError:
        return "UN"


# --------------------------------------------------------------------------- #
# /instances/{id}/content/...
# --------------------------------------------------------------------------- #

_HEX_TAG = re.compile(r"^([0-9A-Fa-f]{4})[-,]?([0-9A-Fa-f]{4})$")
_INDEX = re.compile(r"^[0-9]{1,9}$")


@dataclass(frozen=True)
class Content:
    """What a content path designates: a JSON list (the tags of a data set, the items of
    a sequence, the fragments of the pixel data), or a value's bytes given either in
    ``data`` or as the byte range ``start``/``length`` of the file (a deferred value)."""

    listing: list[str] | None = None
    data: bytes | None = None
    start: int = 0
    length: int = 0


def parse_tag(text: str) -> int:
    """A content path tag: ``gggg-eeee``, ``ggggeeee``, ``gggg,eeee`` or a keyword."""
    match = _HEX_TAG.match(text)
    if match:
        return int(match.group(1) + match.group(2), 16)
    attribute = lookup_attribute(text)
    if attribute is None:
        raise BadRequest(f"Unknown DICOM tag: {text[:80]!r}")
    return attribute.tag


def content(ds: Dataset, path: list[str]) -> Content:
    """Walk ``tag/index/tag/...``: an even path ends on a data set (its tags), an odd one
    on an element (a sequence: its item indexes; else its value). ``7fe0-0010[/n]``
    lists and reads the pixel data blocks (fragments, offset table first, or the one
    native block)."""
    if path and parse_tag(path[0]) == PIXEL_DATA and len(path) <= 2:
        return _pixel_data(ds, path[1] if len(path) == 2 else None)
    for i in range(0, len(path) - 1, 2):
        ds = _item(ds, parse_tag(path[i]), path[i + 1])
    if len(path) % 2 == 0:
        return Content(listing=[f"{t >> 16:04x}-{t & 0xFFFF:04x}"
                                for t in sorted(int(k) for k in ds.keys())])
    tag = parse_tag(path[-1])
    if tag not in ds:
        raise NotFound(f"No DICOM tag {tag_key(tag)} at this path")
    elem = ds.get_item(tag, keep_deferred=True)
    if _is_sequence(elem):
        items = ds[tag].value or ()  # parses it (reads it if deferred: the file is open)
        return Content(listing=[str(i) for i in range(len(items))])
    if isinstance(elem, RawDataElement):
        if elem.value is None and elem.length:
            return Content(start=elem.value_tell, length=elem.length)
        return Content(data=bytes(elem.value or b""))
    return Content(data=_reencoded(elem.value))  # converted while reading (charset)


def _reencoded(value: Any) -> bytes:
    """The bytes of a value pydicom already converted (only text elements read early,
    such as Specific Character Set): its text, padded to an even length (PS3.5 §6.2)."""
    if isinstance(value, bytes):
        return value
    data = _element_text(value, "").encode("latin-1", errors="replace")
    return data + b" " if len(data) % 2 else data


def _item(ds: Dataset, tag: int, index: str) -> Dataset:
    if not _INDEX.match(index):
        raise NotFound(f"Not a sequence item index: {index[:20]!r}")
    elem = ds.get(tag) if tag in ds else None
    if elem is None or elem.VR != "SQ" or int(index) >= len(elem.value or ()):
        raise NotFound(f"No item {index} in the sequence {tag_key(tag)}")
    item: Dataset = elem.value[int(index)]
    return item


def _pixel_data(ds: Dataset, block: str | None) -> Content:
    if PIXEL_DATA not in ds:
        raise NotFound("The instance has no pixel data")
    elem = ds.get_item(PIXEL_DATA, keep_deferred=True)
    encapsulated = (getattr(elem, "length", 0) == 0xFFFFFFFF
                    or getattr(elem, "is_undefined_length", False))
    if not encapsulated:  # native: one block, the whole value
        if block is None:
            return Content(listing=["0"])
        if block != "0":
            raise NotFound(f"No pixel data block {block[:20]!r}")
        if _deferred(elem):
            return Content(start=elem.value_tell, length=elem.length)  # type: ignore[union-attr]
        return Content(data=bytes(elem.value or b""))
    # Encapsulated values are read whole (the file is open), as Orthanc does.
    fragments = list(_fragments(bytes(ds[PIXEL_DATA].value or b"")))
    if block is None:
        return Content(listing=[str(i) for i in range(len(fragments))])
    if not _INDEX.match(block) or int(block) >= len(fragments):
        raise NotFound(f"No pixel data block {block[:20]!r}")
    return Content(data=fragments[int(block)])


def _fragments(value: bytes) -> Iterator[bytes]:
    """Items of encapsulated pixel data (PS3.5 A.4), the Basic Offset Table first."""
    pos = 0
    while pos + 8 <= len(value):
        tag = int.from_bytes(value[pos:pos + 2], "little") << 16 | int.from_bytes(
            value[pos + 2:pos + 4], "little")
        length = int.from_bytes(value[pos + 4:pos + 8], "little")
        if tag != ITEM:
            return  # sequence delimiter
        yield value[pos + 8:pos + 8 + length]
        pos += 8 + length
