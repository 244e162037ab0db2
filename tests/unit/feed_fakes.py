"""In-memory stand-ins for the live feed's unit tests (test_feed_hub.py, test_feed_fanout.py): one
stream's committed superlikes behind the read port, and a fan-out budget the test opens tick by tick."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from server.domain.history import FeedBatch, HistoryPage, PostedSuperlike, SupporterTotal
from server.domain.superlike import SenderSnapshot

STREAM = "64d15f9e2e6c8f4d5a123000"
SENDER = SenderSnapshot("64d15f9e2e6c8f4d5a123456", "johndoe", "John", "Doe", "john.jpg")


class FakeStreamStore:
    """The read port over one stream's committed superlikes; counts the reads. While `gate` is
    cleared, reads wait for it (to hold several in flight at once)."""

    def __init__(self) -> None:
        self.superlikes: list[PostedSuperlike] = []
        self.reads = 0
        # Called right after a read has taken its superlikes (e.g. to commit more meanwhile).
        self.after_read: Callable[[], None] | None = None
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.gate.set()

    def commit(self, count: int) -> dict[str, int]:
        """`count` superlikes committed together; returns the wake-up a writer would publish."""
        for _ in range(count):
            position = len(self.superlikes) + 1
            self.superlikes.append(PostedSuperlike(f"{position:024x}", STREAM, SENDER, 10, 1_700_000_000_000, position))
        return {STREAM: len(self.superlikes)}

    async def after(self, stream_id: str, after: int, limit: int) -> FeedBatch | None:
        self.reads += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # a real read yields to the event loop
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        if stream_id != STREAM:
            return None
        batch = FeedBatch([s for s in self.superlikes if s.position > after][:limit], len(self.superlikes))
        if self.after_read is not None:
            self.after_read()
        return batch

    async def page(self, stream_id: str, before: int, limit: int) -> HistoryPage | None:
        raise NotImplementedError

    async def top_supporters(self, stream_id: str, limit: int) -> list[SupporterTotal] | None:
        raise NotImplementedError

    async def position_key(self) -> bytes:
        return b"k" * 32


class GatedBudget:
    """A fan-out budget whose turns the test grants one at a time (the real one waits on the clock,
    server/services/feed_budget.py); records every booking (chunks per slice of a fan-out)."""

    def __init__(self) -> None:
        self.bookings: list[int] = []
        self._turns = asyncio.Semaphore(0)

    def book(self, chunks: int) -> float:
        self.bookings.append(chunks)
        return 0.0

    async def turn(self, chunks: int) -> None:
        self.book(chunks)
        await self._turns.acquire()

    def grant(self) -> None:
        self._turns.release()


async def idle() -> None:
    """Lets every ready task run until none is left (the fakes never wait for anything else)."""
    for _ in range(50):
        await asyncio.sleep(0)


def positions(chunk: object) -> list[int]:
    return [superlike.position for superlike in chunk]  # type: ignore[attr-defined]
