"""app.security without HTTP: password hashes, credentials, roles, loopback detection,
configuration problems and ``dicomweb-server hash-password``."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from werkzeug.datastructures import Headers

from app import cli, security
from app.check_config import extra_problems
from app.errors import ConfigurationError
from app.settings import parse_settings
from tests.conftest import make_settings

FAST = 1_000  # iterations: the format and the checks do not depend on the count


# --------------------------------------------------------------------------- #
# Hashes
# --------------------------------------------------------------------------- #

def test_hash_format_and_round_trip() -> None:
    value = security.hash_password("s3cret é", FAST)
    scheme, iterations, salt, digest = value.split("$")
    assert scheme == "pbkdf2_sha256" and iterations == str(FAST)
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    parsed = security.parse_hash(value)
    assert parsed.verify("s3cret é".encode())
    assert not parsed.verify(b"s3cret e")


def test_hash_is_salted() -> None:
    assert security.hash_password("x", FAST) != security.hash_password("x", FAST)


def test_default_iterations_are_600000() -> None:
    assert security.DEFAULT_ITERATIONS == 600_000
    assert security.hash_password("x").split("$")[1] == "600000"


def test_known_value() -> None:
    """The format is frozen: hashes written into configurations must keep verifying."""
    value = "pbkdf2_sha256$1000$c2FsdHNhbHQ=$KBJH0RIw+FCnOKJi2s/ppNgRHFTFzBjXqxs+xS3zHTY="
    assert security.hash_password("passwd", FAST, salt=b"saltsalt") == value
    assert security.parse_hash(value).verify(b"passwd")


def test_unpadded_base64_is_accepted() -> None:
    value = security.hash_password("pw", FAST).replace("=", "")
    assert security.parse_hash(value).verify(b"pw")


@pytest.mark.parametrize("value,problem", [
    ("pbkdf2_sha256$600000$c2FsdHNhbHQ=", "must be pbkdf2_sha256$<iterations>"),
    ("pbkdf2_sha256$lots$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==", "is not a number"),
    ("pbkdf2_sha256$-5$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==", "is not a number"),
    ("pbkdf2_sha256$10$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==", "between"),
    ("pbkdf2_sha256$600000$not base64!$aGFzaGhhc2hoYXNoaGFzaA==", "salt is not base64"),
    ("pbkdf2_sha256$600000$c2FsdHNhbHQ=$%%%", "hash is not base64"),
    ("pbkdf2_sha256$600000$c2E=$aGFzaGhhc2hoYXNoaGFzaA==", "salt must be at least"),
    ("pbkdf2_sha256$600000$c2FsdHNhbHQ=$aGFzaA==", "hash must be at least"),
    ("pbkdf2_sha256$600000$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==$x", "must be"),
])
def test_malformed_hashes_are_refused(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("$", r"\$")):
        security.parse_hash(value)
    settings = parse_settings({"RegisteredUsers": {"alice": value}})
    found = " ".join(extra_problems(settings))
    assert 'user "alice": malformed password hash' in found
    assert value not in found


@pytest.mark.parametrize("value", [
    "$pbkdf2-sha256$29000$N2bMufc$ZOgVfRK",  # passlib
    "pbkdf2_sha512$1000$abc$def",  # another digest
    "$2b$12$abcdefghijklmnopqrstuv",  # bcrypt
    "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    "$6$salt$hash",  # crypt SHA-512
])
def test_other_hash_schemes_are_refused_not_taken_as_passwords(value: str) -> None:
    problems = security.problems(parse_settings({"RegisteredUsers": {"alice": value}}))
    assert problems and "malformed password hash" in problems[0]


def test_plain_passwords_with_dollars_stay_plain() -> None:
    settings = parse_settings({"AuthenticationEnabled": True,
                               "RegisteredUsers": {"alice": "pa$$word", "bob": "$money"}})
    assert security.problems(settings) == []


# --------------------------------------------------------------------------- #
# Configuration problems (check-config, serve, create_app)
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("data,problem", [
    ({"AuthenticationEnabled": True}, "nobody could log in"),
    ({"RemoteAccessEnabled": True}, "defaults to true because remote access is allowed"),
    ({"AuthenticationEnabled": True, "RegisteredUsers": {"alice": ""}}, "empty password"),
    ({"RegisteredUsers": {"a:b": "x"}}, 'cannot contain ":"'),
    ({"RegisteredUsers": {"alice": "x"}, "UserRoles": {"Alice": "read-only"}},
     'UserRoles: user "Alice" is not in RegisteredUsers'),
])
def test_problems(data: dict, problem: str) -> None:
    settings = parse_settings(data)
    assert problem in " ".join(security.problems(settings))
    assert any(p.startswith("<dict>: Security: ") and problem in p
               for p in extra_problems(settings))


def test_create_app_refuses_the_same_problems(tmp_path: Path) -> None:
    from app import create_app

    with pytest.raises(ConfigurationError, match="nobody could log in"):
        create_app(make_settings(tmp_path, AuthenticationEnabled=True))
    with pytest.raises(ConfigurationError, match="malformed password hash"):
        create_app(make_settings(tmp_path, RegisteredUsers={"a": "pbkdf2_sha256$1$2$3"}))


def test_unknown_role_is_refused_by_the_schema() -> None:
    with pytest.raises(ConfigurationError, match="UserRoles"):
        parse_settings({"RegisteredUsers": {"a": "x"}, "UserRoles": {"a": "root"}})


def test_serve_stops_on_a_malformed_hash(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"RegisteredUsers": {"alice": "pbkdf2_sha256$x$y$z"}}')
    assert cli.main(["--config", str(config)]) == 2
    assert "malformed password hash" in capsys.readouterr().err


# --------------------------------------------------------------------------- #
# Credentials
# --------------------------------------------------------------------------- #

def basic(user: str, password: str, encoding: str = "utf-8") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode(encoding)).decode()


@pytest.mark.parametrize("header,expected", [
    (basic("alice", "pw"), ("alice", "pw")),
    (basic("alice", "p:w:"), ("alice", "p:w:")),
    (basic("alice", ""), ("alice", "")),
    (basic("zoé", "pé"), ("zoé", "pé")),
    (basic("zoé", "pé", "latin-1"), ("zoé", "pé")),
    ("basic " + base64.b64encode(b"a:b").decode(), ("a", "b")),
    ("Bearer abc", None),
    ("Basic", None),
    ("Basic !!!!", None),
    ("Basic " + base64.b64encode(b"no-colon").decode(), None),
    ("Basic " + base64.b64encode(b":pw").decode(), None),
    ("", None),
])
def test_basic_credentials(header: str, expected: tuple[str, str] | None) -> None:
    assert security.basic_credentials(header) == expected


def test_users_plain_and_hashed() -> None:
    users = security.Users({"alice": "plain", "bob": security.hash_password("hashed", FAST)})
    assert users.check("alice", "plain") and not users.check("alice", "plainx")
    assert not users.check("alice", "")
    assert users.check("bob", "hashed") and not users.check("bob", "hashedx")
    assert users.check("bob", "hashed")  # remembered: still right
    assert not users.check("carol", "plain") and not users.check("carol", "hashed")
    assert not users.check("bob", "plain")


def test_unknown_user_costs_a_hash_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit for an unknown user: the dummy hash is computed as for a known one."""
    users = security.Users({"bob": security.hash_password("hashed", FAST)})
    calls: list[int] = []
    verify = security.PasswordHash.verify

    def counting(self: security.PasswordHash, password: bytes) -> bool:
        calls.append(self.iterations)
        return verify(self, password)

    monkeypatch.setattr(security.PasswordHash, "verify", counting)
    assert not users.check("nobody", "hashed")
    assert calls == [FAST]


