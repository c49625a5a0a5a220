"""Building blocks for hostile DICOM files: element encoders, deep sequences and a
hypothesis strategy mutating real files (bit flips, truncations, huge length fields,
absurd VRs, spliced nesting)."""

from __future__ import annotations

import re
import struct
from functools import cache
from pathlib import Path

from hypothesis import strategies as st

from tests.api.data import ct_bytes

PREFIX = "1.2.826.0.1.3680043.10.543.99."  # UIDs of generated seeds
HUGE_LENGTHS = [0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFF0, 0x80000000, 0x7FFFFFFF, 0x10000001, 0xFFFF,
                0xFFFE, 0x8001, 0, 1, 3]
ABSURD_VRS = [b"\x00\x00", b"ZZ", b"  ", b"xx", b"UN", b"SQ", b"OB", b"OW", b"UT", b"UC",
              b"AT", b"FD", b"US", b"PN", b"\xff\xff", b"DS", b"IS"]
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}
_VR = re.compile(rb"(?=[A-Z]{2})")
_KNOWN_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO",
              b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"} | _LONG_VRS


def element(tag: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    """An Explicit VR Little Endian element; ``length`` overrides the value's."""
    size = len(value) if length is None else length
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr, 0, size) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, size & 0xFFFF) + value


ITEM = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
ITEM_END = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
SEQUENCE_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def deep_sequence(depth: int, *, defined: bool = False, tag: int = 0x0040A730) -> bytes:
    """``depth`` sequences each holding one item holding the next (Explicit VR LE)."""
    inner = b""
    for _ in range(depth):
        if defined:
            item = struct.pack("<HHL", 0xFFFE, 0xE000, len(inner)) + inner
            inner = element(tag, b"SQ", item)
        else:
            inner = (element(tag, b"SQ", b"", 0xFFFFFFFF) + ITEM + inner + ITEM_END
                     + SEQUENCE_END)
    return inner


def before_pixel_data(data: bytes, insert: bytes) -> bytes:
    """``insert`` spliced in just before PixelData (tags stay ascending for 0040,A730)."""
    at = data.rfind(b"\xe0\x7f\x10\x00")
    return data[:at] + insert + data[at:]


@cache
def seeds() -> tuple[bytes, ...]:
    """Small valid files: generated CTs and pydicom's small bundled files."""
    import pydicom.data

    folder = Path(pydicom.data.__file__).parent / "test_files"
    bundled = [p.read_bytes() for p in sorted(folder.glob("*.dcm"))
               if p.stat().st_size <= 16384]
    generated = [ct_bytes(PREFIX + "1", PREFIX + "2", PREFIX + "3"),
                 ct_bytes(PREFIX + "1", PREFIX + "2", PREFIX + "4", frames=3, rows=2,
                          columns=2)]
    return tuple(generated + bundled)


def element_headers(data: bytes) -> list[int]:
    """Offsets of what look like Explicit VR element headers (tag, then a known VR)."""
    return [m.start() - 4 for m in _VR.finditer(data, 4)
            if data[m.start():m.start() + 2] in _KNOWN_VRS and (m.start() - 4) % 2 == 0]


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    headers = element_headers(bytes(data))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "length", "vr", "word", "splice",
                                     "nest", "delete"]))
        if kind == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif kind in ("length", "vr") and headers:
            at = draw(st.sampled_from(headers))
            if at + 12 > len(data):
                continue
            vr = bytes(data[at + 4:at + 6])
            if kind == "vr":
                data[at + 4:at + 6] = draw(st.sampled_from(ABSURD_VRS))
            elif vr in _LONG_VRS:
                data[at + 8:at + 12] = struct.pack("<L", draw(st.sampled_from(HUGE_LENGTHS)))
            else:
                data[at + 6:at + 8] = struct.pack("<H", draw(st.sampled_from(HUGE_LENGTHS))
                                                  & 0xFFFF)
        elif kind == "word" and len(data) >= 4:
            at = draw(st.integers(0, len(data) - 4))
            data[at:at + 4] = struct.pack("<L", draw(st.sampled_from(HUGE_LENGTHS)))
        elif kind == "splice" and data:
            a = draw(st.integers(0, len(data)))
            b = draw(st.integers(a, min(len(data), a + 64)))
            at = draw(st.integers(0, len(data)))
            data[at:at] = data[a:b]
        elif kind == "nest":
            depth = draw(st.sampled_from([1, 2, 50, 400]))
            nested = deep_sequence(depth, defined=draw(st.booleans()))
            at = draw(st.sampled_from(headers)) if headers else len(data)
            data[at:at] = nested
        elif kind == "delete" and data:
            at = draw(st.integers(0, len(data) - 1))
            del data[at:at + draw(st.integers(1, 16))]
    return bytes(data)
