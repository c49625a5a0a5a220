"""Whole-instance transcoding of pydicom's bundled files, checked against pydicom's own
decoding of the original (PS3.18 §8.7.3.5, PS3.5 §8 and Annex A.4)."""

from __future__ import annotations

import io
import struct
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import (
    encapsulate,
    encapsulate_extended,
    generate_frames,
    parse_basic_offsets,
)
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from app.dicom.pixels import JLS_NEAR, frame_convertible, header_of
from app.dicom.splice import explicit_little_endian
from app.dicom.transcode import (
    can_transcode,
    native_frame_syntax_ok,
    transcode,
    transcode_dataset,
)
from app.errors import NotAcceptable
from tests.dicom_compare import ALL_FILES, DATA

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on odd files

LOSSLESS = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
            ExplicitVRBigEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless]
LOSSY = [JPEGBaseline8Bit, JPEGLSNearLossless, JPEG2000]
WITH_PIXELS = [p for p in ALL_FILES if "PixelData" in pydicom.dcmread(p, force=True)]
WITHOUT_PIXELS = [p for p in ALL_FILES if p not in WITH_PIXELS]
TEST_FILES = DATA / "test_files"


def decodes(path: Path) -> bool:
    try:
        pydicom.dcmread(path, force=True).pixel_array  # noqa: B018 - decoding is the test
    except Exception:
        return False
    return True


UNDECODABLE = [p for p in WITH_PIXELS if not decodes(p)]


@cache
def original(path: Path) -> tuple[Dataset, np.ndarray]:
    """pydicom's reading and decoding of the file: the oracle. Skips what pydicom
    itself cannot decode."""
    ds = pydicom.dcmread(path, force=True)
    try:
        return ds, ds.pixel_array
    except Exception as exc:
        pytest.skip(f"pydicom cannot decode {path.name}: {type(exc).__name__}")


def run(path: Path, target: str) -> tuple[Dataset, str]:
    with open(path, "rb") as f:
        data, used = transcode(f, target)
    assert data[128:132] == b"DICM"  # PS3.10 §7.1 preamble and prefix
    back = pydicom.dcmread(io.BytesIO(data))
    assert back.file_meta.TransferSyntaxUID == used
    return back, used


def tiny(ds: Dataset) -> bool:
    """pyjpegls cannot fit incompressible images of a few pixels in its output buffer."""
    return int(ds.Rows) * int(ds.Columns) < 64


@pytest.mark.parametrize("target", LOSSLESS)
@pytest.mark.parametrize("path", WITH_PIXELS, ids=lambda p: p.name)
def test_lossless_targets_keep_every_pixel(path: Path, target: str) -> None:
    ds, pixels = original(path)
    back, used = run(path, target)
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(back.pixel_array, pixels)
    if used != target:  # only the documented fallback, and only when it had to
        assert used == ExplicitVRLittleEndian
        with open(path, "rb") as f:
            header = header_of(f)
        source = ds.file_meta.TransferSyntaxUID
        assert not frame_convertible(header, source, target) or tiny(ds)


@pytest.mark.parametrize("target", LOSSY)
@pytest.mark.parametrize("path", WITH_PIXELS, ids=lambda p: p.name)
def test_lossy_targets_stay_close(path: Path, target: str) -> None:
    ds, pixels = original(path)
    back, used = run(path, target)
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    decoded = back.pixel_array
    assert decoded.shape == pixels.shape
    if used != target:
        assert used == ExplicitVRLittleEndian and np.array_equal(decoded, pixels)
        return
    error = np.abs(decoded.astype(np.float64) - pixels.astype(np.float64))
    if target == JPEGLSNearLossless:
        assert error.max() <= JLS_NEAR  # the NEAR bound is a guarantee (ISO 14495-1)
    else:
        spread = float(pixels.max()) - float(pixels.min()) + 1
        assert error.mean() <= max(0.04 * spread, 3.0)
    if target != ds.file_meta.TransferSyntaxUID:  # PS3.3 C.7.6.1.1.5
        assert back.LossyImageCompression == "01"
        methods = back.LossyImageCompressionMethod
        last = methods[-1] if isinstance(methods, pydicom.multival.MultiValue) else methods
        assert last == {JPEGBaseline8Bit: "ISO_10918_1", JPEGLSNearLossless: "ISO_14495_1",
                        JPEG2000: "ISO_15444_1"}[target]


