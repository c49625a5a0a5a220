"""WADO-RS, WADO-URI and DELETE through the Flask test client."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from flask.testing import FlaskClient

from app.dicom import multipart
from tests.api.data import ct, ct_bytes, uid
from tests.api.test_stow import post
from tests.conftest import dicom_bytes, make_settings, stow_body


def parts(response) -> list[tuple[dict[str, str], bytes]]:  # type: ignore[no-untyped-def]
    _, params = multipart.parse_content_type(response.headers["Content-Type"])
    out = []
    for part in multipart.iter_parts(io.BytesIO(response.data).read, params["boundary"]):
        out.append((dict(part.headers), b"".join(part.iter_chunks())))
    return out


@pytest.fixture
def stored(client: FlaskClient) -> dict[str, object]:
    st, se = uid(), uid()
    sops = [uid(), uid()]
    files = [ct_bytes(st, se, sops[0], number=2, frames=3),
             ct_bytes(st, se, sops[1], number=1)]
    assert post(client, files).status_code == 200
    return {"st": st, "se": se, "sops": sops, "files": files}


AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def test_retrieve_study_as_stored_is_byte_identical(client, stored) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/dicom-web/studies/{stored['st']}", headers={"Accept": AS_STORED})
    assert r.status_code == 200
    assert 'type="application/dicom"' in r.headers["Content-Type"]
    bodies = [body for _, body in parts(r)]
    # Ordered by InstanceNumber: instance 1 is the second file.
    assert bodies == [stored["files"][1], stored["files"][0]]


def test_retrieve_instance_default_is_explicit_le(client, stored) -> None:  # type: ignore[no-untyped-def]
    st, se, sop = stored["st"], stored["se"], stored["sops"][0]
    r = client.get(f"/dicom-web/studies/{st}/series/{se}/instances/{sop}")
    ((headers, body),) = parts(r)
    assert "1.2.840.10008.1.2.1" in headers["content-type"]
    assert pydicom.dcmread(io.BytesIO(body)).SOPInstanceUID == sop


def test_implicit_is_transcoded_to_explicit(client: FlaskClient) -> None:
    st, se = uid(), uid()
    ds = ct(st, se)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True, implicit_vr=True)
    assert post(client, [out.getvalue()]).status_code == 200
    ((_, body),) = parts(client.get(f"/dicom-web/studies/{st}"))
    back = pydicom.dcmread(io.BytesIO(body))
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert back.PixelData == ds.PixelData


def test_compressed_is_decompressed_by_default(client: FlaskClient) -> None:
    """PS3.18 §8.7.3.5.2: no transfer-syntax means Explicit VR Little Endian, decoded."""
    from pydicom.data import get_testdata_file

    data = open(get_testdata_file("JPEG2000.dcm"), "rb").read()
    original = pydicom.dcmread(io.BytesIO(data))
    assert post(client, [data]).status_code == 200
    r = client.get(f"/dicom-web/studies/{original.StudyInstanceUID}")
    ((head, body),) = parts(r)
    assert "transfer-syntax=1.2.840.10008.1.2.1" in head["content-type"]
    back = pydicom.dcmread(io.BytesIO(body))
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (back.pixel_array == original.pixel_array).all()
    ok = client.get(f"/dicom-web/studies/{original.StudyInstanceUID}",
                    headers={"Accept": AS_STORED})
    assert ok.status_code == 200 and parts(ok)[0][1] == data


def test_unknown_resources_are_404(client: FlaskClient, stored) -> None:  # type: ignore[no-untyped-def]
    assert client.get(f"/dicom-web/studies/{uid()}").status_code == 404
    r = client.get(f"/dicom-web/studies/{uid()}/series/{stored['se']}")
    assert r.status_code == 404 and r.get_json()["HttpStatus"] == 404
    assert client.get(f"/dicom-web/studies/{uid()}/metadata").status_code == 404


def test_not_acceptable(client: FlaskClient, stored) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/dicom-web/studies/{stored['st']}", headers={"Accept": "image/png"})
    assert r.status_code == 406


def test_series_metadata_with_bulkdata_uri(client, stored) -> None:  # type: ignore[no-untyped-def]
    st, se = stored["st"], stored["se"]
    r = client.get(f"/dicom-web/studies/{st}/series/{se}/metadata",
                   headers={"Host": "example.org:8080"})
    assert r.status_code == 200 and r.content_type == "application/dicom+json"
    meta = r.get_json()
    assert [m["00200013"]["Value"][0] for m in meta] == [1, 2]
    uri = meta[1]["7FE00010"]["BulkDataURI"]
    assert uri == (f"http://example.org:8080/dicom-web/studies/{st}/series/{se}/instances/"
                   f"{stored['sops'][0]}/bulk/7fe00010")
    path = uri.split("example.org:8080", 1)[1]
    ((_, body),) = parts(client.get(path))
    assert body == pydicom.dcmread(io.BytesIO(stored["files"][0])).PixelData


@pytest.mark.parametrize("headers,prefix", [
    ({"X-Forwarded-Host": "proxy", "X-Forwarded-Proto": "https"}, "https://proxy/dicom-web/"),
    ({"Forwarded": "host=fwd;proto=https"}, "https://fwd/dicom-web/"),
])
def test_forwarded_headers_in_urls(client, stored, headers, prefix) -> None:  # type: ignore[no-untyped-def]
    meta = client.get(f"/dicom-web/studies/{stored['st']}/metadata", headers=headers).get_json()
    assert meta[0]["7FE00010"]["BulkDataURI"].startswith(prefix)


def test_metadata_xml(client, stored) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/dicom-web/studies/{stored['st']}/metadata",
                   headers={"Accept": 'multipart/related; type="application/dicom+xml"'})
    assert r.status_code == 200
    assert len(parts(r)) == 2


def test_frames_native(client, stored) -> None:  # type: ignore[no-untyped-def]
    st, se, sop = stored["st"], stored["se"], stored["sops"][0]
    pixel = pydicom.dcmread(io.BytesIO(stored["files"][0])).PixelData
    frame_size = 4 * 4 * 2
    r = client.get(f"/dicom-web/studies/{st}/series/{se}/instances/{sop}/frames/3,1,3",
                   headers={"Accept": "multipart/related; type=application/octet-stream; "
                                      "transfer-syntax=*"})
    assert r.status_code == 200
    got = parts(r)
    assert [b for _, b in got] == [pixel[2 * frame_size:], pixel[:frame_size],
                                   pixel[2 * frame_size:]]
    assert got[1][0]["content-location"].endswith(f"/instances/{sop}/frames/1")
    all_frames = parts(client.get(f"/dicom-web/studies/{st}/series/{se}/instances/{sop}/frames"))
    assert len(all_frames) == 3 and all_frames[0][1] == pixel[:frame_size]


@pytest.mark.parametrize("frames,status", [("0", 400), ("x", 400), ("4", 404)])
def test_bad_frames(client, stored, frames, status) -> None:  # type: ignore[no-untyped-def]
    st, se, sop = stored["st"], stored["se"], stored["sops"][0]
    r = client.get(f"/dicom-web/studies/{st}/series/{se}/instances/{sop}/frames/{frames}")
    assert r.status_code == status and r.is_json


def test_wado_uri(client, stored) -> None:  # type: ignore[no-untyped-def]
    st, se, sop = stored["st"], stored["se"], stored["sops"][1]
    base = f"/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={sop}"
    r = client.get(base + "&contentType=application/dicom")
    assert r.status_code == 200 and r.content_type == "application/dicom"
    assert r.data == stored["files"][1]
    jpeg = client.get(base)
    assert jpeg.content_type == "image/jpeg" and jpeg.data[:2] == b"\xff\xd8"
    png = client.get(base + "&contentType=image/png")
    assert png.content_type == "image/png" and png.data[:4] == b"\x89PNG"
    assert client.get(base.replace(st, uid())).status_code == 404
    assert client.get("/wado?requestType=WADO").status_code == 400


def test_delete_levels(client, stored, app) -> None:  # type: ignore[no-untyped-def]
    st, se, sops = stored["st"], stored["se"], stored["sops"]
    r = client.delete(f"/dicom-web/studies/{st}/series/{se}/instances/{sops[0]}")
    assert r.status_code == 200
    assert len(client.get(f"/dicom-web/studies/{st}/instances").get_json()) == 1
    assert client.delete(f"/dicom-web/studies/{st}").status_code == 200
    assert client.get("/dicom-web/studies").get_json() == []
    assert list(app.extensions["dicomweb"].storage.keys()) == []
    assert client.delete(f"/dicom-web/studies/{st}").status_code == 404


def test_metadata_survives_json_round_trip(client, stored) -> None:  # type: ignore[no-untyped-def]
    st, se, sop = stored["st"], stored["se"], stored["sops"][1]
    meta = client.get(f"/dicom-web/studies/{st}/series/{se}/instances/{sop}/metadata").get_json()
    ds = pydicom.Dataset.from_json(json.dumps(meta[0]), lambda *a: b"")
    assert ds.PatientName == "DOE^JOHN" and ds.Rows == 4


def test_errors_are_json_everywhere(client: FlaskClient) -> None:
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.get_json()["HttpStatus"] == 404


__all__ = ["dicom_bytes"]


def test_read_only_refuses_writes(tmp_path, client, stored) -> None:  # type: ignore[no-untyped-def]
    from app import create_app

    app = client.application
    settings = app.extensions["dicomweb"].settings
    ro = create_app(make_settings(tmp_path, ReadOnly=True,
                                  StorageDirectory=settings.StorageDirectory,
                                  IndexDirectory=settings.IndexDirectory)).test_client()
    assert ro.delete(f"/dicom-web/studies/{stored['st']}").status_code == 405
    body, ctype = stow_body([b"x"])
    assert ro.post("/dicom-web/studies", data=body,
                   headers={"Content-Type": ctype}).status_code == 405
    assert ro.get(f"/dicom-web/studies/{stored['st']}/metadata").status_code == 200


def test_huge_limit_is_400(client: FlaskClient) -> None:
    r = client.get("/dicom-web/instances?limit=99999999999999999999")
    assert r.status_code == 400 and "limit" in r.get_json()["Message"]


@pytest.mark.parametrize("mode", ["MainDicomTags", "Extrapolate"])
def test_metadata_modes(tmp_path, mode) -> None:  # type: ignore[no-untyped-def]
    from app import create_app

    tags = ["PixelData", "RescaleSlope"] if mode == "Extrapolate" else []
    app = create_app(make_settings(tmp_path, DicomWeb={
        "SeriesMetadata": mode, "SeriesMetadataExtrapolatedTags": tags}))
    client = app.test_client()
    st, se = uid(), uid()
    assert post(client, [ct_bytes(st, se, number=2), ct_bytes(st, se, number=1)]).status_code == 200
    meta = client.get(f"/dicom-web/studies/{st}/series/{se}/metadata").get_json()
    assert [m["00200013"]["Value"][0] for m in meta] == [1, 2]
    assert meta[0]["00100010"]["Value"][0]["Alphabetic"] == "DOE^JOHN"
    if mode == "Extrapolate":
        assert meta[0]["7FE00010"]["BulkDataURI"].startswith("http://localhost/dicom-web/")
        assert meta[0]["00281053"]["Value"] == [1]
    else:  # the indexed attributes: every attribute but bulk data
        assert "7FE00010" not in meta[0] and meta[0]["00281053"]["Value"] == [1]
