"""One STOW-RS part → :class:`InstanceRecord` (PS3.18 §10.5, Orthanc ``StowRs.cpp``).

The file is parsed once with ``defer_size``: values above 64 KB (PixelData
above all) stay on disk, so memory does not grow with the file. From that parse
come the level attributes QIDO answers from, the full DICOM JSON metadata
(BulkDataURIs relative to the server root, see ``dicomjson.rebase``), the
Orthanc ids and the byte ranges of every frame in the stored file, so that a
frame is later served with ranged reads and no decoding.

Frame ranges (PS3.5 §8.2 native, A.4 encapsulated):

* native: frame *i* is ``Rows*Columns*SamplesPerPixel*BitsAllocated/8`` bytes
  (two thirds of that for YBR_*_422) at ``i`` frame sizes after the value start;
  no frames when a frame is not a whole number of bytes (BitsAllocated 1) or the
  value is shorter than NumberOfFrames frames;
* encapsulated: fragments are located by reading item headers only; one frame
  takes every fragment, as many fragments as frames give one each, otherwise
  the Basic then the Extended Offset Table group them. Without offsets the
  frame boundaries could only be found by scanning for JPEG markers, which means
  reading the data: the instance then has no frame ranges;
* deflated transfer syntaxes: offsets in the file mean nothing, no frames.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, BinaryIO

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from app.dicom.dicomjson import (
    BINARY_VRS,
    PIXEL_DATA,
    UNDEFINED_LENGTH,
    dataset_to_json,
    json_dumps,
    without_binary,
)
from app.dicom.identifiers import is_valid_uid, orthanc_ids
from app.dicom.levels import level_of
from backends.base import DicomJson, InstanceRecord, Level

# FailureReason values of PS3.4 Annex B.2.3 / PS3.18 §10.5.3 (FailedSOPSequence).
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_MISMATCH = 0xA900
PROCESSING_FAILURE = 0x0110

DEFER_SIZE = "64 KB"
DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})
IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE = (
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
)
# Larger instance-level attributes (e.g. a per-frame functional groups sequence) stay
# in the metadata only, out of the index row QIDO reads.
MAX_INDEXED_ATTRIBUTE = 8 * 1024

_NATIVE = frozenset({IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE})
_REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID")
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD
_EXTENDED_OFFSETS = 0x7FE00001

Frames = tuple[tuple[tuple[int, int], ...], ...]


class IngestError(Exception):
    """A part that cannot be stored; ``reason`` is its FailureReason (0008,1197)."""

    def __init__(
        self,
        reason: int,
        message: str,
        *,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


def read_instance(f: BinaryIO) -> Dataset:
    """Parse a DICOM file (preamble and meta header optional), values > 64 KB deferred.

    Raises :class:`IngestError` (0xC000) for anything unparseable or without the
    four UIDs of PS3.18 §10.5.1 as valid UIDs.
    """
    start = f.tell()
    try:
        ds = pydicom.dcmread(f, defer_size=DEFER_SIZE, force=True)
        if transfer_syntax(ds) in DEFLATED:
            # pydicom inflates into memory; deferred reads would seek in the raw file.
            f.seek(start)
            ds = pydicom.dcmread(f, force=True)
    except Exception as exc:  # any parser failure is the client's file
        raise IngestError(CANNOT_UNDERSTAND, f"Cannot parse DICOM: {exc}") from exc
    _required_uids(ds)
    return ds


def _uid_value(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # an unconvertible value counts as absent
        return None
    return str(value) if isinstance(value, str) and value else None


def _required_uids(ds: Dataset) -> tuple[str, str, str, str]:
    values = [_uid_value(ds, keyword) for keyword in _REQUIRED_UIDS]
    bad = [k for k, v in zip(_REQUIRED_UIDS, values, strict=True) if not is_valid_uid(v)]
    if bad:
        raise IngestError(
            CANNOT_UNDERSTAND,
            f"Missing or invalid {', '.join(bad)}",
            sop_class_uid=values[2],
            sop_instance_uid=values[3],
        )
    study, series, sop_class, sop = (str(v) for v in values)
    return study, series, sop_class, sop


def transfer_syntax(ds: Dataset) -> str:
    """The file's transfer syntax; without one in the meta header, the one pydicom used.

    A native syntax contradicted by the data set itself (pydicom checks the first
    elements and switches) is replaced by the encoding actually found.
    """
    meta = getattr(ds, "file_meta", None)
    declared = str(meta.get("TransferSyntaxUID") or "").strip() if meta is not None else ""
    implicit, little = ds.original_encoding
    used = IMPLICIT_LE if implicit else EXPLICIT_LE if little is not False else EXPLICIT_BE
    if not declared:
        return used
    if declared in _NATIVE and implicit is not None and declared != used:
        return used
    return declared


def build_record(
    f: BinaryIO, *, storage_key: str, size: int, binary_mode: str = "BulkDataURI"
) -> InstanceRecord:
    """Everything the index keeps about the instance in ``f`` (positioned at its start)."""
    start = f.tell()
    ds = read_instance(f)
    study, series, sop_class, sop = _required_uids(ds)
    try:
        return _record(ds, f, start, storage_key, size, binary_mode, (study, series, sop))
    except Exception as exc:  # e.g. a truncated deferred value
        raise IngestError(
            CANNOT_UNDERSTAND, f"Cannot read DICOM: {exc}",
            sop_class_uid=sop_class, sop_instance_uid=sop,
        ) from exc


def _record(
    ds: Dataset,
    f: BinaryIO,
    start: int,
    storage_key: str,
    size: int,
    binary_mode: str,
    uids: tuple[str, str, str],
) -> InstanceRecord:
    study, series, sop = uids
    syntax = transfer_syntax(ds)
    frames = frame_ranges(ds, f, start, syntax)  # before PixelData gets converted
    prefix = f"studies/{study}/series/{series}/instances/{sop}"
    full = dataset_to_json(ds, bulk_prefix=prefix, binary_mode=binary_mode)
    levels = split_levels(full)
    patient_id = full.get("00100020", {}).get("Value", [""])[0]
    keys = orthanc_ids(str(patient_id or ""), study, series, sop)
    return InstanceRecord(
        patient_key=keys[0], study_key=keys[1], series_key=keys[2], instance_key=keys[3],
        study=levels[Level.STUDY], series=levels[Level.SERIES],
        instance=levels[Level.INSTANCE], metadata=json_dumps(full),
        transfer_syntax=syntax, storage_key=storage_key, size=size, frames=frames,
    )


def split_levels(full: DicomJson) -> dict[Level, DicomJson]:
    """Top-level non-binary attributes of the instance, by level (levels.py).

    Instance-level attributes longer than :data:`MAX_INDEXED_ATTRIBUTE` once
    serialised are left out (they remain in the metadata).
    """
    out: dict[Level, DicomJson] = {level: {} for level in Level}
    for key, entry in full.items():
        if entry.get("vr") in BINARY_VRS:
            continue
        if entry.get("vr") == "SQ" and "Value" in entry:
            entry = {"vr": "SQ", "Value": [without_binary(item) for item in entry["Value"]]}
        level = level_of(int(key, 16))
        if level is Level.INSTANCE and len(json_dumps(entry)) > MAX_INDEXED_ATTRIBUTE:
            continue
        out[level][key] = entry
    return out


# --- frames ---------------------------------------------------------------------------


def frame_ranges(ds: Dataset, f: BinaryIO, start: int, syntax: str) -> Frames:
    """Per frame, the (offset, length) ranges of its bytes in the file (offsets from ``start``)."""
    raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    tell = getattr(raw, "value_tell", None)
    count = _frame_count(ds)
    if not isinstance(raw, RawDataElement) or tell is None or count is None:
        return ()
    if syntax in DEFLATED:
        return ()
    end = f.seek(0, 2)
    if raw.length == UNDEFINED_LENGTH:
        frames = _encapsulated_frames(ds, f, tell, end, count)
    elif not UID(syntax).is_compressed:
        frames = _native_frames(ds, tell, raw.length, end, count)
    else:
        frames = ()
    return tuple(tuple((offset - start, length) for offset, length in frame) for frame in frames)


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    try:
        value: Any = ds.get(keyword)
        return default if value is None or value == "" else int(value)
    except Exception:  # unconvertible or not a single number
        return None


def _frame_count(ds: Dataset) -> int | None:
    """NumberOfFrames (absent → 1); None when unusable."""
    count = _int(ds, "NumberOfFrames", 1)
    return count if count is not None and count > 0 else None


def _native_frames(
    ds: Dataset, tell: int, length: int, end: int, count: int
) -> tuple[tuple[tuple[int, int], ...], ...]:
    """PS3.5 §8.2: frames are contiguous, each of a fixed bit count."""
    dims = [_int(ds, k) for k in ("Rows", "Columns", "BitsAllocated")]
    samples = _int(ds, "SamplesPerPixel", 1)
    if None in dims or not samples:
        return ()
    rows, columns, bits = (int(d or 0) for d in dims)
    frame_bits = rows * columns * samples * bits
    photometric = str(ds.get("PhotometricInterpretation", "") or "")
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
        f.seek(position)


def _encapsulated_frames(
    ds: Dataset, f: BinaryIO, tell: int, end: int, count: int
) -> Sequence[Sequence[tuple[int, int]]]:
    items = _items(f, tell, end)
    if not items or len(items) < 2:
        return ()
    table, fragments = items[0], items[1:]
    if count == 1:
        return (tuple(fragments),)
    if len(fragments) == count:
        return tuple((fragment,) for fragment in fragments)
    offsets = _basic_offsets(f, table, count) or _extended_offsets(ds, count)
    return _group(fragments, offsets) if offsets else ()


def _basic_offsets(f: BinaryIO, table: tuple[int, int], count: int) -> list[int] | None:
    """Basic Offset Table: one UL per frame, from the first fragment's item tag."""
    position, length = table
    if length != 4 * count:
        return None
    f.seek(position)
    return list(struct.unpack(f"<{count}I", f.read(length)))


def _extended_offsets(ds: Dataset, count: int) -> list[int] | None:
    """Extended Offset Table (7FE0,0001): one UV per frame (PS3.3 C.7.6.3.1.8)."""
    element = ds.get(_EXTENDED_OFFSETS)
    value = element.value if element is not None else None
    if not isinstance(value, bytes) or len(value) != 8 * count:
        return None
    little = ds.original_encoding[1] is not False
    return list(struct.unpack(f"{'<' if little else '>'}{count}Q", value))


def _group(
    fragments: list[tuple[int, int]], offsets: list[int]
) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Fragments grouped by frame start offsets; () unless each offset starts a fragment."""
    origin = fragments[0][0] - 8  # first byte of the first fragment's item tag
    starts = {position - 8 - origin: i for i, (position, _) in enumerate(fragments)}
    if offsets[0] != 0 or any(o not in starts for o in offsets):
        return ()
    bounds = [starts[o] for o in offsets] + [len(fragments)]
    if any(a >= b for a, b in zip(bounds, bounds[1:], strict=False)):
        return ()
    return tuple(tuple(fragments[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
