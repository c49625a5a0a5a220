"""Schema version 4 of both SQL indexes: Orthanc's resource model, the change log, jobs and
properties (:mod:`backends.sql_resources` reads and writes them).

- Indexes on the Orthanc id columns (``sql_schema.V4_INDEXES``): a lookup by id reads an
  index, never a table.
- ``instances.stored``: POSIX time the instance was last written (its Orthanc
  ``LastUpdate``; a parent's is its newest child's, read from the (series_pk, stored)
  index). Rows of an older schema keep 0: unknown. Set by the write path, not a trigger (a
  trigger would rewrite the wide instance row a second time).
- ``patients.first_stored``: the order patients were first stored (``/patients`` lists
  them in it). Existing patients are numbered by their first study.
- ``changes``: Orthanc's change log, written by triggers so that every write path (add,
  replace, moves, removals, cascades, recycling) logs in the same transaction:
  ``New<Level>`` when a row appears, ``Deleted`` when it goes, both when its id changes (a
  study moved to another patient gets a new id: the old id is gone). A patient is new when
  the v3 triggers create its ``patients`` row (its first instance) and deleted with it. A
  replacement of an instance by a new blob under the same id logs ``NewInstance`` again, as
  Orthanc does when it overwrites (the content changed; consumers of ``/changes`` re-read
  it); its parents log nothing, and storing the same blob again logs nothing.
  Rows stored before the migration have no entries.
- ``jobs`` (every :class:`~backends.base.JobRecord` field; ``pk`` is the insertion order
  that breaks ties) and ``properties`` (name → value).

Frozen once released, like every migration: later changes need a version 5.
"""

from __future__ import annotations

# (name, kind, constraint) of the job columns, frozen (JobRecord may grow: a new migration).
_JOB_COLUMNS = (
    ("id", "text", "NOT NULL UNIQUE"), ("type", "text", "NOT NULL"),
    ("state", "text", "NOT NULL"), ("priority", "int", "NOT NULL"),
    ("created", "real", "NOT NULL"), ("parameters", "text", "NOT NULL"),
    ("content", "text", "NOT NULL"), ("progress", "int", "NOT NULL"),
    ("position", "int", "NOT NULL"), ("error_code", "int", "NOT NULL"),
    ("error_description", "text", "NOT NULL"), ("error_details", "text", "NOT NULL"),
    ("completed", "real", ""), ("runtime", "real", "NOT NULL"), ("owner", "text", ""),
    ("lease_until", "real", ""), ("request", "text", ""), ("attempts", "int", "NOT NULL"),
)
# Tables whose rows are Orthanc resources: (table, id column, resource type).
_LOGGED = (("studies", "study_key", "Study"), ("series", "series_key", "Series"),
           ("instances", "instance_key", "Instance"))


def _jobs(types: dict[str, str], pk: str) -> str:
    columns = ", ".join(f'"{name}" {types[kind]} {rule}'.rstrip()
                        for name, kind, rule in _JOB_COLUMNS)
    return f"CREATE TABLE jobs ({pk}, {columns})"


# -- SQLite ------------------------------------------------------------------------------------

_SQLITE_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def _sqlite_log(kind: str, level: str, key: str) -> str:
    return ("INSERT INTO changes (change_type, resource_type, resource_id, date)"
            f" VALUES ('{kind}', '{level}', {key}, {_SQLITE_NOW});")


def _sqlite_triggers() -> list[str]:
    statements = [
        # The new row's first_stored is still NULL: max() skips it.
        "CREATE TRIGGER log_patient_new AFTER INSERT ON patients BEGIN"
        " UPDATE patients SET first_stored = (SELECT coalesce(max(first_stored), 0) + 1"
        " FROM patients) WHERE patient_key = new.patient_key;"
        f" {_sqlite_log('NewPatient', 'Patient', 'new.patient_key')} END",
        "CREATE TRIGGER log_patient_deleted AFTER DELETE ON patients BEGIN"
        f" {_sqlite_log('Deleted', 'Patient', 'old.patient_key')} END",
    ]
    for table, key, level in _LOGGED:
        statements += [
            f"CREATE TRIGGER log_{table}_new AFTER INSERT ON {table} BEGIN"
            f" {_sqlite_log('New' + level, level, 'new.' + key)} END",
            f"CREATE TRIGGER log_{table}_deleted AFTER DELETE ON {table} BEGIN"
            f" {_sqlite_log('Deleted', level, 'old.' + key)} END",
        ]
    for table, key, level in _LOGGED[:2]:
        statements.append(
            f"CREATE TRIGGER log_{table}_rekeyed AFTER UPDATE OF {key} ON {table}"
            f" WHEN old.{key} <> new.{key} BEGIN {_sqlite_log('Deleted', level, 'old.' + key)}"
            f" {_sqlite_log('New' + level, level, 'new.' + key)} END")
    statements.append(
        "CREATE TRIGGER log_instances_rewritten AFTER UPDATE OF instance_key, storage_key"
        " ON instances WHEN old.instance_key <> new.instance_key"
        " OR old.storage_key <> new.storage_key BEGIN"
        " INSERT INTO changes (change_type, resource_type, resource_id, date)"
        f" SELECT 'Deleted', 'Instance', old.instance_key, {_SQLITE_NOW}"
        " WHERE old.instance_key <> new.instance_key;"
        f" {_sqlite_log('NewInstance', 'Instance', 'new.instance_key')} END")
    return statements


