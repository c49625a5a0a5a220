"""Unit tests for app.settings: Orthanc-style JSON with comments, validated by marshmallow."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from app.errors import ConfigurationError
from app.settings import (
    CONFIG_ENV,
    AwsS3StorageSchema,
    DicomWebSchema,
    GunicornSchema,
    PostgreSQLSchema,
    Settings,
    SettingsSchema,
    load_settings,
    parse_settings,
    strip_comments,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "settings.example.json"
S3_PG_EXAMPLE = EXAMPLE.with_name("settings.s3-postgresql.example.json")
# Sections that move the data off the machine; documented in S3_PG_EXAMPLE.
SHARED_BACKENDS = {"AwsS3Storage", "PostgreSQL"}


def write(tmp_path: Path, text: str | bytes, name: str = "orthanc.json") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, data: Any) -> str:
    """The message of the ConfigurationError raised by loading ``data`` from a file."""
    path = write(tmp_path, json.dumps(data))
    with pytest.raises(ConfigurationError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message  # always names the file
    return message


# --------------------------------------------------------------------------- #
# Comments
# --------------------------------------------------------------------------- #


def test_line_comments_are_removed() -> None:
    text = '{\n  // a comment\n  "HttpPort" : 8043 // trailing\n}'
    assert json.loads(strip_comments(text)) == {"HttpPort": 8043}


def test_block_comments_are_removed_even_over_several_lines() -> None:
    text = '/**\n * Header\n **/\n{ "A" : /* inline */ 1, /* two\n lines */ "B" : 2 }'
    assert json.loads(strip_comments(text)) == {"A": 1, "B": 2}


def test_block_comment_separates_tokens() -> None:
    assert strip_comments("1/**/2") == "1 2"


def test_comment_on_last_line_without_newline() -> None:
    assert json.loads(strip_comments('{"A" : 1} // end')) == {"A": 1}


@pytest.mark.parametrize("value", [
    "http://example.com/dicom-web/",
    "https://pacs//x",
    "/* not a comment */",
    "a // b",
    'quote \\" then // still a string',
    "back\\\\slash // ends properly",
])
def test_comment_markers_inside_strings_are_kept(value: str) -> None:
    decoded = json.loads(f'"{value}"')
    text = f'{{ "Url" : "{value}" // real comment\n}}'
    assert json.loads(strip_comments(text)) == {"Url": decoded}


def test_string_after_escaped_backslash_ends_at_the_quote() -> None:
    text = '{ "A" : "x\\\\", // comment "B" : 2\n "C" : 3 }'
    assert json.loads(strip_comments(text)) == {"A": "x\\", "C": 3}


def test_unterminated_block_comment_is_an_error() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        strip_comments('{ "A" : 1 /* never closed }')


def test_unterminated_block_comment_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '{ "HttpPort" : 8042 /* oops }')
    with pytest.raises(ConfigurationError, match="unterminated") as info:
        load_settings(path)
    assert str(path) in str(info.value)


def test_urls_in_a_file_survive_comment_stripping(tmp_path: Path) -> None:
    path = write(tmp_path, """{
      // Orthanc-style file
      "DicomWeb" : {
        "Host" : "pacs.example.org:8443", /* block */
        "PublicRoot" : "//proxy//dicom-web//",
        "Servers" : { "remote" : [ "http://remote:8042/dicom-web/" ] } // client
      }
    }""")
    settings = load_settings(path)
    assert settings.DicomWeb.Host == "pacs.example.org:8443"
    assert settings.DicomWeb.Servers == {"remote": ["http://remote:8042/dicom-web/"]}
    assert settings.DicomWeb.PublicRoot == "//proxy//dicom-web//"


# --------------------------------------------------------------------------- #
# settings.example.json documents every key
# --------------------------------------------------------------------------- #


def example_data(path: Path = EXAMPLE) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(strip_comments(path.read_text(encoding="utf-8")))
    return data


def test_example_loads() -> None:
    settings = load_settings(EXAMPLE)
    assert isinstance(settings, Settings)
    assert settings.source == str(EXAMPLE)
    assert settings.DicomWeb.root == "/dicom-web/"
    assert settings.Gunicorn.workers >= 1


def test_example_documents_every_top_level_key() -> None:
    """All but the S3 and PostgreSQL sections: the example runs on files + SQLite."""
    assert set(example_data()) == set(SettingsSchema().fields) - SHARED_BACKENDS


def test_example_documents_every_dicomweb_key() -> None:
    assert set(example_data()["DicomWeb"]) == set(DicomWebSchema().fields)


def test_example_documents_every_gunicorn_key() -> None:
    assert set(example_data()["Gunicorn"]) == set(GunicornSchema().fields)


def test_example_values_behave_as_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example shows the default of each key (paths are the no-file defaults).

    PublicRoot and QidoCaseSensitive default to "as another key": the example spells
    out the value that gives, so their effective values are compared.
    """
    example, defaults = load_settings(EXAMPLE), parse_settings({})
    assert example.Gunicorn == defaults.Gunicorn
    for key in set(DicomWebSchema().fields) - {"PublicRoot", "QidoCaseSensitive"}:
        assert getattr(example.DicomWeb, key) == getattr(defaults.DicomWeb, key), key
    assert example.DicomWeb.public_root == defaults.DicomWeb.public_root
    assert example.qido_case_sensitive == defaults.qido_case_sensitive
    # AuthenticationEnabled: the example spells out false, the default "unset" gives the same
    # (remote access is off): compare what they mean.
    assert example.authentication == defaults.authentication
    for key in set(SettingsSchema().fields) - {"StorageDirectory", "IndexDirectory",
                                               "DicomWeb", "Gunicorn", "Cors", "Limits",
                                               "AuthenticationEnabled"}:
        assert getattr(example, key) == getattr(defaults, key), key
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    no_file = load_settings()
    assert (example.storage_path, example.index_path) == (no_file.storage_path,
                                                          no_file.index_path)


