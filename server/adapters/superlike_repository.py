"""SendSuperlike's storage: a few statements written once at import, shared by SQLite and PostgreSQL.

Superlikes are written in batches (send_batcher.py), each request with its own outcome. The hot path
does no statement construction, and the drivers (asyncpg especially) reuse their prepared forms.
PostgreSQL writes a batch as one statement; SQLite as one transaction on its dedicated thread.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.database import failed_before_sending, is_unavailable
from server.adapters.send_batcher import BatchResult, PendingSend, SendBatcher
from server.adapters.sqlite_worker import SqliteWorker
from server.domain.errors import DomainError, OutcomeUnknown, StorageUnavailable
from server.domain.superlike import (
    SenderSnapshot,
    StreamState,
    Superlike,
    SuperlikeContext,
    SuperlikeRequest,
    check_superlike_allowed,
)
from server.services.ports import PriorSuperlike, SendAttempt

log = logging.getLogger(__name__)

KEY_CONSTRAINT = "uq_superlikes_sender_key"

# The rules' inputs, one row per request `p` (sid, uid, idem): the stream, the sender's profile,
# balance and ban, and any superlike already stored under the request's idempotency key. Every join is
# optional, so a missing row reads as NULL rather than as no row.
_CONTEXT_COLUMNS = """s.host_id, s.state, s.superlike_price,
           u.id AS sender_id, u.username, u.name, u.surname, u.profile_photo,
           w.balance,
           EXISTS (SELECT 1 FROM chat_bans b WHERE b.stream_id = p.sid AND b.user_id = p.uid) AS banned,
           k.id AS prior_id, k.stream_id AS prior_stream_id, k.sender_username AS prior_username,
           k.sender_name AS prior_name, k.sender_surname AS prior_surname,
           k.sender_profile_photo AS prior_profile_photo, k.price AS prior_price,
           k.created_at_ms AS prior_created_at_ms, k.sender_balance_after AS prior_balance_after"""
_CONTEXT_JOINS = """FROM p
    LEFT JOIN live_streams s ON s.id = p.sid
    LEFT JOIN users u ON u.id = p.uid
    LEFT JOIN wallets w ON w.user_id = p.uid
    LEFT JOIN superlikes k ON k.sender_id = p.uid AND k.idempotency_key = p.idem"""

_LOAD_CONTEXT_SQL = f"""
WITH p AS (
    SELECT CAST(:stream_id AS VARCHAR(24)) AS sid, CAST(:sender_id AS VARCHAR(24)) AS uid,
           CAST(:key AS VARCHAR(255)) AS idem
)
SELECT {_CONTEXT_COLUMNS}
{_CONTEXT_JOINS}
"""

_FIND_BY_KEY = text("""
SELECT k.id AS prior_id, k.stream_id AS prior_stream_id, k.sender_username AS prior_username,
       k.sender_name AS prior_name, k.sender_surname AS prior_surname,
       k.sender_profile_photo AS prior_profile_photo, k.price AS prior_price,
       k.created_at_ms AS prior_created_at_ms, k.sender_balance_after AS prior_balance_after
