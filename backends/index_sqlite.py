"""``Index`` on SQLite: one database file shared by every worker process of one node.

WAL journal, ``BEGIN IMMEDIATE`` for writes and a busy timeout let several gunicorn workers
write at once. Connections are per thread, opened lazily and re-opened in a forked child
(SQLite connections must not cross ``fork``).

Searches are SQL built by :mod:`backends.sqlite_query` (column constraints in SQL, other
attributes matched in Python through the ``dicom_match`` SQL function).

Adding an instance is one transaction: the study and series rows are only rewritten when
their attributes changed (every instance of a series after the first leaves them alone),
and parents are only pruned when an instance or series moved. Triggers on ``instances``
(schema version 3, :mod:`backends.sql_schema`) keep the storage usage per patient and in
total, for the storage limits and their recycling. Schema version 4 (:mod:`backends.schema_v4`)
adds Orthanc's resource model, the change log (triggers again), jobs and properties; their
methods are :class:`backends.sql_resources.SqlResources`, shared with PostgreSQL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from . import matching
from .base import (
    COLUMNS,
    DicomJson,
    Index,
    InstanceRecord,
    Level,
    PatientUsage,
    Query,
    Removed,
    SearchResult,
    StoredInstance,
    Usage,
)
from .schema_v4 import SQLITE_V4
from .sql_resources import Q, SqlResources
from .sql_schema import (
    FROM,
    SERIES_RELATED_INSTANCES,
    TABLE,
    USAGE_SLOTS,
    V1_INDEXES,
    V1_KEYWORDS,
    V2_INDEXES,
    V3_INDEXES,
    V4_INDEXES,
    search_result,
    with_study_computed,
)
from .sqlite_query import (
    INSTANCE_ORDER,
    chunks,
    dicom_match,
    dumps,
    marks,
    quote,
    search_sql,
    uid_filter,
)

T = TypeVar("T")

KEYS_PAGE = 5000  # rows per statement of storage_keys

# ---------------------------------------------------------------------------------------------
# Schema: versioned migrations, each a list of statements applied in one transaction


def _column_ddl(keywords: Sequence[str]) -> str:
    """Columns of the given keywords (the first is the level's UID) and their folded copies."""
    parts = []
    for keyword in keywords:
        vr = matching.COLUMN_TAGS[keyword][1]
        for name in matching.column_names(keyword):
            affinity = "INTEGER" if name == keyword and vr in matching.INTEGER_VRS else "TEXT"
            unique = " NOT NULL UNIQUE" if keyword == keywords[0] else ""
            parts.append(f"{quote(name)} {affinity}{unique}")
    return ", ".join(parts)


def _index(table: str, *columns: str, partial: bool = False) -> str:
    name = f"ix_{table}_{'_'.join(columns)}"
    where = f" WHERE {quote(columns[0])} IS NOT NULL" if partial else ""
    return f"CREATE INDEX {name} ON {table} ({', '.join(map(quote, columns))}){where}"


# Version 3 (backends.sql_schema): storage usage per patient and in total, kept by triggers.
# Writers are serialised by SQLite, so the totals live in slot 0 only.
_PATIENT_ADDED = """
    UPDATE storage_usage SET size = size + new.size,
        patients = patients + NOT EXISTS
        (SELECT 1 FROM patients WHERE patient_key = new.patient_key)
        WHERE slot = 0;
    INSERT INTO patients (patient_key, last_stored, size, instances)
        VALUES (new.patient_key, (SELECT coalesce(max(last_stored), 0) + 1 FROM patients),
                new.size, 1)
        ON CONFLICT (patient_key) DO UPDATE SET last_stored = excluded.last_stored,
            size = size + excluded.size, instances = instances + 1;
"""
_PATIENT_REMOVED = """
    UPDATE patients SET size = size - old.size, instances = instances - 1
        WHERE patient_key = old.patient_key;
    UPDATE storage_usage SET size = size - old.size, patients = patients - EXISTS
        (SELECT 1 FROM patients WHERE patient_key = old.patient_key AND instances <= 0)
        WHERE slot = 0;
    DELETE FROM patients WHERE patient_key = old.patient_key AND instances <= 0;
"""
_V3 = [
    "ALTER TABLE instances ADD COLUMN patient_key TEXT NOT NULL DEFAULT ''",
    "UPDATE instances SET patient_key = (SELECT st.patient_key FROM series se JOIN studies st"
    " ON st.pk = se.study_pk WHERE se.pk = instances.series_pk)",
    "CREATE TABLE patients (patient_key TEXT PRIMARY KEY, last_stored INTEGER NOT NULL,"
    " size INTEGER NOT NULL, instances INTEGER NOT NULL)",
    # The order of the instances' primary keys stands for the order they were stored in.
    "INSERT INTO patients (patient_key, last_stored, size, instances) SELECT patient_key,"
    " max(pk), sum(size), count(*) FROM instances GROUP BY patient_key",
    "CREATE TABLE storage_usage (slot INTEGER PRIMARY KEY, size INTEGER NOT NULL,"
    " patients INTEGER NOT NULL)",
    "INSERT INTO storage_usage (slot, size, patients)"
    " SELECT 0, coalesce(sum(size), 0), count(*) FROM patients",
    *(f"INSERT INTO storage_usage (slot, size, patients) VALUES ({n}, 0, 0)"
      for n in range(1, USAGE_SLOTS)),
    *(_index(table, *columns, partial=partial) for table, columns, partial in V3_INDEXES),
    f"CREATE TRIGGER instance_added AFTER INSERT ON instances BEGIN {_PATIENT_ADDED} END",
    f"CREATE TRIGGER instance_removed AFTER DELETE ON instances BEGIN {_PATIENT_REMOVED} END",
    # A replacement (new blob) counts as a store: the patient moves to the end of the order.
    "CREATE TRIGGER instance_replaced AFTER UPDATE OF size, storage_key ON instances"
    " WHEN old.patient_key = new.patient_key"
    " AND (old.size <> new.size OR old.storage_key <> new.storage_key) BEGIN"
    " UPDATE patients SET size = size - old.size + new.size,"
    " last_stored = (SELECT max(last_stored) + 1 FROM patients)"
    " WHERE patient_key = new.patient_key;"
    " UPDATE storage_usage SET size = size - old.size + new.size WHERE slot = 0; END",
    "CREATE TRIGGER instance_moved AFTER UPDATE OF patient_key ON instances"
    f" WHEN old.patient_key <> new.patient_key BEGIN {_PATIENT_REMOVED} {_PATIENT_ADDED} END",
]

MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE studies (pk INTEGER PRIMARY KEY, study_key TEXT NOT NULL,"
        " patient_key TEXT NOT NULL, attrs TEXT NOT NULL, "
        f"{_column_ddl(V1_KEYWORDS[Level.STUDY])})",
        "CREATE TABLE series (pk INTEGER PRIMARY KEY, study_pk INTEGER NOT NULL"
        " REFERENCES studies (pk) ON DELETE CASCADE, series_key TEXT NOT NULL,"
        f" attrs TEXT NOT NULL, {_column_ddl(V1_KEYWORDS[Level.SERIES])})",
        "CREATE TABLE instances (pk INTEGER PRIMARY KEY, series_pk INTEGER NOT NULL"
        " REFERENCES series (pk) ON DELETE CASCADE, instance_key TEXT NOT NULL,"
        " attrs TEXT NOT NULL, metadata TEXT NOT NULL, frames TEXT NOT NULL,"
        " transfer_syntax TEXT NOT NULL, storage_key TEXT NOT NULL, size INTEGER NOT NULL,"
        f" {_column_ddl(V1_KEYWORDS[Level.INSTANCE])})",
        *(_index(table, *columns, partial=partial) for table, columns, partial in V1_INDEXES),
    ],
    [_index(table, *columns, partial=partial) for table, columns, partial in V2_INDEXES],
    _V3,
    [*SQLITE_V4, *(_index(table, *columns, partial=partial)
                   for table, columns, partial in V4_INDEXES)],
]


