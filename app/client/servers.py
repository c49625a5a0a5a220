"""Remote DICOMweb servers: their definitions (reference §7.1) and the registry every worker
and node shares (§7.2).

A definition is Orthanc's ``WebServiceParameters``: ``["url"]``, ``["url", "user",
"password"]``, or an object with the reserved keys below; any other key of the object is a
*user property*, kept as a string. Definitions are validated when they are read (at
start-up for the configuration, on ``PUT`` for the REST API): a bad one names the server and
the problem instead of being logged and skipped as Orthanc does.

Where definitions live (nothing only in one worker's memory):

- ``ServersInDatabase: true`` (Orthanc: global property 5468): in the Index properties
  :data:`DB_PREFIX` + name, seeded from the configuration's ``Servers`` the first time the
  Index holds none; ``PUT``/``DELETE`` write there.
- ``ServersInDatabase: false``: the configuration's ``Servers``, overlaid by the REST changes
  kept in the Index under :data:`CHANGES_PREFIX` + name (a definition, or ``null`` for a
  deletion), so that every worker sees them; they are dropped when the configuration's
  ``Servers`` section changes (its digest is kept in :data:`CHANGES_DIGEST`). Orthanc keeps
  such changes in one process's memory until it restarts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backends.base import BackendUnavailable, ResourceIndex

log = logging.getLogger(__name__)

# Reserved keys of the object form (Orthanc WebServiceParameters::IsReservedKey).
URL_KEYS = ("Url", "URL")
RESERVED = frozenset((*URL_KEYS, "Username", "Password", "CertificateFile",
                      "CertificateKeyFile", "CertificateKeyPassword", "Pkcs11", "HttpHeaders",
                      "Timeout"))
# User properties the client reads, with their defaults (reference §7.1). Orthanc accepts
# "true"/"1"/"false"/"0" (SerializationToolbox::ParseBoolean) and checks them when used;
# here a definition with another value is refused up front.
HAS_DELETE = "HasDelete"
CHUNKED_TRANSFERS = "ChunkedTransfers"
UNIVERSAL_TRANSFER_SYNTAX = "HasWadoRsUniversalTransferSyntax"
FLAGS = {HAS_DELETE: False, CHUNKED_TRANSFERS: True, UNIVERSAL_TRANSFER_SYNTAX: True}
_TRUE, _FALSE = ("true", "1"), ("false", "0")

# Index property names.
DB_PREFIX = "dicomweb-client.servers/"
DB_SEEDED = "dicomweb-client.servers-seeded"
CHANGES_PREFIX = "dicomweb-client.changes/"
CHANGES_DIGEST = "dicomweb-client.changes-digest"


class ServerDefinitionError(ValueError):
    """A server definition that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class Server:
    """One remote server, as Orthanc's ``WebServiceParameters`` holds it."""

    url: str  # always ends with "/"
    username: str = ""
    password: str = ""
    certificate_file: str = ""
    certificate_key_file: str = ""
    certificate_key_password: str = ""
    http_headers: Mapping[str, str] = field(default_factory=dict)
    timeout: int = 0  # seconds; 0: the global HttpTimeout
    properties: Mapping[str, str] = field(default_factory=dict)

    def flag(self, name: str) -> bool:
        """A boolean user property (validated when the definition was read)."""
        value = self.properties.get(name)
        return FLAGS[name] if value is None else value in _TRUE

    @property
    def has_delete(self) -> bool:
        return self.flag(HAS_DELETE)

    @property
    def chunked_transfers(self) -> bool:
        return self.flag(CHUNKED_TRANSFERS)

    @property
    def universal_transfer_syntax(self) -> bool:
        return self.flag(UNIVERSAL_TRANSFER_SYNTAX)

    def serialized(self) -> dict[str, Any]:
        """The object form with every secret (``Serialize(forceAdvanced, passwords)``): what
        the Index keeps, read back by :func:`parse_server`."""
        out: dict[str, Any] = {"Url": self.url}
        if self.username:
            out["Username"], out["Password"] = self.username, self.password
        if self.certificate_file:
            out["CertificateFile"] = self.certificate_file
            out["CertificateKeyFile"] = self.certificate_key_file
            out["CertificateKeyPassword"] = self.certificate_key_password
        out["Pkcs11"] = False
        out["Timeout"] = self.timeout
        out["HttpHeaders"] = dict(self.http_headers)
        out.update(self.properties)
        return out

    def public(self) -> dict[str, Any]:
        """Orthanc's ``FormatPublic`` (``GET {root}servers?expand``, reference §7.2): no
        secret, header names only, user properties as strings; keys sorted as jsoncpp
        prints them."""
        out: dict[str, Any] = {"Url": self.url}
        if self.username:
            out["Username"], out["Password"] = self.username, None
        if self.certificate_file:
            out["CertificateFile"] = self.certificate_file
            out["CertificateKeyFile"] = out["CertificateKeyPassword"] = None
        out["Pkcs11"] = False
        out["Timeout"] = self.timeout
        out["HttpHeaders"] = sorted(self.http_headers)
        out.update(self.properties)
        return dict(sorted(out.items()))


