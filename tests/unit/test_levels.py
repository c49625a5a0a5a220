from __future__ import annotations

import pytest
from pydicom.datadict import tag_for_keyword

from app.dicom.levels import SERIES_LEVEL, STUDY_LEVEL, level_of
from backends.base import INSTANCE_COLUMNS, SERIES_COLUMNS, STUDY_COLUMNS, Level


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return int(tag)


@pytest.mark.parametrize("keyword", [
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "OtherPatientIDsSequence", "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup",
    "PatientComments", "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "ReferringPhysicianName", "StudyID",
    "StudyDescription", "ProcedureCodeSequence", "NameOfPhysiciansReadingStudy",
    "AdmittingDiagnosesDescription", "RequestingPhysician",
])
def test_study_level(keyword: str) -> None:
    assert level_of(_tag(keyword)) is Level.STUDY


@pytest.mark.parametrize("keyword", [
    "Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "SeriesDate",
    "SeriesTime", "Laterality", "BodyPartExamined", "ProtocolName", "PerformingPhysicianName",
    "OperatorsName", "PatientPosition", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "RequestAttributesSequence", "FrameOfReferenceUID",
    "PositionReferenceIndicator", "Manufacturer", "InstitutionName", "StationName",
    "ManufacturerModelName", "SoftwareVersions", "DeviceSerialNumber",
])
def test_series_level(keyword: str) -> None:
    assert level_of(_tag(keyword)) is Level.SERIES


@pytest.mark.parametrize("keyword", [
    "SOPInstanceUID", "SOPClassUID", "InstanceNumber", "Rows", "Columns", "PixelData",
    "NumberOfFrames", "ContentDate", "ContentTime", "SpecificCharacterSet",
    "TimezoneOffsetFromUTC", "ImageOrientationPatient", "AcquisitionDate",
])
def test_instance_level(keyword: str) -> None:
    assert level_of(_tag(keyword)) is Level.INSTANCE


@pytest.mark.parametrize("tag", [0x00090010, 0x00091001, 0x60031010, 0x7FE10010, 0x12345678])
def test_private_and_unknown_tags_are_instance_level(tag: int) -> None:
    assert level_of(tag) is Level.INSTANCE


def test_sets_are_disjoint_ints() -> None:
    assert not STUDY_LEVEL & SERIES_LEVEL
    assert all(type(t) is int for t in STUDY_LEVEL | SERIES_LEVEL)


def test_index_columns_live_at_their_level() -> None:
    for level, columns in ((Level.STUDY, STUDY_COLUMNS), (Level.SERIES, SERIES_COLUMNS),
                           (Level.INSTANCE, INSTANCE_COLUMNS)):
        for keyword in columns:
            assert level_of(_tag(keyword)) is level, keyword
