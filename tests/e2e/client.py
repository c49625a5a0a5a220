"""Small HTTP helpers for the e2e tests that talk to ``Server`` processes with requests."""

from __future__ import annotations

import io

import requests

from app.dicom import multipart
from tests.conftest import stow_body
from tests.e2e.server import Server

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
OCTETS = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def stow(server: Server, files: list[bytes]) -> requests.Response:
    body, ctype = stow_body(files)
    return requests.post(f"{server.root}/studies", data=body, timeout=60,
                         headers={"Content-Type": ctype})


def get(server: Server, path: str, accept: str | None = None,
        **params: str) -> requests.Response:
    """GET ``{root}/{path}`` with an optional Accept header and query parameters."""
    headers = {"Accept": accept} if accept else {}
    return requests.get(f"{server.root}/{path}", params=params, headers=headers, timeout=60)


def wado_uri(server: Server, study: str, series: str, sop: str,
             **params: str) -> requests.Response:
    query = {"requestType": "WADO", "studyUID": study, "seriesUID": series, "objectUID": sop}
    return requests.get(server.root.replace("/dicom-web", "/wado"), timeout=60,
                        params={**query, **params})


def parts(answer: requests.Response) -> list[tuple[dict[str, str], bytes]]:
    """(headers, body) of each part of a 200 multipart/related answer."""
    assert answer.status_code == 200, answer.text[:500]
    _, params = multipart.parse_content_type(answer.headers["Content-Type"])
    # A part's chunks are read before the reader moves on to the next part.
    return [(dict(part.headers), b"".join(part.iter_chunks()))
            for part in multipart.iter_parts(io.BytesIO(answer.content).read,
                                             params["boundary"])]


def uids(answer: requests.Response, tag: str) -> list[str]:
    """The first value of ``tag`` in each result of a 200 QIDO answer."""
    assert answer.status_code == 200, answer.text[:500]
    return [item[tag]["Value"][0] for item in answer.json()]
