"""The DICOMweb client routes against a real remote: another ``create_app`` served over
HTTP by werkzeug in a thread, with its own storage and index. The remote records the
headers of every request it receives, so the tests see what our client really sent."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy
import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer, make_server

from app import create_app
from app.dicom.identifiers import orthanc_ids
from backends.base import ResourceType
from tests.api.data import ct_bytes, uid
from tests.api.test_stow import post
from tests.certificates import authority
from tests.conftest import make_settings

ROOT = "/dicom-web"
COUNT = 50  # instances of 1 MiB of the memory test


@dataclass
class Remote:
    """A remote server in a thread; ``seen``: (method, full path, headers) of each request."""

    app: Flask
    server: BaseWSGIServer
    scheme: str = "http"
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_port}{ROOT}/"

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()

    def last(self, method: str) -> tuple[str, dict[str, str]]:
        found = [(path, headers) for m, path, headers in self.seen if m == method]
        assert found, f"the remote received no {method}"
        return found[-1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.extensions["dicomweb"].index.close()


def serve(tmp_path: Path, ssl_context: ssl.SSLContext | None = None,
          **settings: Any) -> Remote:
    app = create_app(make_settings(tmp_path, **settings))
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=ssl_context)
    remote = Remote(app, server, "https" if ssl_context else "http")

    @app.before_request
    def _record() -> None:
        remote.seen.append((request.method, request.full_path.rstrip("?"),
                            dict(request.headers)))

    threading.Thread(target=server.serve_forever, daemon=True).start()
    return remote


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    found = serve(tmp_path / "remote")
    yield found
    found.stop()


def local_app(tmp_path: Path, servers: dict[str, Any], **settings: Any) -> Flask:
    dicomweb = {"Servers": servers, **settings.pop("DicomWeb", {})}
    return create_app(make_settings(tmp_path / "local", DicomWeb=dicomweb, **settings))


@pytest.fixture
def local(tmp_path: Path, remote: Remote) -> Iterator[FlaskClient]:
    app = local_app(tmp_path, {"remote": [remote.url],
                               "sized": {"Url": remote.url, "ChunkedTransfers": False}})
    yield app.test_client()
    app.extensions["jobs"].stop()
    app.extensions["dicomweb"].index.close()


def study_on(client: FlaskClient, count: int = 3, patient_id: str = "P1",
             **kwargs: Any) -> tuple[str, str, list[str], list[bytes]]:
    """A study of ``count`` instances stored through STOW-RS: (study, series, sops, files)."""
    st, se = uid(), uid()
    sops = [uid() for _ in range(count)]
    files = [ct_bytes(st, se, sop, number=n, patient_id=patient_id, **kwargs)
             for n, sop in enumerate(sops, 1)]
    assert post(client, files).status_code == 200
    return st, se, sops, files


def call(client: FlaskClient, server: str, operation: str, body: Any) -> Any:
    return client.post(f"{ROOT}/servers/{server}/{operation}", json=body)


# --------------------------------------------------------------------------------------------
# Servers


def test_servers_list_expand_and_operations(tmp_path: Path) -> None:
    app = local_app(tmp_path, {
        "plain": ["http://a.example/dicom-web"],
        "full": {"Url": "https://b.example/", "Username": "u", "Password": "pw",
                 "HttpHeaders": {"X-Token": "t0ken"}, "Timeout": 5, "HasDelete": True,
                 "Site": 12, "Note": "x"}})
    client = app.test_client()
    assert client.get(f"{ROOT}/servers").get_json() == ["full", "plain"]
    expanded = client.get(f"{ROOT}/servers?expand").get_json()
    assert expanded == {
        "full": {"HasDelete": "1", "HttpHeaders": ["X-Token"], "Note": "x", "Password": None,
                 "Pkcs11": False, "Site": "12", "Timeout": 5, "Url": "https://b.example/",
                 "Username": "u"},
        "plain": {"HttpHeaders": [], "Pkcs11": False, "Timeout": 0,
                  "Url": "http://a.example/dicom-web/"}}
    assert "pw" not in client.get(f"{ROOT}/servers?expand").get_data(as_text=True)
    assert client.get(f"{ROOT}/servers/plain").get_json() == ["get", "retrieve", "stow",
                                                              "wado", "qido"]
    assert client.get(f"{ROOT}/servers/full").get_json()[-1] == "delete"
    assert client.get(f"{ROOT}/servers/nope").status_code == 404
    r = client.post(f"{ROOT}/servers")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    assert client.post(f"{ROOT}/servers/plain").status_code == 405


def test_put_and_delete_servers(local: FlaskClient, remote: Remote) -> None:
    assert local.put(f"{ROOT}/servers/new", json={"Url": remote.url, "HasDelete": 1}) \
        .get_json() == {}
    assert "new" in local.get(f"{ROOT}/servers").get_json()
    assert local.get(f"{ROOT}/servers/new").get_json()[-1] == "delete"
    assert local.put(f"{ROOT}/servers/new", json=[remote.url]).status_code == 200  # replace
    assert "delete" not in local.get(f"{ROOT}/servers/new").get_json()
    assert local.delete(f"{ROOT}/servers/new").get_json() == {}
    assert local.delete(f"{ROOT}/servers/new").status_code == 404  # Orthanc: 400
    assert local.delete(f"{ROOT}/servers/remote").get_json() == {}  # a configured one
    assert local.get(f"{ROOT}/servers").get_json() == ["sized"]


@pytest.mark.parametrize(("body", "problem"), [
    (b"{not json", "not valid JSON"),
    (b'["http://a", "user"]', "password is not provided"),
    (b'{"Url": "ftp://a"}', "Bad URL"),
    (b'{"Url": "http://a", "Pkcs11": true}', "Pkcs11"),
    (b'{"Url": "http://a", "Timeout": -1}', "Timeout"),
    (b'{"Url": "http://a", "HttpHeaders": {"X": 1}}', "HttpHeaders"),
    (b'{"Url": "http://a", "Extra": [1]}', "must be strings: Extra"),
    (b'{"Url": "http://a", "HasDelete": "maybe"}', "HasDelete"),
    (b'{"Url": "http://a", "CertificateFile": "/nonexistent.pem"}', "Cannot open"),
])
def test_put_server_refuses_bad_definitions(local: FlaskClient, body: bytes,
                                            problem: str) -> None:
    r = local.put(f"{ROOT}/servers/bad", data=body, content_type="application/json")
    assert r.status_code == 400
    assert problem in r.get_json()["Message"]
    assert "bad" not in local.get(f"{ROOT}/servers").get_json()


def test_bad_configured_server_stops_start_up(tmp_path: Path) -> None:
    from app.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r'Servers: server "hsm": .*Pkcs11'):
        make_settings(tmp_path, DicomWeb={"Servers": {"hsm": {"Url": "http://a",
                                                              "Pkcs11": True}}})
    with pytest.raises(ConfigurationError, match=r'server "two": The HTTP password'):
        make_settings(tmp_path, DicomWeb={"Servers": {"two": ["http://a", "user"]}})


def test_rest_changes_are_shared_and_dropped_when_the_configuration_changes(
        tmp_path: Path) -> None:
    """ServersInDatabase false: a PUT on one worker is seen by another (same index), and
    forgotten once the configuration's Servers section differs."""
    servers = {"a": ["http://a.example/"]}
    first, second = local_app(tmp_path, servers), local_app(tmp_path, servers)
    first.test_client().put(f"{ROOT}/servers/b", json=["http://b.example/"])
    first.test_client().delete(f"{ROOT}/servers/a")
    assert second.test_client().get(f"{ROOT}/servers").get_json() == ["b"]
    assert local_app(tmp_path, servers).test_client().get(f"{ROOT}/servers").get_json() == ["b"]
    changed = local_app(tmp_path, {**servers, "c": ["http://c.example/"]})
    assert changed.test_client().get(f"{ROOT}/servers").get_json() == ["a", "c"]


