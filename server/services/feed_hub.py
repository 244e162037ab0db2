"""The live feed's fan-out in one server process: per followed stream, one reader of storage and the
set of its subscribers.

Storage only says "stream X now reaches position N" (after a batch commits in this process, or a
PostgreSQL notification from any process): `advanced` is synchronous and cheap, so the write path
never waits for the feed. Each followed stream has one pump task that reads what is new once, by
position (never from the wake-up itself), and offers it to every subscriber as one chunk:
superlikes committed together reach each subscriber together. A subscriber that cannot take a
chunk catches up on its own (feed_subscription.py); the pump never waits for anyone.

What keeps the process from drowning in its own fan-out (each chunk written to each subscriber
costs the event loop that also serves SendSuperlike):
- paced slices: a tick (one read, offered to every subscriber) wakes its subscribers OFFER_SLICE
  at a time, and books each slice from the process's fan-out budget (feed_budget.py) before
  waking it, so the writes are spread evenly over time at the budget's rate instead of going out
  in one burst; whatever is committed while a tick goes out waits for the next tick and goes out
  in it as one chunk, so the write rate follows the budget, not the send rate;
- memory before storage: the last RECENT_SUPERLIKES superlikes of each stream stay in memory, and a
  subscriber catching up (cut from the live path, or just (re)connected with a recent cursor) reads
  them from there; only older positions go to storage, STORAGE_CATCH_UPS reads at a time, so a
  thousand subscribers catching up at once never take the connection pool from the pump and the
  send path.

Wake-ups are hints: a lost one is made good by the next one, or by `resync` after PostgreSQL's
listener reconnects (it re-reads every followed stream).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import logging
from collections.abc import Mapping

from server.domain import errors
from server.domain.history import PostedSuperlike
from server.services.feed_budget import FanoutBudget
from server.services.feed_subscription import Subscription
from server.services.ports import SuperlikeReader

log = logging.getLogger(__name__)

# Superlikes per storage read: one chunk at most (a send batch holds at most 128).
READ_LIMIT = 200
# Chunks a subscriber may hold before it is cut from the live path.
BUFFER_CHUNKS = 8
# Reads (chunks) one tick may offer: half a subscriber's buffer, so a tick alone never overflows it.
READS_PER_TICK = BUFFER_CHUNKS // 2
# Superlikes each followed stream keeps in memory for subscribers catching up.
RECENT_SUPERLIKES = 1000
# Catch-up reads from storage at once in the process (the database pool holds 10 by default).
STORAGE_CATCH_UPS = 4
# Subscribers woken at once (~2 ms of writes, every 5 ms at the default budget). grpc.aio takes each
# new call, a SendSuperlike too, through several turns of the event loop, and each turn waits for
# the writes woken before it: a tick to 1,000 subscribers woken in one go (50 per turn, unpaced)
# held sends up to ~90 ms; paced slices of 50 kept send p99 at 47 ms, of 25 at 30 ms, for the same
# CPU per chunk (bench/README.md, "Live feed").
OFFER_SLICE = 25


class _StreamFanout:
    def __init__(self, hub: FeedHub, stream_id: str, live_position: int) -> None:
        self.stream_id = stream_id
        # Every superlike up to here was read and remembered, and offered (or is being offered) to
        # the subscribers.
        self.live_position = live_position
        self.subscribers: set[Subscription] = set()
        self._hub = hub
        self._known_position = live_position  # the highest position storage said it reached
        self._reread = False
        # Every superlike after `_recent_from` up to `live_position`, in order.
        self._recent: list[PostedSuperlike] = []
        self._recent_from = live_position
        self._wake = asyncio.Event()
        # A context of its own: the pump outlives the call of the subscriber that started it, and
        # must not carry that call's observer record (api/rpc_observer.py) for the stream's life.
        self._task = asyncio.create_task(self._pump(), name=f"feed-{stream_id}", context=contextvars.Context())

    def advance(self, position: int | None) -> None:
        """`position` committed; None: unknown, read anyway."""
        if position is None:
            self._reread = True
        elif position > self._known_position:
            self._known_position = position
        else:
            return
        self._wake.set()

    def recent_after(self, after: int, limit: int) -> list[PostedSuperlike] | None:
        """At most `limit` superlikes following position `after`, from memory, up to the live
        position (empty: nothing after it yet); None when memory does not reach back that far."""
        if after < self._recent_from:
            return None
        start = bisect.bisect_right(self._recent, after, key=_position)
        return self._recent[start : start + limit]

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._tick()

    async def _tick(self) -> None:
        """Reads what storage holds past the live position and offers it. A read that comes back
        full means more was waiting: the tick reads on, READS_PER_TICK reads at most. What is
        committed while the tick goes out waits for the next tick (its wake-up is kept)."""
        for _ in range(READS_PER_TICK):
            if not (self._reread or self.live_position < self._known_position):
                return
            self._reread = False
            try:
                batch = await self._hub.reader.after(self.stream_id, self.live_position, self._hub.read_limit)
            except Exception as error:  # storage down: the next read or wake-up delivers them
                log.warning("live feed of %s could not read: %s", self.stream_id, error)
                self._reread = True
                await asyncio.sleep(self._hub.retry_seconds)
                continue
            if batch is None or not batch.superlikes:
                self._known_position = self.live_position
                return
            chunk = tuple(batch.superlikes)
            self.live_position = chunk[-1].position
            self._known_position = max(self._known_position, batch.last_position)
            self._remember(chunk)
            await self._offer(chunk)
            if len(chunk) < self._hub.read_limit:
                break
        if self._reread or self.live_position < self._known_position:
            self._wake.set()

    def _remember(self, chunk: tuple[PostedSuperlike, ...]) -> None:
        recent = self._recent
        recent.extend(chunk)
        if len(recent) > 2 * self._hub.recent_superlikes:  # trimmed now and then, not on every chunk
            cut = len(recent) - self._hub.recent_superlikes
            self._recent_from = recent[cut - 1].position
            del recent[:cut]

    async def _offer(self, chunk: tuple[PostedSuperlike, ...]) -> None:
        subscribers = list(self.subscribers)
        for start in range(0, len(subscribers), OFFER_SLICE):
            writers = subscribers[start : start + OFFER_SLICE]
            if start:  # within the budget's burst turn() does not wait: let the slice woken last write
                await asyncio.sleep(0)
            await self._hub.budget.turn(len(writers))
            for subscriber in writers:
                subscriber.offer(chunk)

    def stop(self) -> None:
        self._task.cancel()

    async def stopped(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _position(superlike: PostedSuperlike) -> int:
    return superlike.position


class FeedHub:
    def __init__(
        self,
        reader: SuperlikeReader,
        *,
        budget: FanoutBudget | None = None,
        read_limit: int = READ_LIMIT,
        buffer_chunks: int = BUFFER_CHUNKS,
        recent_superlikes: int = RECENT_SUPERLIKES,
        storage_catch_ups: int = STORAGE_CATCH_UPS,
        retry_seconds: float = 0.5,
    ) -> None:
        self.reader = reader
        self.budget = budget if budget is not None else FanoutBudget()
        self.read_limit = read_limit
        self.recent_superlikes = recent_superlikes
        self.retry_seconds = retry_seconds
        self._buffer_chunks = buffer_chunks
        self._storage_reads = asyncio.Semaphore(storage_catch_ups)
        self._streams: dict[str, _StreamFanout] = {}
        self._closed = False
        # Kept as a number, not counted on demand: metrics read it from another thread.
        self._subscribers = 0

    def advanced(self, positions: Mapping[str, int]) -> None:
        """Storage committed superlikes up to these positions (stream id -> position)."""
        for stream_id, position in positions.items():
            fanout = self._streams.get(stream_id)
            if fanout is not None:
                fanout.advance(position)

    def resync(self) -> None:
        """Wake-ups may have been lost: every followed stream reads storage again."""
        for fanout in self._streams.values():
            fanout.advance(None)

    def subscribe(self, stream_id: str, after: int, last_position: int) -> Subscription:
        """A subscriber of `stream_id` from right after position `after`. `last_position` is the
        stream's last position as just read (where a new fan-out starts)."""
        if self._closed:
            raise errors.FeedInterrupted()
        fanout = self._streams.get(stream_id)
        if fanout is None:
            fanout = self._streams[stream_id] = _StreamFanout(self, stream_id, last_position)
        subscription = Subscription(
            stream_id,
            after,
            fanout,
            self.reader,
            buffer_chunks=self._buffer_chunks,
            read_limit=self.read_limit,
            storage_reads=self._storage_reads,
            on_close=self._unsubscribe,
        )
        fanout.subscribers.add(subscription)
        self._subscribers += 1
        return subscription

    def subscriber_count(self, stream_id: str) -> int:
        fanout = self._streams.get(stream_id)
        return len(fanout.subscribers) if fanout is not None else 0

    def total_subscribers(self) -> int:
        """Subscribers of every stream on this server (read by the metrics endpoint's thread)."""
        return self._subscribers

    def _unsubscribe(self, subscription: Subscription) -> None:
        fanout = self._streams.get(subscription.stream_id)
        if fanout is None or subscription not in fanout.subscribers:
            return
        fanout.subscribers.discard(subscription)
        self._subscribers -= 1
        if not fanout.subscribers:
            del self._streams[subscription.stream_id]
            fanout.stop()

    async def close(self) -> None:
        """Ends every subscription (FeedInterrupted: clients reconnect elsewhere with their cursor)
        and refuses new ones."""
        self._closed = True
        fanouts = list(self._streams.values())
        self._streams.clear()
        self._subscribers = 0
        for fanout in fanouts:
            for subscription in fanout.subscribers:
                subscription.interrupt(errors.FeedInterrupted())
            fanout.stop()
        for fanout in fanouts:
            await fanout.stopped()
