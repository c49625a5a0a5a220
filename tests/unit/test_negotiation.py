"""Unit tests for app.dicom.negotiation (PS3.18 §8.7 Accept negotiation)."""

from __future__ import annotations

import pytest

from app.dicom import negotiation as neg
from app.dicom.negotiation import MediaRange
from app.errors import BadRequest, NotAcceptable

ELE = "1.2.840.10008.1.2.1"
ILE = "1.2.840.10008.1.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_SV1 = "1.2.840.10008.1.2.4.70"
J2K = "1.2.840.10008.1.2.4.91"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
RLE = "1.2.840.10008.1.2.5"
JLS = "1.2.840.10008.1.2.4.80"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"

# Exact headers from viewers.md.
OHIF_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"
OHIF_FRAMES_STRICT = 'multipart/related; type="application/octet-stream"; transfer-syntax="*"'
OHIF_METADATA = "application/dicom+json"
OHIF_METADATA_ORTHANC_ISSUE = (
    "application/dicom+json, multipart/related; type=application/octet-stream; transfer-syntax=*"
)
BROWSER_216 = "text/html, image/gif, image/jpeg, */*; q=.2, */*; q=.2"
JAVA_DEFAULT = "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"
CHROME_IMAGE = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
CHROME_PAGE = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)


def anything(stored: str, target: str) -> bool:
    return True


def only_stored(stored: str, target: str) -> bool:
    return stored == target


# --------------------------------------------------------------------------- #
# parse_accept
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, []),
        ("", []),
        ("  ,  , ", []),
        ("application/dicom+json", [MediaRange("application", "dicom+json", {}, 1.0)]),
        (
            "Application/DICOM+JSON; Q=0.5, */*;q=.2",
            [
                MediaRange("application", "dicom+json", {}, 0.5),
                MediaRange("*", "*", {}, 0.2),
            ],
        ),
        ("*; q=.2", [MediaRange("*", "*", {}, 0.2)]),
        ("toto", [MediaRange("toto", "", {}, 1.0)]),
        (
            OHIF_FRAMES,
            [
                MediaRange(
                    "multipart",
                    "related",
                    {"type": "application/octet-stream", "transfer-syntax": "*"},
                    1.0,
                )
            ],
        ),
        (
            'multipart/related; type="application/octet-stream; transfer-syntax=*", a/b;q=1',
            [
                MediaRange(
                    "multipart",
                    "related",
                    {"type": "application/octet-stream; transfer-syntax=*"},
                    1.0,
                ),
                MediaRange("a", "b", {}, 1.0),
            ],
        ),
        ('a/b; x="1,2;3"; q=0', [MediaRange("a", "b", {"x": "1,2;3"}, 0.0)]),
        (
            "a/b;q=1.000, c/d;q=0.001",
            [MediaRange("a", "b", {}, 1.0), MediaRange("c", "d", {}, 0.001)],
        ),
    ],
)
def test_parse_accept(header: str | None, expected: list[MediaRange]) -> None:
    assert neg.parse_accept(header) == expected


@pytest.mark.parametrize("q", ["abc", "1.5", "-0.1", "", "nan", "inf", "2"])
def test_parse_accept_bad_q(q: str) -> None:
    with pytest.raises(BadRequest) as error:
        neg.parse_accept(f"application/json, a/b; q={q}")
    assert f"q={q!r}" in error.value.message


def test_parse_accept_malformed_parameter() -> None:
    with pytest.raises(BadRequest):
        neg.parse_accept("a/b; nonsense")


def test_media_range_matches() -> None:
    assert MediaRange("*", "*", {}).matches("multipart/related")
    assert MediaRange("multipart", "*", {}).matches("multipart/related")
    assert MediaRange("multipart", "related", {}).matches("multipart/related")
    assert not MediaRange("multipart", "mixed", {}).matches("multipart/related")
    assert not MediaRange("*", "related", {}).matches("multipart/related")
    assert MediaRange("a", "b", {}).media_type == "a/b"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (ELE, True),
        ("0", True),
        ("1.0.2", True),
        ("1.02", False),
        ("1..2", False),
        ("1.2.", False),
        ("", False),
        ("a.b", False),
        ("1." + "1" * 62, True),
        ("1." + "1" * 63, False),
    ],
)
def test_is_valid_uid(value: str, valid: bool) -> None:
    assert neg.is_valid_uid(value) is valid


