"""Orthanc's resource REST API (app/orthanc_api.py) through the Flask test client over real
filesystem + SQLite: ids are checked against ``orthanc_ids``, tags against pydicom's
reading of the same file, deletions against what remains in the index and the storage."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from app import create_app
from app.dicom.identifiers import orthanc_ids
from tests.api.data import ct, ct_bytes, uid
from tests.conftest import dicom_bytes, make_settings
from tests.unit.test_archive import zip_bytes

ID_KEYS = {"ID", "ParentPatient", "ParentSeries", "ParentStudy", "Path", "Status"}


def upload(client: FlaskClient, data: bytes) -> dict[str, str]:
    r = client.post("/instances", data=data, content_type="application/dicom")
    assert r.status_code == 200, r.get_data(as_text=True)
    answer: dict[str, str] = r.get_json()
    return answer


def ids_of(patient_id: str, st: str, se: str, sop: str) -> dict[str, str]:
    patient, study, series, instance = orthanc_ids(patient_id, st, se, sop)
    return {"ID": instance, "ParentPatient": patient, "ParentStudy": study,
            "ParentSeries": series}


@pytest.fixture
def archive(client: FlaskClient) -> dict[str, object]:
    """Patient P1: study A (series 1 with instances 1 and 2, series 2 MR with 3);
    patient P2: study B (one instance). Stored in that order."""
    a, b, s1, s2, s3 = uid(), uid(), uid(), uid(), uid()
    sops = [uid() for _ in range(4)]
    files = [ct_bytes(a, s1, sops[0], number=1), ct_bytes(a, s1, sops[1], number=2),
             ct_bytes(a, s2, sops[2], number=1, modality="MR"),
             ct_bytes(b, s3, sops[3], patient="ROE^JANE", patient_id="P2", date="20230505")]
    answers = [upload(client, f) for f in files]
    return {"studies": (a, b), "series": (s1, s2, s3), "sops": sops, "answers": answers,
            "files": files}


def resource_keys(client: FlaskClient, path: str) -> set[str]:
    r = client.get(path)
    assert r.status_code == 200, r.get_data(as_text=True)
    return set(r.get_json())


# --------------------------------------------------------------------------- #
# POST /instances
# --------------------------------------------------------------------------- #

def test_upload_answers_the_orthanc_ids(client: FlaskClient) -> None:
    st, se, sop = uid(), uid(), uid()
    answer = upload(client, ct_bytes(st, se, sop, patient_id="PID-7"))
    assert set(answer) == ID_KEYS
    assert {k: answer[k] for k in ID_KEYS - {"Path", "Status"}} == ids_of("PID-7", st, se, sop)
    assert answer["Path"] == f"/instances/{answer['ID']}"
    assert answer["Status"] == "Success"


def test_upload_twice_is_already_stored_unless_overwrite(client: FlaskClient,
                                                         tmp_path: Path) -> None:
    st, se, sop = uid(), uid(), uid()
    first = upload(client, ct_bytes(st, se, sop))
    again = upload(client, ct_bytes(st, se, sop, patient="OTHER^NAME"))
    assert again["Status"] == "AlreadyStored" and again["ID"] == first["ID"]
    # Kept as first stored.
    assert client.get(f"/patients/{first['ParentPatient']}").get_json()[
        "MainDicomTags"]["PatientName"] == "DOE^JOHN"

    app = create_app(make_settings(tmp_path / "o", OverwriteInstances=True))
    other = app.test_client()
    upload(other, ct_bytes(st, se, sop))
    replaced = upload(other, ct_bytes(st, se, sop, patient="OTHER^NAME"))
    assert replaced["Status"] == "Success"
    assert other.get("/instances").get_json() == [replaced["ID"]]
    assert other.get(f"/patients/{replaced['ParentPatient']}").get_json()[
        "MainDicomTags"]["PatientName"] == "OTHER^NAME"
    app.extensions["dicomweb"].index.close()


@pytest.mark.parametrize("body", [b"", b"not a dicom file at all", b"PK\x03\x04zipped"])
def test_upload_of_garbage_is_400_json(client: FlaskClient, body: bytes) -> None:
    r = client.post("/instances", data=body)
    assert r.status_code == 400
    assert r.get_json()["HttpStatus"] == 400 and r.get_json()["Message"]
    assert client.get("/instances").get_json() == []


def test_upload_refused_by_the_storage_limit_is_507(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, MaximumStorageSize=1,
                                   MaximumStorageMode="Reject"))
    big = ct_bytes(uid(), uid(), rows=800, columns=800)  # 1.28 MB > 1 MB: never fits
    r = app.test_client().post("/instances", data=big)
    assert r.status_code == 507 and r.get_json()["HttpStatus"] == 507
    app.extensions["dicomweb"].index.close()


# --------------------------------------------------------------------------- #
# POST /instances with a ZIP archive
# --------------------------------------------------------------------------- #

def dicomdir() -> bytes:
    """A DICOMDIR's shape: a DICOM file without SOPInstanceUID nor study/series UIDs."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"  # Media Storage Directory
    ds.file_meta.MediaStorageSOPInstanceUID = uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.FileSetID = "ARCHIVE"
    return dicom_bytes(ds)


def post_zip(client: FlaskClient, data: bytes) -> tuple[int, object]:
    r = client.post("/instances", data=data, content_type="application/zip")
    return r.status_code, r.get_json()


