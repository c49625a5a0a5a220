"""Transfer syntax conversion, one instance at a time (PS3.18 §8.7.3.5).

This slice converts between the uncompressed syntaxes pydicom writes natively;
anything that would need pixel decompression is refused up front (406), never
answered wrongly.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import pydicom
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

NATIVE = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                    DeflatedExplicitVRLittleEndian})
LITTLE_ENDIAN_TARGETS = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian})


def can_transcode(source: str, target: str) -> bool:
    """Whether an instance stored as ``source`` can be answered as ``target``."""
    if target in ("*", source):
        return True
    return source in NATIVE and target in LITTLE_ENDIAN_TARGETS and source != ExplicitVRBigEndian


def transcode(f: BinaryIO, target: str) -> bytes:
    """Rewrite a native instance in another little-endian native syntax."""
    ds = pydicom.dcmread(f, force=True)
    ds.file_meta.TransferSyntaxUID = target
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True, implicit_vr=target == ImplicitVRLittleEndian,
               little_endian=True)
    return out.getvalue()


def native_frame_syntax_ok(source: str, target: str) -> bool:
    """A native frame is the same bytes in explicit and implicit little endian."""
    return target == source or (source in LITTLE_ENDIAN_TARGETS and target in
                                LITTLE_ENDIAN_TARGETS)


__all__ = ["ExplicitVRLittleEndian", "can_transcode", "native_frame_syntax_ok", "transcode"]