SQLITE_V4: list[str] = [
    "ALTER TABLE instances ADD COLUMN stored REAL NOT NULL DEFAULT 0",
    "ALTER TABLE patients ADD COLUMN first_stored INTEGER",
    "UPDATE patients SET first_stored = coalesce((SELECT min(pk) FROM studies"
    " WHERE studies.patient_key = patients.patient_key), 0)",
    # AUTOINCREMENT: a seq is never reused, even after the newest entries were deleted.
    "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, change_type TEXT NOT NULL,"
    " resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, date REAL NOT NULL)",
    _jobs({"text": "TEXT", "int": "INTEGER", "real": "REAL"}, "pk INTEGER PRIMARY KEY"),
    "CREATE TABLE properties (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    *_sqlite_triggers(),
]

# -- PostgreSQL --------------------------------------------------------------------------------

_PG_NOW = "extract(epoch FROM clock_timestamp())::double precision"
_PG_INSERT = "INSERT INTO changes (change_type, resource_type, resource_id, date)"


def _pg_functions(table: str, key: str, level: str) -> list[str]:
    """Row-level: a new row, or its id changed (instances: or its blob). Statement-level:
    the rows a DELETE (or a cascade) took, in one INSERT."""
    return [
        f"""CREATE FUNCTION dicomweb_{table}_logged() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF OLD.{key} <> NEW.{key} THEN
                    {_PG_INSERT} VALUES ('Deleted', '{level}', OLD.{key}, {_PG_NOW});
                END IF;
            END IF;
            {_PG_INSERT} VALUES ('New{level}', '{level}', NEW.{key}, {_PG_NOW});
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION dicomweb_{table}_gone() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {_PG_INSERT} SELECT 'Deleted', '{level}', {key}, {_PG_NOW} FROM gone;
            RETURN NULL;
        END $$""",
        f"CREATE TRIGGER log_{table}_new AFTER INSERT ON {table} FOR EACH ROW"
        f" EXECUTE FUNCTION dicomweb_{table}_logged()",
        f"CREATE TRIGGER log_{table}_gone AFTER DELETE ON {table} REFERENCING OLD TABLE AS gone"
        f" FOR EACH STATEMENT EXECUTE FUNCTION dicomweb_{table}_gone()",
    ]


POSTGRES_V4: list[str] = [
    "ALTER TABLE instances ADD COLUMN stored double precision NOT NULL DEFAULT 0",
    "ALTER TABLE patients ADD COLUMN first_stored bigint",
    "UPDATE patients p SET first_stored = o.n FROM (SELECT patient_key,"
    " row_number() OVER (ORDER BY min(pk)) AS n FROM studies GROUP BY patient_key) o"
    " WHERE o.patient_key = p.patient_key",
    "CREATE SEQUENCE patients_first_stored",
    "SELECT setval('patients_first_stored',"
    " (SELECT coalesce(max(first_stored), 0) + 1 FROM patients), false)",
    "UPDATE patients SET first_stored = nextval('patients_first_stored')"
    " WHERE first_stored IS NULL",
    # The v3 triggers insert patients without naming the column: the default numbers them.
    "ALTER TABLE patients ALTER COLUMN first_stored SET DEFAULT nextval('patients_first_stored')",
    "ALTER TABLE patients ALTER COLUMN first_stored SET NOT NULL",
    # Identity values are taken in seq order but committed in any: a reader polling with
    # ``since`` may see a lower seq appear after a higher one (as with Orthanc's own
    # PostgreSQL plugin).
    "CREATE TABLE changes (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " change_type text NOT NULL, resource_type text NOT NULL, resource_id text NOT NULL,"
    " date double precision NOT NULL)",
    _jobs({"text": 'text COLLATE "C"', "int": "bigint", "real": "double precision"},
          "pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    # "C": the prefix range of ``properties(prefix)`` is code point order.
    'CREATE TABLE properties (name text COLLATE "C" PRIMARY KEY, value text NOT NULL)',
    *_pg_functions("patients", "patient_key", "Patient"),
    *(statement for logged in _LOGGED for statement in _pg_functions(*logged)),
    *(f"CREATE TRIGGER log_{table}_rekeyed AFTER UPDATE OF {key} ON {table} FOR EACH ROW"
      f" WHEN (OLD.{key} <> NEW.{key}) EXECUTE FUNCTION dicomweb_{table}_logged()"
      for table, key, _level in _LOGGED[:2]),
    "CREATE TRIGGER log_instances_rewritten AFTER UPDATE OF instance_key, storage_key"
    " ON instances FOR EACH ROW WHEN (OLD.instance_key <> NEW.instance_key"
    " OR OLD.storage_key <> NEW.storage_key) EXECUTE FUNCTION dicomweb_instances_logged()",
]
