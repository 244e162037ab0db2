"""Following a stream's superlikes live: where a subscriber starts, and its resume cursors.

A cursor is the sealed position of the last superlike a client received (positions.py,
FEED_CURSOR): opaque, bound to its stream, valid on every replica and for as long as the stream
exists, since superlikes are never deleted.
"""

from __future__ import annotations

from server.domain import errors
from server.domain.feed import resolve_backlog, start_after
from server.domain.history import PostedSuperlike
from server.domain.positions import InvalidPosition, PositionKind, PositionSeal
from server.services.feed_hub import FeedHub
from server.services.feed_subscription import Subscription
from server.services.history import NEWEST, HistoryService, parse_stream_id
from server.services.ports import SuperlikeReader


class FeedService:
    def __init__(self, reader: SuperlikeReader, hub: FeedHub, history: HistoryService) -> None:
        self._reader = reader
        self._hub = hub
        self._history = history

    async def subscribe(self, stream_id: str, cursor: str = "", backlog: int = 0) -> Subscription:
        """A subscription to the stream: after `cursor` when one is given, else with the last
        `backlog` superlikes, else from now. Validates everything before subscribing."""
        stream_id = parse_stream_id(stream_id)
        backlog = resolve_backlog(backlog)
        seal = await self._history.seal()
        after: int | None = None
        if cursor:
            try:
                after = seal.open(PositionKind.FEED_CURSOR, stream_id, cursor)
            except InvalidPosition:
                raise errors.InvalidCursor() from None
        # Nothing read: only the stream's existence and its last position.
        head = await self._reader.after(stream_id, NEWEST, 0)
        if head is None:
            raise errors.StreamNotFound()
        if after is None:
            after = start_after(head.last_position, backlog)
        return self._hub.subscribe(stream_id, after, head.last_position)

    async def cursor_seal(self) -> PositionSeal:
        return await self._history.seal()


def cursor_of(seal: PositionSeal, superlike: PostedSuperlike) -> str:
    return seal.seal(PositionKind.FEED_CURSOR, superlike.stream_id, superlike.position)
