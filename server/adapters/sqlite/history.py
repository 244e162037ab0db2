"""Reading superlikes back on SQLite: each read is one snapshot on the SQLite thread (worker.py),
run on the driver's own cursor like the writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from server.adapters.history_sql import POSITION_KEY_SQL, after_sql, page_sql, top_supporters_sql
from server.adapters.rows import feed_batch, history_page, supporter_totals
from server.adapters.sqlite.failures import is_unavailable
from server.adapters.sqlite.worker import SqliteWorker
from server.domain.errors import StorageUnavailable
from server.domain.history import FeedBatch, HistoryPage, SupporterTotal


def _param(name: str) -> str:
    return f":{name}"


_PAGE_SQL = page_sql(_param)
_AFTER_SQL = after_sql(_param)
_TOP_SQL = top_supporters_sql(_param)


class SqliteHistory:
    def __init__(self, worker: SqliteWorker) -> None:
        self._worker = worker

    async def page(self, stream_id: str, before: int, limit: int) -> HistoryPage | None:
        rows = await self._fetch(_PAGE_SQL, {"stream_id": stream_id, "before": before, "limit": limit + 1})
        return history_page(rows, limit)

    async def after(self, stream_id: str, after: int, limit: int) -> FeedBatch | None:
        return feed_batch(await self._fetch(_AFTER_SQL, {"stream_id": stream_id, "after": after, "limit": limit}))

    async def top_supporters(self, stream_id: str, limit: int) -> list[SupporterTotal] | None:
        return supporter_totals(await self._fetch(_TOP_SQL, {"stream_id": stream_id, "limit": limit}))

    async def position_key(self) -> bytes:
        rows = await self._fetch(POSITION_KEY_SQL, {})
        return bytes(rows[0]["secret"])

    async def _fetch(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        def run(connection: Connection) -> list[dict[str, Any]]:
            cursor = connection.connection.driver_connection.cursor()
            try:
                cursor.execute(sql, params)
                names = [column[0] for column in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            finally:
                cursor.close()

        try:
            return await self._worker.read(run)
        except Exception as error:
            if is_unavailable(error):
                raise StorageUnavailable() from error
            raise
