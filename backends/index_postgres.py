"""``Index`` on PostgreSQL: one database shared by every worker of every node.

Connections come from a ``psycopg_pool.ConnectionPool`` opened at first use and re-created in
a forked child (gunicorn ``preload_app``: the app is built in the master, workers fork); an
inherited pool is kept referenced and never used, since closing its connections would end
the parent's sessions. Connections are in autocommit mode: single-statement reads need no
transaction, writes run in ``conn.transaction()`` (READ COMMITTED) and searches in a
``REPEATABLE READ READ ONLY`` snapshot, so that matches and computed attributes agree.

Migrations are versioned in ``schema_version`` and applied at first use in one transaction
holding ``pg_advisory_xact_lock``: nodes starting at once apply them exactly once.

Writes take row locks in one order (study, series, instance, then the patient's usage row
and a totals slot, both written by the triggers of schema version 3) so that concurrent adds
of the same study neither fail nor duplicate; a removal locks its study first, so that no
add slips into what it deletes. Serialization failures and deadlocks are retried a few times.
An unreachable server, a pool timeout or any other ``OperationalError`` becomes
:class:`~backends.base.BackendUnavailable`.

Orthanc's resource model, the change log, jobs and properties (schema version 4) are
:class:`backends.sql_resources.SqlResources`, shared with SQLite; job claims lock with
``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from . import matching
from .base import (
    COLUMNS,
    BackendUnavailable,
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
from .postgres_query import (
    INSTANCE_ORDER,
    Plan,
    clean,
    migrate,
    number,
    search_plan,
    uid_filter,
    with_parents,
)
from .sql_resources import Q, SqlResources
from .sql_schema import (
    FROM,
    SERIES_RELATED_INSTANCES,
    TABLE,
    search_result,
    with_study_computed,
)
from .sqlite_query import dumps, quote

T = TypeVar("T")


_ATTEMPTS = 5  # tries of a transaction (deadlock, serialization failure, broken connection)
_BATCH = 500  # rows per round trip when streaming rows to filter in Python
KEYS_PAGE = 5000  # rows per statement of storage_keys
_RETRYABLE = (errors.SerializationFailure, errors.DeadlockDetected)


def _where(dsn: str) -> str:
    """host:port/dbname of a conninfo, for messages (never the password)."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(invalid conninfo)"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def _reason(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:200]


def _instance_number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, ArithmeticError):
        return None


