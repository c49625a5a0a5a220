"""Unit tests for app.dicom.multipart (RFC 2046/2387 framing, PS3.18 §8.6, §10.5)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.dicom import multipart as mp
from app.errors import BadRequest, UnsupportedMediaType

B = "8dd3a3d253a0418db53e6b1b96e947ea-6ec2bf5934c148568ac64c500ee7ce5d"
BB = B.encode()
CHUNK_SIZES = [*range(1, 71), 100, 257, 1000, 4096, 65536, 10**7]

PartList = list[tuple[dict[str, str], bytes]]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def collect(events: list[mp.Event]) -> tuple[PartList, bool]:
    """Fold an event list into parts, asserting the event grammar."""
    parts: PartList = []
    current: tuple[dict[str, str], list[bytes]] | None = None
    finished = False
    for event in events:
        assert not finished, "event after Finished"
        if isinstance(event, mp.PartStart):
            assert current is None
            current = (event.headers, [])
        elif isinstance(event, mp.PartData):
            assert current is not None and event.data
            current[1].append(event.data)
        elif isinstance(event, mp.PartEnd):
            assert current is not None
            parts.append((current[0], b"".join(current[1])))
            current = None
        else:
            assert isinstance(event, mp.Finished) and current is None
            finished = True
    return parts, finished


def read_all(body: bytes, chunk: int, boundary: str = B, **kwargs: int) -> PartList:
    reader = mp.MultipartReader(boundary, **kwargs)
    events: list[mp.Event] = []
    for start in range(0, len(body), chunk):
        events += reader.feed(body[start : start + chunk])
    events += reader.close()
    parts, finished = collect(events)
    assert finished
    return parts


def read_cuts(body: bytes, cuts: list[int], boundary: str = B) -> PartList:
    reader = mp.MultipartReader(boundary)
    events: list[mp.Event] = []
    previous = 0
    for cut in [*sorted(cuts), len(body)]:
        events += reader.feed(body[previous:cut])
        previous = cut
    events += reader.close()
    parts, finished = collect(events)
    assert finished
    return parts


def write(parts: PartList, boundary: str = B) -> bytes:
    return b"".join(mp.stream(boundary, [(h, [data]) for h, data in parts]))


DICOM_HEADERS = {"Content-Type": "application/dicom", "MIME-Version": "1.0"}
LOWER_DICOM_HEADERS = {"content-type": "application/dicom", "mime-version": "1.0"}

NEAR_BOUNDARY_PAYLOADS = [
    b"",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"-",
    b"--",
    b"\r\n-",
    b"\r\n--",
    b"\r\n--\r\n",
    b"--" + BB,
    b"--" + BB + b"--",
    b"\r\n--" + BB[:-1],
    b"\r\n--" + BB[:-1] + b"\r\n",
    b"\r\n--" + BB + b"X",
    b"\r\n--" + BB + b"x\r\n--" + BB + b"-x",
    b"\r\n--" + BB + b" x\r\n",
    b"\r\n--" + BB + b"\rX",
    b"DICM\r\n\r\n--\r\n--" + B[:10].encode(),
    b"abc\r",
    b"abc\r\n-",
    bytes(range(256)) * 3,
]


# --------------------------------------------------------------------------- #
# parse_content_type / split_outside_quotes
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/dicom", ("application/dicom", {})),
        ("  Application/DICOM  ", ("application/dicom", {})),
        (
            'multipart/related; type="application/dicom"; boundary=abc',
            ("multipart/related", {"type": "application/dicom", "boundary": "abc"}),
        ),
        (
            'Multipart/Related ; Type = "application/dicom" ; BOUNDARY="a;b,c"',
            ("multipart/related", {"type": "application/dicom", "boundary": "a;b,c"}),
        ),
        ('a/b; x="q\\"uo\\\\te"', ("a/b", {"x": 'q"uo\\te'})),
        ("a/b;;c=d;", ("a/b", {"c": "d"})),
        ("a/b; c=", ("a/b", {"c": ""})),
        ('a/b; c=""', ("a/b", {"c": ""})),
        ("a/b; c=MixedCase", ("a/b", {"c": "MixedCase"})),
        (
            'multipart/related; type="application/octet-stream; transfer-syntax=*"',
            ("multipart/related", {"type": "application/octet-stream; transfer-syntax=*"}),
        ),
        ("", ("", {})),
    ],
)
def test_parse_content_type(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert mp.parse_content_type(value) == expected


@pytest.mark.parametrize(
    "value",
    ["a/b; novalue", 'a/b; x="unterminated', 'a/b; ="x"', 'a/b; x="a"b', "a/b; =", 'a/b; x="a\\"'],
)
def test_parse_content_type_malformed(value: str) -> None:
    with pytest.raises(BadRequest):
        mp.parse_content_type(value)


@pytest.mark.parametrize(
    ("value", "sep", "expected"),
    [
        ("a,b", ",", ["a", "b"]),
        ('a;x="1,2";y=3, b', ",", ['a;x="1,2";y=3', " b"]),
        ('a;x="q\\",r", b', ",", ['a;x="q\\",r"', " b"]),
        ("a,,", ",", ["a", "", ""]),
        ("", ";", [""]),
    ],
)
def test_split_outside_quotes(value: str, sep: str, expected: list[str]) -> None:
    assert mp.split_outside_quotes(value, sep) == expected


# --------------------------------------------------------------------------- #
# multipart_boundary (request Content-Type, reference §5.1)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("value", "boundary"),
    [
        (f'multipart/related; type="application/dicom"; boundary={B}', B),
        ("multipart/related; type=application/dicom; boundary=xyz", "xyz"),
        ('MULTIPART/RELATED; TYPE="Application/DICOM"; Boundary="a b:c"', "a b:c"),
        (
            "multipart/related; type=application/dicom; transfer-syntax=1.2; boundary=x",
            "x",
        ),
        ('multipart/related; type="application/dicom; transfer-syntax=*"; boundary=x', "x"),
    ],
)
def test_multipart_boundary(value: str, boundary: str) -> None:
    assert mp.multipart_boundary(value) == boundary


@pytest.mark.parametrize(
    "value",
    [
        "application/dicom",
        "multipart/form-data; boundary=x",
        "multipart/related; boundary=x",
        "multipart/related; type=application/dicom+json; boundary=x",
        "multipart/related; type=application/dicom",
        'multipart/related; type=application/dicom; boundary=""',
        'multipart/related; type="application/dicom; boundary=x',
        "multipart/related; type=application/dicom; boundary=" + "x" * 201,
        'multipart/related; type=application/dicom; boundary="a\tb"',
    ],
)
def test_multipart_boundary_rejects(value: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        mp.multipart_boundary(value)


def test_multipart_boundary_without_type_check() -> None:
    assert mp.multipart_boundary("multipart/related; boundary=x", part_type=None) == "x"


# --------------------------------------------------------------------------- #
# writer
# --------------------------------------------------------------------------- #


def test_new_boundary_shape_and_uniqueness() -> None:
    boundaries = {mp.new_boundary() for _ in range(100)}
    assert len(boundaries) == 100
    for boundary in boundaries:
        assert re.fullmatch(r"[0-9a-f]{32}-[0-9a-f]{32}", boundary)


def test_content_type() -> None:
    assert (
        mp.content_type("application/dicom", B)
        == f'multipart/related; type="application/dicom"; boundary={B}'
    )
    assert mp.content_type(
        "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1", "b"
    ) == (
        'multipart/related; type="application/octet-stream; '
        'transfer-syntax=1.2.840.10008.1.2.1"; boundary=b'
    )


def test_content_type_quotes_boundary_when_needed_and_round_trips() -> None:
    value = mp.content_type('odd/"type"', "a b;c")
    assert value == 'multipart/related; type="odd/\\"type\\""; boundary="a b;c"'
    assert mp.parse_content_type(value) == (
        "multipart/related",
        {"type": 'odd/"type"', "boundary": "a b;c"},
    )


def test_part_head_tail_closing() -> None:
    head = mp.part_head("b", {"Content-Type": "application/dicom", "Content-Length": "3"})
    assert head == b"--b\r\nContent-Type: application/dicom\r\nContent-Length: 3\r\n\r\n"
    assert mp.part_head("b", {}) == b"--b\r\n\r\n"
    assert mp.PART_TAIL == b"\r\n"
    assert mp.closing("b") == b"--b--\r\n"


@pytest.mark.parametrize("headers", [{"X": "a\r\nEvil: 1"}, {"X\n": "a"}, {"X": "a\rb"}])
def test_part_head_rejects_line_breaks(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        mp.part_head("b", headers)


def test_stream_exact_bytes() -> None:
    parts = [({"Content-Type": "a/b"}, [b"ab", b"", b"c"]), ({}, [])]
    assert b"".join(mp.stream("x", parts)) == (
        b"--x\r\nContent-Type: a/b\r\n\r\nabc\r\n--x\r\n\r\n\r\n--x--\r\n"
    )
    assert b"".join(mp.stream("x", [])) == b"--x--\r\n"


def test_stream_is_lazy() -> None:
    pulled: list[str] = []

    def chunks(name: str) -> Iterator[bytes]:
        pulled.append(name)
        yield name.encode()

    def parts() -> Iterator[tuple[dict[str, str], Iterator[bytes]]]:
        for name in ("one", "two"):
            pulled.append(f"part {name}")
            yield {}, chunks(name)

    output = mp.stream("x", parts())
    assert pulled == []
    assert next(output) == b"--x\r\n\r\n"
    assert pulled == ["part one"]
    assert next(output) == b"one"
    assert pulled == ["part one", "one"]
    assert next(output) == mp.PART_TAIL
    assert pulled == ["part one", "one"]
    assert b"".join(output) == b"--x\r\n\r\ntwo\r\n--x--\r\n"


# --------------------------------------------------------------------------- #
# reader: round trips and chunking
# --------------------------------------------------------------------------- #


def test_round_trip_every_chunk_size() -> None:
    parts = [
        (DICOM_HEADERS, b"\x00" * 128 + b"DICM" + bytes(range(256))),
        ({"Content-Type": "application/dicom"}, b""),
        (DICOM_HEADERS, b"|".join(NEAR_BOUNDARY_PAYLOADS)),
    ]
    body = write(parts)
    expected = [
        (LOWER_DICOM_HEADERS, parts[0][1]),
        ({"content-type": "application/dicom"}, b""),
        (LOWER_DICOM_HEADERS, parts[2][1]),
    ]
    for chunk in CHUNK_SIZES:
        assert read_all(body, chunk) == expected, chunk


@pytest.mark.parametrize("payload", NEAR_BOUNDARY_PAYLOADS)
def test_near_boundary_payloads_pass_intact(payload: bytes) -> None:
    assert REAL_DELIMITER.search(payload + payload) is None
    body = write([({}, payload), ({}, payload + payload)])
    for chunk in CHUNK_SIZES:
        assert read_all(body, chunk) == [({}, payload), ({}, payload + payload)], chunk


def test_real_dicom_file_round_trip() -> None:
    pydicom_data = pytest.importorskip("pydicom.data")
    files = [Path(pydicom_data.get_testdata_file(n)) for n in ("CT_small.dcm", "JPEG2000.dcm")]
    parts = [(DICOM_HEADERS, f.read_bytes()) for f in files]
    body = write(parts)
    for chunk in (1, 7, 64, 4096, 65536):
        assert [data for _, data in read_all(body, chunk)] == [p[1] for p in parts]


def test_data_is_emitted_as_it_arrives() -> None:
    delimiter_length = len(b"\r\n--" + BB)
    reader = mp.MultipartReader(B)
    reader.feed(mp.part_head(B, DICOM_HEADERS))
    emitted = 0
    for index in range(64):
        chunk = bytes([index % 256]) * 16384 + b"\r\n--" + BB[: index % len(BB)]
        events = reader.feed(chunk)
        emitted += sum(len(e.data) for e in events if isinstance(e, mp.PartData))
        fed = (index + 1) * 16384 + sum(3 + i % len(BB) + 1 for i in range(index + 1))
        assert fed - emitted <= delimiter_length
        assert len(reader._buf) <= delimiter_length


# --------------------------------------------------------------------------- #
# reader: framing details
# --------------------------------------------------------------------------- #


def test_preamble_and_epilogue_are_ignored() -> None:
    body = (
        b"This is a preamble with --" + BB + b"X look-alike\r\n--" + BB + b"nope\r\n"
        b"\r\n--" + BB + b"\r\nContent-Type: a/b\r\n\r\nDATA"
        b"\r\n--" + BB + b"--\r\nepilogue \r\n--" + BB + b"\r\nContent-Type: x/y\r\n\r\nignored"
    )
    for chunk in CHUNK_SIZES:
        assert read_all(body, chunk) == [({"content-type": "a/b"}, b"DATA")]


def test_first_boundary_without_leading_crlf_and_preamble_with_lf() -> None:
    assert read_all(b"--" + BB + b"\r\n\r\nA\r\n--" + BB + b"--", 1) == [({}, b"A")]
    body = b"junk\n--" + BB + b"\r\n\r\nA\r\n--" + BB + b"--"
    assert read_all(body, 3) == [({}, b"A")]


def test_lf_only_header_lines_and_boundary_line() -> None:
    body = b"--" + BB + b"\nContent-Type: a/b\nX-Other:  v \n\nDATA\r\n--" + BB + b"--\n"
    for chunk in CHUNK_SIZES:
        assert read_all(body, chunk) == [({"content-type": "a/b", "x-other": "v"}, b"DATA")]


def test_mixed_line_endings_in_headers() -> None:
    body = b"--" + BB + b"\r\nA: 1\nB: 2\r\n\nDATA\r\n--" + BB + b"--"
    assert read_all(body, 5) == [({"a": "1", "b": "2"}, b"DATA")]


def test_folded_and_duplicate_headers() -> None:
    body = (
        b"--" + BB + b"\r\nContent-Type: application/dicom;\r\n\ttransfer-syntax=1.2\r\n"
        b"X-A: 1\r\nx-a: 2\r\n\r\nD\r\n--" + BB + b"--"
    )
    assert read_all(body, 4) == [
        ({"content-type": "application/dicom; transfer-syntax=1.2", "x-a": "1, 2"}, b"D")
    ]


def test_header_values_are_latin1_decoded() -> None:
    body = b"--" + BB + b"\r\nX-Name: caf\xe9\r\n\r\nD\r\n--" + BB + b"--"
    assert read_all(body, 2) == [({"x-name": "caf\xe9"}, b"D")]


@pytest.mark.parametrize(
    "headers", [b"no colon here\r\n", b": empty name\r\n", b" continuation first\r\n"]
)
def test_malformed_header_lines(headers: bytes) -> None:
    body = b"--" + BB + b"\r\n" + headers + b"\r\nD\r\n--" + BB + b"--"
    with pytest.raises(BadRequest):
        read_all(body, 1)


def test_transport_padding_after_boundary() -> None:
    body = b"--" + BB + b" \t \r\n\r\nA\r\n--" + BB + b"\t\r\n\r\nB\r\n--" + BB + b"--  \r\n"
    for chunk in CHUNK_SIZES:
        assert read_all(body, chunk) == [({}, b"A"), ({}, b"B")]


def test_excessive_transport_padding_is_rejected() -> None:
    body = b"--" + BB + b"\r\n\r\nA\r\n--" + BB + b" " * 5000 + b"\r\n"
    with pytest.raises(BadRequest):
        read_all(body, 100)


def test_delimiter_not_followed_by_crlf_or_dashes_is_data() -> None:
    """Decision: ``\\r\\n--boundaryX`` is not a delimiter (RFC 2046 grammar), so it is data."""
    body = b"--" + BB + b"\r\n\r\nabc\r\n--" + BB + b"X\r\n--" + BB + b"-\r\n--" + BB + b"--"
    for chunk in CHUNK_SIZES:
        assert read_all(body, chunk) == [({}, b"abc\r\n--" + BB + b"X\r\n--" + BB + b"-")]


def test_content_length_is_not_trusted() -> None:
    body = b"--" + BB + b"\r\nContent-Length: 2\r\n\r\nABCD\r\n--" + BB + b"--"
    assert read_all(body, 3) == [({"content-length": "2"}, b"ABCD")]


def test_empty_multipart() -> None:
    for body in (b"--" + BB + b"--\r\n", b"--" + BB + b"--", b"pre\r\n--" + BB + b"--\r\nepi"):
        for chunk in (1, 2, 1000):
            reader = mp.MultipartReader(B)
            events: list[mp.Event] = []
            for start in range(0, len(body), chunk):
                events += reader.feed(body[start : start + chunk])
            assert events == [mp.Finished()]
            assert reader.finished
            assert reader.close() == []


def test_part_without_headers_and_empty_bodies() -> None:
    body = b"--" + BB + b"\r\n\r\n\r\n--" + BB + b"\r\n\r\n\r\n--" + BB + b"--"
    for chunk in CHUNK_SIZES:
        assert read_all(body, chunk) == [({}, b""), ({}, b"")]


def test_feed_after_finished_is_ignored() -> None:
    reader = mp.MultipartReader(B)
    assert reader.feed(b"--" + BB + b"--") == [mp.Finished()]
    assert reader.feed(b"\r\n--" + BB + b"\r\n\r\nX") == []
    assert reader.close() == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"just a preamble",
        b"--" + BB,
        b"--" + BB + b"\r\n",
        b"--" + BB + b"\r\nContent-Type: a/b\r\n",
        b"--" + BB + b"\r\n\r\nDATA",
        b"--" + BB + b"\r\n\r\nDATA\r\n--" + BB,
        b"--" + BB + b"\r\n\r\nDATA\r\n--" + BB + b"-",
        b"--" + BB + b"\r\n\r\nDATA\r\n--" + BB + b"\r\n",
        b"--" + BB + b"\r\n\r\nDATA\r\n--" + BB + b"X--",
    ],
)
def test_missing_close_delimiter(body: bytes) -> None:
    for chunk in (1, 1000):
        reader = mp.MultipartReader(B)
        for start in range(0, len(body), chunk):
            reader.feed(body[start : start + chunk])
        with pytest.raises(BadRequest, match="closing boundary"):
            reader.close()


def test_headers_larger_than_limit() -> None:
    head = b"--" + BB + b"\r\nX-Big: " + b"a" * 200 + b"\r\n\r\n"
    block = len(head) - len(b"--" + BB + b"\r\n") - 2  # header lines, without the blank line
    body = head + b"D\r\n--" + BB + b"--"
    assert read_all(body, 1, max_header_size=block) == [({"x-big": "a" * 200}, b"D")]
    for chunk in (1, 50, 100000):
        with pytest.raises(BadRequest, match="exceed"):
            read_all(body, chunk, max_header_size=block - 1)


def test_unterminated_headers_are_rejected_without_waiting_for_end() -> None:
    reader = mp.MultipartReader(B, max_header_size=1000)
    reader.feed(b"--" + BB + b"\r\nX: " + b"a" * 900)
    with pytest.raises(BadRequest):
        reader.feed(b"b" * 200)


@pytest.mark.parametrize("boundary", ["", "a\r\nb", "caf\xe9", "x" * 201])
def test_invalid_boundary(boundary: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        mp.MultipartReader(boundary)


def test_quoted_boundary_from_content_type() -> None:
    boundary = "odd boundary; with, specials:="
    header = mp.content_type("application/dicom", boundary)
    assert '"' + boundary + '"' in header
    _, params = mp.parse_content_type(header)
    assert params["boundary"] == boundary
    assert mp.multipart_boundary(header) == boundary
    body = write([({}, b"one"), ({}, b"two")], boundary)
    for chunk in CHUNK_SIZES:
        assert read_all(body, chunk, boundary) == [({}, b"one"), ({}, b"two")]


def test_boundary_that_is_a_prefix_of_data() -> None:
    body = write([({}, b"\r\n--ab"), ({}, b"x")], "a")
    for chunk in CHUNK_SIZES:
        assert read_all(body, chunk, "a") == [({}, b"\r\n--ab"), ({}, b"x")]


# --------------------------------------------------------------------------- #
# iter_parts
# --------------------------------------------------------------------------- #


def counting_reader(body: bytes) -> tuple[Callable[[int], bytes], list[int]]:
    source = io.BytesIO(body)
    calls: list[int] = []

    def read(size: int) -> bytes:
        calls.append(size)
        return source.read(size)

    return read, calls


def test_iter_parts_reads_all_parts() -> None:
    parts = [(DICOM_HEADERS, b"A" * 1000), ({}, b""), ({"X": "y"}, b"\r\n--" + BB + b"Z")]
    body = write(parts)
    for chunk in (1, 3, 64, 65536):
        read, _ = counting_reader(body)
        got = [(p.headers, b"".join(p.iter_chunks())) for p in mp.iter_parts(read, B, chunk)]
        assert got == [
            (LOWER_DICOM_HEADERS, b"A" * 1000),
            ({}, b""),
            ({"x": "y"}, b"\r\n--" + BB + b"Z"),
        ]


def test_iter_parts_passes_chunk_size_and_streams() -> None:
    body = write([({}, b"A" * 100000)])
    read, calls = counting_reader(body)
    part = next(mp.iter_parts(read, B, 4096))
    first = next(part.iter_chunks())
    assert 0 < len(first) <= 4096
    assert set(calls) == {4096}
    assert len(calls) <= 2


def test_iter_parts_drains_unconsumed_parts() -> None:
    body = write([({"N": "1"}, b"A" * 5000), ({"N": "2"}, b"B" * 5000), ({"N": "3"}, b"C")])
    read, _ = counting_reader(body)
    iterator = mp.iter_parts(read, B, 100)
    first = next(iterator)
    partial = first.iter_chunks()
    assert next(partial)
    second = next(iterator)
    assert second.headers == {"n": "2"}
    assert list(partial) == []  # the abandoned iterator must not steal the next part's bytes
    third = next(iterator)
    assert third.headers == {"n": "3"}
    assert b"".join(third.iter_chunks()) == b"C"
    assert list(iterator) == []


def test_iter_parts_checks_boundary_eagerly() -> None:
    with pytest.raises(UnsupportedMediaType):
        mp.iter_parts(io.BytesIO(b"").read, "")


def test_iter_parts_iter_chunks_only_once() -> None:
    read, _ = counting_reader(write([({}, b"A")]))
    part = next(mp.iter_parts(read, B))
    assert b"".join(part.iter_chunks()) == b"A"
    with pytest.raises(RuntimeError):
        part.iter_chunks()


def test_iter_parts_empty_and_epilogue_not_read() -> None:
    body = b"--" + BB + b"--\r\n" + b"E" * 1000
    read, calls = counting_reader(body)
    assert list(mp.iter_parts(read, B, 10)) == []
    assert len(calls) == 7  # stops at the close delimiter, epilogue left unread


def test_iter_parts_truncated_body() -> None:
    full = write([({}, b"A" * 50), ({}, b"B" * 50)])
    for cut in range(len(full) - len(b"--\r\n")):
        read, _ = counting_reader(full[:cut])
        with pytest.raises(BadRequest):
            for part in mp.iter_parts(read, B, 7):
                b"".join(part.iter_chunks())


# --------------------------------------------------------------------------- #
# property test
# --------------------------------------------------------------------------- #

FRAGMENTS = [b"\r", b"\n", b"\r\n", b"-", b"--", b"\r\n--", BB[:5], BB, b"\r\n--" + BB[:-1]]
REAL_DELIMITER = re.compile(rb"\r\n--" + re.escape(BB) + rb"(--|[ \t]*(\r\n|\n|\Z))")
payloads = (
    st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(FRAGMENTS)), max_size=12)
    .map(b"".join)
    .filter(lambda payload: REAL_DELIMITER.search(payload) is None)
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20
)
header_dicts = st.dictionaries(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12),
    header_values,
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.tuples(header_dicts, payloads), max_size=5),
    data=st.data(),
)
def test_round_trip_property(parts: PartList, data: st.DataObject) -> None:
    body = write(parts)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=20))
    got = read_cuts(body, cuts)
    assert got == [({k.lower(): v for k, v in h.items()}, payload) for h, payload in parts]