def test_zip_stores_every_dicom_member_and_answers_one_object_each(
        client: FlaskClient) -> None:
    st, se = uid(), uid()
    sops = [uid() for _ in range(3)]
    data = zip_bytes({
        "STUDY/": b"",
        "STUDY/SERIES/": b"",
        "STUDY/SERIES/IM1": ct_bytes(st, se, sops[0], number=1),
        "README.txt": b"not DICOM, skipped as Orthanc does",
        "STUDY/empty.dcm": b"",
        "STUDY/SERIES/IM2": ct_bytes(st, se, sops[1], number=2),
        "DICOMDIR": dicomdir(),  # DICOM without instance UIDs: skipped
        "other/IM3.dcm": ct_bytes(st, se, sops[2], number=3),
    })
    status, answer = post_zip(client, data)
    assert status == 200 and isinstance(answer, list)
    assert [{k: a[k] for k in ID_KEYS - {"Path", "Status"}} for a in answer] == [
        ids_of("P1", st, se, sop) for sop in sops]  # the archive's order
    assert all(set(a) == ID_KEYS and a["Status"] == "Success" and
               a["Path"] == f"/instances/{a['ID']}" for a in answer)
    assert client.get("/instances").get_json() == [a["ID"] for a in answer]
    stored = client.get(f"/instances/{answer[1]['ID']}/file").get_data()
    assert stored == ct_bytes(st, se, sops[1], number=2)  # byte for byte

    status, again = post_zip(client, data)
    assert status == 200 and [a["Status"] for a in again] == ["AlreadyStored"] * 3
    assert [a["ID"] for a in again] == [a["ID"] for a in answer]


def test_zip_members_go_through_the_storage_policy(tmp_path: Path) -> None:
    """OverwriteInstances replaces; a quota refusal (Reject) stops there with 507, the
    members before it staying stored, as Orthanc does."""
    st, se, sop = uid(), uid(), uid()
    app = create_app(make_settings(tmp_path / "o", OverwriteInstances=True))
    client = app.test_client()
    upload(client, ct_bytes(st, se, sop))
    status, answer = post_zip(client, zip_bytes({"a": ct_bytes(st, se, sop, patient="NEW^NAME")}))
    assert status == 200 and answer[0]["Status"] == "Success"  # type: ignore[index]
    assert client.get(f"/patients/{answer[0]['ParentPatient']}").get_json()[  # type: ignore[index]
        "MainDicomTags"]["PatientName"] == "NEW^NAME"
    app.extensions["dicomweb"].index.close()

    app = create_app(make_settings(tmp_path / "r", MaximumStorageSize=1,
                                   MaximumStorageMode="Reject"))
    client = app.test_client()
    small, big = ct_bytes(uid(), uid()), ct_bytes(uid(), uid(), rows=800, columns=800)
    status, error = post_zip(client, zip_bytes({"small": small, "big": big, "after": small}))
    assert status == 507 and "'big'" in error["Message"]  # type: ignore[index]
    assert "1 member(s) before it were stored" in error["Message"]  # type: ignore[index]
    assert len(client.get("/instances").get_json()) == 1
    app.extensions["dicomweb"].index.close()


def test_an_empty_zip_stores_nothing(client: FlaskClient) -> None:
    assert post_zip(client, zip_bytes({})) == (200, [])
    assert post_zip(client, zip_bytes({"d/": b"", "notes.txt": b"hello"})) == (200, [])


def test_an_encrypted_zip_is_a_clear_400_and_stores_nothing(client: FlaskClient) -> None:
    data = bytearray(zip_bytes({"IM1": ct_bytes(uid(), uid()), "IM2": ct_bytes(uid(), uid())}))
    entry = data.rfind(b"PK\x01\x02")  # the last central directory entry: IM2
    data[entry + 8] |= 0x01  # general purpose flag bit 0: encrypted
    status, error = post_zip(client, bytes(data))
    assert status == 400 and "'IM2' is encrypted" in error["Message"]  # type: ignore[index]
    assert client.get("/instances").get_json() == []


def test_zip_limits_refuse_the_whole_archive_first(tmp_path: Path) -> None:
    """MaximumArchiveMembers, MaximumRequestSize per member (what one upload may be) and
    MaximumArchiveSize are checked from the central directory: 413, nothing stored."""
    two = zip_bytes({"a": ct_bytes(uid(), uid()), "b": ct_bytes(uid(), uid())})
    large = zip_bytes({"a": ct_bytes(uid(), uid()),
                    "big": ct_bytes(uid(), uid(), rows=1024, columns=1024,
                                    pixels=np.zeros((1, 1024, 1024), np.uint16))})
    assert len(large) < 1 << 20  # 2 MiB of pixels deflate to a few KB
    cases = [({"MaximumArchiveMembers": 1}, two, "MaximumArchiveMembers (1)"),
             ({"MaximumRequestSize": 1}, large, "'big'"),
             ({"MaximumArchiveSize": 1}, large, "MaximumArchiveSize (1 MiB)")]
    for number, (limits, data, message) in enumerate(cases):
        app = create_app(make_settings(tmp_path / str(number), Limits=limits))
        client = app.test_client()
        status, error = post_zip(client, data)
        assert status == 413 and message in error["Message"], (limits, error)  # type: ignore[index]
        assert client.get("/instances").get_json() == []
        assert post_zip(client, zip_bytes({"a": ct_bytes(uid(), uid())}))[0] == 200
        app.extensions["dicomweb"].index.close()


