"""One unit of work per use case.

Both databases write a superlike atomically inside the repository call, so there is nothing left to
commit here: PostgreSQL runs one autocommit statement on a pooled connection (no BEGIN/COMMIT round
trips), SQLite one BEGIN IMMEDIATE transaction as a single call on its dedicated thread. The unit of
work owns the PostgreSQL connection for the duration of the use case and turns connectivity failures
before anything was sent into StorageUnavailable ("nothing was stored, retry"); a failure while a
write was in flight is the repository's to report (OutcomeUnknown).
"""

from __future__ import annotations

import logging
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.adapters.database import is_unavailable
from server.adapters.sqlite_worker import SqliteWorker
from server.adapters.superlike_repository import PostgresSuperlikeRepository, SqliteSuperlikeRepository
from server.domain.errors import StorageUnavailable

log = logging.getLogger(__name__)


class SqlUnitOfWork:
    superlikes: PostgresSuperlikeRepository | SqliteSuperlikeRepository

    def __init__(self, engine: AsyncEngine, sqlite_worker: SqliteWorker | None = None) -> None:
        if engine.dialect.name == "sqlite" and sqlite_worker is None:
            raise ValueError("SQLite units of work run on a SqliteWorker")
        self._engine = engine
        self._sqlite_worker = sqlite_worker
        self._connection: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        if self._sqlite_worker is not None:
            self.superlikes = SqliteSuperlikeRepository(self._sqlite_worker)
            return self
        try:
            connection = await self._engine.connect()
            self._connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        except Exception as error:
            await self._close()
            if is_unavailable(error):
                log.warning("database unavailable: %s", error)
                raise StorageUnavailable() from error
            raise
        self.superlikes = PostgresSuperlikeRepository(self._connection)
        return self

    async def __aexit__(self, exc_type: object, error: BaseException | None, tb: object) -> None:
        await self._close()
        if error is not None and not isinstance(error, StorageUnavailable) and is_unavailable(error):
            log.warning("database unavailable: %s", error)
            raise StorageUnavailable() from error

    async def commit(self) -> None:
        """Nothing to do: the repository's write is already atomic and durable."""

    async def _close(self) -> None:
        if self._connection is not None:
            try:
                await self._connection.close()
            except Exception as close_error:
                log.warning("closing a connection failed: %s", close_error)
            self._connection = None
