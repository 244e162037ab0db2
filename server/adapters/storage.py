"""Opening storage: the one place that looks at the database URL and picks a backend.

`serve` (server/app.py), the CLI, devstack, the tests and the benchmark all open the database here,
and nothing else asks which database it is on: what differs lives in postgres/ and sqlite/, behind
Storage (storage_base.py). The few questions a caller has about the database as a whole (is the URL
one we support, does the database exist, delete a local one) are answered here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from server.adapters.postgres.storage import PostgresStorage
from server.adapters.sqlite import files as sqlite_files
from server.adapters.sqlite.storage import SqliteStorage
from server.adapters.storage_base import Storage

__all__ = [
    "DatabaseMissing",
    "SingleProcessDatabase",
    "Storage",
    "StorageSettings",
    "UnsupportedDatabase",
    "check_database_url",
    "check_several_processes",
    "delete_local_database",
    "open_storage",
    "require_existing_database",
]


class StorageSettings(Protocol):
    """The settings storage reads (server.config.Settings has them)."""

    @property
    def database_url(self) -> str: ...
    @property
    def db_pool_size(self) -> int: ...
    @property
    def db_batches_in_flight(self) -> int: ...


class UnsupportedDatabase(ValueError):
    """The URL names no database this service runs on."""

    def __init__(self, url: str) -> None:
        self.scheme = url.split(":")[0]
        super().__init__(f"unsupported database {self.scheme!r}: use sqlite:// or postgresql://")


class DatabaseMissing(Exception):
    """The URL names a database file that does not exist, and the caller must not create it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"no database at {path}")


def open_storage(
    settings_or_url: StorageSettings | str,
    *,
    pool_size: int | None = None,
    batches_in_flight: int | None = None,
    connect_timeout_s: float = 5.0,
    command_timeout_s: float = 30.0,
    create: bool = True,
) -> Storage:
    """Storage for a database URL (`sqlite:///path`, `postgresql://...`, `postgres://...`) or for the
    server's settings; keyword arguments override the settings. Nothing connects until first use;
    `await storage.close()` (or `async with`) releases it.

    A database kept in a file (SQLite) is created on first use, its folder now; with `create=False`
    a missing file raises DatabaseMissing instead, so a command that only reads or changes data never
    leaves an empty database behind."""
    url = _url_of(settings_or_url)
    if _is_sqlite(url):
        path = sqlite_files.database_file(url)
        if path is not None:
            if not create and not path.is_file():
                raise DatabaseMissing(path)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStorage(url, connect_timeout_s=connect_timeout_s)
    settings_pool, settings_batches = (
        (10, 1)
        if isinstance(settings_or_url, str)
        else (
            settings_or_url.db_pool_size,
            settings_or_url.db_batches_in_flight,
        )
    )
    return PostgresStorage(
        url,
        pool_size=pool_size if pool_size is not None else settings_pool,
        batches_in_flight=batches_in_flight if batches_in_flight is not None else settings_batches,
        connect_timeout_s=connect_timeout_s,
        command_timeout_s=command_timeout_s,
    )


def check_database_url(url: str) -> None:
    """Raises UnsupportedDatabase unless open_storage can open `url`."""
    _is_sqlite(url)


class SingleProcessDatabase(Exception):
    """The database is served by one server process only."""


def check_several_processes(url: str) -> None:
    """Raises SingleProcessDatabase when several server processes cannot share this database."""
    if _is_sqlite(url):
        raise SingleProcessDatabase(
            "SQLite is served by one process (its single writer and the live feed's in-process fan-out "
            "live there): run one worker, or use PostgreSQL for more"
        )


def require_existing_database(settings_or_url: StorageSettings | str) -> None:
    """Raises DatabaseMissing when the URL names a database file that does not exist (a database on
    a server is asked nothing: whether it exists shows on first use)."""
    url = _url_of(settings_or_url)
    if _is_sqlite(url):
        path = sqlite_files.database_file(url)
        if path is not None and not path.is_file():
            raise DatabaseMissing(path)


def delete_local_database(url: str) -> Path | None:
    """Deletes a database kept in a local file (with the files its database keeps beside it) and
    returns its path; None, touching nothing, when no local file holds it (a database on a server)."""
    if not _is_sqlite(url):
        return None
    path = sqlite_files.database_file(url)
    if path is not None:
        sqlite_files.delete_database(path)
    return path


def _url_of(settings_or_url: StorageSettings | str) -> str:
    return settings_or_url if isinstance(settings_or_url, str) else settings_or_url.database_url


def _is_sqlite(url: str) -> bool:
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise UnsupportedDatabase(url) from None
    if backend == "sqlite":
        return True
    if backend in {"postgres", "postgresql"}:
        return False
    raise UnsupportedDatabase(url)