FROM superlikes k WHERE k.sender_id = :sender_id AND k.idempotency_key = :key
""")

# PostgreSQL: a whole batch of superlikes (distinct senders, see send_batcher.py) is ONE statement,
# run in autocommit (a statement is atomic on its own), so a batch costs one round trip and one
# commit. The requests arrive as parallel arrays; `n` keeps each one's place in the answer.
#   ctx     the rules' inputs, one row per request (the query above, per request).
#   allowed the requests check_superlike_allowed() would accept, written in SQL; the Python rules
#           explain any refusal from the same `ctx` row, so the two cannot disagree about what was
#           read.
#   locked  the senders' wallets, locked in user id order. Settlement locks in the same order, so
#           batches of several servers and settlement never wait for each other in a cycle.
#   debit   re-checks the balance on the latest row version (a concurrent debit may have committed
#           since the snapshot), so a balance never goes below zero.
# Each later step feeds on the previous one: no debit -> no superlike -> no ledger entries. A
# concurrent request (another server) with the same idempotency key fails the unique index, which
# undoes the whole statement; the batch is then written one request at a time. The host's credit is
# a pending ledger entry (see settlement.py): the host's wallet row is not locked, so superlikes on
# one hot stream do not queue behind each other.
_SEND_BATCH_SQL = f"""
WITH p AS (
    SELECT * FROM unnest($1::varchar(24)[], $2::varchar(24)[], $3::varchar(255)[], $4::varchar(24)[],
                         $5::bigint[])
             WITH ORDINALITY AS p(sid, uid, idem, superlike_id, created_at_ms, n)
), ctx AS (
    -- One index lookup per request and table, whatever the tables' sizes and the planner's guess
    -- of the batch size (LIMIT 1 keeps each lookup a nested loop, not a join over whole tables).
    SELECT p.n, p.superlike_id, p.created_at_ms, p.idem, p.sid AS stream_id,
           {_CONTEXT_COLUMNS}
    FROM p
    LEFT JOIN LATERAL (SELECT * FROM live_streams WHERE id = p.sid LIMIT 1) s ON TRUE
    LEFT JOIN LATERAL (SELECT * FROM users WHERE id = p.uid LIMIT 1) u ON TRUE
    LEFT JOIN LATERAL (SELECT * FROM wallets WHERE user_id = p.uid LIMIT 1) w ON TRUE
    LEFT JOIN LATERAL (
        SELECT * FROM superlikes WHERE sender_id = p.uid AND idempotency_key = p.idem LIMIT 1
    ) k ON TRUE
), locked AS (
    SELECT allowed.*
    FROM ctx AS allowed JOIN wallets ON wallets.user_id = allowed.sender_id
    WHERE allowed.prior_id IS NULL AND allowed.host_id IS NOT NULL
      AND allowed.host_id <> allowed.sender_id AND NOT allowed.banned AND allowed.state = 'live'
    ORDER BY wallets.user_id
    FOR UPDATE OF wallets
), debit AS (
    UPDATE wallets SET balance = wallets.balance - locked.superlike_price
    FROM locked
    WHERE wallets.user_id = locked.sender_id
      AND wallets.balance >= locked.superlike_price
    RETURNING locked.*, wallets.balance AS balance_after
), superlike AS (
    INSERT INTO superlikes (id, stream_id, sender_id, sender_username, sender_name, sender_surname,
                            sender_profile_photo, price, sender_balance_after, created_at_ms,
                            idempotency_key)
    SELECT superlike_id, stream_id, sender_id, username, name, surname, profile_photo,
           superlike_price, balance_after, created_at_ms, idem
    FROM debit
), ledger AS (
    -- Every debit row is a superlike row of this statement, and foreign keys are checked when the
    -- statement ends, so the entries can come straight from `debit`.
    INSERT INTO ledger_entries (user_id, amount, kind, superlike_id, created_at_ms, applied)
    SELECT sender_id, -CAST(superlike_price AS BIGINT), 'superlike_debit', superlike_id, created_at_ms, TRUE
    FROM debit
    UNION ALL
    SELECT host_id, CAST(superlike_price AS BIGINT), 'superlike_credit', superlike_id, created_at_ms, FALSE
    FROM debit
)
SELECT ctx.*, debit.balance_after FROM ctx LEFT JOIN debit ON debit.n = ctx.n
ORDER BY ctx.n
"""

# SQLite: the same steps as separate statements inside one BEGIN IMMEDIATE transaction, run on the
# driver's own cursor (sqlite3 takes these `:name` parameters as they are): through SQLAlchemy's
# execution and result layers the four statements cost several times what SQLite itself spends.
_DEBIT_SQL = """
UPDATE wallets SET balance = balance - :price
WHERE user_id = :sender_id AND balance >= :price
RETURNING balance
"""

_INSERT_SUPERLIKE_SQL = """
INSERT INTO superlikes (id, stream_id, sender_id, sender_username, sender_name, sender_surname,
                        sender_profile_photo, price, sender_balance_after, created_at_ms,
                        idempotency_key)
VALUES (:superlike_id, :stream_id, :sender_id, :username, :name, :surname, :profile_photo, :price,
        :balance_after, :created_at_ms, :key)
"""

_INSERT_LEDGER_PAIR_SQL = """
INSERT INTO ledger_entries (user_id, amount, kind, superlike_id, created_at_ms, applied)
VALUES (:sender_id, -CAST(:price AS BIGINT), 'superlike_debit', :superlike_id, :created_at_ms, TRUE),
       (:host_id, CAST(:price AS BIGINT), 'superlike_credit', :superlike_id, :created_at_ms, FALSE)
