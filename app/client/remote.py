"""Requests to a remote DICOMweb server (reference §7.3), with ``requests``.

What Orthanc's core ``HttpClient`` does, configured from the server definition and the
global options: the URL is the server's ``Url`` + ``/`` + the URI with duplicate slashes
collapsed; headers are the server's ``HttpHeaders`` then the request's (the request wins);
HTTP Basic when a username is set; a client certificate (its key may be encrypted:
``CertificateKeyPassword``); ``HttpProxy``, ``HttpsVerifyPeers``, ``HttpsCACertificates``.
Bodies and answers stream: nothing here holds a whole study.

Remote failures become the errors of ``app.errors`` (Orthanc ``HttpClient::ThrowException``):
400 → 400, 401/403 → 401, 404 → 404; any other status, and a server that cannot be reached,
→ 502 naming the remote status (Orthanc: 500); no answer within the timeout → 504. The
messages name the server, never its URL or credentials.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import certifi
import requests
import urllib3
from requests.adapters import HTTPAdapter

from app.client.servers import Server
from app.errors import (
    BadGateway,
    BadRequest,
    DicomWebError,
    GatewayTimeout,
    NotFound,
    Unauthorized,
)

# Orthanc ErrorCode numbers (OrthancFramework Enumerations.h) of the failures raised here.
BAD_REQUEST, NETWORK_PROTOCOL, TIMEOUT, UNKNOWN_RESOURCE, UNAUTHORIZED = 8, 9, 16, 17, 29
_CODES = {400: BAD_REQUEST, 401: UNAUTHORIZED, 404: UNKNOWN_RESOURCE, 504: TIMEOUT}
_ERROR_EXCERPT = 4096  # bytes of a remote error body read to explain it
_CREDENTIALS_IN_URL = re.compile(r"(://)[^/@\s]+@")
_QUERY_SAFE = "*?,"  # QIDO's wildcards and list separator, left unencoded (build_uri)


def orthanc_code(error: DicomWebError) -> int:
    """The Orthanc ErrorCode a job reports for a failure of this HTTP status."""
    return _CODES.get(error.status, NETWORK_PROTOCOL)


@dataclass(frozen=True)
class HttpOptions:
    """Orthanc's global options for outgoing requests (reference §2.2)."""

    timeout: int = 60  # HttpTimeout; 0: none
    proxy: str = ""  # HttpProxy, e.g. "proxy.local:3128" or "http://user:pw@proxy:3128"
    verify_peers: bool = True  # HttpsVerifyPeers
    ca_certificates: str = ""  # HttpsCACertificates (PEM bundle); "": certifi's

    @classmethod
    def from_settings(cls, settings: Any) -> HttpOptions:
        return cls(settings.HttpTimeout, settings.HttpProxy, settings.HttpsVerifyPeers,
                   settings.HttpsCACertificates)


# --------------------------------------------------------------------------------------------
# URL and headers


def build_uri(uri: str, arguments: Mapping[str, str] | None = None) -> str:
    """``uri`` plus its GET arguments, keys sorted, keys and values URI-encoded, an empty
    value giving a bare key (Orthanc ``DicomWebServers::UriEncode``). Arguments belong in
    their own field: a ``?`` in ``uri`` is refused.

    ``*``, ``?`` and ``,`` stay as they are (RFC 3986 allows them in a query): they are
    QIDO's wildcards and list separator (PS3.18 §8.3.4), and some servers (Orthanc 1.10)
    do not decode ``%2A`` or ``%2C``, which made wildcard and list lookups match nothing."""
    if "?" in uri:
        raise BadRequest("The GET arguments must be provided in a separate field (explicit "
                         f"\"?\" is disallowed): {uri[:200]}")
    pairs = [quote(k, safe=_QUERY_SAFE) + ("=" + quote(v, safe=_QUERY_SAFE) if v else "")
             for k, v in sorted((arguments or {}).items())]
    return uri + ("?" + "&".join(pairs) if pairs else "")


def join_url(base: str, uri: str) -> str:
    """``base`` + ``/`` + ``uri``, duplicate slashes collapsed except after ``scheme://``
    (a URL without a scheme is http, as libcurl reads it)."""
    if "://" not in base:
        base = "http://" + base
    scheme, _, rest = base.partition("://")
    path, query = f"{rest}/{uri}", ""
    if "?" in path:
        path, query = path.split("?", 1)
        query = "?" + query
    return f"{scheme}://{re.sub('/{2,}', '/', path)}{query}"


def merge_headers(*layers: Mapping[str, str] | None) -> dict[str, str]:
    """Headers of several layers; a later layer wins on the same name, whatever its case."""
    merged: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for name, value in (layer or {}).items():
            merged[name.lower()] = (name, value)
    return dict(merged.values())


def has_header(headers: Mapping[str, str] | None, name: str) -> bool:
    return any(key.lower() == name.lower() for key in (headers or {}))


# --------------------------------------------------------------------------------------------
# TLS


