from __future__ import annotations

import base64
import io
import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

from app.dicom.dicomjson import (
    dataset_to_json,
    json_dumps,
    json_to_xml,
    rebase,
    without_binary,
)
from tests.dicom_compare import ALL_FILES, CHARSET_FILES, DATA, assert_round_trip

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on invalid values

NS = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"


def _json_of(path: Path, **kwargs: Any) -> dict[str, Any]:
    with open(path, "rb") as f:
        ds = pydicom.dcmread(f, defer_size="64 KB", force=True)
        return dataset_to_json(ds, **({"bulk_prefix": "p"} | kwargs))


def _dataset(little: bool = True) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3"
    return ds


def _reread(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer, defer_size="64 KB")


# --- all bundled files ----------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_file_round_trips(path: Path) -> None:
    assert_round_trip(_json_of(path), path)


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_file_gives_xml_with_one_attribute_per_element(path: Path) -> None:
    obj = _json_of(path)
    root = ET.fromstring(json_to_xml(obj))
    assert root.tag == f"{NS}NativeDicomModel"
    attributes = root.findall(f"{NS}DicomAttribute")
    assert [a.get("tag") for a in attributes] == sorted(obj)


def _person_names(ds: Dataset, obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for elem in ds:
        entry = obj.get(f"{elem.tag:08X}")
        if elem.VR == "SQ" and entry:
            for item, item_obj in zip(elem.value, entry.get("Value", []), strict=True):
                found += _person_names(item, item_obj)
        elif elem.VR == "PN" and not elem.is_empty:
            names = elem.value if elem.VM > 1 else [elem.value]
            found += [(str(n), v) for n, v in zip(names, entry["Value"], strict=True)]
    return found


@pytest.mark.parametrize("path", CHARSET_FILES, ids=lambda p: p.name)
def test_charset_files_give_unicode_person_names(path: Path) -> None:
    obj = _json_of(path)
    names = _person_names(pydicom.dcmread(path), obj)
    assert names
    for decoded, value in names:
        groups = [value.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
        while groups and not groups[-1]:
            groups.pop()
        assert "=".join(groups) == decoded
        assert "\x1b" not in decoded  # ISO 2022 escapes were interpreted


def test_specific_character_set_keeps_original_values() -> None:
    obj = _json_of(DATA / "charset_files" / "chrH31.dcm")
    assert obj["00080005"] == {"vr": "CS", "Value": [None, "ISO 2022 IR 87"]}
    assert obj["00100010"]["Value"][0]["Ideographic"] == "山田^太郎"


# --- bulk data ------------------------------------------------------------------------


def test_nested_bulk_data_uri() -> None:
    ds = _dataset()
    block = ds.private_block(0x6003, "TEST", create=True)
    item = Dataset()
    item.add_new(0x60030010, "LO", "TEST")
    item.add_new(0x60031011, "OB", b"\x01\x02")
    block.add_new(0x10, "SQ", Sequence([Dataset(), item]))
    ds.PixelData = b"\x00" * 4
    ds["PixelData"].VR = "OB"
    obj = dataset_to_json(_reread(ds), bulk_prefix="studies/1/series/2/instances/3")
    assert obj["60031010"]["Value"][1]["60031011"] == {
        "vr": "OB", "BulkDataURI": "studies/1/series/2/instances/3/bulk/60031010/2/60031011"}
    assert obj["7FE00010"]["BulkDataURI"] == "studies/1/series/2/instances/3/bulk/7fe00010"


def test_empty_binary_has_no_uri_but_empty_pixel_data_has_one() -> None:
    ds = _dataset()
    ds.add_new(0x00420011, "OB", b"")  # EncapsulatedDocument
    ds.add_new(0x7FE00010, "OW", b"")
    obj = dataset_to_json(_reread(ds), bulk_prefix="p")
    assert obj["00420011"] == {"vr": "OB"}
    assert obj["7FE00010"] == {"vr": "OW", "BulkDataURI": "p/bulk/7fe00010"}


def test_deferred_values_are_not_loaded() -> None:
    path = DATA / "test_files" / "examples_overlay.dcm"
    with open(path, "rb") as f:
        ds = pydicom.dcmread(f, defer_size="64 KB")
        obj = dataset_to_json(ds, bulk_prefix="p")
        assert ds.get_item(0x7FE00010, keep_deferred=True).value is None
    assert obj["7FE00010"] == {"vr": "OW", "BulkDataURI": "p/bulk/7fe00010"}
    assert obj["60003000"] == {"vr": "OW", "BulkDataURI": "p/bulk/60003000"}


def _binary_dataset(little: bool = True) -> Dataset:
    ds = _dataset(little)
    ds.add_new(0x00281201, "OW", struct.pack("<3H" if little else ">3H", 1, 2, 0x0300))
    ds.add_new(0x00660016, "OF", struct.pack("<2f" if little else ">2f", 1.5, -2.0))
    ds.add_new(0x00420011, "OB", b"%PDF")
    ds.add_new(0x00091001, "UN", b"\x01\x02")
    ds.add_new(0x7FE00010, "OW", b"\x00\x01")
    return _reread(ds)


def test_inline_binary_is_little_endian_base64() -> None:
    for little in (True, False):
        obj = dataset_to_json(_binary_dataset(little), bulk_prefix="p",
                              binary_mode="InlineBinary")
        assert base64.b64decode(obj["00281201"]["InlineBinary"]) == struct.pack("<3H", 1, 2,
                                                                               0x0300)
        assert base64.b64decode(obj["00420011"]["InlineBinary"]) == b"%PDF"
        assert obj["00091001"] == {"vr": "UN", "BulkDataURI": "p/bulk/00091001"}
        assert obj["7FE00010"] == {"vr": "OW", "BulkDataURI": "p/bulk/7fe00010"}


def test_array_of_values() -> None:
    obj = dataset_to_json(_binary_dataset(False), bulk_prefix="p", binary_mode="ArrayOfValues")
    assert obj["00660016"] == {"vr": "OF", "Value": [1.5, -2.0]}
    assert base64.b64decode(obj["00420011"]["InlineBinary"]) == b"%PDF"
    assert "InlineBinary" in obj["00281201"]


def test_ignore_and_no_prefix_drop_binaries() -> None:
    ds = _binary_dataset()
    ignored = dataset_to_json(ds, bulk_prefix="p", binary_mode="Ignore")
    assert "00420011" not in ignored and "00281201" not in ignored
    assert ignored["00091001"]["BulkDataURI"] == "p/bulk/00091001"  # UN follows the prefix
    for mode in ("BulkDataURI", "Ignore"):
        bare = dataset_to_json(ds, bulk_prefix=None, binary_mode=mode)
        assert set(bare) == {"00080016", "00080018"}


def test_unknown_binary_mode() -> None:
    with pytest.raises(ValueError):
        dataset_to_json(Dataset(), bulk_prefix=None, binary_mode="Base64")


def test_meta_group_lengths_and_skip_are_excluded() -> None:
    ds = _dataset()
    ds.add_new(0x00080000, "UL", 10)
    ds.add_new(0x00020010, "UI", "1.2")
    ds.PatientID = "X"
    obj = dataset_to_json(ds, bulk_prefix=None)
    assert set(obj) == {"00080016", "00080018", "00100020"}
    assert set(dataset_to_json(ds, bulk_prefix=None, skip={0x00100020, 0x00080016})) == {
        "00080018"}


def test_without_binary_strips_every_depth() -> None:
    obj = dataset_to_json(_json_ds_with_nested_binary(), bulk_prefix="p")
    stripped = without_binary(obj)
    assert "7FE00010" not in stripped
    assert stripped["00081115"]["Value"][0] == {"00100020": {"vr": "LO", "Value": ["A"]}}


def _json_ds_with_nested_binary() -> Dataset:
    ds = _dataset()
    item = Dataset()
    item.PatientID = "A"
    item.add_new(0x00420011, "OB", b"xx")
    ds.ReferencedSeriesSequence = Sequence([item])
    ds.add_new(0x7FE00010, "OB", b"xx")
    return ds


# --- values ---------------------------------------------------------------------------


def test_invalid_number_falls_back_to_text() -> None:
    obj = _json_of(DATA / "test_files" / "badVR.dcm")
    assert obj["00280008"] == {"vr": "IS", "Value": ["1A"]}


def _explicit_le(*elements: tuple[int, bytes, bytes]) -> Dataset:
    """A dataset read from hand-made Explicit VR Little Endian bytes (PS3.5 §7.1.2)."""
    data = b""
    for tag, vr, value in elements:
        data += struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr)
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
            data += struct.pack("<HI", 0, len(value)) + value
        else:
            data += struct.pack("<H", len(value)) + value
    return pydicom.dcmread(io.BytesIO(data), force=True)


def test_integer_string_with_decimal_point() -> None:
    ds = _explicit_le((0x00200013, b"IS", b"1.0 "), (0x00280008, b"IS", b"2\\\\3 "))
    obj = dataset_to_json(ds, bulk_prefix=None)
    assert obj["00200013"] == {"vr": "IS", "Value": [1]}
    assert obj["00280008"]["Value"] == [2, None, 3]


def test_invalid_vr_becomes_un() -> None:
    ds = _explicit_le((0x00100020, b"LO", b"ID"), (0x00111001, b"XX", b"abcd"))
    obj = dataset_to_json(ds, bulk_prefix="p")
    assert obj["00111001"] == {"vr": "UN", "BulkDataURI": "p/bulk/00111001"}
    assert set(dataset_to_json(ds, bulk_prefix=None)) == {"00100020"}


def test_unconvertible_element_falls_back_to_raw_text(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _explicit_le((0x00100010, b"PN", b"Doe^J\\Roe "), (0x00100020, b"LO", b"ID"),
                      (0x00111001, b"OB", b"\x01\x02"))
    convert = pydicom.dataset.convert_raw_data_element

    def failing(raw: Any, **kwargs: Any) -> Any:
        if raw.tag in (0x00100010, 0x00111001):
            raise ValueError("cannot convert")
        return convert(raw, **kwargs)

    monkeypatch.setattr(pydicom.dataset, "convert_raw_data_element", failing)
    obj = dataset_to_json(ds, bulk_prefix="p")
    assert obj["00100010"] == {"vr": "PN", "Value": ["Doe^J", "Roe"]}
    assert obj["00100020"] == {"vr": "LO", "Value": ["ID"]}
    assert obj["00111001"] == {"vr": "OB", "BulkDataURI": "p/bulk/00111001"}
    inline = dataset_to_json(ds, bulk_prefix=None, binary_mode="InlineBinary")
    assert inline["00111001"] == {"vr": "OB", "InlineBinary": "AQI="}


def test_values_and_empty_values() -> None:
    ds = _dataset()
    ds.PatientName = "Doe^John=Д^И"
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    ds.SliceThickness = "2.50"
    ds.InstanceNumber = "7"
    ds.AccessionNumber = ""
    ds.ReferencedSeriesSequence = Sequence()
    ds.add_new(0x00209165, "AT", [0x00100010, 0x7FE00010])
    obj = dataset_to_json(ds, bulk_prefix=None)
    assert obj["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John",
                                                      "Ideographic": "Д^И"}]}
    assert obj["00080008"]["Value"] == ["ORIGINAL", None, "AXIAL"]
    assert obj["00180050"] == {"vr": "DS", "Value": [2.5]}
    assert obj["00200013"] == {"vr": "IS", "Value": [7]}
    assert obj["00080050"] == {"vr": "SH"}
    assert obj["00081115"] == {"vr": "SQ"}
    assert obj["00209165"]["Value"] == ["00100010", "7FE00010"]


