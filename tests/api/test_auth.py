"""HTTP Basic authentication, roles and the remote-access guard through the Flask test
client. The route walk is taken from ``app.url_map``: a route added later is covered by it
without anyone editing this file."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app, security
from tests.api.data import ct_bytes, uid
from tests.api.test_stow import post
from tests.conftest import make_settings

REALM = 'Basic realm="Test PACS"'
HASHED = security.hash_password("hashed pw", 1_000)
USERS = {"admin": "admin pw", "reader": "reader pw", "writer": "writer pw",
         "hashed": HASHED, "zoé": "mot de passe é"}
ROLES = {"admin": "admin", "reader": "read-only", "writer": "read-write"}
# Every blueprint create_app registers, plus Flask's static route: the walk must meet them.
EXPECTED_ENDPOINT_GROUPS = {"qido_rs", "wado_rs", "stow_rs", "delete", "wado_uri", "static",
                            "dicomweb_client", "jobs_api", "orthanc_api", "orthanc_info", "web",
                            "web_client"}


def auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ADMIN, READER, WRITER = (auth(u, USERS[u]) for u in ("admin", "reader", "writer"))


def build(tmp_path: Path, **overrides: object) -> Flask:
    settings = dict(Name="Test PACS", AuthenticationEnabled=True, RegisteredUsers=USERS,
                    UserRoles=ROLES)
    settings.update(overrides)
    return create_app(make_settings(tmp_path, **settings))


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Flask]:
    application = build(tmp_path)
    yield application
    application.extensions["dicomweb"].index.close()


@pytest.fixture
def client(secured: Flask) -> FlaskClient:
    return secured.test_client()


def _value(converter: str | None, name: str) -> str:
    return "1" if name == "frame_list" or converter == "int" else "1.2.3"


def every_route(app: Flask) -> list[tuple[str, str, str]]:
    """(method, URL, endpoint) for every method of every rule of the URL map, converters
    replaced by valid-looking values (UIDs "1.2.3", frame list and integers "1")."""
    out = []
    for rule in app.url_map.iter_rules():
        url = re.sub(r"<(?:([^<>:]+):)?([^<>]+)>", lambda m: _value(m.group(1), m.group(2)),
                     rule.rule)
        out.extend((method, url, rule.endpoint) for method in sorted(rule.methods or ()))
    return out


def test_the_walk_covers_every_service(secured: Flask) -> None:
    routes = every_route(secured)
    assert {endpoint.partition(".")[0] for _, _, endpoint in routes} \
        >= EXPECTED_ENDPOINT_GROUPS
    assert {method for method, _, _ in routes} >= {"GET", "HEAD", "OPTIONS", "POST",
                                                   "DELETE"}
    assert len(routes) == sum(len(r.methods or ()) for r in secured.url_map.iter_rules())


def test_every_route_and_method_requires_credentials(client: FlaskClient,
                                                     secured: Flask) -> None:
    for method, url, endpoint in every_route(secured):
        r = client.open(url, method=method)
        where = f"{method} {url} ({endpoint})"
        assert r.status_code == 401, where
        assert r.headers["WWW-Authenticate"] == REALM, where
        assert r.content_type == "application/json", where
        if method != "HEAD":
            body = r.get_json()
            assert body["HttpStatus"] == 401 and body["HttpError"] == "Unauthorized", where


def test_every_route_and_method_with_credentials_is_never_401(client: FlaskClient,
                                                              secured: Flask) -> None:
    for method, url, endpoint in every_route(secured):
        r = client.open(url, method=method, headers=ADMIN)
        where = f"{method} {url} ({endpoint}): {r.status_code} {r.get_data()[:200]!r}"
        assert r.status_code not in (401, 403), where
        assert "WWW-Authenticate" not in r.headers, where
        assert r.status_code < 500, where


def test_unknown_paths_and_methods_also_require_credentials(client: FlaskClient) -> None:
    """Without credentials nothing tells which URLs exist."""
    assert client.get("/nowhere").status_code == 401
    assert client.open("/dicom-web/studies", method="PATCH").status_code == 401
    assert client.get("/nowhere", headers=READER).status_code == 404
    assert client.open("/dicom-web/studies", method="PATCH", headers=ADMIN).status_code == 405


@pytest.mark.parametrize("headers", [
    auth("reader", "wrong"),
    auth("reader", ""),
    auth("reader", "reader pw "),
    auth("nobody", "reader pw"),
    auth("Reader", "reader pw"),
    {"Authorization": "Basic"},
    {"Authorization": "Basic !!!not-base64!!!"},
    {"Authorization": "Basic " + base64.b64encode(b"reader").decode()},
    {"Authorization": "Bearer " + base64.b64encode(b"reader:reader pw").decode()},
    {"Authorization": "reader:reader pw"},
])
def test_bad_credentials_are_401(client: FlaskClient, headers: dict[str, str]) -> None:
    r = client.get("/dicom-web/studies", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == REALM
    assert r.get_json()["HttpStatus"] == 401
    assert "reader pw" not in r.get_data(as_text=True)


def test_unknown_user_and_wrong_password_answer_alike(client: FlaskClient) -> None:
    unknown = client.get("/dicom-web/studies", headers=auth("nobody", "x"))
    wrong = client.get("/dicom-web/studies", headers=auth("reader", "x"))
    assert unknown.get_json() == wrong.get_json()


def test_good_credentials(client: FlaskClient) -> None:
    for user in ("admin", "reader", "writer", "zoé"):
        r = client.get("/dicom-web/studies", headers=auth(user, USERS[user]))
        assert r.status_code == 200, user


def test_hashed_password(client: FlaskClient) -> None:
    assert client.get("/dicom-web/studies", headers=auth("hashed", "hashed pw")).status_code \
        == 200
    assert client.get("/dicom-web/studies", headers=auth("hashed", "hashed pw")).status_code \
        == 200  # remembered by the worker: still right
    assert client.get("/dicom-web/studies", headers=auth("hashed", "hashed")).status_code \
        == 401
    assert client.get("/dicom-web/studies", headers=auth("hashed", HASHED)).status_code == 401


def test_latin1_credentials_from_old_browsers(client: FlaskClient) -> None:
    token = base64.b64encode("zoé:mot de passe é".encode("latin-1")).decode()
    r = client.get("/dicom-web/studies", headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 200


def test_challenge_realm_is_quoted_safely(tmp_path: Path) -> None:
    app = build(tmp_path, Name='My "PACS" \\ ☃')
    r = app.test_client().get("/dicom-web/studies")
    assert r.headers["WWW-Authenticate"] == 'Basic realm="My ?PACS? ? ?"'


def test_http_describe_errors_false_still_challenges(tmp_path: Path) -> None:
    app = build(tmp_path, HttpDescribeErrors=False)
    r = app.test_client().get("/dicom-web/studies")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == REALM
    assert r.get_json() == {"HttpStatus": 401, "HttpError": "Unauthorized"}


# --------------------------------------------------------------------------- #
# Roles
# --------------------------------------------------------------------------- #

def test_read_only_reads_but_cannot_store_or_delete(client: FlaskClient) -> None:
    st, se = uid(), uid()
    assert post(client, [ct_bytes(st, se)], **ADMIN).status_code == 200
    assert client.get(f"/dicom-web/studies?StudyInstanceUID={st}", headers=READER) \
        .status_code == 200
    assert client.get(f"/dicom-web/studies/{st}/metadata", headers=READER).status_code == 200
    assert client.head("/dicom-web/studies", headers=READER).status_code == 200
    stow = post(client, [ct_bytes(uid(), uid())], **READER)
    assert stow.status_code == 403
    assert '"read-only"' in stow.get_json()["Message"]
    assert "POST" in stow.get_json()["Message"]
    delete = client.delete(f"/dicom-web/studies/{st}", headers=READER)
    assert delete.status_code == 403 and '"read-only"' in delete.get_json()["Message"]
    assert client.get(f"/dicom-web/studies?StudyInstanceUID={st}", headers=READER) \
        .get_json()  # still there


def test_read_write_stores_but_cannot_delete(client: FlaskClient) -> None:
    st, se = uid(), uid()
    assert post(client, [ct_bytes(st, se)], **WRITER).status_code == 200
    assert post(client, [ct_bytes(st, se)], path=f"/dicom-web/studies/{st}",
                **WRITER).status_code in (200, 202)
    r = client.delete(f"/dicom-web/studies/{st}", headers=WRITER)
    assert r.status_code == 403 and '"read-write"' in r.get_json()["Message"]


def test_users_without_a_role_are_read_write(client: FlaskClient) -> None:
    hashed = auth("hashed", "hashed pw")
    assert post(client, [ct_bytes(uid(), uid())], **hashed).status_code == 200
    assert client.delete(f"/dicom-web/studies/{uid()}", headers=hashed).status_code == 403


def test_admin_deletes(client: FlaskClient) -> None:
    st, se = uid(), uid()
    assert post(client, [ct_bytes(st, se)], **WRITER).status_code == 200
    assert client.delete(f"/dicom-web/studies/{st}", headers=ADMIN).status_code == 200
    assert client.get(f"/dicom-web/studies?StudyInstanceUID={st}", headers=ADMIN) \
        .get_json() == []


def test_role_is_checked_only_after_the_password(client: FlaskClient) -> None:
    r = client.delete(f"/dicom-web/studies/{uid()}", headers=auth("reader", "wrong"))
    assert r.status_code == 401


def test_read_only_server_answers_405_after_authentication(tmp_path: Path) -> None:
    client = build(tmp_path, ReadOnly=True).test_client()
    assert client.delete(f"/dicom-web/studies/{uid()}").status_code == 401
    assert client.delete(f"/dicom-web/studies/{uid()}", headers=ADMIN).status_code == 405


# --------------------------------------------------------------------------- #
# CORS preflight
# --------------------------------------------------------------------------- #

def test_preflight_passes_without_credentials(client: FlaskClient) -> None:
    r = client.options("/dicom-web/studies", headers={
        "Origin": "https://viewer.example.org", "Access-Control-Request-Method": "GET"})
    assert r.status_code < 400 and "WWW-Authenticate" not in r.headers


def test_options_that_is_not_a_preflight_needs_credentials(client: FlaskClient) -> None:
    assert client.options("/dicom-web/studies").status_code == 401
    assert client.options("/dicom-web/studies",
                          headers={"Origin": "https://viewer.example.org"}).status_code == 401


def test_preflight_does_not_open_other_methods(client: FlaskClient) -> None:
    """Only OPTIONS is exempt: a GET carrying preflight headers still needs credentials."""
    r = client.get("/dicom-web/studies", headers={
        "Origin": "https://viewer.example.org", "Access-Control-Request-Method": "GET"})
    assert r.status_code == 401


# --------------------------------------------------------------------------- #
# Remote access
# --------------------------------------------------------------------------- #

@pytest.fixture
def local_only(tmp_path: Path) -> FlaskClient:
    """Remote access off, authentication off (its default then)."""
    return create_app(make_settings(tmp_path)).test_client()


@pytest.mark.parametrize("remote,headers", [
    ("10.0.0.5", {}),
    ("192.168.1.20", {}),
    ("2001:db8::1", {}),
    ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}),
    ("127.0.0.1", {"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}),
    ("127.0.0.1", {"X-Forwarded-For": "unknown"}),
    ("127.0.0.1", {"X-Real-IP": "203.0.113.9"}),
    ("127.0.0.1", {"Forwarded": "for=203.0.113.9;proto=https"}),
    ("127.0.0.1", {"Forwarded": 'for="[2001:db8::1]:4711"'}),
    ("127.0.0.1", {"Forwarded": "for=_hidden"}),
    ("::1", {"Forwarded": "for=127.0.0.1, for=198.51.100.7"}),
    ("", {}),
])
def test_remote_access_off_refuses_outside_clients(local_only: FlaskClient, remote: str,
                                                   headers: dict[str, str]) -> None:
    r = local_only.get("/dicom-web/studies", headers=headers,
                       environ_base={"REMOTE_ADDR": remote})
    assert r.status_code == 403
    assert "Remote access is disabled" in r.get_json()["Message"]


@pytest.mark.parametrize("remote,headers", [
    ("127.0.0.1", {}),
    ("127.0.0.2", {}),
    ("::1", {}),
    ("::ffff:127.0.0.1", {}),
    ("127.0.0.1", {"X-Forwarded-For": "127.0.0.1"}),
    ("127.0.0.1", {"Forwarded": 'for="[::1]:5000";proto=http'}),
])
def test_remote_access_off_serves_this_host(local_only: FlaskClient, remote: str,
                                            headers: dict[str, str]) -> None:
    r = local_only.get("/dicom-web/studies", headers=headers,
                       environ_base={"REMOTE_ADDR": remote})
    assert r.status_code == 200


def test_remote_access_off_refuses_before_asking_for_credentials(tmp_path: Path) -> None:
    client = build(tmp_path).test_client()
    r = client.get("/dicom-web/studies", environ_base={"REMOTE_ADDR": "10.0.0.5"},
                   headers=ADMIN)
    assert r.status_code == 403 and "WWW-Authenticate" not in r.headers
    r = client.options("/dicom-web/studies", environ_base={"REMOTE_ADDR": "10.0.0.5"},
                       headers={"Origin": "https://x.example",
                                "Access-Control-Request-Method": "GET"})
    assert r.status_code == 403


def test_remote_access_on_serves_other_hosts_with_credentials(tmp_path: Path) -> None:
    """RemoteAccessAllowed without AuthenticationEnabled: authentication is on (Orthanc)."""
    app = create_app(make_settings(tmp_path, RemoteAccessAllowed=True,
                                   RegisteredUsers={"alice": "pw"}))
    client = app.test_client()
    outside = {"REMOTE_ADDR": "10.0.0.5"}
    r = client.get("/dicom-web/studies", environ_base=outside)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="DICOMweb"'
    r = client.get("/dicom-web/studies", environ_base=outside, headers=auth("alice", "pw"))
    assert r.status_code == 200
    r = client.get("/dicom-web/studies", headers={"X-Forwarded-For": "203.0.113.9",
                                                  **auth("alice", "pw")})
    assert r.status_code == 200


def test_remote_access_on_and_authentication_off_serves_anyone(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, RemoteAccessAllowed=True,
                                   AuthenticationEnabled=False))
    r = app.test_client().get("/dicom-web/studies", environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert r.status_code == 200
