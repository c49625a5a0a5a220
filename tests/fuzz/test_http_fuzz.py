"""The whole server through the Flask test client, under hostile requests: path
parameters (traversal, NUL, huge segments, SQL/LIKE injection, unicode), query
parameters, Accept and Content-Type headers, random methods and STOW bodies.

Every answer is below 500 and an error answer is JSON; afterwards the known instances
are retrieved byte-identical, QIDO finds exactly them, and nothing was written outside
the deployment's storage and index folders (:meth:`Deployment.check_intact`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.fuzz.corpus import hostile_strings
from tests.fuzz.dicom_mutations import PREFIX, mutated_files
from tests.fuzz.harness import (
    QUERY_KEYS,
    ROUTES,
    Deployment,
    deployment,
    read_everything,
    stow_body,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on bad values

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    dep = deployment(tmp_path_factory.mktemp("http-fuzz") / "deployment")
    yield dep
    dep.app.extensions["dicomweb"].index.close()


VALUE_PIECES = ["WADO", "application/dicom", "image/jpeg", "image/png", "yes", "1", "0", "-1",
                "0.5", ",", "*", "?", "%", "_", "'", "\\", "1.2.840.10008.1.2.4.50",
                "1.2.840.10008.1.2", "512,512", "0,0,1,1", "40,400,linear", "\x00", "é"]


def _values(server: Deployment) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(server.uids), st.sampled_from(hostile_strings()),
        st.text(max_size=24), st.lists(st.sampled_from(VALUE_PIECES), max_size=4).map("".join),
        st.builds(lambda c, n: c * n, st.sampled_from(["9", "a", "/", ".", "%"]),
                  st.sampled_from([65, 300, 5000])),
    )


def _segment(value: str, raw: bool) -> str:
    """A path segment as a client would send it (percent-encoded, or slashes left as is)."""
    return quote(value, safe="/" if raw else "", errors="surrogatepass")


latin1_headers = st.one_of(
    st.none(),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80),
    st.sampled_from([s for s in hostile_strings()
                     if all(0x20 <= ord(c) <= 0xFF for c in s)]),
    st.sampled_from(['multipart/related; type="application/dicom"; transfer-syntax=*',
                     'multipart/related; type="application/dicom"; transfer-syntax=1.2.3',
                     'multipart/related; type="application/octet-stream"',
                     "multipart/related; type=image/jpeg", "application/dicom+json",
                     'multipart/related; type="application/dicom+xml"', "image/png",
                     "*/*; q=nan", 'multipart/related; type="', "text/html"]),
)


@st.composite
def requests(draw: st.DrawFn, server: Deployment) -> tuple[str, str, list[tuple[str, str]] |
                                                          str, dict[str, str]]:
    values = _values(server)
    raw = draw(st.booleans())
    route = draw(st.sampled_from(ROUTES))
    known = draw(st.sampled_from(server.known))
    valid = {"st": known.study, "se": known.series, "sop": known.sop, "x": "1"}
    # Mostly valid parameters with one or two hostile ones, so that requests get deep.
    path = route.format(**{name: _segment(value if draw(st.integers(0, 2)) else draw(values),
                                          raw) for name, value in valid.items()})
    if draw(st.booleans()):
        query: list[tuple[str, str]] | str = draw(st.lists(
            st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), values), values), max_size=5))
    else:
        query = draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                             max_size=40))
    headers = {}
    for name in ("Accept", "Content-Type"):
        value = draw(latin1_headers)
        if value is not None:
            headers[name] = value
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD", "OPTIONS", "PUT", "PATCH",
                                   "POST", "DELETE"]))
    return method, path, query, headers


def test_random_requests(server: Deployment) -> None:
    @settings(FUZZ, max_examples=2000)
    @given(request=requests(server))
    def run(request: tuple[str, str, list[tuple[str, str]] | str, dict[str, str]]) -> None:
        method, path, query, headers = request
        if method == "DELETE" and any(u in path for u in server.uids):
            method = "GET"  # deleting the known data would work (as it should)
        response = server.client.open(path, method=method, query_string=query,
                                      headers=headers)
        server.check_answer(response, f"{method} {path}?{query} {headers}")
        event(f"{method} {response.status_code}")

    run()
    server.check_intact()


bodies_and_types = st.one_of(
    st.tuples(st.binary(max_size=600), latin1_headers),
    st.tuples(st.lists(mutated_files(), min_size=1, max_size=3).map(
        lambda files: stow_body(files)[0]), st.just(stow_body([])[1])),
)


def test_random_stow_bodies_then_read_what_was_stored(server: Deployment) -> None:
    """Random bodies and mutated files: 200/202/400/409/415, never 5xx; whatever was
    stored is then readable through every WADO resource without a 5xx."""

    @settings(FUZZ, max_examples=700)
    @given(body_and_type=bodies_and_types, study=st.sampled_from(
        [None, PREFIX + "1", *server.uids, "1.2.3\x00", "../x"]))
    def run(body_and_type: tuple[bytes, str | None], study: str | None) -> None:
        body, content_type = body_and_type
        url = "/dicom-web/studies" + ("" if study is None else "/" + quote(study, safe=""))
        headers = {} if content_type is None else {"Content-Type": content_type}
        r = server.client.post(url, data=body, headers=headers)
        answer = server.check_answer(r, f"POST {url} {content_type!r} {body[:200]!r}")
        event(f"STOW {r.status_code}")
        if r.status_code in (200, 202):
            for item in json.loads(answer).get("00081199", {}).get("Value", []):
                read_everything(server, item["00081190"]["Value"][0])

    run()
    server.check_intact()
