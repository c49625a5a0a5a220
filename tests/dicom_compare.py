"""Shared by the unit and e2e tests: pydicom's bundled files and an element-by-element
comparison of a DICOM JSON round trip with pydicom's own reading of the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from app.dicom.dicomjson import json_dumps

DATA = Path(pydicom.data.__file__).parent
TEST_FILES = sorted((DATA / "test_files").glob("*.dcm"))
CHARSET_FILES = sorted((DATA / "charset_files").glob("*.dcm"))
ALL_FILES = TEST_FILES + CHARSET_FILES


def resolve_bulk(full: Dataset, uri: str) -> Any:
    """Value of the element a BulkDataURI names, navigating pydicom's own reading."""
    path = uri.split("/bulk/", 1)[1].split("/")
    node = full
    for tag, index in zip(path[:-1:2], path[1::2], strict=True):
        node = node[int(tag, 16)].value[int(index) - 1]
    return node[int(path[-1], 16)].value


def unparseable(obj: dict[str, Any]) -> set[str]:
    """Top-level numbers kept as text by the fallback (pydicom's from_json rejects them)."""
    return {key for key, entry in obj.items() if entry["vr"] in ("IS", "DS")
            and any(isinstance(v, str) for v in entry.get("Value", ()))}


def _tags(ds: Dataset) -> set[int]:
    return {int(t) for t in ds.keys() if t >> 16 != 2 and t & 0xFFFF}


def assert_same(back: Dataset, full: Dataset, where: str, skip: set[str]) -> None:
    """Same elements, same values, sequences compared item by item (group 0002 aside)."""
    skipped = {int(k, 16) for k in skip}
    assert _tags(back) == _tags(full) - skipped, where
    for tag in sorted(_tags(full) - skipped):
        mine, theirs = back[tag], full[tag]
        if theirs.VR == "SQ":
            assert mine.VR == "SQ" and len(mine.value) == len(theirs.value), f"{where}/{tag:08x}"
            for i, (a, b) in enumerate(zip(mine.value, theirs.value, strict=True), 1):
                assert_same(a, b, f"{where}/{tag:08x}/{i}", set())
        else:
            assert mine == theirs, f"{where}/{tag:08x}: {mine!r} != {theirs!r}"


def assert_round_trip(obj: dict[str, Any], path: Path) -> None:
    """DICOM JSON → Dataset.from_json equals pydicom's reading, element by element."""
    full = pydicom.dcmread(path, force=True)
    skip = unparseable(obj)
    text = json_dumps({k: v for k, v in obj.items() if k not in skip})
    back = Dataset.from_json(json.loads(text), lambda tag, vr, uri: resolve_bulk(full, uri))
    assert_same(back, full, "", skip)