def test_verified_cache_is_bounded_and_keyed_by_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "CACHE_SIZE", 2)
    users = security.Users({"bob": security.hash_password("pw", FAST)})
    assert users.check("bob", "pw")
    assert not users.check("bob", "pw2")  # a cached right password admits no other
    assert len(users._verified) == 1
    for _ in range(3):
        assert users.check("bob", "pw")
    assert len(users._verified) <= 2
    assert all(b"pw" not in token for token in users._verified)


@pytest.mark.parametrize("role,allowed,refused", [
    ("read-only", {"GET", "HEAD", "OPTIONS"}, {"POST", "PUT", "DELETE", "PATCH"}),
    ("read-write", {"GET", "HEAD", "OPTIONS", "POST", "PUT"}, {"DELETE", "PATCH"}),
    ("admin", {"GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"}, set()),
])
def test_roles(role: str, allowed: set[str], refused: set[str]) -> None:
    assert all(security.role_allows(role, m) for m in allowed)
    assert not any(security.role_allows(role, m) for m in refused)


# --------------------------------------------------------------------------- #
# Remote access
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("text", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "[::1]:8080",
                                  '"[::1]:8080"', "127.0.0.1:5000", "::ffff:127.0.0.1",
                                  " 127.0.0.1 "])
def test_loopback(text: str) -> None:
    assert security.is_loopback(text)


