"""WADO-RS frames in every media type (PS3.18 §10.4.1.1.3, table 8.7.3-5) and the cost of
one frame: bytes read from storage are counted, not timed."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pydicom
import pytest
from flask.testing import FlaskClient
from pydicom.uid import JPEGLSLossless, RLELossless

from app import create_app
from backends import filesystem_storage, s3_storage
from tests.api.data import ct, uid
from tests.api.test_stow import post
from tests.api.test_wado import parts
from tests.conftest import dicom_bytes, make_settings
from tests.delegating import CountingStorage

OCTET = "multipart/related; type=application/octet-stream"


def multiframe(st: str, se: str, sop: str, frames: int, syntax: str | None = None,
               size: int = 64) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 4096, (frames, size, size), dtype=np.uint16)
    ds = ct(st, se, sop, frames=frames, rows=size, columns=size, pixels=values)
    if syntax:
        ds.compress(syntax, generate_instance_uid=False)
    return dicom_bytes(ds), values


@pytest.fixture(params=["filesystem", "s3"])
def counting(request: pytest.FixtureRequest,
             tmp_path: Path) -> tuple[FlaskClient, CountingStorage]:
    """The same app over a counted filesystem storage, then over S3 (moto's server)."""
    settings = make_settings(tmp_path)
    if request.param == "s3":
        moto = request.getfixturevalue("moto_s3")
        inner = s3_storage(bucket=f"frames-{uuid.uuid4().hex[:12]}", endpoint=moto.endpoint,
                           region="us-east-1", access_key="testing", secret_key="testing",
                           virtual_addressing=False, create_bucket=True)
    else:
        inner = filesystem_storage(settings.storage_path)
    storage = CountingStorage(inner)
    return create_app(settings, storage=storage).test_client(), storage


@pytest.mark.parametrize("syntax", [None, RLELossless])
def test_one_frame_of_200_is_read_alone(counting, syntax) -> None:  # type: ignore[no-untyped-def]
    """A frame, its conversion and its rendering read the header and that frame only, by
    ranged reads (one GET each on S3): the blob is never opened as a stream."""
    client, storage = counting
    st, se, sop = uid(), uid(), uid()
    data, values = multiframe(st, se, sop, 200, syntax)
    assert post(client, [data]).status_code == 200
    base = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}"
    requests = [(f"{base}/frames/150", f"{OCTET}; transfer-syntax=*"),
                (f"{base}/frames/150", OCTET),
                (f"{base}/frames/150/rendered", "image/png")]
    for url, accept in requests:
        storage.bytes_read = storage.opened = 0
        r = client.get(url, headers={"Accept": accept})
        assert r.status_code == 200, r.data[:300]
        assert len(r.data) > 0  # the body is read lazily: count after consuming it
        assert storage.bytes_read < len(data) / 20, (url, accept, storage.bytes_read, len(data))
        assert storage.opened == 0, (url, accept)
    ((_, frame),) = parts(client.get(f"{base}/frames/150", headers={"Accept": OCTET}))
    assert frame == values[149].tobytes()


def test_compressed_frames_in_every_asked_form(client: FlaskClient) -> None:
    st, se, sop = uid(), uid(), uid()
    data, values = multiframe(st, se, sop, 3, RLELossless, size=16)
    assert post(client, [data]).status_code == 200
    base = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}/frames"
    # No Accept: Explicit VR Little Endian, decoded (PS3.18 §8.7.3.5.2 default).
    r = client.get(f"{base}/2")
    assert r.status_code == 200
    assert "transfer-syntax=1.2.840.10008.1.2.1" in r.headers["Content-Type"]
    ((head, body),) = parts(r)
    assert head["content-type"].startswith("application/octet-stream")
    assert body == values[1].tobytes()
    # As stored: the RLE codestream, labelled image/dicom-rle.
    stored = parts(client.get(f"{base}/3,1", headers={"Accept": f"{OCTET}; transfer-syntax=*"}))
    assert [h["content-type"] for h, _ in stored] == [
        f"image/dicom-rle; transfer-syntax={RLELossless}"] * 2
    frames = list(pydicom.encaps.generate_frames(pydicom.dcmread(io.BytesIO(data)).PixelData,
                                                 number_of_frames=3))
    assert [b for _, b in stored] == [frames[2], frames[0]]
    # Transcoded to JPEG-LS lossless on request; decodes back to the same values.
    jls = parts(client.get(f"{base}/1", headers={"Accept": "multipart/related; type=image/jls"}))
    ((head, body),) = jls
    assert head["content-type"] == f"image/jls; transfer-syntax={JPEGLSLossless}"
    from pydicom.pixels import get_decoder

    decoded = get_decoder(JPEGLSLossless).as_array(
        pydicom.encaps.encapsulate([body]), rows=16, columns=16, samples_per_pixel=1,
        bits_allocated=16, bits_stored=12, pixel_representation=0,
        photometric_interpretation="MONOCHROME2", number_of_frames=1)[0]
    assert np.array_equal(decoded, values[0])


def test_several_media_ranges_and_406(client: FlaskClient) -> None:
    st, se, sop = uid(), uid(), uid()
    data, values = multiframe(st, se, sop, 2, size=8)
    assert post(client, [data]).status_code == 200
    base = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}/frames/1"
    # JPEG baseline cannot hold 12-bit data: the next range of the header is used.
    accept = "multipart/related; type=image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50, " \
             f"{OCTET}; q=0.5"
    ((head, body),) = parts(client.get(base, headers={"Accept": accept}))
    assert head["content-type"].startswith("application/octet-stream")
    assert body == values[0].tobytes()
    r = client.get(base, headers={"Accept": "multipart/related; type=image/jpeg; "
                                            "transfer-syntax=1.2.840.10008.1.2.4.50"})
    assert r.status_code == 406 and r.is_json
    rle = parts(client.get(base, headers={"Accept": "multipart/related; type=image/dicom-rle"}))
    assert rle[0][0]["content-type"] == f"image/dicom-rle; transfer-syntax={RLELossless}"


def test_frames_without_recorded_ranges_are_decoded(client: FlaskClient) -> None:
    """A deflated file has no usable byte offsets (PS3.5 A.5): its frames, all of them by
    the all-frames route, come from decoding the file."""
    st, se, sop = uid(), uid(), uid()
    values = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8) * 5
    ds = ct(st, se, sop, frames=3, rows=8, columns=8, pixels=values)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert post(client, [out.getvalue()]).status_code == 200
    base = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}/frames"
    every = parts(client.get(base))
    assert [body for _, body in every] == [values[i].tobytes() for i in range(3)]
    assert every[2][0]["content-location"].endswith("/frames/3")
    assert client.get(f"{base}/4").status_code == 404
