"""Sans-IO ``multipart/related`` reader and streaming writer.

Framing follows RFC 2046 §5.1.1 and RFC 2387, as used by DICOMweb for multipart
payloads (PS3.18 §8.6) and STOW-RS requests (PS3.18 §10.5). Nothing here does I/O
on its own: :class:`MultipartReader` is fed bytes and returns events,
:func:`iter_parts` pulls from a ``read`` callable, and :func:`stream` yields the
bytes of a response lazily. Body bytes are never held whole; the reader keeps
only the few trailing bytes that might begin a delimiter.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from app.dicom.media_types import parse_content_type, split_outside_quotes
from app.errors import BadRequest, UnsupportedMediaType

__all__ = [
    "PART_TAIL",
    "Event",
    "Finished",
    "MultipartReader",
    "Part",
    "PartData",
    "PartEnd",
    "PartStart",
    "closing",
    "content_type",
    "iter_parts",
    "multipart_boundary",
    "new_boundary",
    "parse_content_type",
    "part_head",
    "split_outside_quotes",
    "stream",
]

PART_TAIL = b"\r\n"
"""Bytes closing every part body; with the next ``--boundary`` they form the delimiter."""

_MAX_BOUNDARY = 200  # RFC 2046 says 70; accept a little more from lax clients.
_MAX_PADDING = 1024  # transport padding tolerated after a boundary (RFC 2046 §5.1.1)
_TOKEN_SPECIALS = frozenset('()<>@,;:\\"/[]?= \t')


def multipart_boundary(value: str, part_type: str | None = "application/dicom") -> str:
    """Check a request's ``multipart/related`` Content-Type and return its boundary.

    Rules of PS3.18 §10.5.1 as applied by Orthanc (reference §5.1): the media type
    must be ``multipart/related``, the ``type`` parameter (compared without its own
    parameters, case-insensitively) must be ``part_type`` unless that is ``None``,
    and a non-empty boundary is required. Any failure, including a Content-Type
    that does not parse, is :class:`UnsupportedMediaType` (415).
    """
    try:
        media, params = parse_content_type(value)
        declared = parse_content_type(params["type"])[0] if "type" in params else None
    except BadRequest as error:
        raise UnsupportedMediaType(f"Malformed Content-Type: {error.message}") from None
    if media != "multipart/related":
        raise UnsupportedMediaType(f"Expected multipart/related, got {media!r}")
    if part_type is not None and declared != part_type.lower():
        raise UnsupportedMediaType(
            f'The type parameter of multipart/related must be "{part_type}", got {declared!r}'
        )
    boundary = params.get("boundary", "")
    _boundary_bytes(boundary)
    return boundary


def _boundary_bytes(boundary: str) -> bytes:
    """Validate a boundary (RFC 2046 §5.1.1, leniently) and return ``--boundary``."""
    if not boundary or len(boundary) > _MAX_BOUNDARY:
        raise UnsupportedMediaType(f"Invalid multipart boundary {boundary[:80]!r}")
    if not all(" " <= char <= "~" for char in boundary):
        raise UnsupportedMediaType("Multipart boundary contains non-printable characters")
    return b"--" + boundary.encode("ascii")


# --------------------------------------------------------------------------- #
# Reader events
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, slots=True)
class PartStart:
    """A part's headers were read; names are lowercased (RFC 2046 §5.1.1)."""

    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class PartData:
    """A non-empty slice of the current part's body, in order."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    """The delimiter ending the current part was seen."""


@dataclass(frozen=True, slots=True)
class Finished:
    """The close delimiter ``--boundary--`` was seen; the epilogue is ignored."""


Event = PartStart | PartData | PartEnd | Finished


# --------------------------------------------------------------------------- #
# Delimiter scanning
# --------------------------------------------------------------------------- #


class _Kind(Enum):
    NEXT = "next"  # delimiter line ends: a part follows
    CLOSE = "close"  # close delimiter: --boundary--
    INCOMPLETE = "incomplete"  # delimiter seen, the bytes deciding its kind not yet
    DATA = "data"  # looks like a delimiter but is followed by other bytes
    NONE = "none"  # no delimiter in the buffer


class _Match(NamedTuple):
    pos: int  # bytes before ``pos`` are certainly not part of a delimiter
    end: int  # for NEXT/CLOSE: first byte after the delimiter line
    kind: _Kind


def _classify_tail(buf: bytearray, start: int) -> tuple[_Kind, int]:
    """Decide what the bytes after a delimiter make of it (RFC 2046 §5.1.1 grammar).

    ``--`` makes a close delimiter; optional spaces/tabs then CRLF (or a bare LF,
    tolerated) make a part delimiter; anything else means the bytes were data.
    """
    tail = buf[start : start + 2]
    if tail == b"--":
        return _Kind.CLOSE, start + 2
    if tail == b"-" or not tail:
        return _Kind.INCOMPLETE, start
    end = start
    while end < len(buf) and buf[end] in b" \t":
        end += 1
    if end - start > _MAX_PADDING:
        raise BadRequest("Too much transport padding after a multipart boundary")
    tail = buf[end : end + 2]
    if tail == b"\r\n":
        return _Kind.NEXT, end + 2
    if tail[:1] == b"\n":
        return _Kind.NEXT, end + 1
    if tail in (b"", b"\r"):
        return _Kind.INCOMPLETE, start
    return _Kind.DATA, start


def _partial_start(buf: bytearray, delimiter: bytes, start: int) -> int:
    """Index of the earliest buffer suffix that is a proper prefix of ``delimiter``."""
    first = delimiter[:1]
    index = max(start, len(buf) - len(delimiter) + 1)
    while (index := buf.find(first, index)) >= 0:
        if delimiter.startswith(buf[index:]):
            return index
        index += 1
    return len(buf)


def _find_delimiter(buf: bytearray, delimiter: bytes) -> _Match:
    """Find the first real delimiter in ``buf`` (skipping look-alikes that are data)."""
    search = 0
    while (index := buf.find(delimiter, search)) >= 0:
        kind, end = _classify_tail(buf, index + len(delimiter))
        if kind is not _Kind.DATA:
            return _Match(index, end, kind)
        search = index + 1
    return _Match(_partial_start(buf, delimiter, search), -1, _Kind.NONE)


# --------------------------------------------------------------------------- #
# Part headers
# --------------------------------------------------------------------------- #


def _find_header_end(buf: bytearray, scan_from: int) -> tuple[int, int] | tuple[None, int]:
    """Find the empty line ending a header block.

    Returns ``(block_end, body_start)``, or ``(None, resume_at)`` when more bytes
    are needed; ``resume_at`` is the start of the incomplete line.
    """
    line_start = scan_from
    while (newline := buf.find(b"\n", line_start)) >= 0:
        if buf[line_start:newline] in (b"", b"\r"):
            return line_start, newline + 1
        line_start = newline + 1
    return None, line_start


def _add_header(headers: dict[str, str], line: str) -> str:
    """Add one ``Name: value`` line; returns the lowercased name."""
    name, sep, value = line.partition(":")
    name = name.strip().lower()
    if not sep or not name:
        raise BadRequest(f"Malformed header line in multipart body: {line[:80]!r}")
    value = value.strip()
    headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return name


def _parse_headers(block: bytes) -> dict[str, str]:
    """Parse a part's header block: CRLF or LF line ends, obs-fold continuations."""
    headers: dict[str, str] = {}
    last: str | None = None
    for raw_line in block.decode("latin-1").split("\n"):
        line = raw_line.removesuffix("\r")
        if not line.strip():
            continue
        if line[0] in " \t":
            if last is None:
                raise BadRequest("Multipart part headers start with a continuation line")
            headers[last] = f"{headers[last]} {line.strip()}"
        else:
            last = _add_header(headers, line)
    return headers