# --------------------------------------------------------------------------- #
# settings.s3-postgresql.example.json documents both sections, key by key
# --------------------------------------------------------------------------- #


def test_s3_postgresql_example_loads_both_sections() -> None:
    settings = load_settings(S3_PG_EXAMPLE)
    assert settings.AwsS3Storage is not None and settings.PostgreSQL is not None
    assert settings.AwsS3Storage.BucketName == "dicomweb-example"
    assert settings.AwsS3Storage.AccessKey is None  # boto3's credential chain
    assert settings.PostgreSQL.EnableIndex
    assert settings.remote_access


def test_s3_postgresql_example_documents_every_key() -> None:
    data = example_data(S3_PG_EXAMPLE)
    assert SHARED_BACKENDS <= set(data)
    assert set(data["AwsS3Storage"]) == set(AwsS3StorageSchema().fields)
    assert set(data["PostgreSQL"]) == set(PostgreSQLSchema().fields)


def test_s3_postgresql_example_shows_the_defaults() -> None:
    """Every key but the ones a deployment must choose shows its default value."""
    example = load_settings(S3_PG_EXAMPLE)
    chosen = {"BucketName", "Region", "Host", "Database", "Username"}
    s3_defaults = AwsS3StorageSchema().load({"BucketName": "b"})
    pg_defaults = PostgreSQLSchema().load({})
    for key in set(s3_defaults) - chosen:
        assert getattr(example.AwsS3Storage, key) == s3_defaults[key], key
    for key in set(pg_defaults) - chosen - {"EnableIndex"}:
        assert getattr(example.PostgreSQL, key) == pg_defaults[key], key


def test_s3_postgresql_example_selects_s3_and_postgresql() -> None:
    """create_app's wiring picks both shared backends for this file (neither connects
    before its first use, so nothing is reached here)."""
    from app import build_index, build_storage
    from backends.index_postgres import PostgresIndex
    from backends.storage_compressed import CompressedStorage
    from backends.storage_s3 import S3Storage

    settings = load_settings(S3_PG_EXAMPLE)
    wrapper, index = build_storage(settings), build_index(settings)
    # Always behind the compression wrapper, which routes plain keys straight through.
    assert isinstance(wrapper, CompressedStorage) and not wrapper.compress
    storage = wrapper.inner
    assert isinstance(storage, S3Storage) and isinstance(index, PostgresIndex)
    assert (storage.bucket, storage.region, storage.endpoint) == ("dicomweb-example",
                                                                  "eu-west-1", None)
    index.close()


