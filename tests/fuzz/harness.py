"""The deployment of the HTTP-level fuzz tests: the Flask app over a temporary folder
with a few known instances, the checks every answer must pass, and the final check that
the known data is intact and nothing was written outside the deployment's folders."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from app.dicom import multipart
from tests.api.data import ct_bytes, uid
from tests.conftest import make_settings

KNOWN_PATIENT = "KNOWN^PATIENT"
STORE_RESPONSES = ("application/dicom+json", "application/dicom+xml")
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'

ROUTES = [
    "/dicom-web/studies", "/dicom-web/series", "/dicom-web/instances",
    "/dicom-web/studies/{st}/series", "/dicom-web/studies/{st}/instances",
    "/dicom-web/studies/{st}/series/{se}/instances",
    "/dicom-web/studies/{st}", "/dicom-web/studies/{st}/series/{se}",
    "/dicom-web/studies/{st}/series/{se}/instances/{sop}",
    "/dicom-web/studies/{st}/metadata", "/dicom-web/studies/{st}/series/{se}/metadata",
    "/dicom-web/studies/{st}/series/{se}/instances/{sop}/metadata",
    "/dicom-web/studies/{st}/series/{se}/instances/{sop}/frames/{x}",
    "/dicom-web/studies/{st}/series/{se}/instances/{sop}/frames",
    "/dicom-web/studies/{st}/series/{se}/instances/{sop}/bulk/{x}",
    "/dicom-web/studies/{st}/rendered", "/dicom-web/studies/{st}/series/{se}/thumbnail",
    "/dicom-web/studies/{st}/series/{se}/instances/{sop}/rendered",
    "/dicom-web/studies/{st}/series/{se}/instances/{sop}/frames/{x}/rendered",
    "/dicom-web/studies/{st}/series/{se}/instances/{sop}/frames/{x}/thumbnail",
    "/dicom-web/{x}", "/dicom-web/studies/{st}/{x}", "/{x}", "/wado", "/wado/{x}",
]
QUERY_KEYS = [
    "PatientName", "PatientID", "StudyDate", "StudyTime", "Modality", "StudyInstanceUID",
    "SeriesInstanceUID", "SOPInstanceUID", "SeriesNumber", "Rows", "includefield", "limit",
    "offset", "fuzzymatching", "00100010", "0009,0010", "accept", "requestType", "studyUID",
    "seriesUID", "objectUID", "contentType", "transferSyntax", "anonymize", "frameNumber",
    "rows", "columns", "region", "windowCenter", "windowWidth", "imageQuality", "quality",
    "viewport", "window",
]
# Every resource of a stored instance: as stored, converted to other transfer syntaxes,
# decoded and rendered, de-identified (tests/fuzz/test_known_crashes.py: the reads that
# once answered 500).
IMPLICIT = "1.2.840.10008.1.2"
WADO_READS = [
    ("", 'multipart/related; type="application/dicom"; transfer-syntax=*'), ("", None),
    ("", f'multipart/related; type="application/dicom"; transfer-syntax={IMPLICIT}'),
    ("", 'multipart/related; type="application/dicom"; '
         "transfer-syntax=1.2.840.10008.1.2.4.50"),
    ("/metadata", None), ("/metadata", 'multipart/related; type="application/dicom+xml"'),
    ("/frames/1", None), ("/frames/1", "multipart/related; type=image/jpeg"),
    ("/frames", 'multipart/related; type="application/octet-stream"; transfer-syntax=*'),
    ("/rendered", None), ("/thumbnail", None), ("/frames/1/rendered", "image/png"),
    ("/bulk/7fe00010", None),
]
WADO_URI_READS = [{}, {"contentType": "application/dicom"},
                  {"contentType": "application/dicom", "transferSyntax": IMPLICIT},
                  {"contentType": "application/dicom", "anonymize": "yes"},
                  {"contentType": "image/png", "rows": "16"}]


@dataclass
class Known:
    study: str
    series: str
    sop: str
    data: bytes


@dataclass
class Deployment:
    root: Path
    app: Flask
    client: FlaskClient
    known: list[Known] = field(default_factory=list)
    files_before: set[Path] = field(default_factory=set)

    @property
    def uids(self) -> list[str]:
        return sorted({u for k in self.known for u in (k.study, k.series, k.sop)})

    def check_answer(self, response: TestResponse, what: str) -> bytes:
        """Never a 5xx; an error answer is JSON naming its status. The body is read
        whole (a streamed answer that breaks off raises here)."""
        body = response.get_data()
        assert response.status_code < 500, f"{what}: {response.status_code} {body[:300]!r}"
        if response.status_code < 400 or response.request.method == "HEAD":
            return body
        if response.mimetype in STORE_RESPONSES and response.request.method == "POST":
            if response.mimetype == "application/dicom+json":  # a STOW answer naming the
                json.loads(body)  # failed instances (PS3.18 §10.5.3)
            return body
        assert response.mimetype == "application/json", f"{what}: {response.mimetype}"
        parsed = json.loads(body)
        assert parsed["HttpStatus"] == response.status_code, what
        return body

    def check_intact(self) -> None:
        """The known instances are retrieved byte-identical, QIDO finds exactly them, and
        no file appeared outside the storage and index folders."""
        for known in self.known:
            r = self.client.get("/wado", query_string={
                "requestType": "WADO", "studyUID": known.study, "seriesUID": known.series,
                "objectUID": known.sop, "contentType": "application/dicom"})
            assert r.status_code == 200 and r.get_data() == known.data
            r = self.client.get(f"/dicom-web/studies/{known.study}/series/{known.series}"
                                f"/instances/{known.sop}", headers={"Accept": AS_STORED})
            assert r.status_code == 200
            assert [body for _, body in parts(r)] == [known.data]
        studies = sorted({k.study for k in self.known})
        r = self.client.get("/dicom-web/instances",
                            query_string={"StudyInstanceUID": ",".join(studies)})
        assert r.status_code == 200
        found = sorted(item["00080018"]["Value"][0] for item in r.get_json())
        assert found == sorted(k.sop for k in self.known)
        r = self.client.get("/dicom-web/studies", query_string={"PatientName": KNOWN_PATIENT})
        assert sorted(item["0020000D"]["Value"][0] for item in r.get_json()) == studies
        # The deployment's folder sits in a folder of its own: a "../" that escaped the
        # storage or index folder would show up in either.
        new = _files(self.root.parent) - self.files_before
        allowed = (self.root / "storage", self.root / "index")
        stray = [p for p in new if not any(p.is_relative_to(folder) for folder in allowed)]
        assert not stray, f"files written outside the storage and index folders: {stray}"


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def parts(response: TestResponse) -> list[tuple[dict[str, str], bytes]]:
    _, params = multipart.parse_content_type(response.headers["Content-Type"])
    return [(dict(part.headers), b"".join(part.iter_chunks()))
            for part in multipart.iter_parts(io.BytesIO(response.get_data()).read,
                                             params["boundary"])]


def stow_body(files: list[bytes], boundary: str = "FUZZBOUNDARY") -> tuple[bytes, str]:
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + f + b"\r\n" for f in files) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def deployment(root: Path, **settings: Any) -> Deployment:
    """A deployment in ``root`` holding four known instances of two studies (one of them
    with three frames)."""
    root.mkdir(parents=True, exist_ok=True)
    app = create_app(make_settings(root, **settings))
    client = app.test_client()
    first, second = uid(), uid()
    known = []
    for study, series, frames in ((first, uid(), 1), (first, uid(), 3), (second, uid(), 1)):
        sop = uid()
        known.append(Known(study, series, sop,
                           ct_bytes(study, series, sop, patient=KNOWN_PATIENT, frames=frames)))
    known.append(Known(second, known[-1].series, uid(), b""))
    known[-1].data = ct_bytes(second, known[-1].series, known[-1].sop, patient=KNOWN_PATIENT,
                              number=2)
    body, content_type = stow_body([k.data for k in known])
    assert client.post("/dicom-web/studies", data=body, content_type=content_type
                       ).status_code == 200
    return Deployment(root, app, client, known, _files(root.parent))


def read_everything(server: Deployment, url: str) -> None:
    """Every WADO resource of the stored instance at ``url`` (a RetrieveURL)."""
    path = "/dicom-web/" + url.split("/dicom-web/", 1)[1]
    for suffix, accept in WADO_READS:
        headers = {"Accept": accept} if accept else {}
        server.check_answer(server.client.get(path + suffix, headers=headers),
                            f"GET {path + suffix} {accept}")
    sop = path.rsplit("/", 1)[1]
    for query in WADO_URI_READS:
        query = {"requestType": "WADO", "objectUID": sop, **query}
        server.check_answer(server.client.get("/wado", query_string=query),
                            f"GET /wado {query}")