# --------------------------------------------------------------------------- #
# negotiate_dicom (WADO-RS study/series/instance)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, ELE),
        ("", ELE),
        ("multipart/related", ELE),
        ('multipart/related; type="application/dicom"', ELE),
        ("multipart/related; type=Application/DICOM", ELE),
        ("multipart/related; type=application/dicom; transfer-syntax=*", "*"),
        ('multipart/related; type="application/dicom"; transfer-syntax="*"', "*"),
        (f"multipart/related; type=application/dicom; transfer-syntax={ILE}", ILE),
        (
            f'multipart/related; type="application/dicom; transfer-syntax={JPEG_BASELINE}"',
            JPEG_BASELINE,
        ),
        ("multipart/*", ELE),
        ("*/*", ELE),
        ("*/*; transfer-syntax=*", "*"),
        (BROWSER_216, ELE),
        # q ordering, ties keep header order, q=0 ignored
        (
            f"multipart/related; transfer-syntax={ILE}; q=0.5, "
            "multipart/related; transfer-syntax=*",
            "*",
        ),
        (
            f"multipart/related; transfer-syntax={ILE}, multipart/related; transfer-syntax=*",
            ILE,
        ),
        ("multipart/related; transfer-syntax=*; q=0, multipart/related; q=0.1", ELE),
        # an unusable type makes the range unusable, the next one wins
        (
            "multipart/related; type=application/octet-stream, "
            "multipart/related; type=application/dicom; transfer-syntax=*; q=0.3",
            "*",
        ),
        ('nope, multipart/related; type="application/dicom"; q=0.1', ELE),
    ],
)
def test_negotiate_dicom(accept: str | None, expected: str) -> None:
    assert neg.negotiate_dicom(accept) == expected


@pytest.mark.parametrize(
    "accept",
    [
        "application/dicom",
        "nope",
        "multipart/nope",
        "multipart/related; type=application/octet-stream",
        "multipart/related; type=application/dicom+json",
        "multipart/related; q=0",
        OHIF_METADATA,
    ],
)
def test_negotiate_dicom_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable) as error:
        neg.negotiate_dicom(accept)
    assert error.value.status == 406
    assert "Accept" in error.value.message and accept in error.value.message


@pytest.mark.parametrize(
    "accept",
    [
        "multipart/related; type=application/dicom; transfer-syntax=1.2.abc",
        "multipart/related; transfer-syntax=",
        "multipart/related; transfer-syntax=01.2",
        f'multipart/related; type="application/dicom; transfer-syntax={ILE}"; '
        f"transfer-syntax={ELE}",
        "multipart/related; q=x",
    ],
)
def test_negotiate_dicom_bad_request(accept: str) -> None:
    with pytest.raises(BadRequest):
        neg.negotiate_dicom(accept)


def test_not_acceptable_message_truncates_long_headers() -> None:
    with pytest.raises(NotAcceptable) as error:
        neg.negotiate_dicom("x/" + "y" * 1000)
    assert len(error.value.message) < 400


# --------------------------------------------------------------------------- #
# negotiate_metadata
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "json"),
        ("", "json"),
        (OHIF_METADATA, "json"),
        ("application/json", "json"),
        ("APPLICATION/DICOM+JSON; charset=utf-8", "json"),
        ("*/*", "json"),
        ("application/*", "json"),
        ("toto, application/dicom+json", "json"),
        (BROWSER_216, "json"),
        (JAVA_DEFAULT, "json"),
        (OHIF_METADATA_ORTHANC_ISSUE, "json"),
        ('multipart/related; type="application/dicom+xml"', "xml"),
        ("multipart/related; type=application/dicom+xml", "xml"),
        ("multipart/related; type=Application/Dicom+XML", "xml"),
        ('multipart/*; type="application/dicom+xml"', "xml"),
        ('multipart/related; type="application/dicom+xml", application/dicom+json', "xml"),
        ('application/dicom+json, multipart/related; type="application/dicom+xml"', "json"),
        ('application/dicom+json; q=0.5, multipart/related; type="application/dicom+xml"', "xml"),
        ('multipart/related; type="application/dicom+xml"; q=0.9, */*', "json"),
        ("multipart/related; type=application/octet-stream, application/json", "json"),
        ("multipart/*, application/json; q=0.1", "json"),
        ("application/dicom+xml, application/json", "json"),
        ("application/dicom+json; q=0, application/json", "json"),
    ],
)
def test_negotiate_metadata(accept: str | None, expected: str) -> None:
    assert neg.negotiate_metadata(accept) == expected