def test_servers_in_database_are_seeded_once_and_persist(tmp_path: Path) -> None:
    def app(servers: dict[str, Any]) -> FlaskClient:
        return local_app(tmp_path, servers, DicomWeb={"ServersInDatabase": True}).test_client()

    client = app({"a": ["http://a.example/", "user", "secret"]})
    assert client.get(f"{ROOT}/servers").get_json() == ["a"]
    client.put(f"{ROOT}/servers/b", json={"Url": "http://b.example/", "Password": "",
                                          "Username": "bob"})
    client.delete(f"{ROOT}/servers/a")
    # A restart with another configuration: the index is the truth, not Servers.
    again = app({"z": ["http://z.example/"]})
    assert again.get(f"{ROOT}/servers").get_json() == ["b"]
    assert again.get(f"{ROOT}/servers?expand").get_json()["b"]["Username"] == "bob"
    again.delete(f"{ROOT}/servers/b")
    assert app({"z": ["http://z.example/"]}).get(f"{ROOT}/servers").get_json() == []


# --------------------------------------------------------------------------------------------
# /get, /qido, outgoing requests


def test_get_proxies_the_remote_answer(local: FlaskClient, remote: Remote) -> None:
    st, se, sops, _ = study_on(remote.client)
    r = call(local, "remote", "get", {"Uri": "/studies", "Arguments": {"StudyInstanceUID": st}})
    assert r.status_code == 200
    assert r.content_type == "application/dicom+json"
    assert r.get_json()[0]["0020000D"]["Value"] == [st]
    assert "Transfer-Encoding" not in r.headers
    rendered = call(local, "remote", "get", {
        "Uri": f"/studies/{st}/series/{se}/instances/{sops[0]}/rendered",
        "HttpHeaders": {"Accept": "image/png"}})
    assert rendered.status_code == 200
    assert rendered.content_type == "image/png"
    assert rendered.data.startswith(b"\x89PNG")


