"""``Index`` on SQLite: one database file shared by every worker process of one node.

WAL journal, ``BEGIN IMMEDIATE`` for writes and a busy timeout let several gunicorn workers
write at once. Connections are per thread, opened lazily and re-opened in a forked child
(SQLite connections must not cross ``fork``).

QIDO constraints on indexed columns become SQL (parameters only; column names come from
the fixed tuples of :mod:`backends.base`). Any other attribute is matched by
:func:`backends.matching.matches` on the level's stored DICOM JSON, called from SQL as the
``dicom_match`` function, so that limit and offset always stay in SQL.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import matching
from .base import (
    COLUMNS,
    Constraint,
    DicomJson,
    Index,
    InstanceRecord,
    Level,
    Match,
    Query,
    Removed,
    SearchResult,
    StoredInstance,
)

_TABLE = {Level.STUDY: "studies", Level.SERIES: "series", Level.INSTANCE: "instances"}
_ALIAS = {Level.STUDY: "st", Level.SERIES: "se", Level.INSTANCE: "i"}
_DEPTH = {Level.STUDY: 0, Level.SERIES: 1, Level.INSTANCE: 2}
_CHUNK = 500  # bound parameters per IN (...) list
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_TAG = re.compile(r"[0-9A-F]{8}")

# Tags of the computed attributes of PS3.18 §10.6.3.3 (table 10.6.3-3 and -4).
_MODALITIES_IN_STUDY = "00080061"
_SOP_CLASSES_IN_STUDY = "00080062"
_STUDY_RELATED_SERIES = "00201206"
_STUDY_RELATED_INSTANCES = "00201208"
_SERIES_RELATED_INSTANCES = "00201209"

_FROM = {
    Level.STUDY: "studies st",
    Level.SERIES: "series se JOIN studies st ON st.pk = se.study_pk",
    Level.INSTANCE: "instances i JOIN series se ON se.pk = i.series_pk"
    " JOIN studies st ON st.pk = se.study_pk",
}
_ORDER = {
    Level.STUDY: "st.pk",
    Level.SERIES: "st.pk, se.pk",
    Level.INSTANCE: "st.pk, se.pk, i.InstanceNumber NULLS LAST, i.pk",
}
# Parents' JSON is read once per distinct parent, with the computed attributes.
_SELECT = {
    Level.STUDY: "st.pk",
    Level.SERIES: "st.pk, se.pk",
    Level.INSTANCE: "st.pk, se.pk, i.attrs",
}
# Rows having a matching child: a semi-join on the children down to the deepest constrained
# level (not correlated, so SQLite can start from an index of the child table).
_DESCEND = {
    (Level.STUDY, Level.SERIES): "st.pk IN (SELECT se.study_pk FROM series se WHERE",
    (Level.STUDY, Level.INSTANCE): "st.pk IN (SELECT se.study_pk FROM series se"
    " JOIN instances i ON i.series_pk = se.pk WHERE",
    (Level.SERIES, Level.INSTANCE): "se.pk IN (SELECT i.series_pk FROM instances i WHERE",
}
_INSTANCE_ORDER = "se.pk, i.InstanceNumber NULLS LAST, i.SOPInstanceUID"


def _q(name: str) -> str:
    """Quote a column name; only names from the fixed column tuples ever get here."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a column name: {name!r}")
    return f'"{name}"'


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _marks(items: Sized) -> str:
    return ",".join("?" * len(items))


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
            parts.append(f"{_q(name)} {affinity}{unique}")
    return ", ".join(parts)


def _index(table: str, *columns: str, partial: bool = False) -> str:
    name = f"ix_{table}_{'_'.join(columns)}"
    where = f" WHERE {_q(columns[0])} IS NOT NULL" if partial else ""
    return f"CREATE INDEX {name} ON {table} ({', '.join(map(_q, columns))}){where}"


# The indexed keywords of schema version 1, frozen: a migration never changes once released.
# A keyword added to backends.base later needs a new migration (ALTER TABLE ... ADD COLUMN and
# a backfill from ``attrs``); a test compares the tables with the current column tuples.
_V1_KEYWORDS = {
    Level.STUDY: ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
                  "ReferringPhysicianName", "StudyID", "StudyDescription", "PatientName",
                  "PatientID", "PatientBirthDate", "PatientSex"),
    Level.SERIES: ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                   "SeriesDate", "SeriesTime", "BodyPartExamined",
                   "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"),
    Level.INSTANCE: ("SOPInstanceUID", "SOPClassUID", "InstanceNumber", "Rows", "Columns",
                     "BitsAllocated", "NumberOfFrames", "ContentDate", "ContentTime"),
}

MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE studies (pk INTEGER PRIMARY KEY, study_key TEXT NOT NULL,"
        " patient_key TEXT NOT NULL, attrs TEXT NOT NULL, "
        f"{_column_ddl(_V1_KEYWORDS[Level.STUDY])})",
        "CREATE TABLE series (pk INTEGER PRIMARY KEY, study_pk INTEGER NOT NULL"
        " REFERENCES studies (pk) ON DELETE CASCADE, series_key TEXT NOT NULL,"
        f" attrs TEXT NOT NULL, {_column_ddl(_V1_KEYWORDS[Level.SERIES])})",
        "CREATE TABLE instances (pk INTEGER PRIMARY KEY, series_pk INTEGER NOT NULL"
        " REFERENCES series (pk) ON DELETE CASCADE, instance_key TEXT NOT NULL,"
        " attrs TEXT NOT NULL, metadata TEXT NOT NULL, frames TEXT NOT NULL,"
        " transfer_syntax TEXT NOT NULL, storage_key TEXT NOT NULL, size INTEGER NOT NULL,"
        f" {_column_ddl(_V1_KEYWORDS[Level.INSTANCE])})",
        _index("studies", "PatientName_folded"),
        _index("studies", "PatientName_ideographic_folded", partial=True),
        _index("studies", "PatientName_phonetic_folded", partial=True),
        _index("studies", "PatientID_folded"),
        _index("studies", "StudyDate"),
        _index("studies", "AccessionNumber_folded"),
        _index("series", "study_pk"),
        _index("series", "Modality_folded"),
        _index("instances", "series_pk", "InstanceNumber"),
        _index("instances", "storage_key"),
    ],
]


# ---------------------------------------------------------------------------------------------
# dicom_match(): Python matching of non-column attributes, called from SQL


@lru_cache(maxsize=256)
def _decode_spec(spec: str) -> tuple[Constraint, bool]:
    kind, vr, values, combined = json.loads(spec)
    return Constraint(Level.STUDY, "", "", vr, Match(kind), tuple(values)), combined


def _element(text: Any) -> dict[str, Any] | None:
    value = json.loads(text) if isinstance(text, str) else None
    return value if isinstance(value, dict) else None


def _dicom_match(element: Any, also: Any, spec: str, case_sensitive: int) -> int:
    constraint, combined = _decode_spec(spec)
    if combined:
        return int(matching.matches_combined(
            constraint, _element(element), _element(also), bool(case_sensitive)))
    return int(matching.matches(constraint, _element(element), bool(case_sensitive)))


