"""Remote server definitions (reference §7.1, §7.2) and the registry kept in the Index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.check_config import effective
from app.client import servers as mod
from app.client.servers import Server, ServerDefinitionError, ServerRegistry, parse_server
from backends import sqlite_index
from backends.base import Index
from tests.conftest import make_settings


def test_array_forms() -> None:
    assert parse_server(["http://a/dicom-web"]) == Server("http://a/dicom-web/")
    full = parse_server(["https://a/", "user", "pw"])
    assert (full.url, full.username, full.password) == ("https://a/", "user", "pw")
    assert parse_server(["a.example:8042"]).url == "a.example:8042/"  # no scheme: http


@pytest.mark.parametrize(("value", "problem"), [
    (["http://a", "user"], "The HTTP password is not provided"),
    ([], "1 or 3 items"),
    (["http://a", "u", "p", "x"], "1 or 3 items"),
    (["http://a", 1, "p"], "strings"),
    (["http://a", "", "p"], "Password is given without a Username"),
    ([""], "Empty URL"),
    (["ftp://a/"], "Bad URL"),
    (["http://a b/"], "white space"),
    ("http://a", "array"),
    ({"URL": 3}, "\"URL\" must be a string"),
    ({"Url": "http://a", "Password": "p"}, "without a Username"),
    ({"Url": "http://a", "Pkcs11": True}, "not supported"),
    ({"Url": "http://a", "Pkcs11": "no"}, "true or false"),
    ({"Url": "http://a", "Timeout": 1.5}, "Timeout"),
    ({"Url": "http://a", "Timeout": True}, "Timeout"),
    ({"Url": "http://a", "HttpHeaders": ["X"]}, "HttpHeaders"),
    ({"Url": "http://a", "HttpHeaders": {"X": "a\nB: c"}}, "invalid HTTP header"),
    ({"Url": "http://a", "HttpHeaders": {"X Y": "a"}}, "invalid HTTP header"),
    ({"Url": "http://a", "Other": 1.5}, "must be strings: Other"),
    ({"Url": "http://a", "Other": None}, "must be strings: Other"),
    ({"Url": "http://a", "ChunkedTransfers": "yes"}, "ChunkedTransfers"),
    ({"Url": "http://a", "HasWadoRsUniversalTransferSyntax": 2}, "Boolean"),
    ({"Url": "http://a", "CertificateKeyFile": "k.pem"}, "without CertificateFile"),
    ({"Url": "http://a", "CertificateFile": "/no/such/file.pem"}, "Cannot open certificate"),
])
def test_bad_definitions(value: object, problem: str) -> None:
    with pytest.raises(ServerDefinitionError, match=problem):
        parse_server(value)


def test_object_form_user_properties_and_flags(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    server = parse_server({
        "URL": "http://a", "Username": "u", "Password": "p", "Timeout": 7,
        "HttpHeaders": {"Authorization": "Bearer t"}, "CertificateFile": str(cert),
        "CertificateKeyPassword": "kp", "HasDelete": True, "ChunkedTransfers": "0",
        "Site": 42, "Label": "x", "Pkcs11": False})
    assert server.url == "http://a/" and server.timeout == 7
    assert server.properties == {"ChunkedTransfers": "0", "HasDelete": "1", "Label": "x",
                                 "Site": "42"}
    assert (server.has_delete, server.chunked_transfers, server.universal_transfer_syntax) \
        == (True, False, True)
    assert Server("http://a/").has_delete is False
    assert parse_server({"Url": "http://b", "URL": "http://ignored"}).url == "http://b/"


def test_public_form_hides_secrets() -> None:
    server = parse_server({"Url": "http://a", "Username": "u", "Password": "p",
                           "HttpHeaders": {"X-B": "1", "X-A": "2"}, "HasDelete": False},
                          check_files=False)
    assert server.public() == {"HasDelete": "0", "HttpHeaders": ["X-A", "X-B"],
                               "Password": None, "Pkcs11": False, "Timeout": 0,
                               "Url": "http://a/", "Username": "u"}
    with_cert = parse_server({"Url": "http://a", "CertificateFile": "c.pem",
                              "CertificateKeyFile": "k.pem", "CertificateKeyPassword": "kp"},
                             check_files=False)
    public = with_cert.public()
    assert public["CertificateFile"] == "c.pem"
    assert public["CertificateKeyFile"] is None and public["CertificateKeyPassword"] is None
    assert "kp" not in json.dumps(public)


def test_serialized_form_reads_back_the_same() -> None:
    server = parse_server({"Url": "http://a", "Username": "u", "Password": "p", "Timeout": 3,
                           "CertificateFile": "c.pem", "CertificateKeyFile": "k.pem",
                           "CertificateKeyPassword": "kp", "HttpHeaders": {"X": "1"},
                           "HasDelete": True}, check_files=False)
    assert parse_server(server.serialized(), check_files=False) == server


def test_section_errors_name_the_server(tmp_path: Path) -> None:
    with pytest.raises(ServerDefinitionError, match='server "b": Empty URL'):
        mod.parse_servers({"a": ["http://a"], "b": [""]})
    with pytest.raises(ServerDefinitionError, match="must be an object"):
        mod.parse_servers([["http://a"]])
    with pytest.raises(ServerDefinitionError, match="invalid server name"):
        mod.parse_servers({"a/b": ["http://a"]})


def test_check_config_masks_every_secret(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, DicomWeb={"Servers": {
        "a": ["http://a/", "user", "pw-array"],
        "b": {"Url": "http://b/", "Username": "u", "Password": "pw-object",
              "HttpHeaders": {"Authorization": "Bearer tok-header"}}}})
    shown = json.dumps(effective(settings))
    for secret in ("pw-array", "pw-object", "tok-header"):
        assert secret not in shown
    assert "Authorization" in shown


# --------------------------------------------------------------------------------------------
# Registry


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    found = sqlite_index(tmp_path)
    yield found
    found.close()


def test_registry_from_configuration_with_shared_changes(index: Index) -> None:
    config = {"b": ["http://b/"], "a": ["http://a/"]}
    first, second = ServerRegistry(config, False, index), ServerRegistry(config, False, index)
    assert list(first.all()) == ["a", "b"]
    first.put("c", parse_server(["http://c/", "u", "p"]))
    assert first.delete("a") and not first.delete("a")
    assert list(second.all()) == ["b", "c"]  # another worker sees the changes
    assert second.get("c") == Server("http://c/", "u", "p")
    assert list(ServerRegistry(config, False, index).all()) == ["b", "c"]  # a restart too
    # Another configuration: the REST changes made under the old one are dropped.
    changed = ServerRegistry({**config, "d": ["http://d/"]}, False, index)
    assert list(changed.all()) == ["a", "b", "d"]
    assert index.properties(mod.CHANGES_PREFIX) == {}


def test_registry_in_database_seeds_once(index: Index) -> None:
    registry = ServerRegistry({"a": ["http://a/", "u", "p"]}, True, index)
    assert registry.get("a") == Server("http://a/", "u", "p")
    stored = json.loads(index.properties(mod.DB_PREFIX)[mod.DB_PREFIX + "a"])
    assert stored["Password"] == "p"  # as Orthanc's global property 5468
    registry.delete("a")
    assert registry.all() == {}
    assert ServerRegistry({"a": ["http://a/"]}, True, index).all() == {}  # not re-seeded


def test_registry_skips_an_unreadable_stored_definition(index: Index,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    registry = ServerRegistry({}, True, index)
    registry.prepare()
    index.set_property(mod.DB_PREFIX + "broken", "{not json")
    index.set_property(mod.DB_PREFIX + "ok", json.dumps(["http://ok/"]))
    assert list(registry.all()) == ["ok"]
    assert "broken" in caplog.text
