"""The index contract on PostgreSQL, plus what only a shared server can show."""

from __future__ import annotations

import dataclasses
import multiprocessing
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.dicom.identifiers import orthanc_ids
from backends import index_postgres, matching, postgres_dsn, postgres_query
from backends.base import COLUMNS, BackendUnavailable, Level, Match, Query, ResourceType
from backends.index_postgres import PostgresIndex
from backends.index_sqlite import SqliteIndex
from backends.postgres_query import MIGRATIONS, search_plan
from backends.sql_resources import JOB_COLUMNS
from backends.sql_schema import TABLE
from tests import pg
from tests.contract.index import IndexContract, archive, found
from tests.contract.records import CT_IMAGE, MR_IMAGE, constraint, make_record, single, value
from tests.contract.resources import V3_RECORDS, check_migrated_v3, insert_v3

WORKERS, PER_WORKER, SERIES = 4, 50, 5


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """One database for the module, migrated once (tests empty the tables, see ``index``)."""
    with pg.database() as dsn:
        index = PostgresIndex(dsn)
        index.search(Query(Level.STUDY))
        index.close()
        yield dsn


def empty(dsn: str) -> None:
    """Delete every row (cheaper than TRUNCATE on a few rows; series and instances go by
    ON DELETE CASCADE), then the change log that deletion wrote, jobs and properties."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("studies", "changes", "jobs", "properties"):
            conn.execute(f"DELETE FROM {table}")


class TestPostgresIndex(IndexContract):
    @pytest.fixture
    def index(self, database: str) -> Iterator[PostgresIndex]:
        empty(database)
        index = PostgresIndex(database, max_size=4)
        yield index
        index.close()


# -- schema and migrations ---------------------------------------------------------------------


@pytest.fixture
def fresh() -> Iterator[str]:
    """A database of its own, not migrated yet."""
    with pg.database() as dsn:
        yield dsn


def versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY 1")]


def test_schema_is_versioned(fresh: str) -> None:
    PostgresIndex(fresh).search(Query(Level.STUDY))
    PostgresIndex(fresh).search(Query(Level.STUDY))  # a second start migrates nothing
    assert versions(fresh) == list(range(1, len(MIGRATIONS) + 1))


def test_schema_has_a_column_for_every_indexed_keyword(database: str) -> None:
    """Fails when backends.base gains a keyword without a migration adding its column."""
    with psycopg.connect(database) as conn:
        for level, table in TABLE.items():
            columns = dict(conn.execute(
                "SELECT column_name, coalesce(collation_name, data_type)"
                " FROM information_schema.columns WHERE table_name = %s", (table,)).fetchall())
            for keyword in COLUMNS[level]:
                for name in matching.column_names(keyword):
                    # numbers are numeric, text sorts and matches prefixes in code point order
                    assert columns[name] in ("C", "numeric"), (table, name)


def test_newer_schema_is_refused(fresh: str) -> None:
    PostgresIndex(fresh).search(Query(Level.STUDY))
    with psycopg.connect(fresh) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(RuntimeError, match="newer"):
        PostgresIndex(fresh).search(Query(Level.STUDY))


def _start(dsn: str, barrier: Any) -> None:
    barrier.wait(timeout=30)
    index = PostgresIndex(dsn)
    index.search(Query(Level.STUDY))
    index.close()


def test_processes_migrate_at_once(fresh: str) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(WORKERS)
    workers = [context.Process(target=_start, args=(fresh, barrier)) for _ in range(WORKERS)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
    assert [process.exitcode for process in workers] == [0] * WORKERS
    assert versions(fresh) == list(range(1, len(MIGRATIONS) + 1))


# -- concurrency ---------------------------------------------------------------------------------


def _add_instances(index: PostgresIndex, worker: int) -> None:
    """One process's share: instances of the same study, spread over shared series."""
    for n in range(PER_WORKER):
        number = worker * PER_WORKER + n
        index.add_instance(make_record("1.2.3", f"1.2.3.{number % SERIES}",
                                       f"1.2.3.{number % SERIES}.{number}",
                                       InstanceNumber=number))


def _assert_one_full_study(index: PostgresIndex) -> None:
    [study] = index.search(Query(Level.STUDY))
    assert value(study.study, "NumberOfStudyRelatedInstances") == [WORKERS * PER_WORKER]
    assert value(study.study, "NumberOfStudyRelatedSeries") == [SERIES]
    assert len(found(index, Level.SERIES)) == SERIES
    sops = [i.sop_uid for i in index.instances("1.2.3")]
    assert len(sops) == len(set(sops)) == WORKERS * PER_WORKER


