"""``dicomweb-server check``: app.consistency on real filesystem + SQLite backends (the
compressed wrapper included, as the server builds them), races simulated by wrappers."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import cli
from app.consistency import DEFAULT_GRACE, Report, check
from app.settings import CONFIG_ENV
from backends.base import BlobStat, Index, StorageArea
from backends.index_sqlite import SqliteIndex
from backends.storage_compressed import CompressedStorage
from backends.storage_fs import FilesystemStorage
from tests.contract.records import make_record
from tests.delegating import DelegatingStorage

OLD = time.time() - 2 * DEFAULT_GRACE  # a blob written long ago


@pytest.fixture
def storage(tmp_path: Path) -> CompressedStorage:
    return CompressedStorage(FilesystemStorage(tmp_path / "storage"))


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SqliteIndex]:
    (tmp_path / "index").mkdir()
    index = SqliteIndex(tmp_path / "index" / "index.sqlite")
    yield index
    index.close()


def blob(storage: StorageArea, data: bytes = b"DICM" * 100, *, age: float | None = None) -> str:
    """Write a blob; ``age`` seconds old (by mtime) if given."""
    key = storage.new_key()
    storage.write(key, io.BytesIO(data))
    if age is not None:
        path = storage.inner.root / key[:2] / key  # type: ignore[attr-defined]
        os.utime(path, (time.time() - age, time.time() - age))
    return key


def store(storage: StorageArea, index: Index, sop: str, data: bytes = b"DICM" * 100,
          study: str = "1.2", series: str = "1.2.3") -> str:
    """What a STOW does: the blob, then the row."""
    key = blob(storage, data, age=2 * DEFAULT_GRACE)
    index.add_instance(make_record(study, series, sop, storage_key=key, size=len(data)))
    return key


def test_consistent(storage: CompressedStorage, index: SqliteIndex) -> None:
    for n in range(3):
        store(storage, index, f"1.2.3.{n}")
    report = check(storage, index, sizes=True)
    assert report.consistent and report.problems == 0
    assert (report.indexed, report.stored) == (3, 3)
    assert report.mismatches == []
    assert report.text().splitlines()[0] == "3 instances in the index, 3 blobs in the storage"
    assert report.text().splitlines()[-1].startswith("consistent (")


def test_empty(storage: CompressedStorage, index: SqliteIndex) -> None:
    report = check(storage, index, repair=True)
    assert report.consistent and (report.indexed, report.stored) == (0, 0)


def test_orphans_older_than_the_grace_period_are_deleted(storage: CompressedStorage,
                                                         index: SqliteIndex) -> None:
    kept = store(storage, index, "1.2.3.1")
    orphan = blob(storage, b"x" * 10, age=2 * DEFAULT_GRACE)
    report = check(storage, index)
    assert [o.key for o in report.orphans] == [orphan] and report.orphans[0].size == 10
    assert report.problems == 1 and storage.stat(orphan)  # only reported
    assert f"  {orphan}  10 bytes  written 20 min ago" in report.text()
    assert "1 problem found (--repair fixes all but size mismatches)" in report.text()

    repaired = check(storage, index, repair=True)
    assert repaired.deleted == [orphan] and repaired.consistent
    assert "repair: 0 index rows removed, 1 orphan blobs deleted" in repaired.text()
    assert set(storage.keys()) == {kept}
    assert check(storage, index).consistent


def test_young_unreferenced_blobs_are_left_alone(storage: CompressedStorage,
                                                 index: SqliteIndex) -> None:
    """A STOW in flight: blob written, index row not committed yet."""
    in_flight = blob(storage)
    report = check(storage, index, repair=True)
    assert [o.key for o in report.recent] == [in_flight] and report.orphans == []
    assert report.consistent and list(storage.keys()) == [in_flight]
    assert "maybe STOWs in flight, left alone): 1" in report.text()
    # grace 0 (a stopped server): every unreferenced blob is an orphan
    assert check(storage, index, repair=True, grace=0).deleted == [in_flight]
    assert list(storage.keys()) == []


def test_a_blob_whose_row_is_committed_during_the_check_is_no_orphan(
        storage: CompressedStorage, index: SqliteIndex) -> None:
    """Listed unreferenced, then its STOW commits: the second listing keeps it."""
    key = blob(storage, age=2 * DEFAULT_GRACE)
    record = make_record("1.2", "1.2.3", "1.2.3.1", storage_key=key)

    class CommitsDuringCheck:
        listings = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(index, name)

        def storage_keys(self) -> Iterator[str]:
            self.listings += 1
            if self.listings == 2:  # after the storage listing, before judging
                index.add_instance(record)
            return index.storage_keys()

    report = check(storage, CommitsDuringCheck(), repair=True, grace=0)  # type: ignore[arg-type]
    assert report.orphans == [] and report.recent == [] and report.consistent
    assert list(storage.keys()) == [key]


def test_rows_without_blobs_are_removed(storage: CompressedStorage,
                                        index: SqliteIndex) -> None:
    kept = store(storage, index, "1.2.3.1")
    lost = store(storage, index, "1.2.3.2")
    alone = store(storage, index, "1.9.1.1", study="1.9", series="1.9.1")
    storage.delete(lost)
    storage.delete(alone)
    report = check(storage, index)
    assert {(b.key, b.sop_uid, b.study_uid) for b in report.blobless} == {
        (lost, "1.2.3.2", "1.2"), (alone, "1.9.1.1", "1.9")}
    assert report.problems == 2
    assert f"  {lost}  instance 1.2.3.2 (study 1.2, series 1.2.3)" in report.text()

    repaired = check(storage, index, repair=True)
    assert sorted(repaired.removed) == sorted([lost, alone]) and repaired.consistent
    assert [i.sop_uid for i in index.instances("1.2")] == ["1.2.3.1"]
    assert index.instances("1.9") == []  # the emptied study went too
    assert list(index.storage_keys()) == [kept]


def test_a_row_replaced_during_the_repair_is_left_alone(storage: CompressedStorage,
                                                        index: SqliteIndex) -> None:
    """The blob of a row is lost; before the repair removes the row, a STOW stores the
    instance again: the new row (another blob) stays."""
    lost = store(storage, index, "1.2.3.1")
    storage.delete(lost)
    fresh: list[str] = []

    class RestoredBeforeRemoval:
        def __getattr__(self, name: str) -> Any:
            return getattr(index, name)

        def remove(self, *args: Any, **kwargs: Any) -> Any:
            fresh.append(store(storage, index, "1.2.3.1"))
            return index.remove(*args, **kwargs)

    report = check(storage, RestoredBeforeRemoval(), repair=True)  # type: ignore[arg-type]
    assert report.gone == [lost] and report.removed == [] and report.consistent
    assert "(1 rows changed meanwhile, left alone)" in report.text()
    assert [i.storage_key for i in index.instances("1.2")] == fresh


def test_a_row_removed_during_the_check_is_no_loss(storage: CompressedStorage,
                                                   index: SqliteIndex) -> None:
    """A DELETE between the index listing and the storage listing (row, then blob)."""
    key = store(storage, index, "1.2.3.1")

    class DeletedMeanwhile(CompressedStorage):
        def keys(self) -> Iterator[str]:
            removed = index.remove("1.2", "1.2.3", "1.2.3.1")
            for gone in removed.storage_keys:
                storage.delete(gone)
            return super().keys()

    report = check(DeletedMeanwhile(storage.inner), index, repair=True)
    assert report.blobless == [] and report.consistent
    assert report.indexed == 1 and key not in set(storage.keys())


def test_size_mismatches(storage: CompressedStorage, index: SqliteIndex,
                         tmp_path: Path) -> None:
    key = store(storage, index, "1.2.3.1", b"A" * 1000)
    store(storage, index, "1.2.3.2", b"B" * 1000)
    storage.write(key, io.BytesIO(b"A" * 600))  # truncated by hand
    assert check(storage, index).mismatches is None
    report = check(storage, index, sizes=True, repair=True)
    assert [(m.key, m.sop_uid, m.recorded, m.stored) for m in report.mismatches or ()] == [
        (key, "1.2.3.1", 1000, 600)]
    assert report.problems == 1 and not report.consistent
    text = report.text()
    assert f"  {key}  instance 1.2.3.1: 600 bytes stored, 1000 recorded" in text
    assert "size mismatches are not repaired" in text and "1 problem remain" in text


def test_sizes_of_compressed_blobs_are_uncompressed(storage: CompressedStorage,
                                                    index: SqliteIndex) -> None:
    key = store(storage, index, "1.2.3.1", bytes(100_000))
    inner = storage.inner.stat(key)  # type: ignore[attr-defined]
    assert inner.size < 10_000  # zeros compress
    assert check(storage, index, sizes=True).mismatches == []


def test_interrupted_writes(storage: CompressedStorage, index: SqliteIndex) -> None:
    root = storage.inner.root  # type: ignore[attr-defined]
    old, young = root / "ab" / f".tmp-{'1' * 32}", root / "cd" / f".tmp-{'2' * 32}"
    old.write_bytes(b"half a blob")
    young.write_bytes(b"being written")
    os.utime(old, (OLD, OLD))
    report = check(storage, index)
    assert report.interrupted == [f"ab/{old.name}"] and report.problems == 1
    assert check(storage, index, repair=True).swept == [f"ab/{old.name}"]
    assert not old.exists() and young.exists()
    assert check(storage, index).consistent


class NoStat(DelegatingStorage):
    """A storage area that cannot tell a blob's age (the base class's default)."""


def test_a_storage_without_ages_never_loses_a_blob_to_the_grace_period(
        storage: CompressedStorage, index: SqliteIndex) -> None:
    no_stat = NoStat(storage)
    with pytest.raises(NotImplementedError):
        no_stat.stat("0" * 32)
    orphan = blob(storage, age=2 * DEFAULT_GRACE)
    lost = store(storage, index, "1.2.3.1")
    storage.delete(lost)
    store(storage, index, "1.2.3.2")
    report = check(no_stat, index, repair=True, sizes=True)
    assert [(o.key, o.age) for o in report.recent] == [(orphan, None)]
    assert "size unknown  written at an unknown time" in report.text()
    assert report.removed == [lost] and report.mismatches is None and report.consistent
    assert check(no_stat, index, repair=True, grace=0).deleted == [orphan]


def test_negative_grace_refused(storage: CompressedStorage, index: SqliteIndex) -> None:
    with pytest.raises(ValueError):
        check(storage, index, grace=-1)


def test_report_lists_a_few_of_many() -> None:
    from app.consistency import Unreferenced

    report = Report(grace=0, orphans=[Unreferenced(f"{n:032x}", 1, 5.0) for n in range(25)])
    text = report.text()
    assert "  ... and 5 more" in text and "25 problems found" in text
    assert "written 5 s ago" in text
    assert BlobStat(1, 2.0).size == 1


# --------------------------------------------------------------------------- #
# the command
# --------------------------------------------------------------------------- #


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"StorageDirectory": str(tmp_path / "storage"),
                                "IndexDirectory": str(tmp_path / "index")}))
    return path


def test_command(config: Path, storage: CompressedStorage, index: SqliteIndex,
                 capsys: pytest.CaptureFixture[str]) -> None:
    store(storage, index, "1.2.3.1")
    assert cli.main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("storage: CompressedStorage(FilesystemStorage(")
    assert "index: SqliteIndex(" in out and out.rstrip().splitlines()[-1].startswith(
        "consistent")

    orphan = blob(storage)
    assert cli.main(["check", "--config", str(config)]) == 0  # young: left alone
    assert cli.main(["--config", str(config), "check", "--grace", "0"]) == 1
    assert "1 problem found" in capsys.readouterr().out
    assert cli.main(["check", "--config", str(config), "--grace", "0", "--repair",
                     "--sizes"]) == 0
    assert "1 orphan blobs deleted" in capsys.readouterr().out
    assert orphan not in set(storage.keys())


def test_command_exit_status_2(tmp_path: Path, config: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"NoSuchOption": 1}')
    assert cli.main(["check", "--config", str(bad)]) == 2
    assert "configuration error" in capsys.readouterr().err
    assert cli.main(["check", "--config", str(config), "--grace", "-5"]) == 2