def _json_path(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise ValueError(f"not a tag: {tag!r}")
    return f'$."{tag}"'


# ---------------------------------------------------------------------------------------------
# QIDO constraints -> SQL


def _glob_literal(text: str) -> str:
    """Escape GLOB metacharacters so that ``text`` matches itself."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def _glob_wildcard(pattern: str) -> str:
    """A DICOM wildcard as a GLOB pattern: '*' and '?' kept, '[' and ']' literal."""
    return "".join(f"[{c}]" if c in "[]" else c for c in pattern)


def _operand(alias: str, column: str, also: str | None, also_default: str) -> str:
    expr = f"{alias}.{_q(column)}"
    if also is None:
        return expr
    # Combined date-time matching (PS3.4 C.2.2.2.5.1).
    return f"({expr} || coalesce({alias}.{_q(also)}, '{also_default}'))"


def _compare(alias: str, column: str, c: Constraint, folded: bool) -> tuple[str, list[Any]]:
    """SQL comparing one column with a column constraint."""
    vr = matching.COLUMN_TAGS[c.keyword][1]
    if c.kind is Match.RANGE:  # C.2.2.2.5: '' is an open end
        lo, hi = (matching.query_value("DT" if c.also else vr, v, False)
                  for v in (list(c.values) + ["", ""])[:2])
        terms, params = [], []
        if lo:
            terms.append(f"{_operand(alias, column, c.also, matching.DAY_END)} >= ?")
            params.append(lo)
        if hi:
            terms.append(f"{_operand(alias, column, c.also, '')} <= ?")
            params.append(hi)
        return " AND ".join(terms) or f"{alias}.{_q(column)} IS NOT NULL", params
    expr = _operand(alias, column, c.also, "")
    values = [q for q in (matching.query_value(vr, v, folded) for v in c.values) if q]
    if not values:
        return "0", []
    if c.kind is Match.WILDCARD:  # C.2.2.2.4
        return " OR ".join([f"{expr} GLOB ?"] * len(values)), list(map(_glob_wildcard, values))
    if len(values) == 1:  # C.2.2.2.1 single value
        return f"{expr} = ?", values
    return f"{expr} IN ({_marks(values)})", values  # C.2.2.2.2 list of values


def _fuzzy_term(alias: str, columns: Sequence[str], c: Constraint) -> tuple[str, list[Any]]:
    """Every query word is a prefix of some word of the name, in any of its groups."""
    words = [w for v in c.values for w in matching.fuzzy_words(v)]
    # ' ' + the name with '^' and the value delimiter as spaces: a word starts after a space.
    spaced = [f"(' ' || replace(replace({alias}.{_q(col)}, '^', ' '), '\\', ' '))"
              for col in columns]
    any_group = "(" + " OR ".join(f"{text} GLOB ?" for text in spaced) + ")"
    params = [f"* {_glob_literal(w)}*" for w in words for _ in columns]
    return " AND ".join([any_group] * len(words)), params


def _udf_term(alias: str, c: Constraint, case_sensitive: bool) -> tuple[str, list[Any]]:
    """Non-column attribute: matched in Python on the level's DICOM JSON."""
    also = "NULL"
    params: list[Any] = [_json_path(c.tag)]
    if c.also is not None:
        also = f"json_extract({alias}.attrs, ?)"
        params.append(_json_path(matching.tag_of(c.also)))
    spec = _dumps([c.kind.value, c.vr, list(c.values), c.also is not None])
    params += [spec, int(case_sensitive)]
    return f"dicom_match(json_extract({alias}.attrs, ?), {also}, ?, ?)", params


# Computed attributes (PS3.18 §10.6.3.3) as matching keys. ModalitiesInStudy and
# SOPClassesInStudy match when any series / instance of the study matches (PS3.18
# §10.6.1.2.1.1); the counts compare with a count of the children.
_COMPUTED_ANY = {
    "ModalitiesInStudy": (Level.SERIES, "cs", "st.pk IN (SELECT cs.study_pk FROM series cs"
                          " WHERE "),
    "SOPClassesInStudy": (Level.INSTANCE, "ci", "st.pk IN (SELECT cs.study_pk FROM series cs"
                          " JOIN instances ci ON ci.series_pk = cs.pk WHERE "),
}
_CHILD_KEYWORD = {"ModalitiesInStudy": "Modality", "SOPClassesInStudy": "SOPClassUID"}
_COMPUTED_COUNT = {
    "NumberOfStudyRelatedSeries": "(SELECT count(*) FROM series cs WHERE cs.study_pk = st.pk)",
    "NumberOfStudyRelatedInstances": "(SELECT count(*) FROM series cs JOIN instances ci"
                                     " ON ci.series_pk = cs.pk WHERE cs.study_pk = st.pk)",
    "NumberOfSeriesRelatedInstances": "(SELECT count(*) FROM instances ci"
                                      " WHERE ci.series_pk = se.pk)",
}


def _computed_term(c: Constraint, case_sensitive: bool) -> tuple[str, list[Any]]:
    if c.keyword in _COMPUTED_COUNT:
        numbers = [int(v) for v in c.values if v.strip().isdigit()]
        if c.kind not in (Match.SINGLE, Match.LIST) or not numbers:
            return "0", []  # counts only match numbers exactly
        return f"{_COMPUTED_COUNT[c.keyword]} IN ({_marks(numbers)})", numbers
    level, alias, semi_join = _COMPUTED_ANY[c.keyword]
    keyword = _CHILD_KEYWORD[c.keyword]
    tag, vr = matching.COLUMN_TAGS[keyword]
    child = Constraint(level, keyword, tag, vr, c.kind, c.values)
    sql, params = _term(child, case_sensitive, alias)
    return f"{semi_join}{sql})", params


def _term(c: Constraint, case_sensitive: bool, alias: str | None = None) -> tuple[str, list[Any]]:
    if c.keyword in _COMPUTED_ANY or c.keyword in _COMPUTED_COUNT:
        return _computed_term(c, case_sensitive)
    alias = alias or _ALIAS[c.level]
    if not matching.is_column(c):
        return _udf_term(alias, c, case_sensitive)
    vr = matching.COLUMN_TAGS[c.keyword][1]
    if c.kind is Match.FUZZY:
        return _fuzzy_term(alias, matching.match_columns(c.keyword, matching.is_text(vr)), c)
    fold = matching.is_text(vr) and not case_sensitive
    sql: list[str] = []
    params: list[Any] = []
    for column in matching.match_columns(c.keyword, fold and c.kind is not Match.RANGE):
        term, values = _compare(alias, column, c, fold)
        sql.append(f"({term})")
        params += values
    return f"({' OR '.join(sql)})", params


def _where(query: Query) -> tuple[str, list[Any]]:
    """WHERE clause of a search: own and parent levels directly, children by a semi-join."""
    own: list[tuple[str, list[Any]]] = []
    below: list[tuple[str, list[Any]]] = []
    deepest = query.level
    for constraint in query.constraints:
        if matching.is_universal(constraint):
            continue
        term = _term(constraint, query.case_sensitive)
        if _DEPTH[constraint.level] <= _DEPTH[query.level]:
            own.append(term)
        else:  # a key of a lower level matches if any child matches (studies?Modality=CT)
            below.append(term)
            deepest = max(deepest, constraint.level, key=_DEPTH.__getitem__)
    if below:
        conditions = " AND ".join(sql for sql, _ in below)
        semi_join = f"{_DESCEND[query.level, deepest]} {conditions})"
        own.append((semi_join, [p for _, params in below for p in params]))
    if not own:
        return "", []
    return " WHERE " + " AND ".join(sql for sql, _ in own), [p for _, ps in own for p in ps]


def _search_sql(query: Query) -> tuple[str, list[Any]]:
    if query.offset < 0 or (query.limit is not None and query.limit < 0):
        raise ValueError("limit and offset must not be negative")
    where, params = _where(query)
    sql = f"SELECT {_SELECT[query.level]} FROM {_FROM[query.level]}{where}" \
          f" ORDER BY {_ORDER[query.level]}"
    if query.limit is not None or query.offset:
        sql += " LIMIT ? OFFSET ?"
        params += [-1 if query.limit is None else query.limit, query.offset]
    return sql, params


def _uid_filter(study_uid: str, series_uid: str | None, sop_uid: str | None) -> tuple[str, list]:
    """WHERE over instances/series/studies: a child is only found under its own parents."""
    terms, params = ["st.StudyInstanceUID = ?"], [study_uid]
    if series_uid is not None:
        terms.append("se.SeriesInstanceUID = ?")
        params.append(series_uid)
    if sop_uid is not None:
        terms.append("i.SOPInstanceUID = ?")
        params.append(sop_uid)
    return " AND ".join(terms), params


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


class SqliteIndex(Index):
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
            conn.create_function("dicom_match", 4, _dicom_match, deterministic=True)
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

    # -- writes ------------------------------------------------------------------------------

    def add_instance(self, record: InstanceRecord) -> str | None:
        sop_uid = record.uid(Level.INSTANCE)
        with self._transaction() as conn:
            old_series = conn.execute(
                "SELECT study_pk FROM series WHERE SeriesInstanceUID = ?",
                (record.uid(Level.SERIES),)).fetchone()
            old = conn.execute(
                "SELECT i.series_pk, i.storage_key, se.study_pk FROM instances i"
                " JOIN series se ON se.pk = i.series_pk WHERE i.SOPInstanceUID = ?",
                (sop_uid,)).fetchone()
            study_pk = _upsert(conn, Level.STUDY, record.study, {
                "study_key": record.study_key, "patient_key": record.patient_key})
            series_pk = _upsert(conn, Level.SERIES, record.series, {
                "study_pk": study_pk, "series_key": record.series_key})
            frames = _dumps([[list(part) for part in frame] for frame in record.frames])
            _upsert(conn, Level.INSTANCE, record.instance, {
                "series_pk": series_pk, "instance_key": record.instance_key,
                "metadata": record.metadata, "frames": frames, "size": record.size,
                "transfer_syntax": record.transfer_syntax, "storage_key": record.storage_key})
            # The new record wins: an instance or series stored under other parents moved.
            _prune(conn, [old[0]] if old else [],
                   [pk for pk in (old and old[2], old_series and old_series[0]) if pk])
        if old is None or old[1] == record.storage_key:
            return None
        return old[1]

    def remove(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> Removed:
        where, params = _uid_filter(study_uid, series_uid, sop_uid)
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT i.pk, i.storage_key, se.pk, st.pk FROM {_FROM[Level.INSTANCE]}"
                f" WHERE {where} ORDER BY {_INSTANCE_ORDER}", params).fetchall()
            if sop_uid is not None:
                for chunk in _chunks([row[0] for row in rows]):
                    conn.execute(f"DELETE FROM instances WHERE pk IN ({_marks(chunk)})", chunk)
            elif series_uid is not None:
                conn.execute(
                    "DELETE FROM series WHERE SeriesInstanceUID = ? AND study_pk IN"
                    " (SELECT pk FROM studies WHERE StudyInstanceUID = ?)",
                    (series_uid, study_uid))
            else:
                conn.execute("DELETE FROM studies WHERE StudyInstanceUID = ?", (study_uid,))
            _prune(conn, [row[2] for row in rows], [row[3] for row in rows])
        return Removed(tuple(row[1] for row in rows), len(rows))

    # -- reads -------------------------------------------------------------------------------

    def search(self, query: Query) -> list[SearchResult]:
        sql, params = _search_sql(query)
        with self._transaction("DEFERRED") as conn:
            rows = conn.execute(sql, params).fetchall()
            studies = _study_computed(conn, list(dict.fromkeys(row[0] for row in rows)))
            series: dict[int, DicomJson] = {}
            if query.level is not Level.STUDY:
                series = _series_computed(conn, list(dict.fromkeys(row[1] for row in rows)))
        return [_result(query.level, row, studies, series) for row in rows]

    def instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[StoredInstance]:
        return self._stored(*_uid_filter(study_uid, series_uid, sop_uid))

    def find_instance(self, sop_uid: str) -> StoredInstance | None:
        found = self._stored("i.SOPInstanceUID = ?", [sop_uid])
        return found[0] if found else None

    def _stored(self, where: str, params: list[Any]) -> list[StoredInstance]:
        rows = self._connection().execute(
            "SELECT st.StudyInstanceUID, se.SeriesInstanceUID, i.SOPInstanceUID, i.SOPClassUID,"
            " i.instance_key, i.transfer_syntax, i.storage_key, i.size, i.InstanceNumber,"
            f" i.frames FROM {_FROM[Level.INSTANCE]} WHERE {where} ORDER BY {_INSTANCE_ORDER}",
            params).fetchall()
        return [
            StoredInstance(study, series, sop, sop_class or "", key, syntax, storage, size,
                           _instance_number(number),
                           tuple(tuple(map(tuple, f)) for f in json.loads(frames)))
            for study, series, sop, sop_class, key, syntax, storage, size, number, frames in rows
        ]

    def metadata(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[str]:
        where, params = _uid_filter(study_uid, series_uid, sop_uid)
        rows = self._connection().execute(
            f"SELECT i.metadata FROM {_FROM[Level.INSTANCE]} WHERE {where}"
            f" ORDER BY {_INSTANCE_ORDER}", params)
        return [text for (text,) in rows]


# ---------------------------------------------------------------------------------------------
# Helpers of the writes and reads above (one open transaction each)


@lru_cache(maxsize=64)
def _upsert_sql(level: Level, names: tuple[str, ...]) -> str:
    uid = COLUMNS[level][0]
    updates = ", ".join(f"{_q(n)} = excluded.{_q(n)}" for n in names if n != uid)
    return (f"INSERT INTO {_TABLE[level]} ({', '.join(map(_q, names))})"
            f" VALUES ({_marks(names)}) ON CONFLICT ({_q(uid)}) DO UPDATE SET {updates}"
            " RETURNING pk")


def _upsert(conn: sqlite3.Connection, level: Level, attrs: DicomJson,
            extra: dict[str, Any]) -> int:
    """Insert or refresh one row keyed by its UID; the primary key (the order) is kept."""
    row = {**extra, "attrs": _dumps(attrs), **matching.row_values(COLUMNS[level], attrs)}
    if not row[COLUMNS[level][0]]:
        raise ValueError(f"{COLUMNS[level][0]} is missing")
    return conn.execute(_upsert_sql(level, tuple(row)), tuple(row.values())).fetchone()[0]


def _prune(conn: sqlite3.Connection, series_pks: Iterable[int], study_pks: Iterable[int]) -> None:
    """Delete the given series left without instances, then the studies left without series."""
    series_pks = list(dict.fromkeys(series_pks))
    study_pks = list(dict.fromkeys(study_pks))
    for chunk in _chunks(series_pks):
        conn.execute(f"DELETE FROM series WHERE pk IN ({_marks(chunk)}) AND NOT EXISTS"
                     " (SELECT 1 FROM instances WHERE series_pk = series.pk)", chunk)
    for chunk in _chunks(study_pks):
        conn.execute(f"DELETE FROM studies WHERE pk IN ({_marks(chunk)}) AND NOT EXISTS"
                     " (SELECT 1 FROM series WHERE study_pk = studies.pk)", chunk)


def _study_computed(conn: sqlite3.Connection, pks: list[int]) -> dict[int, DicomJson]:
    """Stored study JSON plus its computed attributes (PS3.18 §10.6.3.3), grouped queries."""
    attrs: dict[int, DicomJson] = {}
    series: Counter[int] = Counter()
    instances: Counter[int] = Counter()
    modalities: defaultdict[int, set[str]] = defaultdict(set)
    classes: defaultdict[int, set[str]] = defaultdict(set)
    for chunk in _chunks(pks):
        marks = _marks(chunk)
        for pk, text in conn.execute(f"SELECT pk, attrs FROM studies WHERE pk IN ({marks})",
                                     chunk):
            attrs[pk] = json.loads(text)
        for pk, modality, count in conn.execute(
                "SELECT study_pk, Modality, count(*) FROM series"
                f" WHERE study_pk IN ({marks}) GROUP BY study_pk, Modality", chunk):
            series[pk] += count
            modalities[pk].update(m for m in (modality or "").split("\\") if m)
        for pk, sop_class, count in conn.execute(
                "SELECT se.study_pk, i.SOPClassUID, count(*) FROM instances i JOIN series se"
                f" ON se.pk = i.series_pk WHERE se.study_pk IN ({marks})"
                " GROUP BY se.study_pk, i.SOPClassUID", chunk):
            instances[pk] += count
            classes[pk].update([sop_class] if sop_class else [])
    for pk, study in attrs.items():
        study[_MODALITIES_IN_STUDY] = _multi("CS", sorted(modalities[pk]))
        study[_SOP_CLASSES_IN_STUDY] = _multi("UI", sorted(classes[pk]))
        study[_STUDY_RELATED_SERIES] = {"vr": "IS", "Value": [series[pk]]}
        study[_STUDY_RELATED_INSTANCES] = {"vr": "IS", "Value": [instances[pk]]}
    return attrs


def _series_computed(conn: sqlite3.Connection, pks: list[int]) -> dict[int, DicomJson]:
    """Stored series JSON plus NumberOfSeriesRelatedInstances (PS3.18 §10.6.3.3)."""
    attrs: dict[int, DicomJson] = {}
    for chunk in _chunks(pks):
        for pk, text, count in conn.execute(
                "SELECT se.pk, se.attrs, (SELECT count(*) FROM instances i"
                f" WHERE i.series_pk = se.pk) FROM series se WHERE se.pk IN ({_marks(chunk)})",
                chunk):
            attrs[pk] = json.loads(text)
            attrs[pk][_SERIES_RELATED_INSTANCES] = {"vr": "IS", "Value": [count]}
    return attrs


def _multi(vr: str, values: list[str]) -> dict[str, Any]:
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def _result(level: Level, row: Sequence[Any], studies: dict[int, DicomJson],
            series: dict[int, DicomJson]) -> SearchResult:
    """One match; each result gets its own copies of the shared parent JSON."""
    study = dict(studies[row[0]])
    if level is Level.STUDY:
        return SearchResult(study)
    if level is Level.SERIES:
        return SearchResult(study, dict(series[row[1]]))
    return SearchResult(study, dict(series[row[1]]), json.loads(row[2]))
