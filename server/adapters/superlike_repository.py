"""SendSuperlike's storage: a few statements written once at import, shared by SQLite and PostgreSQL.

The hot path does no statement construction, and the drivers (asyncpg especially) reuse their
prepared forms. PostgreSQL sends one statement per superlike; SQLite runs a short transaction of
four as one call on its dedicated thread.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
from sqlalchemy import Connection, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from server.adapters.database import failed_before_sending, is_unavailable
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

KEY_CONSTRAINT = "uq_superlikes_sender_key"

# The rules' inputs in one row: the stream, the sender's profile, balance and ban, and any superlike
# already stored under the request's idempotency key. Every join is optional, so a missing row reads
# as NULL rather than as no row.
_CONTEXT = """
SELECT s.host_id, s.state, s.superlike_price,
       u.id AS sender_id, u.username, u.name, u.surname, u.profile_photo,
       w.balance,
       EXISTS (SELECT 1 FROM chat_bans b WHERE b.stream_id = p.sid AND b.user_id = p.uid) AS banned,
       k.id AS prior_id, k.stream_id AS prior_stream_id, k.sender_username AS prior_username,
       k.sender_name AS prior_name, k.sender_surname AS prior_surname,
       k.sender_profile_photo AS prior_profile_photo, k.price AS prior_price,
       k.created_at_ms AS prior_created_at_ms, k.sender_balance_after AS prior_balance_after
FROM (SELECT CAST(:stream_id AS VARCHAR(24)) AS sid, CAST(:sender_id AS VARCHAR(24)) AS uid,
             CAST(:key AS VARCHAR(255)) AS idem) AS p
LEFT JOIN live_streams s ON s.id = p.sid
LEFT JOIN users u ON u.id = p.uid
LEFT JOIN wallets w ON w.user_id = p.uid
LEFT JOIN superlikes k ON k.sender_id = p.uid AND k.idempotency_key = p.idem
"""

_LOAD_CONTEXT = text(_CONTEXT)

_FIND_BY_KEY = text("""
SELECT k.id AS prior_id, k.stream_id AS prior_stream_id, k.sender_username AS prior_username,
       k.sender_name AS prior_name, k.sender_surname AS prior_surname,
       k.sender_profile_photo AS prior_profile_photo, k.price AS prior_price,
       k.created_at_ms AS prior_created_at_ms, k.sender_balance_after AS prior_balance_after
FROM superlikes k WHERE k.sender_id = :sender_id AND k.idempotency_key = :key
""")

# PostgreSQL: the whole superlike is ONE statement, run in autocommit (a statement is atomic on its
# own), so it costs one round trip. `ctx` reads the rules' inputs; the debit happens only when they
# allow it — this WHERE clause is check_superlike_allowed() in SQL, and the Python rules then explain
# a refusal from the same `ctx` row, so the two cannot disagree about what was read. Each later step
# feeds on the previous one: no debit -> no superlike -> no ledger entries. A concurrent request with
# the same idempotency key fails the unique index, which undoes the whole statement. The balance
# condition is re-evaluated on the latest row version when another debit committed meanwhile, so a
# balance never goes below zero. The host's credit is a pending ledger entry (see settlement.py): the
# host's wallet row is not locked, so superlikes on one hot stream do not queue behind each other.
_SEND_IN_ONE_STATEMENT = text(f"""
WITH ctx AS ({_CONTEXT}
), debit AS (
    UPDATE wallets SET balance = wallets.balance - ctx.superlike_price
    FROM ctx
    WHERE wallets.user_id = ctx.sender_id
      AND ctx.prior_id IS NULL
      AND ctx.host_id IS NOT NULL AND ctx.host_id <> ctx.sender_id
      AND NOT ctx.banned
      AND ctx.state = 'live'
      AND wallets.balance >= ctx.superlike_price
    RETURNING wallets.balance AS balance_after, ctx.superlike_price AS price, ctx.host_id AS host_id
), superlike AS (
    INSERT INTO superlikes (id, stream_id, sender_id, sender_username, sender_name, sender_surname,
                            sender_profile_photo, price, sender_balance_after, created_at_ms,
                            idempotency_key)
    SELECT :superlike_id, :stream_id, ctx.sender_id, ctx.username, ctx.name, ctx.surname,
           ctx.profile_photo, debit.price, debit.balance_after, :created_at_ms, :key
    FROM debit, ctx
    RETURNING id
), ledger AS (
    INSERT INTO ledger_entries (user_id, amount, kind, superlike_id, created_at_ms, applied)
    SELECT :sender_id, -CAST(debit.price AS BIGINT), 'superlike_debit', superlike.id, :created_at_ms, TRUE
    FROM superlike, debit
    UNION ALL
    SELECT debit.host_id, CAST(debit.price AS BIGINT), 'superlike_credit', superlike.id, :created_at_ms, FALSE
    FROM superlike, debit
)
SELECT ctx.*, (SELECT balance_after FROM debit) AS balance_after FROM ctx
""")


def _positional(statement: TextClause) -> tuple[str, tuple[str, ...]]:
    """The statement in asyncpg's `$n` form, and the parameter names in `$n` order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"(?<![:\w]):([a-z_]+)", number, statement.text), tuple(names)


# The hot statement goes straight to the pooled connection's asyncpg driver: SQLAlchemy's execution
# and result layers cost about a tenth of the server's CPU per superlike on this one call, and give
# nothing a fixed, hand-written statement needs.
_SEND_SQL, _SEND_PARAMS = _positional(_SEND_IN_ONE_STATEMENT)

