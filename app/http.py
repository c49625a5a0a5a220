"""HTTP edge helpers shared by the blueprints: public URLs, query pairs, streaming.

Only request/response plumbing lives here; DICOM decisions stay in ``app.dicom``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Response, request, stream_with_context

from app.dicom import multipart
from app.settings import DicomWeb

# A host[:port] as it may appear in Host / X-Forwarded-Host / Forwarded; anything else
# is ignored rather than reflected into the URLs we generate.
_HOST = re.compile(r"^[A-Za-z0-9.\-_]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def base_url(headers: Mapping[str, str], dicomweb: DicomWeb, scheme: str = "http") -> str:
    """Absolute prefix of RetrieveURL, BulkDataURI and Content-Location (reference §4.9).

    First match wins: the ``Host`` setting; ``X-Forwarded-Host`` with
    ``X-Forwarded-Proto``; the first ``Forwarded`` element (RFC 7239); the ``Host``
    header; ``localhost:8042``. The path is ``PublicRoot`` (default: ``Root``). The scheme
    is https with ``DicomWeb.Ssl`` or when the request came over TLS (``SslEnabled``:
    ``scheme`` is the request's ``wsgi.url_scheme``), unless forwarded headers say.
    """
    scheme = "https" if dicomweb.Ssl or scheme == "https" else "http"
    host = dicomweb.Host or ""
    if not host:
        scheme, host = _from_headers(headers, scheme)
    return f"{scheme}://{host}{dicomweb.public_root}"


def _from_headers(headers: Mapping[str, str], scheme: str) -> tuple[str, str]:
    fwd_host = headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    fwd_proto = headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if fwd_host and fwd_proto in ("http", "https") and _HOST.match(fwd_host):
        return fwd_proto, fwd_host
    forwarded = _parse_forwarded(headers.get("Forwarded", ""))
    if _HOST.match(forwarded.get("host", "")):
        proto = forwarded.get("proto", "").lower()
        return (proto if proto in ("http", "https") else scheme), forwarded["host"]
    host = headers.get("Host", "")
    return scheme, host if _HOST.match(host) else "localhost:8042"


def _parse_forwarded(value: str) -> dict[str, str]:
    """First element of an RFC 7239 ``Forwarded`` header as a dict."""
    first = value.split(",")[0]
    pairs = (p.split("=", 1) for p in first.split(";") if "=" in p)
    return {k.strip().lower(): v.strip().strip('"') for k, v in pairs}


def request_base_url() -> str:
    from app.services import services

    return base_url(request.headers, services().settings.DicomWeb, request.scheme)


def query_pairs() -> list[tuple[str, str]]:
    """Decoded query parameters in order, repeated keys kept."""
    return list(request.args.items(multi=True))


def multipart_response(
    part_type: str,
    parts: Iterable[tuple[dict[str, str], Iterable[bytes]]],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Stream ``multipart/related`` parts (PS3.18 §8.6.1.2); headers are fixed before
    the first byte, so every 4xx decision must be taken before calling this.

    When ``parts`` is a list whose heads all give Content-Length (their bodies still
    lazy), the response gets a Content-Length instead of chunked framing.
    """
    boundary = multipart.new_boundary()
    response = Response(
        stream_with_context(multipart.stream(boundary, parts)),
        status=status,
        content_type=multipart.content_type(part_type, boundary),
        headers=headers,
        direct_passthrough=True,
    )
    if isinstance(parts, list):
        length = multipart.body_length(boundary, (head for head, _ in parts))
        if length is not None:
            response.content_length = length
    return response


class CollapseSlashes:
    """WSGI middleware: ``//`` in a path is treated as ``/`` (Orthanc does the same)."""

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if "//" in path:
            environ["PATH_INFO"] = re.sub(r"/{2,}", "/", path)
        return self.wsgi_app(environ, start_response)
