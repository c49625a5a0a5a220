"""Backend construction: small factories with lazy imports, so that a deployment on
the filesystem never imports boto3 and one on SQLite never imports psycopg."""

from __future__ import annotations

from pathlib import Path

from backends.base import Index, StorageArea


def filesystem_storage(root: str | Path) -> StorageArea:
    from backends.storage_fs import FilesystemStorage

    return FilesystemStorage(root)


def sqlite_index(directory: str | Path) -> Index:
    """The embedded default: one SQLite file, ``index.sqlite``, in ``directory``."""
    from backends.index_sqlite import SqliteIndex

    Path(directory).mkdir(parents=True, exist_ok=True)
    return SqliteIndex(Path(directory) / "index.sqlite")
