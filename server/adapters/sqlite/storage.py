"""Storage on SQLite: the server's and the operator's database work on one dedicated thread
(worker.py), and an async engine beside it for migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from server.adapters.sqlite import settlement
from server.adapters.sqlite.engine import create_sqlite_engine
from server.adapters.sqlite.failures import is_unavailable
from server.adapters.sqlite.history import SqliteHistory
from server.adapters.sqlite.migrations import migration_transaction
from server.adapters.sqlite.superlikes import SqliteSuperlikes
from server.adapters.sqlite.worker import SqliteWorker
from server.adapters.storage_base import Storage
from server.adapters.stream_advances import StreamAdvances

T = TypeVar("T")


class SqliteStorage(Storage):
    def __init__(self, url: str, *, connect_timeout_s: float) -> None:
        self.engine = create_sqlite_engine(url, connect_timeout_s)
        self._worker = SqliteWorker(url, connect_timeout_s)
        # One process per SQLite file: its own writers' wake-ups are all there are.
        self.advances = StreamAdvances()
        self.superlikes = self.new_superlike_writer()
        self.history = SqliteHistory(self._worker)

    def new_superlike_writer(self) -> SqliteSuperlikes:
        return SqliteSuperlikes(self._worker, self.advances)

    async def settle(self) -> int:
        return await settlement.settle(self._worker)

    async def reachable(self) -> bool:
        return await self._worker.reachable()

    async def write_transaction(self, work: Callable[[Connection], T]) -> T:
        return await self._worker.write(work)

    async def read_snapshot(self, work: Callable[[Connection], T]) -> T:
        return await self._worker.read(work)

    async def describe(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"

    async def refresh_statistics(self) -> None:
        # SQLite plans without statistics unless ANALYZE ran, and the server never runs it: neither
        # should a benchmark's bulk load.
        return None

    def migration_transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return migration_transaction(self.engine)

    def is_unavailable(self, error: BaseException) -> bool:
        return is_unavailable(error)

    async def _release(self) -> None:
        await self._worker.close()
        await self.engine.dispose()