# --------------------------------------------------------------------------- #
# Validation: wrong types and unknown keys stop loading
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("data", "key"), [
    ({"HttpPort": "8042"}, "HttpPort"),
    ({"HttpPort": 8042.5}, "HttpPort"),
    ({"HttpPort": True}, "HttpPort"),
    ({"HttpPort": 70000}, "HttpPort"),
    ({"RemoteAccessEnabled": "yes"}, "RemoteAccessEnabled"),
    ({"ReadOnly": 1}, "ReadOnly"),
    ({"CaseSensitivePN": "false"}, "CaseSensitivePN"),
    ({"StorageDirectory": 3}, "StorageDirectory"),
    ({"StorageDirectory": None}, "StorageDirectory"),
    ({"Name": ["x"]}, "Name"),
    ({"DicomWeb": {"Enable": "true"}}, "DicomWeb.Enable"),
    ({"DicomWeb": {"Root": 5}}, "DicomWeb.Root"),
    ({"DicomWeb": {"Ssl": 0}}, "DicomWeb.Ssl"),
    ({"DicomWeb": {"QidoCaseSensitive": "no"}}, "DicomWeb.QidoCaseSensitive"),
    ({"DicomWeb": {"StudiesMetadataExtrapolatedTags": "Rows"}},
     "DicomWeb.StudiesMetadataExtrapolatedTags"),
    ({"DicomWeb": {"MetadataWorkerThreadsCount": "4"}}, "DicomWeb.MetadataWorkerThreadsCount"),
    ({"DicomWeb": {"WadoRsLoaderThreadsCount": 1.5}}, "DicomWeb.WadoRsLoaderThreadsCount"),
    ({"DicomWeb": []}, "DicomWeb"),
    ({"DicomWeb": None}, "DicomWeb"),
    ({"Gunicorn": {"Workers": "2"}}, "Gunicorn.Workers"),
    ({"Gunicorn": {"Threads": 0}}, "Gunicorn.Threads"),
    ({"Gunicorn": {"Timeout": -1}}, "Gunicorn.Timeout"),
])
def test_wrong_types_stop_loading_naming_file_and_key(
    tmp_path: Path, data: dict[str, Any], key: str
) -> None:
    message = load_error(tmp_path, data)
    assert f"{key}:" in message


@pytest.mark.parametrize(("section", "key"), [
    ("DicomWeb", "Enabled"),
    ("DicomWeb", "StowMaxInstance"),  # misspelt
    ("Gunicorn", "Worker"),
])
def test_unknown_keys_in_owned_sections_stop_loading(
    tmp_path: Path, section: str, key: str
) -> None:
    message = load_error(tmp_path, {section: {key: 1}})
    assert f"{section}.{key}:" in message


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"HttpPort": "x", "DicomWeb": {"Nope": 1, "Ssl": "y"}})
    assert "HttpPort:" in message
    assert "DicomWeb.Nope:" in message
    assert "DicomWeb.Ssl:" in message


def test_orthanc_keys_that_do_not_apply_are_accepted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, json.dumps({
        "HttpPort": 9000, "Plugins": ["/usr/share/orthanc/plugins"],
        "RegisteredUsers": {"alice": "secret"}, "DicomAet": "ORTHANC", "DicomPort": 4242,
    }))
    with caplog.at_level(logging.INFO, logger="app.settings"):
        settings = load_settings(path)
    assert settings.HttpPort == 9000
    logged = caplog.text
    assert "Plugins" in logged and "Orthanc plugins" in logged
    # One line per reason: both DIMSE keys on the same line, with why.
    (dimse,) = [line for line in logged.splitlines() if "DicomAet" in line]
    assert "DicomPort" in dimse and "DIMSE" in dimse
    assert str(path) in logged
    assert "secret" not in logged  # values are never logged
    assert "HttpPort" not in logged
    assert dict(settings.ignored)["DicomAet"].startswith("the DICOM network protocol")


@pytest.mark.parametrize("key,hint", [
    ("OverwriteInstance", "OverwriteInstances"), ("HttpPorts", "HttpPort"),
    ("storagedirectory", "StorageDirectory"), ("DicomAett", "DicomAet"),
])
def test_unknown_key_stops_with_a_suggestion(tmp_path: Path, key: str, hint: str) -> None:
    path = write(tmp_path, json.dumps({key: 1}))
    with pytest.raises(ConfigurationError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message and f'"{key}"' in message and f'did you mean "{hint}"' in message


def test_unknown_key_in_a_section_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"DicomWeb": {"SeriesMetadataa": "Full"}}))
    expected = 'DicomWeb.SeriesMetadataa: unknown key .did you mean "SeriesMetadata"'
    with pytest.raises(ConfigurationError, match=expected):
        load_settings(path)


