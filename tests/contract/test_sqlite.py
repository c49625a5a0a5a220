"""The index contract on SQLite, plus what only a file shared by processes can show."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.dicom.identifiers import orthanc_ids
from backends import index_sqlite, matching
from backends.base import COLUMNS, JobState, Level, Query, ResourceType
from backends.index_sqlite import MIGRATIONS, SqliteIndex
from backends.sql_resources import JOB_COLUMNS
from tests.contract.index import IndexContract, found
from tests.contract.records import make_record, single, value
from tests.contract.resources import V3_RECORDS, check_migrated_v3, claim_all, insert_v3, job

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
    # (schema v3) and its change log entry (v4); the study and series rows are not rewritten.
    assert conn.total_changes - before == 4
    index.add_instance(make_record("1.2", "1.2.1", "1.2.1.3", Modality="MR"))
    assert found(index, Level.SERIES, single("Modality", "MR")) == ["1.2.1"]
    index.close()


# -- schema version 4: Orthanc resources, change log, jobs -----------------------------------


def _claim_into(index: SqliteIndex, owner: str, path: Path) -> None:
    """One process claims jobs until none is left; writes what it got, one id a line."""
    got: list[str] = []
    claim_all(index, owner, got)
    path.write_text("".join(f"{job_id}\n" for job_id in got))


def test_processes_claim_each_job_once(tmp_path: Path) -> None:
    index = SqliteIndex(tmp_path / "index.sqlite")
    for n in range(60):
        index.add_job(job(f"j{n}", n % 4, float(n)))
    context = multiprocessing.get_context("fork")
    outputs = [tmp_path / f"claimed-{w}" for w in range(WORKERS)]
    workers = [context.Process(target=_claim_into, args=(index, f"w{w}", outputs[w]))
               for w in range(WORKERS)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0] * WORKERS
    claimed = [line for path in outputs for line in path.read_text().split()]
    assert sorted(claimed) == sorted(f"j{n}" for n in range(60))
    assert {j.owner for j in index.jobs()} <= {f"w{w}" for w in range(WORKERS)}
    index.close()


def test_v3_database_migrates_to_v4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "index.sqlite"
    monkeypatch.setattr(index_sqlite, "MIGRATIONS", MIGRATIONS[:3])
    old = SqliteIndex(path)
    conn = old._connection()
    for record in V3_RECORDS:
        insert_v3(lambda sql, params: conn.execute(sql, params).fetchall(), "?", record)
    old.close()
    monkeypatch.undo()
    index = SqliteIndex(path)
    check_migrated_v3(index)
    index.close()


def test_lookups_by_id_read_indexes(tmp_path: Path) -> None:
    """Every statement of resource() and resource_instances() searches an index: no table
    is scanned (on a big archive a scan per lookup would take seconds)."""
    index = SqliteIndex(tmp_path / "index.sqlite")
    for n in range(3):
        index.add_instance(make_record("1", f"1.{n}", f"1.{n}.1", PatientID="X"))
    conn = index._connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    keys = orthanc_ids("X", "1", "1.1", "1.1.1")
    for type_, key in zip(ResourceType, keys, strict=True):
        assert index.resource(type_, key) is not None
        assert index.resource_instances(type_, key)
    conn.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) >= 10
    for sql in selects:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        assert not [step for step in plan if step.startswith("SCAN")], (sql, plan)
    index.close()


def test_schema_has_a_column_for_every_job_field(tmp_path: Path) -> None:
    """Fails when JobRecord gains a field without a migration adding its column."""
    path = tmp_path / "index.sqlite"
    SqliteIndex(path).jobs()
    with sqlite3.connect(path) as conn:
        names = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    assert set(JOB_COLUMNS) <= names


def test_idle_claims_take_no_write_lock(tmp_path: Path) -> None:
    """Idle job dispatchers poll claim_job twice a second per worker: with nothing to claim
    they must not queue for SQLite's database-wide write lock (STOW holds it), nor take it."""
    path = tmp_path / "index.sqlite"
    index = SqliteIndex(path, busy_timeout=0.2)
    index.add_job(job("done", state=JobState.SUCCESS))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a STOW in the middle of its transaction
    try:
        assert index.claim_job("w1", 2000.0, 30) is None  # no "database is locked"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    index.add_job(job("waiting"))
    claimed = index.claim_job("w1", 2000.0, 30)
    assert claimed is not None and claimed.id == "waiting"
    index.close()
