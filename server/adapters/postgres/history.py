"""Reading superlikes back on PostgreSQL: each read is one statement on a pooled asyncpg connection,
in autocommit (one statement sees one snapshot)."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.history_sql import POSITION_KEY_SQL, after_sql, page_sql, top_supporters_sql
from server.adapters.postgres.autocommit import fetch_autocommit
from server.adapters.rows import feed_batch, history_page, supporter_totals
from server.domain.errors import OutcomeUnknown, StorageUnavailable
from server.domain.history import FeedBatch, HistoryPage, SupporterTotal

_NUMBERS = {"stream_id": "$1::varchar(24)", "before": "$2::bigint", "after": "$2::bigint", "limit": "$3::int"}
_PAGE_SQL = page_sql(_NUMBERS.__getitem__)
_AFTER_SQL = after_sql(_NUMBERS.__getitem__)
_TOP_SQL = top_supporters_sql({"stream_id": "$1::varchar(24)", "limit": "$2::int"}.__getitem__)


class PostgresHistory:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def page(self, stream_id: str, before: int, limit: int) -> HistoryPage | None:
        return history_page(await self._fetch(_PAGE_SQL, stream_id, before, limit + 1), limit)

    async def after(self, stream_id: str, after: int, limit: int) -> FeedBatch | None:
        return feed_batch(await self._fetch(_AFTER_SQL, stream_id, after, limit))

    async def top_supporters(self, stream_id: str, limit: int) -> list[SupporterTotal] | None:
        return supporter_totals(await self._fetch(_TOP_SQL, stream_id, limit))

    async def position_key(self) -> bytes:
        rows = await self._fetch(POSITION_KEY_SQL)
        return bytes(rows[0]["secret"])

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return await fetch_autocommit(self._engine, sql, args)
        except OutcomeUnknown as error:
            # A read that lost its answer changed nothing: plain "unavailable, retry".
            raise StorageUnavailable() from error
