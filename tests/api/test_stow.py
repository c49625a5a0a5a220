"""STOW-RS through the Flask test client over real filesystem + SQLite."""

from __future__ import annotations

import io

from flask.testing import FlaskClient

from tests.api.data import ct_bytes, uid
from tests.conftest import make_settings, stow_body

REFERENCED, FAILED, RETRIEVE_URL = "00081199", "00081198", "00081190"


def post(client: FlaskClient, files: list[bytes], path: str = "/dicom-web/studies",
         **headers: str):  # type: ignore[no-untyped-def]
    body, ctype = stow_body(files)
    return client.post(path, data=body, headers={"Content-Type": ctype, **headers})


def test_store_two_instances_answers_200_with_references(client: FlaskClient) -> None:
    st, se = uid(), uid()
    r = post(client, [ct_bytes(st, se, number=1), ct_bytes(st, se, number=2)])
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.content_type == "application/dicom+json"
    body = r.get_json()
    assert len(body[REFERENCED]["Value"]) == 2
    assert FAILED not in body
    assert body[RETRIEVE_URL]["Value"][0] == f"http://localhost/dicom-web/studies/{st}"
    item = body[REFERENCED]["Value"][0]
    assert item["00081190"]["Value"][0].startswith(f"http://localhost/dicom-web/studies/{st}/")


def test_restore_replaces_and_keeps_one_copy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app import create_app

    app = create_app(make_settings(tmp_path, OverwriteInstances=True))
    client = app.test_client()
    st, se, sop = uid(), uid(), uid()
    assert post(client, [ct_bytes(st, se, sop, patient="FIRST^ONE")]).status_code == 200
    assert post(client, [ct_bytes(st, se, sop, patient="SECOND^TWO")]).status_code == 200
    found = client.get(f"/dicom-web/studies/{st}/instances").get_json()
    assert len(found) == 1
    storage = app.extensions["dicomweb"].storage
    assert len(list(storage.keys())) == 1
    names = client.get(f"/dicom-web/studies?StudyInstanceUID={st}").get_json()
    assert names[0]["00100010"]["Value"][0]["Alphabetic"] == "SECOND^TWO"


def test_wrong_study_in_url_is_409_with_failure_reason(client: FlaskClient) -> None:
    st, se, sop = uid(), uid(), uid()
    r = post(client, [ct_bytes(st, se, sop)], path=f"/dicom-web/studies/{uid()}")
    assert r.status_code == 409
    failed = r.get_json()[FAILED]["Value"][0]
    assert failed["00081197"]["Value"] == [0x0110]
    assert failed["00081155"]["Value"] == [sop]


def test_not_dicom_is_400_with_failed_item(client: FlaskClient) -> None:
    r = post(client, [b"this is not DICOM at all" * 10])
    assert r.status_code == 400
    body = r.get_json()
    assert body[FAILED]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert body[REFERENCED] == {"vr": "SQ", "Value": []}


def test_partial_failure_is_202(client: FlaskClient) -> None:
    st, se = uid(), uid()
    r = post(client, [ct_bytes(st, se), b"garbage" * 20])
    assert r.status_code == 202
    body = r.get_json()
    assert len(body[REFERENCED]["Value"]) == 1 and len(body[FAILED]["Value"]) == 1


def test_missing_uids_is_400_c000(client: FlaskClient) -> None:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(ct_bytes(uid(), uid())))
    del ds.SeriesInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    r = post(client, [out.getvalue()])
    assert r.status_code == 400
    item = r.get_json()[FAILED]["Value"][0]
    assert item["00081197"]["Value"] == [0xC000]


def test_content_type_errors_are_415(client: FlaskClient) -> None:
    body, _ = stow_body([ct_bytes(uid(), uid())])
    for ctype in ("application/dicom", 'multipart/related; type="application/json"; boundary=x',
                  'multipart/related; type="application/dicom"'):
        r = client.post("/dicom-web/studies", data=body, headers={"Content-Type": ctype})
        assert r.status_code == 415, ctype
        assert "Message" in r.get_json()


def test_first_part_of_wrong_type_is_415_and_stores_nothing(client: FlaskClient, app) -> None:  # type: ignore[no-untyped-def]
    body, ctype = stow_body([ct_bytes(uid(), uid())], part_type="application/json")
    r = client.post("/dicom-web/studies", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 415
    assert list(app.extensions["dicomweb"].storage.keys()) == []


def test_quoted_boundary_and_extra_parameters(client: FlaskClient) -> None:
    body, _ = stow_body([ct_bytes(uid(), uid())], boundary="a:b=c")
    ctype = ('multipart/related; type="application/dicom"; boundary="a:b=c"; '
             "transfer-syntax=1.2.840.10008.1.2.1")
    r = client.post("/dicom-web/studies", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 200


def test_xml_response(client: FlaskClient) -> None:
    r = post(client, [ct_bytes(uid(), uid())], Accept="application/dicom+xml")
    assert r.status_code == 200
    assert r.content_type.startswith("application/dicom+xml")
    assert b"NativeDicomModel" in r.data


def test_empty_request_is_200_with_empty_sequence(client: FlaskClient) -> None:
    r = post(client, [])
    assert r.status_code == 200
    assert r.get_json()[REFERENCED] == {"vr": "SQ", "Value": []}


def test_bad_study_uid_in_path_is_400(client: FlaskClient) -> None:
    r = post(client, [ct_bytes(uid(), uid())], path="/dicom-web/studies/..%2Fetc")
    assert r.status_code in (400, 404)
    assert r.is_json


def test_truncated_body_after_a_stored_part_reports_what_landed(client: FlaskClient) -> None:
    st, se = uid(), uid()
    body, ctype = stow_body([ct_bytes(st, se), ct_bytes(st, se)])
    cut = body[: body.index(b"--XXbound4ryXX", 20) + 200]  # part 2 broken off mid-way
    r = client.post("/dicom-web/studies", data=cut, headers={"Content-Type": ctype})
    assert r.status_code == 202
    answer = r.get_json()
    assert len(answer[REFERENCED]["Value"]) == 1
    assert answer[FAILED]["Value"] == [{"00081197": {"vr": "US", "Value": [0xC000]}}]
    assert len(client.get(f"/dicom-web/studies/{st}/instances").get_json()) == 1


def test_truncated_body_before_any_part_is_400(client: FlaskClient) -> None:
    body, ctype = stow_body([ct_bytes(uid(), uid())])
    r = client.post("/dicom-web/studies", data=body[:100], headers={"Content-Type": ctype})
    assert r.status_code == 400 and r.is_json