def test_arguments_are_encoded_sorted_and_bare(local: FlaskClient, remote: Remote) -> None:
    call(local, "remote", "get", {"Uri": "/studies", "Arguments": {
        "PatientName": "DOE^J*", "limit": "5", "fuzzymatching": "", "a b": "c&d"}})
    path, _ = remote.last("GET")
    # Sorted by key as bytes (Orthanc's std::map), unreserved characters only left as is.
    assert path == f"{ROOT}/studies?PatientName=DOE%5EJ*&a%20b=c%26d&fuzzymatching&limit=5"
    r = call(local, "remote", "get", {"Uri": "/studies?limit=1"})
    assert r.status_code == 400 and "explicit \"?\" is disallowed" in r.get_json()["Message"]


def test_headers_merge_server_then_request(tmp_path: Path, remote: Remote) -> None:
    app = local_app(tmp_path, {"h": {"Url": remote.url, "HttpHeaders": {
        "X-Site": "server", "X-Both": "server"}}})
    call(app.test_client(), "h", "get", {"Uri": "/studies",
                                         "HttpHeaders": {"x-both": "request"}})
    _, headers = remote.last("GET")
    assert headers["X-Site"] == "server"
    assert headers["X-Both"] == "request"
    r = call(app.test_client(), "h", "get", {"Uri": "/studies",
                                             "HttpHeaders": {"X-Bad": "a\r\nInjected: 1"}})
    assert r.status_code == 400


def test_qido_is_simplified(local: FlaskClient, remote: Remote) -> None:
    st, _, _, _ = study_on(remote.client, patient_id="QIDO1")
    r = call(local, "remote", "qido", {"Uri": "/studies", "Arguments": {"PatientID": "QIDO1"}})
    assert r.status_code == 200
    [study] = r.get_json()
    assert study["0020000D"] == {"Group": 0x20, "Element": 0xD, "Name": "StudyInstanceUID",
                                 "vr": "UI", "Value": st}
    assert study["00100010"]["Value"] == "DOE^JOHN"  # a person name: its Alphabetic
    assert study["00201208"]["Value"] == 3  # an integer stays one
    _, headers = remote.last("GET")
    assert headers["Accept"] == "application/dicom+json"