# SQLite: the same steps as separate statements inside one BEGIN IMMEDIATE transaction.
_DEBIT = text("""
UPDATE wallets SET balance = balance - :price
WHERE user_id = :sender_id AND balance >= :price
RETURNING balance
""")

_INSERT_SUPERLIKE = text("""
INSERT INTO superlikes (id, stream_id, sender_id, sender_username, sender_name, sender_surname,
                        sender_profile_photo, price, sender_balance_after, created_at_ms,
                        idempotency_key)
VALUES (:superlike_id, :stream_id, :sender_id, :username, :name, :surname, :profile_photo, :price,
        :balance_after, :created_at_ms, :key)
""")

_INSERT_LEDGER_PAIR = text("""
INSERT INTO ledger_entries (user_id, amount, kind, superlike_id, created_at_ms, applied)
VALUES (:sender_id, -CAST(:price AS BIGINT), 'superlike_debit', :superlike_id, :created_at_ms, TRUE),
       (:host_id, CAST(:price AS BIGINT), 'superlike_credit', :superlike_id, :created_at_ms, FALSE)
""")


def _params(request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> dict[str, Any]:
    return {
        "stream_id": request.stream_id,
        "sender_id": request.sender_id,
        "key": request.idempotency_key,
        "superlike_id": superlike_id,
        "created_at_ms": created_at_ms,
    }


class PostgresSuperlikeRepository:
    """One autocommit statement per superlike on a pooled asyncpg connection."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def send_if_allowed(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> SendAttempt:
        params = _params(request, superlike_id, created_at_ms)
        row = None
        # A database restart leaves every pooled connection dead; each refuses before sending, so
        # trying the next one (up to a fresh connection) is safe and costs no round trip.
        passes = self._connection.sync_engine.pool.size() + 1
        for pass_number in range(1, passes + 1):
            driver = (await self._connection.get_raw_connection()).driver_connection
            try:
                row = await driver.fetchrow(_SEND_SQL, *(params[name] for name in _SEND_PARAMS))
                break
            except asyncpg.UniqueViolationError as error:
                if error.constraint_name == KEY_CONSTRAINT:
                    return SendAttempt(context=_EMPTY_CONTEXT, contended=True)
                raise
            except asyncio.CancelledError:
                # The caller gave up (deadline, disconnect) mid-statement: the connection's state is
                # unknown, so it must not go back to the pool.
                await self._connection.invalidate()
                raise
            except Exception as error:
                if not is_unavailable(error):
                    raise
                await self._connection.invalidate()  # the pool must not hand this connection out again
                if failed_before_sending(error):
                    if pass_number < passes:
                        continue  # it died while pooled; the statement never left, so try another
                    raise StorageUnavailable() from error
                # Once the statement was sent, a broken connection may have lost the answer to a
                # commit: saying "nothing changed" then could make a client pay twice.
                raise OutcomeUnknown() from error
        assert row is not None
        context = _context_from_row(row)
        prior = _prior_from_row(row, request.sender_id)
        if prior is not None or row["balance_after"] is None:
            return SendAttempt(context=context, prior=prior)
        return SendAttempt(context=context, superlike=_new_superlike(params, context, int(row["balance_after"])))

    async def find_by_key(self, sender_id: str, key: str) -> PriorSuperlike | None:
        result = await self._connection.execute(_FIND_BY_KEY, {"sender_id": sender_id, "key": key})
        row = result.mappings().one_or_none()
        return None if row is None else _prior_from_row(row, sender_id)


class SqliteSuperlikeRepository:
    """One BEGIN IMMEDIATE transaction per superlike, run as a single call on the SQLite thread."""

    def __init__(self, worker: SqliteWorker) -> None:
        self._worker = worker

    async def send_if_allowed(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> SendAttempt:
        params = _params(request, superlike_id, created_at_ms)
        return await self._worker.write(lambda connection: _send_in_transaction(connection, request, params))

    async def find_by_key(self, sender_id: str, key: str) -> PriorSuperlike | None:
        def find(connection: Connection) -> PriorSuperlike | None:
            row = connection.execute(_FIND_BY_KEY, {"sender_id": sender_id, "key": key}).mappings().one_or_none()
            return None if row is None else _prior_from_row(row, sender_id)

        return await self._worker.read(find)


def _send_in_transaction(connection: Connection, request: SuperlikeRequest, params: dict[str, Any]) -> SendAttempt:
    # The transaction holds SQLite's single write lock from this read to the commit: nothing can
    # change in between, so the rules decide on current data and the debit cannot fail after them.
    row = connection.execute(_LOAD_CONTEXT, params).mappings().one()
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
    balance_after = connection.execute(_DEBIT, params).scalar_one_or_none()
    if balance_after is None:
        return SendAttempt(context=context)
    connection.execute(_INSERT_SUPERLIKE, {**params, "balance_after": balance_after})
    connection.execute(_INSERT_LEDGER_PAIR, params)
    return SendAttempt(context=context, superlike=_new_superlike(params, context, int(balance_after)))


_EMPTY_CONTEXT = SuperlikeContext(None, None, None, None, None, False)


def _new_superlike(params: dict[str, Any], context: SuperlikeContext, balance_after: int) -> Superlike:
    assert context.sender is not None and context.stream_price is not None
    return Superlike(
        superlike_id=params["superlike_id"],
        stream_id=params["stream_id"],
        sender=context.sender,
        price=context.stream_price,
        created_at_ms=params["created_at_ms"],
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
