"""The sans-IO multipart reader (app.dicom.multipart) under hostile bodies.

Whatever the bytes and however they are cut into chunks, the reader gives parts or a
:class:`BadRequest`, never another exception; its buffer stays bounded (a part's header
block by ``max_header_size``, everything else by the delimiter length plus transport
padding), so a client cannot make it accumulate memory; and the outcome does not depend
on where the chunk boundaries fall.
"""

from __future__ import annotations

import io
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.dicom import multipart as mp
from app.errors import BadRequest, UnsupportedMediaType
from tests.unit.test_multipart import collect

B = "FUZZBOUNDARY"
BB = B.encode()
MAX_HEADER = 1024
# Longest buffer the reader may keep between two feeds (see the module docstring).
BUFFER_BOUND = max(MAX_HEADER + 2, len(b"\r\n--" + BB) + mp._MAX_PADDING + 4)

FRAGMENTS = [
    b"\r\n", b"\n", b"\r", b"--", b"-", b" ", b"\t", b":", b"\r\n\r\n", b"--" + BB,
    b"\r\n--" + BB, b"\r\n--" + BB + b"--", b"\r\n--" + BB + b"\r\n", BB[:5],
    b"Content-Type: application/dicom\r\n", b" folded\r\n", b"X" * 300, b"\x00", b"\xff",
    b" " * 700, b"\r\n--" + BB + b" " * 1100,
]
bodies = st.lists(st.one_of(st.binary(max_size=64), st.sampled_from(FRAGMENTS)),
                  max_size=40).map(b"".join)


def _run(body: bytes, cuts: list[int]) -> tuple[str, object]:
    """Feed ``body`` cut at ``cuts``; ('parts', [...]) or ('error', BadRequest)."""
    reader = mp.MultipartReader(B, max_header_size=MAX_HEADER)
    events: list[mp.Event] = []
    previous = 0
    try:
        for cut in [*sorted(set(cuts)), len(body)]:
            events += reader.feed(body[previous:cut])
            previous = cut
            assert len(reader._buf) <= BUFFER_BOUND
        events += reader.close()
    except BadRequest as exc:
        return "error", exc
    return "parts", _fold(events)


def _fold(events: list[mp.Event]) -> list[tuple[dict[str, str], bytes]]:
    """Parts of an event list, checking the event grammar (Finished last)."""
    parts, finished = collect(events)
    assert finished and isinstance(events[-1], mp.Finished)
    return parts


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, data=st.data())
def test_arbitrary_bodies_any_chunking(body: bytes, data: st.DataObject) -> None:
    """Parts or BadRequest, whatever the cuts; the same outcome as one single feed."""
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=12))
    whole = _run(body, [])
    chunked = _run(body, cuts)
    assert whole[0] == chunked[0]
    if whole[0] == "parts":
        assert whole[1] == chunked[1]


def _valid_body(parts: list[tuple[dict[str, str], bytes]]) -> bytes:
    return b"".join(mp.stream(B, [(h, [d]) for h, d in parts]))


valid_parts = st.lists(
    st.tuples(st.sampled_from([{}, {"Content-Type": "application/dicom"},
                               {"Content-Type": "application/dicom", "X-Long": "v" * 200}]),
              st.binary(max_size=200)),
    min_size=1, max_size=4,
)


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    """A valid body with a few byte flips, insertions, deletions or a truncation."""
    body = bytearray(_valid_body(draw(valid_parts)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]))
        at = draw(st.integers(0, len(body)))
        if kind == "flip" and at < len(body):
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            body[at:at] = draw(st.sampled_from(FRAGMENTS))
        elif kind == "delete":
            del body[at:at + draw(st.integers(1, 20))]
        elif kind == "truncate":
            del body[at:]
        else:
            body[at:at] = body[max(0, at - 40):at]
    return bytes(body)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=mutated_bodies(), data=st.data())
def test_mutated_valid_bodies(body: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    whole = _run(body, [])
    assert whole[0] == _run(body, cuts)[0]


@settings(max_examples=150, deadline=None)
@given(body=bodies, size=st.integers(1, 100))
def test_iter_parts_pull_api(body: bytes, size: int) -> None:
    """The pull API over a stream: parts or BadRequest, and it always terminates."""
    source = io.BytesIO(body)
    calls = 0

    def read(n: int) -> bytes:
        nonlocal calls
        calls += 1
        assert calls <= len(body) + 3, "read() called after the end of input"
        return source.read(n)

    try:
        for part in mp.iter_parts(read, B, size):
            for chunk in part.iter_chunks():
                assert chunk
    except BadRequest:
        pass


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.text(max_size=120), st.sampled_from([
    'multipart/related; type="application/dicom"; boundary=',
    'multipart/related; type="application/dicom"; boundary="',
    'multipart/related; type="application/dicom"; boundary="\\"',
    'multipart/related; type="application/dicom; boundary=x"',
    "multipart/related; type=application/dicom; boundary=" + "b" * 300,
    "multipart/related; type=application/dicom; boundary=caf\u00e9",
    "multipart/related; type=application/dicom; boundary=\x00",
])))
def test_request_content_type(value: str) -> None:
    """A request Content-Type gives a usable boundary or 415, nothing else."""
    try:
        boundary = mp.multipart_boundary(value)
    except UnsupportedMediaType:
        return
    mp.MultipartReader(boundary)  # whatever was accepted is a valid boundary


@pytest.mark.parametrize("line", [b"X: " + b"a" * 5000, b"X: a\r\n" * 2000])
def test_header_block_is_bounded(line: bytes) -> None:
    """An endless header block (one long line, or many lines) is refused as it grows."""
    reader = mp.MultipartReader(B, max_header_size=MAX_HEADER)
    reader.feed(b"--" + BB + b"\r\n")
    with pytest.raises(BadRequest, match="exceed"):
        for start in range(0, len(line), 100):
            reader.feed(line[start:start + 100])
            assert len(reader._buf) <= BUFFER_BOUND


def test_default_header_limit_applies_to_requests() -> None:
    """iter_parts (what STOW uses) has a header limit too: 1 MB of headers is a 400."""
    body = b"--" + BB + b"\r\n" + b"X-Filler: " + b"a" * (1 << 20) + b"\r\n\r\nD\r\n--" + BB + b"--"
    with pytest.raises(BadRequest, match="exceed"):
        list(mp.iter_parts(io.BytesIO(body).read, B))


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_pathological_inputs_stay_linear(chunk: int) -> None:
    """Look-alike delimiters, lone CRs and padding do not make the reader quadratic."""
    bodies = [
        b"--" + BB + b"\r\n\r\n" + (b"\r\n--" + BB + b"X") * 20000,
        b"--" + BB + b"\r\n\r\n" + b"\r" * 200000,
        b"--" + BB + b"\r\n\r\n" + (b"\r\n--" + BB[:-1]) * 20000,
        b"preamble" + (b"\n--" + BB + b"x") * 20000,
    ]
    for body in bodies:
        started = time.perf_counter()
        reader = mp.MultipartReader(B)
        for start in range(0, min(len(body), 200000 if chunk > 1 else 40000), chunk):
            reader.feed(body[start:start + chunk])
            assert len(reader._buf) <= max(16384 + 2, BUFFER_BOUND)
        assert time.perf_counter() - started < 10
