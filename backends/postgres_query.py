"""SQL of the PostgreSQL index (:mod:`backends.index_postgres`): schema, migrations and QIDO
searches.

QIDO constraints on indexed columns become SQL with parameters only; column names come from
the fixed tuples of :mod:`backends.base` and are quoted (they are case-sensitive keywords).
Text columns are ``COLLATE "C"``: comparisons and ranges follow code point order like SQLite
and Python, and a plain b-tree index serves prefix ``LIKE`` whatever the database locale.

PostgreSQL cannot call Python while it scans, so an attribute that is not a column is matched
after the database narrowed the candidates: :func:`search_plan` returns the SQL plus the
:class:`PyFilter` list that :func:`backends.matching.matches` applies to the level's stored
DICOM JSON, and limit/offset are then applied by the caller. A child-level attribute that is
not a column (``ImageType`` in a study search) is found by a first scan of the children
(:attr:`Plan.children`), whose matching parents feed the main query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import psycopg

from . import matching
from .base import Constraint, Level, Match, Query
from .schema_v4 import POSTGRES_V4
from .sql_schema import (
    ALIAS,
    CHILD_KEYWORD,
    COMPUTED_ANY,
    COMPUTED_COUNT,
    DEPTH,
    FROM,
    SELECT,
    USAGE_SLOTS,
    V1_INDEXES,
    V1_KEYWORDS,
    V2_INDEXES,
    V3_INDEXES,
    V4_INDEXES,
    column_term,
)
from .sqlite_query import quote  # the same double-quoted identifiers, validated

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")

_ORDER = {
    Level.STUDY: "st.pk",
    Level.SERIES: "st.pk, se.pk",
    Level.INSTANCE: 'st.pk, se.pk, i."InstanceNumber" NULLS LAST, i.pk',
}
# Children down to the deepest constrained level: (FROM, the parent's pk among them).
_CHILDREN = {
    (Level.STUDY, Level.SERIES): ("series se", "se.study_pk"),
    (Level.STUDY, Level.INSTANCE): ("series se JOIN instances i ON i.series_pk = se.pk",
                                    "se.study_pk"),
    (Level.SERIES, Level.INSTANCE): ("instances i", "i.series_pk"),
}
INSTANCE_ORDER = 'se.pk, i."InstanceNumber" NULLS LAST, i."SOPInstanceUID"'

# ---------------------------------------------------------------------------------------------
# Schema: versioned migrations, each a list of statements applied in one transaction


def _column_ddl(keywords: Sequence[str]) -> str:
    """Columns of the given keywords (the first is the level's UID) and their folded copies.
    Integer VRs are ``numeric`` (they sort and compare as numbers, as in SQLite)."""
    parts = []
    for keyword in keywords:
        vr = matching.COLUMN_TAGS[keyword][1]
        for name in matching.column_names(keyword):
            numeric = name == keyword and vr in matching.INTEGER_VRS
            kind = "numeric" if numeric else 'text COLLATE "C"'
            unique = " NOT NULL UNIQUE" if keyword == keywords[0] else ""
            parts.append(f"{quote(name)} {kind}{unique}")
    return ", ".join(parts)


def _index(table: str, *columns: str, partial: bool = False) -> str:
    name = f"ix_{table}_{'_'.join(columns)}".lower()
    where = f" WHERE {quote(columns[0])} IS NOT NULL" if partial else ""
    return f"CREATE INDEX {name} ON {table} ({', '.join(map(quote, columns))}){where}"


_PK = "pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"  # the stable order of results
_MIGRATION_LOCK = 0x44434D5745420001  # pg_advisory_xact_lock key of the migrations ("DCMWEB")

# Version 3 (backends.sql_schema): storage usage per patient and in total, kept by triggers.
# Each session adds to the totals' slot of its backend pid. Locks: an add takes its patient's
# row after its study, series and instance rows, then its slot; a removal takes the studies
# first (remove_patient: then the patient's row), so the orders agree.
_SLOT = f"pg_backend_pid() % {USAGE_SLOTS}"
_PATIENT_ADDED = """
    INSERT INTO patients AS p (patient_key, last_stored, size, instances)
        VALUES (NEW.patient_key, nextval('patients_last_stored'), NEW.size, 1)
        ON CONFLICT (patient_key) DO UPDATE SET last_stored = excluded.last_stored,
            size = p.size + excluded.size, instances = p.instances + 1
        RETURNING (xmax = 0)::integer INTO added;
"""
_V3 = [
    "ALTER TABLE instances ADD COLUMN patient_key text",
    "UPDATE instances i SET patient_key = st.patient_key FROM series se"
    " JOIN studies st ON st.pk = se.study_pk WHERE se.pk = i.series_pk",
    "ALTER TABLE instances ALTER COLUMN patient_key SET NOT NULL",
    "CREATE TABLE patients (patient_key text PRIMARY KEY, last_stored bigint NOT NULL,"
    " size bigint NOT NULL, instances bigint NOT NULL)",
    "CREATE SEQUENCE patients_last_stored",
    # The order of the instances' primary keys stands for the order they were stored in.
    "INSERT INTO patients (patient_key, last_stored, size, instances) SELECT patient_key,"
    " row_number() OVER (ORDER BY max(pk)), sum(size), count(*) FROM instances"
    " GROUP BY patient_key",
    "SELECT setval('patients_last_stored',"
    " (SELECT coalesce(max(last_stored), 0) + 1 FROM patients), false)",
    "CREATE TABLE storage_usage (slot integer PRIMARY KEY, size bigint NOT NULL,"
    " patients bigint NOT NULL)",
    "INSERT INTO storage_usage (slot, size, patients)"
    f" SELECT n, 0, 0 FROM generate_series(0, {USAGE_SLOTS - 1}) n",
    "UPDATE storage_usage SET size = (SELECT coalesce(sum(size), 0) FROM patients),"
    " patients = (SELECT count(*) FROM patients) WHERE slot = 0",
    *(_index(table, *columns, partial=partial) for table, columns, partial in V3_INDEXES),
    f"""CREATE FUNCTION dicomweb_instance_added() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE added integer;
    BEGIN
        {_PATIENT_ADDED}
        UPDATE storage_usage SET size = size + NEW.size, patients = patients + added
            WHERE slot = {_SLOT};
        RETURN NULL;
    END $$""",
    # A replacement (new blob) counts as a store: the patient moves to the end of the order.
    f"""CREATE FUNCTION dicomweb_instance_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE added integer := 0; gone integer := 0;
    BEGIN
        IF OLD.patient_key = NEW.patient_key THEN
            UPDATE patients SET size = size - OLD.size + NEW.size,
                last_stored = nextval('patients_last_stored')
                WHERE patient_key = NEW.patient_key;
        ELSE
            UPDATE patients SET size = size - OLD.size, instances = instances - 1
                WHERE patient_key = OLD.patient_key;
            DELETE FROM patients WHERE patient_key = OLD.patient_key AND instances <= 0;
            GET DIAGNOSTICS gone = ROW_COUNT;
            {_PATIENT_ADDED}
        END IF;
        UPDATE storage_usage SET size = size - OLD.size + NEW.size,
            patients = patients + added - gone WHERE slot = {_SLOT};
        RETURN NULL;
    END $$""",
    # Removals come in bulk (a study, a cascade): once per statement, grouped per patient.
    f"""CREATE FUNCTION dicomweb_instances_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE gone integer;
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM removed_rows) THEN
            RETURN NULL;
        END IF;
        UPDATE patients p SET size = p.size - d.size, instances = p.instances - d.n
            FROM (SELECT patient_key, sum(size) AS size, count(*) AS n FROM removed_rows
                  GROUP BY patient_key) d
            WHERE p.patient_key = d.patient_key;
        DELETE FROM patients WHERE instances <= 0
            AND patient_key IN (SELECT patient_key FROM removed_rows);
        GET DIAGNOSTICS gone = ROW_COUNT;
        UPDATE storage_usage SET size = size - (SELECT sum(size) FROM removed_rows),
            patients = patients - gone WHERE slot = {_SLOT};
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER instance_added AFTER INSERT ON instances FOR EACH ROW"
    " EXECUTE FUNCTION dicomweb_instance_added()",
    "CREATE TRIGGER instance_changed AFTER UPDATE OF patient_key, size, storage_key"
    " ON instances FOR EACH ROW WHEN (OLD.patient_key <> NEW.patient_key"
    " OR OLD.size <> NEW.size OR OLD.storage_key <> NEW.storage_key)"
    " EXECUTE FUNCTION dicomweb_instance_changed()",
    "CREATE TRIGGER instances_removed AFTER DELETE ON instances"
    " REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION dicomweb_instances_removed()",
]

