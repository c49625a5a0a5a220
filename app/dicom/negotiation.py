"""Accept header negotiation for DICOMweb (PS3.18 §8.7).

Each ``negotiate_*`` function takes the raw ``Accept`` header (``None`` when
absent) and returns what the route must produce, or raises
:class:`~app.errors.NotAcceptable` (406, PS3.18 §8.7.5) when nothing in the
header can be served and :class:`~app.errors.BadRequest` when the header is
malformed. Media ranges are tried in decreasing ``q`` order, ties keeping
header order, and ranges with ``q=0`` are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.uid import (
    HEVCM10P51,
    HEVCMP51,
    HTJ2K,
    JPEG2000,
    JPEG2000MC,
    MPEG2MPHL,
    MPEG2MPHLF,
    MPEG2MPML,
    MPEG2MPMLF,
    MPEG4HP41,
    MPEG4HP41BD,
    MPEG4HP41BDF,
    MPEG4HP41F,
    MPEG4HP42STEREO,
    MPEG4HP42STEREOF,
    MPEG4HP422D,
    MPEG4HP422DF,
    MPEG4HP423D,
    MPEG4HP423DF,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from app.dicom.media_types import parse_content_type, split_outside_quotes
from app.errors import BadRequest, NotAcceptable

__all__ = [
    "AS_STORED",
    "DeflatedExplicitVRLittleEndian",
    "ExplicitVRBigEndian",
    "ExplicitVRLittleEndian",
    "HTJ2K",
    "HTJ2KLossless",
    "HTJ2KLosslessRPCL",
    "ImplicitVRLittleEndian",
    "JPEG2000",
    "JPEG2000Lossless",
    "JPEG2000MC",
    "JPEG2000MCLossless",
    "JPEGBaseline8Bit",
    "JPEGExtended12Bit",
    "JPEGLossless",
    "JPEGLosslessSV1",
    "JPEGLSLossless",
    "JPEGLSNearLossless",
    "JPEGXL",
    "JPEGXLJPEGRecompression",
    "JPEGXLLossless",
    "MediaRange",
    "RLELossless",
    "is_valid_uid",
    "media_type_for_syntax",
    "negotiate_bulk",
    "negotiate_dicom",
    "negotiate_frames",
    "negotiate_metadata",
    "negotiate_rendered",
    "negotiate_search",
    "parse_accept",
]

# JPEG XL (PS3.5 2023+) is not named in pydicom 3.0.
JPEGXLLossless = "1.2.840.10008.1.2.4.110"
JPEGXLJPEGRecompression = "1.2.840.10008.1.2.4.111"
JPEGXL = "1.2.840.10008.1.2.4.112"

AS_STORED = "*"
"""``transfer-syntax=*``: send the instance as stored (PS3.18 §8.7.3.5.2)."""

OCTET_STREAM = "application/octet-stream"

_UID_RE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_JSON_TYPES = ("application/dicom+json", "application/json")
_XML_TYPES = frozenset({"application/dicom+xml", "application/xml", "text/xml"})
_DICOM_XML = "application/dicom+xml"

# Single-frame media types of PS3.18 table 8.7.3-5 (2021a+): default syntax first.
_IMAGE_SYNTAXES: dict[str, tuple[str, ...]] = {
    "image/jpeg": (JPEGLosslessSV1, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless),
    "image/dicom-rle": (RLELossless,),
    "image/jls": (JPEGLSLossless, JPEGLSNearLossless),
    "image/jp2": (JPEG2000Lossless, JPEG2000),
    "image/jpx": (JPEG2000MCLossless, JPEG2000MC),
    "image/jxl": (JPEGXLLossless, JPEGXLJPEGRecompression, JPEGXL),
    "image/jphc": (HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K),
}
_MPEG2_SYNTAXES = (MPEG2MPML, MPEG2MPMLF, MPEG2MPHL, MPEG2MPHLF)
_MPEG4_SYNTAXES = (
    MPEG4HP41,
    MPEG4HP41F,
    MPEG4HP41BD,
    MPEG4HP41BDF,
    MPEG4HP422D,
    MPEG4HP422DF,
    MPEG4HP423D,
    MPEG4HP423DF,
    MPEG4HP42STEREO,
    MPEG4HP42STEREOF,
    HEVCMP51,
    HEVCM10P51,
)
_IMAGE_ALIASES = {"image/x-dicom-rle": "image/dicom-rle", "image/x-jls": "image/jls"}
_SYNTAX_MEDIA_TYPES: dict[str, str] = {
    **{ts: media for media, syntaxes in _IMAGE_SYNTAXES.items() for ts in syntaxes},
    **dict.fromkeys(_MPEG2_SYNTAXES, "video/mpeg"),
    **dict.fromkeys(_MPEG4_SYNTAXES, "video/mp4"),
}
_RENDERED_TYPES = {
    "image/jpeg": "image/jpeg",
    "image/jpg": "image/jpeg",
    "image/png": "image/png",
    "image/gif": "image/gif",
}


# --------------------------------------------------------------------------- #
# Parsing
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class MediaRange:
    """One media range of an Accept header (RFC 9110 §12.5.1, PS3.18 §8.7.1)."""

    type: str
    subtype: str
    params: dict[str, str]
    q: float = 1.0

    @property
    def media_type(self) -> str:
        """``type/subtype`` as written (lowercased)."""
        return f"{self.type}/{self.subtype}"

    def matches(self, media_type: str) -> bool:
        """True if this range covers ``media_type`` (``*/*``, ``type/*`` or exact)."""
        if self.type == "*":
            return self.subtype == "*"
        main, _, sub = media_type.partition("/")
        return self.type == main and self.subtype in ("*", sub)


def _parse_q(raw: str | None) -> float:
    """Quality value of RFC 9110 §12.4.2, leniently (``.2`` is accepted)."""
    if raw is None:
        return 1.0
    try:
        q = float(raw)
    except ValueError:
        q = -1.0
    if not 0.0 <= q <= 1.0:
        raise BadRequest(f"Invalid quality value q={raw!r} in Accept header")
    return q


def _parse_range(piece: str) -> MediaRange:
    media, params = parse_content_type(piece)
    q = _parse_q(params.pop("q", None))
    if media == "*":  # Java's default Accept sends "*; q=.2"
        media = "*/*"
    main, _, sub = media.partition("/")
    return MediaRange(main.strip(), sub.strip(), params, q)


def parse_accept(header: str | None) -> list[MediaRange]:
    """Parse an Accept header into media ranges, in header order (PS3.18 §8.7.1).

    Commas inside quoted parameter values do not split ranges. ``q`` defaults to
    1 and must be a number in 0..1, else :class:`BadRequest`. ``None`` or an
    empty header gives ``[]``.
    """
    if header is None:
        return []
    return [_parse_range(piece) for piece in split_outside_quotes(header, ",") if piece.strip()]


def _by_preference(ranges: list[MediaRange]) -> list[MediaRange]:
    """Ranges sorted by decreasing q (stable), without the refused ones (q=0)."""
    return sorted((r for r in ranges if r.q > 0), key=lambda r: -r.q)


def _negotiate(accept: str | None, pick: Callable[[MediaRange], str | None], default: str,
               expected: str) -> str:
    """``default`` without an Accept, else the preferred usable range, else 406."""
    ranges = parse_accept(accept)
    if not ranges:
        return default
    result = _best(ranges, pick)
    if result is None:
        raise _not_acceptable(accept, expected)
    return result


def _best(ranges: list[MediaRange], pick: Callable[[MediaRange], str | None]) -> str | None:
    """``pick`` of the most preferred range it accepts (q order, then header order)."""
    for media_range in _by_preference(ranges):
        result = pick(media_range)
        if result is not None:
            return result
    return None


def _part_type(media_range: MediaRange) -> tuple[str | None, dict[str, str]]:
    """The ``type`` parameter of a multipart range and that type's own parameters."""
    raw = media_range.params.get("type")
    if raw is None:
        return None, {}
    return parse_content_type(raw)


def _transfer_syntax(media_range: MediaRange) -> str | None:
    """``transfer-syntax`` of a range, also found inside a quoted ``type`` value."""
    outer = media_range.params.get("transfer-syntax")
    inner = _part_type(media_range)[1].get("transfer-syntax")
    if outer is not None and inner is not None and outer.strip() != inner.strip():
        raise BadRequest("Conflicting transfer-syntax parameters in Accept header")
    value = outer if outer is not None else inner
    return None if value is None else value.strip()


def is_valid_uid(value: str) -> bool:
    """True for a syntactically valid UID (PS3.5 §9.1): dotted numbers, at most 64 chars."""
    return len(value) <= 64 and _UID_RE.fullmatch(value) is not None


def _checked_syntax(value: str) -> str:
    if not is_valid_uid(value):
        raise BadRequest(f"Invalid transfer-syntax {value!r} in Accept header: not a UID")
    return value


def _not_acceptable(accept: str | None, offered: str) -> NotAcceptable:
    shown = accept if accept is None or len(accept) <= 200 else accept[:200] + "..."
    return NotAcceptable(
        f"Cannot produce any media type of the Accept header {shown!r}; "
        f"this resource is available as {offered}"
    )


# --------------------------------------------------------------------------- #
# WADO-RS study / series / instance (PS3.18 §10.4, §8.7.3.5)
# --------------------------------------------------------------------------- #


def _dicom_usable(media_range: MediaRange) -> bool:
    part_type = _part_type(media_range)[0]
    return media_range.matches("multipart/related") and part_type in (None, "application/dicom")


def negotiate_dicom(accept: str | None) -> str:
    """Target transfer syntax for WADO-RS retrieve of study, series or instance.

    ``multipart/related``, ``multipart/*`` and ``*/*`` are usable when their
    ``type`` is absent or ``application/dicom``. Returns :data:`AS_STORED` for
    ``transfer-syntax=*``, the UID given, or Explicit VR Little Endian when
    absent (PS3.18 §8.7.3.5.2, default since 2016c); no Accept gives the same.
    Nothing usable → :class:`NotAcceptable` (Orthanc answers 400 instead).
    """
    ranges = parse_accept(accept)
    if not ranges:
        return ExplicitVRLittleEndian
    for media_range in _by_preference(ranges):
        if _dicom_usable(media_range):
            syntax = _transfer_syntax(media_range)
            if syntax is None:
                return ExplicitVRLittleEndian
            return AS_STORED if syntax == AS_STORED else _checked_syntax(syntax)
    raise _not_acceptable(accept, 'multipart/related; type="application/dicom"')


# --------------------------------------------------------------------------- #
# Metadata, QIDO-RS and STOW-RS responses (PS3.18 §8.7.3.2, §10.4, §10.5, §10.6)
# --------------------------------------------------------------------------- #


def _is_json(media_range: MediaRange) -> bool:
    return any(media_range.matches(media) for media in _JSON_TYPES)


def _metadata_format(media_range: MediaRange) -> str | None:
    if _is_json(media_range):
        return "json"
    if media_range.type != "multipart" or media_range.subtype not in ("related", "*"):
        return None
    part_type = _part_type(media_range)[0]
    if part_type is None and media_range.subtype == "related":
        raise BadRequest(
            "Missing type parameter in Accept: multipart/related metadata needs "
            'type="application/dicom+xml"'
        )
    return "xml" if part_type == _DICOM_XML else None


def negotiate_metadata(accept: str | None) -> str:
    """``"json"`` or ``"xml"`` for WADO-RS metadata (PS3.18 §10.4.1.1.2, §8.7.3.2).

    JSON for ``application/dicom+json``, ``application/json``, ``application/*``,
    ``*/*`` or no Accept; XML for ``multipart/related; type="application/dicom+xml"``.
    ``multipart/related`` without ``type`` → :class:`BadRequest`; unknown ranges
    are skipped; nothing usable → :class:`NotAcceptable`.
    """
    return _negotiate(accept, _metadata_format, "json",
                      'application/dicom+json or multipart/related; type="application/dicom+xml"')


def _search_format(media_range: MediaRange) -> str | None:
    if _is_json(media_range):
        return "json"
    if media_range.media_type in _XML_TYPES:
        return "xml"
    if media_range.media_type == "multipart/related" and _part_type(media_range)[0] == _DICOM_XML:
        return "xml"
    return None


def negotiate_search(accept: str | None) -> str:
    """``"json"`` or ``"xml"`` for QIDO-RS and STOW-RS responses (PS3.18 §10.5, §10.6).

    JSON types, ``*/*``, ``application/*`` or no header → JSON;
    ``application/dicom+xml``, ``application/xml``, ``text/xml`` or
    ``multipart/related; type="application/dicom+xml"`` → XML; the best by q
    wins. Lenient like Orthanc (reference §3.1 step 5): anything else, including
    a malformed header, gives JSON and never an error.
    """
    try:
        ranges = parse_accept(accept)
        if any(r.media_type == "text/html" for r in ranges):
            return "json"  # a browser navigating to a QIDO URL: JSON, as Orthanc answers
        return _best(ranges, _search_format) or "json"
    except BadRequest:
        return "json"


# --------------------------------------------------------------------------- #
# Frames (PS3.18 §10.4.1.1.3, table 8.7.3-5)
# --------------------------------------------------------------------------- #


def media_type_for_syntax(transfer_syntax: str) -> str:
    """Part media type labelling pixel data in ``transfer_syntax`` (reference §4.5).

    Compressed image syntaxes map to their image type (``image/jpeg``,
    ``image/dicom-rle``, ``image/jls``, ``image/jp2``, ``image/jpx``,
    ``image/jxl``, ``image/jphc``), MPEG-2 to ``video/mpeg``, MPEG-4 and HEVC to
    ``video/mp4``; everything else (native syntaxes) is ``application/octet-stream``.
    """
    return _SYNTAX_MEDIA_TYPES.get(transfer_syntax, OCTET_STREAM)


def _with_media(transfer_syntax: str) -> tuple[str, str]:
    return media_type_for_syntax(transfer_syntax), transfer_syntax


def _octet_choice(syntax: str | None, stored_ts: str) -> tuple[str, str]:
    if syntax is None:
        return OCTET_STREAM, ExplicitVRLittleEndian
    if syntax == AS_STORED:
        return _with_media(stored_ts)
    return _with_media(_checked_syntax(syntax))


def _image_choice(
    syntaxes: tuple[str, ...], syntax: str | None, stored_ts: str
) -> tuple[str, str] | None:
    if syntax is None:
        return _with_media(syntaxes[0])
    if syntax == AS_STORED:
        return _with_media(stored_ts if stored_ts in syntaxes else syntaxes[0])
    return _with_media(syntax) if _checked_syntax(syntax) in syntaxes else None


def _frames_choice(media_range: MediaRange, stored_ts: str) -> tuple[str, str] | None:
    """What one range asks for, or None if it names nothing frames can be."""
    if not media_range.matches("multipart/related"):
        return None
    part_type = _part_type(media_range)[0] or OCTET_STREAM
    syntax = _transfer_syntax(media_range)
    if part_type == OCTET_STREAM:
        return _octet_choice(syntax, stored_ts)
    syntaxes = _IMAGE_SYNTAXES.get(_IMAGE_ALIASES.get(part_type, part_type))
    return None if syntaxes is None else _image_choice(syntaxes, syntax, stored_ts)


def negotiate_frames(
    accept: str | None, stored_ts: str, can_produce: Callable[[str, str], bool]
) -> tuple[str, str]:
    """``(part media type, transfer syntax)`` for WADO-RS frames (PS3.18 §10.4.1.1.3).

    Usable ranges are ``multipart/related`` (or ``multipart/*``, ``*/*``) whose
    ``type`` is ``application/octet-stream`` (the default) or an image type of
    PS3.18 table 8.7.3-5. For octet-stream, ``transfer-syntax`` absent → Explicit
    VR Little Endian, ``*`` → ``stored_ts``, a UID → that UID; the media type
    returned is always :func:`media_type_for_syntax` of the syntax sent, so a
    JPEG payload is labelled ``image/jpeg``. For an image type, absent → its
    default syntax, ``*`` → ``stored_ts`` if the type covers it else the default,
    another syntax of the type → that one (a syntax of another type makes the
    range unusable). ``can_produce(stored_ts, target_ts)`` filters the results.
    No Accept means ``*/*``. Nothing usable → :class:`NotAcceptable`; a
    malformed parameter or UID → :class:`BadRequest`.
    """
    ranges = parse_accept(accept) or [MediaRange("*", "*", {})]
    for media_range in _by_preference(ranges):
        choice = _frames_choice(media_range, stored_ts)
        if choice is not None and can_produce(stored_ts, choice[1]):
            return choice
    raise _not_acceptable(accept, f'multipart/related; type="{media_type_for_syntax(stored_ts)}"')


# --------------------------------------------------------------------------- #
# Bulk data and rendered (PS3.18 §10.4.1.1.4, §10.4.1.1.5, §8.3.3.1)
# --------------------------------------------------------------------------- #


def _bulk_usable(media_range: MediaRange) -> bool:
    part_type = _part_type(media_range)[0]
    return (
        media_range.matches("multipart/related")
        and part_type in (None, OCTET_STREAM, "*/*", "application/*")
        and "range" not in media_range.params
    )


def negotiate_bulk(accept: str | None) -> None:
    """Check that a bulk data response can be sent (PS3.18 §10.4.1.1.4).

    Fine with no Accept, ``*/*``, ``multipart/*`` or ``multipart/related`` with
    ``type`` absent or ``application/octet-stream`` (a ``transfer-syntax`` is
    ignored: bulk data goes as stored). A ``range`` parameter is not supported.
    Otherwise :class:`NotAcceptable`.
    """
    ranges = parse_accept(accept)
    if ranges and not any(_bulk_usable(r) for r in _by_preference(ranges)):
        raise _not_acceptable(accept, 'multipart/related; type="application/octet-stream"')


def _rendered_type(media_range: MediaRange) -> str | None:
    if media_range.matches("image/jpeg"):
        return "image/jpeg"
    return _RENDERED_TYPES.get(media_range.media_type)


def negotiate_rendered(accept: str | None, query_accept: str | None = None) -> str:
    """``"image/jpeg"``, ``"image/png"`` or ``"image/gif"`` for rendered resources.

    ``query_accept`` is the ``accept`` query parameter (PS3.18 §8.3.3.1), which
    replaces the header when present. ``*/*``, ``image/*``, no Accept and the
    ``image/jpg`` alias give JPEG; otherwise the best usable type by q, so real
    browser headers work (PS3.18 §10.4.1.1.5). Nothing usable → :class:`NotAcceptable`.
    """
    source = query_accept if query_accept and query_accept.strip() else accept
    return _negotiate(source, _rendered_type, "image/jpeg", "image/jpeg, image/png or image/gif")