@pytest.mark.parametrize("text", ["10.0.0.5", "203.0.113.9", "::2", "[2001:db8::1]:80",
                                  "::ffff:10.0.0.1", "unknown", "_hidden", "", "localhost",
                                  "[::1", "128.0.0.1"])
def test_not_loopback(text: str) -> None:
    assert not security.is_loopback(text)


def test_forwarded_clients_from_every_header() -> None:
    headers = Headers([("X-Forwarded-For", "203.0.113.9, 127.0.0.1"),
                       ("X-Forwarded-For", "10.1.1.1"),
                       ("X-Real-IP", "192.0.2.1"),
                       ("Forwarded", 'for=192.0.2.60;proto=http;by=203.0.113.43, '
                                     'For="[2001:db8:cafe::17]:4711"')])
    assert security.forwarded_clients(headers) == [
        "203.0.113.9", "127.0.0.1", "10.1.1.1", "192.0.2.1", "192.0.2.60",
        '"[2001:db8:cafe::17]:4711"']


# --------------------------------------------------------------------------- #
# dicomweb-server hash-password
# --------------------------------------------------------------------------- #

class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_hash_password_from_stdin() -> None:
    out, err = io.StringIO(), io.StringIO()
    status = security.hash_password_command(FAST, io.StringIO("pa ss\r\nignored\n"), out, err)
    assert status == 0 and err.getvalue() == ""
    value = out.getvalue().strip()
    assert security.parse_hash(value).verify(b"pa ss")


def test_hash_password_prompts_twice_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["one", "one"])
    monkeypatch.setattr(security.getpass, "getpass", lambda prompt: next(answers))
    out = io.StringIO()
    assert security.hash_password_command(FAST, _Tty(), out, io.StringIO()) == 0
    assert security.parse_hash(out.getvalue().strip()).verify(b"one")
    answers = iter(["one", "two"])
    err = io.StringIO()
    assert security.hash_password_command(FAST, _Tty(), io.StringIO(), err) == 1
    assert "differ" in err.getvalue()


def test_hash_password_refuses_empty_and_weak() -> None:
    err = io.StringIO()
    assert security.hash_password_command(FAST, io.StringIO("\n"), io.StringIO(), err) == 2
    assert "empty password" in err.getvalue()
    assert security.hash_password_command(10, io.StringIO("x\n"), io.StringIO(),
                                          io.StringIO()) == 2


def test_hash_password_subcommand(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    assert cli.main(["hash-password", "--iterations", "2000"]) == 0
    value = capsys.readouterr().out.strip()
    assert value.startswith("pbkdf2_sha256$2000$")
    assert security.parse_hash(value).verify(b"secret")
    settings = parse_settings({"AuthenticationEnabled": True,
                               "RegisteredUsers": {"alice": value}})
    assert extra_problems(settings) == []