MIGRATIONS: list[list[str]] = [
    [
        f"CREATE TABLE studies ({_PK}, study_key text NOT NULL, patient_key text NOT NULL,"
        f" attrs text NOT NULL, {_column_ddl(V1_KEYWORDS[Level.STUDY])})",
        f"CREATE TABLE series ({_PK}, study_pk bigint NOT NULL REFERENCES studies (pk)"
        " ON DELETE CASCADE, series_key text NOT NULL, attrs text NOT NULL,"
        f" {_column_ddl(V1_KEYWORDS[Level.SERIES])})",
        f"CREATE TABLE instances ({_PK}, series_pk bigint NOT NULL REFERENCES series (pk)"
        " ON DELETE CASCADE, instance_key text NOT NULL, attrs text NOT NULL,"
        " metadata text NOT NULL, frames text NOT NULL, transfer_syntax text NOT NULL,"
        " storage_key text NOT NULL, size bigint NOT NULL,"
        f" {_column_ddl(V1_KEYWORDS[Level.INSTANCE])})",
        *(_index(table, *columns, partial=partial) for table, columns, partial in V1_INDEXES),
    ],
    [_index(table, *columns, partial=partial) for table, columns, partial in V2_INDEXES],
    _V3,
    [*POSTGRES_V4, *(_index(table, *columns, partial=partial)
                     for table, columns, partial in V4_INDEXES)],
]


