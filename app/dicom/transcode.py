"""Transfer syntax conversion of a whole instance, one at a time (PS3.18 §8.7.3.5).

The instance is read into memory, its pixel data decoded when the target needs
it (:mod:`app.dicom.pixels`), re-encoded frame by frame, and written back as a
DICOM file (PS3.10 §7). SOP Instance UID is kept: the pixels are the same
instance in another encoding, lossy targets being flagged as such
(PS3.3 C.7.6.1.1.5) rather than given a new identity.

When the target's encoder cannot take this instance's pixels (16-bit data to
JPEG baseline, 1-bit data to RLE...) the instance comes back in Explicit VR
Little Endian, which every client must accept (PS3.18 §8.7.3.5.2), and the
returned syntax says so.
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended
from pydicom.filewriter import correct_ambiguous_vr
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder, pack_bits
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from app.dicom import splice
from app.dicom.pixels import (
    LOSSY_METHODS,
    NATIVE,
    can_decode,
    can_encode,
    decoded_options,
    encodable,
    encode_frame,
    encoded_photometric,
    guard,
    native_bytes,
    swap_bytes,
    syntax_name,
    syntax_of,
)
from app.errors import NotAcceptable

LITTLE_ENDIAN_TARGETS = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian})

# Values of these VRs are sequences of 2-, 4- or 8-byte words that change byte
# order with the transfer syntax (PS3.5 §7.3); OB and UN are byte streams.
_WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_EXTENDED_OFFSETS = (0x7FE00001, 0x7FE00002)


def can_transcode(source: str, target: str) -> bool:
    """Whether an instance stored as ``source`` can be answered as ``target``."""
    if target in ("*", source):
        return True
    return can_decode(source) and can_encode(target)


def native_frame_syntax_ok(source: str, target: str) -> bool:
    """A native frame is the same bytes in explicit and implicit little endian."""
    return target == source or (source in LITTLE_ENDIAN_TARGETS and target in
                                LITTLE_ENDIAN_TARGETS)


def transcode(f: BinaryIO, target: str) -> tuple[bytes, str]:
    """The whole instance in ``target`` (``*``: as stored), as file bytes with preamble
    and file meta, and the transfer syntax actually used.

    Compressed → Explicit VR Little Endian, the WADO-RS default, is spliced from the
    stored bytes when :mod:`app.dicom.splice` reproduces this path exactly (the same
    output without pydicom reading and writing every element)."""
    if target == ExplicitVRLittleEndian:
        data = splice.explicit_little_endian(f)
        if data is not None:
            return data, target
        f.seek(0)
    return transcode_dataset(f, target)


def transcode_dataset(f: BinaryIO, target: str) -> tuple[bytes, str]:
    """:func:`transcode` through pydicom: the dataset read, converted and written."""
    ds = guard("read the instance", lambda: pydicom.dcmread(f, force=True))
    source = syntax_of(ds)
    target = source if target == "*" else target
    if source == ExplicitVRBigEndian and target != source:
        _swap_words(ds)  # from here on the dataset is explicit little endian
        source = ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    used = _convert_pixels(ds, source, target)
    if used == ExplicitVRBigEndian and source != used:
        correct_ambiguous_vr(ds, True)  # implicit sources: OB or OW must be settled first
        _swap_words(ds)
    return _write(ds, used), used


def _swap_words(ds: Dataset) -> None:
    """Reverse the byte order of every OW/OF/OL/OD/OV value, nested ones included:
    pydicom re-encodes numbers and text for the new syntax but leaves these bytes.
    Native Pixel Data is swapped per pixel value (16, 32 or 64 bits, whatever its VR)
    as pydicom reads it; 1-bit and OB 8-bit data are byte streams (PS3.5 §8.1.1)."""
    for elem in ds.iterall():
        size = _WORD_SIZES.get(elem.VR)
        if size and elem.tag == 0x7FE00010:
            size = max(size, int(ds.get("BitsAllocated") or 0) // 8)
        if size and isinstance(elem.value, bytes | bytearray):
            elem.value = swap_bytes(elem.value, size)


def _convert_pixels(ds: Dataset, source: str, target: str) -> str:
    """Re-encode Pixel Data for ``target`` in place; return the syntax to write."""
    if "PixelData" not in ds:
        # Nothing to compress (Float Pixel Data is native only, PS3.5 §8.2).
        return target if target in NATIVE else ExplicitVRLittleEndian
    if target == source or (source in NATIVE and target in NATIVE):
        return target
    if not can_decode(source):
        raise NotAcceptable(f"No decoder for {syntax_name(source)}")
    if target not in NATIVE and not can_encode(target):
        raise NotAcceptable(f"No encoder for {syntax_name(target)}")
    if target not in NATIVE and not encodable(target, decoded_options(ds, source)):
        if source in NATIVE:
            return ExplicitVRLittleEndian  # stored bytes are already what we fall back to
        target = ExplicitVRLittleEndian
    arrays, opts = _decode_all(ds, source)
    if target not in NATIVE:
        frames = _encode_all(arrays, opts, target)
        if frames is not None:
            _set_encapsulated(ds, frames, opts, target)
            return target
        target = ExplicitVRLittleEndian
    _set_native(ds, arrays, opts)
    return target


def _decode_all(ds: Dataset, source: str) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Every frame decoded as pixel_array would (YBR_* → RGB, interleaved)."""
    results = guard(f"decode {syntax_name(source)}", lambda: list(
        get_decoder(UID(source)).iter_array(ds, as_rgb=True)))
    if not results:
        raise NotAcceptable(f"No frames in the {syntax_name(source)} pixel data")
    opts = {**as_pixel_options(ds), **results[0][1]}
    return [arr for arr, _ in results], opts