def test_json_dumps_and_rebase() -> None:
    obj = {"00100010": {"vr": "LO", "Value": ['é "BulkDataURI":"x']},
           "7FE00010": {"vr": "OB", "BulkDataURI": "studies/1/bulk/7fe00010"}}
    text = json_dumps(obj)
    assert "é" in text and ", " not in text and ": " not in text
    rebased = json.loads(rebase(text, "http://host/dicom-web/"))
    assert rebased["7FE00010"]["BulkDataURI"] == "http://host/dicom-web/studies/1/bulk/7fe00010"
    assert rebased["00100010"] == obj["00100010"]


# --- XML ------------------------------------------------------------------------------


def test_xml_structure() -> None:
    ds = _json_ds_with_nested_binary()
    ds.PatientName = "Yamada^Tarou=山田^太郎"
    ds.ImageType = ["A", "", "B"]
    ds.add_new(0x00090010, "LO", "CREATOR")
    ds.add_new(0x00091001, "LO", "private\x00")
    xml = json_to_xml(dataset_to_json(ds, bulk_prefix="p", binary_mode="InlineBinary"))
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(xml)
    assert root.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"
    by_tag = {a.get("tag"): a for a in root.findall(f"{NS}DicomAttribute")}
    name = by_tag["00100010"]
    assert name.get("keyword") == "PatientName" and name.get("vr") == "PN"
    person = name.find(f"{NS}PersonName")
    assert person is not None and person.get("number") == "1"
    assert person.findtext(f"{NS}Alphabetic/{NS}FamilyName") == "Yamada"
    assert person.findtext(f"{NS}Ideographic/{NS}GivenName") == "太郎"
    values = by_tag["00080008"].findall(f"{NS}Value")
    assert [(v.get("number"), v.text) for v in values] == [("1", "A"), ("2", None), ("3", "B")]
    item = by_tag["00081115"].find(f"{NS}Item")
    assert item is not None and item.get("number") == "1"
    assert item.find(f"{NS}DicomAttribute/{NS}InlineBinary") is not None
    assert by_tag["7FE00010"].find(f"{NS}BulkData").get("uri") == "p/bulk/7fe00010"
    assert by_tag["00091001"].get("privateCreator") == "CREATOR"
    assert by_tag["00091001"].get("keyword") is None
