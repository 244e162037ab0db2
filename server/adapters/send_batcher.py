"""Application-level group commit: superlikes that arrive together are written together.

A superlike's cost on the database is dominated by what every write pays once: the round trip, the
statement's execution, the commit and its WAL flush. Requests waiting while a batch is being written
form the next batch, so under load one write carries many superlikes, and with no load a batch holds
just the one request and nothing waits for company.

Each request keeps its own outcome: the batch runner answers every item separately (charged,
refused, replayed, contended, or an error of its own). A sender has at most one request being
written at a time: a second one waits for a batch after the first one's, so it sees the first one's
debit (and, with the same idempotency key, replays it) exactly as if the two had run one after the
other, and two batches of this server never wait for each other's wallet locks.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from server.domain.errors import OutcomeUnknown, StorageUnavailable
from server.domain.send_outcome import SendOutcome
from server.domain.superlike import SuperlikeRequest

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PendingSend:
    request: SuperlikeRequest
    superlike_id: str
    created_at_ms: int
    outcome: asyncio.Future[SendOutcome] = field(repr=False)


# One result per item, in the batch's order: what happened to it, or the error that item gets.
BatchResult = Sequence[SendOutcome | BaseException]
BatchRunner = Callable[[Sequence[PendingSend]], Awaitable[BatchResult]]


class SendBatcher:
    def __init__(self, run_batch: BatchRunner, *, max_batch: int, max_in_flight: int) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: deque[PendingSend] = deque()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._senders_in_flight: set[str] = set()
        self._flush_scheduled = False
        self._closed = False
        self._abandoned = False
        # Told the size of every batch that starts (metrics); they must not raise.
        self.batch_observers: list[Callable[[int], None]] = []

    async def send(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> SendOutcome:
        """Queues the request for the next batch and waits for its own outcome.

        A caller cancelled while its request still waits is simply dropped (nothing was sent). Once
        its batch is being written the batch completes regardless: it carries other requests too,
        and a write is never cut in half."""
        return await self.submit(request, superlike_id, created_at_ms)

    def submit(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> asyncio.Future[SendOutcome]:
        """Queues the request now and returns the future of its outcome (what send() awaits);
        cancelling the future withdraws a request that is still waiting."""
        if self._closed:
            raise StorageUnavailable()  # shutting down: nothing was sent, another server can take it
        loop = asyncio.get_running_loop()
        pending = PendingSend(request, superlike_id, created_at_ms, loop.create_future())
        self._queue.append(pending)
        if not self._flush_scheduled:
            # Requests delivered in the same event-loop turn join the same batch.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return pending.outcome

    @property
    def has_waiting(self) -> bool:
        """Requests are queued for a batch that has not started yet."""
        return bool(self._queue)

    async def close(self, timeout_seconds: float) -> None:
        """Takes no new requests and waits up to `timeout_seconds` for the queued ones to be written.
        Batches still being written then are cancelled: their callers learn OutcomeUnknown."""
        self._closed = True
        try:
            await asyncio.wait_for(self._drain(), timeout_seconds)
        except TimeoutError:
            log.warning("superlike batches still being written after %.1fs; abandoning them", timeout_seconds)
            self._abandoned = True  # no new batch starts
            for task in set(self._in_flight):
                task.cancel()
            if self._in_flight:
                await asyncio.wait(set(self._in_flight))
            for pending in self._queue:  # never sent
                if not pending.outcome.done():
                    pending.outcome.set_exception(StorageUnavailable())
            self._queue.clear()

    async def _drain(self) -> None:
        while self._queue or self._in_flight:
            if self._in_flight:
                await asyncio.wait(set(self._in_flight))
            else:
                self._flush()
                await asyncio.sleep(0)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._abandoned:
            return
        while self._queue and len(self._in_flight) < self._max_in_flight:
            batch = self._take_batch()
            if not batch:
                return
            for observe in self.batch_observers:
                observe(len(batch))
            task = asyncio.create_task(self._write(batch), name="superlike-batch")
            self._in_flight.add(task)
            task.add_done_callback(self._written)

    def _take_batch(self) -> list[PendingSend]:
        batch: list[PendingSend] = []
        deferred: list[PendingSend] = []
        # Bounded, so a flood from one sender (all deferred) cannot make every flush walk the queue.
        examined = 0
        while self._queue and len(batch) < self._max_batch and examined < 4 * self._max_batch:
            examined += 1
            pending = self._queue.popleft()
            if pending.outcome.done():  # its caller gave up before it was sent
                continue
            if pending.request.sender_id in self._senders_in_flight:
                deferred.append(pending)  # keeps its place for a batch after its sender's current one
                continue
            self._senders_in_flight.add(pending.request.sender_id)
            batch.append(pending)
        self._queue.extendleft(reversed(deferred))
        return batch

    async def _write(self, batch: list[PendingSend]) -> None:
        try:
            await self._answer(batch)
        finally:
            for pending in batch:
                self._senders_in_flight.discard(pending.request.sender_id)

    async def _answer(self, batch: list[PendingSend]) -> None:
        try:
            results: BatchResult = await self._run_batch(batch)
        except asyncio.CancelledError:
            # Abandoned mid-write (shutdown): the batch may or may not have committed.
            for pending in batch:
                if not pending.outcome.done():
                    pending.outcome.set_exception(OutcomeUnknown())
            raise
        except Exception as error:  # every waiter gets the batch's failure, as its own exception
            results = [error, *(_own_copy(error) for _ in batch[1:])]
        try:
            for pending, result in zip(batch, results, strict=True):
                if pending.outcome.done():
                    continue
                if isinstance(result, BaseException):
                    pending.outcome.set_exception(result)
                else:
                    pending.outcome.set_result(result)
        finally:
            for pending in batch:  # a runner that answered too few must not leave a caller hanging
                if not pending.outcome.done():
                    pending.outcome.set_exception(OutcomeUnknown())

    def _written(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("superlike batch failed to report", exc_info=task.exception())
        self._flush()


class BatchedWriter:
    """The write port over a SendBatcher: a backend subclasses it and writes batches in `_write_batch`."""

    def __init__(self, *, max_batch: int, max_in_flight: int) -> None:
        self._batcher = SendBatcher(self._write_batch, max_batch=max_batch, max_in_flight=max_in_flight)

    def observe_batches(self, observer: Callable[[int], None]) -> None:
        self._batcher.batch_observers.append(observer)

    async def send(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> SendOutcome:
        return await self._batcher.send(request, superlike_id, created_at_ms)

    async def close(self, timeout_seconds: float) -> None:
        await self._batcher.close(timeout_seconds)

    async def _write_batch(self, batch: Sequence[PendingSend]) -> BatchResult:
        raise NotImplementedError


def _own_copy(error: Exception) -> Exception:
    """The same failure for another waiter: raising one exception object in several tasks would
    tangle their tracebacks."""
    duplicate = copy.copy(error)
    duplicate.__cause__ = error.__cause__
    return duplicate
