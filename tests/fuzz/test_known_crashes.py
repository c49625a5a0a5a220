"""Hostile input that still makes the server answer 500, in code these tests do not own.

These were ``xfail(strict=True)`` until fixed; fixed, they stay as regression tests (and
the reads they cover joined the fuzzed reads of
tests/fuzz/harness.py (``WADO_READS``, ``WADO_URI_READS``).
"""

from __future__ import annotations

import io

import pytest
from flask.testing import FlaskClient

from tests.api.data import ct_bytes, uid
from tests.fuzz import corpus
from tests.fuzz.dicom_mutations import before_pixel_data, element
from tests.fuzz.harness import stow_body

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

IMPLICIT = "1.2.840.10008.1.2"


def _store(client: FlaskClient, data: bytes) -> str:
    """Store ``data``; the path of its instance."""
    body, content_type = stow_body([data])
    r = client.post("/dicom-web/studies", data=body, content_type=content_type)
    assert r.status_code == 200, r.get_data()
    url = r.get_json()["00081199"]["Value"][0]["00081190"]["Value"][0]
    return "/dicom-web/" + url.split("/dicom-web/", 1)[1]


def _unknown_vr() -> bytes:
    return corpus.read(corpus.CORPUS / "absurd_vr_zz.dcm")


def _short_binary_value() -> bytes:
    """A US value of one byte (a multiple of 2 is required) in a private element."""
    return before_pixel_data(ct_bytes(uid(), uid()), element(0x00091010, b"US", b"\x01"))


def _meta_elements_in_data_set() -> bytes:
    """A sequence in the middle of the File Meta group: pydicom ends the group there and
    reads the rest of group 0002 as data set elements."""
    data = ct_bytes(uid(), uid())
    at = data.find(b"\x02\x00\x10\x00")
    return data[:at] + element(0x0040A730, b"SQ", b"") + data[at:]


def _status(client: FlaskClient, path: str, **kwargs: object) -> int:
    r = client.get(path, **kwargs)  # type: ignore[arg-type]
    r.get_data()
    return r.status_code


@pytest.mark.parametrize("make", [_unknown_vr, _short_binary_value])
def test_wado_rs_conversion_of_unconvertible_elements(client: FlaskClient, make) -> None:  # type: ignore[no-untyped-def]
    path = _store(client, make())
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={IMPLICIT}'
    assert _status(client, path, headers={"Accept": accept}) < 500


@pytest.mark.parametrize("make", [_unknown_vr, _short_binary_value])
def test_wado_uri_conversion_of_unconvertible_elements(client: FlaskClient, make) -> None:  # type: ignore[no-untyped-def]
    sop = _store(client, make()).rsplit("/", 1)[1]
    query = {"requestType": "WADO", "objectUID": sop, "contentType": "application/dicom",
             "transferSyntax": IMPLICIT}
    assert _status(client, "/wado", query_string=query) < 500


def _unknown_vr_standard_tag() -> bytes:
    """StudyTime (0008,0030) with the VR "ZZ" (a private element would be removed)."""
    data = ct_bytes(uid(), uid())
    assert b"\x08\x00\x30\x00TM" in data
    return data.replace(b"\x08\x00\x30\x00TM", b"\x08\x00\x30\x00ZZ")


def test_wado_uri_anonymize_unknown_vr(client: FlaskClient) -> None:
    sop = _store(client, _unknown_vr_standard_tag()).rsplit("/", 1)[1]
    query = {"requestType": "WADO", "objectUID": sop, "contentType": "application/dicom",
             "anonymize": "yes"}
    assert _status(client, "/wado", query_string=query) < 500


def test_wado_uri_anonymize_meta_elements_in_data_set(client: FlaskClient) -> None:
    sop = _store(client, _meta_elements_in_data_set()).rsplit("/", 1)[1]
    query = {"requestType": "WADO", "objectUID": sop, "contentType": "application/dicom",
             "anonymize": "yes"}
    assert _status(client, "/wado", query_string=query) < 500


def test_many_tiny_frames_memory() -> None:
    import tracemalloc

    from app.dicom.ingest import build_record
    from tests.api.data import ct

    ds = ct(uid(), uid(), rows=1, columns=1)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.NumberOfFrames = 100_000
    ds.PixelData = b"\x00" * 100_000
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    tracemalloc.start()
    try:
        build_record(io.BytesIO(data), storage_key="k", size=len(data))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * len(data)