class _TlsAdapter(HTTPAdapter):
    """Every HTTPS connection uses one prepared ``SSLContext``: the client key can then be
    encrypted (``load_cert_chain(password=...)``; ``requests`` alone takes only plain keys)
    and never has to be written anywhere decrypted."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **kwargs)


def _no_password() -> bytes:
    # An encrypted key without CertificateKeyPassword fails instead of OpenSSL prompting on
    # the terminal.
    return b""


# --------------------------------------------------------------------------------------------
# The client


class Remote:
    """One remote server as configured; :meth:`request` sends one request."""

    def __init__(self, name: str, server: Server, options: HttpOptions) -> None:
        self.name = name
        self.server = server
        self.options = options
        self.received = 0  # bytes of answer bodies read through :meth:`reader`

    @property
    def timeout(self) -> int | None:
        """The server's ``Timeout``, else ``HttpTimeout``; applied to the connection and to
        each read (a transfer that keeps flowing is never cut; Orthanc limits the whole
        request)."""
        return self.server.timeout or self.options.timeout or None

    @contextmanager
    def request(self, method: str, uri: str, *, headers: Mapping[str, str] | None = None,
                body: bytes | Iterable[bytes] | None = None) -> Iterator[requests.Response]:
        """Send a request; yields the response (2xx) with its body not read yet, closed on
        exit. A non-2xx answer or a transport failure raises (module docstring)."""
        url = join_url(self.server.url, uri)
        session = requests.Session()
        session.trust_env = False  # the configuration alone decides (proxy, CA, auth)
        try:
            if url.startswith("https://"):
                session.mount("https://", _TlsAdapter(self._ssl_context()))
            response = self._send(session, method, url, headers, body)
            try:
                if not 200 <= response.status_code < 300:
                    raise self._status_error(response)
                yield response
            finally:
                response.close()
        finally:
            session.close()

    def _send(self, session: requests.Session, method: str, url: str,
              headers: Mapping[str, str] | None, body: Any) -> requests.Response:
        proxy = self.options.proxy
        try:
            return session.request(
                method, url, data=body, stream=True, allow_redirects=method == "GET",
                headers=merge_headers({"Accept-Encoding": "identity"},
                                      self.server.http_headers, headers),
                auth=(self.server.username, self.server.password)
                if self.server.username else None,
                timeout=(self.timeout, self.timeout),
                proxies={"http": proxy, "https": proxy} if proxy else None,
                verify=self.options.verify_peers)
        except requests.Timeout:
            raise self._timed_out() from None
        except requests.RequestException as exc:
            if _timed_out(exc):
                raise self._timed_out() from None
            raise BadGateway(f"Cannot reach the DICOMweb server \"{self.name}\" "
                             f"({_kind(exc)})", details=self._clean(str(exc))) from None

    def _timed_out(self) -> GatewayTimeout:
        return GatewayTimeout(f"The DICOMweb server \"{self.name}\" did not answer within "
                              f"{self.timeout} s")

    def _status_error(self, response: requests.Response) -> DicomWebError:
        status = response.status_code
        details = self._excerpt(response)
        where = f"The DICOMweb server \"{self.name}\""
        if status == 400:
            return BadRequest(f"{where} answered 400 Bad Request", details=details)
        if status in (401, 403):
            return Unauthorized(f"{where} refused the request ({status}): check the "
                                "Username/Password or HttpHeaders of its definition",
                                details=details)
        if status == 404:
            return NotFound(f"{where} answered 404 Not Found", details=details)
        return BadGateway(f"{where} answered HTTP {status} {response.reason or ''}".rstrip(),
                          details=details)

    def _excerpt(self, response: requests.Response) -> str | None:
        """The start of a remote error body (its ``Message`` when it is Orthanc's JSON)."""
        try:
            text = response.raw.read(_ERROR_EXCERPT, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError):
            return None
        text = text.decode("utf-8", "replace").strip()
        found = re.search(r'"Message"\s*:\s*"((?:[^"\\]|\\.)*)"', text)
        return self._clean(found.group(1) if found else text[:300]) or None

    def _clean(self, text: str) -> str:
        """No credentials in a message: URL userinfo and the configured secrets masked."""
        text = _CREDENTIALS_IN_URL.sub(r"\1***@", text)
        for secret in (self.server.password, self.server.certificate_key_password):
            if secret:
                text = text.replace(secret, "***")
        return text

    def reader(self, response: requests.Response) -> Callable[[int], bytes]:
        """``read(n)`` of the answer body for a streaming parser; transport failures on the
        way are 502/504 like those of the request; bytes are counted in ``received``."""

        def read(size: int) -> bytes:
            try:
                data: bytes = response.raw.read(size, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                raise self._timed_out() from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise BadGateway(f"The answer of the DICOMweb server \"{self.name}\" broke "
                                 f"off ({type(exc).__name__})",
                                 details=self._clean(str(exc))) from None
            self.received += len(data)
            return data

        return read

    def _ssl_context(self) -> ssl.SSLContext:
        """Peers verified with HttpsCACertificates (else certifi's bundle) unless
        HttpsVerifyPeers is false; the client certificate of the definition, if any."""
        if self.options.verify_peers:
            context = ssl.create_default_context(
                cafile=self.options.ca_certificates or certifi.where())
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        server = self.server
        if server.certificate_file:
            try:
                context.load_cert_chain(server.certificate_file,
                                        server.certificate_key_file or None,
                                        server.certificate_key_password or _no_password)
            except (OSError, ssl.SSLError) as exc:
                raise DicomWebError(
                    f"Cannot load the client certificate of the DICOMweb server "
                    f"\"{self.name}\" (wrong CertificateKeyPassword, or not PEM files?)",
                    details=type(exc).__name__) from None
        return context


def _timed_out(exc: BaseException) -> bool:
    """requests reports some read timeouts as connection errors: look at the causes."""
    return any(_is_timeout(e) for e in _causes(exc))


def _is_timeout(exc: BaseException) -> bool:
    # urllib3's NewConnectionError (refused, unknown host) derives from ConnectTimeoutError.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (causes, contexts, urllib3 ``reason``, exception args)."""
    stack: list[Any] = [exc]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]


def _kind(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failure"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy failure"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__
