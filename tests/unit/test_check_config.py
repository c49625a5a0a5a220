"""``dicomweb-server check-config``: the effective configuration with secrets masked, what
is ignored and why, every problem, and an exit status that says whether it would start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import cli
from tests.e2e.test_orthanc_config import DEBIAN


def run(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = cli.main(["check-config", str(path)])
    return status, capsys.readouterr().out


def test_debian_folder_is_fine(capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(DEBIAN, capsys)
    assert status == 0, out
    assert "Problems: none" in out
    assert "credentials.json" in out and "orthanc.json" in out  # the files read
    effective = json.loads(out.split("Effective configuration:\n", 1)[1].split("\nIgnored")[0])
    assert effective["HttpPort"] == 8042 and effective["DicomWeb"]["Host"] == "localhost"
    assert "DicomAet" in out and "DIMSE" in out


def test_secrets_are_masked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({
        "PostgreSQL": {"EnableIndex": True, "Password": "pg-secret",
                       "ConnectionUri": "postgresql://u:uri-secret@db/orthanc"},
        "AwsS3Storage": {"BucketName": "b", "SecretKey": "s3-secret", "AccessKey": "AKIA"},
        "DicomWeb": {"Servers": {"a": ["http://x/dicom-web/", "user", "srv-secret"],
                                 "b": {"Url": "http://y/", "Username": "u",
                                       "Password": "obj-secret",
                                       "HttpHeaders": {"Authorization": "hdr-secret"}}}},
        "AuthenticationEnabled": True, "RegisteredUsers": {"alice": "plain-secret"},
    }))
    status, out = run(config, capsys)
    assert status == 0, out
    for secret in ("pg-secret", "uri-secret", "s3-secret", "srv-secret", "obj-secret",
                   "hdr-secret", "plain-secret"):
        assert secret not in out
    assert "postgresql://u:********@db/orthanc" in out and '"user"' in out
    assert '"alice": "********"' in out


def test_problems_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"HttpPort": "80", "OverwriteInstance": True}))
    status, out = run(config, capsys)
    assert status == 1
    assert 'did you mean "OverwriteInstances"' in out
    bad = tmp_path / "d.json"
    bad.write_text(json.dumps({"HttpPort": "80"}))
    status, out = run(bad, capsys)
    assert status == 1 and "HttpPort: expected an integer" in out


def test_dictionary_and_extra_tags_are_checked(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"Dictionary": {"zzzz,0010": ["LO", "Bad", 1, 1]},
                                  "ExtraMainDicomTags": {"Study": ["NoSuchKeyword"]}}))
    status, out = run(config, capsys)
    assert status == 1
    assert "zzzz,0010" in out and "NoSuchKeyword" in out
