"""Outgoing request construction (reference §7.3), the QIDO simplification (§7.4) and the
STOW answer check (§7.5): pure functions."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import urllib3

from app.client import qido, remote
from app.client.remote import HttpOptions, Remote, build_uri, join_url, merge_headers
from app.client.servers import Server
from app.errors import BadGateway, BadRequest, GatewayTimeout, NotFound, Unauthorized
from app.jobs import JobFailed


def test_build_uri() -> None:
    assert build_uri("/studies") == "/studies"
    assert build_uri("/studies", {"b": "2", "a": "x y/z", "c": ""}) == "/studies?a=x%20y%2Fz&b=2&c"
    assert build_uri("/s", {"é": "ü~-_."}) == "/s?%C3%A9=%C3%BC~-_."
    # QIDO wildcards and list separators travel as they are (Orthanc 1.10 decodes neither).
    assert build_uri("/studies", {"PatientName": "DO?^J*", "includefield": "00081030,00200010"}
                     ) == "/studies?PatientName=DO?%5EJ*&includefield=00081030,00200010"
    with pytest.raises(BadRequest, match="explicit"):
        build_uri("/studies?a=1")


@pytest.mark.parametrize(("base", "uri", "url"), [
    ("http://h/dicom-web/", "/studies", "http://h/dicom-web/studies"),
    ("http://h/dicom-web/", "studies//x", "http://h/dicom-web/studies/x"),
    ("https://h:1/a//b/", "//c", "https://h:1/a/b/c"),
    ("h:8042/", "/studies", "http://h:8042/studies"),
    ("http://h/", "/s?u=http://x//y", "http://h/s?u=http://x//y"),
])
def test_join_url(base: str, uri: str, url: str) -> None:
    assert join_url(base, uri) == url


def test_merge_headers_later_wins_whatever_the_case() -> None:
    assert merge_headers({"Accept": "a", "X-One": "1"}, None, {"accept": "b"}) == {
        "accept": "b", "X-One": "1"}
    assert remote.has_header({"aCCept": "x"}, "Accept")
    assert not remote.has_header(None, "Accept")


def test_timeout_of_the_server_else_the_global_one() -> None:
    assert Remote("r", Server("http://h/", timeout=3), HttpOptions(timeout=60)).timeout == 3
    assert Remote("r", Server("http://h/"), HttpOptions(timeout=60)).timeout == 60
    assert Remote("r", Server("http://h/"), HttpOptions(timeout=0)).timeout is None


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def read(self, size: int, decode_content: bool = True) -> bytes:
        return self.body[:size]


def _answer(status: int, body: bytes = b"") -> requests.Response:
    response = requests.Response()
    response.status_code, response.reason, response.raw = status, "Reason", _Raw(body)
    return response


@pytest.mark.parametrize(("status", "error"), [
    (400, BadRequest), (401, Unauthorized), (403, Unauthorized), (404, NotFound),
    (406, BadGateway), (500, BadGateway), (503, BadGateway)])
def test_remote_statuses_are_mapped(status: int, error: type) -> None:
    found = Remote("r", Server("http://h/"), HttpOptions())._status_error(_answer(status))
    assert type(found) is error
    assert '"r"' in found.message
    if error is BadGateway:
        assert f"HTTP {status}" in found.message


def test_error_details_never_carry_secrets() -> None:
    server = Server("http://h/", "user", "hunter2")
    body = b'{"HttpStatus": 500, "Message": "bad password hunter2 for http://user:x@h/"}'
    found = Remote("r", server, HttpOptions())._status_error(_answer(500, body))
    assert found.details == "bad password *** for http://***@h/"


def test_orthanc_codes_of_remote_failures() -> None:
    assert remote.orthanc_code(BadRequest("x")) == 8
    assert remote.orthanc_code(Unauthorized("x")) == 29
    assert remote.orthanc_code(NotFound("x")) == 17
    assert remote.orthanc_code(BadGateway("x")) == 9
    assert remote.orthanc_code(GatewayTimeout("x")) == 16


def test_refused_connections_are_not_timeouts() -> None:
    refused = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert not remote._timed_out(requests.ConnectionError(refused))
    timed = urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out")  # type: ignore
    assert remote._timed_out(requests.ConnectionError(timed))


# --------------------------------------------------------------------------------------------
# QIDO simplification


def test_qido_simplify_keeps_first_values_of_simple_types() -> None:
    answer = [{
        "0020000D": {"vr": "UI", "Value": ["1.2.3", "4.5"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^J", "Ideographic": "x"}]},
        "00201208": {"vr": "IS", "Value": [12]},
        "00280030": {"vr": "DS", "Value": [0.5, 0.5]},
        "00081115": {"vr": "SQ", "Value": [{}]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "http://x"},
        "00080060": {"vr": "CS"},
        "0009abcd": {"vr": "LO", "Value": ["private"]},
        "not-a-tag": {"ignored": True},
    }]
    [item] = qido.simplify(answer, "r")
    assert item["0020000D"] == {"Group": 0x20, "Element": 0xD, "Name": "StudyInstanceUID",
                                "vr": "UI", "Value": "1.2.3"}
    assert item["00100010"]["Value"] == "DOE^J"
    assert item["00201208"]["Value"] == 12
    for key in ("00280030", "00081115", "7FE00010", "00080060"):
        assert "Value" not in item[key]
    assert item["0009abcd"] == {"Group": 9, "Element": 0xABCD, "Name": qido.UNKNOWN_NAME,
                                "vr": "LO", "Value": "private"}
    assert "not-a-tag" not in item


@pytest.mark.parametrize("answer", [{}, [1], [{"00100010": {"Value": ["x"]}}],
                                    [{"00100010": "x"}]])
def test_qido_simplify_refuses_what_is_not_dicom_json(answer: Any) -> None:
    with pytest.raises(BadGateway):
        qido.simplify(answer, "r")


# --------------------------------------------------------------------------------------------
# STOW answer check


def _stow(count: int, failed: int = 0, key: str = "00081199") -> dict[str, Any]:
    answer: dict[str, Any] = {key: {"vr": "SQ", "Value": [{}] * count}}
    if failed:
        answer["00081198"] = {"vr": "SQ", "Value": [{}] * failed}
    return answer


def test_check_stow_answer() -> None:
    from app.client.stow import check_stow_answer

    check_stow_answer(_stow(3), "r", 3)
    check_stow_answer(_stow(2, key="00081199".lower()), "r", 2)
    check_stow_answer({**_stow(1), "0008119A": {"vr": "SQ"}}, "r", 1)
    for answer, count, problem in ((_stow(2), 3, "only able to receive 2 instances out of 3"),
                                   (_stow(3, failed=1), 3, "Failed SOP Sequence"),
                                   ({}, 1, "Unable to parse"), ([], 0, "Unable to parse"),
                                   ({"00081199": {"Value": "x"}}, 1, "Unable to parse"),
                                   ({**_stow(1), "0008119a": {"Value": [{}]}}, 1,
                                    "Other Failures")):
        with pytest.raises(JobFailed, match=problem) as caught:
            check_stow_answer(answer, "r", count)
        assert caught.value.code == 9