# --------------------------------------------------------------------------- #
# The reader
# --------------------------------------------------------------------------- #


class _State(Enum):
    PREAMBLE = "preamble"
    HEADERS = "headers"
    BODY = "body"
    DONE = "done"


class MultipartReader:
    """Incremental ``multipart/related`` parser (RFC 2046 §5.1.1; PS3.18 §8.6, §10.5).

    Feed it bytes with :meth:`feed` and call :meth:`close` at end of input. The
    preamble and the epilogue are ignored. A part delimiter is CRLF ``--boundary``
    (the first one may lack the CRLF), then optional spaces/tabs and CRLF; the
    close delimiter is ``--boundary--``. A delimiter look-alike followed by other
    bytes (``\\r\\n--boundaryX``) is treated as part data. Content-Length headers
    are not trusted: the delimiter alone ends a part.
    """

    def __init__(self, boundary: str, max_header_size: int = 16384) -> None:
        dash_boundary = _boundary_bytes(boundary)
        self._boundary = boundary
        self._delimiter = b"\r\n" + dash_boundary
        # The first delimiter may open the body: a virtual LF precedes the preamble.
        self._first_delimiter = b"\n" + dash_boundary
        self._max_header_size = max_header_size
        self._buf = bytearray(b"\n")
        self._state = _State.PREAMBLE
        self._header_scan = 0

    @property
    def finished(self) -> bool:
        """True once the close delimiter has been seen."""
        return self._state is _State.DONE

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data`` and return the events it completes, in order."""
        if self._state is _State.DONE:
            return []
        self._buf += data
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> list[Event]:
        """Signal end of input; :class:`BadRequest` unless the body was complete."""
        if self._state is not _State.DONE:
            raise BadRequest(
                f"Multipart body ended before the closing boundary --{self._boundary}--"
            )
        return []

    def _step(self, events: list[Event]) -> bool:
        """Run the current state once; True when another step may make progress."""
        if self._state is _State.PREAMBLE:
            return self._step_preamble(events)
        if self._state is _State.HEADERS:
            return self._step_headers(events)
        if self._state is _State.BODY:
            return self._step_body(events)
        return False

    def _step_preamble(self, events: list[Event]) -> bool:
        match = _find_delimiter(self._buf, self._first_delimiter)
        if match.kind in (_Kind.NONE, _Kind.INCOMPLETE):
            del self._buf[: match.pos]
            return False
        if match.kind is _Kind.CLOSE:
            self._finish(events)
            return False
        del self._buf[: match.end]
        self._state = _State.HEADERS
        return True

    def _step_headers(self, events: list[Event]) -> bool:
        block_end, resume = _find_header_end(self._buf, self._header_scan)
        # Header lines count, the empty line ending them (at most CRLF) does not.
        size = block_end if block_end is not None else len(self._buf) - 2
        if size > self._max_header_size:
            raise BadRequest(f"Multipart part headers exceed {self._max_header_size} bytes")
        if block_end is None:
            self._header_scan = resume
            return False
        events.append(PartStart(_parse_headers(bytes(self._buf[:block_end]))))
        del self._buf[:resume]
        self._header_scan = 0
        self._state = _State.BODY
        return True

    def _step_body(self, events: list[Event]) -> bool:
        match = _find_delimiter(self._buf, self._delimiter)
        if match.pos:
            events.append(PartData(bytes(self._buf[: match.pos])))
        if match.kind in (_Kind.NONE, _Kind.INCOMPLETE):
            del self._buf[: match.pos]
            return False
        events.append(PartEnd())
        if match.kind is _Kind.CLOSE:
            self._finish(events)
            return False
        del self._buf[: match.end]
        self._state = _State.HEADERS
        return True

    def _finish(self, events: list[Event]) -> None:
        events.append(Finished())
        self._buf.clear()
        self._state = _State.DONE


# --------------------------------------------------------------------------- #
# Pull-style convenience
# --------------------------------------------------------------------------- #


class _Pump:
    """Pulls events out of a reader, reading more input only when needed."""

    def __init__(self, read: Callable[[int], bytes], reader: MultipartReader, size: int) -> None:
        self._read = read
        self._reader = reader
        self._size = size
        self._events: deque[Event] = deque()

    def next_event(self) -> Event:
        """The next event; :class:`Finished` again if asked after the end."""
        while not self._events:
            if self._reader.finished:
                return Finished()
            data = self._read(self._size)
            self._events.extend(self._reader.feed(data) if data else self._reader.close())
        return self._events.popleft()


class Part:
    """One part of a multipart body: ``headers`` plus its body via :meth:`iter_chunks`."""

    def __init__(self, headers: dict[str, str], pump: _Pump) -> None:
        self.headers = headers
        self._pump = pump
        self._done = False
        self._iterated = False

    def iter_chunks(self) -> Iterator[bytes]:
        """Yield the body bytes as they arrive; may be called once."""
        if self._iterated:
            raise RuntimeError("Part.iter_chunks() may only be called once")
        self._iterated = True
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        while not self._done:
            event = self._pump.next_event()
            if isinstance(event, PartData):
                yield event.data
            else:
                self._done = True

    def drain(self) -> None:
        """Discard whatever is left of this part's body."""
        while not self._done:
            if not isinstance(self._pump.next_event(), PartData):
                self._done = True