@pytest.mark.parametrize("data,expected", [
    ({"HttpPort": "8042"}, 'HttpPort: expected an integer, got "8042" (a string)'),
    ({"ReadOnly": "yes"}, 'ReadOnly: expected true or false, got "yes" (a string)'),
    ({"Name": 3}, "Name: expected a string, got 3 (an integer)"),
    ({"DicomWeb": {"Enable": 1}}, "DicomWeb.Enable: expected true or false, got 1 (an integer)"),
    ({"SslMinimumProtocolVersion": 6}, "SslMinimumProtocolVersion: expected an integer from 0 "
                                       "to 5, got 6"),
    ({"SslMinimumProtocolVersion": "TLS1.2"}, "SslMinimumProtocolVersion: expected an integer "
                                              'from 0 to 5, got "TLS1.2"'),
    ({"SslCiphersAccepted": "AES128-SHA"}, "SslCiphersAccepted: Not a valid list."),
])
def test_wrong_types_name_the_expected_type(data: dict, expected: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_settings(data, "cfg.json")
    assert expected in str(info.value)


def test_folder_merges_every_json_file(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"HttpPort": 9001 // comment\n}')
    (tmp_path / "b.json").write_text('{"DicomWeb": {"Root": "/web/"}}')
    (tmp_path / "notes.txt").write_text("not configuration")
    settings = load_settings(tmp_path)
    assert settings.HttpPort == 9001 and settings.DicomWeb.root == "/web/"


def test_folder_key_defined_twice_names_both_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"HttpPort": 9001}')
    (tmp_path / "b.json").write_text('{"HttpPort": 9002}')
    with pytest.raises(ConfigurationError) as info:
        load_settings(tmp_path)
    assert "a.json" in str(info.value) and "b.json" in str(info.value)


def test_folder_errors_name_the_file_of_the_key(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"HttpPort": 9001}')
    (tmp_path / "b.json").write_text('{"ReadOnly": "no"}')
    with pytest.raises(ConfigurationError, match=r"b\.json: ReadOnly: expected true or false"):
        load_settings(tmp_path)


@pytest.mark.parametrize("data,authentication", [
    ({"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "x"}}, True),
    # Orthanc >= 1.5.8: unset, authentication follows remote access.
    ({"RemoteAccessAllowed": True, "RegisteredUsers": {"alice": "x"}}, True),
    ({"RemoteAccessEnabled": True, "RegisteredUsers": {"alice": "x"}}, True),
    ({"SslEnabled": True}, False),
])
def test_security_options_it_cannot_honour_stop_start_up(data: dict, authentication: bool) -> None:
    """Authentication and TLS are served now: asking for them no longer stops start-up
    (app/security.py checks the credentials, the TLS options are gunicorn's)."""
    from app.check_config import extra_problems

    settings = parse_settings(data)
    assert settings.authentication is authentication
    assert not [p for p in extra_problems(settings) if "Security" in p]


@pytest.mark.parametrize("data,problem", [
    ({"AuthenticationEnabled": True}, "AuthenticationEnabled is true but RegisteredUsers is "
                                      "empty: nobody could log in"),
    ({"RemoteAccessAllowed": True}, "defaults to true because remote access is allowed"),
])
def test_authentication_without_users_stops_start_up(data: dict, problem: str) -> None:
    from app.check_config import extra_problems

    assert problem in " ".join(extra_problems(parse_settings(data)))


def test_remote_access_with_authentication_explicitly_off_starts() -> None:
    """Behind an authenticating reverse proxy: no users needed, none checked."""
    from app.check_config import extra_problems

    settings = parse_settings({"RemoteAccessAllowed": True, "AuthenticationEnabled": False})
    assert settings.remote_access and not settings.authentication
    assert extra_problems(settings) == []


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no \\*.json") as info:
        load_settings(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '{ // r\xe9glages\n "HttpPort" : 8042 }'.encode("latin-1"))
    with pytest.raises(ConfigurationError, match="UTF-8") as info:
        load_settings(path)
    assert str(path) in str(info.value)


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + '{ "Name" : "Pacs \u00e9" }'.encode())
    assert load_settings(path).Name == "Pacs \u00e9"


# --------------------------------------------------------------------------- #
# Defaults and where the file comes from
# --------------------------------------------------------------------------- #


def test_defaults_with_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    settings = load_settings()
    assert settings.source == "<defaults>"
    assert settings.storage_path == Path("data/storage")
    assert settings.index_path == Path("data/index")
    assert settings.HttpPort == 8042
    assert settings.RemoteAccessEnabled is False
    assert settings.ReadOnly is False
    assert settings.DicomWeb.root == "/dicom-web/"
    assert settings.DicomWeb.wado_root == "/wado"
    assert settings.DicomWeb.public_root == "/dicom-web/"
    assert settings.DicomWeb.StudiesMetadata == settings.DicomWeb.SeriesMetadata == "Full"
    assert settings.DicomWeb.OtherBinaryMode == "BulkDataURI"
    assert (settings.Gunicorn.Workers, settings.Gunicorn.Threads,
            settings.Gunicorn.Timeout) == (0, 2, 300)
    assert settings.Gunicorn.workers == 2 * (os.cpu_count() or 1)


def test_empty_environment_variable_means_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, "")
    assert load_settings().source == "<defaults>"


def test_file_without_directories_uses_orthanc_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "{}"))
    assert settings.storage_path == Path("OrthancStorage")
    assert settings.index_path == settings.storage_path  # beside the storage, like Orthanc


