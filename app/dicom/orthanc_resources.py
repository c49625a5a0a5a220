"""The JSON shapes of Orthanc's resource REST API (1.10 to 1.12), built from Index values
(no Flask): expanded resources, remaining ancestors, the change log and statistics.

An expanded resource (``GET /{level}/{id}``, ``?expand``, ``/tools/find`` with Expand)
follows ``ResourceFinder::Expand`` / ``SerializeExpandedResource``; Orthanc's jsoncpp
writes object keys sorted, and so do we::

    Patient  ID, IsStable, Labels, LastUpdate, MainDicomTags, Studies, Type
    Study    ID, IsStable, Labels, LastUpdate, MainDicomTags, ParentPatient,
             PatientMainDicomTags, Series, Type
    Series   ExpectedNumberOfInstances, ID, Instances, IsStable, Labels, LastUpdate,
             MainDicomTags, ParentStudy, Status, Type
    Instance FileSize, FileUuid, ID, IndexInSeries, Labels, MainDicomTags, ParentSeries,
             Type
"""

from __future__ import annotations

import time
from typing import Any

from app.dicom.orthanc_tags import main_tags, main_tags_tags
from backends.base import Change, DicomJson, Resource, ResourceType

STABLE_AGE = 60.0  # seconds: Orthanc's default StableAge
CHILDREN = {ResourceType.PATIENT: "Studies", ResourceType.STUDY: "Series",
            ResourceType.SERIES: "Instances"}
PARENT = {ResourceType.STUDY: "ParentPatient", ResourceType.SERIES: "ParentStudy",
          ResourceType.INSTANCE: "ParentSeries"}
PATHS = {ResourceType.PATIENT: "patients", ResourceType.STUDY: "studies",
         ResourceType.SERIES: "series", ResourceType.INSTANCE: "instances"}
TYPES = {path: type_ for type_, path in PATHS.items()}
CHILD_TYPE = {ResourceType.PATIENT: ResourceType.STUDY, ResourceType.STUDY: ResourceType.SERIES,
              ResourceType.SERIES: ResourceType.INSTANCE}
MIB = 1 << 20


def iso_time(posix: float) -> str:
    """Orthanc's ``GetNowIsoString(utc)``: ``YYYYMMDDTHHMMSS`` in UTC, whole seconds."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(posix))


def path_of(type_: ResourceType, id_: str) -> str:
    return f"/{PATHS[type_]}/{id_}"


def expand(resource: Resource, *, fmt: str = "Human", now: float | None = None,
           extra_tags: dict[ResourceType, tuple[int, ...]] | None = None,
           fallback: DicomJson | None = None,
           patient: DicomJson | None = None) -> dict[str, Any]:
    """The expanded JSON of a resource. ``fmt`` is the MainDicomTags format (``?full``,
    ``?short``); ``extra_tags`` the ExtraMainDicomTags per level; ``fallback`` the DICOM
    JSON of a series' first instance (main series tags that are instance level here);
    ``patient`` the attributes of a study's patient (PatientMainDicomTags: the Index keeps
    the patient module with the patient)."""
    type_ = resource.type
    extra = (extra_tags or {}).get(type_, ())
    out: dict[str, Any] = {}
    if type_ is ResourceType.INSTANCE and resource.instance is not None:
        out["FileSize"] = resource.instance.size
        out["FileUuid"] = resource.instance.storage_key
    if type_ is ResourceType.SERIES:
        # Orthanc derives it from ImagesInAcquisition & co. only with metadata it keeps;
        # "Unknown" is its answer whenever the expected count is not known.
        out["ExpectedNumberOfInstances"] = None
    out["ID"] = resource.id
    if type_ is ResourceType.INSTANCE:
        number = resource.instance.instance_number if resource.instance else None
        out["IndexInSeries"] = number
    if type_ in CHILDREN:
        out[CHILDREN[type_]] = list(resource.children)
        stable = (now if now is not None else time.time()) - resource.last_update
        out["IsStable"] = stable >= STABLE_AGE
    out["Labels"] = []
    if type_ in CHILDREN:
        out["LastUpdate"] = iso_time(resource.last_update)
    out["MainDicomTags"] = main_tags(resource.attrs, main_tags_tags(type_, extra), fmt,
                                     fallback=fallback)
    if type_ in PARENT:
        out[PARENT[type_]] = resource.parent
    if type_ is ResourceType.STUDY:
        patient_extra = (extra_tags or {}).get(ResourceType.PATIENT, ())
        out["PatientMainDicomTags"] = main_tags(
            patient or {}, main_tags_tags(ResourceType.PATIENT, patient_extra), fmt)
    if type_ is ResourceType.SERIES:
        out["Status"] = "Unknown"
    out["Type"] = type_.value
    return dict(sorted(out.items()))  # jsoncpp's order


def ancestor(type_: ResourceType, id_: str) -> dict[str, str]:
    """``RemainingAncestor`` of a DELETE: ``{"ID", "Path", "Type"}``."""
    return {"ID": id_, "Path": path_of(type_, id_), "Type": type_.value}


def change_json(change: Change) -> dict[str, Any]:
    """One entry of ``/changes`` (Orthanc's ``ServerIndexChange::Format``)."""
    return {"ChangeType": change.change_type, "Date": iso_time(change.date),
            "ID": change.resource_id, "Path": path_of(change.resource_type, change.resource_id),
            "ResourceType": change.resource_type.value, "Seq": change.seq}


def changes_json(changes: list[Change], done: bool, last: int) -> dict[str, Any]:
    return {"Changes": [change_json(c) for c in changes], "Done": done, "Last": last}


def statistics(counts: dict[ResourceType, int], size: int) -> dict[str, Any]:
    """``/statistics``: sizes as decimal strings and whole MiB, as Orthanc. Blobs are
    counted as DICOM bytes (StorageCompression does not change the size stored here)."""
    return {
        "CountInstances": counts.get(ResourceType.INSTANCE, 0),
        "CountPatients": counts.get(ResourceType.PATIENT, 0),
        "CountSeries": counts.get(ResourceType.SERIES, 0),
        "CountStudies": counts.get(ResourceType.STUDY, 0),
        "TotalDiskSize": str(size),
        "TotalDiskSizeMB": size // MIB,
        "TotalUncompressedSize": str(size),
        "TotalUncompressedSizeMB": size // MIB,
    }
