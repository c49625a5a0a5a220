"""AuditLogFile: one JSON line per request touching patient data, with the real status,
never a secret, never interleaved."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import audit, create_app
from app.check_config import extra_problems
from app.errors import ConfigurationError
from tests.api.data import ct_bytes, uid
from tests.api.test_auth import ADMIN, READER, ROLES, USERS, WRITER, auth
from tests.api.test_stow import post
from tests.conftest import make_settings

KEYS = ["time", "user", "remote", "method", "route", "path", "study", "status"]


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]
    for record in records:
        assert list(record) == KEYS
    return records


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.log"


@pytest.fixture
def audited(tmp_path: Path, log_path: Path) -> Iterator[Flask]:
    log_path.parent.mkdir()
    app = create_app(make_settings(tmp_path, AuthenticationEnabled=True,
                                   RegisteredUsers=USERS, UserRoles=ROLES,
                                   AuditLogFile=str(log_path)))
    yield app
    app.extensions["dicomweb"].index.close()


@pytest.fixture
def client(audited: Flask) -> FlaskClient:
    return audited.test_client()


@pytest.fixture
def stored(client: FlaskClient, log_path: Path) -> dict[str, str]:
    st, se, sop = uid(), uid(), uid()
    assert post(client, [ct_bytes(st, se, sop)], **WRITER).status_code == 200
    log_path.unlink()
    return {"st": st, "se": se, "sop": sop}


def test_stow_lines(client: FlaskClient, log_path: Path) -> None:
    st = uid()
    assert post(client, [ct_bytes(st, uid())], **WRITER).status_code == 200
    assert post(client, [ct_bytes(st, uid())], path=f"/dicom-web/studies/{st}",
                **WRITER).status_code == 200
    first, second = lines(log_path)
    # The study of a POST to /studies is known only once the body is parsed: null.
    assert first | {"time": None} == {
        "time": None, "user": "writer", "remote": "127.0.0.1", "method": "POST",
        "route": "/dicom-web/studies", "path": "/dicom-web/studies", "study": None,
        "status": 200}
    assert second["route"] == "/dicom-web/studies/<study>" and second["study"] == st
    stamp = datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert first["time"].endswith("Z") and stamp.utcoffset().total_seconds() == 0


def test_qido_lines(client: FlaskClient, stored: dict[str, str], log_path: Path) -> None:
    st, se = stored["st"], stored["se"]
    assert client.get(f"/dicom-web/studies?StudyInstanceUID={st}&PatientName=DOE*",
                      headers=READER).status_code == 200
    assert client.get(f"/dicom-web/studies/{st}/series/{se}/instances",
                      headers=READER).status_code == 200
    assert client.get("/dicom-web/instances?0020000D=" + st, headers=READER).status_code \
        == 200
    assert client.get("/dicom-web/studies", headers=READER).status_code == 200
    by_query, by_path, by_tag, everything = lines(log_path)
    assert by_query["route"] == "/dicom-web/studies" and by_query["study"] == st
    assert by_query["path"] == "/dicom-web/studies"  # no query string: no patient names
    assert by_path["route"] == "/dicom-web/studies/<study>/series/<series>/instances"
    assert by_path["study"] == st and by_path["user"] == "reader"
    assert by_tag["study"] == st
    assert everything["study"] is None


def test_wado_lines(client: FlaskClient, stored: dict[str, str], log_path: Path) -> None:
    st, se, sop = stored["st"], stored["se"], stored["sop"]
    instance = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}"
    r = client.get(instance, headers=READER)
    assert r.status_code == 200 and len(r.get_data()) > 100
    r.close()
    assert client.get(f"{instance}/metadata", headers=READER).status_code == 200
    assert client.head(f"{instance}/frames/1", headers=READER).status_code == 200
    assert client.get(f"/dicom-web/studies/{uid()}/metadata", headers=READER).status_code \
        == 404
    retrieve, metadata, head, missing = lines(log_path)
    assert retrieve | {"time": None} == {
        "time": None, "user": "reader", "remote": "127.0.0.1", "method": "GET",
        "route": "/dicom-web/studies/<study>/series/<series>/instances/<sop>",
        "path": instance, "study": st, "status": 200}
    assert metadata["route"].endswith("/instances/<sop>/metadata")
    assert head["method"] == "HEAD"
    assert head["route"].endswith("/frames/<frame_list>")
    assert missing["status"] == 404 and missing["route"] == "/dicom-web/studies/<study>/metadata"


def test_wado_uri_line(client: FlaskClient, stored: dict[str, str], log_path: Path) -> None:
    st, se, sop = stored["st"], stored["se"], stored["sop"]
    url = (f"/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={sop}"
           "&contentType=application/dicom")
    assert client.get(url, headers=READER).status_code == 200
    assert client.get("/wado?requestType=WADO", headers=READER).status_code == 400
    ok, bad = lines(log_path)
    assert ok["route"] == "/wado" and ok["path"] == "/wado" and ok["study"] == st
    assert ok["status"] == 200 and bad["status"] == 400 and bad["study"] is None


def test_delete_lines(client: FlaskClient, stored: dict[str, str], log_path: Path) -> None:
    st, se = stored["st"], stored["se"]
    assert client.delete(f"/dicom-web/studies/{st}/series/{se}", headers=READER) \
        .status_code == 403
    assert client.delete(f"/dicom-web/studies/{st}", headers=ADMIN).status_code == 200
    assert client.delete(f"/dicom-web/studies/{st}", headers=ADMIN).status_code == 404
    refused, done, again = lines(log_path)
    assert refused | {"time": None} == {
        "time": None, "user": "reader", "remote": "127.0.0.1", "method": "DELETE",
        "route": "/dicom-web/studies/<study>/series/<series>",
        "path": f"/dicom-web/studies/{st}/series/{se}", "study": st, "status": 403}
    assert done["user"] == "admin" and done["status"] == 200 and done["study"] == st
    assert again["status"] == 404


def test_refused_requests_are_logged(client: FlaskClient, log_path: Path) -> None:
    st = uid()
    assert client.get(f"/dicom-web/studies/{st}/metadata").status_code == 401
    assert client.get(f"/dicom-web/studies/{st}/metadata",
                      headers=auth("reader", "guess")).status_code == 401
    assert client.get(f"/dicom-web/studies/{st}/metadata",
                      headers=auth("mallory", "guess")).status_code == 401
    anonymous, wrong_password, unknown_user = lines(log_path)
    assert anonymous["status"] == 401 and anonymous["user"] is None
    assert anonymous["study"] == st and anonymous["route"] == "/dicom-web/studies/<study>/metadata"
    assert wrong_password["user"] == "reader" and wrong_password["status"] == 401
    assert unknown_user["user"] is None  # an unknown name may be a mistyped password


def test_remote_refusal_is_logged(tmp_path: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    app = create_app(make_settings(tmp_path, AuditLogFile=str(log_path)))
    r = app.test_client().get("/dicom-web/studies", environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert r.status_code == 403
    (line,) = lines(log_path)
    assert line["remote"] == "10.0.0.5" and line["status"] == 403 and line["user"] is None


def test_unexpected_error_is_logged_as_500(audited: Flask, client: FlaskClient,
                                           log_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(audited.extensions["dicomweb"].index, "search", boom)
    assert client.get("/dicom-web/studies", headers=READER).status_code == 500
    (line,) = lines(log_path)
    assert line["status"] == 500 and line["route"] == "/dicom-web/studies"


def test_what_is_not_audited(client: FlaskClient, log_path: Path) -> None:
    assert client.get("/static/logo.png", headers=READER).status_code == 404
    assert client.get("/static/logo.png").status_code == 401
    assert client.get("/nowhere", headers=READER).status_code == 404
    assert client.options("/dicom-web/studies", headers={
        "Origin": "https://viewer.example.org", "Access-Control-Request-Method": "GET"}) \
        .status_code == 200
    assert client.options("/dicom-web/studies", headers=READER).status_code == 200
    assert lines(log_path) == []
    # A path under the DICOMweb root that matches no route is an attempt on patient data.
    assert client.get("/dicom-web/nothing-here", headers=READER).status_code == 404
    assert client.open("/dicom-web/studies", method="PATCH", headers=ADMIN).status_code == 405
    unknown, method = lines(log_path)
    assert unknown["route"] is None and unknown["status"] == 404
    assert method["route"] is None and method["status"] == 405 and method["method"] == "PATCH"


def test_every_patient_route_is_audited(audited: Flask, client: FlaskClient,
                                        log_path: Path) -> None:
    """Walk the URL map: every rule of the DICOMweb and WADO-URI services writes a line."""
    from tests.api.test_auth import every_route

    # Static files and the web pages (app/web.py) carry no patient data: their data comes
    # through the audited API routes.
    pages = ("static", "web.", "web_client.")
    routes = [(m, u, e) for m, u, e in every_route(audited)
              if m != "OPTIONS" and not e.startswith(pages)]
    for method, url, _ in routes:
        client.open(url, method=method, headers=ADMIN)
    written = lines(log_path)
    assert len(written) == len(routes)
    assert {line["route"] for line in written} == {
        r.rule for r in audited.url_map.iter_rules() if not r.endpoint.startswith(pages)}


def test_no_secret_in_the_log(client: FlaskClient, stored: dict[str, str],
                              log_path: Path) -> None:
    for user, password in USERS.items():
        client.get("/dicom-web/studies", headers=auth(user, password))
        client.get("/dicom-web/studies", headers=auth(user, password + "x"))
    client.get("/dicom-web/studies", headers=auth("admin pw", "admin pw"))  # swapped fields
    text = log_path.read_text()
    for password in USERS.values():
        assert password.encode("ascii", "backslashreplace").decode() not in text
        assert json.dumps(password)[1:-1] not in text
    assert "Authorization" not in text and "Basic" not in text
    for header in (ADMIN, READER, WRITER):
        assert header["Authorization"].split()[1] not in text
    assert len(lines(log_path)) == 2 * len(USERS) + 1


def test_off_by_default(client: FlaskClient, tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    app.test_client().get("/dicom-web/studies")
    assert not [p for p in tmp_path.rglob("*.log")]


def test_file_is_private(client: FlaskClient, log_path: Path) -> None:
    client.get("/dicom-web/studies", headers=READER)
    assert log_path.stat().st_mode & 0o777 == 0o600


def test_unusable_file_stops_start_up(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "audit.log"
    settings = make_settings(tmp_path, AuditLogFile=str(missing))
    with pytest.raises(ConfigurationError, match="does not exist"):
        create_app(settings)
    assert any("AuditLogFile" in p and "does not exist" in p for p in extra_problems(settings))
    folder = make_settings(tmp_path, AuditLogFile=str(tmp_path))
    assert "is a folder" in " ".join(extra_problems(folder))


def test_a_failed_write_does_not_fail_the_request(client: FlaskClient, log_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    log_path.parent.rmdir()
    with caplog.at_level(logging.ERROR, logger="app.audit"):
        assert client.get("/dicom-web/studies", headers=READER).status_code == 200
    assert "audit log: cannot write" in caplog.text


# --------------------------------------------------------------------------- #
# Concurrent writers
# --------------------------------------------------------------------------- #

def test_concurrent_requests_never_interleave(audited: Flask, log_path: Path) -> None:
    threads, per_thread = 8, 25

    def work(n: int) -> None:
        client = audited.test_client()
        for i in range(per_thread):
            # Long paths make the lines big enough for a torn write to show.
            client.get(f"/dicom-web/studies/{n}.{i}.{'9' * 3000}/metadata", headers=READER)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    written = lines(log_path)
    assert len(written) == threads * per_thread
    assert {line["status"] for line in written} == {400}  # UIDs over 64 characters
    assert {line["route"] for line in written} == {"/dicom-web/studies/<study>/metadata"}


def _append_many(path: str, worker: int, count: int) -> None:
    log = audit.AuditLog(path)
    for i in range(count):
        log.write({"time": "t", "user": f"w{worker}", "remote": "127.0.0.1", "method": "GET",
                   "route": "/r", "path": "/" + str(worker) * 20_000, "study": str(i),
                   "status": 200})


def test_processes_appending_never_interleave(log_path: Path) -> None:
    """gunicorn workers: separate processes, each opening the file with O_APPEND."""
    log_path.parent.mkdir()
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_append_many, args=(str(log_path), n, 100))
             for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    written = lines(log_path)
    assert len(written) == 400
    for line in written:
        worker = line["user"][1:]
        assert line["path"] == "/" + worker * 20_000
    assert os.path.getsize(log_path) == sum(
        len(json.dumps(line)) + 1 for line in written)