@pytest.mark.parametrize(
    "accept",
    [
        "multipart/related",
        "multipart/related, application/dicom+json",
        "application/dicom+json; q=0.5, multipart/related",
    ],
)
def test_negotiate_metadata_missing_type(accept: str) -> None:
    with pytest.raises(BadRequest, match="Missing type"):
        neg.negotiate_metadata(accept)


@pytest.mark.parametrize(
    "accept",
    [
        "toto",
        "application/dicom",
        "application/dicom+xml",
        "text/html",
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
        "multipart/nope",
        "application/dicom+json; q=0",
    ],
)
def test_negotiate_metadata_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        neg.negotiate_metadata(accept)


def test_negotiate_metadata_bad_q() -> None:
    with pytest.raises(BadRequest):
        neg.negotiate_metadata("application/dicom+json; q=7")


# --------------------------------------------------------------------------- #
# negotiate_search (QIDO-RS, STOW-RS responses)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "json"),
        ("", "json"),
        (OHIF_METADATA, "json"),
        ("application/json", "json"),
        ("*/*", "json"),
        ("application/*", "json"),
        ("application/dicom+xml", "xml"),
        ("application/xml", "xml"),
        ("text/xml", "xml"),
        ("TEXT/XML; charset=utf-8", "xml"),
        ('multipart/related; type="application/dicom+xml"', "xml"),
        ("multipart/related; type=application/dicom+xml", "xml"),
        ("text/html, application/xml", "json"),
        ("application/xml, application/json", "xml"),
        ("application/xml; q=0.5, application/json", "json"),
        ("application/xml; q=0, application/dicom+xml; q=0", "json"),
        ("nope", "json"),
        ("text/html", "json"),
        ("multipart/related; type=application/dicom", "json"),
        (BROWSER_216, "json"),
        (CHROME_PAGE, "json"),
        # malformed headers are tolerated
        ("application/xml; q=abc", "json"),
        ("application/xml; broken", "json"),
        ('multipart/related; type="application/dicom+xml', "json"),
    ],
)
def test_negotiate_search(accept: str | None, expected: str) -> None:
    assert neg.negotiate_search(accept) == expected


# --------------------------------------------------------------------------- #
# media_type_for_syntax and negotiate_frames
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("syntax", "media_type"),
    [
        (ILE, "application/octet-stream"),
        (ELE, "application/octet-stream"),
        ("1.2.840.10008.1.2.2", "application/octet-stream"),
        ("1.2.840.10008.1.2.1.99", "application/octet-stream"),
        (JPEG_BASELINE, "image/jpeg"),
        ("1.2.840.10008.1.2.4.51", "image/jpeg"),
        ("1.2.840.10008.1.2.4.57", "image/jpeg"),
        (JPEG_SV1, "image/jpeg"),
        (RLE, "image/dicom-rle"),
        (JLS, "image/jls"),
        ("1.2.840.10008.1.2.4.81", "image/jls"),
        (J2K_LOSSLESS, "image/jp2"),
        (J2K, "image/jp2"),
        ("1.2.840.10008.1.2.4.92", "image/jpx"),
        ("1.2.840.10008.1.2.4.93", "image/jpx"),
        ("1.2.840.10008.1.2.4.110", "image/jxl"),
        ("1.2.840.10008.1.2.4.111", "image/jxl"),
        ("1.2.840.10008.1.2.4.112", "image/jxl"),
        (HTJ2K_LOSSLESS, "image/jphc"),
        ("1.2.840.10008.1.2.4.202", "image/jphc"),
        ("1.2.840.10008.1.2.4.203", "image/jphc"),
        ("1.2.840.10008.1.2.4.100", "video/mpeg"),
        ("1.2.840.10008.1.2.4.101.1", "video/mpeg"),
        ("1.2.840.10008.1.2.4.102", "video/mp4"),
        ("1.2.840.10008.1.2.4.107", "video/mp4"),
        ("1.2.3.4", "application/octet-stream"),
    ],
)
def test_media_type_for_syntax(syntax: str, media_type: str) -> None:
    assert neg.media_type_for_syntax(syntax) == media_type


