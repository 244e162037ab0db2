"""Superlikes on PostgreSQL: batches (send_batcher.py), each one autocommit statement
(statements.py) on an asyncpg connection from the pool, kept from batch to batch while requests keep
coming (autocommit.py), answered request by request."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.postgres.autocommit import KeptConnections
from server.adapters.postgres.failures import BUSY_ERRORS, is_key_taken
from server.adapters.postgres.statements import READ_FACTS_SQL, SEND_BATCH_SQL
from server.adapters.rows import charged_from_row, facts_from_row, prior_from_row
from server.adapters.send_batcher import BatchedWriter, BatchResult, PendingSend
from server.adapters.stream_advances import StreamAdvances, highest_positions
from server.domain.errors import OutcomeUnknown, StorageUnavailable
from server.domain.send_outcome import Charged, Contended, Replayed, SendOutcome, not_charged

log = logging.getLogger(__name__)

# Enough to absorb every request in flight at the concurrency the server is sized for, and small
# enough that one statement's arrays stay a few kilobytes.
MAX_BATCH = 128


class PostgresSuperlikes(BatchedWriter):
    """The write port on PostgreSQL. The server keeps working while a batch statement runs; requests
    arriving meanwhile form the next batch. `max_in_flight` bounds the batch statements running at
    once: one makes the largest batches and the least database work per superlike; more overlap the
    statements on a database with cores to spare."""

    def __init__(self, engine: AsyncEngine, *, max_in_flight: int = 1, advances: StreamAdvances | None = None) -> None:
        super().__init__(max_batch=MAX_BATCH, max_in_flight=max_in_flight)
        # Kept from batch to batch while requests keep arriving; back in the pool once none waits.
        self._connections = KeptConnections(engine)
        self._advances = advances or StreamAdvances()

    async def close(self, timeout_seconds: float) -> None:
        try:
            await super().close(timeout_seconds)
        finally:
            await self._connections.release()

    async def _write_batch(self, batch: Sequence[PendingSend]) -> BatchResult:
        try:
            return await self._send_batch(batch)
        finally:
            if not self._batcher.has_waiting:
                await self._connections.release()

    async def _send_batch(self, batch: Sequence[PendingSend]) -> BatchResult:
        try:
            rows = await self._connections.fetch(SEND_BATCH_SQL, _arrays(batch))
        except asyncpg.PostgresError as error:
            # The database refused the statement, so in autocommit nothing of it was written.
            # (Connection failures never get here: KeptConnections.fetch turns them into
            # StorageUnavailable or OutcomeUnknown.)
            if len(batch) > 1:
                return await self._write_again(batch, error)
            if is_key_taken(error):
                return [Contended()]
            if isinstance(error, BUSY_ERRORS):
                # A wallet stayed locked past lock_timeout, or a deadlock victim: retryable.
                log.warning("superlike not written, the database is busy: %s", error)
                raise StorageUnavailable() from error
            raise
        return await self._answer_rows(rows, batch)

    async def _answer_rows(self, rows: Sequence[Any], batch: Sequence[PendingSend]) -> BatchResult:
        # The statement committed: this process's feeds need not wait for the notification.
        self._advances.publish(highest_positions((row["stream_id"], row["stream_position"]) for row in rows))
        outcomes: list[SendOutcome | BaseException] = list(_outcomes_from_rows(rows, batch))
        # Contended here: the rules allowed the request as read, yet nothing was charged.
        outspent = [index for index, outcome in enumerate(outcomes) if isinstance(outcome, Contended)]
        if outspent:
            again = await self._read_again([batch[index] for index in outspent])
            for index, outcome in zip(outspent, again, strict=True):
                outcomes[index] = outcome
        return outcomes

    async def _read_again(self, batch: Sequence[PendingSend]) -> BatchResult:
        """The rules allowed these requests as read, yet their debit found the coins spent: a
        concurrent debit (another server) committed in between. A fresh read tells whether it was a
        request with the same key (replay it) and what the rules say now; still allowed means coins
        arrived since, and the caller tries again."""
        try:
            return _outcomes_from_rows(await self._connections.fetch(READ_FACTS_SQL, _arrays(batch)), batch)
        except StorageUnavailable as error:  # OutcomeUnknown too: a read wrote nothing
            return [_unavailable(error) for _ in batch]
        except Exception as error:  # these requests' own failure, not their charged neighbours'
            return [error, *(copy.copy(error) for _ in batch[1:])]

    async def _write_again(self, batch: Sequence[PendingSend], error: asyncpg.PostgresError) -> BatchResult:
        """A refused batch statement changed nothing. Typically another server committed one of these
        idempotency keys first: written again, the statement sees that superlike and replays it. If it
        is refused again, or a wallet was locked elsewhere past lock_timeout, one request at a time,
        so only the request at fault fails."""
        if not isinstance(error, BUSY_ERRORS):  # a busy wallet would only time out again
            log.info("superlike batch refused (%s); writing it again", error)
            try:
                rows = await self._connections.fetch(SEND_BATCH_SQL, _arrays(batch))
                return await self._answer_rows(rows, batch)
            except asyncpg.PostgresError as again:
                error = again
        log.warning("superlike batch refused (%s); writing it one request at a time", error)
        results: list[SendOutcome | BaseException] = []
        for index, pending in enumerate(batch):
            try:
                results.extend(await self._send_batch([pending]))
            except (StorageUnavailable, OutcomeUnknown) as failure:
                results.append(failure)
                if isinstance(failure.__cause__, BUSY_ERRORS):
                    continue  # only this request's wallet was busy
                # The database is gone: the requests not tried yet were not sent at all.
                results.extend(StorageUnavailable() for _ in batch[index + 1 :])
                break
            except Exception as failure:  # this request's own failure, not its neighbours'
                results.append(failure)
        return results


def _arrays(batch: Sequence[PendingSend]) -> tuple[list[Any], ...]:
    """The statements' parameters: one array per column of `p`, one element per request."""
    return (
        [pending.request.stream_id for pending in batch],
        [pending.request.sender_id for pending in batch],
        [pending.request.idempotency_key for pending in batch],
        [pending.superlike_id for pending in batch],
        [pending.created_at_ms for pending in batch],
    )


def _outcomes_from_rows(rows: Sequence[Any], batch: Sequence[PendingSend]) -> list[SendOutcome]:
    """The statement's answer, one row per request in the batch's order (`n`)."""
    outcomes: list[SendOutcome] = []
    for number, (row, pending) in enumerate(zip(rows, batch, strict=True), start=1):
        assert row["n"] == number, "batch rows out of order"
        prior = prior_from_row(row, pending.request.sender_id)
        if prior is not None:
            outcomes.append(Replayed(prior))
        elif row["balance_after"] is not None:
            outcomes.append(Charged(charged_from_row(row)))
        else:
            outcomes.append(not_charged(facts_from_row(row)))
    return outcomes


def _unavailable(error: StorageUnavailable) -> StorageUnavailable:
    unavailable = StorageUnavailable()
    unavailable.__cause__ = error
    return unavailable
