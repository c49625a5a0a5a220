"""Frame-level decoding and conversion (PS3.5 §8.1.1 native frames, A.4 encapsulated
frames), checked frame by frame against pydicom's decoding of the whole file."""

from __future__ import annotations

import copy
import io
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from app.dicom.pixels import (
    can_decode,
    can_encode,
    convert_frame,
    decode_frame,
    decode_frame_from_file,
    decoded_options,
    encoded_photometric,
    frame_convertible,
    header_of,
    native_bytes,
)
from app.errors import NotAcceptable
from tests.dicom_compare import ALL_FILES, DATA

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on odd files

TEST_FILES = DATA / "test_files"
BY_NAME = {p.name: p for p in ALL_FILES}
WITH_PIXELS = [p for p in ALL_FILES if "PixelData" in pydicom.dcmread(p, force=True)]
COMPRESSED_TARGETS = [RLELossless, JPEGLSLossless, JPEG2000Lossless]


@cache
def original(path: Path) -> tuple[Dataset, np.ndarray]:
    """pydicom's reading and decoding of the file, one array per frame."""
    ds = pydicom.dcmread(path, force=True)
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        pytest.skip(f"pydicom cannot decode {path.name}: {type(exc).__name__}")
    frames = int(ds.get("NumberOfFrames") or 1)
    return ds, pixels if frames > 1 else pixels[np.newaxis]


def stored_frames(ds: Dataset) -> list[bytes] | None:
    """Each frame's stored bytes, as the lead's byte ranges would give them; None where
    there are no byte ranges (decode_frame_from_file serves those)."""
    syntax = ds.file_meta.TransferSyntaxUID
    frames = int(ds.get("NumberOfFrames") or 1)
    if syntax.is_compressed:
        return list(generate_frames(ds.PixelData, number_of_frames=frames))
    if ds.BitsAllocated == 1 or syntax == DeflatedExplicitVRLittleEndian:
        return None  # frames not on byte boundaries; file offsets meaningless once deflated
    if syntax == ExplicitVRBigEndian and ds.BitsAllocated == 8 and ds["PixelData"].VR == "OW":
        return None  # 8-bit OW big endian: bytes swapped pairwise, across frame ends
    size = ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8
    if ds.PhotometricInterpretation == "YBR_FULL_422":
        size = size // 3 * 2  # PS3.3 C.7.6.3.1.2: two samples of Cb and Cr per four
    return [ds.PixelData[i * size:(i + 1) * size] for i in range(frames)]


def header(path: Path) -> Dataset:
    with open(path, "rb") as f:
        return header_of(f)


def described(head: Dataset, source: str, target: str) -> Dataset:
    """Header of a frame converted from ``source`` to ``target``."""
    opts = decoded_options(head, source)
    out = copy.deepcopy(head)
    out.PhotometricInterpretation = encoded_photometric(target, opts["photometric_interpretation"])
    if int(out.SamplesPerPixel) > 1:
        out.PlanarConfiguration = 0
    return out


def test_decoders_and_encoders_installed() -> None:
    for syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                   DeflatedExplicitVRLittleEndian, RLELossless, JPEGBaseline8Bit,
                   JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless,
                   JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, HTJ2KLossless,
                   HTJ2KLosslessRPCL, HTJ2K):
        assert can_decode(syntax), syntax
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                   DeflatedExplicitVRLittleEndian, RLELossless, JPEGLSLossless,
                   JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, JPEGBaseline8Bit):
        assert can_encode(syntax), syntax
    assert not can_encode(HTJ2KLossless) and not can_encode(JPEGLosslessSV1)
    assert not can_decode("1.2.840.10008.1.2.4.100")  # MPEG2: not pixels pydicom decodes
    assert not can_decode("1.2.3")


@pytest.mark.parametrize("path", WITH_PIXELS, ids=lambda p: p.name)
def test_frames(path: Path) -> None:
    ds, pixels = original(path)
    head = header(path)
    assert "PixelData" not in head and head.file_meta.TransferSyntaxUID
    source = head.file_meta.TransferSyntaxUID
    native = pydicom.dcmread(path, force=True)
    if UID(source).is_compressed:  # the oracle for native frames: pydicom's decompress
        native.decompress(generate_instance_uid=False)
    size = native.Rows * native.Columns * native.SamplesPerPixel * native.BitsAllocated // 8
    frames = stored_frames(ds)
    if frames is None:
        with open(path, "rb") as f:
            for k, expected in enumerate(pixels):
                assert np.array_equal(decode_frame_from_file(f, k), expected)
        return
    for k, data in enumerate(frames):
        assert np.array_equal(decode_frame(head, data, source), pixels[k])
        with open(path, "rb") as f:
            assert np.array_equal(decode_frame_from_file(f, k), pixels[k])
        explicit = convert_frame(head, data, source, ExplicitVRLittleEndian)
        if UID(source).is_compressed:
            assert explicit == native.PixelData[k * size:(k + 1) * size]
        elif source == ExplicitVRBigEndian:  # same layout, values byte-swapped
            assert np.array_equal(decode_frame(head, explicit, ExplicitVRLittleEndian),
                                  pixels[k])
        else:
            assert explicit == data
        for target in COMPRESSED_TARGETS:
            check_round_trip(head, data, source, target, pixels[k])


