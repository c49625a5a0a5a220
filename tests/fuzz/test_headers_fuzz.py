"""Header and path-parameter parsers under hostile input: Accept negotiation
(app.dicom.negotiation), media types (app.dicom.media_types), frame lists
(app.dicom.retrieve), bulk data paths (app.dicom.bulkdata) and UIDs
(app.dicom.identifiers). Each gives a result or its documented 4xx, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.dicom import bulkdata, identifiers, media_types, negotiation, retrieve
from app.errors import BadRequest, DicomWebError, NotAcceptable
from tests.fuzz.corpus import hostile_strings

TYPES = ["multipart/related", "multipart/*", "*/*", "*", "application/dicom",
         "application/dicom+json", "application/json", "application/dicom+xml", "text/xml",
         "text/html", "image/jpeg", "image/jpg", "image/png", "image/gif", "image/*",
         "application/octet-stream", "image/jls", "image/x-dicom-rle", "video/mp4", "a/b/c",
         "/", "", "MULTIPART/RELATED"]
PARAM_NAMES = ["type", "transfer-syntax", "q", "charset", "boundary", "range", "Q", "", "x"]
PARAM_VALUES = ["application/dicom", '"application/dicom"', "*", '"*"', "1.2.840.10008.1.2.1",
                "1.2.840.10008.1.2.4.50", "1.2.", "01.2", "0", "1", "0.5", ".2", "1.5", "-1",
                "nan", "inf", "1e400", '"', '"\\"', '"a;b,c"', '"application/dicom; '
                'transfer-syntax=1.2.840.10008.1.2.1"', '"image/jpeg"', "", "\x00", "é"]

param = st.tuples(st.sampled_from(PARAM_NAMES), st.sampled_from(PARAM_VALUES)).map(
    lambda kv: f"{kv[0]}={kv[1]}")
media_range = st.tuples(st.sampled_from(TYPES), st.lists(param, max_size=3)).map(
    lambda tp: "; ".join([tp[0], *tp[1]]))
structured = st.lists(media_range, max_size=4).map(", ".join)
headers = st.one_of(st.none(), st.text(max_size=80), structured,
                    st.sampled_from(hostile_strings()),
                    st.lists(st.sampled_from(['"', "\\", ";", ",", "=", "q", " "]),
                             max_size=20).map("".join))
STORED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5",
          "1.2.840.10008.1.2", "9.9.9"]


@settings(max_examples=800, deadline=None)
@given(accept=headers, stored=st.sampled_from(STORED), rendered_param=headers)
def test_accept_negotiation(accept: str | None, stored: str,
                            rendered_param: str | None) -> None:
    for negotiate in (negotiation.negotiate_dicom, negotiation.negotiate_metadata,
                      negotiation.negotiate_bulk):
        try:
            negotiate(accept)
        except (BadRequest, NotAcceptable):
            pass
    assert negotiation.negotiate_search(accept) in ("json", "xml")  # never an error
    try:
        assert negotiation.negotiate_rendered(accept, rendered_param) in (
            "image/jpeg", "image/png", "image/gif")
    except (BadRequest, NotAcceptable):
        pass
    try:
        media, syntax = negotiation.negotiate_frames(accept, stored, lambda _a, _b: True)
        assert syntax == stored or negotiation.is_valid_uid(syntax)
    except (BadRequest, NotAcceptable):
        pass


@settings(max_examples=500, deadline=None)
@given(value=headers.filter(lambda v: v is not None))
def test_content_type_parsing(value: str) -> None:
    try:
        media, params = media_types.parse_content_type(value)
    except BadRequest:
        return
    assert media == media.strip().lower()
    assert all(key == key.strip().lower() and key for key in params)
    assert ";".join(media_types.split_outside_quotes(value, ";")) == value


frame_lists = st.one_of(
    st.text(max_size=30), st.sampled_from(hostile_strings()),
    st.lists(st.sampled_from(["1", "0", "-1", ",", "%2C", "%2c", " ", "99999999999", "_", "+",
                              "\u0663", "9" * 5000]), max_size=8).map("".join),
)


@settings(max_examples=500, deadline=None)
@given(text=frame_lists)
def test_frame_list(text: str) -> None:
    try:
        frames = retrieve.parse_frame_list(text)
    except BadRequest:
        return
    assert frames and all(isinstance(n, int) and n >= 1 for n in frames)


bulk_paths = st.one_of(
    st.text(max_size=40), st.sampled_from(hostile_strings()),
    st.lists(st.sampled_from(["7fe00010", "00100010", "0040A730", "1", "0", "-1", "/", ",",
                              "ffffffff", "100000000", "-0", "0x10", "_", "+1", "f" * 100,
                              "9" * 5000, "..", "%2F", "\x00"]), max_size=6).map("/".join),
)


@settings(max_examples=500, deadline=None)
@given(path=bulk_paths)
def test_bulk_data_path(path: str) -> None:
    try:
        steps = bulkdata.parse_path(path)
    except BadRequest:
        return
    assert len(steps) % 2 == 1
    assert all(0 <= tag <= 0xFFFFFFFF for tag in steps[::2])
    assert all(index >= 1 for index in steps[1::2])


@pytest.mark.parametrize("path", ["-1", "100000000", "f" * 100, "00100010/1/-1",
                                  "-0040A730/1/00100010", "0x10", "1_0"])
def test_bulk_data_path_tags_in_range(path: str) -> None:
    """Regression: a negative or wider than 32-bit tag reached pydicom (TypeError, a 500)."""
    with pytest.raises(BadRequest):
        bulkdata.parse_path(path)


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(st.text(max_size=80), st.sampled_from(hostile_strings()),
                       st.from_regex(r"[0-9.]{0,70}", fullmatch=True)))
def test_uids(value: str) -> None:
    try:
        checked = identifiers.check_uid(value, "UID")
    except DicomWebError as exc:
        assert isinstance(exc, BadRequest)
        assert not identifiers.is_valid_uid(value)
        return
    assert checked == value and value.isascii() and len(value) <= 64
    assert all(part.isdigit() for part in value.split("."))
