"""CORS (``Cors`` section, app/cors.py) through the Flask test client: preflights on every
path, CORS headers on every answer to an allowed origin (errors and streams included),
none for the others."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from tests.api.data import ct_bytes, uid
from tests.conftest import make_settings, stow_body

VIEWER = "https://viewer.example.org"
OTHER = "https://evil.example.com"


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Any]:
    apps: list[Flask] = []

    def build(**overrides: object) -> FlaskClient:
        app = create_app(make_settings(tmp_path, **overrides))
        apps.append(app)
        return app.test_client()

    yield build
    for app in apps:
        app.extensions["dicomweb"].index.close()


def preflight(client: FlaskClient, path: str, origin: str = VIEWER, method: str = "GET",
              headers: str | None = None):  # type: ignore[no-untyped-def]
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        sent["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=sent)


def vary(response: Any) -> list[str]:
    return [v.strip().lower() for v in response.headers.get("Vary", "").split(",") if v.strip()]


# --------------------------------------------------------------------------- #
# Off by default
# --------------------------------------------------------------------------- #


def test_off_by_default_no_cors_header(make_client: Any) -> None:
    client = make_client()
    r = client.get("/dicom-web/studies", headers={"Origin": VIEWER})
    assert r.status_code == 200
    assert not any(k.lower().startswith("access-control-") for k in r.headers.keys())
    r = preflight(client, "/dicom-web/studies")
    assert "Access-Control-Allow-Origin" not in r.headers


# --------------------------------------------------------------------------- #
# Preflights
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("path", [
    "/dicom-web/studies",  # a route (GET and POST)
    "/dicom-web/studies/1.2.3/series/4.5.6/instances/7.8.9/frames/1",  # a route, GET only
    "/no/such/route",  # no route at all
    "/",
])
def test_preflight_answered_on_every_path(make_client: Any, path: str) -> None:
    client = make_client(Cors={"AllowedOrigins": [VIEWER], "MaxAge": 1234})
    r = preflight(client, path, method="POST", headers="Content-Type, Authorization")
    assert r.status_code == 204
    assert r.get_data() == b""
    assert r.headers["Access-Control-Allow-Origin"] == VIEWER
    assert r.headers["Access-Control-Allow-Methods"] == "GET, HEAD, POST, PUT, DELETE, OPTIONS"
    assert r.headers["Access-Control-Allow-Headers"] == (
        "Accept, Authorization, Content-Type, Content-Length, Range")
    assert r.headers["Access-Control-Max-Age"] == "1234"
    assert "Access-Control-Allow-Credentials" not in r.headers
    assert "origin" in vary(r)


def test_preflight_from_a_disallowed_origin_is_403_without_cors_headers(
        make_client: Any) -> None:
    client = make_client(Cors={"AllowedOrigins": [VIEWER]})
    r = preflight(client, "/dicom-web/studies", origin=OTHER)
    assert r.status_code == 403
    assert not any(k.lower().startswith("access-control-") for k in r.headers.keys())
    body = r.get_json()
    assert body["HttpStatus"] == 403 and OTHER in body["Message"]


def test_origins_compare_without_case_or_trailing_slash(make_client: Any) -> None:
    client = make_client(Cors={"AllowedOrigins": ["HTTPS://Viewer.Example.org/"]})
    r = preflight(client, "/dicom-web/studies")
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == VIEWER  # the request's, echoed


def test_any_origin_without_credentials_answers_star(make_client: Any) -> None:
    client = make_client(Cors={"AllowedOrigins": ["*"]})
    r = preflight(client, "/dicom-web/studies", origin=OTHER)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "origin" not in vary(r)
    r = client.get("/dicom-web/studies", headers={"Origin": OTHER})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "origin" not in vary(r)


def test_credentials_never_with_star(make_client: Any) -> None:
    client = make_client(Cors={"AllowedOrigins": ["*"], "AllowCredentials": True,
                               "AllowedHeaders": ["*"], "AllowedMethods": ["*"]})
    r = preflight(client, "/dicom-web/studies", origin=OTHER, method="DELETE",
                  headers="authorization, x-custom")
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == OTHER
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    # "*" is literal with credentials: the method and headers asked for are named.
    assert r.headers["Access-Control-Allow-Methods"] == "DELETE"
    assert r.headers["Access-Control-Allow-Headers"] == "authorization, x-custom"
    assert {"origin", "access-control-request-method",
            "access-control-request-headers"} <= set(vary(r))
    r = client.get("/dicom-web/studies", headers={"Origin": OTHER})
    assert r.headers["Access-Control-Allow-Origin"] == OTHER
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "origin" in vary(r)
    # The opaque origin of sandboxed frames and file: pages is not "any origin".
    assert preflight(client, "/dicom-web/studies", origin="null").status_code == 403


def test_listed_origin_with_credentials(make_client: Any) -> None:
    client = make_client(Cors={"AllowedOrigins": [VIEWER], "AllowCredentials": True})
    r = preflight(client, "/dicom-web/studies")
    assert r.headers["Access-Control-Allow-Origin"] == VIEWER
    assert r.headers["Access-Control-Allow-Credentials"] == "true"


def test_a_plain_options_request_is_not_a_preflight(make_client: Any) -> None:
    """OPTIONS without Access-Control-Request-Method reaches the application (Allow)."""
    client = make_client(Cors={"AllowedOrigins": [VIEWER]})
    r = client.options("/dicom-web/studies", headers={"Origin": VIEWER})
    assert r.status_code == 200
    assert "POST" in r.headers["Allow"]
    assert r.headers["Access-Control-Allow-Origin"] == VIEWER


# --------------------------------------------------------------------------- #
# Actual requests: every answer to an allowed origin, none to the others
# --------------------------------------------------------------------------- #


def allowed_headers(r: Any) -> None:
    assert r.headers["Access-Control-Allow-Origin"] == VIEWER
    assert r.headers["Access-Control-Expose-Headers"] == (
        "Content-Length, Content-Location, Content-Type, Warning, Location")
    assert "origin" in vary(r)


def test_search_answer_carries_cors_headers(make_client: Any) -> None:
    client = make_client(Cors={"AllowedOrigins": [VIEWER, "https://other.example.org"]})
    r = client.get("/dicom-web/studies", headers={"Origin": VIEWER})
    assert r.status_code == 200
    allowed_headers(r)


def test_disallowed_origin_gets_the_answer_without_cors_headers(make_client: Any) -> None:
    client = make_client(Cors={"AllowedOrigins": [VIEWER]})
    r = client.get("/dicom-web/studies", headers={"Origin": OTHER})
    assert r.status_code == 200  # the browser, not the server, withholds it
    assert not any(k.lower().startswith("access-control-") for k in r.headers.keys())
    assert "origin" in vary(r)  # a cache must not hand it to the allowed origin
    r = client.get("/dicom-web/studies")  # no Origin: not a cross-origin request
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "origin" in vary(r)


def test_errors_carry_cors_headers(make_client: Any) -> None:
    client = make_client(Cors={"AllowedOrigins": [VIEWER]})
    origin = {"Origin": VIEWER}
    r = client.get("/dicom-web/studies/1.2.3/metadata", headers=origin)
    assert r.status_code == 404 and r.is_json
    allowed_headers(r)
    r = client.get("/no/such/route", headers=origin)
    assert r.status_code == 404 and r.is_json
    allowed_headers(r)
    r = client.put("/dicom-web/studies", headers=origin)
    assert r.status_code == 405 and r.is_json
    allowed_headers(r)


def test_unexpected_error_500_carries_cors_headers(make_client: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client(Cors={"AllowedOrigins": [VIEWER]})
    index = client.application.extensions["dicomweb"].index

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(index, "search", broken)
    r = client.get("/dicom-web/studies", headers={"Origin": VIEWER})
    assert r.status_code == 500 and r.is_json
    allowed_headers(r)


def test_401_carries_cors_headers_and_preflight_needs_no_credentials(
        make_client: Any) -> None:
    client = make_client(Cors={"AllowedOrigins": [VIEWER]}, AuthenticationEnabled=True,
                         RegisteredUsers={"alice": "wonderland"})
    r = preflight(client, "/dicom-web/studies", headers="Authorization")
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == VIEWER
    r = client.get("/dicom-web/studies", headers={"Origin": VIEWER})
    assert r.status_code == 401 and r.is_json
    allowed_headers(r)


def test_stow_and_streamed_multipart_answers_carry_cors_headers(make_client: Any) -> None:
    client = make_client(Cors={"AllowedOrigins": [VIEWER]})
    st, se, sop = uid(), uid(), uid()
    body, ctype = stow_body([ct_bytes(st, se, sop)])
    r = client.post("/dicom-web/studies", data=body,
                    headers={"Content-Type": ctype, "Origin": VIEWER})
    assert r.status_code == 200
    allowed_headers(r)
    r = client.get(f"/dicom-web/studies/{st}", headers={"Origin": VIEWER})
    assert r.status_code == 200
    assert r.content_type.startswith("multipart/related")
    assert r.is_streamed
    allowed_headers(r)
    assert b"DICM" in r.get_data()


def test_existing_vary_is_extended_not_replaced(make_client: Any) -> None:
    from app.cors import _merge

    merged = _merge([("Vary", "Accept"), ("Access-Control-Allow-Origin", "x")],
                    [("Access-Control-Allow-Origin", VIEWER)], wildcard=False)
    assert ("Vary", "Accept, Origin") in merged
    assert [v for k, v in merged if k == "Access-Control-Allow-Origin"] == [VIEWER]
    assert _merge([("Vary", "*")], [], wildcard=False) == [("Vary", "*")]
