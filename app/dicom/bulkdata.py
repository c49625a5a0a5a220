"""WADO-RS Retrieve Bulk Data (PS3.18 §10.4.1.1.5, reference §4.6).

A BulkDataURI path is ``tag`` or ``seqtag/item/.../tag`` (items 1-based, tags as
8 hex digits). The answer is one ``application/octet-stream`` part holding the
element's value exactly as stored, so that a DICOM JSON reader resolving the
BulkDataURI gets the bytes pydicom reads from the file. Large values are read
with ranged reads, never loaded whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from app.errors import BadRequest, NotFound
from backends.base import StorageArea, StoredInstance

DEFER = 1024
_TAG = re.compile(r"[0-9A-Fa-f]{4},?[0-9A-Fa-f]{4}")
_INDEX = re.compile(r"[0-9]{1,9}")
CHUNK = 1 << 20
PartStream = Iterator[tuple[dict[str, str], Iterable[bytes]]]


def parse_path(path: str) -> list[int]:
    """``60031010/1/60031011`` → [tag, index, tag]; 400 on a malformed path."""
    items = [p for p in path.strip("/").split("/") if p]
    if not items or len(items) % 2 == 0:
        raise BadRequest(f"Invalid bulk data path {path!r}: expected tag(/item/tag)*")
    out = []
    for i, item in enumerate(items):
        # A tag is 8 hex digits (GGGGEEEE or GGGG,EEEE), an item index decimal digits: int()
        # alone would take "-1", "0x10" or a 100-digit tag, which pydicom then refuses.
        pattern = _TAG if i % 2 == 0 else _INDEX
        if not pattern.fullmatch(item):
            raise BadRequest(f"Invalid bulk data path component {item[:80]!r}")
        out.append(int(item.replace(",", ""), 16) if i % 2 == 0 else int(item))
        if i % 2 == 1 and out[-1] < 1:
            raise BadRequest("Bulk data item indexes start at 1")
    return out


def bulk_parts(storage: StorageArea, inst: StoredInstance, path: str) -> PartStream:
    """Locate the element (404 if absent) before streaming its value."""
    steps = parse_path(path)
    with storage.open(inst.storage_key) as f:
        ds = pydicom.dcmread(f, defer_size=DEFER, force=True)
        raw = _find(ds, steps, path)
        if raw.value is not None:
            data = bytes(raw.value) if not isinstance(raw.value, bytes) else raw.value
            return iter([({"Content-Type": "application/octet-stream",
                           "Content-Length": str(len(data))}, [data])])
    start, length = raw.value_tell, raw.length
    head = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
    return iter([(head, read_chunks(storage, inst.storage_key, start, length))])


def _find(ds: Dataset, steps: list[int], path: str) -> RawDataElement:
    for i in range(0, len(steps) - 1, 2):
        seq = ds.get(steps[i])
        if seq is None or seq.VR != "SQ" or steps[i + 1] > len(seq.value):
            raise NotFound(f"No bulk data at {path!r}")
        ds = seq.value[steps[i + 1] - 1]
    if steps[-1] not in ds:
        raise NotFound(f"No bulk data at {path!r}")
    elem = ds.get_item(steps[-1])
    if isinstance(elem, RawDataElement):
        return elem
    # Already converted (small nested values): re-encode through the raw bytes we hold.
    value = elem.value if isinstance(elem.value, bytes) else None
    if value is None:
        raise NotFound(f"The element at {path!r} is not binary")
    return RawDataElement(elem.tag, elem.VR, len(value), value, 0, True, True)


def read_chunks(storage: StorageArea, key: str, start: int, length: int) -> Iterator[bytes]:
    end = start + length
    while start < end:
        n = min(CHUNK, end - start)
        yield storage.read_range(key, start, n)
        start += n