def _enable_wal(conn: sqlite3.Connection, deadline: float) -> None:
    """Switch the file to WAL (persistent). The switch needs an exclusive lock and SQLite
    does not wait for it with the busy handler, so connections opening a new file at once
    retry until ``deadline``."""
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _instance_number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class SqliteIndex(SqlResources, Index):
    """The index in one SQLite file; safe for several threads and processes."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self._path = str(path)
        self._timeout = busy_timeout
        self._pid = os.getpid()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._generation = 0
        # Connections inherited through fork (busy at fork time): kept referenced, never used
        # or closed, since closing one would release locks its parent process relies on.
        self._inherited: list[Any] = []
        ref = weakref.ref(self)
        os.register_at_fork(before=lambda: (index := ref()) and index._before_fork())

    def __repr__(self) -> str:
        return f"SqliteIndex({self._path!r})"

    # -- connections and transactions --------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:
            self._inherited.append((self._local, self._connections))
            self._pid, self._local = os.getpid(), threading.local()
            self._lock, self._connections = threading.Lock(), []
        if getattr(self._local, "generation", None) != self._generation:
            self._local.conn = self._connect()
            self._local.generation = self._generation
        return self._local.conn

    def _before_fork(self) -> None:
        """Close the forking thread's idle connection so that the child does not inherit it
        (SQLite: do not carry an open database across fork); it reopens lazily. Other
        threads' connections may be in use: they are left alone, and never used by the child.
        """
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.generation != self._generation or conn.in_transaction:
            return
        with self._lock:
            self._connections.remove(conn)
        self._local.conn = self._local.generation = None
        conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        try:
            _enable_wal(conn, time.monotonic() + self._timeout)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.create_function("dicom_match", 4, dicom_match, deterministic=True)
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """``IMMEDIATE`` takes the write lock up front (no deadlock between upgrading readers);
        ``DEFERRED`` gives a read snapshot."""
        conn = self._connection()
        conn.execute(f"BEGIN {mode}")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        try:
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        except sqlite3.OperationalError:  # no table yet
            return 0
        return row[0] or 0

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply pending migrations; processes starting at once serialise on the write lock."""
        if self._version(conn) == len(MIGRATIONS):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = self._version(conn)
            if version > len(MIGRATIONS):
                raise RuntimeError(f"database schema {version} is newer than this server")
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number + 1,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
            self._generation += 1
        self._local.conn = self._local.generation = None
        for conn in connections:
            conn.close()

    def _read(self, work: Callable[[Q], T], single: bool = False) -> T:
        with self._transaction("DEFERRED") as conn:
            return work(lambda sql, params: conn.execute(sql, params).fetchall())

    def _write(self, work: Callable[[Q], T]) -> T:
        with self._transaction() as conn:
            return work(lambda sql, params: conn.execute(sql, params).fetchall())

    # -- writes ------------------------------------------------------------------------------

    def add_instance(self, record: InstanceRecord) -> str | None:
        with self._transaction() as conn:
            old = _add(conn, record)
        if old is None or old[1] == record.storage_key:
            return None
        return old[1]

    def add_instance_if_absent(self, record: InstanceRecord) -> bool:
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM instances WHERE SOPInstanceUID = ?",
                            (record.uid(Level.INSTANCE),)).fetchone():
                return False
            _add(conn, record)
        return True

    def remove(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
        *, storage_key: str | None = None,
    ) -> Removed:
        where, params = uid_filter(study_uid, series_uid, sop_uid)
        if storage_key is not None:
            if sop_uid is None:
                raise ValueError("remove(storage_key=...) removes one instance: give sop_uid")
            where, params = f"{where} AND i.storage_key = ?", [*params, storage_key]
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT i.pk, i.storage_key, se.pk, st.pk FROM {FROM[Level.INSTANCE]}"
                f" WHERE {where} ORDER BY {INSTANCE_ORDER}", params).fetchall()
            if sop_uid is not None:
                for chunk in chunks([row[0] for row in rows]):
                    conn.execute(f"DELETE FROM instances WHERE pk IN ({marks(chunk)})", chunk)
            elif series_uid is not None:
                conn.execute(
                    "DELETE FROM series WHERE SeriesInstanceUID = ? AND study_pk IN"
                    " (SELECT pk FROM studies WHERE StudyInstanceUID = ?)",
                    (series_uid, study_uid))
            else:
                conn.execute("DELETE FROM studies WHERE StudyInstanceUID = ?", (study_uid,))
            _prune(conn, [row[2] for row in rows], [row[3] for row in rows])
        return Removed(tuple(row[1] for row in rows), len(rows))

    def remove_patient(self, patient_key: str, last_stored: int | None = None) -> Removed:
        with self._transaction() as conn:
            row = conn.execute("SELECT last_stored FROM patients WHERE patient_key = ?",
                               (patient_key,)).fetchone()
            if row is None or (last_stored is not None and row[0] != last_stored):
                return Removed((), 0)
            keys = [key for (key,) in conn.execute(
                f"SELECT i.storage_key FROM {FROM[Level.INSTANCE]} WHERE st.patient_key = ?",
                (patient_key,))]
            conn.execute("DELETE FROM studies WHERE patient_key = ?", (patient_key,))
        return Removed(tuple(keys), len(keys))

    # -- reads -------------------------------------------------------------------------------

    def usage(self, patient_key: str | None = None) -> Usage:
        size, patients, patient_size = self._connection().execute(
            "SELECT (SELECT coalesce(sum(size), 0) FROM storage_usage),"
            " (SELECT coalesce(sum(patients), 0) FROM storage_usage),"
            " (SELECT size FROM patients WHERE patient_key = ?)", (patient_key,)).fetchone()
        return Usage(size, patients, patient_size)

    def oldest_patients(self, limit: int, exclude: Collection[str] = ()) -> list[PatientUsage]:
        excluded = list(exclude)
        where = f"WHERE patient_key NOT IN ({marks(excluded)})" if excluded else ""
        rows = self._connection().execute(
            "SELECT patient_key, last_stored, size, instances FROM patients"
            f" {where} ORDER BY last_stored LIMIT ?", (*excluded, limit)).fetchall()
        return [PatientUsage(*row) for row in rows]

    def search(self, query: Query) -> list[SearchResult]:
        sql, params = search_sql(query)
        with self._transaction("DEFERRED") as conn:
            rows = conn.execute(sql, params).fetchall()
            studies = _study_computed(conn, list(dict.fromkeys(row[0] for row in rows)))
            series: dict[int, DicomJson] = {}
            if query.level is not Level.STUDY:
                series = _series_computed(conn, list(dict.fromkeys(row[1] for row in rows)))
        return [search_result(query.level, row, studies, series) for row in rows]

    def instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[StoredInstance]:
        return self._stored(*uid_filter(study_uid, series_uid, sop_uid))

    def find_instance(self, sop_uid: str) -> StoredInstance | None:
        found = self._stored("i.SOPInstanceUID = ?", [sop_uid])
        return found[0] if found else None

    def _stored(self, where: str, params: list[Any]) -> list[StoredInstance]:
        rows = self._connection().execute(
            "SELECT st.StudyInstanceUID, se.SeriesInstanceUID, i.SOPInstanceUID, i.SOPClassUID,"
            " i.instance_key, i.transfer_syntax, i.storage_key, i.size, i.InstanceNumber,"
            f" i.frames FROM {FROM[Level.INSTANCE]} WHERE {where} ORDER BY {INSTANCE_ORDER}",
            params).fetchall()
        return [
            StoredInstance(study, series, sop, sop_class or "", key, syntax, storage, size,
                           _instance_number(number),
                           tuple(tuple(map(tuple, f)) for f in json.loads(frames)))
            for study, series, sop, sop_class, key, syntax, storage, size, number, frames in rows
        ]

    def storage_keys(self) -> Iterator[str]:
        """Pages of :data:`KEYS_PAGE` rows in primary-key order, one statement each (no read
        transaction stays open between pages: WAL checkpoints are not held back)."""
        last = 0
        while True:
            rows = self._connection().execute(
                "SELECT pk, storage_key FROM instances WHERE pk > ? ORDER BY pk LIMIT ?",
                (last, KEYS_PAGE)).fetchall()
            yield from (key for _pk, key in rows)
            if len(rows) < KEYS_PAGE:
                return
            last = rows[-1][0]

    def metadata(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[str]:
        where, params = uid_filter(study_uid, series_uid, sop_uid)
        rows = self._connection().execute(
            f"SELECT i.metadata FROM {FROM[Level.INSTANCE]} WHERE {where}"
            f" ORDER BY {INSTANCE_ORDER}", params)
        return [text for (text,) in rows]


# ---------------------------------------------------------------------------------------------
# Helpers of the writes and reads above (one open transaction each)


def _add(conn: sqlite3.Connection, record: InstanceRecord) -> tuple[Any, ...] | None:
    """Insert or replace an instance; returns the replaced row's (series pk, storage key,
    study pk), or None."""
    old = conn.execute(
        "SELECT i.series_pk, i.storage_key, se.study_pk FROM instances i"
        " JOIN series se ON se.pk = i.series_pk WHERE i.SOPInstanceUID = ?",
        (record.uid(Level.INSTANCE),)).fetchone()
    study_pk, study_before = _refresh(conn, Level.STUDY, record.study, {
        "study_key": record.study_key, "patient_key": record.patient_key})
    series_pk, series_before = _refresh(conn, Level.SERIES, record.series, {
        "study_pk": study_pk, "series_key": record.series_key})
    if (study_before and study_before[1] != record.patient_key) or (
            series_before and series_before[0] != study_pk):
        # A study now under another patient, or a series under another study: their other
        # instances follow (the triggers move their bytes between patients).
        conn.execute("UPDATE instances SET patient_key = ? WHERE patient_key <> ? AND series_pk"
                     " IN (SELECT pk FROM series WHERE study_pk = ?)",
                     (record.patient_key, record.patient_key, study_pk))
    frames = dumps([[list(part) for part in frame] for frame in record.frames])
    _upsert(conn, Level.INSTANCE, record.instance, {
        "series_pk": series_pk, "instance_key": record.instance_key,
        "metadata": record.metadata, "frames": frames, "size": record.size,
        "transfer_syntax": record.transfer_syntax, "storage_key": record.storage_key,
        "patient_key": record.patient_key, "stored": time.time()})
    # The new record wins: an instance or series stored under other parents moved, and may
    # have left its former parents empty.
    series_left = [old[0]] if old and old[0] != series_pk else []
    studies_left = [pk for pk in (old and old[2], series_before and series_before[0])
                    if pk and pk != study_pk]
    if series_left or studies_left:
        _prune(conn, series_left, studies_left)
    return tuple(old) if old else None


@lru_cache(maxsize=64)
def _upsert_sql(level: Level, names: tuple[str, ...]) -> str:
    uid = COLUMNS[level][0]
    updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names if n != uid)
    return (f"INSERT INTO {TABLE[level]} ({', '.join(map(quote, names))})"
            f" VALUES ({marks(names)}) ON CONFLICT ({quote(uid)}) DO UPDATE SET {updates}"
            " RETURNING pk")