def _encode_all(arrays: list[np.ndarray], opts: dict[str, Any], target: str) -> list[bytes] | None:
    """Codestreams of every frame, None if the encoder refuses these pixel values
    (out of range for Bits Stored, say): the caller falls back to native."""
    try:
        return [encode_frame(arr, opts, target) for arr in arrays]
    except NotAcceptable:
        return None


def _set_native(ds: Dataset, arrays: list[np.ndarray], opts: dict[str, Any]) -> None:
    """Decoded frames as native Pixel Data (PS3.5 §8.1.1); 1-bit frames are packed
    together since a frame need not end on a byte boundary."""
    if opts.get("bits_allocated") == 1:
        data = pack_bits(np.concatenate([arr.ravel() for arr in arrays]))
    else:
        data = b"".join(native_bytes(arr, opts) for arr in arrays)
    ds.PixelData = data + b"\0" * (len(data) % 2)
    elem = ds["PixelData"]
    elem.VR = "OB" if int(opts.get("bits_allocated") or 8) <= 8 else "OW"
    elem.is_undefined_length = False
    _set_pixel_description(ds, opts, str(opts.get("photometric_interpretation", "")))


def _set_encapsulated(ds: Dataset, frames: list[bytes], opts: dict[str, Any],
                      target: str) -> None:
    """Frames as encapsulated Pixel Data with a Basic Offset Table so a frame can be
    found without parsing the others (PS3.5 A.4); the Extended Offset Table only
    when 32-bit offsets cannot reach the last frame (PS3.3 C.7.6.3.1.8)."""
    _set_pixel_description(ds, opts, encoded_photometric(
        target, str(opts.get("photometric_interpretation", ""))))
    if sum(len(frame) + 8 for frame in frames[:-1]) > 2**32 - 1:
        ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = \
            encapsulate_extended(frames)
    else:
        ds.PixelData = encapsulate(frames, has_bot=True)
    elem = ds["PixelData"]
    elem.VR = "OB"
    elem.is_undefined_length = True
    if target in LOSSY_METHODS:
        _mark_lossy(ds, opts, frames, LOSSY_METHODS[target])


def _set_pixel_description(ds: Dataset, opts: dict[str, Any], photometric: str) -> None:
    """Image Pixel module values matching the new Pixel Data (PS3.3 C.7.6.3)."""
    for tag in _EXTENDED_OFFSETS:
        ds.pop(tag, None)
    # Removed first: a damaged file may hold them with another VR (PhotometricInterpretation
    # as DS), and assigning would convert to that VR and fail; new ones get the
    # dictionary's VR.
    ds.pop(0x00280004, None)
    ds.PhotometricInterpretation = photometric
    if int(opts.get("samples_per_pixel") or 1) > 1:
        ds.pop(0x00280006, None)
        ds.PlanarConfiguration = 0


def _mark_lossy(ds: Dataset, opts: dict[str, Any], frames: list[bytes], method: str) -> None:
    """Lossy Image Compression "01" with ratio and method appended to any earlier
    lossy step's (PS3.3 C.7.6.1.1.5)."""
    earlier = ds.get("LossyImageCompression") == "01"
    size = (int(opts["rows"]) * int(opts["columns"]) * int(opts["samples_per_pixel"])
            * int(opts["bits_allocated"]) / 8 * len(frames))
    ratio = size / max(sum(len(frame) for frame in frames), 1)
    ratios = _values(ds, "LossyImageCompressionRatio") if earlier else []
    methods = _values(ds, "LossyImageCompressionMethod") if earlier else []
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = [*ratios, f"{ratio:.2f}"]
    ds.LossyImageCompressionMethod = [*methods, method]


def _values(ds: Dataset, keyword: str) -> list[Any]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue | list) else [value]


def _write(ds: Dataset, syntax: str) -> bytes:
    """The dataset as a DICOM file (PS3.10 §7.1) in ``syntax``; pydicom encodes (and
    deflates) per the file meta's Transfer Syntax UID."""
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta.TransferSyntaxUID = UID(syntax)
    for meta_kw, kw in (("MediaStorageSOPClassUID", "SOPClassUID"),
                        ("MediaStorageSOPInstanceUID", "SOPInstanceUID")):
        if not meta.get(meta_kw) and ds.get(kw):
            setattr(meta, meta_kw, ds.get(kw))
    ds.file_meta = meta
    # Parse every element now: pydicom may have read a body whose VR encoding
    # contradicts the declared syntax, and would then write its raw elements
    # unconverted (with no VR in explicit syntaxes).
    guard("read every element of the instance", lambda: sum(1 for _ in ds.iterall()))
    # Without SOP Class/Instance UIDs the file meta cannot be complete (PS3.10 §7.1):
    # such an instance is written with what it has rather than refused.
    complete = bool(meta.get("MediaStorageSOPClassUID") and meta.get("MediaStorageSOPInstanceUID"))
    if ds.preamble is None and not complete:
        ds.preamble = b"\0" * 128
    out = io.BytesIO()
    guard(f"write the instance as {syntax_name(syntax)}",
          lambda: pydicom.dcmwrite(out, ds, enforce_file_format=complete))
    return out.getvalue()


__all__ = ["LITTLE_ENDIAN_TARGETS", "NATIVE", "can_transcode", "native_frame_syntax_ok",
           "transcode", "transcode_dataset"]
