"""app.dicom.orthanc_tags: Orthanc's three JSON formats, MainDicomTags from DICOM JSON and
content paths, on data sets built here and read back the way the server reads files."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from app.dicom import orthanc_tags as tags
from app.dicom.dicomjson import dataset_to_json
from app.errors import BadRequest, NotFound
from backends.base import ResourceType


def read(ds: Dataset, syntax: str = ExplicitVRLittleEndian, defer: int = 64) -> Dataset:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    out.seek(0)
    return pydicom.dcmread(out, defer_size=defer, force=True)


def sample() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Hans=ミュラー^ハンス"
    ds.PatientName = "MULLER^HANS"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PixelSpacing = ["0.50", "0.25"]  # the file's text is kept ("0.50", not 0.5)
    ds.Rows = 512
    ds.add_new(0x00189087, "FD", 0.1)
    ds.add_new(0x00280009, "AT", [0x00181063, 0x00181065])  # FrameIncrementPointer
    ds.ImageComments = "y" * 257  # past 256 bytes: TooLong
    ds.add_new(0x00091010, "OB", b"\x00" * 10)  # private, no creator: binary
    item = Dataset()
    item.CodeValue = "X"
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.add_new(0x00420011, "OB", b"\x01" * 200)  # EncapsulatedDocument: deferred (> 64)
    return ds


def test_full_format_values_and_types() -> None:
    full = tags.dataset_tags(read(sample()), "Full")
    assert full["0010,0010"] == {"Name": "PatientName", "Type": "String",
                                 "Value": "MULLER^HANS"}
    assert full["0008,0008"]["Value"] == "ORIGINAL\\PRIMARY"
    assert full["0028,0030"]["Value"] == "0.50\\0.25"
    assert full["0028,0010"]["Value"] == "512"
    assert full["0018,9087"]["Value"] == format(0.1, ".17g")
    assert full["0028,0009"]["Value"] == "0018,1063\\0018,1065"
    assert full["0020,4000"] == {"Name": "ImageComments", "Type": "TooLong", "Value": None}
    assert full["0009,1010"] == {"Name": "Unknown Tag & Data", "Type": "Null", "Value": None}
    assert full["0042,0011"]["Type"] == "Null"  # deferred binary, never read
    seq = full["0008,1140"]
    assert seq["Type"] == "Sequence" and seq["Value"] == [
        {"0008,0100": {"Name": "CodeValue", "Type": "String", "Value": "X"}}, {}]
    assert list(full) == sorted(full)


def test_human_and_short_share_the_values_of_full() -> None:
    ds = read(sample())
    full, human, short = (tags.dataset_tags(ds, f) for f in ("Full", "Human", "Short"))
    for key, node in full.items():
        value = by_tag = node["Value"]
        if node["Type"] == "Sequence":
            by_tag = [{k: v["Value"] for k, v in item.items()} for item in value]
            value = [{v["Name"]: v["Value"] for v in item.values()} for item in value]
        assert short[key] == by_tag, key
        assert human[node["Name"]] == value, key


def test_implicit_vr_files_read_alike() -> None:
    explicit = tags.dataset_tags(read(sample()), "Full")
    implicit = tags.dataset_tags(read(sample(), ImplicitVRLittleEndian), "Full")
    assert implicit == explicit


def test_deferred_sequences_are_read_while_the_file_is_open() -> None:
    ds = Dataset()
    ds.ReferencedImageSequence = Sequence([Dataset() for _ in range(20)])
    for item in ds.ReferencedImageSequence:
        item.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    human = tags.dataset_tags(read(ds, defer=16), "Human")
    assert len(human["ReferencedImageSequence"]) == 20


@pytest.mark.parametrize(("entry", "text"), [
    ({"vr": "PN", "Value": [{"Alphabetic": "A^B", "Ideographic": "C^D"}]}, "A^B=C^D"),
    ({"vr": "PN", "Value": [{"Alphabetic": "A^B"}, {"Alphabetic": "E"}]}, "A^B\\E"),
    ({"vr": "DS", "Value": [1.0, -0.5]}, "1\\-0.5"),
    ({"vr": "IS", "Value": [7]}, "7"),
    ({"vr": "CS", "Value": ["A", None, "C"]}, "A\\\\C"),
    ({"vr": "AT", "Value": ["00181063"]}, "0018,1063"),
    ({"vr": "LO"}, ""),
])
def test_json_text(entry: dict, text: str) -> None:
    assert tags.json_text(entry) == text


def test_main_tags_from_dicom_json_in_three_formats() -> None:
    ds = sample()
    ds.PatientID, ds.PatientBirthDate = "P1", "19700101"
    attrs = dataset_to_json(ds, bulk_prefix=None)
    wanted = tags.main_tags_tags(ResourceType.PATIENT)
    assert tags.main_tags(attrs, wanted) == {
        "PatientBirthDate": "19700101", "PatientID": "P1", "PatientName": "MULLER^HANS"}
    assert tags.main_tags(attrs, wanted, "Short")["0010,0020"] == "P1"
    assert tags.main_tags(attrs, wanted, "Full")["0010,0030"] == {
        "Name": "PatientBirthDate", "Type": "String", "Value": "19700101"}
    extra = tags.main_tags_tags(ResourceType.PATIENT, (0x00280010,))
    assert tags.main_tags(attrs, extra)["Rows"] == "512"
    # A missing attribute comes from the fallback (a series' first instance).
    fallback = {"00100040": {"vr": "CS", "Value": ["F"]}}
    assert tags.main_tags(attrs, wanted, fallback=fallback)["PatientSex"] == "F"


def test_content_paths() -> None:
    ds = read(sample())
    top = tags.content(ds, [])
    assert top.listing is not None and top.listing[0] == "0008-0005"
    assert "0042-0011" in top.listing
    assert tags.content(ds, ["0008-1140"]).listing == ["0", "1"]
    assert tags.content(ds, ["0008,1140", "0"]).listing == ["0008-0100"]
    assert tags.content(ds, ["00081140", "1"]).listing == []
    assert tags.content(ds, ["ReferencedImageSequence", "0", "CodeValue"]).data == b"X "
    deferred = tags.content(ds, ["0042-0011"])
    assert deferred.data is None and deferred.length == 200 and deferred.start > 0
    assert tags.content(ds, ["0028-0010"]).data == (512).to_bytes(2, "little")
    for path in (["0008-1140", "2"], ["0008-1140", "-1"], ["0010-1010"],
                 ["7fe0-0010"], ["0008-1140", "0", "0010-0010"]):
        with pytest.raises(NotFound):
            tags.content(ds, path)
    with pytest.raises(BadRequest):
        tags.content(ds, ["zzzz-zzzz"])


def test_charset_element_converted_while_reading_is_reencoded() -> None:
    ds = read(sample())
    ds.SpecificCharacterSet  # noqa: B018 - pydicom converts it on access
    assert tags.content(ds, ["0008-0005"]).data == b"ISO_IR 100"