def _version(conn: psycopg.Connection) -> int:
    if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]


def migrate(conn: psycopg.Connection) -> None:
    """Apply pending migrations in one transaction; nodes starting at once wait on the
    advisory lock and then find nothing left to do."""
    version = _version(conn)
    if version == len(MIGRATIONS):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
                     " applied timestamptz NOT NULL DEFAULT now())")
        version = _version(conn)
        if version > len(MIGRATIONS):
            raise RuntimeError(f"database schema {version} is newer than this server")
        for number_ in range(version, len(MIGRATIONS)):
            for statement in MIGRATIONS[number_]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number_ + 1,))


# ---------------------------------------------------------------------------------------------
# Values


def number(text: str | None) -> Decimal | None:
    """An integer-VR value as stored and compared (``numeric``); None if not a plain number
    (a multi-valued or malformed value matches nothing in SQL, as in SQLite)."""
    if text is None or len(text) > 40 or not _NUMBER.fullmatch(text.strip()):
        return None
    return Decimal(text.strip())


def clean(text: str) -> str:
    """PostgreSQL text cannot hold NUL characters; DICOM padding may leave some."""
    return text.replace("\x00", "") if "\x00" in text else text


def _like_literal(text: str) -> str:
    """Escape LIKE metacharacters (backslash is the escape character) so ``text`` is literal."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_wildcard(pattern: str) -> str:
    """A DICOM wildcard as a LIKE pattern: '*' any run, '?' one character, the rest literal."""
    return "".join("%" if c == "*" else "_" if c == "?" else _like_literal(c) for c in pattern)


# E'' strings read backslashes the same whatever standard_conforming_strings says.
_LIKE = "LIKE %s ESCAPE E'\\\\'"

# ---------------------------------------------------------------------------------------------
# QIDO constraints -> SQL


def _operand(alias: str, column: str, also: str | None, also_default: str) -> str:
    expr = f"{alias}.{quote(column)}"
    if also is None:
        return expr
    # Combined date-time matching (PS3.4 C.2.2.2.5.1).
    return f"({expr} || coalesce({alias}.{quote(also)}, '{also_default}')) COLLATE \"C\""


def _compare_numbers(expr: str, c: Constraint) -> tuple[str, list[Any]]:
    """An integer column: numbers compared as numbers; wildcards on their decimal text."""
    if c.kind is Match.RANGE:
        lo, hi = (list(c.values) + ["", ""])[:2]
        terms, params = [f"{expr} IS NOT NULL"], []
        for bound, op in ((lo.strip(), ">="), (hi.strip(), "<=")):
            if bound:
                if number(bound) is None:  # SQLite: text sorts after every number
                    return ("FALSE", []) if op == ">=" else (terms[0], [])
                terms.append(f"{expr} {op} %s")
                params.append(number(bound))
        return " AND ".join(terms), params
    values = [v.strip() for v in c.values if v.strip()]
    if c.kind is Match.WILDCARD:
        return " OR ".join([f"{expr}::text {_LIKE}"] * len(values)) or "FALSE", [
            _like_wildcard(v) for v in values]
    numbers = [n for n in map(number, values) if n is not None]
    return (f"{expr} = ANY(%s)", [numbers]) if numbers else ("FALSE", [])


def _compare(alias: str, column: str, c: Constraint, folded: bool) -> tuple[str, list[Any]]:
    """SQL comparing one column with a column constraint."""
    vr = matching.COLUMN_TAGS[c.keyword][1]
    if vr in matching.INTEGER_VRS and c.also is None:
        return _compare_numbers(f"{alias}.{quote(column)}", c)
    if c.kind is Match.RANGE:  # C.2.2.2.5: '' is an open end
        lo, hi = (clean(matching.query_value("DT" if c.also else vr, v, False))
                  for v in (list(c.values) + ["", ""])[:2])
        terms, params = [], []
        if lo:
            terms.append(f"{_operand(alias, column, c.also, matching.DAY_END)} >= %s")
            params.append(lo)
        if hi:
            terms.append(f"{_operand(alias, column, c.also, '')} <= %s")
            params.append(hi)
        return " AND ".join(terms) or f"{alias}.{quote(column)} IS NOT NULL", params
    expr = _operand(alias, column, c.also, "")
    values = [clean(q) for q in (matching.query_value(vr, v, folded) for v in c.values) if q]
    if not values:
        return "FALSE", []
    if c.kind is Match.WILDCARD:  # C.2.2.2.4
        return " OR ".join([f"{expr} {_LIKE}"] * len(values)), list(map(_like_wildcard, values))
    if len(values) == 1:  # C.2.2.2.1 single value
        return f"{expr} = %s", values
    return f"{expr} = ANY(%s)", [values]  # C.2.2.2.2 list of values


def _fuzzy_term(alias: str, columns: Sequence[str], c: Constraint) -> tuple[str, list[Any]]:
    """Every query word is a prefix of some word of the name, in any of its groups."""
    words = [clean(w) for v in c.values for w in matching.fuzzy_words(v)]
    # ' ' + the name with '^' and the value delimiter as spaces: a word starts after a space.
    spaced = [f"(' ' || translate({alias}.{quote(col)}, E'^\\\\', '  '))" for col in columns]
    any_group = "(" + " OR ".join(f"{text} {_LIKE}" for text in spaced) + ")"
    params = [f"% {_like_literal(w)}%" for w in words for _ in columns]
    return " AND ".join([any_group] * len(words)), params


def _computed_term(c: Constraint, case_sensitive: bool) -> tuple[str, list[Any]]:
    if c.keyword in COMPUTED_COUNT:
        numbers = [int(v) for v in c.values if v.strip().isdigit()]
        if c.kind not in (Match.SINGLE, Match.LIST) or not numbers:
            return "FALSE", []  # counts only match numbers exactly
        return f"{COMPUTED_COUNT[c.keyword]} = ANY(%s)", [numbers]
    level, alias, semi_join = COMPUTED_ANY[c.keyword]
    keyword = CHILD_KEYWORD[c.keyword]
    tag, vr = matching.COLUMN_TAGS[keyword]
    child = Constraint(level, keyword, tag, vr, c.kind, c.values)
    sql, params = _term(child, case_sensitive, alias)
    return f"{semi_join}{sql})", params


def in_sql(c: Constraint) -> bool:
    """True if the constraint is matched in SQL (a column or a computed attribute)."""
    return c.keyword in COMPUTED_ANY or c.keyword in COMPUTED_COUNT or matching.is_column(c)


def _term(c: Constraint, case_sensitive: bool, alias: str | None = None) -> tuple[str, list[Any]]:
    if c.keyword in COMPUTED_ANY or c.keyword in COMPUTED_COUNT:
        return _computed_term(c, case_sensitive)
    alias = alias or ALIAS[c.level]
    return column_term(c, case_sensitive, alias, _fuzzy_term, _compare)


# ---------------------------------------------------------------------------------------------
# Search plans


@dataclass(frozen=True)
class PyFilter:
    """A constraint matched in Python on the DICOM JSON in column ``slot`` of each row."""

    slot: int
    constraint: Constraint


@dataclass(frozen=True)
class Plan:
    """SQL of one query plus what Python still has to do.

    Without ``filters`` the SQL carries the limit and offset. With them, the rows are
    streamed and the caller applies ``filters``, then ``offset`` and ``limit``. ``children``
    (if any) is run first: its rows are (parent pk, JSON...) to filter with its own
    ``filters``; the main query then takes the list of matching parents as its parameter
    number ``parents_at`` (:func:`with_parents`).
    """

    sql: str
    params: list[Any]
    filters: tuple[PyFilter, ...] = ()
    children: Plan | None = None
    parents_at: int = 0


def _join(terms: list[tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    return " AND ".join(sql for sql, _ in terms), [p for _, params in terms for p in params]


def _filters(constraints: list[Constraint], first_slot: int,
             slots: dict[Level, int]) -> tuple[list[str], tuple[PyFilter, ...]]:
    """Columns to select (the JSON of each level concerned) and the filters reading them."""
    columns: list[str] = []
    filters = []
    for c in constraints:
        if c.level not in slots:
            slots[c.level] = first_slot + len(columns)
            columns.append(f"{ALIAS[c.level]}.attrs")
        filters.append(PyFilter(slots[c.level], c))
    return columns, tuple(filters)


def _children_plan(query: Query, deepest: Level, below: list[Constraint],
                   own_sql: tuple[str, list[Any]]) -> tuple[str, list[Any], Plan | None]:
    """Child constraints: a SQL semi-join, or a scan of the children filtered in Python when
    some attribute is not a column (restricted to the parents the own constraints allow)."""
    source, parent = _CHILDREN[query.level, deepest]
    where, params = _join([_term(c, query.case_sensitive) for c in below if in_sql(c)])
    python = [c for c in below if not in_sql(c)]
    if not python:
        return f"{ALIAS[query.level]}.pk IN (SELECT {parent} FROM {source} WHERE {where})", \
            params, None
    terms = [where] if where else []
    if own_sql[0]:
        terms.append(f"{parent} IN (SELECT {ALIAS[query.level]}.pk FROM {FROM[query.level]}"
                     f" WHERE {own_sql[0]})")
        params = params + own_sql[1]
    columns, filters = _filters(python, 1, {})
    sql = f"SELECT {', '.join([parent, *columns])} FROM {source}"
    if terms:
        sql += " WHERE " + " AND ".join(terms)
    return f"{ALIAS[query.level]}.pk = ANY(%s)", [], Plan(sql, params, filters)


def search_plan(query: Query) -> Plan:
    """The SQL of a search (own and parent levels directly, children by a semi-join or a
    first scan) and the constraints left to Python."""
    if query.offset < 0 or (query.limit is not None and query.limit < 0):
        raise ValueError("limit and offset must not be negative")
    own: list[tuple[str, list[Any]]] = []
    python: list[Constraint] = []
    below: list[Constraint] = []
    deepest = query.level
    for c in query.constraints:
        if matching.is_universal(c):
            continue
        if DEPTH[c.level] > DEPTH[query.level]:  # any child matches (studies?Modality=CT)
            below.append(c)
            deepest = max(deepest, c.level, key=DEPTH.__getitem__)
        elif in_sql(c):
            own.append(_term(c, query.case_sensitive))
        else:
            python.append(c)
    children = None
    if below:
        sql, params, children = _children_plan(query, deepest, below, _join(own))
        own.append((sql, params))
    where, params = _join(own)
    select = SELECT[query.level].split(", ")
    slots = {Level.INSTANCE: 2} if query.level is Level.INSTANCE else {}
    columns, filters = _filters(python, len(select), slots)
    parents_at = len(params)  # the children's parents are the last term of the WHERE clause
    sql = f"SELECT {', '.join(select + columns)} FROM {FROM[query.level]}"
    sql += f" WHERE {where}" if where else ""
    sql += f" ORDER BY {_ORDER[query.level]}"
    if not filters and (query.limit is not None or query.offset):
        sql += " LIMIT %s OFFSET %s"
        params += [query.limit, query.offset]
    return Plan(sql, params, filters, children, parents_at)


def with_parents(plan: Plan, parents: list[int]) -> Plan:
    """The main query of a plan with children, once the matching parents are known."""
    params = list(plan.params)
    params.insert(plan.parents_at, parents)
    return replace(plan, params=params, children=None)


def uid_filter(study_uid: str, series_uid: str | None, sop_uid: str | None) -> tuple[str, list]:
    """WHERE over instances/series/studies: a child is only found under its own parents."""
    terms, params = ['st."StudyInstanceUID" = %s'], [study_uid]
    if series_uid is not None:
        terms.append('se."SeriesInstanceUID" = %s')
        params.append(series_uid)
    if sop_uid is not None:
        terms.append('i."SOPInstanceUID" = %s')
        params.append(sop_uid)
    return " AND ".join(terms), params
