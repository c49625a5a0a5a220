"""Replays the regression corpus (tests/data/corpus, see its README) through STOW, QIDO,
WADO-RS and WADO-URI: every item is answered below 500 (a ``refused_`` file with 400 and
nothing stored), whatever was stored reads back without a 5xx, and the deployment's
known instances are intact afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.fuzz import corpus
from tests.fuzz.harness import (
    QUERY_KEYS,
    ROUTES,
    Deployment,
    deployment,
    read_everything,
    stow_body,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on bad values


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    dep = deployment(tmp_path_factory.mktemp("corpus") / "deployment")
    yield dep
    dep.check_intact()
    dep.app.extensions["dicomweb"].index.close()


def test_corpus_is_there() -> None:
    assert len(corpus.dicom_files()) >= 15
    assert len(corpus.multipart_bodies()) >= 15
    assert len(corpus.hostile_strings()) >= 50


@pytest.mark.parametrize("path", corpus.dicom_files(), ids=lambda p: p.name)
def test_dicom_file(server: Deployment, path: Path) -> None:
    body, content_type = stow_body([corpus.read(path)])
    r = server.client.post("/dicom-web/studies", data=body, content_type=content_type)
    answer = json.loads(server.check_answer(r, f"STOW {path.name}"))
    stored = answer.get("00081199", {}).get("Value", [])
    if path.name.startswith("refused_"):
        assert r.status_code == 400 and not stored
        assert answer["00081198"]["Value"][0]["00081197"]["Value"][0] in (0xC000, 0xA700)
    for item in stored:
        read_everything(server, item["00081190"]["Value"][0])
    # Not multipart at all: 415, never a parse of the bytes.
    r = server.client.post("/dicom-web/studies", data=corpus.read(path),
                           content_type="application/dicom")
    assert server.check_answer(r, path.name) and r.status_code == 415


@pytest.mark.parametrize("path", corpus.multipart_bodies(), ids=lambda p: p.name)
def test_multipart_body(server: Deployment, path: Path) -> None:
    content_type = f'multipart/related; type="application/dicom"; boundary={corpus.BOUNDARY}'
    r = server.client.post("/dicom-web/studies", data=corpus.read(path),
                           content_type=content_type)
    answer = server.check_answer(r, f"STOW {path.name}")
    if r.status_code in (200, 202):
        for item in json.loads(answer).get("00081199", {}).get("Value", []):
            read_everything(server, item["00081190"]["Value"][0])


def _segments(value: str) -> set[str]:
    """The value percent-encoded, and with its slashes left as they are."""
    return {quote(value, safe="", errors="surrogatepass"),
            quote(value, safe="/", errors="surrogatepass")}


@pytest.mark.parametrize("key", ["%0D", "%0A", "a%0D%0ASet-Cookie:%20x=1", "%00", "%C3%A9",
                                 "%F0%9F%98%80"])
def test_qido_warning_header_of_hostile_keys(server: Deployment, key: str) -> None:
    """Regression: an unknown query key is echoed in a Warning header; CR/LF in it made
    the answer a 500 (werkzeug refuses header values with line breaks)."""
    r = server.client.get(f"/dicom-web/studies?{key}=1&includefield={key}")
    server.check_answer(r, key)
    assert r.status_code == 200
    assert all(" " <= char <= "~" for char in r.headers["Warning"])


WADO_KEYS = ["requestType", "studyUID", "seriesUID", "objectUID", "contentType",
             "transferSyntax", "anonymize", "frameNumber", "rows", "columns", "region",
             "windowCenter", "windowWidth", "imageQuality"]


@pytest.mark.parametrize("value", corpus.hostile_strings(), ids=repr)
def test_hostile_string_everywhere(server: Deployment, value: str) -> None:
    """The string, alone, in each path parameter (the others valid), in each query
    parameter and in the Accept and Content-Type headers."""
    known = server.known[1]
    valid = {"st": known.study, "se": known.series, "sop": known.sop, "x": "1"}
    for segment in _segments(value):
        for route in ROUTES:
            for name in valid:
                if "{" + name + "}" not in route:
                    continue
                path = route.format(**{**valid, name: segment})
                server.check_answer(server.client.get(path), f"GET {path}")
                if route.endswith(("{st}", "{se}", "{sop}")) and name != "x":
                    server.check_answer(server.client.delete(path), f"DELETE {path}")
    for key in QUERY_KEYS:
        query = {"includefield": "all", key: value}
        server.check_answer(server.client.get("/dicom-web/instances", query_string=query),
                            f"QIDO {key}={value!r}")
    base = {"requestType": "WADO", "studyUID": known.study, "seriesUID": known.series,
            "objectUID": known.sop, "contentType": "image/png"}
    for key in WADO_KEYS:
        query = {**base, key: value}
        server.check_answer(server.client.get("/wado", query_string=query),
                            f"WADO-URI {key}={value!r}")
    if all(0x20 <= ord(c) <= 0xFF for c in value):
        instance = (f"/dicom-web/studies/{known.study}/series/{known.series}/instances/"
                    f"{known.sop}")
        for path in (instance, instance + "/metadata", instance + "/frames/1",
                     instance + "/rendered", "/dicom-web/studies"):
            server.check_answer(server.client.get(path, headers={"Accept": value}),
                                f"GET {path} Accept: {value!r}")
        server.check_answer(server.client.post("/dicom-web/studies", data=b"x",
                                               headers={"Content-Type": value,
                                                        "Accept": value}),
                            f"STOW Content-Type: {value!r}")