# --------------------------------------------------------------------------------------------
# Parsing


def parse_server(value: Any, *, check_files: bool = True) -> Server:
    """A definition in either form (reference §7.1); :class:`ServerDefinitionError` if it
    is unusable. ``check_files``: the client certificate files must exist (Orthanc checks
    them when a request is sent)."""
    if isinstance(value, list):
        return _simple(value)
    if isinstance(value, dict):
        return _advanced(value, check_files)
    raise ServerDefinitionError("a server is defined by an array [url] or [url, username, "
                                "password], or by an object with \"Url\"")


def _simple(value: list[Any]) -> Server:
    if len(value) == 2:
        raise ServerDefinitionError("The HTTP password is not provided")
    if len(value) not in (1, 3):
        raise ServerDefinitionError(f"an array definition has 1 or 3 items, not {len(value)}")
    if not all(isinstance(item, str) for item in value):
        raise ServerDefinitionError("the items of an array definition must be strings")
    url = _url(value[0])
    if len(value) == 1:
        return Server(url)
    return _credentials(Server(url), value[1], value[2])


def _credentials(server: Server, username: str, password: str) -> Server:
    if password and not username:
        raise ServerDefinitionError("a Password is given without a Username")
    return Server(server.url, username, password)


def _url(url: str) -> str:
    """Orthanc's ``SetUrl``: http(s) only when a scheme is given; a "/" is appended."""
    if not url:
        raise ServerDefinitionError("Empty URL")
    if "://" in url and not url.startswith(("http://", "https://")):
        raise ServerDefinitionError(f"Bad URL (only http:// and https://): {url[:200]}")
    if any(c in url for c in "\r\n\t "):
        raise ServerDefinitionError("Bad URL: it contains white space")
    return url if url.endswith("/") else url + "/"


def _string(value: dict[str, Any], key: str) -> str:
    item = value.get(key, "")
    if not isinstance(item, str):
        raise ServerDefinitionError(f"\"{key}\" must be a string")
    return item


def _advanced(value: dict[str, Any], check_files: bool) -> Server:
    url = _url(_string(value, "Url") or _string(value, "URL"))
    base = _credentials(Server(url), _string(value, "Username"), _string(value, "Password"))
    pkcs11 = value.get("Pkcs11", False)
    if not isinstance(pkcs11, bool):
        raise ServerDefinitionError("\"Pkcs11\" must be true or false")
    if pkcs11:
        raise ServerDefinitionError(
            "\"Pkcs11\": true (a client key on a hardware token) is not supported by this "
            "server; give the client certificate as CertificateFile and CertificateKeyFile")
    certificate = _certificate(value, check_files)
    return Server(base.url, base.username, base.password, *certificate,
                  http_headers=_headers(value.get("HttpHeaders", {})),
                  timeout=_timeout(value.get("Timeout", 0)),
                  properties=_properties(value))


def _certificate(value: dict[str, Any], check_files: bool) -> tuple[str, str, str]:
    file = _string(value, "CertificateFile")
    key_file = _string(value, "CertificateKeyFile")
    password = _string(value, "CertificateKeyPassword")
    if not file:
        if key_file or password:
            raise ServerDefinitionError("CertificateKeyFile or CertificateKeyPassword is given "
                                        "without CertificateFile")
        return "", "", ""
    if check_files:
        for what, path in (("certificate", file), ("key", key_file)):
            if path and not os.path.isfile(path):
                raise ServerDefinitionError(f"Cannot open {what} file: {path}")
    return file, key_file, password


def _headers(headers: Any) -> dict[str, str]:
    if not isinstance(headers, dict):
        raise ServerDefinitionError("\"HttpHeaders\" must be an object of strings")
    return check_headers(headers, "HttpHeaders")


def check_headers(headers: dict[str, Any], what: str) -> dict[str, str]:
    """An object of string → string usable as HTTP headers (no line break: a header
    injected into an outgoing request could forge another)."""
    for name, value in headers.items():
        if not isinstance(value, str):
            raise ServerDefinitionError(f"\"{what}\": the value of \"{name}\" must be a string")
        if not name or any(c in name for c in "\r\n: \t") or "\r" in value or "\n" in value:
            raise ServerDefinitionError(f"\"{what}\": invalid HTTP header \"{name[:80]}\"")
    return dict(headers)


def _timeout(timeout: Any) -> int:
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise ServerDefinitionError("\"Timeout\" must be a non-negative integer (seconds)")
    return timeout


