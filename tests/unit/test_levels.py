from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydicom.datadict import tag_for_keyword

from app.dicom import levels
from app.dicom.levels import SERIES_LEVEL, STUDY_LEVEL, level_of
from app.errors import ConfigurationError
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


# --- ExtraMainDicomTags ------------------------------------------------------------------------

STUDY, SERIES, INSTANCE = Level.STUDY, Level.SERIES, Level.INSTANCE
IMAGE_TYPE, TIMEZONE, MANUFACTURER, FRAME_OF_REFERENCE, PATIENT_NAME = (
    0x00080008, 0x00080201, 0x00080070, 0x00200052, 0x00100010)


@pytest.fixture(autouse=True)
def _no_extra_tags() -> Iterator[None]:
    levels.configure_extra_tags(None)
    yield
    levels.configure_extra_tags(None)


def test_no_extra_tags_by_default() -> None:
    assert levels.extra_tags() == levels.ExtraTags()
    assert level_of(IMAGE_TYPE, SERIES) is INSTANCE
    assert level_of(PATIENT_NAME, INSTANCE) is STUDY


def test_parse_keywords_and_both_tag_forms() -> None:
    extra = levels.parse_extra_tags({
        "Patient": ["0008,0070"], "Study": ["00080201"], "Series": ["ImageType", " 0008,0201 "],
        "Instance": ["FrameOfReferenceUID", "Rows", "SOPClassUID"],
    })
    assert extra.copies == (
        ("00080008", INSTANCE, SERIES),
        ("00080070", SERIES, STUDY),       # Patient attributes live with the study
        ("00080201", INSTANCE, STUDY),
        ("00080201", INSTANCE, SERIES),
        ("00200052", SERIES, INSTANCE),
    )  # Rows, SOPClassUID: already instance attributes, nothing to copy
    assert extra.levels == {IMAGE_TYPE: frozenset({SERIES}), MANUFACTURER: frozenset({STUDY}),
                            TIMEZONE: frozenset({STUDY, SERIES}),
                            FRAME_OF_REFERENCE: frozenset({INSTANCE})}


def test_sequences_and_private_tags_are_kept() -> None:
    extra = levels.parse_extra_tags({"Study": ["ReferencedImageSequence", "0009,1001"]})
    assert [key for key, _, _ in extra.copies] == ["00081140", "00091001"]


@pytest.mark.parametrize("setting,message", [
    ({"Study": ["NotAKeyword"]}, "ExtraMainDicomTags.Study: unknown DICOM tag 'NotAKeyword'"),
    ({"Series": ["0008,00"]}, "unknown DICOM tag '0008,00'"),
    ({"Series": ["studydate"]}, "'studydate'"),  # keywords are case-sensitive (PS3.6)
    ({"Series": [""]}, "unknown DICOM tag ''"),
    ({"Instance": [17]}, "17 is not a tag name"),
    ({"Instance": "Rows"}, "expected a list"),
    ({"Frame": ["Rows"]}, "unknown level 'Frame'"),
])
def test_unknown_names_are_configuration_errors(setting: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigurationError, match=message):
        levels.configure_extra_tags(setting)
    assert levels.extra_tags() == levels.ExtraTags()  # unchanged


@pytest.mark.parametrize("name", [
    "PixelData", "7FE0,0010", "RedPaletteColorLookupTableData", "EncapsulatedDocument",
    "0002,0010", "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "InstanceAvailability",
])
def test_attributes_never_kept_are_skipped_with_a_warning(
        name: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="app.dicom.levels"):
        extra = levels.parse_extra_tags({"Study": [name]})
    assert extra == levels.ExtraTags()
    assert name in caplog.text


def test_level_of_with_a_query_level() -> None:
    levels.configure_extra_tags({"Study": ["TimezoneOffsetFromUTC"], "Series": ["ImageType"],
                                 "Instance": ["FrameOfReferenceUID"]})
    # Kept at the query level: matched there.
    assert level_of(IMAGE_TYPE, SERIES) is SERIES
    assert level_of(IMAGE_TYPE, INSTANCE) is INSTANCE
    assert level_of(FRAME_OF_REFERENCE, INSTANCE) is INSTANCE
    assert level_of(FRAME_OF_REFERENCE, SERIES) is SERIES
    assert level_of(TIMEZONE, STUDY) is STUDY
    # Else the nearest parent keeping it, as the answer looks it up.
    assert level_of(TIMEZONE, SERIES) is STUDY
    # Else its own level below: any child matches.
    assert level_of(IMAGE_TYPE, STUDY) is INSTANCE
    assert level_of(FRAME_OF_REFERENCE, STUDY) is SERIES
    # Without a query level, or for other attributes: the attribute's own level.
    assert level_of(IMAGE_TYPE) is INSTANCE
    assert level_of(_tag("Rows"), STUDY) is INSTANCE
    assert level_of(PATIENT_NAME, INSTANCE) is STUDY


def test_add_extra_tags_copies_from_the_level_holding_the_attribute() -> None:
    levels.configure_extra_tags({"Patient": ["Manufacturer"], "Series": ["ImageType"],
                                 "Instance": ["FrameOfReferenceUID", "SliceThickness"]})
    image_type = {"vr": "CS", "Value": ["ORIGINAL"]}
    split: dict[Level, dict] = {  # type: ignore[type-arg]
        STUDY: {"00100010": {"vr": "PN"}},
        SERIES: {"00080070": {"vr": "LO", "Value": ["ACME"]},
                 "00200052": {"vr": "UI", "Value": ["1.2"]}},
        INSTANCE: {"00080008": image_type},
    }
    levels.add_extra_tags(split)
    assert split[STUDY]["00080070"] == {"vr": "LO", "Value": ["ACME"]}
    assert split[SERIES]["00080008"] is image_type
    assert split[INSTANCE]["00200052"] == {"vr": "UI", "Value": ["1.2"]}
    assert "00180050" not in split[INSTANCE]  # absent from the file: nothing to copy
    assert "00080070" in split[SERIES]  # copied, not moved


def test_configure_returns_and_resets() -> None:
    extra = levels.configure_extra_tags({"Series": ["ImageType"]})
    assert levels.extra_tags() is extra and extra.copies
    levels.configure_extra_tags({})
    assert levels.extra_tags() == levels.ExtraTags()
    assert level_of(IMAGE_TYPE, SERIES) is INSTANCE


def test_validate_changes_nothing() -> None:
    levels.validate_extra_tags({"Series": ["ImageType"]})
    assert levels.extra_tags() == levels.ExtraTags()
    with pytest.raises(ConfigurationError, match="NoSuchKeyword"):
        levels.validate_extra_tags({"Study": ["NoSuchKeyword"]})


def test_keywords_from_the_dictionary_setting_resolve_once_registered() -> None:
    from app.dicom import dictionary

    try:
        dictionary.configure({"0014,1020": ["DA", "ValidationExpiryDate", 1, 1]})
        extra = levels.parse_extra_tags({"Study": ["ValidationExpiryDate"]})
        assert extra.copies == (("00141020", INSTANCE, STUDY),)
    finally:
        dictionary.configure({})
