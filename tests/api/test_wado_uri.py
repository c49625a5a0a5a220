"""WADO-URI (PS3.18 §9) parameters through the Flask test client."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from flask.testing import FlaskClient
from PIL import Image
from pydicom.uid import ImplicitVRLittleEndian, JPEGLSLossless

from tests.api.data import ct, uid
from tests.api.test_rendered import encapsulated_pdf, linear
from tests.api.test_stow import post
from tests.conftest import dicom_bytes


@pytest.fixture
def instance(client: FlaskClient) -> dict[str, object]:
    """Two frames of 16×32: frame 1 a horizontal ramp 0..310, frame 2 filled with 600."""
    st, se, sop = uid(), uid(), uid()
    ramp = np.tile(np.arange(32, dtype=np.uint16) * 10, (16, 1))
    values = np.stack([ramp, np.full((16, 32), 600, dtype=np.uint16)])
    data = dicom_bytes(ct(st, se, sop, frames=2, rows=16, columns=32, pixels=values))
    assert post(client, [data]).status_code == 200
    url = f"/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={sop}"
    return {"url": url, "values": values, "data": data, "sop": sop}


def image(response) -> np.ndarray:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.data[:300]
    return np.asarray(Image.open(io.BytesIO(response.data)))


def test_transfer_syntax_conversion(client, instance) -> None:  # type: ignore[no-untyped-def]
    for syntax in (ImplicitVRLittleEndian, JPEGLSLossless):
        r = client.get(f"{instance['url']}&contentType=application/dicom&transferSyntax={syntax}")
        assert r.status_code == 200 and r.content_type == "application/dicom"
        ds = pydicom.dcmread(io.BytesIO(r.data))
        assert ds.file_meta.TransferSyntaxUID == syntax
        assert np.array_equal(ds.pixel_array, instance["values"])
    as_is = client.get(f"{instance['url']}&contentType=application/dicom&transferSyntax=*")
    assert as_is.data == instance["data"]
    bad = client.get(f"{instance['url']}&contentType=application/dicom&transferSyntax=1.2.3")
    assert bad.status_code == 406 and bad.is_json


def test_anonymize(client, instance) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"{instance['url']}&contentType=application/dicom&anonymize=yes")
    assert r.status_code == 200
    ds = pydicom.dcmread(io.BytesIO(r.data))
    assert str(ds.PatientName) != "DOE^JOHN" and ds.get("PatientID") != "P1"
    assert ds.SOPInstanceUID != instance["sop"] and ds.PatientIdentityRemoved == "YES"
    assert np.array_equal(ds.pixel_array, instance["values"])
    refused = client.get(f"{instance['url']}&contentType=image/jpeg&anonymize=yes")
    assert refused.status_code == 400 and "anonymize" in refused.json["Message"]


def test_frame_window_and_size(client, instance) -> None:  # type: ignore[no-untyped-def]
    url = f"{instance['url']}&contentType=image/png&windowCenter=500&windowWidth=1000"
    second = image(client.get(f"{url}&frameNumber=2"))
    assert second.shape == (16, 32) and np.all(second == linear(600))
    first = image(client.get(url))
    assert list(first[0]) == [linear(10 * x) for x in range(32)]
    half = image(client.get(f"{url}&columns=16"))
    assert half.shape == (8, 16)
    region = image(client.get(f"{url}&region=0.5,0,1,1"))
    assert region.shape == (16, 16) and list(region[0]) == [linear(10 * x) for x in range(16, 32)]
    assert client.get(f"{url}&frameNumber=3").status_code == 404
    assert client.get(f"{url}&frameNumber=0").status_code == 400
    assert client.get(f"{url}&region=1,0,0.5,1").status_code == 400


def test_content_types(client, instance) -> None:  # type: ignore[no-untyped-def]
    gif = client.get(f"{instance['url']}&contentType=image/gif")
    assert gif.content_type == "image/gif" and gif.data.startswith(b"GIF8")
    listed = client.get(f"{instance['url']}&contentType=image/webp,image/png")
    assert listed.content_type == "image/png"
    jpeg = client.get(f"{instance['url']}&contentType=image/jpeg&imageQuality=20")
    better = client.get(f"{instance['url']}&contentType=image/jpeg&imageQuality=95")
    assert jpeg.content_type == "image/jpeg" and len(jpeg.data) < len(better.data)
    assert client.get(f"{instance['url']}&contentType=text/html").status_code == 406


def test_pdf(client: FlaskClient) -> None:
    st, se, sop = uid(), uid(), uid()
    document = b"%PDF-1.4\n" + b"x" * 2000 + b"\n%%EOF\n"
    assert post(client, [encapsulated_pdf(st, se, sop, document)]).status_code == 200
    url = f"/wado?requestType=WADO&objectUID={sop}"
    for query in ("", "&contentType=application/pdf"):
        r = client.get(url + query)
        assert r.status_code == 200 and r.content_type == "application/pdf"
        assert r.data == document