"""


def _params(pending: PendingSend) -> dict[str, Any]:
    return {
        "stream_id": pending.request.stream_id,
        "sender_id": pending.request.sender_id,
        "key": pending.request.idempotency_key,
        "superlike_id": pending.superlike_id,
        "created_at_ms": pending.created_at_ms,
    }


def _arrays(batch: Sequence[PendingSend]) -> tuple[list[Any], ...]:
    """The batch statement's parameters: one array per column, one element per request."""
    return (
        [pending.request.stream_id for pending in batch],
        [pending.request.sender_id for pending in batch],
        [pending.request.idempotency_key for pending in batch],
        [pending.superlike_id for pending in batch],
        [pending.created_at_ms for pending in batch],
    )


# Refusals that say "busy, try again" rather than "wrong": nothing was written.
_BUSY_ERRORS = (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError)

# Enough to absorb every request in flight at the concurrency the server is sized for, and small
# enough that one statement's arrays stay a few kilobytes.
MAX_BATCH = 128


class PostgresSuperlikeRepository:
    """Superlikes written in batches, each one autocommit statement on a pooled asyncpg connection.

    The server keeps working while a batch statement runs; requests arriving meanwhile form the next
    batch. `max_in_flight` bounds the batch statements running at once: one makes the largest batches
    and the least database work per superlike; more overlap the statements on a database with cores
    to spare."""

    def __init__(self, engine: AsyncEngine, *, max_in_flight: int = 1) -> None:
        self._engine = engine
        self._batcher = SendBatcher(self._write_batch, max_batch=MAX_BATCH, max_in_flight=max_in_flight)

    async def send_if_allowed(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> SendAttempt:
        return await self._batcher.send(request, superlike_id, created_at_ms)

    async def find_by_key(self, sender_id: str, key: str) -> PriorSuperlike | None:
        async with self._engine.connect() as connection:
            result = await connection.execute(_FIND_BY_KEY, {"sender_id": sender_id, "key": key})
            row = result.mappings().one_or_none()
        return None if row is None else _prior_from_row(row, sender_id)

    async def close(self, timeout_seconds: float) -> None:
        await self._batcher.close(timeout_seconds)

    async def _write_batch(self, batch: Sequence[PendingSend]) -> BatchResult:
        try:
            rows = await self._fetch(_SEND_BATCH_SQL, _arrays(batch))
        except asyncpg.PostgresError as error:
            # The database refused the statement, so in autocommit nothing of it was written.
            # (Connection failures never get here: _fetch turns them into StorageUnavailable or
            # OutcomeUnknown.)
            if len(batch) > 1:
                return await self._write_again(batch, error)
            if isinstance(error, asyncpg.UniqueViolationError) and error.constraint_name == KEY_CONSTRAINT:
                return [SendAttempt(context=_EMPTY_CONTEXT, contended=True)]
            if isinstance(error, _BUSY_ERRORS):
                # A wallet stayed locked past lock_timeout, or a deadlock victim: retryable.
                log.warning("superlike not written, the database is busy: %s", error)
                raise StorageUnavailable() from error
            raise
        return _attempts_from_rows(rows, batch)

    async def _write_again(self, batch: Sequence[PendingSend], error: asyncpg.PostgresError) -> BatchResult:
        """A refused batch statement changed nothing. Typically another server committed one of these
        idempotency keys first: written again, the statement sees that superlike and replays it. If it
        is refused again, or a wallet was locked elsewhere past lock_timeout, one request at a time,
        so only the request at fault fails."""
        if not isinstance(error, _BUSY_ERRORS):  # a busy wallet would only time out again
            log.info("superlike batch refused (%s); writing it again", error)
            try:
                return _attempts_from_rows(await self._fetch(_SEND_BATCH_SQL, _arrays(batch)), batch)
            except asyncpg.PostgresError as again:
                error = again
        log.warning("superlike batch refused (%s); writing it one request at a time", error)
        results: list[SendAttempt | BaseException] = []
        for index, pending in enumerate(batch):
            try:
                results.extend(await self._write_batch([pending]))
            except (StorageUnavailable, OutcomeUnknown) as failure:
                results.append(failure)
                if isinstance(failure.__cause__, _BUSY_ERRORS):
                    continue  # only this request's wallet was busy
                # The database is gone: the requests not tried yet were not sent at all.
                results.extend(StorageUnavailable() for _ in batch[index + 1:])
                break
            except Exception as failure:  # this request's own failure, not its neighbours'
                results.append(failure)
        return results

    async def _fetch(self, sql: str, arrays: tuple[list[Any], ...]) -> list[asyncpg.Record]:
        """Runs `sql` once on a pooled connection in autocommit, straight on the asyncpg driver:
        SQLAlchemy's execution and result layers add CPU and nothing a fixed statement needs."""
        # A database restart leaves every pooled connection dead; each refuses before sending, so
        # trying the next one (up to a fresh connection) is safe and costs no round trip.
        passes = self._engine.sync_engine.pool.size() + 1
        for pass_number in range(1, passes + 1):
            try:
                connection = await self._engine.connect()
            except Exception as error:
                if is_unavailable(error):
                    log.warning("database unavailable: %s", error)
                    raise StorageUnavailable() from error
                raise
            try:
                driver = (await connection.get_raw_connection()).driver_connection
                return await driver.fetch(sql, *arrays)
            except asyncio.CancelledError:
                # Cancelled mid-statement (shutdown): the connection's state is unknown, so it must
                # not go back to the pool.
                await connection.invalidate()
                raise
            except Exception as error:
                if not is_unavailable(error):
                    raise
                await connection.invalidate()  # the pool must not hand this connection out again
                if failed_before_sending(error):
                    if pass_number < passes:
                        continue  # it died while pooled; the statement never left, so try another
                    raise StorageUnavailable() from error
                # Once the statement was sent, a broken connection may have lost the answer to a
                # commit: saying "nothing changed" then could make a client pay twice.
                log.warning("connection lost with a superlike batch in flight: %s", error)
                raise OutcomeUnknown() from error
            finally:
                await connection.close()
        raise AssertionError("unreachable")


class SqliteSuperlikeRepository:
    """Superlikes written in batches, each one BEGIN IMMEDIATE transaction run as a single call on the
    SQLite thread: one commit (and one WAL sync) per batch instead of per superlike."""

    def __init__(self, worker: SqliteWorker) -> None:
        self._worker = worker
        self._batcher = SendBatcher(self._write_batch, max_batch=MAX_BATCH, max_in_flight=1)

    async def send_if_allowed(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> SendAttempt:
        return await self._batcher.send(request, superlike_id, created_at_ms)

    async def find_by_key(self, sender_id: str, key: str) -> PriorSuperlike | None:
        def find(connection: Connection) -> PriorSuperlike | None:
            row = connection.execute(_FIND_BY_KEY, {"sender_id": sender_id, "key": key}).mappings().one_or_none()
            return None if row is None else _prior_from_row(row, sender_id)

        return await self._worker.read(find)

    async def close(self, timeout_seconds: float) -> None:
        await self._batcher.close(timeout_seconds)

    async def _write_batch(self, batch: Sequence[PendingSend]) -> BatchResult:
        try:
            return await self._worker.write(
                lambda connection: [_send_in_transaction(connection, pending=pending) for pending in batch]
            )
        except Exception as error:
            # OutcomeUnknown: the commit itself failed and may have been durable; writing the
            # requests again could charge them twice.
            if len(batch) == 1 or is_unavailable(error) or isinstance(error, OutcomeUnknown):
                raise
            # One request's failure undid the whole transaction; one at a time, only it fails.
            log.warning("superlike batch failed, writing it one by one: %s", error)
        results: list[SendAttempt | BaseException] = []
        for pending in batch:
            try:
                results.append(await self._worker.write(partial(_send_in_transaction, pending=pending)))
            except Exception as error:
                results.append(error)
        return results


def _send_in_transaction(connection: Connection, *, pending: PendingSend) -> SendAttempt:
    # The transaction holds SQLite's single write lock from this read to the commit: nothing can
    # change in between, so the rules decide on current data and the debit cannot fail after them.
    # Earlier requests of the same batch are part of that current data.
    cursor = connection.connection.driver_connection.cursor()
    cursor.row_factory = sqlite3.Row
    try:
        return _send_with_cursor(cursor, pending)
    finally:
        cursor.close()


def _send_with_cursor(cursor: sqlite3.Cursor, pending: PendingSend) -> SendAttempt:
    request = pending.request
    params = _params(pending)
    row = cursor.execute(_LOAD_CONTEXT_SQL, params).fetchone()
    context = _context_from_row(row)
    prior = _prior_from_row(row, request.sender_id)
    if prior is not None:
        return SendAttempt(context=context, prior=prior)
    try:
        price = check_superlike_allowed(request, context)
    except DomainError:
        return SendAttempt(context=context)  # the caller explains the refusal from the context
    assert context.sender is not None and context.stream_host_id is not None
    snapshot = context.sender
    params = {
        **params,
        "host_id": context.stream_host_id,
        "price": price,
        "username": snapshot.username,
        "name": snapshot.name,
        "surname": snapshot.surname,
        "profile_photo": snapshot.profile_photo,
    }
    debited = cursor.execute(_DEBIT_SQL, params).fetchone()
    if debited is None:
        return SendAttempt(context=context)
    balance_after = int(debited[0])
    cursor.execute(_INSERT_SUPERLIKE_SQL, {**params, "balance_after": balance_after})
    cursor.execute(_INSERT_LEDGER_PAIR_SQL, params)
    return SendAttempt(context=context, superlike=_new_superlike(pending, context, balance_after))


def _attempts_from_rows(rows: Sequence[Any], batch: Sequence[PendingSend]) -> list[SendAttempt]:
    """The batch statement's answer, one row per request in the batch's order (`n`)."""
    attempts = []
    for number, (row, pending) in enumerate(zip(rows, batch, strict=True), start=1):
        assert row["n"] == number, "batch rows out of order"
        attempts.append(_attempt_from_row(row, pending))
    return attempts


def _attempt_from_row(row: Any, pending: PendingSend) -> SendAttempt:
    context = _context_from_row(row)
    prior = _prior_from_row(row, pending.request.sender_id)
    if prior is not None or row["balance_after"] is None:
        return SendAttempt(context=context, prior=prior)
    return SendAttempt(context=context, superlike=_new_superlike(pending, context, int(row["balance_after"])))


_EMPTY_CONTEXT = SuperlikeContext(None, None, None, None, None, False)


def _new_superlike(pending: PendingSend, context: SuperlikeContext, balance_after: int) -> Superlike:
    assert context.sender is not None and context.stream_price is not None
    return Superlike(
        superlike_id=pending.superlike_id,
        stream_id=pending.request.stream_id,
        sender=context.sender,
        price=context.stream_price,
        created_at_ms=pending.created_at_ms,
        sender_balance_after=balance_after,
    )


def _context_from_row(row: Any) -> SuperlikeContext:
    sender = None
    if row["sender_id"] is not None:
        sender = SenderSnapshot(
            user_id=row["sender_id"],
            username=row["username"],
            name=row["name"],
            surname=row["surname"],
            profile_photo=row["profile_photo"],
        )
    return SuperlikeContext(
        stream_host_id=row["host_id"],
        stream_state=StreamState(row["state"]) if row["state"] is not None else None,
        stream_price=row["superlike_price"],
        sender=sender,
        sender_balance=row["balance"],
        sender_banned=bool(row["banned"]),
    )


def _prior_from_row(row: Any, sender_id: str) -> PriorSuperlike | None:
    if row["prior_id"] is None:
        return None
    return PriorSuperlike(
        Superlike(
            superlike_id=row["prior_id"],
            stream_id=row["prior_stream_id"],
            sender=SenderSnapshot(
                user_id=sender_id,
                username=row["prior_username"],
                name=row["prior_name"],
                surname=row["prior_surname"],
                profile_photo=row["prior_profile_photo"],
            ),
            price=row["prior_price"],
            created_at_ms=row["prior_created_at_ms"],
            sender_balance_after=row["prior_balance_after"],
        )
    )


def superlike_repository(
    engine: AsyncEngine, sqlite_worker: SqliteWorker | None = None, *, batches_in_flight: int = 1
) -> PostgresSuperlikeRepository | SqliteSuperlikeRepository:
    """The repository for `engine`: SQLite's runs on its dedicated thread, so it needs the worker."""
    if engine.dialect.name == "sqlite":
        if sqlite_worker is None:
            raise ValueError("SQLite superlikes are written on a SqliteWorker")
        return SqliteSuperlikeRepository(sqlite_worker)
    return PostgresSuperlikeRepository(engine, max_in_flight=batches_in_flight)