def iter_parts(
    read: Callable[[int], bytes], boundary: str, chunk_size: int = 65536
) -> Iterator[Part]:
    """Iterate over the parts of a multipart body pulled with ``read(n)`` (PS3.18 §10.5).

    ``read`` returns ``b""`` at end of input. Each part's chunks must be read
    before the next part is produced; whatever the caller leaves is drained.
    Reading stops at the close delimiter; a body that ends before it raises
    :class:`BadRequest`. An invalid boundary raises :class:`UnsupportedMediaType`
    at once, before any iteration.
    """
    return _parts(_Pump(read, MultipartReader(boundary), chunk_size))


def _parts(pump: _Pump) -> Iterator[Part]:
    """Produce parts from the pump, draining each one before the next."""
    while True:
        event = pump.next_event()
        if isinstance(event, Finished):
            return
        if isinstance(event, PartStart):
            part = Part(event.headers, pump)
            yield part
            part.drain()


# --------------------------------------------------------------------------- #
# Writer (PS3.18 §8.6; framing as Orthanc, reference §4.2)
# --------------------------------------------------------------------------- #


def new_boundary() -> str:
    """A fresh boundary: two uuid4 hex strings joined by ``-`` (65 characters)."""
    return f"{uuid.uuid4().hex}-{uuid.uuid4().hex}"


