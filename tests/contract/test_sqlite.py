"""The index contract on SQLite, plus what only a file shared by processes can show."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import matching
from backends.base import COLUMNS, Level, Query
from backends.index_sqlite import MIGRATIONS, SqliteIndex
from tests.contract.index import IndexContract, found
from tests.contract.records import make_record, single, value

WORKERS, PER_WORKER, SERIES = 4, 50, 5


class TestSqliteIndex(IndexContract):
    @pytest.fixture
    def index(self, tmp_path: Path) -> Iterator[SqliteIndex]:
        index = SqliteIndex(tmp_path / "index.sqlite")
        yield index
        index.close()


def _add_instances(index: SqliteIndex, worker: int) -> None:
    """One process's share: instances of the same study, spread over shared series."""
    for n in range(PER_WORKER):
        number = worker * PER_WORKER + n
        index.add_instance(make_record("1.2.3", f"1.2.3.{number % SERIES}",
                                       f"1.2.3.{number % SERIES}.{number}",
                                       InstanceNumber=number))


@pytest.mark.parametrize("warm", [False, True], ids=["fresh-file", "used-before-fork"])
def test_processes_add_to_the_same_study(tmp_path: Path, warm: bool) -> None:
    index = SqliteIndex(tmp_path / "index.sqlite")
    if warm:  # the parent's connection must not be reused by the children
        assert index.search(Query(Level.STUDY)) == []
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_add_instances, args=(index, w)) for w in range(WORKERS)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0] * WORKERS
    [study] = index.search(Query(Level.STUDY))
    assert value(study.study, "NumberOfStudyRelatedInstances") == [WORKERS * PER_WORKER]
    assert value(study.study, "NumberOfStudyRelatedSeries") == [SERIES]
    assert len(found(index, Level.SERIES)) == SERIES
    sops = [i.sop_uid for i in index.instances("1.2.3")]
    assert len(sops) == len(set(sops)) == WORKERS * PER_WORKER
    index.close()


def test_threads_share_one_index(tmp_path: Path) -> None:
    index = SqliteIndex(tmp_path / "index.sqlite")
    threads = [threading.Thread(target=_add_instances, args=(index, w)) for w in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(index.instances("1.2.3")) == WORKERS * PER_WORKER
    index.close()


def test_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    SqliteIndex(path).search(Query(Level.STUDY))
    SqliteIndex(path).search(Query(Level.STUDY))  # a second start migrates nothing
    with sqlite3.connect(path) as conn:
        versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert versions == [(v,) for v in range(1, len(MIGRATIONS) + 1)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_schema_has_a_column_for_every_indexed_keyword(tmp_path: Path) -> None:
    """Fails when backends.base gains a keyword without a migration adding its column."""
    path = tmp_path / "index.sqlite"
    SqliteIndex(path).search(Query(Level.STUDY))
    tables = {Level.STUDY: "studies", Level.SERIES: "series", Level.INSTANCE: "instances"}
    with sqlite3.connect(path) as conn:
        for level, table in tables.items():
            names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            wanted = {n for keyword in COLUMNS[level] for n in matching.column_names(keyword)}
            assert wanted <= names, table


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    SqliteIndex(path).search(Query(Level.STUDY))
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS) + 1,))
    with pytest.raises(RuntimeError):
        SqliteIndex(path).search(Query(Level.STUDY))


def test_unchanged_study_and_series_rows_are_not_rewritten(tmp_path: Path) -> None:
    index = SqliteIndex(tmp_path / "index.sqlite")
    index.add_instance(make_record("1.2", "1.2.1", "1.2.1.1"))
    conn = index._connection()
    before = conn.total_changes
    index.add_instance(make_record("1.2", "1.2.1", "1.2.1.2"))
    # The new instance row, and the patient and storage-usage rows its triggers maintain
    # (schema v3); the study and series rows are not rewritten.
    assert conn.total_changes - before == 3
    index.add_instance(make_record("1.2", "1.2.1", "1.2.1.3", Modality="MR"))
    assert found(index, Level.SERIES, single("Modality", "MR")) == ["1.2.1"]
    index.close()