@pytest.mark.parametrize("warm", [False, True], ids=["fresh-pool", "used-before-fork"])
def test_processes_add_to_the_same_study(database: str, warm: bool) -> None:
    empty(database)
    index = PostgresIndex(database)
    if warm:  # the children must open pools of their own, and leave the parent's alone
        assert index.search(Query(Level.STUDY)) == []
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_add_instances, args=(index, w)) for w in range(WORKERS)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0] * WORKERS
    _assert_one_full_study(index)  # on the parent's (possibly inherited-from) pool
    index.close()


def sessions(dsn: str) -> set[int]:
    """Server processes of the other sessions on the database."""
    with psycopg.connect(dsn) as conn:
        return {pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()")}


def _close_only(index: PostgresIndex) -> None:
    index.close()


def test_close_in_a_forked_child_leaves_the_parent_alone(database: str) -> None:
    empty(database)
    index = PostgresIndex(database)
    index.add_instance(make_record("1.2", "1.2.1", "1.2.1.1"))
    before = sessions(database)
    child = multiprocessing.get_context("fork").Process(target=_close_only, args=(index,))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert found(index, Level.STUDY) == ["1.2"]
    assert sessions(database) == before  # the same sessions: none was ended and replaced
    index.close()


def test_threads_share_one_index(database: str) -> None:
    empty(database)
    index = PostgresIndex(database, max_size=WORKERS)
    threads = [threading.Thread(target=_add_instances, args=(index, w)) for w in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _assert_one_full_study(index)
    index.close()


def test_concurrent_replacements_return_every_replaced_key(database: str) -> None:
    """Each blob is reported replaced exactly once, by the add that replaced it."""
    empty(database)
    index = PostgresIndex(database, max_size=WORKERS)
    replaced: list[str | None] = []
    keys: list[str] = []

    def replace(_: int) -> None:
        for _ in range(10):
            record = make_record("1.2", "1.2.1", "1.2.1.1")
            keys.append(record.storage_key)
            replaced.append(index.add_instance(record))

    threads = [threading.Thread(target=replace, args=(w,)) for w in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [final] = index.instances("1.2")
    assert replaced.count(None) == 1
    assert sorted([k for k in replaced if k] + [final.storage_key]) == sorted(keys)
    index.close()


def test_unchanged_study_and_series_rows_are_not_rewritten(database: str) -> None:
    empty(database)
    index = PostgresIndex(database)
    index.add_instance(make_record("1.2", "1.2.1", "1.2.1.1"))

    def row_versions() -> list[Any]:
        with psycopg.connect(database) as conn:
            return conn.execute("SELECT (SELECT xmin::text FROM studies),"
                                " (SELECT xmin::text FROM series)").fetchall()

    before = row_versions()
    index.add_instance(make_record("1.2", "1.2.1", "1.2.1.2"))
    assert row_versions() == before
    index.add_instance(make_record("1.2", "1.2.1", "1.2.1.3", Modality="MR"))
    assert found(index, Level.SERIES, single("Modality", "MR")) == ["1.2.1"]
    index.close()


def test_odd_values_are_stored(database: str) -> None:
    """NUL characters (not allowed in PostgreSQL text) and malformed numbers do not fail."""
    empty(database)
    index = PostgresIndex(database)
    record = make_record("1.2", "1.2.1", "1.2.1.1", PatientName="Doe\x00^John")
    odd = {**record.instance, "00200013": {"vr": "IS", "Value": ["abc"]}}
    index.add_instance(dataclasses.replace(record, instance=odd))
    assert found(index, Level.STUDY, constraint("PatientName", Match.WILDCARD, "doe^j*")) == [
        "1.2"]
    assert index.instances("1.2")[0].instance_number is None
    assert found(index, Level.INSTANCE, single("InstanceNumber", "abc")) == []
    index.close()


# -- failures ------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_is_backend_unavailable() -> None:
    dsn = postgres_dsn("127.0.0.1", _closed_port(), "postgres", "postgres", "s3cret pass")
    index = PostgresIndex(dsn, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as raised:
        index.search(Query(Level.STUDY))
    assert "s3cret" not in str(raised.value) and "127.0.0.1" in str(raised.value)
    with pytest.raises(BackendUnavailable):
        index.add_instance(make_record("1", "1.1", "1.1.1"))
    assert time.monotonic() - started < 10
    index.close()


def test_server_side_disconnect_is_survived(database: str) -> None:
    """Pooled connections killed on the server (a restart) are replaced on the next read."""
    empty(database)
    index = PostgresIndex(database, min_size=2)
    index.add_instance(make_record("1.2", "1.2.1", "1.2.1.1"))
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    assert found(index, Level.STUDY) == ["1.2"]
    assert len(index.instances("1.2")) == 1
    index.close()


def test_dsn_quotes_values() -> None:
    dsn = postgres_dsn("db.example", 5433, "pacs", "dicom", "p a'ss\\word")
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    assert info == {"host": "db.example", "port": "5433", "dbname": "pacs", "user": "dicom",
                    "password": "p a'ss\\word"}
    assert "password" not in postgres_dsn("h", None, "d", "u", "")


# -- query plans ---------------------------------------------------------------------------------


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


def test_patient_name_prefix_search_uses_an_index(database: str) -> None:
    """On some thousands of studies, with statistics, the planner picks the folded name's
    index for PatientName=DOE* (a prefix LIKE on a COLLATE "C" column)."""
    empty(database)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            'INSERT INTO studies (study_key, patient_key, attrs, "StudyInstanceUID",'
            ' "PatientName", "PatientName_folded", "StudyDate")'
            " SELECT 'k' || n, 'p' || n, '{}', '1.2.' || n, name, lower(name),"
            " to_char(date '2020-01-01' + n % 1500, 'YYYYMMDD')"
            " FROM generate_series(1, 5000) n,"
            " LATERAL (SELECT (CASE WHEN n % 500 = 0 THEN 'Doe' ELSE 'Name' || n END)"
            " || '^Patient' AS name) names")
        conn.execute("ANALYZE studies")
        wildcard = constraint("PatientName", Match.WILDCARD, "DOE*")
        plan = search_plan(Query(Level.STUDY, (wildcard,), limit=100))
        [(explained,)] = conn.execute("EXPLAIN (FORMAT JSON) " + plan.sql, plan.params)
    indexes = {node.get("Index Name") for node in _plan_nodes(explained[0]["Plan"])}
    assert "ix_studies_patientname_folded" in indexes, explained
    index = PostgresIndex(database)
    assert len(index.search(Query(Level.STUDY, (wildcard,), limit=100))) == 10
    index.close()


# -- the same answers as SQLite --------------------------------------------------------------------

_KEYS = [
    single("PatientName", "doe^john"), single("PatientID", "PID-a"),
    constraint("PatientName", Match.WILDCARD, "*a*"), constraint("PatientName", Match.FUZZY, "an"),
    constraint("PatientName", Match.WILDCARD, "S*[*"), single("AccessionNumber", "ACC1"),
    constraint("StudyDate", Match.RANGE, "20200115", ""),
    constraint("StudyDate", Match.RANGE, "20200110090000", "20200201", also="StudyTime"),
    constraint("StudyDescription", Match.WILDCARD, "*?*"),
    constraint("InstitutionName", Match.WILDCARD, "general*"),
    constraint("ModalitiesInStudy", Match.LIST, "CT", "MR", level=Level.STUDY),
    single("NumberOfStudyRelatedInstances", "1", level=Level.STUDY),
    single("Modality", "mr"), constraint("Modality", Match.WILDCARD, "?R"),
    single("SeriesNumber", "2"), single("ProtocolName", "brain"),
    constraint("OperatorsName", Match.FUZZY, "ali"),
    single("NumberOfSeriesRelatedInstances", "3", level=Level.SERIES),
    constraint("InstanceNumber", Match.LIST, "1", "2"),
    constraint("InstanceNumber", Match.RANGE, "2", ""), single("Rows", "256"),
    constraint("SOPClassUID", Match.LIST, MR_IMAGE, CT_IMAGE),
    single("ImageType", "DERIVED"), constraint("ImageType", Match.WILDCARD, "*Y"),
    constraint("AcquisitionDate", Match.RANGE, "20200120120000", "", also="AcquisitionTime"),
]


def test_answers_agree_with_sqlite(database: str, tmp_path: Path) -> None:
    """Random combinations of keys, levels, case sensitivity and pages: PostgreSQL and SQLite
    return equal results (computed attributes included)."""
    empty(database)
    postgres, sqlite = PostgresIndex(database), SqliteIndex(tmp_path / "index.sqlite")
    for record in archive():
        assert postgres.add_instance(record) == sqlite.add_instance(record)
    rng = random.Random(20240611)
    for _ in range(300):
        keys = tuple(rng.sample(_KEYS, rng.choice([1, 1, 2, 3])))
        query = Query(rng.choice(list(Level)), keys, case_sensitive=rng.random() < 0.3,
                      limit=rng.choice([None, None, 1, 2, 5]), offset=rng.choice([0, 0, 0, 1, 3]))
        assert postgres.search(query) == sqlite.search(query), query
    postgres.close()
    sqlite.close()


# -- schema version 4: Orthanc resources, change log, jobs -----------------------------------


def test_v3_database_migrates_to_v4(fresh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_query, "MIGRATIONS", MIGRATIONS[:3])
    PostgresIndex(fresh).search(Query(Level.STUDY))
    assert versions(fresh) == [1, 2, 3]
    with psycopg.connect(fresh, autocommit=True) as conn:
        for record in V3_RECORDS:
            insert_v3(lambda sql, params: conn.execute(sql, params).fetchall(), "%s", record)
    monkeypatch.undo()
    index = PostgresIndex(fresh)
    check_migrated_v3(index)
    assert versions(fresh) == list(range(1, len(MIGRATIONS) + 1))
    index.close()


def test_lookups_by_id_read_indexes(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every statement of resource() and resource_instances() can be answered from indexes:
    with sequential scans disabled, no plan scans a table."""
    empty(database)
    index = PostgresIndex(database)
    for n in range(3):
        index.add_instance(make_record("1", f"1.{n}", f"1.{n}.1", PatientID="X"))
    plans: list[tuple[str, set[str]]] = []
    plain = index_postgres._statements

    def explaining(conn: psycopg.Connection) -> Any:
        run = plain(conn)

        def explain(sql: str, params: Any) -> list[tuple[Any, ...]]:
            conn.execute("SET LOCAL enable_seqscan = off" if conn.info.transaction_status
                         else "SET enable_seqscan = off")
            (explained,) = conn.execute("EXPLAIN (FORMAT JSON) " + sql.replace("?", "%s"),
                                        params).fetchone()
            plans.append((sql, {n["Node Type"] for n in _plan_nodes(explained[0]["Plan"])}))
            conn.execute("RESET enable_seqscan")
            return run(sql, params)
        return explain

    monkeypatch.setattr(index_postgres, "_statements", explaining)
    keys = orthanc_ids("X", "1", "1.1", "1.1.1")
    for type_, key in zip(ResourceType, keys, strict=True):
        assert index.resource(type_, key) is not None
        assert index.resource_instances(type_, key)
    index.close()
    assert len(plans) >= 10
    for sql, nodes in plans:
        assert "Seq Scan" not in nodes, sql


def test_schema_has_a_column_for_every_job_field(database: str) -> None:
    with psycopg.connect(database) as conn:
        names = {name for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'jobs'")}
    assert set(JOB_COLUMNS) <= names


def test_resources_agree_with_sqlite(database: str, tmp_path: Path) -> None:
    """The same writes give the same resources, pages, counts and change log (but seq)."""
    empty(database)
    postgres, sqlite = PostgresIndex(database), SqliteIndex(tmp_path / "index.sqlite")
    records = [*archive(), make_record("1.9", "1.9.1", "1.5.1.1"),
               make_record("1.2", "1.2.2", "1.2.2.1", PatientID="PID-a")]
    writes = [*(lambda index, r=record: index.add_instance(r) for record in records),
              lambda index: index.remove("1.1", "1.1.2"),
              lambda index: index.remove_patient(orthanc_ids("pid-c", "", "", "")[0])]
    for write in writes:
        write(postgres)
        write(sqlite)
    for type_ in ResourceType:
        ids = sqlite.resource_ids(type_)
        assert postgres.resource_ids(type_) == ids
        assert postgres.resource_ids(type_, since=1, limit=2) == ids[1:3]
        for id_ in ids:
            ours, theirs = postgres.resource(type_, id_), sqlite.resource(type_, id_)
            assert ours is not None and theirs is not None
            assert dataclasses.replace(ours, last_update=0) == dataclasses.replace(
                theirs, last_update=0)
            assert postgres.resource_instances(type_, id_) == sqlite.resource_instances(
                type_, id_)
    assert postgres.counts() == sqlite.counts()

    def log(index: Any) -> list[tuple[str, str, str]]:
        return sorted((c.change_type, c.resource_type.value, c.resource_id)
                      for c in index.changes(0, 1000))

    assert log(postgres) == log(sqlite)
    postgres.close()
    sqlite.close()
