"""One unit of work per use case, on one pooled connection.

SQLite: one `BEGIN IMMEDIATE` transaction, committed by `commit()`. PostgreSQL: autocommit, because
every write of the superlike use case is a single atomic statement (see superlike_repository); this
saves the BEGIN and COMMIT round trips, and `commit()`/`rollback()` have nothing left to do.
"""

from __future__ import annotations

import logging
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from server.adapters.database import is_unavailable
from server.adapters.superlike_repository import SqlSuperlikeRepository
from server.domain.errors import StorageUnavailable

log = logging.getLogger(__name__)


class SqlUnitOfWork:
    """Rolls back unless `commit()` ran. Connectivity failures surface as StorageUnavailable ("nothing
    was stored, retry later"): a transaction that did not commit left no trace. A failure while an
    autocommit write was in flight is the repository's to report (OutcomeUnknown)."""

    superlikes: SqlSuperlikeRepository

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._autocommit = engine.dialect.name == "postgresql"
        self._connection: AsyncConnection | None = None
        self._transaction: AsyncTransaction | None = None

    async def __aenter__(self) -> Self:
        try:
            self._connection = await self._engine.connect()
            if self._autocommit:
                self._connection = await self._connection.execution_options(isolation_level="AUTOCOMMIT")
            else:
                self._transaction = await self._connection.begin()
        except Exception as error:
            await self._close()
            if is_unavailable(error):
                log.warning("database unavailable: %s", error)
                raise StorageUnavailable() from error
            raise
        self.superlikes = SqlSuperlikeRepository(self._connection)
        return self

    async def __aexit__(self, exc_type: object, error: BaseException | None, tb: object) -> None:
        try:
            if self._transaction is not None and self._transaction.is_active:
                await self._transaction.rollback()
        except Exception as rollback_error:  # the original error, if any, is the one that matters
            log.warning("rollback failed: %s", rollback_error)
        finally:
            await self._close()
        if error is not None and not isinstance(error, StorageUnavailable) and is_unavailable(error):
            log.warning("database unavailable: %s", error)
            raise StorageUnavailable() from error

    async def commit(self) -> None:
        if self._transaction is not None:
            await self._transaction.commit()

    async def rollback(self) -> None:
        if self._transaction is not None:
            await self._transaction.rollback()

    async def _close(self) -> None:
        if self._connection is not None:
            try:
                await self._connection.close()
            except Exception as close_error:
                log.warning("closing a connection failed: %s", close_error)
            self._connection = None