def _upsert(conn: sqlite3.Connection, level: Level, attrs: DicomJson,
            extra: dict[str, Any], text: str | None = None) -> int:
    """Insert or refresh one row keyed by its UID; the primary key (the order) is kept.
    ``text``: ``attrs`` already serialised."""
    row = {**extra, "attrs": dumps(attrs) if text is None else text,
           **matching.row_values(COLUMNS[level], attrs)}
    if not row[COLUMNS[level][0]]:
        raise ValueError(f"{COLUMNS[level][0]} is missing")
    return conn.execute(_upsert_sql(level, tuple(row)), tuple(row.values())).fetchone()[0]


@lru_cache(maxsize=64)
def _current_sql(level: Level, names: tuple[str, ...]) -> str:
    columns = ", ".join(map(quote, ("pk", "attrs", *names)))
    return f"SELECT {columns} FROM {TABLE[level]} WHERE {quote(COLUMNS[level][0])} = ?"


def _refresh(conn: sqlite3.Connection, level: Level, attrs: DicomJson,
             extra: dict[str, Any]) -> tuple[int, tuple[Any, ...] | None]:
    """:func:`_upsert` of a study or series row, skipped when the row already holds these
    attributes and ``extra`` values (every instance of a series after the first): its
    columns derive from them (a change in how they derive needs a migration rewriting
    them anyway). Returns the pk and the row's former ``extra`` values (None if new)."""
    text = dumps(attrs)
    uid_column = COLUMNS[level][0]
    uid = matching.row_values((uid_column,), attrs)[uid_column]
    found = conn.execute(_current_sql(level, tuple(extra)), (uid,)).fetchone() if uid else None
    before = tuple(found[2:]) if found else None
    if found and found[1] == text and before == tuple(extra.values()):
        return found[0], before
    return _upsert(conn, level, attrs, extra, text), before


