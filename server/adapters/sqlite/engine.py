"""SQLite engines: an async one (aiosqlite) for migrations and the schema check, and a blocking one
for the server's dedicated SQLite thread (worker.py). Both open the file the same way."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.adapters.execution_options import READ_ONLY_OPTION


def create_sqlite_engine(url: str, connect_timeout_s: float) -> AsyncEngine:
    # SQLite has one writer at a time. With one pooled connection, writers queue in order on the pool
    # instead of racing for the file lock through busy_timeout's sleep-and-retry, which turned a
    # burst of concurrent superlikes into second-long tail latencies.
    engine = create_async_engine(**_one_connection(url, "sqlite+aiosqlite", connect_timeout_s))
    _configure(engine.sync_engine, connect_timeout_s)
    return engine


def create_blocking_sqlite_engine(url: str, connect_timeout_s: float) -> Engine:
    """A synchronous engine with one connection, for the server's dedicated SQLite thread."""
    engine = sa_create_engine(**_one_connection(url, "sqlite+pysqlite", connect_timeout_s, check_same_thread=False))
    _configure(engine, connect_timeout_s)
    return engine


def _one_connection(url: str, drivername: str, connect_timeout_s: float, **connect_args: Any) -> dict[str, Any]:
    """Both engines' arguments: the file through `drivername`, in a pool of exactly one connection."""
    return {
        "url": make_url(url).set(drivername=drivername),
        "pool_size": 1,
        "max_overflow": 0,
        "pool_timeout": connect_timeout_s,
        "connect_args": {"timeout": connect_timeout_s, **connect_args},
    }


def _configure(engine: Engine, connect_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE below is what runs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed charge survives power loss, not just a process crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(connect_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # SQLite allows one writer. Taking the write lock at BEGIN makes concurrent writers queue
        # (busy_timeout) instead of failing with "database is locked" when a reader upgrades. Readers
        # that never write (probes, checks) must not hold that lock, or they stall other processes.
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
