"""The simplified JSON of ``POST {root}servers/{name}/qido`` (reference §7.4; Orthanc
``QidoClient``): each DICOM JSON attribute of a remote QIDO-RS answer becomes
``{"Group", "Element", "Name", "vr", "Value"}`` with the first value only."""

from __future__ import annotations

import re
from typing import Any

from pydicom.datadict import keyword_for_tag

from app.errors import BadGateway

_TAG = re.compile(r"[0-9A-Fa-f]{8}")
UNKNOWN_NAME = "Unknown Tag & Data"  # DCMTK's name for a tag it does not know


def simplify(answer: Any, server: str) -> list[dict[str, Any]]:
    """The remote answer must be an array of objects whose attributes have a string
    ``vr``; anything else is the remote's fault (502; Orthanc: 500 NetworkProtocol)."""
    if not isinstance(answer, list) or not all(isinstance(item, dict) for item in answer):
        raise BadGateway(f"The QIDO-RS answer of the DICOMweb server \"{server}\" is not a "
                         "JSON array of objects")
    return [_simplify_item(item, server) for item in answer]


def _simplify_item(item: dict[str, Any], server: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, source in item.items():
        if not _TAG.fullmatch(key):
            continue  # only attribute keys that parse as hex tags are kept
        if not isinstance(source, dict) or not isinstance(source.get("vr"), str):
            raise BadGateway(f"The QIDO-RS answer of the DICOMweb server \"{server}\" has an "
                             f"attribute {key} without a string \"vr\"")
        tag = int(key, 16)
        value: dict[str, Any] = {"Group": tag >> 16, "Element": tag & 0xFFFF,
                                 "Name": keyword_for_tag(tag) or UNKNOWN_NAME,
                                 "vr": source["vr"]}
        first = _first_value(source.get("Value"))
        if first is not None:
            value["Value"] = first
        out[key] = value
    return out


def _first_value(values: Any) -> Any:
    """An integer or a string as is, a person name's ``Alphabetic``; nothing for numbers
    with a fraction, sequences or bulk data (as Orthanc)."""
    if not isinstance(values, list) or not values:
        return None
    first = values[0]
    if isinstance(first, bool):
        return None
    if isinstance(first, int | str):
        return first
    if isinstance(first, dict) and isinstance(first.get("Alphabetic"), str):
        return first["Alphabetic"]
    return None