def _properties(value: dict[str, Any]) -> dict[str, str]:
    """User properties: strings kept, booleans "1"/"0", integers in decimal (Orthanc
    ``FromAdvancedFormat``); the flags the client reads must be booleans."""
    out: dict[str, str] = {}
    for key in sorted(value):
        if key in RESERVED:
            continue
        item = value[key]
        if isinstance(item, bool):
            out[key] = "1" if item else "0"
        elif isinstance(item, int | str):
            out[key] = str(item)
        else:
            raise ServerDefinitionError(f"User-defined properties associated with a Web "
                                        f"service must be strings: {key}")
        if key in FLAGS and out[key] not in _TRUE + _FALSE:
            raise ServerDefinitionError(f"\"{key}\" must be a Boolean (true, false, \"1\" or "
                                        f"\"0\"), found: {out[key][:40]}")
    return out


def parse_servers(value: Any, *, check_files: bool = True) -> dict[str, Server]:
    """The ``DicomWeb.Servers`` section; the error names the server at fault."""
    if not isinstance(value, dict):
        raise ServerDefinitionError("must be an object: server name → definition")
    servers = {}
    for name, definition in value.items():
        check_name(name)
        try:
            servers[name] = parse_server(definition, check_files=check_files)
        except ServerDefinitionError as exc:
            raise ServerDefinitionError(f"server \"{name}\": {exc}") from None
    return servers


def check_name(name: str) -> None:
    if not name or "/" in name:
        raise ServerDefinitionError(f"invalid server name \"{name}\" (empty, or with a \"/\" "
                                    "that no URL can address)")


# --------------------------------------------------------------------------------------------
# The shared registry


def config_digest(raw: Any) -> str:
    """What identifies the configuration's ``Servers`` section."""
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ServerRegistry:
    """Every server definition, read afresh from the Index at each call (another worker or
    node may have changed them): see the module docstring for where they live."""

    def __init__(self, configured: Any, in_database: bool, index: ResourceIndex) -> None:
        self._raw = configured
        self._configured = parse_servers(configured, check_files=False)
        self._in_database = in_database
        self._index = index
        self._prepared = False
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Once per process, before the first use: seed the Index from the configuration
        (ServersInDatabase), or drop REST changes made under another configuration."""
        if self._prepared:
            return
        with self._lock:
            if self._prepared:
                return
            if self._in_database:
                self._seed()
            else:
                self._drop_stale_changes()
            self._prepared = True

    def try_prepare(self) -> None:
        """At app creation: an unreachable Index is retried at the first request."""
        try:
            self.prepare()
        except BackendUnavailable as exc:
            log.warning("DICOMweb servers: the index is unavailable, retried later: %s", exc)

    def _seed(self) -> None:
        if self._index.properties(DB_SEEDED):
            return
        if not self._index.properties(DB_PREFIX):
            for name, server in self._configured.items():
                self._index.set_property(DB_PREFIX + name, json.dumps(server.serialized()))
            log.info("DICOMweb servers: %d copied from the configuration into the index",
                     len(self._configured))
        self._index.set_property(DB_SEEDED, "1")

    def _drop_stale_changes(self) -> None:
        digest = config_digest(self._raw)
        stored = self._index.properties(CHANGES_DIGEST).get(CHANGES_DIGEST)
        if stored == digest:
            return
        changes = self._index.properties(CHANGES_PREFIX)
        for name in changes:
            self._index.set_property(name, None)
        if changes:
            log.info("DICOMweb servers: the configuration's Servers changed; %d change(s) "
                     "made through the REST API dropped", len(changes))
        self._index.set_property(CHANGES_DIGEST, digest)

    def all(self) -> dict[str, Server]:
        """Every server by name, sorted by name (Orthanc lists them from a std::map)."""
        self.prepare()
        if self._in_database:
            servers = self._read(DB_PREFIX)
        else:
            servers = dict(self._configured)
            for name, server in self._read(CHANGES_PREFIX, deletions=True).items():
                if server is None:
                    servers.pop(name, None)
                else:
                    servers[name] = server
        return dict(sorted((k, v) for k, v in servers.items() if v is not None))

    def _read(self, prefix: str, deletions: bool = False) -> dict[str, Server | None]:
        out: dict[str, Server | None] = {}
        for key, text in self._index.properties(prefix).items():
            name = key[len(prefix):]
            try:
                raw = json.loads(text)
                out[name] = None if raw is None and deletions else parse_server(
                    raw, check_files=False)
            except (ValueError, ServerDefinitionError) as exc:
                log.error("DICOMweb server \"%s\" in the index is unreadable, skipped: %s",
                          name, exc)
        return out

    def get(self, name: str) -> Server | None:
        return self.all().get(name)

    def put(self, name: str, server: Server) -> None:
        """Create or replace (atomic; the last writer wins)."""
        check_name(name)
        self.prepare()
        prefix = DB_PREFIX if self._in_database else CHANGES_PREFIX
        self._index.set_property(prefix + name, json.dumps(server.serialized()))

    def delete(self, name: str) -> bool:
        """Remove a server; False if there was none of that name."""
        if name not in self.all():
            return False
        if self._in_database:
            self._index.set_property(DB_PREFIX + name, None)
        else:
            self._index.set_property(CHANGES_PREFIX + name, "null")
        return True