def check_round_trip(head: Dataset, data: bytes, source: str, target: str,
                     pixels: np.ndarray) -> None:
    if not frame_convertible(head, source, target):
        with pytest.raises(NotAcceptable):
            convert_frame(head, data, source, target)
        return
    try:
        encoded = convert_frame(head, data, source, target)
    except NotAcceptable:
        # pyjpegls cannot fit incompressible images of a few pixels in its buffer
        assert target == JPEGLSLossless and int(head.Rows) * int(head.Columns) < 64
        return
    back = decode_frame(described(head, source, target), encoded, target)
    assert np.array_equal(back, pixels), target


@pytest.mark.parametrize("name", ["image_dfl.dcm", "liver_1frame.dcm",
                                  "liver_expb_1frame.dcm", "SC_rgb_small_odd_big_endian.dcm",
                                  "SC_rgb_jpeg.dcm", "examples_ybr_color.dcm"])
def test_decode_frame_from_file_without_byte_ranges(name: str) -> None:
    _, pixels = original(TEST_FILES / name)
    with open(TEST_FILES / name, "rb") as f:
        for k in (0, len(pixels) - 1):
            assert np.array_equal(decode_frame_from_file(f, k), pixels[k])
        with pytest.raises(NotAcceptable):
            decode_frame_from_file(f, len(pixels))


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_jp2klossless.dcm",
                                  "SC_rgb_rle_16bit.dcm"])
def test_sixteen_bits_are_not_jpeg_baseline(name: str) -> None:
    ds, _ = original(TEST_FILES / name)
    head = header(TEST_FILES / name)
    source = head.file_meta.TransferSyntaxUID
    assert not frame_convertible(head, source, JPEGBaseline8Bit)
    with pytest.raises(NotAcceptable):
        convert_frame(head, (stored_frames(ds) or [b""])[0], source, JPEGBaseline8Bit)


@pytest.mark.parametrize("target", [JPEGBaseline8Bit, JPEG2000, JPEGLSNearLossless])
@pytest.mark.parametrize("name", ["examples_rgb_color.dcm", "examples_ybr_color.dcm",
                                  "chrX1.dcm", "CT_small.dcm", "MR_small_RLE.dcm"])
def test_lossy_frames_are_close(name: str, target: str) -> None:
    ds, pixels = original(BY_NAME[name])
    head = header(BY_NAME[name])
    source = head.file_meta.TransferSyntaxUID
    if not frame_convertible(head, source, target):
        assert target == JPEGBaseline8Bit and head.BitsAllocated == 16
        return
    encoded = convert_frame(head, (stored_frames(ds) or [b""])[0], source, target)
    back = decode_frame(described(head, source, target), encoded, target)
    assert back.shape == pixels[0].shape
    error = np.abs(back.astype(np.float64) - pixels[0].astype(np.float64))
    spread = float(pixels.max()) - float(pixels.min()) + 1
    assert error.mean() <= max(0.04 * spread, 3.0)
    if target == JPEGBaseline8Bit and head.SamplesPerPixel == 3:
        assert encoded_photometric(target, "RGB") == "YBR_FULL_422"


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_gdcm.dcm",
                                  "JPGExtended.dcm", "SC_rgb_jpeg_dcmtk.dcm",
                                  "SC_rgb_gdcm_KY.dcm", "JPEGLSNearLossless_08.dcm"])
@pytest.mark.parametrize("garbage", [b"", bytes(64), bytes(range(256)) * 2])
def test_corrupt_frames_are_not_acceptable(name: str, garbage: bytes) -> None:
    head = header(TEST_FILES / name)
    source = head.file_meta.TransferSyntaxUID
    with pytest.raises(NotAcceptable) as caught:
        decode_frame(head, garbage, source)
    assert source in caught.value.message
    for target in {ExplicitVRLittleEndian, JPEG2000} - {source}:  # same syntax: passthrough
        with pytest.raises(NotAcceptable):
            convert_frame(head, garbage, source, target)


def test_native_frame_of_wrong_length_is_not_acceptable() -> None:
    head = header(TEST_FILES / "MR_small.dcm")
    with pytest.raises(NotAcceptable):
        decode_frame(head, b"\0" * 10, ExplicitVRLittleEndian)


