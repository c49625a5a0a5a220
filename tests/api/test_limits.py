"""Request refusals through the Flask test client: ``Limits.MaximumRequestSize`` and
``Limits.MaximumStowInstances`` on STOW-RS, and ``ReadOnly`` (every write route a 405 that
says why, nothing written)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from tests.api.data import ct_bytes, uid
from tests.conftest import make_settings, stow_body

REFERENCED, FAILED = "00081199", "00081198"
OUT_OF_RESOURCES = 0xA700
MIB = 1 << 20


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    apps: list[Flask] = []

    def build(**overrides: object) -> Flask:
        app = create_app(make_settings(tmp_path, **overrides))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["dicomweb"].index.close()


def blobs(app: Flask) -> list[str]:
    return list(app.extensions["dicomweb"].storage.keys())


def stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "storage"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def post_chunked(client: FlaskClient, body: bytes, ctype: str,
                 path: str = "/dicom-web/studies") -> Any:
    """A body without Content-Length (chunked transfer coding, as gunicorn hands it over)."""
    return client.post(path, input_stream=io.BytesIO(body),
                       headers={"Content-Type": ctype, "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


def big_instances(count: int, side: int = 384) -> tuple[str, list[bytes]]:
    """``count`` instances of one study, about 288 KiB each (384 × 384 × 16 bits)."""
    st, se = uid(), uid()
    return st, [ct_bytes(st, se, number=i + 1, rows=side, columns=side) for i in range(count)]


def failure_reasons(body: dict[str, Any]) -> list[int]:
    return [item["00081197"]["Value"][0] for item in body.get(FAILED, {}).get("Value", [])]


# --------------------------------------------------------------------------- #
# MaximumRequestSize
# --------------------------------------------------------------------------- #


def test_content_length_above_the_limit_is_413_before_reading(make_app: Any,
                                                              tmp_path: Path) -> None:
    app = make_app(Limits={"MaximumRequestSize": 1})
    _, files = big_instances(5)
    body, ctype = stow_body(files)
    assert len(body) > MIB
    r = app.test_client().post("/dicom-web/studies", data=body,
                               headers={"Content-Type": ctype})
    assert r.status_code == 413
    assert r.is_json
    answer = r.get_json()
    assert answer["HttpStatus"] == 413 and answer["HttpError"] == HTTPStatus(413).phrase
    assert "MaximumRequestSize (1 MiB)" in answer["Message"]
    assert blobs(app) == [] and stored_files(tmp_path) == []


def test_a_body_within_the_limit_is_stored(make_app: Any) -> None:
    app = make_app(Limits={"MaximumRequestSize": 1})
    _, files = big_instances(2)
    body, ctype = stow_body(files)
    assert len(body) < MIB
    client = app.test_client()
    assert client.post("/dicom-web/studies", data=body,
                       headers={"Content-Type": ctype}).status_code == 200
    assert post_chunked(client, *stow_body(big_instances(2)[1])).status_code == 200
    assert len(blobs(app)) == 4


def test_chunked_body_passing_the_limit_keeps_whole_parts_only(make_app: Any,
                                                               tmp_path: Path) -> None:
    """Parts received whole before the limit stay stored; the part being received when it
    is passed is discarded before any byte of it is written; the answer lists what was
    stored (202) with one failure for the unread remainder and a Warning."""
    app = make_app(Limits={"MaximumRequestSize": 1})
    st, files = big_instances(5)
    body, ctype = stow_body(files)
    r = post_chunked(app.test_client(), body, ctype)
    assert r.status_code == 202, r.get_data(as_text=True)
    answer = r.get_json()
    assert len(answer[REFERENCED]["Value"]) == 3  # 3 × 288 KiB < 1 MiB < 4 × 288 KiB
    assert failure_reasons(answer) == [OUT_OF_RESOURCES]
    assert "MaximumRequestSize" in r.headers["Warning"]
    assert r.headers["Warning"].startswith("299 DICOMweb: ")
    # Exactly the three stored instances: no blob of the fourth, whole or partial.
    assert len(blobs(app)) == 3 and len(stored_files(tmp_path)) == 3
    found = app.test_client().get(f"/dicom-web/studies/{st}/instances").get_json()
    assert len(found) == 3


def test_chunked_body_passing_the_limit_in_its_first_part_is_413(make_app: Any,
                                                                 tmp_path: Path) -> None:
    app = make_app(Limits={"MaximumRequestSize": 1})
    _, files = big_instances(1, side=800)  # 1.2 MiB in one part
    r = post_chunked(app.test_client(), *stow_body(files))
    assert r.status_code == 413 and r.is_json
    assert "MaximumRequestSize" in r.get_json()["Message"]
    assert blobs(app) == [] and stored_files(tmp_path) == []


# --------------------------------------------------------------------------- #
# MaximumStowInstances
# --------------------------------------------------------------------------- #


def test_parts_beyond_maximum_stow_instances_are_refused(make_app: Any) -> None:
    app = make_app(Limits={"MaximumStowInstances": 2})
    st, se = uid(), uid()
    sops = [uid() for _ in range(4)]
    body, ctype = stow_body([ct_bytes(st, se, sop, number=i) for i, sop in enumerate(sops)])
    client = app.test_client()
    r = client.post("/dicom-web/studies", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 202
    answer = r.get_json()
    assert [i["00081155"]["Value"][0] for i in answer[REFERENCED]["Value"]] == sops[:2]
    assert failure_reasons(answer) == [OUT_OF_RESOURCES, OUT_OF_RESOURCES]
    assert "2 part(s) beyond MaximumStowInstances (2)" in r.headers["Warning"]
    assert len(blobs(app)) == 2
    found = client.get(f"/dicom-web/studies/{st}/instances").get_json()
    assert sorted(i["00080018"]["Value"][0] for i in found) == sorted(sops[:2])
    # At the limit: all stored, no warning. The limit counts per request.
    body, ctype = stow_body([ct_bytes(st, se, number=5), ct_bytes(st, se, number=6)])
    r = client.post("/dicom-web/studies", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 200 and "Warning" not in r.headers
    assert len(blobs(app)) == 4


def test_xml_answer_carries_the_limit_warning_too(make_app: Any) -> None:
    app = make_app(Limits={"MaximumStowInstances": 1})
    st, se = uid(), uid()
    body, ctype = stow_body([ct_bytes(st, se, number=1), ct_bytes(st, se, number=2)])
    r = app.test_client().post("/dicom-web/studies", data=body,
                               headers={"Content-Type": ctype,
                                        "Accept": "application/dicom+xml"})
    assert r.status_code == 202 and r.content_type == "application/dicom+xml"
    assert "MaximumStowInstances (1)" in r.headers["Warning"]


# --------------------------------------------------------------------------- #
# ReadOnly
# --------------------------------------------------------------------------- #


def allow(r: Any) -> set[str]:
    return {m.strip() for m in r.headers["Allow"].split(",")}


def test_read_only_refuses_stow_with_a_reason_and_writes_nothing(make_app: Any,
                                                                 tmp_path: Path) -> None:
    app = make_app(ReadOnly=True)
    client = app.test_client()
    st, se = uid(), uid()
    body, ctype = stow_body([ct_bytes(st, se)])
    for path in ("/dicom-web/studies", f"/dicom-web/studies/{st}"):
        r = client.post(path, data=body, headers={"Content-Type": ctype})
        assert r.status_code == 405
        assert r.is_json
        assert r.get_json()["Message"] == (
            "This server is read-only (ReadOnly: true): POST is refused")
        assert allow(r) == {"GET", "HEAD", "OPTIONS"}
    assert blobs(app) == [] and stored_files(tmp_path) == []
    assert client.get("/dicom-web/studies").get_json() == []


def test_read_only_refuses_delete_and_keeps_the_data(make_app: Any) -> None:
    writable = make_app()
    st, se, sop = uid(), uid(), uid()
    body, ctype = stow_body([ct_bytes(st, se, sop)])
    assert writable.test_client().post("/dicom-web/studies", data=body,
                                       headers={"Content-Type": ctype}).status_code == 200
    writable.extensions["dicomweb"].index.close()
    app = make_app(ReadOnly=True)
    client = app.test_client()
    for path in (f"/dicom-web/studies/{st}", f"/dicom-web/studies/{st}/series/{se}",
                 f"/dicom-web/studies/{st}/series/{se}/instances/{sop}"):
        r = client.delete(path)
        assert r.status_code == 405, path
        assert r.get_json()["Message"] == (
            "This server is read-only (ReadOnly: true): DELETE is refused")
        assert allow(r) == {"GET", "HEAD", "OPTIONS"}
    assert len(blobs(app)) == 1
    assert client.get(f"/dicom-web/studies/{st}/series/{se}/instances/{sop}").status_code == 200


def test_read_only_with_describe_errors_off_keeps_the_status_and_allow(make_app: Any) -> None:
    app = make_app(ReadOnly=True, HttpDescribeErrors=False)
    r = app.test_client().delete("/dicom-web/studies/1.2.3")
    assert r.status_code == 405
    assert r.get_json() == {"HttpStatus": 405, "HttpError": "Method Not Allowed"}
    assert "GET" in allow(r)


def test_writable_server_unchanged(make_app: Any) -> None:
    r = make_app().test_client().delete("/dicom-web/studies/1.2.3")
    assert r.status_code == 404
