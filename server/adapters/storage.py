"""Opening storage: the one place that looks at the database URL and picks a backend.

`serve` (server/app.py), the CLI, devstack, the tests and the benchmark all open the database here,
and nothing else asks which database it is on: what differs lives in postgres/ and sqlite/, behind
Storage (storage_base.py).
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.postgres.engine import create_postgres_engine
from server.adapters.postgres.storage import PostgresStorage
from server.adapters.sqlite.engine import create_sqlite_engine
from server.adapters.sqlite.storage import SqliteStorage
from server.adapters.storage_base import Storage

__all__ = ["Storage", "StorageSettings", "open_engine", "open_storage"]


class StorageSettings(Protocol):
    """The settings storage reads (server.config.Settings has them)."""

    @property
    def database_url(self) -> str: ...
    @property
    def db_pool_size(self) -> int: ...
    @property
    def db_batches_in_flight(self) -> int: ...


def open_storage(
    settings_or_url: StorageSettings | str,
    *,
    pool_size: int | None = None,
    batches_in_flight: int | None = None,
    connect_timeout_s: float = 5.0,
    command_timeout_s: float = 30.0,
) -> Storage:
    """Storage for a database URL (`sqlite:///path`, `postgresql://...`, `postgres://...`) or for the
    server's settings; keyword arguments override the settings. Nothing connects until first use;
    `await storage.close()` (or `async with`) releases it."""
    if isinstance(settings_or_url, str):
        url, settings_pool, settings_batches = settings_or_url, 10, 1
    else:
        url = settings_or_url.database_url
        settings_pool, settings_batches = settings_or_url.db_pool_size, settings_or_url.db_batches_in_flight
    if _is_sqlite(url):
        return SqliteStorage(url, connect_timeout_s=connect_timeout_s)
    return PostgresStorage(
        url,
        pool_size=pool_size if pool_size is not None else settings_pool,
        batches_in_flight=batches_in_flight if batches_in_flight is not None else settings_batches,
        connect_timeout_s=connect_timeout_s,
        command_timeout_s=command_timeout_s,
    )


def open_engine(
    url: str, *, pool_size: int = 10, connect_timeout_s: float = 5.0, command_timeout_s: float = 30.0
) -> AsyncEngine:
    """The engine of open_storage(url) alone, for a caller that only runs statements and disposes the
    engine itself (Alembic's own command line)."""
    if _is_sqlite(url):
        return create_sqlite_engine(url, connect_timeout_s)
    return create_postgres_engine(
        url, pool_size=pool_size, connect_timeout_s=connect_timeout_s, command_timeout_s=command_timeout_s
    )


def _is_sqlite(url: str) -> bool:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return True
    if backend in {"postgres", "postgresql"}:
        return False
    raise ValueError(f"unsupported database {backend!r}: use sqlite:// or postgresql://")
