"""What an opened storage offers, and the parts both backends do alike.

Obtain one from server.adapters.storage.open_storage; each backend subclasses Storage
(postgres/storage.py, sqlite/storage.py).
"""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol, Self, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.adapters import schema
from server.adapters.stream_advances import StreamAdvances
from server.domain.errors import StorageUnavailable
from server.domain.history import FeedBatch, HistoryPage, SupporterTotal
from server.domain.send_outcome import SendOutcome
from server.domain.superlike import SuperlikeRequest

log = logging.getLogger(__name__)

T = TypeVar("T")


class BatchedSuperlikeWriter(Protocol):
    """A backend's implementation of the write port (services/ports.py), with its batching."""

    async def send(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> SendOutcome: ...

    async def close(self, timeout_seconds: float) -> None:
        """Takes no new superlikes; waits up to `timeout_seconds` for the queued ones."""

    def observe_batches(self, observer: Callable[[int], None]) -> None:
        """`observer` is told the size of every batch this writer starts."""


class SuperlikeHistory(Protocol):
    """A backend's implementation of the read port (services/ports.py). Each method returns None
    when the stream does not exist."""

    async def page(self, stream_id: str, before: int, limit: int) -> HistoryPage | None: ...

    async def after(self, stream_id: str, after: int, limit: int) -> FeedBatch | None: ...

    async def top_supporters(self, stream_id: str, limit: int) -> list[SupporterTotal] | None: ...

    async def position_key(self) -> bytes:
        """The key that seals page tokens and feed cursors, the same for every replica."""
        ...


class Storage(abc.ABC):
    """The database as the server, the CLI, tests and tools use it."""

    # The async engine: migrations, health of the schema, tests. (SQLite's superlikes, settlement
    # and the transactions below run on a dedicated thread instead; see sqlite/worker.py.)
    engine: AsyncEngine
    # The server's superlike writer: one per process, so it batches every request (group commit).
    superlikes: BatchedSuperlikeWriter
    # Reading superlikes back: history pages, top supporters, the live feed's catch-up.
    history: SuperlikeHistory
    # Streams' new positions as batches commit (this process's, and on PostgreSQL every process's
    # while watch_advances runs): the live feed's wake-ups.
    advances: StreamAdvances

    @abc.abstractmethod
    def new_superlike_writer(self) -> BatchedSuperlikeWriter:
        """Another writer on the same connections, batching on its own, as a second server would."""

    async def watch_advances(self, on_resync: Callable[[], None]) -> None:
        """Runs until cancelled, publishing other processes' commits to `advances`; calls
        `on_resync` whenever wake-ups may have been missed. One process per database needs nothing
        beyond its own writers' wake-ups (SQLite)."""
        return None

    @abc.abstractmethod
    async def settle(self) -> int:
        """Folds pending host credits into wallets; returns how many entries were applied."""

    @abc.abstractmethod
    async def reachable(self) -> bool:
        """A cheap, bounded probe for the health service."""

    @abc.abstractmethod
    async def write_transaction(self, work: Callable[[Connection], T]) -> T:
        """Runs `work` in one write transaction where this backend's writers run, committed when
        it returns."""

    @abc.abstractmethod
    async def read_snapshot(self, work: Callable[[Connection], T]) -> T:
        """Runs `work` on one consistent snapshot that blocks no writer (audits)."""

    @abc.abstractmethod
    async def describe(self) -> str:
        """The database server's version and durability settings, for benchmark records."""

    @abc.abstractmethod
    async def refresh_statistics(self) -> None:
        """Brings the planner's statistics up to date after a bulk load, as the database would
        itself in time."""

    @abc.abstractmethod
    def is_unavailable(self, error: BaseException) -> bool:
        """True when `error` means the database cannot serve right now (retry), not a bug."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Closes connections and threads."""

    @contextlib.asynccontextmanager
    async def migration_transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction for a migration run, committed when the block finishes without error."""
        async with self.engine.begin() as connection:
            yield connection

    async def upgrade(self, revision: str = "head") -> None:
        async with self.migration_transaction() as connection:
            await connection.run_sync(schema.run_upgrade, revision)

    async def downgrade(self, revision: str) -> None:
        async with self.migration_transaction() as connection:
            await connection.run_sync(schema.run_downgrade, revision)

    async def check_schema(self) -> None:
        """Raises SchemaNotCurrent unless the schema is at this release's head, StorageUnavailable
        when the database cannot be reached to tell."""
        try:
            await schema.check_current(self.engine)
        except schema.SchemaNotCurrent:
            raise
        except Exception as error:
            if self.is_unavailable(error):
                raise StorageUnavailable() from error
            raise

    def pool_in_use(self) -> int:
        """Connections of the engine's pool checked out now (0 for a pool that keeps none)."""
        checkedout = getattr(self.engine.pool, "checkedout", None)
        return int(checkedout()) if callable(checkedout) else 0

    def pool_size(self) -> int:
        size = getattr(self.engine.pool, "size", None)
        return int(size()) if callable(size) else 0

    async def close(self, grace_seconds: float = 1.0) -> None:
        """Waits up to `grace_seconds` for queued superlikes to be written (later ones are refused),
        then releases everything."""
        try:
            await self.superlikes.close(grace_seconds)
        finally:
            await self._release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