def test_basic_authentication_to_a_secured_remote(tmp_path: Path) -> None:
    secured = serve(tmp_path / "secured", AuthenticationEnabled=True,
                    RegisteredUsers={"alice": "s3cret-pw"})
    try:
        app = local_app(tmp_path, {"good": [secured.url, "alice", "s3cret-pw"],
                                   "bad": [secured.url, "alice", "wrong-pw"]})
        client = app.test_client()
        assert call(client, "good", "qido", {"Uri": "/studies"}).get_json() == []
        _, headers = secured.last("GET")
        assert headers["Authorization"].startswith("Basic ")
        r = call(client, "bad", "qido", {"Uri": "/studies"})
        assert r.status_code == 401
        assert "wrong-pw" not in r.get_data(as_text=True)
    finally:
        secured.stop()


def test_a_remote_that_never_answers_gives_504_quickly(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are accepted by the kernel, never answered
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web/"
        app = local_app(tmp_path, {"silent": {"Url": url, "Timeout": 1}})
        started = time.monotonic()
        r = call(app.test_client(), "silent", "qido", {"Uri": "/studies"})
        assert r.status_code == 504
        assert time.monotonic() - started < 5
        assert "did not answer within 1 s" in r.get_json()["Message"]
    finally:
        silent.close()


def test_remote_failures_are_mapped(local: FlaskClient, remote: Remote, tmp_path: Path) -> None:
    r = call(local, "remote", "get", {"Uri": f"/studies/{uid()}/metadata"})
    assert r.status_code == 404 and "404" in r.get_json()["Message"]
    r = call(local, "remote", "get", {"Uri": "/studies", "Arguments": {"limit": "x"}})
    assert r.status_code == 400
    st, se, sops, _ = study_on(remote.client)
    r = call(local, "remote", "get", {
        "Uri": f"/studies/{st}/series/{se}/instances/{sops[0]}/rendered",
        "HttpHeaders": {"Accept": "text/plain"}})
    assert r.status_code == 502 and "HTTP 406" in r.get_json()["Message"]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    app = local_app(tmp_path / "other", {"down": [f"http://127.0.0.1:{port}/"]})
    r = call(app.test_client(), "down", "get", {"Uri": "/studies"})
    assert r.status_code == 502 and "Cannot reach" in r.get_json()["Message"]


@pytest.mark.parametrize(("operation", "body", "status"), [
    ("get", b"{nope", 400), ("get", b"[]", 400), ("get", b'{"Uri": 1}', 400),
    ("get", b'{"Uri": "/studies", "Arguments": {"a": 1}}', 400),
    ("qido", b'{"Uri": "/studies", "HttpHeaders": []}', 400),
    ("stow", b"{}", 400), ("stow", b'{"Resources": "x"}', 400),
    ("stow", b'{"Resources": [""]}', 400), ("stow", b'{"Resources": ["unknown-id"]}', 404),
    ("stow", b'{"Resources": [], "Synchronous": "yes"}', 400),
    ("stow", b'{"Resources": [], "Priority": 1.5}', 400),
    ("retrieve", b"{}", 400), ("retrieve", b'{"Resources": [{"Series": "1.2"}]}', 400),
    ("retrieve", b'{"Resources": [{"Study": "1.2", "Instance": "1.3"}]}', 400),
    ("retrieve", b'{"Resources": [{"Study": "../../x"}]}', 400),
    ("wado", b"{}", 400), ("delete", b"{}", 400),
])
def test_bad_bodies(local: FlaskClient, operation: str, body: bytes, status: int) -> None:
    r = local.post(f"{ROOT}/servers/remote/{operation}", data=body,
                   content_type="application/json")
    assert r.status_code == status, r.get_json()
    assert r.get_json()["Message"]


@pytest.mark.parametrize("operation", ["get", "qido", "wado", "retrieve", "stow", "delete"])
def test_unknown_server_and_wrong_method(local: FlaskClient, operation: str) -> None:
    r = call(local, "nope", operation, {"Uri": "/studies", "Resources": [],
                                        "Level": "Study", "StudyInstanceUID": "1.2"})
    assert r.status_code == 404
    r = local.get(f"{ROOT}/servers/remote/{operation}")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]  # Orthanc: 400 for some


