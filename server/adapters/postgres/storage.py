"""Storage on PostgreSQL: an asyncpg pool; superlikes as one autocommit statement per batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, text

from server.adapters.postgres.engine import create_postgres_engine
from server.adapters.postgres.failures import is_unavailable
from server.adapters.postgres.feed_listener import FeedListener
from server.adapters.postgres.history import PostgresHistory
from server.adapters.postgres.settlement import PostgresSettlement
from server.adapters.postgres.superlikes import PostgresSuperlikes
from server.adapters.storage_base import Storage
from server.adapters.stream_advances import StreamAdvances

log = logging.getLogger(__name__)

T = TypeVar("T")

_PING = text("SELECT 1")


class PostgresStorage(Storage):
    def __init__(
        self, url: str, *, pool_size: int, batches_in_flight: int, connect_timeout_s: float, command_timeout_s: float
    ) -> None:
        self.engine = create_postgres_engine(
            url, pool_size=pool_size, connect_timeout_s=connect_timeout_s, command_timeout_s=command_timeout_s
        )
        self._batches_in_flight = batches_in_flight
        self.advances = StreamAdvances()
        self._listener = FeedListener(url, self.advances, connect_timeout_s=connect_timeout_s)
        self.superlikes = self.new_superlike_writer()
        self.history = PostgresHistory(self.engine)
        self._settlement = PostgresSettlement(self.engine)

    def new_superlike_writer(self) -> PostgresSuperlikes:
        return PostgresSuperlikes(self.engine, max_in_flight=self._batches_in_flight, advances=self.advances)

    async def watch_advances(self, on_resync: Callable[[], None]) -> None:
        await self._listener.run(on_resync)

    async def settle(self) -> int:
        return await self._settlement.settle()

    async def reachable(self) -> bool:
        try:
            async with asyncio.timeout(2.0):
                async with self.engine.connect() as connection:
                    await connection.execute(_PING)
            return True
        except Exception as error:  # any failure means "not serving"; the reason goes to the log
            log.debug("database probe failed: %s", error)
            return False

    async def write_transaction(self, work: Callable[[Connection], T]) -> T:
        async with self.engine.begin() as connection:
            return await connection.run_sync(work)

    async def read_snapshot(self, work: Callable[[Connection], T]) -> T:
        # Under READ COMMITTED each statement sees its own snapshot; REPEATABLE READ gives the
        # whole transaction one.
        async with self.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="REPEATABLE READ")
            async with connection.begin():
                return await connection.run_sync(work)

    async def describe(self) -> str:
        async with self.engine.connect() as connection:
            version = (await connection.execute(text("SELECT version()"))).scalar_one()
            settings = {
                name: (await connection.execute(text(f"SHOW {name}"))).scalar_one()
                for name in ("synchronous_commit", "fsync", "shared_buffers", "max_connections")
            }
        return f"{version}; " + ", ".join(f"{name}={value}" for name, value in settings.items())

    async def refresh_statistics(self) -> None:
        # Autovacuum's first ANALYZE comes later; until then the planner believes fresh tables empty.
        async with self.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("ANALYZE"))

    def is_unavailable(self, error: BaseException) -> bool:
        return is_unavailable(error)

    async def _release(self) -> None:
        await self.engine.dispose()
