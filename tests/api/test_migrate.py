"""``app.migrate`` and ``dicomweb-server migrate``: one deployment copied into another.

The source is a filesystem + SQLite deployment filled through STOW; the copy is checked
through the target's own HTTP API (QIDO counts, byte-identical WADO, same metadata).
Targets: another filesystem + SQLite, and S3 (moto) + PostgreSQL.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from flask.testing import FlaskClient

from app import cli, create_app
from app.migrate import Deployment, Progress, Summary, migrate, same_index
from app.settings import parse_settings
from backends.base import BackendUnavailable, StorageArea
from tests import pg
from tests.api.data import ct_bytes, uid
from tests.conftest import make_settings, stow_body
from tests.delegating import DelegatingStorage
from tests.deployments import drop_bucket, new_bucket, postgresql_section, s3_section
from tests.s3server import MotoServer

STUDIES, PER_STUDY = 3, 2
ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def files_config(root: Path) -> dict[str, Any]:
    """A filesystem + SQLite deployment under ``root``."""
    return {"StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index")}


class Side:
    """A deployment under test: its configuration, backends and a test client over them."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        settings = parse_settings(config)
        self.app = create_app(settings)
        services = self.app.extensions["dicomweb"]
        self.deployment = Deployment(services.storage, services.index,
                                     settings.DicomWeb.OtherBinaryMode)
        self.client: FlaskClient = self.app.test_client()

    def store(self, files: list[bytes]) -> None:
        body, ctype = stow_body(files)
        answer = self.client.post("/dicom-web/studies", data=body, content_type=ctype)
        assert answer.status_code == 200, answer.get_data(as_text=True)

    def sops(self) -> list[str]:
        found = self.client.get("/dicom-web/instances").get_json() or []
        return sorted(i["00080018"]["Value"][0] for i in found)

    def instance(self, study: str, series: str, sop: str) -> bytes:
        url = f"/dicom-web/studies/{study}/series/{series}/instances/{sop}"
        answer = self.client.get(url, headers={"Accept": ANY})
        assert answer.status_code == 200
        return part_body(answer.get_data(), answer.headers["Content-Type"])

    def metadata(self, study: str) -> Any:
        return self.client.get(f"/dicom-web/studies/{study}/metadata").get_json()

    def blobs(self) -> int:
        return len(list(self.deployment.storage.keys()))

    def close(self) -> None:
        self.deployment.index.close()


def part_body(body: bytes, content_type: str) -> bytes:
    """The body of the single part of a multipart/related answer."""
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
    part = body.split(f"--{boundary}".encode())[1]
    return part.split(b"\r\n\r\n", 1)[1][:-2]


@pytest.fixture
def files() -> dict[tuple[str, str, str], bytes]:
    """STUDIES studies of PER_STUDY instances: {(study, series, sop): file bytes}."""
    out = {}
    for _ in range(STUDIES):
        study, series = uid(), uid()
        for n in range(PER_STUDY):
            sop = uid()
            out[study, series, sop] = ct_bytes(study, series, sop, number=n + 1)
    return out


@pytest.fixture
def source(tmp_path: Path, files: dict[tuple[str, str, str], bytes]) -> Iterator[Side]:
    side = Side(files_config(tmp_path / "old"))
    side.store(list(files.values()))
    yield side
    side.close()


@pytest.fixture
def s3_postgresql_config(moto_s3: MotoServer) -> Iterator[dict[str, Any]]:
    """A fresh bucket on the session's moto server and a throw-away database."""
    bucket = new_bucket()
    with pg.database() as dsn:
        yield {"AwsS3Storage": s3_section(moto_s3.endpoint, bucket),
               "PostgreSQL": postgresql_section(dsn)}
    drop_bucket(moto_s3.endpoint, bucket)


