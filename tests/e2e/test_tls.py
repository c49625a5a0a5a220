"""TLS in gunicorn (Orthanc's SslEnabled, SslCertificate, SslVerifyPeers,
SslTrustedClientCertificates), with certificates made by the ``openssl`` command."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.api.data import ct_bytes, uid
from tests.certificates import Authority, Issued, authority
from tests.conftest import stow_body
from tests.e2e.server import Server

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


class TlsServer(Server):
    """:class:`Server` over HTTPS: started once a TLS request with ``probe_cert`` (client
    certificate, if the server wants one) and the test CA answers."""

    def __init__(self, workdir: Path, ca: Authority, extra: dict[str, object],
                 probe_cert: tuple[str, str] | None = None) -> None:
        super().__init__(workdir, workers=1, threads=2, extra=extra)
        self.ca = str(ca.certificate)
        self.probe_cert = probe_cert
        self.root = f"https://127.0.0.1:{self.port}/dicom-web"

    def start(self, timeout: float = 30) -> TlsServer:
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", *self.args],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            try:
                requests.get(f"{self.root}/studies", verify=self.ca, cert=self.probe_cert,
                             timeout=5)
                return self
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log()}")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return authority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_cert(ca: Authority) -> Issued:
    return ca.issue("server")


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory, ca: Authority,
          server_cert: Issued) -> Iterator[TlsServer]:
    srv = TlsServer(tmp_path_factory.mktemp("tls"), ca,
                    {"SslEnabled": True, "SslCertificate": str(server_cert.combined)}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def mutual(tmp_path_factory: pytest.TempPathFactory, ca: Authority,
           server_cert: Issued) -> Iterator[TlsServer]:
    trusted = ca.issue("trusted-client", server=False)
    srv = TlsServer(tmp_path_factory.mktemp("mtls"), ca,
                    {"SslEnabled": True, "SslCertificate": str(server_cert.combined),
                     "SslVerifyPeers": True,
                     "SslTrustedClientCertificates": str(ca.certificate)},
                    probe_cert=(str(trusted.certificate), str(trusted.key))).start()
    yield srv
    srv.stop()


def test_https_with_the_ca_answers(https: TlsServer) -> None:
    r = requests.get(f"{https.root}/studies", verify=https.ca, timeout=10)
    assert r.status_code == 200 and r.json() == []


def test_the_certificate_is_not_trusted_without_the_ca(https: TlsServer) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{https.root}/studies", timeout=10)  # system trust store only


def test_plain_http_on_the_tls_port_fails_with_a_reason(https: TlsServer) -> None:
    r = requests.get(f"http://127.0.0.1:{https.port}/dicom-web/studies", timeout=10)
    assert r.status_code == 400
    assert r.json() == {"HttpStatus": 400, "HttpError": "Bad Request",
                        "Message": "This server speaks HTTPS only (SslEnabled): "
                                   "the request came in plain HTTP"}
    assert r.headers["Connection"] == "close"
    # The server goes on serving TLS clients.
    assert requests.get(f"{https.root}/studies", verify=https.ca, timeout=10).ok


def test_generated_urls_say_https(https: TlsServer) -> None:
    st, se, sop = uid(), uid(), uid()
    body, ctype = stow_body([ct_bytes(st, se, sop)])
    r = requests.post(f"{https.root}/studies", data=body, headers={"Content-Type": ctype},
                      verify=https.ca, timeout=30)
    assert r.status_code == 200, r.text
    base = f"https://127.0.0.1:{https.port}/dicom-web/studies/{st}"
    answer = r.json()
    assert answer["00081190"]["Value"] == [base]
    assert answer["00081199"]["Value"][0]["00081190"]["Value"] == [
        f"{base}/series/{se}/instances/{sop}"]
    found = requests.get(f"{https.root}/studies", params={"StudyInstanceUID": st},
                         verify=https.ca, timeout=10).json()
    assert found[0]["00081190"]["Value"] == [base]


def test_verify_peers_refuses_a_client_without_certificate(mutual: TlsServer) -> None:
    with pytest.raises(requests.ConnectionError):  # SSLError is one
        requests.get(f"{mutual.root}/studies", verify=mutual.ca, timeout=10)


def test_verify_peers_refuses_a_certificate_of_another_ca(mutual: TlsServer,
                                                          tmp_path: Path) -> None:
    stranger = authority(tmp_path / "other", "Other CA").issue("stranger", server=False)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{mutual.root}/studies", verify=mutual.ca, timeout=10,
                     cert=(str(stranger.certificate), str(stranger.key)))


def test_verify_peers_accepts_a_trusted_client(mutual: TlsServer) -> None:
    assert mutual.probe_cert is not None
    r = requests.get(f"{mutual.root}/studies", verify=mutual.ca, cert=mutual.probe_cert,
                     timeout=10)
    assert r.status_code == 200 and r.json() == []


def test_a_key_missing_from_the_certificate_file_stops_start_up(
        tmp_path: Path, server_cert: Issued) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"SslEnabled": True,
                                  "SslCertificate": str(server_cert.certificate),
                                  "StorageDirectory": str(tmp_path / "storage")}))
    done = subprocess.run([sys.executable, "-m", "app.cli", "--config", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"SslCertificate {server_cert.certificate} holds no private key" in done.stderr
    assert not (tmp_path / "storage").exists()  # stopped before anything was built


def test_unknown_cipher_suites_stop_start_up(tmp_path: Path, server_cert: Issued) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"SslEnabled": True,
                                  "SslCertificate": str(server_cert.combined),
                                  "SslCiphersAccepted": ["NO-SUCH-CIPHER"],
                                  "StorageDirectory": str(tmp_path / "storage")}))
    done = subprocess.run([sys.executable, "-m", "app.cli", "--config", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "SslCiphersAccepted: none of the cipher suites is known" in done.stderr


def handshake(server: TlsServer, *, maximum: ssl.TLSVersion,
              ciphers: str | None = None) -> tuple[str, str]:
    """TLS version and cipher suite a client limited to ``maximum`` (and ``ciphers``)
    negotiates with the server; ``ssl.SSLError`` if the server refuses."""
    context = ssl.create_default_context(cafile=server.ca)
    context.maximum_version = maximum
    if ciphers:
        context.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        version, cipher = tls.version(), tls.cipher()
        assert version is not None and cipher is not None
        return version, cipher[0]


@pytest.fixture(scope="module")
def tls13_only(tmp_path_factory: pytest.TempPathFactory, ca: Authority,
               server_cert: Issued) -> Iterator[TlsServer]:
    srv = TlsServer(tmp_path_factory.mktemp("tls13"), ca,
                    {"SslEnabled": True, "SslCertificate": str(server_cert.combined),
                     "SslMinimumProtocolVersion": 5}).start()
    yield srv
    srv.stop()


def test_minimum_protocol_version(https: TlsServer, tls13_only: TlsServer) -> None:
    """SslMinimumProtocolVersion: 4 (the default) accepts TLS 1.2, 5 only TLS 1.3."""
    assert handshake(https, maximum=ssl.TLSVersion.TLSv1_2)[0] == "TLSv1.2"
    assert handshake(tls13_only, maximum=ssl.TLSVersion.TLSv1_3)[0] == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        handshake(tls13_only, maximum=ssl.TLSVersion.TLSv1_2)


def test_ciphers_accepted(https: TlsServer, tmp_path: Path, ca: Authority,
                          server_cert: Issued) -> None:
    """SslCiphersAccepted (TLS ≤ 1.2 suites): the default is Orthanc's FIPS 140-2 list,
    which has no ChaCha20; a configured list accepts only its own suites."""
    tls12 = ssl.TLSVersion.TLSv1_2
    assert handshake(https, maximum=tls12, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384") == \
        ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
    with pytest.raises(ssl.SSLError):
        handshake(https, maximum=tls12, ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
    only = TlsServer(tmp_path, ca, {"SslEnabled": True,
                                    "SslCertificate": str(server_cert.combined),
                                    "SslCiphersAccepted": ["ECDHE-ECDSA-AES128-GCM-SHA256"]})
    only.start()
    try:
        assert handshake(only, maximum=tls12)[1] == "ECDHE-ECDSA-AES128-GCM-SHA256"
        with pytest.raises(ssl.SSLError):
            handshake(only, maximum=tls12, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
    finally:
        only.stop()