class PostgresIndex(SqlResources, Index):
    """The index in one PostgreSQL database; safe for many threads, processes and nodes."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10,
                 timeout: float = 30) -> None:
        self._dsn = dsn
        self._sizes = (min_size, max_size)
        self._timeout = timeout
        self._where = _where(dsn)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        # Pools inherited through fork: kept referenced, never used or closed (their sockets
        # belong to the parent's sessions; closing them would end those sessions).
        self._inherited: list[ConnectionPool] = []

    def __repr__(self) -> str:  # never the password
        return f"PostgresIndex({self._where!r})"

    # -- pool, migrations and transactions ---------------------------------------------------

    def _forget_inherited(self) -> None:
        """In a forked child, set the parent's pool aside (its lock may be held, too)."""
        if os.getpid() != self._pid:
            if self._pool is not None:
                self._inherited.append(self._pool)
            self._pid, self._pool, self._lock = os.getpid(), None, threading.Lock()

    def _connections(self) -> ConnectionPool:
        self._forget_inherited()
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                self._pool = self._open()
            return self._pool

    def _open(self) -> ConnectionPool:
        info = conninfo_to_dict(self._dsn)
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in info:  # libpq: whole seconds, at least 2
            kwargs["connect_timeout"] = max(2, int(self._timeout))
        pool = ConnectionPool(self._dsn, min_size=self._sizes[0], max_size=self._sizes[1],
                              timeout=self._timeout, kwargs=kwargs, open=False,
                              name=f"dicomweb-index-{os.getpid()}")
        pool.open(wait=False)
        try:
            with pool.connection() as conn:
                migrate(conn)
        except BaseException:
            pool.close()
            raise
        return pool

    def _run(self, work: Callable[[psycopg.Connection], T], mode: str = "auto") -> T:
        """Run ``work`` on a pooled connection: ``auto`` (one statement), ``write`` (a READ
        COMMITTED transaction) or ``snapshot`` (REPEATABLE READ READ ONLY).

        Deadlocks and serialization failures are retried; a read on a connection found
        broken (the server restarted since it was pooled) is retried on another one.
        """
        for attempt in range(1, _ATTEMPTS + 1):
            conn: psycopg.Connection | None = None
            try:
                with self._connections().connection() as conn:
                    if mode == "write":
                        with conn.transaction():
                            return work(conn)
                    if mode == "snapshot":
                        with _snapshot(conn):
                            return work(conn)
                    return work(conn)
            except _RETRYABLE as error:
                if attempt == _ATTEMPTS:
                    raise self._unavailable(error) from error
                time.sleep(0.005 * 2 ** attempt)
            except PoolTimeout as error:
                raise self._unavailable(error) from error
            except psycopg.OperationalError as error:
                if mode == "write" or conn is None or not conn.broken or attempt == _ATTEMPTS:
                    raise self._unavailable(error) from error
        raise AssertionError("unreachable")

    def _unavailable(self, error: BaseException) -> BackendUnavailable:
        return BackendUnavailable(f"PostgreSQL {self._where}: {_reason(error)}")

    def close(self) -> None:
        """Close this process's pool (a later call opens a new one)."""
        self._forget_inherited()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # Claims skip the jobs other transactions are claiming (no waiting, each job once).
    _CLAIM_LOCK = " FOR UPDATE SKIP LOCKED"

    def _read(self, work: Callable[[Q], T], single: bool = False) -> T:
        return self._run(lambda conn: work(_statements(conn)), "auto" if single else "snapshot")

    def _write(self, work: Callable[[Q], T]) -> T:
        return self._run(lambda conn: work(_statements(conn)), "write")

    # -- writes ------------------------------------------------------------------------------

    def add_instance(self, record: InstanceRecord) -> str | None:
        return self._run(lambda conn: _add(conn, record), "write")

    def add_instance_if_absent(self, record: InstanceRecord) -> bool:
        try:
            self._run(lambda conn: _add(conn, record, replace=False), "write")
        except _AlreadyStored:
            return False
        return True

    def remove_patient(self, patient_key: str, last_stored: int | None = None) -> Removed:
        return self._run(lambda conn: _remove_patient(conn, patient_key, last_stored), "write")

    def remove(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
        *, storage_key: str | None = None,
    ) -> Removed:
        if storage_key is not None and sop_uid is None:
            raise ValueError("remove(storage_key=...) removes one instance: give sop_uid")
        return self._run(
            lambda conn: _remove(conn, study_uid, series_uid, sop_uid, storage_key), "write")

    # -- reads -------------------------------------------------------------------------------

    def usage(self, patient_key: str | None = None) -> Usage:
        size, patients, patient_size = self._run(lambda conn: conn.execute(
            "SELECT (SELECT coalesce(sum(size), 0) FROM storage_usage)::bigint,"
            " (SELECT coalesce(sum(patients), 0) FROM storage_usage)::bigint,"
            " (SELECT size FROM patients WHERE patient_key = %s)", (patient_key,)).fetchone())
        return Usage(size, patients, patient_size)

    def oldest_patients(self, limit: int, exclude: Collection[str] = ()) -> list[PatientUsage]:
        rows = self._run(lambda conn: conn.execute(
            "SELECT patient_key, last_stored, size, instances FROM patients"
            " WHERE NOT (patient_key = ANY(%s)) ORDER BY last_stored LIMIT %s",
            (list(exclude), limit)).fetchall())
        return [PatientUsage(*row) for row in rows]

    def search(self, query: Query) -> list[SearchResult]:
        plan = search_plan(query)
        if query.limit == 0:
            return []
        return self._run(lambda conn: _search(conn, query, plan), "snapshot")

    def instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[StoredInstance]:
        where, params = uid_filter(study_uid, series_uid, sop_uid)
        return self._run(lambda conn: _stored(conn, where, params))

    def find_instance(self, sop_uid: str) -> StoredInstance | None:
        found = self._run(lambda conn: _stored(conn, 'i."SOPInstanceUID" = %s', [sop_uid]))
        return found[0] if found else None

    def storage_keys(self) -> Iterator[str]:
        """Pages of :data:`KEYS_PAGE` rows in primary-key order, one statement (and one
        pooled connection, given back at once) each: no transaction spans the pages."""
        last = 0
        while True:
            rows = self._run(lambda conn, after=last: conn.execute(
                "SELECT pk, storage_key FROM instances WHERE pk > %s ORDER BY pk LIMIT %s",
                (after, KEYS_PAGE)).fetchall())
            yield from (key for _pk, key in rows)
            if len(rows) < KEYS_PAGE:
                return
            last = rows[-1][0]

    def metadata(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[str]:
        where, params = uid_filter(study_uid, series_uid, sop_uid)
        sql = f"SELECT i.metadata FROM {FROM[Level.INSTANCE]} WHERE {where}" \
              f" ORDER BY {INSTANCE_ORDER}"
        return self._run(lambda conn: [text for (text,) in conn.execute(sql, params)])


def _statements(conn: psycopg.Connection) -> Q:
    """:mod:`backends.sql_resources` statements (``?`` placeholders, no literal ``%``)."""
    def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cursor = conn.execute(sql.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description else []
    return run


@contextmanager
def _snapshot(conn: psycopg.Connection) -> Iterator[None]:
    """A read-only snapshot on an autocommit connection (one round trip to begin)."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        yield
    except BaseException:
        if not conn.broken:
            with suppress(psycopg.Error):
                conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# ---------------------------------------------------------------------------------------------
# Writes (one open READ COMMITTED transaction each)


def _row(level: Level, attrs: DicomJson) -> dict[str, Any]:
    """Column values of one level: numbers for integer VRs, text without NUL otherwise."""
    row: dict[str, Any] = {}
    for name, text in matching.row_values(COLUMNS[level], attrs).items():
        if name in matching.COLUMN_TAGS and matching.COLUMN_TAGS[name][1] in matching.INTEGER_VRS:
            row[name] = number(text)
        else:
            row[name] = None if text is None else clean(text)
    return row


@lru_cache(maxsize=64)
def _locate_sql(level: Level, names: tuple[str, ...], lock: str) -> str:
    columns = ", ".join(map(quote, ("pk", *names)))
    return f"SELECT {columns} FROM {TABLE[level]} WHERE {quote(COLUMNS[level][0])} = %s {lock}"


@lru_cache(maxsize=64)
def _insert_sql(level: Level, names: tuple[str, ...]) -> str:
    return (f"INSERT INTO {TABLE[level]} ({', '.join(map(quote, names))})"
            f" VALUES ({', '.join(['%s'] * len(names))})"
            f" ON CONFLICT ({quote(COLUMNS[level][0])}) DO NOTHING RETURNING pk")


@lru_cache(maxsize=64)
def _update_sql(level: Level, names: tuple[str, ...]) -> str:
    sets = ", ".join(f"{quote(n)} = %s" for n in names)
    return f"UPDATE {TABLE[level]} SET {sets} WHERE pk = %s"


def _claim(conn: psycopg.Connection, level: Level, values: dict[str, Any],
           compared: Sequence[str], lock: str,
           always: bool = False) -> tuple[int, tuple[Any, ...] | None]:
    """Insert or update the row of ``values`` (keyed by the level's UID) and lock it.

    An existing row is locked with ``lock`` and only rewritten when one of ``compared`` (its
    attrs and parents, from which every column derives) changed, or ``always``. A new row is
    inserted ``ON CONFLICT DO NOTHING``: losing that race to another transaction means the
    row now exists, so look again. Returns the pk (the order, kept on update) and the row's
    former ``compared`` values (None if new).
    """
    uid = values[COLUMNS[level][0]]
    if not uid:
        raise ValueError(f"{COLUMNS[level][0]} is missing")
    names = tuple(values)
    for _ in range(_ATTEMPTS):
        found = conn.execute(_locate_sql(level, tuple(compared), lock), (uid,)).fetchone()
        if found is not None:
            before = tuple(found[1:])
            if always or before != tuple(values[n] for n in compared):
                conn.execute(_update_sql(level, names), (*values.values(), found[0]))
            return found[0], before
        inserted = conn.execute(_insert_sql(level, names), tuple(values.values())).fetchone()
        if inserted is not None:
            return inserted[0], None
    raise errors.SerializationFailure(f"{TABLE[level]} row {uid} keeps changing")


class _AlreadyStored(Exception):  # noqa: N818 - a condition, not an error
    """Rolls back an add that found its SOPInstanceUID stored (keep the first)."""


def _add(conn: psycopg.Connection, record: InstanceRecord, replace: bool = True) -> str | None:
    """Insert or (``replace``) replace an instance; the replaced blob's key, if any. Without
    ``replace``, a stored SOPInstanceUID raises :class:`_AlreadyStored` and the transaction
    rolls back whatever it refreshed (callers look the instance up first: that is rare)."""
    study = {"study_key": record.study_key, "patient_key": record.patient_key,
             "attrs": dumps(record.study), **_row(Level.STUDY, record.study)}
    study_pk, study_before = _claim(conn, Level.STUDY, study,
                                    ("attrs", "study_key", "patient_key"), "FOR KEY SHARE")
    series = {"study_pk": study_pk, "series_key": record.series_key,
              "attrs": dumps(record.series), **_row(Level.SERIES, record.series)}
    series_pk, series_before = _claim(conn, Level.SERIES, series,
                                      ("attrs", "study_pk", "series_key"), "FOR KEY SHARE")
    if (study_before is not None and study_before[2] != record.patient_key) or (
            series_before is not None and series_before[1] != study_pk):
        # A study now under another patient, or a series under another study: their other
        # instances follow (the triggers move their bytes between patients).
        conn.execute("UPDATE instances SET patient_key = %s WHERE patient_key <> %s AND"
                     " series_pk IN (SELECT pk FROM series WHERE study_pk = %s)",
                     (record.patient_key, record.patient_key, study_pk))
    frames = dumps([[list(part) for part in frame] for frame in record.frames])
    instance = {"series_pk": series_pk, "instance_key": record.instance_key,
                "attrs": dumps(record.instance), "metadata": record.metadata, "frames": frames,
                "transfer_syntax": record.transfer_syntax, "storage_key": record.storage_key,
                "size": record.size, "patient_key": record.patient_key,
                "stored": time.time(), **_row(Level.INSTANCE, record.instance)}
    old: tuple[Any, ...] | None = None
    if replace:
        # Always rewritten; FOR UPDATE makes the replaced key exact under concurrent replaces.
        _, old = _claim(conn, Level.INSTANCE, instance, ("series_pk", "storage_key"),
                        "FOR UPDATE", always=True)
    elif conn.execute(_insert_sql(Level.INSTANCE, tuple(instance)),
                      tuple(instance.values())).fetchone() is None:
        raise _AlreadyStored
    # The new record wins: an instance or series stored under other parents moved, and may
    # have left its former parents empty.
    old_series = old[0] if old else None
    series_left = [old_series] if old_series is not None and old_series != series_pk else []
    studies_left = []
    if old_series is not None and series_left:
        studies_left += [r[0] for r in conn.execute(
            "SELECT study_pk FROM series WHERE pk = %s", (old_series,))]
    if series_before is not None and series_before[1] != study_pk:
        studies_left.append(series_before[1])
    if series_left or studies_left:
        _prune(conn, series_left, [pk for pk in studies_left if pk != study_pk])
    if old is None or old[1] == record.storage_key:
        return None
    return str(old[1])


def _prune(conn: psycopg.Connection, series_pks: list[int], study_pks: list[int]) -> None:
    """Delete the given series left without instances, then the studies left without series.

    Each parent is locked first: an add still inserting a child holds a lock on it, so the
    check below (a new statement, hence a new snapshot) sees every committed child."""
    for table, child, parent, pks in (("series", "instances", "series_pk", series_pks),
                                      ("studies", "series", "study_pk", study_pks)):
        if not pks:
            continue
        pks = sorted(set(pks))
        conn.execute(f"SELECT pk FROM {table} WHERE pk = ANY(%s) ORDER BY pk FOR UPDATE",
                     (pks,))
        conn.execute(f"DELETE FROM {table} t WHERE pk = ANY(%s) AND NOT EXISTS"
                     f" (SELECT 1 FROM {child} c WHERE c.{parent} = t.pk)", (pks,))


def _remove(conn: psycopg.Connection, study_uid: str, series_uid: str | None,
            sop_uid: str | None, storage_key: str | None = None) -> Removed:
    study = conn.execute('SELECT pk FROM studies WHERE "StudyInstanceUID" = %s FOR UPDATE',
                         (study_uid,)).fetchone()
    if study is None:
        return Removed((), 0)
    where, params = uid_filter(study_uid, series_uid, sop_uid)
    if storage_key is not None:  # read under the study's lock: no add can change it now
        where, params = f"{where} AND i.storage_key = %s", [*params, storage_key]
    rows = conn.execute(
        f"SELECT i.pk, i.storage_key, se.pk FROM {FROM[Level.INSTANCE]} WHERE {where}"
        f" ORDER BY {INSTANCE_ORDER}", params).fetchall()
    if not rows:
        return Removed((), 0)
    if sop_uid is not None:
        conn.execute("DELETE FROM instances WHERE pk = ANY(%s)", ([row[0] for row in rows],))
    elif series_uid is not None:
        conn.execute('DELETE FROM series WHERE study_pk = %s AND "SeriesInstanceUID" = %s',
                     (study[0], series_uid))
    else:
        conn.execute("DELETE FROM studies WHERE pk = %s", (study[0],))
    _prune(conn, [row[2] for row in rows], [study[0]])
    return Removed(tuple(row[1] for row in rows), len(rows))


def _remove_patient(conn: psycopg.Connection, patient_key: str,
                    last_stored: int | None) -> Removed:
    """Studies locked first, then the patient's row (the order of adds: study, ..., patient):
    an add to the patient committed meanwhile shows in ``last_stored``, and one still running
    waits for this removal and then stores into a new patient row, untouched."""
    studies = [pk for (pk,) in conn.execute(
        "SELECT pk FROM studies WHERE patient_key = %s ORDER BY pk FOR UPDATE", (patient_key,))]
    row = conn.execute("SELECT last_stored FROM patients WHERE patient_key = %s FOR UPDATE",
                       (patient_key,)).fetchone()
    if not studies or row is None or (last_stored is not None and row[0] != last_stored):
        return Removed((), 0)
    keys = [key for (key,) in conn.execute(
        "SELECT i.storage_key FROM instances i JOIN series se ON se.pk = i.series_pk"
        " WHERE se.study_pk = ANY(%s)", (studies,))]
    conn.execute("DELETE FROM studies WHERE pk = ANY(%s)", (studies,))
    return Removed(tuple(keys), len(keys))


# ---------------------------------------------------------------------------------------------
# Reads


def _stored(conn: psycopg.Connection, where: str, params: list[Any]) -> list[StoredInstance]:
    rows = conn.execute(
        'SELECT st."StudyInstanceUID", se."SeriesInstanceUID", i."SOPInstanceUID",'
        ' i."SOPClassUID", i.instance_key, i.transfer_syntax, i.storage_key, i.size,'
        f' i."InstanceNumber", i.frames FROM {FROM[Level.INSTANCE]} WHERE {where}'
        f" ORDER BY {INSTANCE_ORDER}", params).fetchall()
    return [
        StoredInstance(study, series, sop, sop_class or "", key, syntax, storage, size,
                       _instance_number(number_),
                       tuple(tuple(map(tuple, f)) for f in json.loads(frames)))
        for study, series, sop, sop_class, key, syntax, storage, size, number_, frames in rows
    ]


def _passes(plan: Plan, row: Sequence[Any], case_sensitive: bool) -> bool:
    """The Python filters of a plan on one row (each level's JSON parsed once)."""
    parsed: dict[int, DicomJson] = {}
    for f in plan.filters:
        if f.slot not in parsed:
            parsed[f.slot] = json.loads(row[f.slot])
        attrs, c = parsed[f.slot], f.constraint
        if c.also is None:
            ok = matching.matches(c, attrs.get(c.tag), case_sensitive)
        else:
            ok = matching.matches_combined(c, attrs.get(c.tag),
                                           attrs.get(matching.tag_of(c.also)), case_sensitive)
        if not ok:
            return False
    return True


def _stream(conn: psycopg.Connection, plan: Plan) -> psycopg.ServerCursor:
    """A server-side cursor over the rows of a plan: iterating it fetches ``_BATCH`` rows per
    round trip, so a filter in Python never loads a whole table."""
    cursor = conn.cursor(name="dicomweb_search")
    cursor.itersize = _BATCH
    cursor.execute(plan.sql, plan.params)
    return cursor


def _parents(conn: psycopg.Connection, plan: Plan, case_sensitive: bool) -> list[int]:
    """Parents having a child that passes the children plan's Python filters."""
    found: set[int] = set()
    with _stream(conn, plan) as cursor:
        for row in cursor:
            if row[0] not in found and _passes(plan, row, case_sensitive):
                found.add(row[0])
    return sorted(found)


def _page(conn: psycopg.Connection, query: Query, plan: Plan) -> list[tuple[Any, ...]]:
    if not plan.filters:  # limit and offset are in the SQL
        return conn.execute(plan.sql, plan.params).fetchall()
    rows: list[tuple[Any, ...]] = []
    skip = query.offset
    with _stream(conn, plan) as cursor:
        for row in cursor:
            if not _passes(plan, row, query.case_sensitive):
                continue
            if skip:
                skip -= 1
                continue
            rows.append(row)
            if query.limit is not None and len(rows) >= query.limit:
                break
    return rows


def _search(conn: psycopg.Connection, query: Query, plan: Plan) -> list[SearchResult]:
    if plan.children is not None:
        parents = _parents(conn, plan.children, query.case_sensitive)
        if not parents:
            return []
        plan = with_parents(plan, parents)
    rows = _page(conn, query, plan)
    studies = _study_computed(conn, list(dict.fromkeys(row[0] for row in rows)))
    series: dict[int, DicomJson] = {}
    if query.level is not Level.STUDY:
        series = _series_computed(conn, list(dict.fromkeys(row[1] for row in rows)))
    return [search_result(query.level, row, studies, series) for row in rows]


def _study_computed(conn: psycopg.Connection, pks: list[int]) -> dict[int, DicomJson]:
    """Stored study JSON plus its computed attributes (PS3.18 §10.6.3.3), grouped queries."""
    if not pks:
        return {}
    attrs = {pk: json.loads(text) for pk, text in conn.execute(
        "SELECT pk, attrs FROM studies WHERE pk = ANY(%s)", (pks,))}
    series: Counter[int] = Counter()
    instances: Counter[int] = Counter()
    modalities: defaultdict[int, set[str]] = defaultdict(set)
    classes: defaultdict[int, set[str]] = defaultdict(set)
    for pk, modality, count in conn.execute(
            'SELECT study_pk, "Modality", count(*) FROM series WHERE study_pk = ANY(%s)'
            ' GROUP BY study_pk, "Modality"', (pks,)):
        series[pk] += count
        modalities[pk].update(m for m in (modality or "").split("\\") if m)
    # Counted per series first (an index-only scan each), then summed: ~20 % faster than
    # grouping the joined instance rows.
    for pk, sop_class, count in conn.execute(
            "SELECT se.study_pk, c.sop_class, sum(c.n)::bigint FROM series se CROSS JOIN"
            ' LATERAL (SELECT "SOPClassUID" AS sop_class, count(*) AS n FROM instances'
            " WHERE series_pk = se.pk GROUP BY 1) c WHERE se.study_pk = ANY(%s)"
            " GROUP BY 1, 2", (pks,)):
        instances[pk] += count
        classes[pk].update([sop_class] if sop_class else [])
    return with_study_computed(attrs, series, instances, modalities, classes)


def _series_computed(conn: psycopg.Connection, pks: list[int]) -> dict[int, DicomJson]:
    """Stored series JSON plus NumberOfSeriesRelatedInstances (PS3.18 §10.6.3.3)."""
    attrs: dict[int, DicomJson] = {}
    for pk, text, count in conn.execute(
            "SELECT se.pk, se.attrs, (SELECT count(*) FROM instances i"
            " WHERE i.series_pk = se.pk) FROM series se WHERE se.pk = ANY(%s)", (pks,)):
        attrs[pk] = json.loads(text)
        attrs[pk][SERIES_RELATED_INSTANCES] = {"vr": "IS", "Value": [count]}
    return attrs
