"""Engines for the two supported databases, and the classification of their connectivity failures."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import asyncpg

from sqlalchemy import Engine, event, exc
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


LOCK_TIMEOUT_MS = 2000

# Execution option for connections that only read: on SQLite they begin without the write lock.
READ_ONLY_OPTION = "livechat_read_only"


def async_url(url: str) -> str:
    """Accepts the URLs people paste (postgres://, postgresql://, sqlite://) and picks async drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in {"postgres", "postgresql"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    else:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:// or postgresql://")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(
    url: str, *, pool_size: int = 10, connect_timeout_s: float = 5.0, command_timeout_s: float = 30.0
) -> AsyncEngine:
    url = async_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, connect_timeout_s)
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        # A request waits at most this long for a connection, then fails as UNAVAILABLE: a saturated
        # pool must not turn into requests hanging past their deadline.
        pool_timeout=connect_timeout_s,
        # Connections broken by a database restart are detected on use and replaced; a pre-ping per
        # checkout would add a round trip to every superlike.
        pool_pre_ping=False,
        connect_args={
            "timeout": connect_timeout_s,
            "command_timeout": command_timeout_s,
            "server_settings": {
                "application_name": "livechat",
                # A row held locked elsewhere (an open admin transaction, a stuck session) must not
                # stall a whole batch of superlikes: the statement gives up and the batch is
                # written again without waiting on anyone else's lock (superlike_repository.py).
                "lock_timeout": str(LOCK_TIMEOUT_MS),
            },
        },
    )


def _create_sqlite_engine(url: str, connect_timeout_s: float) -> AsyncEngine:
    # SQLite has one writer at a time. With one pooled connection, writers queue in order on the pool
    # instead of racing for the file lock through busy_timeout's sleep-and-retry, which turned a
    # burst of concurrent superlikes into second-long tail latencies.
    engine = create_async_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_timeout=connect_timeout_s,
        connect_args={"timeout": connect_timeout_s},
    )
    configure_sqlite(engine.sync_engine, connect_timeout_s)
    return engine


def create_blocking_sqlite_engine(url: str, connect_timeout_s: float = 5.0) -> Engine:
    """A synchronous engine with one connection, for the server's dedicated SQLite thread."""
    parsed = make_url(url).set(drivername="sqlite+pysqlite")
    engine = sa_create_engine(
        parsed,
        pool_size=1,
        max_overflow=0,
        pool_timeout=connect_timeout_s,
        connect_args={"timeout": connect_timeout_s, "check_same_thread": False},
    )
    configure_sqlite(engine, connect_timeout_s)
    return engine


def configure_sqlite(engine: Engine, connect_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
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


def is_unavailable(error: BaseException) -> bool:
    """True when the failure is the database being unreachable or overloaded, not a bug of ours."""
    if isinstance(error, exc.TimeoutError | OSError | asyncio.TimeoutError | ConnectionError):
        return True
    # Raised by the driver itself on the hot path, which bypasses SQLAlchemy's wrapping. Other
    # InterfaceErrors (bad parameters, misuse) are bugs and must surface as such.
    if isinstance(error, asyncpg.PostgresConnectionError | asyncpg.exceptions.OperatorInterventionError):
        return True
    if isinstance(error, asyncpg.InterfaceError):
        return "closed" in str(error)
    if isinstance(error, sqlite3.Error):  # the SQLite hot path also runs on the driver directly
        return _sqlite_transient(error)
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error.orig, sqlite3.Error):
            return _sqlite_transient(error.orig)
        if isinstance(error, exc.OperationalError | exc.InterfaceError):
            return True
        return isinstance(error.orig, OSError | ConnectionError | asyncio.TimeoutError)
    return False


_SQLITE_TRANSIENT = ("database is locked", "unable to open", "disk i/o error", "database or disk is full")


def _sqlite_transient(error: sqlite3.Error) -> bool:
    # SQLite reports bugs (no such table, syntax) as OperationalError too; only these mean "the
    # database cannot serve right now".
    message = str(error).lower()
    return any(transient in message for transient in _SQLITE_TRANSIENT)


def failed_before_sending(error: BaseException) -> bool:
    """True when the driver refused to send the statement because the connection was already closed
    (asyncpg's client-side InterfaceError): the database never saw it, so nothing can have changed."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, asyncpg.exceptions.InterfaceError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
