"""app.dicom.orthanc_resources: expanded resources, changes and statistics JSON."""

from __future__ import annotations

import calendar
import time

from app.dicom.orthanc_resources import (
    ancestor,
    change_json,
    changes_json,
    expand,
    iso_time,
    statistics,
)
from backends.base import Change, Resource, ResourceType, StoredInstance

NOW = calendar.timegm((2024, 1, 2, 10, 15, 0, 0, 0, 0))


def test_iso_time_is_utc_whole_seconds() -> None:
    assert iso_time(NOW + 0.9) == "20240102T101500"


def test_series_expansion_and_stability() -> None:
    series = Resource(ResourceType.SERIES, "se", "st", ("i1", "i2"),
                      {"00080060": {"vr": "CS", "Value": ["CT"]}},
                      {"SeriesInstanceUID": "1.2"}, last_update=NOW)
    out = expand(series, now=NOW + 59,
                 fallback={"00200037": {"vr": "DS", "Value": [1, 0, 0, 0, 1, 0]}})
    assert out == {"ExpectedNumberOfInstances": None, "ID": "se", "Instances": ["i1", "i2"],
                   "IsStable": False, "Labels": [], "LastUpdate": "20240102T101500",
                   "MainDicomTags": {"ImageOrientationPatient": "1\\0\\0\\0\\1\\0",
                                     "Modality": "CT"},
                   "ParentStudy": "st", "Status": "Unknown", "Type": "Series"}
    assert expand(series, now=NOW + 60)["IsStable"] is True


def test_instance_and_study_expansion() -> None:
    stored = StoredInstance("1", "2", "3", "4", "inst", "1.2.840.10008.1.2.1", "key", 1234, 7)
    instance = Resource(ResourceType.INSTANCE, "inst", "se", (),
                        {"00200013": {"vr": "IS", "Value": [7]}}, {}, instance=stored)
    assert expand(instance) == {
        "FileSize": 1234, "FileUuid": "key", "ID": "inst", "IndexInSeries": 7, "Labels": [],
        "MainDicomTags": {"InstanceNumber": "7"}, "ParentSeries": "se", "Type": "Instance"}
    study = Resource(ResourceType.STUDY, "st", "pa", ("se",),
                     {"00081030": {"vr": "LO", "Value": ["Chest"]}}, {},
                     last_update=time.time())
    out = expand(study, fmt="Short", patient={"00100020": {"vr": "LO", "Value": ["P1"]}},
                 extra_tags={ResourceType.STUDY: (0x00081030,)})
    assert out["MainDicomTags"] == {"0008,1030": "Chest"}
    assert out["PatientMainDicomTags"] == {"0010,0020": "P1"}
    assert out["ParentPatient"] == "pa" and out["Series"] == ["se"]


def test_changes_and_statistics() -> None:
    change = Change(3, "NewStudy", ResourceType.STUDY, "abc", NOW)
    assert change_json(change) == {"ChangeType": "NewStudy", "Date": "20240102T101500",
                                   "ID": "abc", "Path": "/studies/abc",
                                   "ResourceType": "Study", "Seq": 3}
    assert changes_json([change], False, 3) == {"Changes": [change_json(change)],
                                                "Done": False, "Last": 3}
    assert ancestor(ResourceType.PATIENT, "p") == {"ID": "p", "Path": "/patients/p",
                                                   "Type": "Patient"}
    stats = statistics({ResourceType.PATIENT: 1, ResourceType.INSTANCE: 9}, 5 << 20 | 7)
    assert stats["TotalDiskSize"] == str(5 << 20 | 7) and stats["TotalDiskSizeMB"] == 5
    assert stats["CountInstances"] == 9 and stats["CountStudies"] == 0
