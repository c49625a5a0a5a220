"""Pixel data decoding and encoding, one frame at a time (PS3.5 §8, Annex A.4).

Everything pydicom can decode with the installed plugins is decoded (native,
deflated, RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K);
frames are encoded by pydicom's encoders (RLE, JPEG-LS, JPEG 2000) and, for
JPEG baseline which pydicom cannot write, by Pillow.

Conventions shared with :mod:`app.dicom.transcode`:

* decoded pixels are what ``Dataset.pixel_array`` gives: YBR_* colour becomes
  RGB, samples interleaved (PlanarConfiguration 0), BitsAllocated 1 unpacked;
* a frame's *data* is its stored bytes: for native syntaxes exactly the frame's
  bytes, for encapsulated ones its fragment values concatenated, without item
  headers (PS3.5 A.4);
* anything a codec cannot do raises :class:`~app.errors.NotAcceptable` naming
  the transfer syntaxes, never the codec's own exception.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder, get_encoder, pack_bits
from pydicom.pixels.encoders.base import ENCODING_PROFILES
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from app.errors import DicomWebError, NotAcceptable

# Native syntaxes whose pixel bytes are identical: a deflated file's pixel data is
# explicit little endian once inflated (PS3.5 §A.5).
NATIVE_LE = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian,
                       DeflatedExplicitVRLittleEndian})
NATIVE = NATIVE_LE | {ExplicitVRBigEndian}

# Lossy targets and their Lossy Image Compression Method (PS3.3 C.7.6.1.1.5.1).
LOSSY_METHODS = {JPEGBaseline8Bit: "ISO_10918_1", JPEGLSNearLossless: "ISO_14495_1",
                 JPEG2000: "ISO_15444_1"}
JPEG_QUALITY = 90          # Pillow quality for JPEG baseline
JLS_NEAR = 2               # JPEG-LS NEAR parameter: maximum absolute error per sample
J2K_RATIO = 5.0            # JPEG 2000 irreversible compression ratio (conservative)

# JPEG baseline, PS3.5 Table 8.2.1-1: 8-bit unsigned, grey or colour. Colour is
# handed to Pillow as RGB and comes out YCbCr 4:2:2, i.e. YBR_FULL_422.
_BASELINE = {(1, "MONOCHROME1"), (1, "MONOCHROME2"), (3, "RGB")}
# Encoder limits narrower than PS3.5 allows: OpenJPEG encodes at most 24 bits, and
# with its 6 wavelet resolutions both sides must be at least 2**5 pixels.
_MAX_BITS_STORED = {JPEG2000Lossless: 24, JPEG2000: 24}
_MIN_SIDE = {JPEG2000Lossless: 32, JPEG2000: 32}

# Colour spaces pydicom's decoders return as RGB: YBR_FULL(_422) by its own
# conversion, YBR_ICT/YBR_RCT by the JPEG 2000 decoder undoing its colour transform.
_TO_RGB = {"YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}

T = TypeVar("T")

# pylibjpeg-openjpeg 2.6 crashes the process (SIGSEGV) when two threads encode at once:
# JPEG 2000 encoding is serialised per process (decoding is safe and stays parallel).
_J2K_ENCODERS = frozenset({JPEG2000Lossless, JPEG2000})
_J2K_ENCODE_LOCK = threading.Lock()
# It also logs "tile number 1 / 1" at INFO for every frame it encodes.
logging.getLogger("openjpeg").setLevel(logging.WARNING)


def _prefer_charls() -> None:
    """JPEG-LS frames decode with CharLS (pyjpegls) first, libjpeg (pylibjpeg) only if it
    fails: CharLS is ~4x faster on 16-bit frames, and JPEG-LS decoding is exact
    (ISO 14495-1), so both give the same pixels. pydicom tries plugins in the order they
    were added; re-adding one moves it last (done once, at import, before any thread)."""
    for uid in (JPEGLSLossless, JPEGLSNearLossless):
        decoder = get_decoder(uid)
        if "pyjpegls" in decoder.available_plugins and "pylibjpeg" in decoder.available_plugins:
            decoder.remove_plugin("pylibjpeg")
            decoder.add_plugin("pylibjpeg", ("pydicom.pixels.decoders.pylibjpeg", "_decode_frame"))


_prefer_charls()


def can_decode(syntax: str) -> bool:
    """A decoder is available for ``syntax`` (native syntaxes always are)."""
    if syntax in NATIVE:
        return True
    try:
        return bool(get_decoder(UID(syntax)).is_available)
    except (NotImplementedError, ValueError):
        return False


def can_encode(syntax: str) -> bool:
    """Pixel data can be produced in ``syntax`` (for pixels it accepts)."""
    if syntax in NATIVE:
        return True
    if syntax == JPEGBaseline8Bit:
        return _pillow_jpeg()
    try:
        return bool(get_encoder(UID(syntax)).is_available)
    except (NotImplementedError, ValueError):
        return False


def _pillow_jpeg() -> bool:
    try:
        from PIL import features
    except ImportError:
        return False
    return bool(features.check_codec("jpg"))


def header_of(f: BinaryIO) -> Dataset:
    """The instance without its pixel data, file meta included; ``f`` is left wherever."""
    try:
        return pydicom.dcmread(f, stop_before_pixels=True, force=True)
    except Exception as exc:
        raise NotAcceptable(f"Unreadable DICOM instance: {exc}") from exc


def guard(what: str, call: Callable[[], T]) -> T:
    """Run a codec call, turning any failure into a 406 that says what was attempted."""
    try:
        return call()
    except DicomWebError:
        raise
    except Exception as exc:
        raise NotAcceptable(f"Cannot {what}: {exc}") from exc


def syntax_of(ds: Dataset) -> str:
    """Declared transfer syntax, else the encoding pydicom found (PS3.10 §7.1)."""
    meta = getattr(ds, "file_meta", None)
    declared = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if declared:
        return declared
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian


def syntax_name(syntax: str) -> str:
    return f"{UID(syntax).name} ({syntax})"


def _options(header: Dataset) -> dict[str, Any]:
    """Image Pixel module values of one frame (PS3.3 C.7.6.3)."""
    opts = guard("read the Image Pixel module", lambda: as_pixel_options(
        header, number_of_frames=1, pixel_keyword="PixelData"))
    opts.pop("extended_offsets", None)
    return opts


def decoded_options(header: Dataset, syntax: str) -> dict[str, Any]:
    """Image Pixel values of a frame once decoded: pydicom converts YBR_* colour to RGB
    and always returns interleaved samples. Lets callers describe a converted frame
    without decoding it."""
    opts = _options(header)
    if opts.get("samples_per_pixel") == 3:
        opts["planar_configuration"] = 0
        if opts.get("photometric_interpretation") in _TO_RGB:
            opts["photometric_interpretation"] = "RGB"
    return opts


def _decode(header: Dataset, data: bytes, syntax: str) -> tuple[np.ndarray, dict[str, Any]]:
    """One frame decoded, with the Image Pixel values that describe the array."""
    uid = UID(ExplicitVRLittleEndian if syntax == DeflatedExplicitVRLittleEndian else syntax)
    if not can_decode(uid):
        raise NotAcceptable(f"No decoder for {syntax_name(syntax)}")
    opts = _options(header)
    # Encapsulated decoders want the Pixel Data value: one item per frame, empty
    # Basic Offset Table (PS3.5 A.4).
    arr, meta = guard(f"decode a {syntax_name(syntax)} frame", lambda: get_decoder(uid).as_array(
        data if uid in NATIVE else encapsulate([data], has_bot=False), as_rgb=True, **opts))
    return arr, {**opts, **meta}


def decode_frame(header: Dataset, data: bytes, syntax: str) -> np.ndarray:
    """One frame as ``pixel_array`` would give it (YBR_* → RGB, samples interleaved)."""
    return _decode(header, data, syntax)[0]


def decode_frame_described(header: Dataset, data: bytes,
                           syntax: str) -> tuple[np.ndarray, dict[str, Any]]:
    """One frame decoded, with the Image Pixel values that describe the array
    (Photometric Interpretation as decoded): for writing it as native Pixel Data."""
    return _decode(header, data, syntax)


def decode_frame_from_file(f: BinaryIO, index: int) -> np.ndarray:
    """Frame ``index`` (0-based) read from the whole file: for when no byte range is
    known (deflated, BitsAllocated 1, encapsulated without offsets)."""
    f.seek(0)
    header = header_of(f)
    syntax = syntax_of(header)
    frames = _number_of_frames(header)
    if not 0 <= index < frames:
        raise NotAcceptable(f"Frame {index + 1} does not exist: the instance has {frames}")
    what = f"decode frame {index + 1} of {syntax_name(syntax)}"
    if syntax != DeflatedExplicitVRLittleEndian:
        # Reads only that frame; file offsets mean nothing once deflated (PS3.5 A.5).
        try:
            f.seek(0)
            return pydicom.pixels.pixel_array(f, index=index)
        except Exception:  # pydicom's raw reader is stricter than dcmread: retry below
            pass
    f.seek(0)
    ds = guard("read the instance", lambda: pydicom.dcmread(f, force=True))
    return guard(what, lambda: get_decoder(UID(syntax)).as_array(
        ds, index=index, as_rgb=True)[0])


def _number_of_frames(header: Dataset) -> int:
    try:
        return max(int(header.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def encodable(target: str, opts: dict[str, Any]) -> bool:
    """The target's encoder accepts decoded pixels described by ``opts`` (PS3.5 §8.2
    tables, as pydicom enforces them; JPEG baseline per Table 8.2.1-1)."""
    if target in NATIVE:
        return True
    if not can_encode(target):
        return False
    key = (opts.get("samples_per_pixel"), opts.get("photometric_interpretation"))
    if target == JPEGBaseline8Bit:
        return (key in _BASELINE and opts.get("bits_allocated") == 8
                and opts.get("bits_stored") == 8 and opts.get("pixel_representation") == 0)
    if (int(opts.get("bits_stored") or 0) > _MAX_BITS_STORED.get(UID(target), 64)
            or min(int(opts.get("rows") or 0), int(opts.get("columns") or 0))
            < _MIN_SIDE.get(UID(target), 1)):
        return False
    profiles = ENCODING_PROFILES.get(UID(target), [])
    return any(
        (pi, spp) == (key[1], key[0]) and opts.get("pixel_representation") in reps
        and opts.get("bits_allocated") in allocated and opts.get("bits_stored") in stored
        for pi, spp, reps, allocated, stored in profiles)


def frame_convertible(header: Dataset, source: str, target: str) -> bool:
    """Whether a frame stored in ``source`` can be served in ``target``."""
    if target == source or (source in NATIVE_LE and target in NATIVE_LE):
        return True
    if not can_decode(source) or not can_encode(target):
        return False
    try:
        return encodable(target, decoded_options(header, source))
    except NotAcceptable:  # an unusable Image Pixel module
        return False


def native_bytes(arr: np.ndarray, pixels: Dataset | dict[str, Any],
                 big_endian: bool = False) -> bytes:
    """Decoded pixels as native Pixel Data bytes (PS3.5 §8.1.1): BitsAllocated 1 packed,
    other values in BitsAllocated/8 bytes in the wanted byte order. ``pixels`` is the
    instance's header or Image Pixel options (only Bits Allocated and Pixel
    Representation matter, which decoding does not change)."""
    opts = _options(pixels) if isinstance(pixels, Dataset) else pixels
    if opts.get("bits_allocated") == 1:
        return pack_bits(arr)
    order = ">" if big_endian else "<"
    itemsize = max(int(opts.get("bits_allocated") or 8) // 8, 1)
    kind = "i" if opts.get("pixel_representation") else "u"
    return np.ascontiguousarray(arr, dtype=np.dtype(f"{order}{kind}{itemsize}")).tobytes()


def encode_frame(arr: np.ndarray, opts: dict[str, Any], target: str) -> bytes:
    """One decoded frame compressed in ``target``: its codestream only (PS3.5 A.4)."""
    if not encodable(target, opts):
        raise NotAcceptable(
            f"{syntax_name(target)} cannot encode {opts.get('bits_allocated')}-bit "
            f"{opts.get('photometric_interpretation')} pixel data")
    if target == JPEGBaseline8Bit:
        return guard(f"encode {syntax_name(target)}", lambda: _jpeg_baseline(arr))
    extra: dict[str, Any] = {}
    if target == JPEGLSNearLossless:
        extra["jls_error"] = JLS_NEAR
    elif target == JPEG2000:
        extra["j2k_cr"] = [J2K_RATIO]
    one = {**opts, "number_of_frames": 1, "planar_configuration": 0}

    def run() -> bytes:
        if target not in _J2K_ENCODERS:
            return get_encoder(UID(target)).encode(arr, **one, **extra)
        with _J2K_ENCODE_LOCK:
            return get_encoder(UID(target)).encode(arr, **one, **extra)

    return guard(f"encode {syntax_name(target)}", run)


def _jpeg_baseline(arr: np.ndarray) -> bytes:
    """JPEG process 1 by Pillow: 'L' for grey, RGB stored as YCbCr with 4:2:2
    subsampling, which DICOM calls YBR_FULL_422 (PS3.5 §8.2.1)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY, subsampling=1, progressive=False)
    return out.getvalue()