# --------------------------------------------------------------------------------------------
# STOW-RS client


def test_stow_of_a_patient_sends_every_instance_chunked(local: FlaskClient,
                                                        remote: Remote) -> None:
    st1, se1, sops1, _ = study_on(local, 2, patient_id="PAT")
    st2, se2, sops2, _ = study_on(local, 3, patient_id="PAT")
    patient = orthanc_ids("PAT", st1, se1, sops1[0])[0]
    r = call(local, "remote", "stow", {"Resources": [patient]})
    assert r.status_code == 200, r.get_json()
    content = r.get_json()
    instances = [orthanc_ids("PAT", st, se, sop)[3]
                 for st, se, sops in ((st1, se1, sops1), (st2, se2, sops2)) for sop in sops]
    assert content["Resources"] == {"Patients": [patient], "Instances": instances}
    assert (content["Server"], content["InstancesCount"], content["NetworkSizeMB"]) == \
        ("remote", "5", "0")
    index = remote.app.extensions["dicomweb"].index
    assert len(index.instances(st1)) == 2 and len(index.instances(st2)) == 3
    path, headers = remote.last("POST")
    assert path == f"{ROOT}/studies"
    assert headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in headers
    assert headers["Accept"] == "application/dicom+json"
    assert headers["Content-Type"].startswith('multipart/related; type="application/dicom"')


def test_stow_sized_sends_content_length(local: FlaskClient, remote: Remote) -> None:
    st, se, sops, files = study_on(local, 3)
    series = orthanc_ids("P1", st, se, sops[0])[2]
    r = call(local, "sized", "stow", {"Resources": [series]})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["Resources"] == {"Series": [series], "Instances": [
        orthanc_ids("P1", st, se, sop)[3] for sop in sops]}
    _, headers = remote.last("POST")
    assert "Transfer-Encoding" not in headers
    assert int(headers["Content-Length"]) > sum(map(len, files))
    stored = remote.app.extensions["dicomweb"]
    assert sorted(stored.storage.open(i.storage_key).read() for i in
                  stored.index.instances(st)) == sorted(files)


def test_stow_asynchronous_answers_a_job(local: FlaskClient, remote: Remote) -> None:
    st, se, sops, _ = study_on(local, 2)
    study = orthanc_ids("P1", st, se, sops[0])[1]
    r = call(local, "remote", "stow", {"Resources": [study], "Asynchronous": True,
                                       "Priority": 3})
    job = r.get_json()
    assert set(job) == {"ID", "Path"}
    assert job["Path"] == f"../../../jobs/{job['ID']}"
    final = wait_job(local, job["ID"])
    assert final["State"] == "Success", final
    assert (final["Type"], final["Priority"]) == ("DicomWebStowClient", 3)
    assert final["Content"]["Resources"] == {
        "Studies": [study], "Instances": [orthanc_ids("P1", st, se, s)[3] for s in sops]}
    assert len(remote.app.extensions["dicomweb"].index.instances(st)) == 2