def test_native_frames_pass_through_and_swap() -> None:
    head = header(TEST_FILES / "MR_small.dcm")
    data = bytes(range(8)) * (64 * 64 * 2 // 8)
    assert convert_frame(head, data, ExplicitVRLittleEndian, ImplicitVRLittleEndian) == data
    assert convert_frame(head, data, DeflatedExplicitVRLittleEndian,
                         ExplicitVRLittleEndian) == data
    swapped = convert_frame(head, data, ExplicitVRLittleEndian, ExplicitVRBigEndian)
    assert swapped[:4] == b"\1\0\3\2"
    assert frame_convertible(head, ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    assert not frame_convertible(head, ExplicitVRLittleEndian, HTJ2KLossless)
    assert not frame_convertible(head, "1.2.3", ExplicitVRLittleEndian)


def test_one_bit_frame_is_packed_again() -> None:
    ds, pixels = original(TEST_FILES / "liver_1frame.dcm")
    head = header(TEST_FILES / "liver_1frame.dcm")
    decoded = decode_frame(head, ds.PixelData, ExplicitVRLittleEndian)
    assert np.array_equal(decoded, pixels[0]) and decoded.max() == 1  # unpacked
    packed = native_bytes(decoded, decoded_options(head, ExplicitVRLittleEndian))
    assert packed == ds.PixelData  # PS3.5 §8.1.1: bit 0 of byte 0 is the first pixel
    assert native_bytes(decoded, head) == ds.PixelData  # the header does as well
    assert convert_frame(head, ds.PixelData, ExplicitVRLittleEndian, ExplicitVRBigEndian) \
        == ds.PixelData  # 1-bit data is a byte stream in either byte order
    assert not frame_convertible(head, ExplicitVRLittleEndian, RLELossless)


@pytest.mark.parametrize("name, relabel", [
    ("SC_rgb_jpeg_gdcm.dcm", JPEGLossless),  # SV1 is one of process 14's predictors
    ("MR_small_jp2klossless.dcm", HTJ2KLossless),  # Part 15 decoders read Part 1 streams
    ("SC_rgb_gdcm_KY.dcm", HTJ2K),
])
def test_syntaxes_without_bundled_files_decode(name: str, relabel: str) -> None:
    ds, pixels = original(TEST_FILES / name)
    head = header(TEST_FILES / name)
    frame = (stored_frames(ds) or [b""])[0]
    assert np.array_equal(decode_frame(head, frame, relabel), pixels[0])
    explicit = convert_frame(head, frame, relabel, ExplicitVRLittleEndian)
    assert np.array_equal(decode_frame(described(head, relabel, ExplicitVRLittleEndian),
                                       explicit, ExplicitVRLittleEndian), pixels[0])


@pytest.mark.parametrize("name", ["CT_small.dcm", "rtdose_expb.dcm", "SC_rgb_rle_16bit.dcm"])
def test_native_bytes_from_header(name: str) -> None:
    _, pixels = original(TEST_FILES / name)
    head = header(TEST_FILES / name)
    data = native_bytes(pixels[0], head)
    assert len(data) == pixels[0].size * head.BitsAllocated // 8
    assert np.array_equal(decode_frame(head, data, ExplicitVRLittleEndian), pixels[0])
    big = native_bytes(pixels[0], head, big_endian=True)
    assert np.array_equal(decode_frame(head, big, ExplicitVRBigEndian), pixels[0])


def test_header_of_leaves_the_file_readable() -> None:
    with open(TEST_FILES / "SC_rgb_rle_2frame.dcm", "rb") as f:
        head = header_of(f)
        assert head.Rows == 100 and "PixelData" not in head
        f.seek(0)
        assert "PixelData" in pydicom.dcmread(io.BytesIO(f.read()))


CONCURRENT_J2K = """
import threading
import numpy as np
from app.dicom import pixels
opts = dict(rows=256, columns=256, samples_per_pixel=1, bits_allocated=16, bits_stored=12,
            pixel_representation=0, photometric_interpretation="MONOCHROME2")
a = np.random.default_rng(1).integers(0, 4096, (256, 256)).astype(np.uint16)
def work():
    for _ in range(5):
        pixels.encode_frame(a, opts, "1.2.840.10008.1.2.4.90")
threads = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def test_concurrent_jpeg2000_encoding_does_not_crash_the_process() -> None:
    """pylibjpeg-openjpeg segfaults when threads encode at once (a gunicorn gthread worker
    serving two transcoding requests); the encoder is serialised. In a subprocess, so a
    crash is a failure rather than the end of the test run."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", CONCURRENT_J2K], capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