def encoded_photometric(target: str, photometric: str) -> str:
    """Photometric Interpretation of decoded pixels once encoded in ``target``."""
    if target == JPEGBaseline8Bit and photometric == "RGB":
        return "YBR_FULL_422"
    return photometric


def swap_bytes(data: bytes, size: int) -> bytes:
    """Big ↔ little endian for values of ``size`` bytes (PS3.5 §7.3); a trailing
    partial value (padding) is kept as is, sizes up to 1 leave a byte stream alone."""
    if size <= 1 or len(data) < size:
        return bytes(data)
    whole = len(data) - len(data) % size
    swapped = np.frombuffer(data, dtype=f"u{size}", count=whole // size).byteswap()
    return swapped.tobytes() + bytes(data[whole:])


def convert_frame(header: Dataset, data: bytes, source: str, target: str) -> bytes:
    """Bytes of one frame in ``target``.

    Native → native keeps the stored layout (same bytes, or values byte-swapped for
    big endian); decoding a compressed frame to native gives what ``pixel_array``
    does (RGB, PlanarConfiguration 0, see :func:`decoded_options`); a compressed
    target gets that frame's codestream only."""
    if target == source or (source in NATIVE_LE and target in NATIVE_LE):
        return bytes(data)
    if source in NATIVE and target in NATIVE:
        # Pixel values change byte order; 8- and 1-bit data are byte streams.
        return swap_bytes(data, int(header.get("BitsAllocated") or 8) // 8)
    if not can_encode(target):
        raise NotAcceptable(f"No encoder for {syntax_name(target)}")
    arr, opts = _decode(header, data, source)
    if target in NATIVE:
        return native_bytes(arr, opts, big_endian=target == ExplicitVRBigEndian)
    return encode_frame(arr, opts, target)


__all__ = [
    "LOSSY_METHODS", "NATIVE", "NATIVE_LE", "can_decode", "can_encode",
    "convert_frame", "decode_frame", "decode_frame_described", "decode_frame_from_file",
    "decoded_options",
    "encodable", "encode_frame", "encoded_photometric", "frame_convertible", "header_of",
    "guard", "native_bytes", "swap_bytes", "syntax_name", "syntax_of",
]