@pytest.mark.parametrize(
    ("accept", "stored", "expected"),
    [
        # no Accept / */*: octet-stream, Explicit VR LE (transcodes compressed data)
        (None, JPEG_BASELINE, ("application/octet-stream", ELE)),
        ("", ILE, ("application/octet-stream", ELE)),
        ("*/*", J2K, ("application/octet-stream", ELE)),
        ("multipart/related", ILE, ("application/octet-stream", ELE)),
        ("multipart/*", ILE, ("application/octet-stream", ELE)),
        # OHIF, both quoting styles: as stored, labelled with the stored type
        (OHIF_FRAMES, JPEG_BASELINE, ("image/jpeg", JPEG_BASELINE)),
        (OHIF_FRAMES_STRICT, JPEG_BASELINE, ("image/jpeg", JPEG_BASELINE)),
        (OHIF_FRAMES, ELE, ("application/octet-stream", ELE)),
        (OHIF_FRAMES, ILE, ("application/octet-stream", ILE)),
        (OHIF_FRAMES_STRICT, RLE, ("image/dicom-rle", RLE)),
        (OHIF_FRAMES, J2K_LOSSLESS, ("image/jp2", J2K_LOSSLESS)),
        (OHIF_FRAMES, HTJ2K_LOSSLESS, ("image/jphc", HTJ2K_LOSSLESS)),
        # the transfer syntax inside a quoted type, as Orthanc's Content-Type writes it
        (
            'multipart/related; type="application/octet-stream; transfer-syntax=*"',
            J2K,
            ("image/jp2", J2K),
        ),
        # octet-stream with an explicit UID
        (
            "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
            JPEG_BASELINE,
            ("application/octet-stream", ELE),
        ),
        (
            f"multipart/related; type=application/octet-stream; transfer-syntax={JPEG_BASELINE}",
            ELE,
            ("image/jpeg", JPEG_BASELINE),
        ),
        # image types: default, accepted, aliases, "*"
        ("multipart/related; type=image/jpeg", ELE, ("image/jpeg", JPEG_SV1)),
        ('multipart/related; type="image/jpeg"', JPEG_BASELINE, ("image/jpeg", JPEG_SV1)),
        (
            f"multipart/related; type=image/jpeg; transfer-syntax={JPEG_BASELINE}",
            ELE,
            ("image/jpeg", JPEG_BASELINE),
        ),
        (
            "multipart/related; type=image/jpeg; transfer-syntax=*",
            JPEG_BASELINE,
            ("image/jpeg", JPEG_BASELINE),
        ),
        ("multipart/related; type=image/jpeg; transfer-syntax=*", ELE, ("image/jpeg", JPEG_SV1)),
        ("multipart/related; type=image/dicom-rle", ELE, ("image/dicom-rle", RLE)),
        ("multipart/related; type=image/x-dicom-rle", ELE, ("image/dicom-rle", RLE)),
        ("multipart/related; type=image/jls", ELE, ("image/jls", JLS)),
        ("multipart/related; type=image/x-jls", ELE, ("image/jls", JLS)),
        (
            "multipart/related; type=image/x-jls; transfer-syntax=1.2.840.10008.1.2.4.81",
            ELE,
            ("image/jls", "1.2.840.10008.1.2.4.81"),
        ),
        ("multipart/related; type=image/jp2", ELE, ("image/jp2", J2K_LOSSLESS)),
        (
            f"multipart/related; type=image/jp2; transfer-syntax={J2K}",
            ELE,
            ("image/jp2", J2K),
        ),
        ("multipart/related; type=image/jpx", ELE, ("image/jpx", "1.2.840.10008.1.2.4.92")),
        (
            "multipart/related; type=image/jpx; transfer-syntax=1.2.840.10008.1.2.4.93",
            ELE,
            ("image/jpx", "1.2.840.10008.1.2.4.93"),
        ),
        ("multipart/related; type=image/jphc", ELE, ("image/jphc", HTJ2K_LOSSLESS)),
        (
            "multipart/related; type=image/jphc; transfer-syntax=1.2.840.10008.1.2.4.203",
            ELE,
            ("image/jphc", "1.2.840.10008.1.2.4.203"),
        ),
        ("multipart/related; type=IMAGE/JPEG", ELE, ("image/jpeg", JPEG_SV1)),
        # several ranges: q order, ties in header order, q=0 ignored
        (
            "multipart/related; type=image/jp2; q=0.5, multipart/related; type=image/jpeg",
            ELE,
            ("image/jpeg", JPEG_SV1),
        ),
        (
            "multipart/related; type=image/jp2, multipart/related; type=image/jpeg",
            ELE,
            ("image/jp2", J2K_LOSSLESS),
        ),
        (
            "multipart/related; type=image/jp2; q=0, multipart/related; type=image/jpeg; q=0.1",
            ELE,
            ("image/jpeg", JPEG_SV1),
        ),
        # unusable ranges (bare types, unknown types, incompatible syntaxes) are skipped
        (
            "image/jpeg, application/octet-stream, multipart/related; type=image/png, "
            f"multipart/related; type=image/jpeg; transfer-syntax={J2K}, {OHIF_FRAMES}",
            RLE,
            ("image/dicom-rle", RLE),
        ),
        (f"text/html, {OHIF_FRAMES_STRICT}", ILE, ("application/octet-stream", ILE)),
    ],
)
def test_negotiate_frames(accept: str | None, stored: str, expected: tuple[str, str]) -> None:
    assert neg.negotiate_frames(accept, stored, anything) == expected