def test_a_zip_bomb_is_refused_before_anything_is_stored(client: FlaskClient) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("IM1", ct_bytes(uid(), uid()))
        z.writestr("bomb", b"\0" * (50 << 20), compress_type=zipfile.ZIP_BZIP2)
    status, error = post_zip(client, out.getvalue())
    assert status == 400 and "zip bomb" in error["Message"]  # type: ignore[index]
    assert client.get("/instances").get_json() == []


def test_read_only_refuses_a_zip(read_only: FlaskClient) -> None:
    status, error = post_zip(read_only, zip_bytes({"a": ct_bytes(uid(), uid())}))
    assert status == 405 and "read-only" in error["Message"]  # type: ignore[index]
    assert len(read_only.get("/instances").get_json()) == 1


# --------------------------------------------------------------------------- #
# Listing and resources
# --------------------------------------------------------------------------- #

def test_lists_in_the_order_stored_with_paging(client: FlaskClient, archive: dict) -> None:
    answers = archive["answers"]
    instances = [a["ID"] for a in answers]
    assert client.get("/instances").get_json() == instances
    assert client.get("/instances?since=1&limit=2").get_json() == instances[1:3]
    assert client.get("/instances?limit=1").get_json() == instances[:1]
    assert client.get("/instances?since=3").get_json() == instances[3:]
    assert client.get("/patients").get_json() == [answers[0]["ParentPatient"],
                                                  answers[3]["ParentPatient"]]
    assert len(client.get("/series").get_json()) == 3
    expanded = client.get("/studies?expand").get_json()
    assert [s["ID"] for s in expanded] == client.get("/studies").get_json()
    assert all(s["Type"] == "Study" for s in expanded)
    assert client.get("/studies?expand=false").get_json() == client.get("/studies").get_json()
    r = client.get("/studies?limit=x")
    assert r.status_code == 400 and r.get_json()["HttpStatus"] == 400


def test_patient_and_study_shapes(client: FlaskClient, archive: dict) -> None:
    first = archive["answers"][0]
    patient = client.get(f"/patients/{first['ParentPatient']}").get_json()
    assert set(patient) == {"ID", "IsStable", "Labels", "LastUpdate", "MainDicomTags",
                            "Studies", "Type"}
    assert patient["Type"] == "Patient" and patient["Studies"] == [first["ParentStudy"]]
    assert patient["MainDicomTags"] == {"PatientBirthDate": "19700101", "PatientID": "P1",
                                        "PatientName": "DOE^JOHN", "PatientSex": "M"}
    assert patient["IsStable"] is False  # just stored (StableAge 60 s)
    assert len(patient["LastUpdate"]) == 15 and patient["LastUpdate"][8] == "T"
    study = client.get(f"/studies/{first['ParentStudy']}").get_json()
    assert list(study) == sorted(study)  # jsoncpp's key order
    assert set(study) == {"ID", "IsStable", "Labels", "LastUpdate", "MainDicomTags",
                          "ParentPatient", "PatientMainDicomTags", "Series", "Type"}
    assert study["ParentPatient"] == first["ParentPatient"]
    assert study["Series"] == [first["ParentSeries"], archive["answers"][2]["ParentSeries"]]
    assert study["MainDicomTags"] == {
        "AccessionNumber": "ACCP1", "StudyDate": "20240102", "StudyDescription": "Chest",
        "StudyID": "1", "StudyInstanceUID": archive["studies"][0], "StudyTime": "101500"}
    assert study["PatientMainDicomTags"] == patient["MainDicomTags"]


def test_series_and_instance_shapes(client: FlaskClient, archive: dict) -> None:
    first, second = archive["answers"][:2]
    series = client.get(f"/series/{first['ParentSeries']}").get_json()
    assert set(series) == {"ExpectedNumberOfInstances", "ID", "Instances", "IsStable",
                           "Labels", "LastUpdate", "MainDicomTags", "ParentStudy", "Status",
                           "Type"}
    assert series["Instances"] == [first["ID"], second["ID"]]
    assert series["Status"] == "Unknown" and series["ExpectedNumberOfInstances"] is None
    assert series["MainDicomTags"] == {"Modality": "CT", "SeriesDescription": "Axial",
                                       "SeriesInstanceUID": archive["series"][0],
                                       "SeriesNumber": "1"}
    instance = client.get(f"/instances/{second['ID']}").get_json()
    assert set(instance) == {"FileSize", "FileUuid", "ID", "IndexInSeries", "Labels",
                             "MainDicomTags", "ParentSeries", "Type"}
    assert instance["FileSize"] == len(archive["files"][1])
    assert instance["IndexInSeries"] == 2
    assert instance["MainDicomTags"] == {"InstanceNumber": "2",
                                         "SOPInstanceUID": archive["sops"][1]}


def test_main_tags_full_and_short_formats(client: FlaskClient, archive: dict) -> None:
    study_id = archive["answers"][0]["ParentStudy"]
    full = client.get(f"/studies/{study_id}?full").get_json()["MainDicomTags"]
    assert full["0008,0050"] == {"Name": "AccessionNumber", "Type": "String",
                                 "Value": "ACCP1"}
    short = client.get(f"/studies/{study_id}?short").get_json()
    assert short["MainDicomTags"]["0020,000d"] == archive["studies"][0]
    assert short["PatientMainDicomTags"]["0010,0020"] == "P1"