def test_rgb_to_jpeg_baseline_is_ybr_full_422() -> None:
    back, used = run(TEST_FILES / "examples_rgb_color.dcm", JPEGBaseline8Bit)
    assert used == JPEGBaseline8Bit
    assert back.PhotometricInterpretation == "YBR_FULL_422"
    assert back.LossyImageCompression == "01"
    assert float(back.LossyImageCompressionRatio) > 1


def test_sixteen_bit_to_jpeg_baseline_falls_back_to_explicit_little_endian() -> None:
    path = TEST_FILES / "MR_small.dcm"
    back, used = run(path, JPEGBaseline8Bit)
    assert used == ExplicitVRLittleEndian
    assert np.array_equal(back.pixel_array, original(path)[1])
    assert "LossyImageCompression" not in back
    with open(path, "rb") as f:
        assert not frame_convertible(header_of(f), ExplicitVRLittleEndian, JPEGBaseline8Bit)


@pytest.mark.parametrize("target", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
@pytest.mark.parametrize("name", ["SC_rgb_rle_2frame.dcm", "examples_ybr_color.dcm"])
def test_multiframe_output_has_basic_offset_table(name: str, target: str) -> None:
    ds, pixels = original(TEST_FILES / name)
    back, used = run(TEST_FILES / name, target)
    assert used == target
    frames = int(ds.NumberOfFrames)
    offsets = parse_basic_offsets(back.PixelData)
    assert len(offsets) == frames and offsets[0] == 0  # PS3.5 A.4, Table A.4-1
    assert len(list(generate_frames(back.PixelData, number_of_frames=frames))) == frames
    assert np.array_equal(back.pixel_array, pixels)


@pytest.mark.parametrize("big, little", [
    ("MR_small_bigendian.dcm", "MR_small.dcm"), ("rtdose_expb.dcm", "rtdose.dcm"),
    ("liver_expb_1frame.dcm", "liver_1frame.dcm"),
    ("SC_rgb_small_odd_big_endian.dcm", "SC_rgb_small_odd.dcm"),
])
def test_big_endian_comes_out_like_its_little_endian_twin(big: str, little: str) -> None:
    twin = pydicom.dcmread(TEST_FILES / little)
    for target in (ExplicitVRLittleEndian, RLELossless):
        back, used = run(TEST_FILES / big, target)
        assert used in (target, ExplicitVRLittleEndian)
        assert np.array_equal(back.pixel_array, twin.pixel_array)
        assert back.pixel_array.dtype.byteorder in "<=|"


@pytest.mark.parametrize("path", WITHOUT_PIXELS, ids=lambda p: p.name)
def test_instance_without_pixels(path: Path) -> None:
    source = pydicom.dcmread(path, force=True)
    back, used = run(path, ImplicitVRLittleEndian)
    assert used == ImplicitVRLittleEndian
    back, used = run(path, JPEG2000Lossless)
    assert used == ExplicitVRLittleEndian  # nothing to compress
    assert back.get("SOPInstanceUID") == source.get("SOPInstanceUID")
    assert back.get("PatientName") == source.get("PatientName")


def words_instance(syntax: str, order: str) -> io.BytesIO:
    """An MR instance with OW/OF values at top level and in a sequence, their bytes
    in ``order`` as ``syntax`` requires (PS3.5 §7.3)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", "1.2.3.4.5"
    ds.Rows = ds.Columns = 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.DiffusionBValue = 1000.5
    ds.add_new(0x60003000, "OW", np.array([1, 258, 65535, 4], f"{order}u2").tobytes())
    item = Dataset()
    item.LUTDescriptor = [2, 0, 16]
    item.add_new(0x00283006, "OW", np.array([7, 513], f"{order}u2").tobytes())  # LUT Data
    ds.ModalityLUTSequence = [item]
    ds.add_new(0x00660016, "OF", np.array([1.5, -2.0], f"{order}f4").tobytes())
    ds.add_new(0x7FE00010, "OW", np.array([0, 1, 2048, 4095], f"{order}u2").tobytes())
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    out.seek(0)
    return out


@pytest.mark.parametrize("source, target", [
    (ExplicitVRBigEndian, ExplicitVRLittleEndian), (ExplicitVRLittleEndian, ExplicitVRBigEndian),
    (ExplicitVRBigEndian, ImplicitVRLittleEndian), (ExplicitVRBigEndian, RLELossless),
])
def test_word_values_change_byte_order_with_the_syntax(source: str, target: str) -> None:
    data, used = transcode(words_instance(source, ">" if source == ExplicitVRBigEndian
                                          else "<"), target)
    assert used == target
    back = pydicom.dcmread(io.BytesIO(data))
    order = ">" if target == ExplicitVRBigEndian else "<"
    assert back[0x60003000].value == np.array([1, 258, 65535, 4], f"{order}u2").tobytes()
    lut = back.ModalityLUTSequence[0][0x00283006].value
    assert lut == np.array([7, 513], f"{order}u2").tobytes() or list(lut) == [7, 513]
    assert back[0x00660016].value == np.array([1.5, -2.0], f"{order}f4").tobytes()
    assert back.DiffusionBValue == 1000.5
    assert back.pixel_array.tolist() == [[0, 1], [2048, 4095]]


def corrupt(path: Path) -> io.BytesIO:
    """The instance with its first frame's codestream overwritten after 2 bytes.
    (Truncation alone is not always detected: the JPEG-LS decoders return garbage.)"""
    ds = pydicom.dcmread(path)
    frames = int(ds.get("NumberOfFrames") or 1)
    codestreams = list(generate_frames(ds.PixelData, number_of_frames=frames))
    codestreams[0] = codestreams[0][:2] + bytes(range(256))  # start marker, then garbage
    ds.PixelData = encapsulate(codestreams)
    out = io.BytesIO()
    ds.save_as(out)
    out.seek(0)
    return out


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_gdcm.dcm",
                                  "JPGExtended.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
@pytest.mark.parametrize("target", [ExplicitVRLittleEndian, JPEG2000])
def test_corrupt_codestream_is_not_acceptable(name: str, target: str) -> None:
    with pytest.raises(NotAcceptable) as caught:
        transcode(corrupt(TEST_FILES / name), target)
    assert "1.2.840.10008" in caught.value.message  # names the syntax it failed on


@pytest.mark.parametrize("target", [ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless])
@pytest.mark.parametrize("path", UNDECODABLE, ids=lambda p: p.name)
def test_what_pydicom_cannot_decode_is_not_acceptable(path: Path, target: str) -> None:
    """Refused with a 406, or passed through untouched when no decoding is needed
    (stored native bytes answered natively): never a codec's own exception."""
    try:
        with open(path, "rb") as f:
            data, used = transcode(f, target)
    except NotAcceptable as exc:
        assert "Cannot" in exc.message or "No " in exc.message
        return
    assert used in (target, ExplicitVRLittleEndian)
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == used


def test_same_syntax_and_star_keep_the_encoding() -> None:
    path = TEST_FILES / "MR_small_jp2klossless.dcm"
    for target in ("*", JPEG2000Lossless):
        back, used = run(path, target)
        assert used == JPEG2000Lossless
        assert back.PixelData == pydicom.dcmread(path).PixelData


def test_can_transcode() -> None:
    assert can_transcode(JPEG2000Lossless, "*")
    assert can_transcode("1.2.3.4", "1.2.3.4")
    assert can_transcode(HTJ2KLossless, ExplicitVRLittleEndian)  # decode only
    assert not can_transcode(ExplicitVRLittleEndian, HTJ2KLossless)  # no encoder
    assert not can_transcode("1.2.3.4", ExplicitVRLittleEndian)
    assert can_transcode(ExplicitVRBigEndian, JPEGBaseline8Bit)
    assert native_frame_syntax_ok(ImplicitVRLittleEndian, ExplicitVRLittleEndian)
    assert not native_frame_syntax_ok(ExplicitVRBigEndian, ExplicitVRLittleEndian)


def test_pixel_description_with_a_wrong_vr_is_rewritten() -> None:
    """A damaged file whose PhotometricInterpretation is encoded as DS (found by the HTTP
    fuzzer): decoding it to ELE writes a new, valid element instead of failing."""
    original = (DATA / "test_files" / "SC_rgb_jpeg_gdcm.dcm").read_bytes()
    damaged = original.replace(b"\x28\x00\x04\x00CS", b"\x28\x00\x04\x00DS", 1)
    assert damaged != original
    data, used = transcode(io.BytesIO(damaged), ExplicitVRLittleEndian)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert used == ExplicitVRLittleEndian
    assert ds["PhotometricInterpretation"].VR == "CS"
    assert ds.PhotometricInterpretation == "RGB"
    expected = pydicom.dcmread(io.BytesIO(original)).pixel_array
    assert np.abs(ds.pixel_array.astype(int) - expected.astype(int)).max() <= 2


# --------------------------------------------------------------------------- splice fast path
# Compressed → Explicit VR Little Endian by splicing bytes (app/dicom/splice.py) must give
# what the pydicom path gives; anything it does not reproduce it declines (None).

SPLICED = ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEGLSNearLossless_16.dcm",
           "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle_32bit_2frame.dcm",
           "examples_ybr_color.dcm", "693_J2KI.dcm", "rtdose_rle.dcm", "JPGExtended.dcm"]


