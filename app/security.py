"""Who may talk to the server: the remote-access guard, HTTP Basic authentication and
roles, in one ``before_request`` hook on the whole application (every blueprint, the
routes to come, unknown URLs and the static route alike).

The hook, in this order, for every request:

1. **Remote access** (``RemoteAccessAllowed``/``RemoteAccessEnabled`` false): the client
   must be on this host. ``REMOTE_ADDR`` must be loopback (127.0.0.0/8, ::1), and so must
   every address named by ``X-Forwarded-For``, ``X-Real-IP`` or ``Forwarded: for=`` (a
   reverse proxy on the same host forwarding outside clients); anything else, including
   ``unknown`` or an obfuscated name, answers 403. The server binds 127.0.0.1 then; this
   catches a proxy that was put in front of it by mistake.
2. **CORS preflight**: an ``OPTIONS`` request carrying ``Origin`` and
   ``Access-Control-Request-Method`` passes without credentials (browsers never send them
   on a preflight); it reads nothing.
3. **Authentication** (``settings.authentication``: ``AuthenticationEnabled``, or when
   unset the value of remote access, as Orthanc ≥ 1.5.8): HTTP Basic credentials checked
   against ``RegisteredUsers``; missing, malformed or wrong ones answer 401 with
   ``WWW-Authenticate: Basic realm="<Name>"``. The answer is the same for an unknown user
   and a wrong password, and takes the same time (an unknown user is checked against a
   dummy of the same kind).
4. **Role** (ours, ``UserRoles``; only with authentication) allows the method, else 403:

   ============  ==============================  ==========================================
   role          methods                         services
   ============  ==============================  ==========================================
   read-only     GET, HEAD, OPTIONS              QIDO-RS, WADO-RS, WADO-URI
   read-write    + POST, PUT                     + STOW-RS (the role of unlisted users)
   admin         every method (+ DELETE)         + DELETE
   ============  ==============================  ==========================================

   POST ``/tools/find`` and ``/tools/lookup`` (Orthanc's searches) only read: every role
   may call them (:data:`READ_ENDPOINTS`).

``RegisteredUsers`` values are plain passwords (Orthanc's format, compared in constant time)
or ``pbkdf2_sha256$<iterations>$<salt base64>$<hash base64>`` (ours: PBKDF2-HMAC-SHA256,
``dicomweb-server hash-password`` makes one). A value that looks like a hash but is not one
of ours stops start-up rather than becoming a password equal to the hash text.

PBKDF2 costs ~0.2 s per check at 600,000 iterations, and a viewer sends hundreds of
requests: each worker remembers the credentials it has verified (a keyed HMAC of user and
password, never the password; bounded LRU) so that only the first request of a user pays.
A hit only ever answers "yes" to credentials already proved right, so it tells an attacker
nothing the status code does not; misses all pay the full price.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import hmac
import ipaddress
import os
import re
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TextIO

from flask import Flask, g, request

from app.errors import ConfigurationError, Forbidden, Unauthorized
from app.settings import Settings

SCHEME = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000
MIN_ITERATIONS = 1_000
MAX_ITERATIONS = 100_000_000
HASH_FORMAT = f"{SCHEME}$<iterations>$<salt base64>$<hash base64>"
DEFAULT_ROLE = "read-write"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# None: every method.
ROLE_METHODS: dict[str, frozenset[str] | None] = {
    "read-only": READ_METHODS,
    "read-write": READ_METHODS | {"POST", "PUT"},
    "admin": None,
}
# Endpoints that only read though their method is POST (a search body): any role may
# call them. Explicit names, so that a new POST route is a write unless listed here.
READ_ENDPOINTS: frozenset[str] = frozenset({"orthanc_api.find", "orthanc_api.lookup"})
CACHE_SIZE = 1024
# Values that are meant as a hash of some scheme (ours misformed, or passlib/crypt/Django
# ones this server does not read): refused rather than taken as a plain password.
_LOOKS_HASHED = re.compile(
    r"^(\$(2[abxy]?|argon2\w*|pbkdf2[\w-]*|scrypt|[156]|y|sha\d+)\$"
    r"|(pbkdf2|argon2|bcrypt|scrypt)[\w-]*\$)", re.IGNORECASE)
_LOOPBACK_TEXT = frozenset({"127.0.0.1", "::1"})


# --------------------------------------------------------------------------- #
# Password hashes
# --------------------------------------------------------------------------- #

@dataclass(frozen=True)
class PasswordHash:
    """One ``pbkdf2_sha256$…`` value of RegisteredUsers."""

    iterations: int
    salt: bytes
    digest: bytes

    def verify(self, password: bytes) -> bool:
        candidate = hashlib.pbkdf2_hmac("sha256", password, self.salt, self.iterations,
                                        len(self.digest))
        return hmac.compare_digest(candidate, self.digest)


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS,
                  salt: bytes | None = None) -> str:
    """The RegisteredUsers value for ``password``: PBKDF2-HMAC-SHA256, 16 random bytes of
    salt, 32 bytes of hash, both in standard base64."""
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return (f"{SCHEME}${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def parse_hash(value: str) -> PasswordHash:
    """A ``pbkdf2_sha256$iterations$salt$hash`` value; ValueError naming what is wrong."""
    parts = value.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        raise ValueError(f"a password hash must be {HASH_FORMAT}")
    _, iterations, salt, digest = parts
    if not iterations.isascii() or not iterations.isdigit():
        raise ValueError(f"iterations {iterations[:20]!r} is not a number ({HASH_FORMAT})")
    count = int(iterations)
    if not MIN_ITERATIONS <= count <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    salt_bytes, digest_bytes = _b64(salt, "salt"), _b64(digest, "hash")
    if len(salt_bytes) < 8:
        raise ValueError("the salt must be at least 8 bytes")
    if len(digest_bytes) < 16:
        raise ValueError("the hash must be at least 16 bytes")
    return PasswordHash(count, salt_bytes, digest_bytes)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {what} is not base64 ({HASH_FORMAT})") from None


def _is_hash(value: str) -> bool:
    return value.startswith(SCHEME + "$") or bool(_LOOKS_HASHED.match(value))


# --------------------------------------------------------------------------- #
# Configuration checks (check-config, serve, create_app)
# --------------------------------------------------------------------------- #

def problems(settings: Settings) -> list[str]:
    """What stops start-up in RegisteredUsers, UserRoles and AuthenticationEnabled."""
    out = []
    for user, value in settings.RegisteredUsers.items():
        if not user:
            out.append("RegisteredUsers: an empty user name cannot log in")
        elif ":" in user:
            out.append(f'RegisteredUsers: user "{user}": a user name cannot contain ":" '
                       "(HTTP Basic authentication)")
        if not value and settings.authentication:
            out.append(f'RegisteredUsers: user "{user}" has an empty password')
        elif _is_hash(value):
            try:
                parse_hash(value)
            except ValueError as exc:
                out.append(f'RegisteredUsers: user "{user}": malformed password hash: {exc}')
    for user in settings.UserRoles:
        if user not in settings.RegisteredUsers:
            out.append(f'UserRoles: user "{user}" is not in RegisteredUsers (a misspelt '
                       "name would leave the real user with the default role)")
    if settings.authentication and not settings.RegisteredUsers:
        why = ("AuthenticationEnabled is true" if settings.AuthenticationEnabled else
               "AuthenticationEnabled defaults to true because remote access is allowed")
        out.append(f"{why} but RegisteredUsers is empty: nobody could log in (add users, "
                   'or set "AuthenticationEnabled": false behind an authenticating proxy)')
    return out


def check(settings: Settings) -> None:
    """Every security and audit problem of the configuration, in one ConfigurationError
    (``app.check_config`` runs this for check-config and serve)."""
    from app import audit

    found = problems(settings) + audit.problems(settings)
    if found:
        raise ConfigurationError("; ".join(found))


# --------------------------------------------------------------------------- #
# Credentials
# --------------------------------------------------------------------------- #

class Users:
    """RegisteredUsers, ready to check credentials in constant time per kind of entry."""

    def __init__(self, registered: dict[str, str]) -> None:
        self._entries: dict[str, bytes | PasswordHash] = {
            user: parse_hash(value) if _is_hash(value) else value.encode()
            for user, value in registered.items()}
        hashed = [e for e in self._entries.values() if isinstance(e, PasswordHash)]
        # An unknown user costs what a known one does: the slowest hash if any user has
        # one (mixing plain and hashed users lets timing tell the kinds apart: use one).
        self._dummy: bytes | PasswordHash = (
            PasswordHash(max(h.iterations for h in hashed), os.urandom(16), os.urandom(32))
            if hashed else os.urandom(32))
        self._key = os.urandom(32)  # per process: the cache means nothing outside it
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, user: str, password: str) -> bool:
        entry = self._entries.get(user)
        known = entry is not None
        stored = entry if entry is not None else self._dummy
        secret = password.encode()
        if isinstance(stored, PasswordHash):
            token = hmac.new(self._key, user.encode() + b"\0" + secret, "sha256").digest()
            with self._lock:
                if token in self._verified:
                    self._verified.move_to_end(token)
                    return True
            if not (stored.verify(secret) and known):
                return False
            with self._lock:
                self._verified[token] = None
                while len(self._verified) > CACHE_SIZE:
                    self._verified.popitem(last=False)
            return True
        # Digests first: compare_digest on unequal lengths would tell the length.
        same = hmac.compare_digest(hashlib.sha256(secret).digest(),
                                   hashlib.sha256(stored).digest())
        return same and known

    def __contains__(self, user: str) -> bool:
        return user in self._entries


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic`` header, None when it is not one.
    Credentials are UTF-8 (RFC 7617), else Latin-1 (older browsers)."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    user, colon, password = text.partition(":")
    if not colon or not user:
        return None
    return user, password


def role_allows(role: str, method: str) -> bool:
    methods = ROLE_METHODS[role]
    return methods is None or method.upper() in methods


# --------------------------------------------------------------------------- #
# Remote access
# --------------------------------------------------------------------------- #

def is_loopback(text: str) -> bool:
    """Whether an address as written in REMOTE_ADDR or a forwarding header (maybe quoted,
    bracketed, with a port) is a loopback address; anything unparsable is not."""
    host = text.strip().strip('"').strip()
    if host in _LOOPBACK_TEXT:
        return True
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:  # IPv4 with a port
        host = host.partition(":")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def forwarded_clients(headers: object) -> list[str]:
    """Every client address a proxy named: X-Forwarded-For and X-Real-IP lists, and the
    ``for=`` parameters of every ``Forwarded`` element (RFC 7239)."""
    getlist = headers.getlist  # type: ignore[attr-defined]
    out = [item.strip() for name in ("X-Forwarded-For", "X-Real-IP")
           for value in getlist(name) for item in value.split(",") if item.strip()]
    for value in getlist("Forwarded"):
        for element in value.split(","):
            for pair in element.split(";"):
                key, eq, item = pair.partition("=")
                if eq and key.strip().lower() == "for":
                    out.append(item.strip())
    return out


def local_client() -> bool:
    """The request comes from this host and was not forwarded for another one."""
    if not is_loopback(request.remote_addr or ""):
        return False
    return all(is_loopback(client) for client in forwarded_clients(request.headers))


# --------------------------------------------------------------------------- #
# The hook
# --------------------------------------------------------------------------- #

def is_preflight() -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def request_user() -> str | None:
    """The user named by the request's credentials when it is a registered one (the status
    says whether the password was right), else None. For the audit log."""
    return g.get("dicomweb_user")


def install_security(app: Flask, settings: Settings) -> None:
    """Register the hook (see the module docstring for its order). Register it before any
    other ``before_request`` hook so that nothing answers before it. Raises
    ConfigurationError on an unusable RegisteredUsers / UserRoles."""
    found = problems(settings)
    if found:
        raise ConfigurationError("; ".join(found))
    remote = settings.remote_access
    authentication = settings.authentication
    users = Users(settings.RegisteredUsers)
    roles = dict(settings.UserRoles)
    realm = _realm(settings.Name)

    @app.before_request
    def _guard() -> None:
        if not remote and not local_client():
            raise Forbidden("Remote access is disabled: this server only answers clients "
                            "on its own host (RemoteAccessAllowed is false)")
        if is_preflight() or not authentication:
            return
        credentials = basic_credentials(request.headers.get("Authorization", ""))
        challenge = {"WWW-Authenticate": f'Basic realm="{realm}"'}
        if credentials is None:
            raise Unauthorized("Authentication required (HTTP Basic)", headers=challenge)
        user, password = credentials
        if user in users:
            g.dicomweb_user = user
        if not users.check(user, password):
            raise Unauthorized("Wrong user name or password", headers=challenge)
        role = roles.get(user, DEFAULT_ROLE)
        if not role_allows(role, request.method) and request.endpoint not in READ_ENDPOINTS:
            raise Forbidden(f'The role "{role}" of user "{user}" does not allow '
                            f"{request.method} requests")


def _realm(name: str) -> str:
    """The server's Name as a quoted-string: ASCII, no quote or backslash."""
    text = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in name)
    return text or "DICOMweb"


# --------------------------------------------------------------------------- #
# dicomweb-server hash-password
# --------------------------------------------------------------------------- #

def hash_password_command(iterations: int = DEFAULT_ITERATIONS,
                          stdin: TextIO | None = None, stdout: TextIO | None = None,
                          stderr: TextIO | None = None) -> int:
    """Read a password (a prompt asked twice on a terminal, else the first line of stdin)
    and print its RegisteredUsers value. 0 printed, 1 the two entries differ, 2 refused."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        print(f"dicomweb-server: --iterations must be between {MIN_ITERATIONS} and "
              f"{MAX_ITERATIONS}", file=stderr)
        return 2
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            print("dicomweb-server: the passwords differ", file=stderr)
            return 1
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        print("dicomweb-server: empty password refused", file=stderr)
        return 2
    print(hash_password(password, iterations), file=stdout)
    return 0