def test_main_series_tags_held_by_instances_come_from_the_first(client: FlaskClient) -> None:
    st, se = uid(), uid()
    upload(client, ct_bytes(st, se, ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                            SequenceName="SE1"))
    series = client.get("/series?expand").get_json()[0]
    assert series["MainDicomTags"]["ImageOrientationPatient"] == "1\\0\\0\\0\\1\\0"
    assert series["MainDicomTags"]["SequenceName"] == "SE1"


def test_children_and_parent_routes(client: FlaskClient, archive: dict) -> None:
    a = archive["answers"]
    patient, study = a[0]["ParentPatient"], a[0]["ParentStudy"]
    assert [s["ID"] for s in client.get(f"/patients/{patient}/studies").get_json()] == [study]
    assert [s["ID"] for s in client.get(f"/patients/{patient}/series").get_json()] == [
        a[0]["ParentSeries"], a[2]["ParentSeries"]]
    assert {i["ID"] for i in client.get(f"/studies/{study}/instances").get_json()} == {
        a[0]["ID"], a[1]["ID"], a[2]["ID"]}
    assert client.get(f"/instances/{a[1]['ID']}/patient").get_json()["ID"] == patient
    assert client.get(f"/instances/{a[1]['ID']}/series").get_json()["ID"] == a[0]["ParentSeries"]
    assert client.get(f"/series/{a[0]['ParentSeries']}/study").get_json()["ID"] == study
    assert client.get(f"/studies/{study}/patient").get_json()["Type"] == "Patient"
    assert client.get(f"/series/{a[0]['ParentSeries']}/studies").status_code == 404
    assert client.get(f"/patients/{patient}/patient").status_code == 404


def test_unknown_ids_are_404_json(client: FlaskClient, archive: dict) -> None:
    for path in ("/patients/nope", "/studies/0000", "/series/x", "/instances/x",
                 "/instances/x/file", "/instances/x/tags", "/instances/x/content",
                 "/instances/x/rendered", "/plugins/nope"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.get_json()["HttpStatus"] == 404, path
    assert client.delete("/studies/nope").status_code == 404
    # An id of another level is unknown at this one.
    assert client.get(f"/studies/{archive['answers'][0]['ParentSeries']}").status_code == 404


def test_wrong_methods_are_405_with_allow(client: FlaskClient) -> None:
    r = client.put("/instances")
    assert r.status_code == 405 and r.get_json()["HttpStatus"] == 405
    assert {m.strip() for m in r.headers["Allow"].split(",")} >= {"GET", "POST"}
    r = client.post("/patients")
    assert r.status_code == 405 and "POST" not in r.headers["Allow"]
    r = client.get("/tools/find")
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["Allow"].split(",")} == {"POST", "OPTIONS"}
    assert client.post("/system").status_code == 405


# --------------------------------------------------------------------------- #
# DELETE
# --------------------------------------------------------------------------- #

def _blobs(app: Flask) -> int:
    return sum(1 for _ in app.extensions["dicomweb"].storage.keys())


def test_delete_cascades_and_names_the_remaining_ancestor(app: Flask, client: FlaskClient,
                                                          archive: dict) -> None:
    a = archive["answers"]
    assert _blobs(app) == 4
    r = client.delete(f"/instances/{a[0]['ID']}")
    assert r.status_code == 200
    assert r.get_json() == {"RemainingAncestor": {
        "ID": a[0]["ParentSeries"], "Path": f"/series/{a[0]['ParentSeries']}",
        "Type": "Series"}}
    assert client.get(f"/instances/{a[0]['ID']}").status_code == 404
    assert _blobs(app) == 3
    # The series' last instance: the series goes, its study remains.
    r = client.delete(f"/instances/{a[1]['ID']}")
    assert r.get_json()["RemainingAncestor"]["ID"] == a[0]["ParentStudy"]
    assert client.get(f"/series/{a[0]['ParentSeries']}").status_code == 404
    # A whole study: the patient (with nothing left) goes too.
    r = client.delete(f"/studies/{a[2]['ParentStudy']}")
    assert r.get_json() == {"RemainingAncestor": None}
    assert client.get("/patients").get_json() == [a[3]["ParentPatient"]]
    r = client.delete(f"/patients/{a[3]['ParentPatient']}")
    assert r.get_json() == {"RemainingAncestor": None}
    for level in ("patients", "studies", "series", "instances"):
        assert client.get(f"/{level}").get_json() == [], level
    assert _blobs(app) == 0
    assert client.get("/statistics").get_json()["CountInstances"] == 0


def test_delete_of_a_series_keeps_the_study_with_other_series(client: FlaskClient,
                                                              archive: dict) -> None:
    a = archive["answers"]
    r = client.delete(f"/series/{a[2]['ParentSeries']}")
    assert r.get_json()["RemainingAncestor"] == {
        "ID": a[0]["ParentStudy"], "Path": f"/studies/{a[0]['ParentStudy']}", "Type": "Study"}
    assert client.get(f"/studies/{a[0]['ParentStudy']}").get_json()["Series"] == [
        a[0]["ParentSeries"]]


