"""Throw-away PostgreSQL databases for the tests.

The server is ``127.0.0.1:5432`` as ``postgres`` (trust auth), or the maintenance database
given by ``DICOMWEB_TEST_PG`` (a libpq conninfo). CI runs the service: a server that does not
answer fails the tests that need it, it never skips them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

DEFAULT_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def maintenance_dsn() -> str:
    return os.environ.get("DICOMWEB_TEST_PG") or DEFAULT_SERVER


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(maintenance_dsn(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"the PostgreSQL test server does not answer ({error}); start it or set"
                    " DICOMWEB_TEST_PG to the conninfo of a maintenance database",
                    pytrace=False)


def create_database() -> str:
    """Create an empty database ``test_<uuid>``; return its conninfo.

    Commits there do not wait for the WAL flush (``synchronous_commit = off``): a crash
    could lose the last transactions of a throw-away database, never its consistency."""
    name = f"test_{uuid.uuid4().hex}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
            sql.Identifier(name)))
    return make_conninfo(maintenance_dsn(), dbname=name)


def drop_database(dsn: str) -> None:
    """Drop a database made by :func:`create_database`, closing whatever still uses it."""
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    assert str(name).startswith("test_")
    with _admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(str(name))))


@contextmanager
def database() -> Iterator[str]:
    """A fresh database for the duration of the block."""
    dsn = create_database()
    try:
        yield dsn
    finally:
        drop_database(dsn)
