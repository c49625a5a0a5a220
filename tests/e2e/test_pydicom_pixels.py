"""Pixel routes for every image file bundled with pydicom, under gunicorn.

For each file pydicom itself can decode: frame 1 comes back as stored with the right byte
count (native) or a payload that decodes to pydicom's own pixels (compressed); the
instance retrieved in Explicit VR Little Endian (transcoded when stored compressed)
decodes to exactly pydicom's ``pixel_array``; ``/rendered`` is an image of the right
size that is not blank.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames

from app.dicom import multipart
from tests.dicom_compare import TEST_FILES
from tests.e2e.server import Server
from tests.e2e.test_pydicom_files import referenced, stow

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::UserWarning")]


def _decodable(path: Path) -> bool:
    try:
        ds = pydicom.dcmread(path)
        return "PixelData" in ds and ds.pixel_array.size > 0
    except Exception:
        return False


IMAGES = [p for p in TEST_FILES if _decodable(p)]
AS_STORED = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # pydicom's bundled files reuse SOP Instance UIDs across variants of one image: each
    # file must replace the previous one to be retrieved as itself.
    srv = Server(tmp_path_factory.mktemp("pixels"),
                 extra={"OverwriteInstances": True}).start()
    yield srv
    srv.stop()


def parts(response: requests.Response) -> list[tuple[dict[str, str], bytes]]:
    assert response.status_code == 200, response.text[:300]
    _, params = multipart.parse_content_type(response.headers["Content-Type"])
    return [(dict(p.headers), b"".join(p.iter_chunks()))
            for p in multipart.iter_parts(io.BytesIO(response.content).read, params["boundary"])]


def first_frame(ds: pydicom.Dataset) -> np.ndarray:
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames") or 1)
    return arr[0] if frames > 1 else arr


def stored(server: Server, path: Path) -> str | None:
    """URL of the instance once stored, or None when the server refused the file."""
    r = stow(server, path.read_bytes())
    if r.status_code != 200:
        return None
    st, se, sop = referenced(r.json()) or pytest.fail("no reference")
    return f"{server.root}/studies/{st}/series/{se}/instances/{sop}"


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_pixels_of_bundled_file(server: Server, path: Path) -> None:
    url = stored(server, path)
    if url is None:
        pytest.skip("refused at STOW (covered by test_pydicom_files)")
    ds = pydicom.dcmread(path)
    syntax = ds.file_meta.TransferSyntaxUID

    (head, frame), *_ = parts(requests.get(f"{url}/frames/1", headers={"Accept": AS_STORED},
                                           timeout=60))
    assert f"transfer-syntax={syntax}" in str(head)
    if syntax.is_compressed:
        expected = next(generate_frames(ds.PixelData, number_of_frames=int(
            ds.get("NumberOfFrames") or 1)))
        assert frame == expected
        decoded = _decode(ds, frame)
        assert np.array_equal(decoded, first_frame(ds))
    else:
        bits = ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1) * ds.BitsAllocated
        if str(ds.PhotometricInterpretation).endswith("_422"):
            bits = bits // 3 * 2  # PS3.3 C.7.6.3.1.2: two samples' chroma per pixel pair
        assert len(frame) == bits // 8 + (bits % 8 > 0) or ds.BitsAllocated == 1

    ((head, body),) = parts(requests.get(url, timeout=60))  # default: Explicit VR LE
    assert "transfer-syntax=1.2.840.10008.1.2.1" in str(head)
    back = pydicom.dcmread(io.BytesIO(body))
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(back.pixel_array, ds.pixel_array)

    r = requests.get(f"{url}/rendered", headers={"Accept": "image/png"}, timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png", r.text[:300]
    image = np.asarray(Image.open(io.BytesIO(r.content)))
    assert image.shape[:2] == (ds.Rows, ds.Columns)
    if np.ptp(first_frame(ds)) > 0:
        assert image.std() > 0, "blank rendering of a non-constant frame"


def _decode(ds: pydicom.Dataset, frame: bytes) -> np.ndarray:
    one = pydicom.Dataset()
    one.file_meta = ds.file_meta
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                    "HighBit", "PixelRepresentation", "PhotometricInterpretation",
                    "PlanarConfiguration"):
        if keyword in ds:
            setattr(one, keyword, ds[keyword].value)
    one.PixelData = encapsulate([frame])
    one["PixelData"].VR = "OB"
    return one.pixel_array


def test_transcode_on_request(server: Server) -> None:
    """Stored native, asked compressed: the instance decodes to the same pixels."""
    path = next(p for p in IMAGES if p.name == "CT_small.dcm")
    url = stored(server, path)
    assert url is not None
    original = pydicom.dcmread(path).pixel_array
    for syntax in ("1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"):
        accept = f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'
        ((head, body),) = parts(requests.get(url, headers={"Accept": accept}, timeout=60))
        assert f"transfer-syntax={syntax}" in str(head)
        back = pydicom.dcmread(io.BytesIO(body))
        assert back.file_meta.TransferSyntaxUID == syntax
        assert np.array_equal(back.pixel_array, original)