# --------------------------------------------------------------------------- #
# One instance: file, tags, content, rendered
# --------------------------------------------------------------------------- #

def rich_dataset() -> Dataset:
    """Sequences, multi-valued numbers, binary, private and over-long values."""
    ds = ct(uid(), uid(), uid(), rows=4, columns=4)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PixelSpacing = ["0.5", "0.25"]
    ds.WindowCenter = "40"
    ds.FrameTimeVector = [0.5, 1.25]  # DS
    ds.RecommendedDisplayFrameRate = 25  # IS
    ds.SliceThickness = "1.5"
    ds.add_new(0x00181310, "US", [0, 4, 4, 0])  # AcquisitionMatrix
    ds.add_new(0x00189087, "FD", 1000.0)  # DiffusionBValue
    ds.add_new(0x00209057, "UL", 7)  # InStackPositionNumber
    ds.StudyComments = "x" * 300  # LT, longer than Orthanc shows
    ds.add_new(0x00090010, "LO", "PRIVATE CREATOR")
    ds.add_new(0x00091011, "SH", "private value")
    ds.add_new(0x00291020, "OB", b"\x01\x02\x03\x04")  # no creator: none named
    item1, item2 = Dataset(), Dataset()
    item1.ReferencedSOPClassUID, item1.ReferencedSOPInstanceUID = "1.2.3", "1.2.3.4"
    item2.ReferencedSOPClassUID, item2.ReferencedSOPInstanceUID = "1.2.3", "1.2.3.5"
    inner = Dataset()
    inner.CodeValue, inner.CodeMeaning = "T-1", "Chest"
    item2.AnatomicRegionSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item1, item2])
    return ds


def expected_full(ds: Dataset) -> dict[str, dict]:
    """What /tags must say, from pydicom's reading of the file."""
    out = {}
    for elem in ds:
        key = f"{elem.tag.group:04x},{elem.tag.element:04x}"
        if elem.VR == "SQ":
            out[key] = {"Name": elem.keyword, "Type": "Sequence",
                        "Value": [expected_full(item) for item in elem.value]}
            continue
        node: dict = {"Name": elem.keyword or "Unknown Tag & Data"}
        if elem.tag.group == 0x0009 and elem.tag.element >= 0x1000:
            node["PrivateCreator"] = "PRIVATE CREATOR"
        if elem.tag.is_private and elem.tag.element < 0x100:
            node["Name"] = "PrivateCreator"
        if elem.VR in ("OB", "OW", "UN"):
            node.update(Type="Null", Value=None)
        else:
            values = elem.value if elem.VM > 1 else [elem.value]
            text = "\\".join(format(v, ".17g") if elem.VR == "FD" else str(v)
                             for v in values)
            node.update(Type="TooLong", Value=None) if len(text) > 256 else node.update(
                Type="String", Value=text)
        out[key] = node
    return out


@pytest.fixture
def rich(client: FlaskClient) -> tuple[str, bytes, Dataset]:
    data = dicom_bytes(rich_dataset())
    return upload(client, data)["ID"], data, pydicom.dcmread(io.BytesIO(data))


def test_file_is_the_stored_file(client: FlaskClient, rich: tuple) -> None:
    id_, data, _ = rich
    r = client.get(f"/instances/{id_}/file")
    assert r.status_code == 200 and r.content_type == "application/dicom"
    assert r.data == data and r.headers["Content-Length"] == str(len(data))


def test_tags_match_pydicom(client: FlaskClient, rich: tuple) -> None:
    id_, _, ds = rich
    tags = client.get(f"/instances/{id_}/tags").get_json()
    assert tags == expected_full(ds)
    assert tags["0008,0008"]["Value"] == "ORIGINAL\\PRIMARY\\AXIAL"
    assert tags["0018,1310"]["Value"] == "0\\4\\4\\0"
    assert tags["0032,4000"] == {"Name": "StudyComments", "Type": "TooLong", "Value": None}
    assert tags["7fe0,0010"] == {"Name": "PixelData", "Type": "Null", "Value": None}


def test_simplified_and_short_tags(client: FlaskClient, rich: tuple) -> None:
    id_, _, ds = rich
    simple = client.get(f"/instances/{id_}/simplified-tags").get_json()
    assert simple == client.get(f"/instances/{id_}/tags?simplify").get_json()
    assert simple["PatientName"] == "DOE^JOHN" and simple["PixelSpacing"] == "0.5\\0.25"
    assert simple["StudyComments"] is None and simple["PixelData"] is None
    assert simple["ReferencedImageSequence"][1]["AnatomicRegionSequence"] == [
        {"CodeMeaning": "Chest", "CodeValue": "T-1"}]
    assert list(simple) == sorted(simple)
    short = client.get(f"/instances/{id_}/tags?short").get_json()
    assert short["0010,0010"] == "DOE^JOHN"
    assert short["0008,1140"][0] == {"0008,1150": "1.2.3", "0008,1155": "1.2.3.4"}
    assert set(short) == {f"{e.tag.group:04x},{e.tag.element:04x}" for e in ds}