def test_negotiate_frames_skips_what_cannot_be_produced() -> None:
    accept = f"multipart/related; type=image/jp2, {OHIF_FRAMES}; q=0.5"
    assert neg.negotiate_frames(accept, JPEG_BASELINE, only_stored) == (
        "image/jpeg",
        JPEG_BASELINE,
    )
    calls: list[tuple[str, str]] = []

    def record(stored: str, target: str) -> bool:
        calls.append((stored, target))
        return stored == target

    neg.negotiate_frames(accept, JPEG_BASELINE, record)
    assert calls == [(JPEG_BASELINE, J2K_LOSSLESS), (JPEG_BASELINE, JPEG_BASELINE)]


@pytest.mark.parametrize(
    ("accept", "stored"),
    [
        (None, JPEG_BASELINE),  # default ELE, but decoding is impossible here
        ("*/*", J2K),
        ("multipart/related; type=image/jpeg", JPEG_BASELINE),  # default .4.70 needs transcoding
    ],
)
def test_negotiate_frames_not_producible(accept: str | None, stored: str) -> None:
    with pytest.raises(NotAcceptable):
        neg.negotiate_frames(accept, stored, only_stored)


@pytest.mark.parametrize(
    "accept",
    [
        "image/jpeg",
        "application/octet-stream",
        "application/dicom",
        "multipart/related; type=image/png",
        "multipart/related; type=application/dicom",
        f"multipart/related; type=image/jpeg; transfer-syntax={J2K}",
        f"multipart/related; type=image/jp2; transfer-syntax={JPEG_BASELINE}",
        "multipart/related; type=image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.1",
        "multipart/mixed",
        f"{OHIF_FRAMES}; q=0",
    ],
)
def test_negotiate_frames_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable) as error:
        neg.negotiate_frames(accept, ELE, anything)
    assert error.value.status == 406