@pytest.fixture(params=["filesystem-sqlite", "s3-postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Side]:
    config = (files_config(tmp_path / "new") if request.param == "filesystem-sqlite"
              else request.getfixturevalue("s3_postgresql_config"))
    side = Side(config)
    yield side
    side.close()


def assert_same_content(source: Side, target: Side,
                        files: dict[tuple[str, str, str], bytes]) -> None:
    """Every instance is in the target once, byte-identical, with the same metadata."""
    assert target.sops() == sorted(sop for _, _, sop in files)
    for (study, series, sop), data in files.items():
        assert target.instance(study, series, sop) == data
    for study in {study for study, _, _ in files}:
        assert target.metadata(study) == source.metadata(study)
    assert target.blobs() == len(files)


# --------------------------------------------------------------------------- #
# migrate()
# --------------------------------------------------------------------------- #


def test_copies_every_instance(source: Side, target: Side,
                               files: dict[tuple[str, str, str], bytes]) -> None:
    summary = migrate(source.deployment, target.deployment, batch=2)
    assert (summary.total, summary.copied, summary.skipped, summary.failed) == \
        (len(files), len(files), 0, [])
    assert summary.ok
    assert_same_content(source, target, files)
    assert source.sops() == target.sops()  # the source is left as it was


def test_a_second_run_copies_nothing(source: Side, target: Side,
                                     files: dict[tuple[str, str, str], bytes]) -> None:
    migrate(source.deployment, target.deployment)
    again = migrate(source.deployment, target.deployment)
    assert (again.copied, again.skipped, again.ok) == (0, len(files), True)
    assert_same_content(source, target, files)


class FailingStorage(DelegatingStorage):
    """A target storage that goes away after ``writes`` writes (or fails one blob)."""

    def __init__(self, inner: StorageArea, writes: int, error: Exception) -> None:
        self.inner, self.writes, self.error = inner, writes, error

    def write(self, key: str, stream: BinaryIO) -> int:
        if self.writes <= 0:
            raise self.error
        self.writes -= 1
        return self.inner.write(key, stream)


def test_resumes_after_the_target_went_away(
        source: Side, target: Side, files: dict[tuple[str, str, str], bytes]) -> None:
    flaky = FailingStorage(target.deployment.storage, 3, BackendUnavailable("S3: refused"))
    cut = migrate(source.deployment, Deployment(flaky, target.deployment.index), jobs=1)
    assert cut.aborted == "backend unavailable: S3: refused"
    assert (cut.copied, cut.ok) == (3, False)
    assert "run the same command again" in cut.report()
    assert len(target.sops()) == 3

    resumed = migrate(source.deployment, target.deployment)
    assert (resumed.copied, resumed.skipped, resumed.ok) == (len(files) - 3, 3, True)
    assert_same_content(source, target, files)


def test_a_failed_instance_is_reported_and_copied_by_the_next_run(
        source: Side, target: Side, files: dict[tuple[str, str, str], bytes]) -> None:
    flaky = FailingStorage(target.deployment.storage, 1, OSError("disk full"))
    first = migrate(source.deployment, Deployment(flaky, target.deployment.index), jobs=1)
    assert first.copied == 1 and len(first.failed) == len(files) - 1 and not first.ok
    assert "FailureReason 0x0110" in first.failed[0][1]
    assert first.failed[0][0] in first.report()

    second = migrate(source.deployment, target.deployment)
    assert (second.copied, second.skipped, second.ok) == (len(files) - 1, 1, True)
    assert_same_content(source, target, files)


def test_delete_source_empties_the_old_deployment(
        source: Side, target: Side, files: dict[tuple[str, str, str], bytes]) -> None:
    expected = {study: source.metadata(study) for study, _, _ in files}
    summary = migrate(source.deployment, target.deployment, delete_source=True, batch=1)
    assert (summary.copied, summary.deleted, summary.ok) == (len(files), len(files), True)
    assert source.sops() == [] and source.blobs() == 0
    assert {study: target.metadata(study) for study in expected} == expected


def test_delete_source_keeps_what_failed_and_pages_past_it(
        tmp_path: Path, source: Side, files: dict[tuple[str, str, str], bytes]) -> None:
    target = Side(files_config(tmp_path / "new"))
    (study, series, sop), *rest = files
    source.deployment.storage.delete(source.deployment.index.instances(study)[0].storage_key)
    summary = migrate(source.deployment, target.deployment, delete_source=True, batch=1)
    assert summary.failed == [(sop, "the source blob is missing")]
    assert summary.deleted == summary.copied == len(files) - 1
    assert source.sops() == [sop]  # the failed one stays where it was
    assert target.sops() == sorted(s for _, _, s in rest)
    target.close()


def test_an_empty_source_copies_nothing(tmp_path: Path) -> None:
    empty, target = Side(files_config(tmp_path / "a")), Side(files_config(tmp_path / "b"))
    summary = migrate(empty.deployment, target.deployment)
    assert (summary.total, summary.done, summary.ok) == (0, 0, True)
    empty.close()
    target.close()


# --------------------------------------------------------------------------- #
# Progress bar
# --------------------------------------------------------------------------- #


def test_progress_line_shows_counts_rate_and_eta() -> None:
    summary = Summary(total=100, copied=20, skipped=5, started=0.0)
    summary.failed.append(("1.2.3", "x"))
    line = Progress(io.StringIO(), width=10).line(summary, now=13.0)
    assert line == "[###.......] 26/100  26% 2.0/s ETA 0:37 skipped 5 failed 1"


def test_progress_writes_a_line_per_interval_when_not_a_terminal() -> None:
    out, now = io.StringIO(), [0.0]
    progress = Progress(out, clock=lambda: now[0])
    summary = Summary(total=3, started=0.0)
    for t in (1.0, 2.0, 3.0):
        now[0] = t
        summary.copied += 1
        progress(summary)
    progress.finish(summary)
    lines = out.getvalue().splitlines()
    assert [line.split("]")[1].split()[0] for line in lines] == ["1/3", "3/3"]


def test_progress_eta_in_hours() -> None:
    line = Progress(io.StringIO()).line(Summary(total=10_000, copied=1, started=0.0), 1.0)
    assert "ETA 2:46:39" in line


# --------------------------------------------------------------------------- #
# dicomweb-server migrate
# --------------------------------------------------------------------------- #


def write_config(path: Path, config: dict[str, Any]) -> str:
    path.write_text(json.dumps(config))
    return str(path)


def test_cli_migrates_and_reports(tmp_path: Path, source: Side, target: Side,
                                  files: dict[tuple[str, str, str], bytes],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The command builds both deployments from their files (S3 and PostgreSQL too)."""
    old = write_config(tmp_path / "old.json", source.config)
    new = write_config(tmp_path / "new.json", target.config)
    assert cli.main(["migrate", "--from", old, "--to", new, "--batch", "1"]) == 0
    err = capsys.readouterr().err
    assert f"] {len(files)}/{len(files)} 100%" in err
    assert f"{len(files)} copied, 0 already in the target, 0 failed" in err
    assert_same_content(source, target, files)


def test_cli_exits_1_when_an_instance_failed(tmp_path: Path, source: Side,
                                             files: dict[tuple[str, str, str], bytes],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (study, _, sop), *_ = files
    source.deployment.storage.delete(source.deployment.index.instances(study)[0].storage_key)
    old = write_config(tmp_path / "old.json", source.config)
    new = write_config(tmp_path / "new.json", files_config(tmp_path / "new"))
    assert cli.main(["migrate", "--from", old, "--to", new, "--delete-source"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {sop}: the source blob is missing" in err
    assert "run the same command again" in err


def test_cli_refuses_to_migrate_an_index_onto_itself(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "same.json", files_config(tmp_path))
    assert cli.main(["migrate", "--from", config, "--to", config]) == 2
    assert "same index" in capsys.readouterr().err


def test_cli_bad_configuration_exits_2(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    good = write_config(tmp_path / "good.json", files_config(tmp_path))
    assert cli.main(["migrate", "--from", str(tmp_path / "missing.json"), "--to", good]) == 2
    assert "missing.json" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["migrate", "--to", "x"], ["migrate", "--from", "x"],
                                  ["migrate", "--from", "x", "--to", "y", "--batch", "0"]])
def test_cli_migrate_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(argv)
    assert info.value.code == 2


def test_same_index_compares_paths_and_databases(tmp_path: Path) -> None:
    pg = {"PostgreSQL": {"EnableIndex": True, "Database": "a"}}
    assert same_index(make_settings(tmp_path), make_settings(tmp_path))
    assert not same_index(make_settings(tmp_path / "a"), make_settings(tmp_path / "b"))
    assert same_index(parse_settings(pg), parse_settings(pg))
    assert not same_index(parse_settings(pg), make_settings(tmp_path))
