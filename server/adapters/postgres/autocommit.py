"""Fixed statements in autocommit on pooled connections, straight on the asyncpg driver, with their
failures told apart: not sent (StorageUnavailable), or sent and unanswered (OutcomeUnknown)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.adapters.postgres.failures import failed_before_sending, is_unavailable
from server.domain.errors import OutcomeUnknown, StorageUnavailable

log = logging.getLogger(__name__)


class KeptConnections:
    """Runs statements in autocommit on connections it keeps checked out of the pool from one
    statement to the next, until `release()`.

    Checking a connection out of SQLAlchemy's pool and back in costs about 100 us of CPU (greenlet
    hand-offs, the pool's bookkeeping, the reset on return), as much as the client's side of a
    superlike batch statement: a writer running batch after batch under load keeps its connection
    (one per batch in flight; the settings keep the pool larger than that) and releases it when it
    has nothing waiting. A connection goes back only as it came: a statement the database refused
    leaves it idle (autocommit), one whose fate is unknown (cancelled, broken) gets it discarded."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._idle: list[tuple[AsyncConnection, asyncpg.Connection]] = []

    async def fetch(self, sql: str, args: tuple[Any, ...]) -> list[asyncpg.Record]:
        """Runs `sql` once: SQLAlchemy's execution and result layers add CPU and nothing a fixed
        statement needs. The database's own refusals (asyncpg.PostgresError) reach the caller as they
        are; in autocommit they wrote nothing."""
        # A database restart leaves every pooled connection dead; each refuses before sending, so
        # trying the next one (up to a fresh connection) is safe and costs no round trip.
        passes = self._engine.sync_engine.pool.size() + 1
        for pass_number in range(1, passes + 1):
            connection, driver = self._idle.pop() if self._idle else await self._check_out()
            try:
                rows = await driver.fetch(sql, *args)
            except asyncio.CancelledError:
                # Cancelled mid-statement (shutdown): the connection's state is unknown, so it must
                # not go back to the pool.
                await _discard(connection)
                raise
            except Exception as error:
                if not is_unavailable(error):
                    self._idle.append((connection, driver))
                    raise
                await _discard(connection)  # the pool must not hand this connection out again
                if failed_before_sending(error):
                    if pass_number < passes:
                        continue  # it died while idle; the statement never left, so try another
                    raise StorageUnavailable() from error
                # Once the statement was sent, a broken connection may have lost the answer to a
                # commit: saying "nothing changed" then could make a client pay twice.
                log.warning("connection lost with a statement in flight: %s", error)
                raise OutcomeUnknown() from error
            self._idle.append((connection, driver))
            return rows
        raise AssertionError("unreachable")

    async def release(self) -> None:
        """Returns the connections not running a statement to the pool. A connection the pool cannot
        take back is dropped and logged: the answers of the statements it ran stand."""
        while self._idle:
            connection, _ = self._idle.pop()
            try:
                await connection.close()
            except Exception as error:
                log.warning("a database connection could not be returned to the pool: %s", error)

    async def _check_out(self) -> tuple[AsyncConnection, asyncpg.Connection]:
        try:
            connection = await self._engine.connect()
        except Exception as error:
            if is_unavailable(error):
                log.warning("database unavailable: %s", error)
                raise StorageUnavailable() from error
            raise
        try:
            return connection, (await connection.get_raw_connection()).driver_connection
        except BaseException:
            await connection.close()
            raise


async def _discard(connection: AsyncConnection) -> None:
    await connection.invalidate()
    await connection.close()


async def fetch_autocommit(engine: AsyncEngine, sql: str, args: tuple[Any, ...]) -> list[asyncpg.Record]:
    """Runs `sql` once on a connection checked out for it alone (see KeptConnections.fetch)."""
    connections = KeptConnections(engine)
    try:
        return await connections.fetch(sql, args)
    finally:
        await connections.release()
