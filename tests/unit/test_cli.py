"""Unit tests for app.cli: gunicorn options from the settings and the exit code on bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from app import cli
from app.settings import CONFIG_ENV, Settings, parse_settings


def options(data: dict[str, Any] | None = None, *argv: str) -> dict[str, Any]:
    return cli.gunicorn_options(parse_settings(data or {}), cli.parse_args(list(argv)))


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() exports $DICOMWEB_CONFIG; monkeypatch restores it after each test."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Settings, Any]]:
    """Replace gunicorn with a recorder."""
    calls: list[tuple[Settings, Any]] = []
    monkeypatch.setattr(cli, "serve", lambda settings, args: calls.append((settings, args)))
    return calls


# --------------------------------------------------------------------------- #
# gunicorn_options
# --------------------------------------------------------------------------- #


def test_defaults_bind_loopback_on_8042() -> None:
    opts = options()
    assert opts["bind"] == "127.0.0.1:8042"
    assert opts["workers"] == 2 * (os.cpu_count() or 1)
    assert opts["threads"] == 2
    assert opts["timeout"] == 300
    assert opts["worker_class"] == "app.gunicorn_worker.RequestTimeoutWorker"
    assert opts["accesslog"] is None
    assert opts["keepalive"] == 1  # Orthanc's KeepAliveTimeout default


def test_keep_alive_settings() -> None:
    assert options({"KeepAliveTimeout": 7})["keepalive"] == 7
    assert options({"KeepAlive": False, "KeepAliveTimeout": 7})["keepalive"] == 0


def test_remote_access_binds_every_interface() -> None:
    remote = {"RemoteAccessEnabled": True, "AuthenticationEnabled": False}
    assert options(remote)["bind"] == "0.0.0.0:8042"


def test_remote_access_false_stays_on_loopback() -> None:
    assert options({"RemoteAccessEnabled": False, "HttpPort": 80})["bind"] == "127.0.0.1:80"


def test_port_from_http_port() -> None:
    assert options({"HttpPort": 9000})["bind"] == "127.0.0.1:9000"


def test_port_flag_beats_http_port() -> None:
    assert options({"HttpPort": 9000}, "--port", "9100")["bind"] == "127.0.0.1:9100"


def test_port_flag_zero_is_used() -> None:
    assert options({"HttpPort": 9000}, "--port", "0")["bind"] == "127.0.0.1:0"


def test_workers_threads_and_timeout_from_settings() -> None:
    opts = options({"Gunicorn": {"Workers": 5, "Threads": 7, "Timeout": 60}})
    assert (opts["workers"], opts["threads"], opts["timeout"]) == (5, 7, 60)


def test_flags_beat_settings_for_workers_and_threads() -> None:
    opts = options({"Gunicorn": {"Workers": 5, "Threads": 7}}, "--workers", "3",
                   "--threads", "9")
    assert (opts["workers"], opts["threads"]) == (3, 9)


def test_access_log_flag() -> None:
    assert options({}, "--access-log")["accesslog"] == "-"


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["run"])
    assert info.value.code == 2


# --------------------------------------------------------------------------- #
# main
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("content", [
    None,  # missing file
    '{ "HttpPort" : 8042, }',  # not JSON
    '{ "DicomWeb" : { "Enable" : "yes" } }',  # wrong type
    '{ "Gunicorn" : { "Processes" : 4 } }',  # unknown key in an owned section
    '{ /* unterminated }',
])
def test_bad_config_returns_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
    served: list[tuple[Settings, Any]], content: str | None,
) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    assert cli.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert str(path) in err
    assert served == []  # gunicorn never started


def test_bad_file_from_environment_returns_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    served: list[tuple[Settings, Any]],
) -> None:
    path = tmp_path / "env.json"
    path.write_text('{ "HttpPort" : "8042" }')
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "HttpPort" in err
    assert served == []


def test_good_config_serves_it_and_exports_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[tuple[Settings, Any]],
) -> None:
    (tmp_path / "good.json").write_text(json.dumps({"HttpPort": 9005}))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--config", "good.json", "--workers", "3"]) == 0
    (settings, args), = served
    assert settings.HttpPort == 9005
    assert args.workers == 3
    # gunicorn workers (and wsgi.py) find the same file whatever their working directory.
    assert os.environ[CONFIG_ENV] == str(tmp_path / "good.json")


def test_no_config_serves_defaults(served: list[tuple[Settings, Any]]) -> None:
    assert cli.main([]) == 0
    (settings, _args), = served
    assert settings.source == "<defaults>"
    assert settings.storage_path == Path("data/storage")


# --------------------------------------------------------------------------- #
# Limits and TLS in the gunicorn options; the TLS files checked before gunicorn
# --------------------------------------------------------------------------- #


def test_header_limits_from_settings() -> None:
    opts = options()
    assert (opts["limit_request_field_size"], opts["limit_request_fields"],
            opts["limit_request_line"]) == (8190, 100, 8190)
    opts = options({"Limits": {"MaximumHeaderSize": 4096, "MaximumHeaderCount": 20}})
    assert (opts["limit_request_field_size"], opts["limit_request_fields"]) == (4096, 20)


def test_no_tls_options_without_ssl_enabled() -> None:
    opts = options({"SslCertificate": "/x.pem", "SslVerifyPeers": True})
    assert not {"certfile", "keyfile", "cert_reqs", "ca_certs"} & set(opts)


def test_tls_options() -> None:
    import ssl

    opts = options({"SslEnabled": True, "SslCertificate": "/etc/orthanc/server.pem"})
    assert opts["certfile"] == opts["keyfile"] == "/etc/orthanc/server.pem"
    assert "cert_reqs" not in opts and "ca_certs" not in opts
    opts = options({"SslEnabled": True, "SslCertificate": "/s.pem", "SslVerifyPeers": True,
                    "SslTrustedClientCertificates": "/clients.pem"})
    assert opts["cert_reqs"] == ssl.CERT_REQUIRED
    assert opts["ca_certs"] == "/clients.pem"


def test_every_option_is_a_gunicorn_setting() -> None:
    from gunicorn.config import Config

    opts = options({"SslEnabled": True, "SslCertificate": "/s.pem", "SslVerifyPeers": True,
                    "SslTrustedClientCertificates": "/c.pem"})
    config = Config()
    for key, value in opts.items():
        if value is not None:
            config.set(key, value)  # raises on an unknown name or a wrong value
    assert config.is_ssl


_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
_KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(("content", "expected"), [
    (None, "SslCertificate {cert}: cannot be read"),
    (_KEY, "SslCertificate {cert} holds no certificate"),
    (_CERT, "SslCertificate {cert} holds no private key"),
    (_CERT + _KEY.replace("PRIVATE", "ENCRYPTED PRIVATE"), "the private key is encrypted"),
    (_CERT + _KEY, "SslCertificate {cert}: not usable for TLS"),  # not real PEM
])
def test_unusable_certificate_returns_2_before_gunicorn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], served: list[tuple[Settings, Any]],
    content: str | None, expected: str,
) -> None:
    cert = tmp_path / "server.pem"
    if content is not None:
        cert.write_text(content)
    config = tmp_path / "tls.json"
    config.write_text(json.dumps({"SslEnabled": True, "SslCertificate": str(cert)}))
    assert cli.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "SslEnabled" in err
    assert expected.format(cert=cert) in err
    assert served == []


def test_real_certificates_pass_and_mismatches_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], served: list[tuple[Settings, Any]],
) -> None:
    from tests.certificates import authority

    ca = authority(tmp_path / "ca")
    one, two = ca.issue("one"), ca.issue("two")
    config = tmp_path / "tls.json"

    def run(**settings: object) -> int:
        config.write_text(json.dumps({"SslEnabled": True, **settings}))
        return cli.main(["--config", str(config)])

    assert run(SslCertificate=str(one.combined)) == 0
    assert run(SslCertificate=str(one.combined), SslVerifyPeers=True,
               SslTrustedClientCertificates=str(ca.certificate)) == 0
    assert len(served) == 2
    mixed = tmp_path / "mixed.pem"
    mixed.write_text(one.certificate.read_text() + two.key.read_text())
    assert run(SslCertificate=str(mixed)) == 2
    assert "the private key does not match the certificate" in capsys.readouterr().err
    assert run(SslCertificate=str(one.combined), SslVerifyPeers=True) == 2
    assert "SslTrustedClientCertificates is empty" in capsys.readouterr().err
    assert run(SslCertificate=str(one.combined), SslVerifyPeers=True,
               SslTrustedClientCertificates=str(one.key)) == 2
    assert "holds no certificate" in capsys.readouterr().err
    assert len(served) == 2


def test_check_config_reports_the_certificate_problem(tmp_path: Path) -> None:
    from app.check_config import check

    config = tmp_path / "tls.json"
    config.write_text(json.dumps({"SslEnabled": True,
                                  "SslCertificate": str(tmp_path / "missing.pem")}))
    report, status = check(str(config))
    assert status == 1
    assert "SslEnabled: SslCertificate" in report and "missing.pem" in report
