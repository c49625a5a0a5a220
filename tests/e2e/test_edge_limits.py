"""Request limits at the edge, under gunicorn: what gunicorn refuses itself (header size and
count, request line, malformed HTTP) answered in the application's JSON error shape, the
body limits of STOW-RS, and the server serving on after each refusal."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.api.data import ct_bytes, uid
from tests.conftest import stow_body
from tests.e2e.server import Server

pytestmark = pytest.mark.e2e

LIMITS = {"MaximumHeaderSize": 1024, "MaximumHeaderCount": 20, "MaximumRequestSize": 1,
          "MaximumStowInstances": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("limits"), workers=1, threads=2,
                 extra={"Limits": LIMITS}).start()
    yield srv
    srv.stop()


def raw(server: Server, request: bytes) -> tuple[int, dict[str, str], Any]:
    """Send bytes, read the whole answer (the server closes): status, headers, JSON body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def _answer(sock: socket.socket) -> bytes:
    """One whole answer on a connection the server may keep open: the head, then as many
    body bytes as its Content-Length says (they may come in separate segments)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)
    while length is not None and len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def still_serving(server: Server) -> None:
    for _ in range(3):
        assert requests.get(f"{server.root}/studies", timeout=5).status_code == 200


def test_a_header_field_over_maximum_header_size_is_431_json(server: Server) -> None:
    r = requests.get(f"{server.root}/studies", headers={"X-Big": "a" * 1100}, timeout=5)
    assert r.status_code == 431
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"HttpStatus": 431, "HttpError": "Request Header Fields Too Large",
                        "Message": "A request header field is longer than "
                                   "Limits.MaximumHeaderSize (1024 bytes)"}
    still_serving(server)


def test_a_header_field_within_the_limit_passes(server: Server) -> None:
    r = requests.get(f"{server.root}/studies", headers={"X-Big": "a" * 900}, timeout=5)
    assert r.status_code == 200


def test_more_headers_than_maximum_header_count_is_431_json(server: Server) -> None:
    headers = {f"X-Extra-{i}": "1" for i in range(25)}
    r = requests.get(f"{server.root}/studies", headers=headers, timeout=5)
    assert r.status_code == 431
    assert r.json()["Message"] == ("More request header fields than "
                                   "Limits.MaximumHeaderCount (20)")
    still_serving(server)


def test_an_oversized_request_line_is_414_json(server: Server) -> None:
    r = requests.get(f"{server.root}/studies", params={"PatientID": "x" * 9000}, timeout=5)
    assert r.status_code == 414
    assert r.json() == {"HttpStatus": 414, "HttpError": HTTPStatus(414).phrase,
                        "Message": "The request line is longer than 8190 bytes"}
    still_serving(server)


@pytest.mark.parametrize("request_bytes", [
    b"NOT AN HTTP REQUEST\r\n\r\n",
    b"GET /dicom-web/studies HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n",
    b"GET /dicom-web/studies HTTP/9.9\r\nHost: x\r\n\r\n",
])
def test_malformed_requests_are_400_json(server: Server, request_bytes: bytes) -> None:
    status, headers, body = raw(server, request_bytes)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert body["HttpStatus"] == 400 and body["HttpError"] == "Bad Request"
    assert body["Message"].startswith("Bad HTTP request: ")
    still_serving(server)


def test_a_content_length_over_maximum_request_size_is_413_before_the_body(
        server: Server) -> None:
    """Refused on the headers alone: the answer comes although no body byte was sent."""
    request = (b"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: multipart/related; type=\"application/dicom\"; boundary=B\r\n"
               b"Content-Length: 2097152\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = _answer(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["Message"] == ("The request body (2097152 bytes) is larger than "
                                           "Limits.MaximumRequestSize (1 MiB)")
    still_serving(server)


def _instances(count: int, side: int = 384) -> tuple[str, list[bytes]]:
    st, se = uid(), uid()
    return st, [ct_bytes(st, se, number=i + 1, rows=side, columns=side) for i in range(count)]


def _blobs(server: Server) -> int:
    return sum(1 for p in (server.workdir / "storage").rglob("*") if p.is_file())


def test_a_big_stow_with_content_length_gets_its_413(server: Server) -> None:
    body, ctype = stow_body(_instances(5)[1])
    r = requests.post(f"{server.root}/studies", data=body, headers={"Content-Type": ctype},
                      timeout=30)
    assert r.status_code == 413 and r.json()["HttpStatus"] == 413
    still_serving(server)


def test_a_chunked_stow_over_the_limit_keeps_the_whole_parts_before_it(
        server: Server) -> None:
    st, files = _instances(3, side=560)  # 613 KiB each: the second passes 1 MiB
    body, ctype = stow_body(files)
    blobs_before = _blobs(server)
    # A generator body is sent with chunked transfer coding (no Content-Length).
    r = requests.post(f"{server.root}/studies", headers={"Content-Type": ctype},
                      data=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                      timeout=30)
    assert r.status_code == 202, r.text
    answer = r.json()
    assert len(answer["00081199"]["Value"]) == 1
    assert [i["00081197"]["Value"] for i in answer["00081198"]["Value"]] == [[0xA700]]
    assert r.headers["Warning"] == ('299 DICOMweb: "The request body passed '
                                    'Limits.MaximumRequestSize (1 MiB); the rest of the '
                                    'request was not read"')
    found = requests.get(f"{server.root}/studies/{st}/instances", timeout=5).json()
    assert len(found) == 1
    assert _blobs(server) == blobs_before + 1  # the second part: not a byte written
    still_serving(server)


def test_stow_parts_beyond_maximum_stow_instances_are_refused(server: Server) -> None:
    st, files = _instances(3, side=16)
    body, ctype = stow_body(files)
    r = requests.post(f"{server.root}/studies", data=body, headers={"Content-Type": ctype},
                      timeout=30)
    assert r.status_code == 202
    answer = r.json()
    assert len(answer["00081199"]["Value"]) == 2
    assert [i["00081197"]["Value"] for i in answer["00081198"]["Value"]] == [[0xA700]]
    assert "MaximumStowInstances (2)" in r.headers["Warning"]


def test_describe_errors_off_keeps_only_the_status(tmp_path: Path) -> None:
    srv = Server(tmp_path, workers=1, threads=1,
                 extra={"HttpDescribeErrors": False,
                        "Limits": {"MaximumHeaderSize": 512}}).start()
    try:
        r = requests.get(f"{srv.root}/studies", headers={"X-Big": "a" * 600}, timeout=5)
        assert r.status_code == 431
        assert r.json() == {"HttpStatus": 431, "HttpError": "Request Header Fields Too Large"}
    finally:
        srv.stop()
