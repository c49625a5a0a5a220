"""The gunicorn worker ``dicomweb-server`` runs: gthread, plus Orthanc's ``HttpRequestTimeout``,
JSON error answers for what gunicorn refuses itself, and the TLS start-up check.

gunicorn's threaded worker reads request bodies and sends responses on a blocking socket
with no timeout, so a client that stops sending in the middle of a STOW, or stops reading a
WADO answer, holds a worker thread forever. Orthanc bounds both with SO_RCVTIMEO and
SO_SNDTIMEO set to ``HttpRequestTimeout``; this worker does the same once a request's
headers are in: a socket idle for that many seconds fails, and gunicorn closes it.

Requests gunicorn refuses before the application sees them (a header field longer than
``Limits.MaximumHeaderSize``, more fields than ``Limits.MaximumHeaderCount``, a request line
over 8190 bytes, malformed HTTP) are answered here in the application's JSON shape
(``HttpStatus``, ``HttpError``, ``Message``) instead of gunicorn's HTML page: 431 for the
header limits, 414 for the request line, 400 (or gunicorn's own status) for the rest.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker

from app.errors import ConfigurationError

REQUEST_LINE_LIMIT = 8190  # gunicorn's maximum (and default) request line


def _classes(*names: str) -> tuple[type[BaseException], ...]:
    """gunicorn's exception classes by name; the ones an older gunicorn lacks are skipped."""
    return tuple(getattr(errors, name) for name in names if hasattr(errors, name))


# A response header the application produced is its own fault (500), not the client's,
# although gunicorn derives these from its request-parsing errors.
_APPLICATION_ERRORS = _classes("InvalidResponseHeader", "InvalidResponseHeaderName")
# Client errors whose status is not 400 (gunicorn's choice, kept).
_STATUS = ((_classes("LimitRequestHeaders"), 431), (_classes("LimitRequestLine"), 414),
           (_classes("UnsupportedTransferCoding"), 501), (_classes("ExpectationFailed"), 417),
           (_classes("ForbiddenProxyRequest"), 403), (_classes("ConfigurationProblem"), 500))