def test_index_directory_overrides(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, json.dumps(
        {"StorageDirectory": "/srv/st", "IndexDirectory": "/srv/ix"})))
    assert settings.storage_path == Path("/srv/st")
    assert settings.index_path == Path("/srv/ix")


def test_environment_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '{ "HttpPort" : 9001 }')
    monkeypatch.setenv(CONFIG_ENV, str(path))
    settings = load_settings()
    assert settings.HttpPort == 9001
    assert settings.source == str(path)


def test_explicit_path_beats_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(write(tmp_path, '{ "HttpPort" : 9001 }', "env.json")))
    assert load_settings(write(tmp_path, '{ "HttpPort" : 9002 }', "arg.json")).HttpPort == 9002


def test_environment_variable_to_a_bad_file_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '{ "DicomWeb" : { "Enable" : "yes" } }')
    monkeypatch.setenv(CONFIG_ENV, str(path))
    with pytest.raises(ConfigurationError, match="DicomWeb.Enable") as info:
        load_settings()
    assert str(path) in str(info.value)


def test_settings_are_immutable() -> None:
    settings = parse_settings({})
    with pytest.raises(AttributeError):
        settings.HttpPort = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.DicomWeb.Root = "/x/"  # type: ignore[misc]


# --------------------------------------------------------------------------- #
# Root, WadoRoot, PublicRoot normalisation (reference §1, §4.9)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("value", "expected"), [
    ("/dicom-web/", "/dicom-web/"),
    ("/dicom-web", "/dicom-web/"),
    ("dicom-web/", "/dicom-web/"),
    ("dicom-web", "/dicom-web/"),
    ("/a/b", "/a/b/"),
    ("//dw//", "/dw/"),
    ("/", "/"),
    ("", "/"),
])
def test_root_starts_and_ends_with_a_slash(value: str, expected: str) -> None:
    dicomweb = parse_settings({"DicomWeb": {"Root": value}}).DicomWeb
    assert dicomweb.root == expected
    assert dicomweb.public_root == expected  # PublicRoot defaults to Root


@pytest.mark.parametrize(("value", "expected"), [
    ("/wado", "/wado"),
    ("/wado/", "/wado"),
    ("wado", "/wado"),
    ("wado/uri/", "/wado/uri"),
    ("/", "/"),
])
def test_wado_root_has_a_leading_slash_and_no_trailing_one(value: str, expected: str) -> None:
    assert parse_settings({"DicomWeb": {"WadoRoot": value}}).DicomWeb.wado_root == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("/pacs/dicom-web/", "/pacs/dicom-web/"),
    ("pacs/dicom-web", "/pacs/dicom-web/"),
    ("/", "/"),
    ("", "/"),
])
def test_public_root_is_normalised_like_root(value: str, expected: str) -> None:
    dicomweb = parse_settings({"DicomWeb": {"Root": "/dw/", "PublicRoot": value}}).DicomWeb
    assert dicomweb.public_root == expected
    assert dicomweb.root == "/dw/"


def test_public_root_null_means_root() -> None:
    dicomweb = parse_settings({"DicomWeb": {"Root": "x", "PublicRoot": None}}).DicomWeb
    assert dicomweb.public_root == "/x/"


# --------------------------------------------------------------------------- #
# QidoCaseSensitive falls back to CaseSensitivePN (reference §3.6)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("case_sensitive_pn", "qido", "expected"), [
    (None, None, False),
    (True, None, True),
    (False, None, False),
    (True, False, False),
    (False, True, True),
    (None, True, True),
])
def test_qido_case_sensitive_falls_back_to_case_sensitive_pn(
    case_sensitive_pn: bool | None, qido: bool | None, expected: bool
) -> None:
    data: dict[str, Any] = {"DicomWeb": {}}
    if case_sensitive_pn is not None:
        data["CaseSensitivePN"] = case_sensitive_pn
    if qido is not None:
        data["DicomWeb"]["QidoCaseSensitive"] = qido
    assert parse_settings(data).qido_case_sensitive is expected


