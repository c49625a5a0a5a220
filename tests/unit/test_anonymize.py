"""The Basic Application Level Confidentiality Profile (PS3.15 E.1) of WADO-URI
``anonymize=yes``, on pydicom's bundled test files."""

from __future__ import annotations

import copy
import io
import re

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from app.dicom.anonymize import BASIC_PROFILE, anonymize, new_uid

UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")


def load(name: str) -> Dataset:
    # rtstruct.dcm has no File Meta Information header
    return pydicom.dcmread(get_testdata_file(name), force=name == "rtstruct.dcm")


def round_trip(ds: Dataset) -> Dataset:
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(out.getvalue()))


def item(**attrs: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def all_elements(ds: Dataset) -> list[pydicom.DataElement]:
    return list(ds.iterall())


# --- the table ---------------------------------------------------------------------


def test_table_covers_table_e1_1() -> None:
    assert len(BASIC_PROFILE) > 600
    assert set(BASIC_PROFILE.values()) == {
        "X", "Z", "D", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
    for tag in BASIC_PROFILE:  # every tag is a known (public) attribute
        assert keyword_for_tag(tag), hex(tag)


def test_table_samples() -> None:
    assert BASIC_PROFILE[0x00100010] == "Z"  # Patient's Name
    assert BASIC_PROFILE[0x00100020] == "Z/D"  # Patient ID
    assert BASIC_PROFILE[0x00080080] == "X/Z/D"  # Institution Name
    assert BASIC_PROFILE[0x00081155] == "U"  # Referenced SOP Instance UID
    assert BASIC_PROFILE[0x00081140] == "X/Z/U*"  # Referenced Image Sequence
    assert all(dictionary_VR(tag) == "UI" for tag, a in BASIC_PROFILE.items() if a == "U")
    for well_known in (0x00080016, 0x00020010, 0x00081150, 0x00020012):
        assert well_known not in BASIC_PROFILE  # SOP Class, Transfer Syntax...


# --- identification removed ----------------------------------------------------------


def test_patient_and_institution_identification_is_removed() -> None:
    ds = anonymize(load("CT_small.dcm"))
    assert ds.PatientName == ""  # Z
    assert ds.PatientID == "ANONYMOUS"  # Z/D: the dummy keeps a type 1 value valid
    assert ds.PatientBirthDate == "" and ds.PatientSex == ""
    assert ds.StudyDate == "" and ds.StudyTime == "" and ds.AccessionNumber == ""
    assert ds.ContentDate == "19000101" and ds.ContentTime == "000000"  # Z/D
    assert ds.InstitutionName == "ANONYMOUS" and ds.StationName == "ANONYMOUS"
    assert ds.ReferringPhysicianName == ""
    text = str(ds)
    for original in ("CompressedSamples", "JFK", "20040119", "CT1"):
        assert original not in text


def test_x_z_and_d_by_vr() -> None:
    ds = load("MR_small.dcm")
    ds.InstitutionAddress = "1 Main Street"  # X
    ds.OtherPatientIDs = "OTHER-1"  # X
    ds.PatientAge = "042Y"  # X
    ds.StudyDescription = "Knee, left"  # X
    ds.OperatorsName = ["Doe^Jane", "Roe^Rick"]  # X/Z/D
    ds.AcquisitionDateTime = "20240102030405"  # X/Z/D
    ds.ProtocolName = "PROTO 7"  # X/D
    ds.DeviceSerialNumber = "SN-77"  # X/Z/D
    ds.AcquisitionContextSequence = Sequence([item(CodeMeaning="secret")])  # X/Z
    ds.ReferencedPatientSequence = Sequence([item(ReferencedSOPInstanceUID="1.2.3")])  # X
    ds.add_new(0x00400512, "LO", "")  # Container Identifier D, already empty: stays so
    anonymize(ds)
    for keyword in ("InstitutionAddress", "OtherPatientIDs", "PatientAge",
                    "StudyDescription", "ReferencedPatientSequence"):
        assert keyword not in ds
    assert ds.OperatorsName == "ANONYMOUS"
    assert ds.AcquisitionDateTime == "19000101000000"
    assert ds.ProtocolName == "ANONYMOUS" and ds.DeviceSerialNumber == "ANONYMOUS"
    assert ds.AcquisitionContextSequence == Sequence()
    assert ds.ContainerIdentifier == ""


def test_private_curve_and_overlay_groups_are_removed() -> None:
    ds = load("CT_small.dcm")
    assert any(e.tag.is_private for e in ds)
    ds.add_new(0x50000005, "US", 1)  # Curve Dimensions
    ds.add_new(0x60000010, "US", 128)  # Overlay Rows
    ds.add_new(0x60003000, "OW", b"\0" * 16)  # Overlay Data
    ds.add_new(0x60024000, "LT", "Dr. Who was here")  # Overlay Comments
    nested = item(ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID="1.2.3")
    nested.private_block(0x0029, "ACME", create=True).add_new(0x01, "LO", "secret")
    ds.ReferencedImageSequence = Sequence([nested])
    ds.add_new(0xFFFCFFFC, "OB", b"\0\0")  # Data Set Trailing Padding
    anonymize(ds)
    tags = [e.tag for e in all_elements(ds)]
    assert not any(t.is_private for t in tags)
    assert not any(0x5000 <= t.group <= 0x60FF for t in tags)
    assert 0xFFFCFFFC not in ds
    assert "ReferencedSOPInstanceUID" in ds.ReferencedImageSequence[0]  # X/Z/U*: kept


def test_pixel_data_is_untouched_and_the_result_round_trips() -> None:
    original = load("CT_small.dcm")
    pixels = original.pixel_array.copy()
    ds = round_trip(anonymize(copy.deepcopy(original)))
    assert np.array_equal(ds.pixel_array, pixels)
    assert ds.PixelData == original.PixelData
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"])
def test_marks_the_profile_and_round_trips(name: str) -> None:
    ds = round_trip(anonymize(load(name)))
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod == "Basic Application Level Confidentiality Profile"
    (code,) = ds.DeidentificationMethodCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        "113100", "DCM", "Basic Application Confidentiality Profile")
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_anonymizing_twice_records_the_profile_once() -> None:
    ds = anonymize(anonymize(load("MR_small.dcm")))
    assert len(ds.DeidentificationMethodCodeSequence) == 1
    assert ds.DeidentificationMethod == "Basic Application Level Confidentiality Profile"


# --- UIDs ----------------------------------------------------------------------------


def test_uids_are_replaced_and_well_known_ones_kept() -> None:
    original = load("CT_small.dcm")
    ds = anonymize(copy.deepcopy(original))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                    "FrameOfReferenceUID", "InstanceCreatorUID"):
        assert ds[keyword].value != original[keyword].value
        assert UID_RE.fullmatch(ds[keyword].value) and len(ds[keyword].value) <= 64
    assert ds.SOPClassUID == original.SOPClassUID
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert ds.file_meta.MediaStorageSOPClassUID == original.file_meta.MediaStorageSOPClassUID
    assert ds.file_meta.ImplementationClassUID == original.file_meta.ImplementationClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_uids_are_deterministic_across_instances_of_a_study() -> None:
    first, second = load("CT_small.dcm"), load("CT_small.dcm")
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    again = anonymize(load("CT_small.dcm"))
    anonymize(first)
    anonymize(second)
    assert first.StudyInstanceUID == second.StudyInstanceUID == again.StudyInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.SOPInstanceUID == again.SOPInstanceUID != second.SOPInstanceUID
    assert second.SOPInstanceUID == new_uid("1.2.3.4.5")


