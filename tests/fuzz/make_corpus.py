"""Writes tests/data/corpus (run once by hand: ``python -m tests.fuzz.make_corpus``).

The files are committed; this script documents how each was made and rebuilds them.
Names starting with ``refused_`` must be answered 400 with nothing stored; every other
file must be answered below 500. See tests/data/corpus/README.md.
"""

from __future__ import annotations

import gzip
import struct
import zlib

from tests.api.data import ct, ct_bytes
from tests.conftest import dicom_bytes
from tests.fuzz.corpus import BOUNDARY, CORPUS
from tests.fuzz.dicom_mutations import before_pixel_data, deep_sequence, element

P = "1.2.826.0.1.3680043.10.543.77."  # every corpus UID starts with this
HUGE = 0xFFFFFFF0
B = BOUNDARY.encode()


def _ct(n: int, **kwargs: object) -> bytes:
    return ct_bytes(P + "1", P + "2", P + str(100 + n), patient="CORPUS^FILE", **kwargs)


def _deflated_bomb(inflated: int) -> bytes:
    """Deflated Explicit VR LE CT whose data set inflates to ``inflated`` bytes."""
    ds = ct(P + "1", P + "2", P + "199", patient="CORPUS^FILE")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    good = dicom_bytes(ds)
    meta_end = 144 + struct.unpack("<L", good[140:144])[0]
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    plain = dicom_bytes(ds)
    dataset = plain[144 + struct.unpack("<L", plain[140:144])[0]:]
    cut = dataset.rfind(b"\xe0\x7f\x10\x00")
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [good[:meta_end], deflater.compress(dataset[:cut] + element(0x00091010, b"OB", b"",
                                                                       inflated))]
    zeros = b"\x00" * (1 << 20)
    out += [deflater.compress(zeros) for _ in range(inflated >> 20)]
    out += [deflater.compress(dataset[cut:]), deflater.flush()]
    return b"".join(out)


def dicom_files() -> dict[str, bytes]:
    base = _ct(1)
    pixel = base.rfind(b"\xe0\x7f\x10\x00")
    jpeg = ct_bytes(P + "1", P + "2", P + "150")  # encapsulated below
    files = {
        "refused_deep_sequence_undefined_10000.dcm.gz": before_pixel_data(
            _ct(2), deep_sequence(10000)),
        "refused_deep_sequence_defined_10000.dcm.gz": before_pixel_data(
            _ct(3), deep_sequence(10000, defined=True)),
        "refused_deep_sequence_defined_300.dcm": before_pixel_data(
            _ct(4), deep_sequence(300, defined=True)),
        "refused_huge_length_pixel_data.dcm": base[:pixel] + element(
            0x7FE00010, b"OW", b"\x01" * 64, HUGE),
        "refused_huge_length_private_ob.dcm": before_pixel_data(
            _ct(5), element(0x00091010, b"OB", b"x" * 40, HUGE)),
        "refused_huge_length_ut.dcm": before_pixel_data(
            _ct(6), element(0x00324000, b"UT", b"x" * 40, HUGE)),
        "refused_huge_length_sequence.dcm": before_pixel_data(
            _ct(7), element(0x0040A730, b"SQ", b"x" * 40, HUGE)),
        "huge_length_item.dcm": before_pixel_data(
            _ct(8), element(0x0040A730, b"SQ", b"", 0xFFFFFFFF)
            + struct.pack("<HHL", 0xFFFE, 0xE000, HUGE) + b"x" * 40),
        "refused_100_bytes_4gb_length.dcm": (
            b"\x08\x00\x18\x00" + b"\xff\xff\xff\x7f" + b"1" * 92),
        "refused_truncated_in_meta.dcm": base[:150],
        "refused_truncated_in_element_header.dcm": base[:base.find(b"\x10\x00\x10\x00") + 5],
        "refused_truncated_in_value.dcm": base[:base.find(b"\x20\x00\x0d\x00") + 20],
        "refused_truncated_in_pixel_data.dcm": base[:-7],
        "truncated_encapsulated_pixel_data.dcm": _encapsulated(jpeg)[:-30],
        "absurd_vr_nul.dcm": before_pixel_data(
            _ct(9), struct.pack("<HH", 0x0009, 0x1010) + b"\x00\x00" + b"\x04\x00abcd"),
        "absurd_vr_zz.dcm": before_pixel_data(
            _ct(10), struct.pack("<HH", 0x0009, 0x1010) + b"ZZ" + b"\x04\x00abcd"),
        "refused_deflate_bomb_1gb.dcm.gz": _deflated_bomb(1 << 30),
        "not_dicom.dcm": b"GIF89a" + bytes(range(256)) * 2,
        "empty.dcm": b"",
    }
    return files


