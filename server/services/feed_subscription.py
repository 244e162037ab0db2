"""One subscriber of a stream's live feed: a small buffer the hub fills, and its own catch-up
whenever it cannot follow the hub.

Guarantees, for the consumer of `next_chunk`:
- every superlike after the starting position, exactly once, in position order: the subscription
  remembers the last position it queued (`_tail`) and only ever takes the one right after it,
  from the hub, from the hub's memory of recent superlikes, or from storage;
- the hub never waits for it: `offer` is synchronous and O(1); a chunk that does not fit the buffer,
  or that does not start right after `_tail` (a gap: something was missed), cuts the subscriber from
  the live path, and it catches up by position until it has reached the hub again: from the hub's
  memory when that still holds the next position (no storage read), else from storage;
- memory stays bounded: at most `buffer_chunks` chunks (each at most the hub's read size);
- one write per wake-up: `next_chunk` hands over everything buffered (up to `read_limit`
  superlikes) at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from server.domain import errors
from server.domain.history import PostedSuperlike
from server.services.ports import SuperlikeReader

Chunk = Sequence[PostedSuperlike]


class LivePosition(Protocol):
    """What a subscription needs to know of its stream's fan-out."""

    @property
    def live_position(self) -> int:
        """Every superlike up to here has been read and kept in memory, and offered (or is being
        offered, a slice at a time) to the live subscribers; a subscriber's own `_tail` keeps it
        from taking any of them twice."""
        ...

    def recent_after(self, after: int, limit: int) -> Sequence[PostedSuperlike] | None:
        """Up to `limit` superlikes after position `after` from memory, up to the live position;
        None when memory does not reach back to `after`."""
        ...


class Subscription:
    def __init__(
        self,
        stream_id: str,
        after: int,
        fanout: LivePosition,
        reader: SuperlikeReader,
        *,
        buffer_chunks: int,
        read_limit: int,
        storage_reads: asyncio.Semaphore,
        on_close: Callable[[Subscription], None],
    ) -> None:
        self.stream_id = stream_id
        self._fanout = fanout
        self._reader = reader
        self._buffer: deque[Chunk] = deque()
        self._buffer_chunks = buffer_chunks
        self._read_limit = read_limit
        self._storage_reads = storage_reads
        self._tail = after  # the last position queued in the buffer or handed to the consumer
        # Every subscription starts by catching up: what was committed since its start position.
        self._catching_up = True
        self._signal = asyncio.Event()
        self._interrupted: errors.DomainError | None = None
        self._on_close = on_close
        self._closed = False

    @property
    def catching_up(self) -> bool:
        """True while cut from the live path."""
        return self._catching_up

    def offer(self, chunk: Chunk) -> None:
        """The hub's fan-out of superlikes just read; never blocks, never grows past the buffer."""
        if self._catching_up or self._interrupted is not None:
            return  # it reads these itself
        if chunk[-1].position <= self._tail:
            return
        if chunk[0].position <= self._tail:
            chunk = [superlike for superlike in chunk if superlike.position > self._tail]
        if chunk[0].position != self._tail + 1 or len(self._buffer) >= self._buffer_chunks:
            self._catching_up = True
        else:
            self._buffer.append(chunk)
            self._tail = chunk[-1].position
        self._signal.set()

    def interrupt(self, error: errors.DomainError) -> None:
        """Ends the subscription from the server's side: `next_chunk` raises `error`."""
        self._interrupted = error
        self._signal.set()

    async def next_chunk(self, timeout: float | None = None) -> Chunk:
        """The next superlikes in order (at least one), or an empty chunk after `timeout` seconds
        without any. Raises StorageUnavailable when catching up fails, FeedInterrupted on shutdown."""
        while True:
            if self._interrupted is not None:
                raise self._interrupted
            if self._buffer:
                return self._take_buffered()
            if self._catching_up:
                chunk = await self._catch_up()
                if chunk:
                    return chunk
                continue
            self._signal.clear()
            try:
                await asyncio.wait_for(self._signal.wait(), timeout)
            except TimeoutError:
                return ()

    def _take_buffered(self) -> Chunk:
        """Everything buffered, as one chunk of at most `read_limit` superlikes (one write)."""
        chunk = self._buffer.popleft()
        while self._buffer and len(chunk) + len(self._buffer[0]) <= self._read_limit:
            chunk = [*chunk, *self._buffer.popleft()]
        return chunk

    async def _catch_up(self) -> Chunk:
        chunk = self._fanout.recent_after(self._tail, self._read_limit)
        if chunk is None:
            chunk = await self._read_storage()
        if chunk:
            self._tail = chunk[-1].position
        # No await between this check and the switch: once back on the live path, the hub's next
        # chunk starts right after the hub's live position, which is at most `_tail`.
        if len(chunk) < self._read_limit and self._tail >= self._fanout.live_position:
            self._catching_up = False
        return chunk

    async def _read_storage(self) -> Chunk:
        async with self._storage_reads:
            if self._interrupted is not None:
                raise self._interrupted
            batch = await self._reader.after(self.stream_id, self._tail, self._read_limit)
        if batch is None:
            raise errors.StreamNotFound()
        if self._interrupted is not None:
            raise self._interrupted
        return batch.superlikes

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._on_close(self)
