"""Orthanc's HTTP server options under gunicorn: HttpRequestTimeout, KeepAlive,
HttpDescribeErrors (through the real server, since they live in the worker and sockets)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.server import Server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("http"), workers=1, threads=2,
                 extra={"HttpRequestTimeout": 1, "KeepAlive": False,
                        "HttpDescribeErrors": False}).start()
    yield srv
    srv.stop()


def test_a_stalled_upload_is_cut_after_http_request_timeout(server: Server) -> None:
    """A client that stops sending its STOW body holds no thread for ever (Orthanc:
    SO_RCVTIMEO = HttpRequestTimeout)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: multipart/related; type=\"application/dicom\"; boundary=B\r\n"
                     b"Content-Length: 100000\r\n\r\n--B\r\n")
        started = time.monotonic()
        try:
            data = sock.recv(65536)  # the server gives up and closes (or answers an error)
        except ConnectionResetError:
            data = b""
        waited = time.monotonic() - started
    assert waited < 8, "the connection was not closed by the server"
    assert waited >= 0.9
    assert data == b"" or data.startswith(b"HTTP/1.1 ")
    # The worker is free again: both of its threads answer.
    for _ in range(3):
        assert requests.get(f"{server.root}/studies", timeout=5).status_code == 200


def test_keep_alive_off_closes_each_connection(server: Server) -> None:
    r = requests.get(f"{server.root}/studies", timeout=5)
    assert r.headers.get("Connection", "").lower() == "close"


def test_errors_without_description(server: Server) -> None:
    r = requests.get(f"{server.root}/studies/1.2.3/series/4.5.6/metadata", timeout=5)
    assert r.status_code == 404
    assert r.json() == {"HttpStatus": 404, "HttpError": "Not Found"}


def test_errors_are_described_by_default(tmp_path: Path) -> None:
    srv = Server(tmp_path, workers=1, threads=1).start()
    try:
        r = requests.get(f"{srv.root}/studies/1.2.3/metadata", timeout=5)
        assert r.status_code == 404 and "inexistent" in r.json()["Message"]
        kept = requests.get(f"{srv.root}/studies", timeout=5)
        assert kept.headers.get("Connection", "").lower() != "close"
    finally:
        srv.stop()


def test_port_given_on_the_command_line_is_the_one_reported(tmp_path: Path) -> None:
    """``--port`` overrides HttpPort for the socket and for what the server reports
    (Orthanc's ``GET /system`` HttpPort)."""
    server = Server(tmp_path, workers=1, threads=2)
    configured = server.port + 1 if server.port < 65535 else server.port - 1
    config = json.loads(server.config.read_text())
    server.config.write_text(json.dumps({**config, "HttpPort": configured}))
    server.args += ["--port", str(server.port)]
    server.start()
    try:
        system = requests.get(f"http://127.0.0.1:{server.port}/system", timeout=10).json()
        assert system["HttpPort"] == server.port
    finally:
        server.stop()