def test_content_navigates_data_sets_and_sequences(client: FlaskClient, rich: tuple) -> None:
    id_, _, ds = rich
    base = f"/instances/{id_}/content"
    assert client.get(base).get_json() == [f"{e.tag.group:04x}-{e.tag.element:04x}"
                                           for e in ds]
    _, data, _ = rich
    raw = pydicom.dcmread(io.BytesIO(data)).get_item(0x00100010).value  # as stored
    r = client.get(base + "/0010-0010")
    assert r.data == raw and r.content_type == "application/octet-stream"
    assert client.get(base + "/PatientName").data == raw  # a keyword also names the tag
    assert client.get(base + "/0008-1140").get_json() == ["0", "1"]
    assert client.get(base + "/0008-1140/1").get_json() == ["0008-1150", "0008-1155",
                                                            "0008-2218"]
    assert client.get(base + "/0008-1140/1/0008-1155").data.rstrip(b"\0") == b"1.2.3.5"
    assert client.get(base + "/0008-1140/1/0008-2218/0/0008-0104").data.rstrip() == b"Chest"
    assert client.get(base + "/0029-1020").data == b"\x01\x02\x03\x04"
    assert client.get(base + "/0032-4000").data == b"x" * 300
    for missing in ("/0008-1140/2", "/0010-1010", "/0008-1140/x", "/0008-1140/0/0008-2218"):
        assert client.get(base + missing).status_code == 404, missing
    assert client.get(base + "/NotAKeyword").status_code == 400


def test_content_of_pixel_data_blocks(client: FlaskClient) -> None:
    native = ct(uid(), uid(), uid(), rows=4, columns=4)
    id_ = upload(client, dicom_bytes(native))["ID"]
    assert client.get(f"/instances/{id_}/content/7fe0-0010").get_json() == ["0"]
    assert client.get(f"/instances/{id_}/content/7fe0-0010/0").data == native.PixelData
    assert client.get(f"/instances/{id_}/content/7fe0-0010/1").status_code == 404
    rle = ct(uid(), uid(), uid(), rows=8, columns=8, frames=2)
    rle.compress(RLELossless, generate_instance_uid=False)
    id_ = upload(client, dicom_bytes(rle))["ID"]
    # The Basic Offset Table first, then one fragment per frame (as Orthanc lists them).
    assert client.get(f"/instances/{id_}/content/7fe0-0010").get_json() == ["0", "1", "2"]
    fragments = list(pydicom.encaps.generate_fragments(rle.PixelData[8 + len(
        pydicom.encaps.parse_basic_offsets(rle.PixelData)) * 4:]))
    assert client.get(f"/instances/{id_}/content/7fe0-0010/2").data == fragments[1]


def test_large_values_are_streamed_by_ranges(client: FlaskClient) -> None:
    pixels = (np.arange(256 * 256, dtype=np.uint16) % 4096).reshape(1, 256, 256)
    ds = ct(uid(), uid(), uid(), rows=256, columns=256, pixels=pixels)
    id_ = upload(client, dicom_bytes(ds))["ID"]
    r = client.get(f"/instances/{id_}/content/7fe0-0010/0")
    assert r.headers["Content-Length"] == str(256 * 256 * 2)
    assert r.data == ds.PixelData


def test_rendered_png_by_default_jpeg_on_request(client: FlaskClient) -> None:
    frames = np.stack([np.full((8, 8), 0, np.uint16), np.full((8, 8), 4000, np.uint16)])
    ds = ct(uid(), uid(), uid(), rows=8, columns=8, frames=2, pixels=frames,
            WindowCenter="2000", WindowWidth="4000")
    id_ = upload(client, dicom_bytes(ds))["ID"]
    r = client.get(f"/instances/{id_}/rendered")
    assert r.status_code == 200 and r.content_type == "image/png"
    first = np.asarray(Image.open(io.BytesIO(r.data)))
    second = np.asarray(Image.open(io.BytesIO(
        client.get(f"/instances/{id_}/frames/1/rendered").data)))
    assert first.max() < 10 and second.min() > 245  # frames are 0-based, as in Orthanc
    assert client.get(f"/instances/{id_}/frames/0/rendered").data == r.data
    assert client.get(f"/instances/{id_}/frames/2/rendered").status_code == 404
    jpeg = client.get(f"/instances/{id_}/rendered?quality=80",
                      headers={"Accept": "image/jpeg"})
    assert jpeg.content_type == "image/jpeg" and jpeg.data[:2] == b"\xff\xd8"
    small = client.get(f"/instances/{id_}/rendered?width=4")
    assert Image.open(io.BytesIO(small.data)).size == (4, 4)
    windowed = client.get(f"/instances/{id_}/frames/1/rendered"
                          "?window-center=10000&window-width=100")
    assert np.asarray(Image.open(io.BytesIO(windowed.data))).max() < 10
    assert client.get(f"/instances/{id_}/rendered",
                      headers={"Accept": "application/pdf"}).status_code == 406
    assert client.get(f"/instances/{id_}/frames").get_json() == [0, 1]


# --------------------------------------------------------------------------- #
# Tools
# --------------------------------------------------------------------------- #

def find(client: FlaskClient, body: object, status: int = 200) -> object:
    r = client.post("/tools/find", json=body)
    assert r.status_code == status, r.get_data(as_text=True)
    return r.get_json()