def wait_job(client: FlaskClient, job_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").get_json()
        if job["State"] in ("Success", "Failure"):
            return dict(job)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def wait_state(client: FlaskClient, job_id: str, state: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").get_json()
        if job["State"] == state:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never {state}: {job}")


@pytest.mark.parametrize("server", ["remote", "sized"])
def test_stow_paused_and_resumed_sends_every_instance(local: FlaskClient, remote: Remote,
                                                      server: str) -> None:
    """Chunked: the body is closed after the instance in flight and the remote acknowledges
    what it got; sized: the POST is aborted and the undelimited instance sent again."""
    st, se, sops, _ = study_on(local, 6)
    study = orthanc_ids("P1", st, se, sops[0])[1]
    job = call(local, server, "stow", {"Resources": [study], "Asynchronous": True,
                                       "Debug": True}).get_json()  # 100 ms per instance
    wait_state(local, job["ID"], "Running")
    time.sleep(0.25)
    assert local.post(f"/jobs/{job['ID']}/pause").status_code == 200
    paused = wait_state(local, job["ID"], "Paused")
    assert 0 < paused["Progress"] < 100
    posts = sum(1 for method, _, _ in remote.seen if method == "POST")
    assert local.post(f"/jobs/{job['ID']}/resume").status_code == 200
    final = wait_job(local, job["ID"])
    assert final["State"] == "Success", final
    assert sum(1 for method, _, _ in remote.seen if method == "POST") == posts + 1
    assert len(remote.app.extensions["dicomweb"].index.instances(st)) == 6


def test_stow_failure_of_the_remote_fails_the_job(tmp_path: Path, remote: Remote) -> None:
    app = local_app(tmp_path, {"ro": [remote.url.replace(ROOT, "/nowhere")]})
    client = app.test_client()
    st, se, sops, _ = study_on(client, 1)
    r = call(client, "ro", "stow", {"Resources": [orthanc_ids("P1", st, se, sops[0])[3]]})
    assert r.status_code == 404  # the remote's 404, from the job's failure
    [job] = client.get("/jobs?expand").get_json()
    assert job["State"] == "Failure" and job["ErrorCode"] == 17


def test_stow_of_a_lost_blob_fails_clearly(local: FlaskClient) -> None:
    st, se, sops, _ = study_on(local, 2)
    svc = local.application.extensions["dicomweb"]
    svc.storage.delete(svc.index.instances(st)[1].storage_key)
    r = call(local, "remote", "stow", {"Resources": [orthanc_ids("P1", st, se, sops[0])[1]]})
    assert r.status_code == 500
    assert "cannot be read from the storage area" in r.get_json()["Details"]
    [job] = local.get("/jobs?expand").get_json()
    assert (job["State"], job["ErrorCode"]) == ("Failure", 13)


# --------------------------------------------------------------------------------------------
# Retrieve / WADO client


def test_retrieve_stores_byte_identical_files_and_answers_local_ids(
        local: FlaskClient, remote: Remote) -> None:
    st, se, sops, files = study_on(remote.client, 3)
    other_st, other_se, other_sops, other_files = study_on(remote.client, 1)
    r = call(local, "remote", "retrieve", {"Resources": [
        {"Study": st}, {"Study": other_st, "Series": other_se, "Instance": other_sops[0]}]})
    assert r.status_code == 200, r.get_json()
    content = r.get_json()
    ids = [orthanc_ids("P1", st, se, sop)[3] for sop in sops] + \
        [orthanc_ids("P1", other_st, other_se, other_sops[0])[3]]
    assert content["ReceivedInstancesCount"] == "4"
    assert content["NetworkUsageMB"] == "0"
    assert sorted(content["Instances"]) == sorted(ids)
    svc = local.application.extensions["dicomweb"]
    for id_, original in zip(ids, files + other_files, strict=True):
        [instance] = svc.index.resource_instances(ResourceType.INSTANCE, id_)
        assert svc.storage.open(instance.storage_key).read() == original
    path, headers = remote.last("GET")
    assert path == f"{ROOT}/studies/{other_st}/series/{other_se}/instances/{other_sops[0]}"
    assert headers["Accept"] == 'multipart/related; type="application/dicom"; transfer-syntax=*'


def test_retrieve_arguments_and_accept_rules(tmp_path: Path, remote: Remote) -> None:
    st, _, _, _ = study_on(remote.client, 1)
    app = local_app(tmp_path, {"old": {"Url": remote.url,
                                       "HasWadoRsUniversalTransferSyntax": False}})
    client = app.test_client()
    r = call(client, "old", "retrieve", {"Resources": [{"Study": st}],
                                         "GetArguments": {"a": "1"}, "Arguments": {"b": ""}})
    assert r.status_code == 200, r.get_json()
    path, headers = remote.last("GET")
    assert path == f"{ROOT}/studies/{st}?a=1&b"
    assert "transfer-syntax" not in headers.get("Accept", "")
    r = call(client, "old", "retrieve", {"Resources": [{"Study": st}],
                                         "HttpHeaders": {"Accept": "multipart/related; "
                                                         "type=\"application/dicom\""}})
    assert r.status_code == 200
    assert remote.last("GET")[1]["Accept"] == 'multipart/related; type="application/dicom"'


def test_wado_is_asynchronous_by_default(local: FlaskClient, remote: Remote) -> None:
    st, se, _, _ = study_on(remote.client, 2)
    job = call(local, "remote", "wado", {"Uri": f"/studies/{st}/series/{se}"}).get_json()
    assert set(job) == {"ID", "Path"}
    final = wait_job(local, job["ID"])
    assert final["State"] == "Success", final
    assert final["Type"] == "DicomWebWadoRetrieveClient"
    assert final["Content"]["ReceivedInstancesCount"] == "2"
    r = call(local, "remote", "wado", {"Uri": f"/studies/{st}", "Synchronous": True})
    assert r.get_json()["ReceivedInstancesCount"] == "2"


def test_retrieve_of_a_non_multipart_answer_fails_with_the_hint(local: FlaskClient,
                                                                remote: Remote) -> None:
    st, _, _, _ = study_on(remote.client, 1)
    r = call(local, "remote", "wado", {"Uri": f"/studies/{st}/metadata",  # 406 for DICOM
                                       "Synchronous": True})
    assert r.status_code == 502
    assert "HTTP 406" in r.get_json()["Details"]
    assert "HasWadoRsUniversalTransferSyntax" in r.get_json()["Details"]
    r = call(local, "remote", "wado", {"Uri": f"/studies/{st}/metadata", "Synchronous": True,
                                       "HttpHeaders": {"Accept": "application/dicom+json"}})
    assert r.status_code == 502
    assert "multipart/related" in r.get_json()["Details"]
    assert "HasWadoRsUniversalTransferSyntax" in r.get_json()["Details"]


def test_retrieve_beyond_the_storage_limits_fails(tmp_path: Path, remote: Remote) -> None:
    first, _, _, _ = study_on(remote.client, 1, patient_id="A")
    second, _, _, _ = study_on(remote.client, 1, patient_id="B")
    app = local_app(tmp_path, {"remote": [remote.url]}, MaximumPatientCount=1,
                    MaximumStorageMode="Reject")
    r = call(app.test_client(), "remote", "retrieve", {"Resources": [{"Study": first},
                                                                     {"Study": second}]})
    assert r.status_code == 507
    assert "storage limits" in r.get_json()["Details"]
    assert len(app.extensions["dicomweb"].index.instances(first)) == 1  # kept


def test_retrieve_is_refused_when_read_only(tmp_path: Path, remote: Remote) -> None:
    app = local_app(tmp_path, {"remote": [remote.url]}, ReadOnly=True)
    for operation in ("retrieve", "wado"):
        r = call(app.test_client(), "remote", operation, {"Resources": [], "Uri": "/x"})
        assert r.status_code == 405 and "read-only" in r.get_json()["Message"]


def test_retrieve_of_a_large_series_keeps_memory_bounded(local: FlaskClient,
                                                         remote: Remote) -> None:
    """50 instances of 1 MiB: the retrieve never holds more than a few of them. The peak
    (both servers of this process together) measured 16 MiB for 25, 50 and 100 instances."""
    st, se = uid(), uid()
    for n in range(COUNT):
        pixels = numpy.full((1, 724, 724), n, dtype="uint16")
        assert post(remote.client, [ct_bytes(st, se, number=n, rows=724, columns=724,
                                             pixels=pixels)]).status_code == 200
    tracemalloc.start()
    try:
        r = call(local, "remote", "retrieve", {"Resources": [{"Study": st}]})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.status_code == 200 and r.get_json()["ReceivedInstancesCount"] == str(COUNT)
    assert r.get_json()["NetworkUsageMB"] == str(COUNT)
    assert peak < 20 << 20, f"peak {peak >> 20} MiB for {COUNT} MiB retrieved"


# --------------------------------------------------------------------------------------------
# /delete


def test_delete_on_the_remote(tmp_path: Path, remote: Remote) -> None:
    st, se, sops, _ = study_on(remote.client, 2)
    app = local_app(tmp_path, {"del": {"Url": remote.url, "HasDelete": True},
                               "nodel": [remote.url]})
    client = app.test_client()
    body = {"Level": "Instance", "StudyInstanceUID": st, "SeriesInstanceUID": se,
            "SOPInstanceUID": sops[0]}
    r = call(client, "nodel", "delete", body)
    assert r.status_code == 400 and "HasDelete" in r.get_json()["Message"]
    assert call(client, "del", "delete", body).get_json() == {}
    assert remote.last("DELETE")[0] == f"{ROOT}/studies/{st}/series/{se}/instances/{sops[0]}"
    index = remote.app.extensions["dicomweb"].index
    assert len(index.instances(st)) == 1
    assert call(client, "del", "delete", {"Level": "study", "StudyInstanceUID": st}) \
        .get_json() == {}
    assert index.instances(st) == []
    assert call(client, "del", "delete", {"Level": "Study", "StudyInstanceUID": st}) \
        .status_code == 404
    for bad in ({"Level": "Patient", "StudyInstanceUID": st},
                {"Level": "Series", "StudyInstanceUID": st}):
        assert call(client, "del", "delete", bad).status_code == 400


# --------------------------------------------------------------------------------------------
# HTTPS with a client certificate whose key is encrypted


def test_https_with_an_encrypted_client_key(tmp_path: Path) -> None:
    ca = authority(tmp_path / "pki")
    server_cert = ca.issue("remote")
    client_cert = ca.issue("client", server=False)
    encrypted = tmp_path / "pki" / "client-encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(client_cert.key), "-out", str(encrypted),
                    "-aes256", "-passout", "pass:key-pw"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_cert.certificate, server_cert.key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(ca.certificate)
    secure = serve(tmp_path / "tls", ssl_context=context)
    try:
        definition = {"Url": secure.url, "CertificateFile": str(client_cert.certificate),
                      "CertificateKeyFile": str(encrypted)}
        app = local_app(tmp_path, {
            "tls": {**definition, "CertificateKeyPassword": "key-pw"},
            "badpw": {**definition, "CertificateKeyPassword": "wrong-key-pw"},
            "nocert": [secure.url]}, HttpsCACertificates=str(ca.certificate))
        client = app.test_client()
        assert call(client, "tls", "qido", {"Uri": "/studies"}).get_json() == []
        r = call(client, "badpw", "qido", {"Uri": "/studies"})
        assert r.status_code == 500 and "CertificateKeyPassword" in r.get_json()["Message"]
        assert "wrong-key-pw" not in r.get_data(as_text=True)
        assert call(client, "nocert", "qido", {"Uri": "/studies"}).status_code == 502
        unverified = local_app(tmp_path / "x", {"tls": [secure.url]})
        r = call(unverified.test_client(), "tls", "qido", {"Uri": "/studies"})
        assert r.status_code == 502 and "TLS" in r.get_json()["Message"]
    finally:
        secure.stop()