def _quote(value: str) -> str:
    """Quote ``value`` as an RFC 9110 quoted-string."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def content_type(part_type: str, boundary: str) -> str:
    """Response Content-Type for a multipart/related body (PS3.18 §8.6, §8.7.3).

    ``type`` is always quoted since it contains ``/``; it is the whole part media
    type, parameters included (reference §4.2).
    """
    needs_quotes = not boundary or any(char in _TOKEN_SPECIALS for char in boundary)
    shown = _quote(boundary) if needs_quotes else boundary
    return f"multipart/related; type={_quote(part_type)}; boundary={shown}"


def _check_header_text(text: str) -> None:
    if "\r" in text or "\n" in text:
        raise ValueError(f"Line break in a multipart header: {text!r}")


def part_head(boundary: str, headers: dict[str, str]) -> bytes:
    """``--boundary`` CRLF, the header lines and the empty line opening a part body."""
    lines = [f"--{boundary}\r\n"]
    for name, value in headers.items():
        _check_header_text(name)
        _check_header_text(value)
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def closing(boundary: str) -> bytes:
    """The close delimiter line ``--boundary--`` CRLF."""
    return f"--{boundary}--\r\n".encode("latin-1")


def body_length(boundary: str, heads: Iterable[dict[str, str]]) -> int | None:
    """Length of the body :func:`stream` writes, if every part declares Content-Length.

    Lets a response carry ``Content-Length`` instead of chunked framing, which is
    cheaper for both ends of a large WADO-RS retrieval.
    """
    total = len(closing(boundary))
    for headers in heads:
        size = headers.get("Content-Length")
        if size is None:
            return None
        total += len(part_head(boundary, headers)) + int(size) + len(PART_TAIL)
    return total


def stream(
    boundary: str, parts: Iterable[tuple[dict[str, str], Iterable[bytes]]]
) -> Iterator[bytes]:
    """Yield a whole multipart body lazily: each part's head, chunks and tail, then the close.

    Nothing is pulled from ``parts`` or from a part's chunks before the consumer
    asks for the next bytes, so each part is sent as soon as it is ready
    (reference §4.2). Empty chunks are skipped.
    """
    for headers, chunks in parts:
        yield part_head(boundary, headers)
        for chunk in chunks:
            if chunk:
                yield chunk
        yield PART_TAIL
    yield closing(boundary)