@pytest.mark.parametrize(
    "accept",
    [
        "multipart/related; type=application/octet-stream; transfer-syntax",
        "multipart/related; type=application/octet-stream; transfer-syntax=1.2.x",
        "multipart/related; type=image/jpeg; transfer-syntax=jpeg",
        'multipart/related; type="application/octet-stream',
        "multipart/related; q=high",
        'multipart/related; type="application/octet-stream; transfer-syntax=*"; '
        "transfer-syntax=1.2.840.10008.1.2.1",
    ],
)
def test_negotiate_frames_bad_request(accept: str) -> None:
    with pytest.raises(BadRequest):
        neg.negotiate_frames(accept, ELE, anything)


# --------------------------------------------------------------------------- #
# negotiate_bulk
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "*/*",
        "multipart/related",
        "multipart/*",
        "multipart/related; type=application/octet-stream",
        'multipart/related; type=" Application/Octet-Stream "',
        OHIF_FRAMES,
        OHIF_FRAMES_STRICT,
        "application/dicom+json, multipart/related; type=application/octet-stream; q=0.1",
        BROWSER_216,
    ],
)
def test_negotiate_bulk_ok(accept: str | None) -> None:
    assert neg.negotiate_bulk(accept) is None


@pytest.mark.parametrize(
    "accept",
    [
        "multipart/nope",
        "application/octet-stream",
        "multipart/related; type=image/jpeg",
        "multipart/related; type=application/octet-stream; range=0-10",
        "multipart/related; q=0",
        "application/dicom+json",
    ],
)
def test_negotiate_bulk_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        neg.negotiate_bulk(accept)


# --------------------------------------------------------------------------- #
# negotiate_rendered
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("accept", "query", "expected"),
    [
        (None, None, "image/jpeg"),
        ("", None, "image/jpeg"),
        ("*/*", None, "image/jpeg"),
        ("image/*", None, "image/jpeg"),
        ("image/jpeg", None, "image/jpeg"),
        ("image/jpg", None, "image/jpeg"),
        ("image/png", None, "image/png"),
        ("image/gif", None, "image/gif"),
        ("IMAGE/PNG", None, "image/png"),
        ("image/png, */*", None, "image/png"),
        ("image/png; q=0.5, image/gif", None, "image/gif"),
        ("image/png; q=0, */*", None, "image/jpeg"),
        ("image/webp, image/png; q=0.9, image/jpeg; q=0.8", None, "image/png"),
        (CHROME_IMAGE, None, "image/jpeg"),
        (CHROME_PAGE, None, "image/jpeg"),
        (BROWSER_216, None, "image/gif"),
        # OHIF: `?accept=image%2Fjpeg` with `Accept: */*`; the query parameter wins
        ("*/*", "image/jpeg", "image/jpeg"),
        ("image/png", "image/jpeg", "image/jpeg"),
        ("image/jpeg", "image/png", "image/png"),
        ("text/html", "image/gif, image/png", "image/gif"),
        ("image/png", "", "image/png"),
        ("image/png", "  ", "image/png"),
    ],
)
def test_negotiate_rendered(accept: str | None, query: str | None, expected: str) -> None:
    assert neg.negotiate_rendered(accept, query) == expected


@pytest.mark.parametrize(
    ("accept", "query"),
    [
        ("image/webp", None),
        ("application/dicom", None),
        ("text/html", None),
        ("image/jpeg; q=0", None),
        ("*/*", "image/webp"),
        ("image/jpeg", "text/html"),
    ],
)
def test_negotiate_rendered_not_acceptable(accept: str, query: str | None) -> None:
    with pytest.raises(NotAcceptable):
        neg.negotiate_rendered(accept, query)


def test_negotiate_rendered_bad_q() -> None:
    with pytest.raises(BadRequest):
        neg.negotiate_rendered("image/png; q=high")


# --------------------------------------------------------------------------- #
# constants
# --------------------------------------------------------------------------- #


def test_transfer_syntax_constants() -> None:
    assert neg.ExplicitVRLittleEndian == ELE
    assert neg.ImplicitVRLittleEndian == ILE
    assert neg.JPEGBaseline8Bit == JPEG_BASELINE
    assert neg.JPEGLosslessSV1 == JPEG_SV1
    assert neg.RLELossless == RLE
    assert neg.JPEGXLLossless == "1.2.840.10008.1.2.4.110"
    assert neg.AS_STORED == "*"