def test_find_by_attributes_at_every_level(client: FlaskClient, archive: dict) -> None:
    a = archive["answers"]
    assert find(client, {"Level": "Patient", "Query": {"PatientName": "doe*"}}) == [
        a[0]["ParentPatient"]]
    assert find(client, {"Level": "Patient", "Query": {}}) == [a[0]["ParentPatient"],
                                                               a[3]["ParentPatient"]]
    assert find(client, {"Level": "Study", "Query": {"StudyDate": "20240101-"}}) == [
        a[0]["ParentStudy"]]
    assert find(client, {"Level": "Series", "Query": {"Modality": "MR"}}) == [
        a[2]["ParentSeries"]]
    assert find(client, {"Level": "Series", "Query": {"Modality": "MR\\CT"}}) == [
        a[0]["ParentSeries"], a[2]["ParentSeries"], a[3]["ParentSeries"]]
    assert find(client, {"Level": "Instance", "Query": {
        "SOPInstanceUID": archive["sops"][1]}}) == [a[1]["ID"]]
    assert find(client, {"Level": "Study", "Query": {"0010,0020": "P2"}}) == [
        a[3]["ParentStudy"]]
    # Case-insensitive unless asked (CaseSensitivePN false).
    assert find(client, {"Level": "Study", "Query": {"PatientName": "ROE^JANE"},
                         "CaseSensitive": True}) == [a[3]["ParentStudy"]]
    assert find(client, {"Level": "Study", "Query": {"PatientName": "roe^jane"},
                         "CaseSensitive": True}) == []


def test_find_pages_and_expands(client: FlaskClient, archive: dict) -> None:
    a = archive["answers"]
    every = find(client, {"Level": "Instance", "Query": {}})
    assert every == [x["ID"] for x in a]
    assert find(client, {"Level": "Instance", "Query": {}, "Since": 1, "Limit": 2}) == every[1:3]
    assert find(client, {"Level": "Patient", "Query": {}, "Since": 1}) == [a[3]["ParentPatient"]]
    expanded = find(client, {"Level": "Study", "Query": {"PatientID": "P1"}, "Expand": True})
    assert expanded == [client.get(f"/studies/{a[0]['ParentStudy']}").get_json()]


def test_find_is_capped_by_limit_find_results(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, LimitFindResults=1))
    client = app.test_client()
    for _ in range(3):
        upload(client, ct_bytes(uid(), uid()))
    assert len(find(client, {"Level": "Study", "Query": {}})) == 1
    assert len(find(client, {"Level": "Instance", "Query": {}})) == 3  # LimitFindInstances
    app.extensions["dicomweb"].index.close()


@pytest.mark.parametrize("body", [
    None, [], {"Query": {}}, {"Level": "Galaxy", "Query": {}},
    {"Level": "Study", "Query": {"NotATag": "x"}}, {"Level": "Study", "Query": {"PatientID": 3}},
    {"Level": "Study", "Query": []}, {"Level": "Study", "Query": {}, "Limit": -1},
    {"Level": "Study", "Query": {}, "Expand": "yes"},
    {"Level": "Study", "Query": {"StudyDate": "2024-13-45"}},
])
def test_find_bad_bodies_are_400(client: FlaskClient, body: object) -> None:
    assert find(client, body, 400)["HttpStatus"] == 400


