"""Builders of realistic index inputs for the contract tests: records, constraints, queries."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from backends.base import (
    COLUMNS,
    Constraint,
    DicomJson,
    InstanceRecord,
    Level,
    Match,
    Query,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

# Level of the attributes the tests use that are not indexed columns.
OTHER_LEVELS: dict[str, Level] = {
    "InstitutionName": Level.STUDY,
    "IssuerOfPatientID": Level.STUDY,
    "OtherPatientIDs": Level.STUDY,
    "ProtocolName": Level.SERIES,
    "OperatorsName": Level.SERIES,
    "ImageType": Level.INSTANCE,
    "AcquisitionDate": Level.INSTANCE,
    "AcquisitionTime": Level.INSTANCE,
    "ImageComments": Level.INSTANCE,
}

DEFAULTS: dict[str, Any] = {
    "PatientName": "Doe^John",
    "PatientID": "P1",
    "StudyDate": "20200115",
    "StudyTime": "101500",
    "AccessionNumber": "A1",
    "Modality": "CT",
    "SeriesNumber": 1,
    "SOPClassUID": CT_IMAGE,
    "Rows": 512,
    "Columns": 512,
}

_UIDS = {Level.STUDY: "StudyInstanceUID", Level.SERIES: "SeriesInstanceUID",
         Level.INSTANCE: "SOPInstanceUID"}


def level_of(keyword: str) -> Level:
    for level, columns in COLUMNS.items():
        if keyword in columns:
            return level
    return OTHER_LEVELS[keyword]


def tag_vr(keyword: str) -> tuple[str, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}", dictionary_VR(tag)


def _json_value(vr: str, value: str | int) -> Any:
    if vr == "PN":
        groups = str(value).split("=")
        return dict(zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False))
    if vr in ("IS", "US", "UL", "SS", "SL"):
        return int(value)
    return value


def element(keyword: str, value: Any) -> dict[str, Any]:
    """DICOM JSON element (PS3.18 F.2): '' gives an empty element, '\\' or a list several
    values, PN strings 'Alphabetic=Ideographic=Phonetic' become PN objects."""
    vr = tag_vr(keyword)[1]
    if value == "":
        return {"vr": vr}
    if isinstance(value, str):
        values: list[Any] = value.split("\\")
    elif isinstance(value, (list, tuple)):
        values = list(value)
    else:
        values = [value]
    return {"vr": vr, "Value": [_json_value(vr, v) for v in values]}


def orthanc_id(*parts: str) -> str:
    """An id shaped like Orthanc's (SHA-1 in five dash-separated groups)."""
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def make_record(
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    *,
    storage_key: str | None = None,
    size: int = 1234,
    transfer_syntax: str = EXPLICIT_LE,
    frames: tuple[tuple[tuple[int, int], ...], ...] = (((1200, 34),),),
    **attrs: Any,
) -> InstanceRecord:
    """An instance record; keyword arguments are attributes by DICOM keyword (``None`` omits
    one of the defaults)."""
    values = {**DEFAULTS, **attrs, "StudyInstanceUID": study_uid,
              "SeriesInstanceUID": series_uid, "SOPInstanceUID": sop_uid}
    levels: dict[Level, DicomJson] = {level: {} for level in Level}
    for keyword, given in values.items():
        if given is not None:
            levels[level_of(keyword)][tag_vr(keyword)[0]] = element(keyword, given)
    merged = {tag: el for attrs_ in levels.values() for tag, el in attrs_.items()}
    patient = str(values.get("PatientID") or "")
    return InstanceRecord(
        patient_key=orthanc_id(patient),
        study_key=orthanc_id(patient, study_uid),
        series_key=orthanc_id(patient, study_uid, series_uid),
        instance_key=orthanc_id(patient, study_uid, series_uid, sop_uid),
        study=levels[Level.STUDY],
        series=levels[Level.SERIES],
        instance=levels[Level.INSTANCE],
        metadata=json.dumps(dict(sorted(merged.items())), sort_keys=True),
        transfer_syntax=transfer_syntax,
        storage_key=storage_key or uuid.uuid4().hex,
        size=size,
        frames=frames,
    )


def constraint(keyword: str, kind: Match, *values: str, also: str | None = None,
               level: Level | None = None) -> Constraint:
    tag, vr = tag_vr(keyword)
    return Constraint(level or level_of(keyword), keyword, tag, vr, kind, values, also)


def single(keyword: str, value: str, **kw: Any) -> Constraint:
    return constraint(keyword, Match.SINGLE, value, **kw)


def query(level: Level, *constraints: Constraint, **kw: Any) -> Query:
    return Query(level, tuple(constraints), **kw)


def uid(attrs: DicomJson, level: Level) -> str:
    return str(attrs[tag_vr(_UIDS[level])[0]]["Value"][0])


def value(attrs: DicomJson, keyword: str) -> Any:
    """The values of an attribute in DICOM JSON, or None if absent."""
    found = attrs.get(tag_vr(keyword)[0])
    return None if found is None else found.get("Value")