def file_bytes(name: str) -> bytes:
    return (TEST_FILES / name).read_bytes()


def spliced(data: bytes | Path) -> bytes | None:
    raw = data.read_bytes() if isinstance(data, Path) else data
    return explicit_little_endian(io.BytesIO(raw))


def assert_same_instance(fast: bytes, slow: bytes) -> None:
    a, b = pydicom.dcmread(io.BytesIO(fast)), pydicom.dcmread(io.BytesIO(slow))
    assert a.file_meta == b.file_meta
    assert a.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert a == b  # every element, Pixel Data included
    assert a["PixelData"].VR == b["PixelData"].VR
    assert not a["PixelData"].is_undefined_length
    assert a.preamble == b.preamble


@pytest.mark.parametrize("path", WITH_PIXELS, ids=lambda p: p.name)
def test_splice_gives_what_the_pydicom_path_gives(path: Path) -> None:
    fast = spliced(path)
    if fast is None:
        return  # declined: the pydicom path answers (the tests above)
    with open(path, "rb") as f:
        slow, used = transcode_dataset(f, ExplicitVRLittleEndian)
    assert used == ExplicitVRLittleEndian
    assert_same_instance(fast, slow)
    assert np.array_equal(pydicom.dcmread(io.BytesIO(fast)).pixel_array, original(path)[1])