def test_qido_case_sensitive_null_means_not_set() -> None:
    settings = parse_settings({"CaseSensitivePN": True, "DicomWeb": {"QidoCaseSensitive": None}})
    assert settings.qido_case_sensitive is True


# --------------------------------------------------------------------------- #
# Enumerated values (reference §2.1: other values make start-up fail)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("key", ["StudiesMetadata", "SeriesMetadata"])
@pytest.mark.parametrize("value", ["Full", "MainDicomTags", "Extrapolate"])
def test_metadata_modes_accepted(key: str, value: str) -> None:
    assert getattr(parse_settings({"DicomWeb": {key: value}}).DicomWeb, key) == value


@pytest.mark.parametrize("key", ["StudiesMetadata", "SeriesMetadata"])
@pytest.mark.parametrize("value", ["full", "Main", "", "Extrapolated"])
def test_invalid_metadata_modes_refused(tmp_path: Path, key: str, value: str) -> None:
    assert f"DicomWeb.{key}:" in load_error(tmp_path, {"DicomWeb": {key: value}})


@pytest.mark.parametrize("value", ["BulkDataURI", "InlineBinary", "ArrayOfValues"])
def test_other_binary_modes_accepted(value: str) -> None:
    assert parse_settings({"DicomWeb": {"OtherBinaryMode": value}}).DicomWeb.OtherBinaryMode \
        == value


@pytest.mark.parametrize("value", ["Ignore", "inlinebinary", "Base64", ""])
def test_invalid_other_binary_mode_refused(tmp_path: Path, value: str) -> None:
    message = load_error(tmp_path, {"DicomWeb": {"OtherBinaryMode": value}})
    assert "DicomWeb.OtherBinaryMode:" in message


@pytest.mark.parametrize("key", ["StudiesMetadataExtrapolatedTags",
                                 "SeriesMetadataExtrapolatedTags"])
def test_extrapolated_tags_accept_keywords_and_hex(key: str) -> None:
    tags = ["PatientAge", "00101030", "0010,1020"]
    assert getattr(parse_settings({"DicomWeb": {key: tags}}).DicomWeb, key) == tags


@pytest.mark.parametrize("key", ["StudiesMetadataExtrapolatedTags",
                                 "SeriesMetadataExtrapolatedTags"])
def test_unknown_extrapolated_tag_refused_at_load(tmp_path: Path, key: str) -> None:
    message = load_error(tmp_path, {"DicomWeb": {key: ["Rows", "NotATag"]}})
    assert f"DicomWeb.{key}:" in message
    assert "NotATag" in message


def test_servers_are_kept_as_given() -> None:
    servers = {"a": ["http://a/"], "b": {"Url": "http://b/", "HasDelete": True}}
    assert parse_settings({"DicomWeb": {"Servers": servers}}).DicomWeb.Servers == servers


def test_source_is_recorded() -> None:
    assert parse_settings({}, "here.json").source == "here.json"


def test_extrapolated_tags_may_name_the_configurations_own_dictionary() -> None:
    data = {"Dictionary": {"0009,1001": ["LO", "MyPrivateThing", 1, 1, "ACME"]},
            "DicomWeb": {"SeriesMetadata": "Extrapolate",
                         "SeriesMetadataExtrapolatedTags": ["MyPrivateThing"]}}
    settings = parse_settings(data)
    assert settings.DicomWeb.SeriesMetadataExtrapolatedTags == ["MyPrivateThing"]
    with pytest.raises(ConfigurationError, match="NotDefinedAnywhere"):
        parse_settings({"DicomWeb": {"SeriesMetadataExtrapolatedTags": ["NotDefinedAnywhere"]}})


def test_ssl_minimum_protocol_version_as_orthanc_wrote_it() -> None:
    """Orthanc 1.8 configurations wrote the version as a string of one digit."""
    assert parse_settings({"SslMinimumProtocolVersion": "3"}, "c").SslMinimumProtocolVersion == 3
    assert parse_settings({}, "c").SslMinimumProtocolVersion == 4
    assert parse_settings({}, "c").SslCiphersAccepted is None