def test_salt_changes_the_replacement_uids() -> None:
    plain, salted = anonymize(load("CT_small.dcm")), anonymize(load("CT_small.dcm"), salt="s")
    assert plain.StudyInstanceUID != salted.StudyInstanceUID
    assert salted.StudyInstanceUID == anonymize(load("CT_small.dcm"), salt="s").StudyInstanceUID


def test_media_storage_uid_follows_the_new_sop_instance_uid() -> None:
    ds = load("rtplan.dcm")  # its file meta and SOP Instance UID differ
    assert ds.file_meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID
    anonymize(ds)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_references_in_nested_sequences_follow_the_referenced_instances() -> None:
    plan = load("rtplan.dcm")
    struct_uid = plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID
    plan_uid = plan.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
    struct = load("rtstruct.dcm")
    struct.SOPInstanceUID = struct_uid
    anonymize(plan)
    anonymize(struct)
    new_ref = plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID
    assert new_ref == struct.SOPInstanceUID != struct_uid
    assert plan.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == new_uid(plan_uid)
    assert plan.ReferencedStructureSetSequence[0].ReferencedSOPClassUID == (
        "1.2.840.10008.5.1.4.1.1.481.3")  # RT Structure Set Storage: kept


def test_frame_of_reference_uids_stay_consistent_inside_rtstruct() -> None:
    original = load("rtstruct.dcm")
    ds = anonymize(copy.deepcopy(original))
    referenced = ds.ReferencedFrameOfReferenceSequence[0]
    assert referenced.FrameOfReferenceUID == new_uid(
        original.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID)
    for roi in ds.StructureSetROISequence:
        assert roi.ReferencedFrameOfReferenceUID == referenced.FrameOfReferenceUID
    original_uids = {e.value for e in all_elements(original) if e.VR == "UI"}
    for elem in all_elements(ds):  # only SOP Class UIDs survive
        if elem.VR == "UI" and elem.value in original_uids:
            assert elem.value.startswith("1.2.840.10008."), elem


def test_nested_items_are_processed() -> None:
    ds = load("rtplan.dcm")
    ds.RequestAttributesSequence = Sequence([item(RequestedProcedureID="R1")])  # X
    ds.BeamSequence[0].OperatorsName = "Doe^Jane"  # X/Z/D inside a nested item
    ds.BeamSequence[0].InstitutionName = "Hospital"
    ds.FailedSOPInstanceUIDList = ["1.2.3", "1.2.4"]  # U, VM > 1
    anonymize(ds)
    assert "RequestAttributesSequence" not in ds
    beam = ds.BeamSequence[0]
    assert beam.OperatorsName == "ANONYMOUS" and beam.InstitutionName == "ANONYMOUS"
    assert ds.FailedSOPInstanceUIDList == [new_uid("1.2.3"), new_uid("1.2.4")]
    assert "Last^First" not in str(ds) and "Here" not in str(ds.get("InstitutionName", ""))


def test_dataset_without_file_meta() -> None:
    ds = item(PatientName="Doe^John", SOPInstanceUID="1.2.3", StudyInstanceUID="1.2")
    anonymize(ds)
    assert ds.PatientName == "" and ds.SOPInstanceUID == new_uid("1.2.3")