@pytest.mark.parametrize("name", SPLICED)
def test_usual_compressed_instances_are_spliced(name: str) -> None:
    """RLE, JPEG-LS, JPEG 2000 and JPEG, grey and colour (YBR_* decoded to RGB), several
    frames, UN values of known tags: spliced, and that is what transcode answers."""
    path = TEST_FILES / name
    fast = spliced(path)
    assert fast is not None
    with open(path, "rb") as f:
        assert_same_instance(fast, transcode_dataset(f, ExplicitVRLittleEndian)[0])
    with open(path, "rb") as f:
        assert transcode(f, ExplicitVRLittleEndian) == (fast, ExplicitVRLittleEndian)


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle_32bit_2frame.dcm",
                                  "693_J2KI.dcm"])
def test_well_formed_instances_are_spliced_byte_for_byte(name: str) -> None:
    """Where pydicom re-encodes nothing (no UN of a known tag, no extra padding), the two
    paths agree on every byte; retired group lengths (693_J2KI) are dropped by both."""
    with open(TEST_FILES / name, "rb") as f:
        assert spliced(TEST_FILES / name) == transcode_dataset(f, ExplicitVRLittleEndian)[0]


@pytest.mark.parametrize("name, stored", [("SC_rgb_dcmtk_+eb+cy+np.dcm", "YBR_FULL_422"),
                                          ("SC_rgb_jpeg_dcmtk.dcm", "YBR_FULL"),
                                          ("examples_jpeg2k.dcm", "YBR_RCT")])