def test_find_malformed_json_is_400(client: FlaskClient) -> None:
    r = client.post("/tools/find", data=b"{nope", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["HttpStatus"] == 400


def test_lookup_by_identifier(client: FlaskClient, archive: dict) -> None:
    a = archive["answers"]

    def lookup(value: str) -> list:
        r = client.post("/tools/lookup", data=value)
        assert r.status_code == 200
        return r.get_json()

    assert lookup("P2") == [{"ID": a[3]["ParentPatient"], "Path":
                             f"/patients/{a[3]['ParentPatient']}", "Type": "Patient"}]
    assert lookup(archive["studies"][0] + "\n") == [{
        "ID": a[0]["ParentStudy"], "Path": f"/studies/{a[0]['ParentStudy']}", "Type": "Study"}]
    assert [x["Type"] for x in lookup("ACCP1")] == ["Study"]
    assert lookup(archive["series"][1])[0]["ID"] == a[2]["ParentSeries"]
    assert lookup(archive["sops"][3]) == [{"ID": a[3]["ID"], "Path": f"/instances/{a[3]['ID']}",
                                           "Type": "Instance"}]
    assert lookup("P*") == [] and lookup("nothing") == [] and lookup("") == []


# --------------------------------------------------------------------------- #
# System, statistics, changes, plugins, info
# --------------------------------------------------------------------------- #

def test_system(client: FlaskClient) -> None:
    system = client.get("/system").get_json()
    assert system["Name"] == "DICOMweb" and system["PluginsEnabled"] is True
    assert isinstance(system["ApiVersion"], int) and system["Version"]
    assert system["DatabaseBackendPlugin"] is None and system["StorageAreaPlugin"] is None
    assert system["ReadOnly"] is False and system["CheckRevisions"] is False
    assert system["HttpPort"] == 8042


def test_statistics(client: FlaskClient, archive: dict) -> None:
    stats = client.get("/statistics").get_json()
    size = sum(len(f) for f in archive["files"])
    assert stats == {"CountInstances": 4, "CountPatients": 2, "CountSeries": 3,
                     "CountStudies": 2, "TotalDiskSize": str(size), "TotalDiskSizeMB": 0,
                     "TotalUncompressedSize": str(size), "TotalUncompressedSizeMB": 0}


def test_changes_page_through_the_log(client: FlaskClient, archive: dict) -> None:
    a = archive["answers"]
    every = client.get("/changes").get_json()
    assert every["Done"] is True and every["Last"] == every["Changes"][-1]["Seq"]
    kinds = {(c["ChangeType"], c["ID"]) for c in every["Changes"]}
    assert {("NewInstance", x["ID"]) for x in a} <= kinds
    assert ("NewPatient", a[3]["ParentPatient"]) in kinds
    change = every["Changes"][0]
    assert set(change) == {"ChangeType", "Date", "ID", "Path", "ResourceType", "Seq"}
    assert change["Path"].endswith(change["ID"]) and len(change["Date"]) == 15
    page = client.get("/changes?limit=2").get_json()
    assert page["Changes"] == every["Changes"][:2] and page["Done"] is False
    rest = client.get(f"/changes?since={page['Last']}&limit=1000").get_json()
    assert page["Changes"] + rest["Changes"] == every["Changes"] and rest["Done"] is True
    last = client.get("/changes?last").get_json()
    assert last["Changes"] == every["Changes"][-1:]
    client.delete(f"/instances/{a[3]['ID']}")
    after = client.get(f"/changes?since={every['Last']}").get_json()
    assert ("Deleted", "Instance", a[3]["ID"]) in {
        (c["ChangeType"], c["ResourceType"], c["ID"]) for c in after["Changes"]}


def test_delete_changes_empties_the_log(client: FlaskClient, archive: dict) -> None:
    last = client.get("/changes").get_json()["Last"]
    assert client.delete("/changes").get_json() == {}
    assert client.get("/changes").get_json()["Changes"] == []
    client.delete(f"/instances/{archive['answers'][0]['ID']}")
    after = client.get(f"/changes?since={last}").get_json()["Changes"]
    assert after and all(c["Seq"] > last for c in after)


def test_plugins_name_the_dicomweb_plugin(client: FlaskClient) -> None:
    assert client.get("/plugins").get_json() == ["dicom-web"]
    plugin = client.get("/plugins/dicom-web").get_json()
    assert plugin["ID"] == "dicom-web" and plugin["Version"]
    assert plugin["RootUri"] == "../dicom-web/app/client/index.html"


def test_info_under_the_dicomweb_root(client: FlaskClient, tmp_path: Path) -> None:
    assert client.get("/dicom-web/info").get_json() == {"DicomWebRoot": "/dicom-web/",
                                                        "OrthancApiRoot": "./../"}
    app = create_app(make_settings(tmp_path / "r", DicomWeb={"Root": "/a/web/"}))
    assert app.test_client().get("/a/web/info").get_json() == {
        "DicomWebRoot": "/a/web/", "OrthancApiRoot": "./../../"}
    assert app.test_client().get("/dicom-web/info").status_code == 404
    app.extensions["dicomweb"].index.close()


# --------------------------------------------------------------------------- #
# ReadOnly and roles
# --------------------------------------------------------------------------- #

@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[FlaskClient]:
    writable = create_app(make_settings(tmp_path))
    stored = upload(writable.test_client(), ct_bytes(uid(), uid()))
    writable.extensions["dicomweb"].index.close()
    app = create_app(make_settings(tmp_path, ReadOnly=True))
    client = app.test_client()
    client.stored = stored  # type: ignore[attr-defined]
    yield client
    app.extensions["dicomweb"].index.close()


def test_read_only_refuses_upload_and_delete(read_only: FlaskClient) -> None:
    stored = read_only.stored  # type: ignore[attr-defined]
    r = read_only.post("/instances", data=ct_bytes(uid(), uid()))
    assert r.status_code == 405 and "read-only" in r.get_json()["Message"]
    assert "POST" not in r.headers["Allow"] and "GET" in r.headers["Allow"]
    r = read_only.delete(f"/patients/{stored['ParentPatient']}")
    assert r.status_code == 405 and "DELETE" not in r.headers["Allow"]
    assert read_only.get("/instances").get_json() == [stored["ID"]]
    assert read_only.post("/tools/find", json={"Level": "Study", "Query": {}}).get_json() == [
        stored["ParentStudy"]]
    assert read_only.get("/system").get_json()["ReadOnly"] is True


def _auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_read_only_role_may_search_by_post_but_not_write(tmp_path: Path) -> None:
    app = create_app(make_settings(
        tmp_path, AuthenticationEnabled=True, RegisteredUsers={"r": "rpw", "w": "wpw"},
        UserRoles={"r": "read-only", "w": "admin"}))
    client = app.test_client()
    reader, admin = _auth("r", "rpw"), _auth("w", "wpw")
    stored = client.post("/instances", data=ct_bytes(uid(), uid()), headers=admin).get_json()
    r = client.post("/tools/find", json={"Level": "Study", "Query": {}}, headers=reader)
    assert r.status_code == 200 and r.get_json() == [stored["ParentStudy"]]
    r = client.post("/tools/lookup", data=stored["ParentStudy"], headers=reader)
    assert r.status_code == 200
    assert client.post("/instances", data=ct_bytes(uid(), uid()),
                       headers=reader).status_code == 403
    assert client.delete(f"/instances/{stored['ID']}", headers=reader).status_code == 403
    assert client.post("/tools/find", json={}).status_code == 401
    app.extensions["dicomweb"].index.close()