def _encapsulated(data: bytes) -> bytes:
    """The CT with its PixelData as encapsulated fragments (JPEG Baseline syntax)."""
    pixel = data.rfind(b"\xe0\x7f\x10\x00")
    data = data.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.4.50")
    fragment = b"\xff\xd8\xff\xdb" + b"\x00" * 60 + b"\xff\xd9"
    pixels = (element(0x7FE00010, b"OB", b"", 0xFFFFFFFF)
              + struct.pack("<HHL", 0xFFFE, 0xE000, 0)
              + struct.pack("<HHL", 0xFFFE, 0xE000, len(fragment)) + fragment
              + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))
    return data[:pixel] + pixels


def _part(headers: bytes, body: bytes) -> bytes:
    return b"--" + B + b"\r\n" + headers + b"\r\n" + body + b"\r\n"


CLOSE = b"--" + B + b"--\r\n"
DICOM = b"Content-Type: application/dicom\r\n"


def multipart_bodies() -> dict[str, bytes]:
    good = _ct(20)
    return {
        "unterminated_headers.multipart.gz": b"--" + B + b"\r\n" + b"X-Filler: a\r\n" * 2000,
        "huge_header_line.multipart.gz": b"--" + B + b"\r\nX-Filler: " + b"a" * (1 << 20)
        + b"\r\n\r\n" + good + b"\r\n" + CLOSE,
        "no_close_delimiter.multipart": _part(DICOM, good),
        "only_preamble.multipart": b"preamble without any boundary\r\n" * 10,
        "empty_body.multipart": b"",
        "close_only.multipart": CLOSE,
        "lookalike_delimiters.multipart": _part(DICOM, good + (b"\r\n--" + B + b"X") * 50)
        + CLOSE,
        "excessive_padding.multipart": b"--" + B + b" " * 5000 + b"\r\n" + DICOM + b"\r\n"
        + good + b"\r\n" + CLOSE,
        "continuation_first.multipart": _part(b" folded first\r\n" + DICOM, good) + CLOSE,
        "header_without_colon.multipart": _part(b"no colon here\r\n", good) + CLOSE,
        "nul_in_headers.multipart": _part(b"Content-Type: application/dicom\x00; x=\x00\r\n",
                                          good) + CLOSE,
        "first_part_not_dicom.multipart": _part(b"Content-Type: text/plain\r\n", b"hello")
        + _part(DICOM, good) + CLOSE,
        "second_part_not_dicom.multipart": _part(DICOM, _ct(21))
        + _part(b"Content-Type: text/plain\r\n", b"hello") + CLOSE,
        "nested_multipart.multipart": _part(
            b"Content-Type: multipart/related; boundary=inner\r\n",
            b"--inner\r\n\r\n" + good + b"\r\n--inner--") + CLOSE,
        "truncated_after_a_part.multipart": _part(DICOM, _ct(22)) + _part(DICOM, good)[:300],
        "lf_only.multipart": (b"--" + B + b"\nContent-Type: application/dicom\n\n" + _ct(23)
                              + b"\r\n--" + B + b"--\n"),
        "many_empty_parts.multipart.gz": _part(DICOM, b"") * 500 + CLOSE,
        "boundary_in_dicom_value.multipart": _part(DICOM, before_pixel_data(
            _ct(24), element(0x00091010, b"OB", b"\r\n--" + B + b"\r\n"))) + CLOSE,
    }


def main() -> None:
    for name, data in {**dicom_files(), **multipart_bodies()}.items():
        path = CORPUS / name
        path.write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
        print(f"{path.stat().st_size:>8} {name}")


if __name__ == "__main__":
    main()