def test_spliced_colour_is_described_as_decoded(name: str, stored: str) -> None:
    """YBR_* comes out RGB, interleaved (PS3.3 C.7.6.3.1.2, C.7.6.3.1.3)."""
    assert pydicom.dcmread(TEST_FILES / name).PhotometricInterpretation == stored
    back = pydicom.dcmread(io.BytesIO(spliced(TEST_FILES / name) or b""))
    assert back.PhotometricInterpretation == "RGB" and back.PlanarConfiguration == 0
    assert back["PixelData"].VR == "OB"


def test_splice_copies_elements_after_pixel_data() -> None:
    """MR_small_RLE.dcm ends with Data Set Trailing Padding (FFFC,FFFC) after its Pixel
    Data: copied as it is."""
    data = file_bytes("MR_small_RLE.dcm")
    trailing = data[data.rindex(b"\xfe\xff\xdd\xe0\0\0\0\0") + 8:]
    assert trailing.startswith(b"\xfc\xff\xfc\xffOB") and len(trailing) > 12
    fast = spliced(data)
    assert fast is not None and fast.endswith(trailing)
    assert 0xFFFCFFFC in pydicom.dcmread(io.BytesIO(fast))


def twice_padded(name: str) -> bytes:
    """The file with a second (FFFC,FFFC) after its own: elements out of order."""
    return file_bytes(name) + b"\xfc\xff\xfc\xffOB\0\0" + struct.pack("<I", 4) + b"\0" * 4


def with_extended_offsets(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = \
        encapsulate_extended(frames)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.mark.parametrize("data", [
    pytest.param(file_bytes("MR_small_RLE.dcm")[128:], id="no preamble"),
    pytest.param(file_bytes("MR_small.dcm"), id="native"),
    pytest.param(file_bytes("image_dfl.dcm"), id="deflated"),
    pytest.param(file_bytes("UN_sequence.dcm"), id="UN of undefined length"),
    pytest.param(file_bytes("SC_rgb_jpeg.dcm"), id="implicit VR body"),
    pytest.param(with_extended_offsets(TEST_FILES / "SC_rgb_rle_2frame.dcm"), id="EOT"),
    pytest.param(file_bytes("JPEG-lossy.dcm"), id="frame decoder refuses"),
    pytest.param(file_bytes("MR_small_RLE.dcm")[:-200], id="truncated"),
    pytest.param(twice_padded("MR_small_RLE.dcm"), id="unsorted trailing elements"),
    pytest.param(file_bytes("MR_small_RLE.dcm").replace(b"\x28\x00\x04\x00CS",
                                                        b"\x28\x00\x04\x00DS", 1), id="VR"),
])
def test_splice_declines_what_it_would_not_reproduce(data: bytes) -> None:
    assert spliced(data) is None


def test_transcode_falls_back_when_the_splice_declines() -> None:
    data = with_extended_offsets(TEST_FILES / "SC_rgb_rle_2frame.dcm")
    out, used = transcode(io.BytesIO(data), ExplicitVRLittleEndian)
    assert used == ExplicitVRLittleEndian
    back = pydicom.dcmread(io.BytesIO(out))
    assert "ExtendedOffsetTable" not in back
    assert np.array_equal(back.pixel_array, original(TEST_FILES / "SC_rgb_rle_2frame.dcm")[1])


def test_jpeg_ls_decodes_with_charls_first() -> None:
    """CharLS (pyjpegls) is tried before libjpeg: ~4x faster, same pixels (exact decoding)."""
    for uid in (JPEGLSLossless, JPEGLSNearLossless):
        plugins = get_decoder(uid).available_plugins
        if "pyjpegls" in plugins and "pylibjpeg" in plugins:
            assert plugins.index("pyjpegls") < plugins.index("pylibjpeg")
