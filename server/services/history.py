"""Reading a stream's superlikes back: its history, newest first, page by page, and its top
supporters. Pages continue by position (a sealed page token), never by offset."""

from __future__ import annotations

from server.domain import errors
from server.domain.history import (
    HistoryPage,
    RankedSupporter,
    rank_supporters,
    resolve_page_size,
    resolve_supporters_limit,
)
from server.domain.ids import is_object_id, normalize_object_id
from server.domain.positions import InvalidPosition, PositionKind, PositionSeal
from server.services.ports import SuperlikeReader

# Above every position a stream can reach: "from the newest".
NEWEST = 2**63 - 1


class HistoryService:
    def __init__(self, reader: SuperlikeReader) -> None:
        self._reader = reader
        self._seal: PositionSeal | None = None

    async def seal(self) -> PositionSeal:
        """The seal of page tokens and feed cursors, its key read from storage once (not at startup:
        a server that starts while the database is down must still come up)."""
        if self._seal is None:
            self._seal = PositionSeal(await self._reader.position_key())
        return self._seal

    async def list_superlikes(self, stream_id: str, page_size: int, page_token: str) -> tuple[HistoryPage, str]:
        """One page and the token of the next one ("" after the last page)."""
        stream_id = parse_stream_id(stream_id)
        limit = resolve_page_size(page_size)
        seal = await self.seal()
        before = NEWEST
        if page_token:
            try:
                before = seal.open(PositionKind.PAGE_TOKEN, stream_id, page_token)
            except InvalidPosition:
                raise errors.InvalidPageToken() from None
        page = await self._reader.page(stream_id, before, limit)
        if page is None:
            raise errors.StreamNotFound()
        next_token = ""
        if page.has_more:
            next_token = seal.seal(PositionKind.PAGE_TOKEN, stream_id, page.superlikes[-1].position)
        return page, next_token

    async def top_supporters(self, stream_id: str, limit: int) -> list[RankedSupporter]:
        stream_id = parse_stream_id(stream_id)
        resolved = resolve_supporters_limit(limit)
        totals = await self._reader.top_supporters(stream_id, resolved)
        if totals is None:
            raise errors.StreamNotFound()
        return rank_supporters(totals, resolved)


def parse_stream_id(stream_id: str) -> str:
    if not is_object_id(stream_id):
        raise errors.InvalidStreamId()
    return normalize_object_id(stream_id)
