"""WADO-RS rendered and thumbnail resources (PS3.18 §8.3.5) through the Flask test client.

Images are generated so that what a route must show is known exactly: the grey level
of a rendered PNG is checked against the PS3.3 C.11.2.1.2.1 linear window computed here.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from flask.testing import FlaskClient
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG4HP41, ExplicitVRLittleEndian

from tests.api.data import ct, uid
from tests.api.test_stow import post
from tests.conftest import dicom_bytes

WINDOW = "window=500,1000,linear"


def linear(value: float, center: float = 500, width: float = 1000) -> int:
    """PS3.3 C.11.2.1.2.1 with an 8-bit output range, rounded half up."""
    y = ((value - (center - 0.5)) / (width - 1) + 0.5) * 255
    return int(np.floor(np.clip(y, 0, 255) + 0.5))


def png(response) -> np.ndarray:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.data[:300]
    assert response.content_type == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.data)))


def flat(value: int, rows: int = 8, columns: int = 8, frames: int = 1) -> np.ndarray:
    return np.full((frames, rows, columns), value, dtype=np.uint16)


@pytest.fixture
def series(client: FlaskClient) -> dict[str, object]:
    """Five instances of one series stored out of order, instance n filled with 100·n."""
    st, se = uid(), uid()
    sops = {n: uid() for n in range(1, 6)}
    files = [dicom_bytes(ct(st, se, sops[n], number=n, rows=8, columns=8, pixels=flat(100 * n)))
             for n in (4, 1, 5, 3, 2)]
    assert post(client, files).status_code == 200
    return {"st": st, "se": se, "sops": sops}


def test_series_is_rendered_with_its_middle_instance(client, series) -> None:  # type: ignore[no-untyped-def]
    st, se = series["st"], series["se"]
    image = png(client.get(f"/dicom-web/studies/{st}/series/{se}/rendered?{WINDOW}",
                           headers={"Accept": "image/png"}))
    assert image.shape == (8, 8)
    assert np.all(image == linear(300))  # instance 3 of 1..5


def test_study_is_rendered_with_the_first_image_series(client, series) -> None:  # type: ignore[no-untyped-def]
    st = series["st"]
    other = uid()
    later = [dicom_bytes(ct(st, other, number=n, pixels=flat(900), SeriesNumber=2, rows=8,
                            columns=8)) for n in (1, 2, 3)]
    assert post(client, later).status_code == 200
    image = png(client.get(f"/dicom-web/studies/{st}/rendered?{WINDOW}&accept=image/png"))
    assert np.all(image == linear(300))


def test_instance_and_frame_rendering(client: FlaskClient) -> None:
    st, se, sop = uid(), uid(), uid()
    values = np.stack([flat(v)[0] for v in (0, 400, 800)])
    assert post(client, [dicom_bytes(ct(st, se, sop, frames=3, rows=8, columns=8,
                                        pixels=values))]).status_code == 200
    base = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}"
    first = png(client.get(f"{base}/rendered?{WINDOW}", headers={"Accept": "image/png"}))
    assert np.all(first == linear(0))
    second = png(client.get(f"{base}/frames/2/rendered?{WINDOW}",
                            headers={"Accept": "image/png"}))
    assert np.all(second == linear(400))
    third = png(client.get(f"{base}/frames/3/rendered?{WINDOW}&viewport=4,4",
                           headers={"Accept": "image/png"}))
    assert third.shape == (4, 4) and np.all(third == linear(800))
    # PS3.18 §8.3.5.2: a thumbnail takes no window (the frame's own VOI applies).
    thumb = png(client.get(f"{base}/frames/3/thumbnail?{WINDOW}&viewport=4,4",
                           headers={"Accept": "image/png"}))
    assert thumb.shape == (4, 4)
    assert client.get(f"{base}/frames/4/rendered").status_code == 404
    several = client.get(f"{base}/frames/1,2/rendered")
    assert several.status_code == 400 and several.is_json


BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp," \
          "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"


@pytest.mark.parametrize("accept,query,expected,magic", [
    (None, "", "image/jpeg", b"\xff\xd8"),
    ("*/*", "", "image/jpeg", b"\xff\xd8"),
    ("image/*", "", "image/jpeg", b"\xff\xd8"),
    (BROWSER, "", "image/jpeg", b"\xff\xd8"),
    ("image/png, */*;q=0.5", "", "image/png", b"\x89PNG"),
    ("image/gif", "", "image/gif", b"GIF8"),
    ("*/*", "?accept=image%2Fpng", "image/png", b"\x89PNG"),
])
def test_accept(client, series, accept, query, expected, magic) -> None:  # type: ignore[no-untyped-def]
    st, se, sop = series["st"], series["se"], series["sops"][2]
    headers = {"Accept": accept} if accept else {}
    r = client.get(f"/dicom-web/studies/{st}/series/{se}/instances/{sop}/rendered{query}",
                   headers=headers)
    assert r.status_code == 200 and r.content_type == expected
    assert r.data.startswith(magic) and int(r.headers["Content-Length"]) == len(r.data)


def test_not_acceptable_and_bad_parameters(client, series) -> None:  # type: ignore[no-untyped-def]
    st, se, sop = series["st"], series["se"], series["sops"][2]
    base = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}"
    r = client.get(f"{base}/rendered", headers={"Accept": "application/dicom"})
    assert r.status_code == 406 and r.is_json
    for query in ("viewport=1", "viewport=-1,5", "quality=0", "quality=x", "window=1,2",
                  "window=1,2,cubic"):
        bad = client.get(f"{base}/rendered?{query}")
        assert bad.status_code == 400 and bad.is_json, query
        assert query.split("=")[0] in bad.json["Message"]
    assert client.get(f"/dicom-web/studies/{uid()}/rendered").status_code == 404


def test_thumbnail_size_and_viewport(client: FlaskClient) -> None:
    st, se, sop = uid(), uid(), uid()
    ramp = np.tile(np.arange(512, dtype=np.uint16), (256, 1))[None]
    assert post(client, [dicom_bytes(ct(st, se, sop, rows=256, columns=512,
                                        pixels=ramp))]).status_code == 200
    base = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}"
    default = Image.open(io.BytesIO(client.get(f"{base}/thumbnail").data))
    assert max(default.size) == 128 and default.size == (128, 64)
    fitted = Image.open(io.BytesIO(client.get(f"{base}/rendered?viewport=256,256").data))
    assert fitted.size == (256, 128)
    full = Image.open(io.BytesIO(client.get(f"{base}/rendered").data))
    assert full.size == (512, 256)


def encapsulated_pdf(st: str, se: str, sop: str, document: bytes) -> bytes:
    ds = ct(st, se, sop, Modality="DOC")
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
                    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "PixelData", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = document
    return dicom_bytes(ds)


def test_pdf_rendered_is_the_document_and_thumbnail_an_icon(client: FlaskClient) -> None:
    st, se, sop = uid(), uid(), uid()
    document = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
    assert post(client, [encapsulated_pdf(st, se, sop, document)]).status_code == 200
    base = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}"
    r = client.get(f"{base}/rendered")
    assert r.status_code == 200 and r.content_type == "application/pdf"
    assert r.data == document
    thumb = client.get(f"{base}/thumbnail")
    assert thumb.status_code == 200 and thumb.content_type == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.data)).size == (128, 128)
    assert client.get(f"/dicom-web/studies/{st}/rendered").data == document


def test_video_rendered_is_the_bitstream(client: FlaskClient) -> None:
    st, se, sop = uid(), uid(), uid()
    stream = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 300  # 76 kB
    ds = ct(st, se, sop, rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([stream[:40000], stream[40000:]])  # one frame, two fragments
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 1
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert post(client, [out.getvalue()]).status_code == 200
    base = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}"
    r = client.get(f"{base}/rendered")
    assert r.status_code == 200 and r.content_type == "video/mp4"
    assert r.data == stream
    thumb = client.get(f"{base}/thumbnail", headers={"Accept": "image/png"})
    assert thumb.status_code == 200 and thumb.data.startswith(b"\x89PNG")


def test_rendered_without_pixels_is_a_clear_error(client: FlaskClient) -> None:
    st, se, sop = uid(), uid(), uid()
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = st, se, "SR"
    assert post(client, [dicom_bytes(ds)]).status_code == 200
    r = client.get(f"/dicom-web/studies/{st}/series/{se}/instances/{sop}/rendered")
    assert r.status_code in (404, 406) and r.is_json
    assert "pixel data" in r.json["Message"]