def _prune(conn: sqlite3.Connection, series_pks: Iterable[int], study_pks: Iterable[int]) -> None:
    """Delete the given series left without instances, then the studies left without series."""
    series_pks = list(dict.fromkeys(series_pks))
    study_pks = list(dict.fromkeys(study_pks))
    for chunk in chunks(series_pks):
        conn.execute(f"DELETE FROM series WHERE pk IN ({marks(chunk)}) AND NOT EXISTS"
                     " (SELECT 1 FROM instances WHERE series_pk = series.pk)", chunk)
    for chunk in chunks(study_pks):
        conn.execute(f"DELETE FROM studies WHERE pk IN ({marks(chunk)}) AND NOT EXISTS"
                     " (SELECT 1 FROM series WHERE study_pk = studies.pk)", chunk)


def _study_computed(conn: sqlite3.Connection, pks: list[int]) -> dict[int, DicomJson]:
    """Stored study JSON plus its computed attributes (PS3.18 §10.6.3.3), grouped queries."""
    attrs: dict[int, DicomJson] = {}
    series: Counter[int] = Counter()
    instances: Counter[int] = Counter()
    modalities: defaultdict[int, set[str]] = defaultdict(set)
    classes: defaultdict[int, set[str]] = defaultdict(set)
    for chunk in chunks(pks):
        holders = marks(chunk)
        for pk, text in conn.execute(f"SELECT pk, attrs FROM studies WHERE pk IN ({holders})",
                                     chunk):
            attrs[pk] = json.loads(text)
        for pk, modality, count in conn.execute(
                "SELECT study_pk, Modality, count(*) FROM series"
                f" WHERE study_pk IN ({holders}) GROUP BY study_pk, Modality", chunk):
            series[pk] += count
            modalities[pk].update(m for m in (modality or "").split("\\") if m)
        for pk, sop_class, count in conn.execute(
                "SELECT se.study_pk, i.SOPClassUID, count(*) FROM instances i JOIN series se"
                f" ON se.pk = i.series_pk WHERE se.study_pk IN ({holders})"
                " GROUP BY se.study_pk, i.SOPClassUID", chunk):
            instances[pk] += count
            classes[pk].update([sop_class] if sop_class else [])
    return with_study_computed(attrs, series, instances, modalities, classes)


def _series_computed(conn: sqlite3.Connection, pks: list[int]) -> dict[int, DicomJson]:
    """Stored series JSON plus NumberOfSeriesRelatedInstances (PS3.18 §10.6.3.3)."""
    attrs: dict[int, DicomJson] = {}
    for chunk in chunks(pks):
        for pk, text, count in conn.execute(
                "SELECT se.pk, se.attrs, (SELECT count(*) FROM instances i"
                f" WHERE i.series_pk = se.pk) FROM series se WHERE se.pk IN ({marks(chunk)})",
                chunk):
            attrs[pk] = json.loads(text)
            attrs[pk][SERIES_RELATED_INSTANCES] = {"vr": "IS", "Value": [count]}
    return attrs
