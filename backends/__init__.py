"""Backend construction: small factories with lazy imports, so that a deployment on
the filesystem never imports boto3 and one on SQLite never imports psycopg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.base import Index, StorageArea


def filesystem_storage(root: str | Path) -> StorageArea:
    from backends.storage_fs import FilesystemStorage

    return FilesystemStorage(root)


def sqlite_index(directory: str | Path) -> Index:
    """The embedded default: one SQLite file, ``index.sqlite``, in ``directory``."""
    from backends.index_sqlite import SqliteIndex

    Path(directory).mkdir(parents=True, exist_ok=True)
    return SqliteIndex(Path(directory) / "index.sqlite")


def s3_storage(**options: object) -> StorageArea:
    """Amazon S3 or an S3-compatible service; ``options`` are those of ``S3Storage``."""
    from backends.storage_s3 import S3Storage

    return S3Storage(**options)  # type: ignore[arg-type]


def compressed_storage(inner: StorageArea, compress: bool = True) -> StorageArea:
    """``inner`` with new blobs zlib-compressed when ``compress`` (``StorageCompression``);
    blobs of either kind, stored before or after a change, read back unchanged."""
    from backends.storage_compressed import CompressedStorage

    return CompressedStorage(inner, compress=compress)


def postgres_index(dsn: str, **options: Any) -> Index:
    """The shared index: a PostgreSQL database (libpq conninfo or URI; see :func:`postgres_dsn`).

    Nothing connects before first use; the schema is migrated then."""
    from backends.index_postgres import PostgresIndex

    return PostgresIndex(dsn, **options)


def postgres_dsn(host: str, port: int | str | None, database: str, username: str | None,
                 password: str | None) -> str:
    """A libpq conninfo string from separate settings, every value quoted as libpq requires
    (spaces, quotes and backslashes in a password are safe). Empty values are left out, so
    that libpq defaults (and ``PGPASSWORD`` / ``.pgpass``) apply."""
    from psycopg.conninfo import make_conninfo

    params = {"host": host, "port": port, "dbname": database, "user": username,
              "password": password}
    return make_conninfo(**{k: str(v) for k, v in params.items() if v not in (None, "")})