class RequestTimeoutWorker(ThreadWorker):  # type: ignore[misc]
    request_timeout: float = 0.0  # seconds; 0 = no limit. Set before the workers fork.
    describe_errors: bool = True  # HttpDescribeErrors: false keeps only the status
    header_size: int = 8190  # Limits.MaximumHeaderSize and MaximumHeaderCount, for messages
    header_count: int = 100

    def handle_request(self, req: Any, conn: Any) -> Any:
        if self.request_timeout:
            conn.sock.settimeout(self.request_timeout)
        return super().handle_request(req, conn)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's ``handle_error`` (log, access log, answer, then gunicorn closes the
        connection), with a JSON answer."""
        addr = addr or ("", -1)  # unix socket
        if isinstance(exc, ssl.SSLError):
            # A failed TLS handshake (no or an untrusted client certificate...): a TLS
            # client could not read an answer on this socket; a plain HTTP client can.
            self.log.info("TLS handshake with %s failed: %s", addr[0], exc)
            if getattr(exc, "reason", None) == "HTTP_REQUEST":
                self._write(client, 400, "This server speaks HTTPS only (SslEnabled): "
                                         "the request came in plain HTTP", raw=True)
            return
        status, message = self._classify(exc)
        if status == 500:
            if hasattr(req, "uri"):
                self.log.exception("Error handling request %s %s",
                                   getattr(req, "method", ""), req.uri)
            else:
                self.log.exception("Error handling request (no URI read)")
        else:
            self.log.warning("Invalid request from ip=%s: %s", addr[0], exc)
        if req is None:
            req = getattr(exc, "req", None)
        length = self._write(client, status, message)
        if req is not None:
            self._access_log(req, client, addr, status, HTTPStatus(status).phrase, length)

    def _write(self, client: Any, status: int, message: str, raw: bool = False) -> int:
        """Send the JSON error answer and say how long its body was. ``raw``: on the socket
        under a TLS one whose handshake failed (plain HTTP on the TLS port)."""
        reason = HTTPStatus(status).phrase
        body: dict[str, Any] = {"HttpStatus": status, "HttpError": reason}
        if self.describe_errors:
            body["Message"] = message
        data = json.dumps(body).encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        try:
            if raw:
                socket.socket.sendall(client, head.encode("latin-1") + data)
            else:
                util.write_nonblock(client, head.encode("latin-1") + data)
        except Exception:
            self.log.debug("Failed to send error message.")
        return len(data)

    def _classify(self, exc: BaseException) -> tuple[int, str]:
        """Status and message of an error gunicorn raised while reading a request."""
        if isinstance(exc, _APPLICATION_ERRORS) or not isinstance(exc, errors.ParseException):
            return 500, "Internal server error"
        status = next((code for classes, code in _STATUS if isinstance(exc, classes)), 400)
        if status == 431:
            text = str(exc)
            if "size" in text:
                return status, (f"A request header field is longer than "
                                f"Limits.MaximumHeaderSize ({self.header_size} bytes)")
            if "buffer" in text:
                return status, "The request headers are too large altogether"
            return status, (f"More request header fields than Limits.MaximumHeaderCount "
                            f"({self.header_count})")
        if status == 414:
            return status, f"The request line is longer than {REQUEST_LINE_LIMIT} bytes"
        return status, f"Bad HTTP request: {type(exc).__name__}: {str(exc)[:200]}"

    def _access_log(self, req: Any, client: Any, addr: Any, status: int, reason: str,
                    length: int) -> None:
        from gunicorn.http.wsgi import Response, default_environ

        try:
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
            resp = Response(req, client, self.cfg)
            resp.status = f"{status} {reason}"
            resp.response_length = length
            self.log.access(resp, req, environ, timedelta())
        except Exception:
            self.log.debug("access log of a refused request failed", exc_info=True)


# --------------------------------------------------------------------------- #
# TLS (Orthanc's SslEnabled, SslCertificate, SslVerifyPeers, SslTrustedClientCertificates)
# --------------------------------------------------------------------------- #

_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----")


def check_tls(settings: Any) -> None:
    """With ``SslEnabled``: ``SslCertificate`` is one PEM file holding the certificate (chain)
    and its unencrypted private key, as Orthanc wants it; with ``SslVerifyPeers``,
    ``SslTrustedClientCertificates`` is a PEM bundle of the certificates (or CAs) whose
    clients are accepted. Raises :class:`ConfigurationError` naming the key otherwise, so
    that the server stops before gunicorn starts (relative paths: from the working
    directory)."""
    if not settings.SslEnabled:
        return
    path = settings.SslCertificate
    text = _read_pem(path, "SslCertificate")
    if _CERTIFICATE not in text:
        raise ConfigurationError(f"SslCertificate {path} holds no certificate "
                                 f"({_CERTIFICATE}); it must hold the certificate and its "
                                 "private key, as in Orthanc")
    if not _PRIVATE_KEY.search(text):
        raise ConfigurationError(f"SslCertificate {path} holds no private key; it must hold "
                                 "the certificate and its private key, as in Orthanc")
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text or "Proc-Type: 4,ENCRYPTED" in text:
        raise ConfigurationError(f"SslCertificate {path}: the private key is encrypted; the "
                                 "server cannot ask for its passphrase (store it unencrypted, "
                                 "readable by the server's user only)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(path, password=lambda: b"")
    except ssl.SSLError as exc:
        why = ("the private key does not match the certificate"
               if "KEY_VALUES_MISMATCH" in str(exc) else str(exc))
        raise ConfigurationError(f"SslCertificate {path}: not usable for TLS: {why}") from None
    try:
        context.set_ciphers(":".join(settings.SslCiphersAccepted or FIPS_CIPHERS))
    except ssl.SSLError:
        raise ConfigurationError("SslCiphersAccepted: none of the cipher suites is known to "
                                 f"OpenSSL: {settings.SslCiphersAccepted}") from None
    if not settings.SslVerifyPeers:
        return
    trusted = settings.SslTrustedClientCertificates
    if not trusted:
        raise ConfigurationError("SslVerifyPeers is true but SslTrustedClientCertificates is "
                                 "empty: name the PEM file of the trusted client certificates")
    if _CERTIFICATE not in _read_pem(trusted, "SslTrustedClientCertificates"):
        raise ConfigurationError(f"SslTrustedClientCertificates {trusted} holds no certificate "
                                 f"({_CERTIFICATE})")
    try:
        context.load_verify_locations(cafile=trusted)
    except ssl.SSLError as exc:
        raise ConfigurationError(f"SslTrustedClientCertificates {trusted}: not usable: {exc}") \
            from None


def _read_pem(path: str, key: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigurationError(f"{key} {path}: cannot be read ({exc.strerror})") from None


# Orthanc's default SslCiphersAccepted (FIPS 140-2 suites, OrthancServer/Sources/main.cpp).
FIPS_CIPHERS = (
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA256", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA",
    "DHE-RSA-AES256-SHA", "DHE-RSA-AES128-SHA", "AES256-SHA", "AES128-SHA",
)
# SslMinimumProtocolVersion (civetweb's ssl_protocol_version) → the oldest version accepted.
# 0 and 1 also allowed SSL 2 and 3, which Python's ssl module no longer speaks: TLS 1.0.
MINIMUM_VERSIONS = {0: ssl.TLSVersion.TLSv1, 1: ssl.TLSVersion.TLSv1, 2: ssl.TLSVersion.TLSv1,
                    3: ssl.TLSVersion.TLSv1_1, 4: ssl.TLSVersion.TLSv1_2,
                    5: ssl.TLSVersion.TLSv1_3}


def tls_options(settings: Any) -> dict[str, Any]:
    """gunicorn's TLS settings (after :func:`check_tls`)."""
    if not settings.SslEnabled:
        return {}
    options: dict[str, Any] = {"certfile": settings.SslCertificate,
                               "keyfile": settings.SslCertificate,
                               "ciphers": ":".join(settings.SslCiphersAccepted or FIPS_CIPHERS),
                               "ssl_context": _minimum_version(settings.SslMinimumProtocolVersion)}
    if settings.SslVerifyPeers:
        options["cert_reqs"] = ssl.CERT_REQUIRED
        options["ca_certs"] = settings.SslTrustedClientCertificates
    return options


def _minimum_version(level: int) -> Any:
    """gunicorn's ``ssl_context`` hook: its default context (certificate, ciphers, client
    certificates) with the oldest protocol version ``SslMinimumProtocolVersion`` allows."""

    def ssl_context(_config: Any, default_factory: Any) -> ssl.SSLContext:
        context: ssl.SSLContext = default_factory()
        context.minimum_version = MINIMUM_VERSIONS[level]
        return context

    return ssl_context
