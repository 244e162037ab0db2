"""SendSuperlike's storage: a handful of prepared statements, shared by SQLite and PostgreSQL.

The statements are plain SQL built once at import: the hot path does no statement construction and
the drivers (asyncpg especially) reuse their prepared forms.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.domain.superlike import (
    SenderSnapshot,
    StreamState,
    Superlike,
    SuperlikeContext,
    SuperlikeRequest,
)
from server.services.ports import ChargeRefused, PriorSuperlike

_PRIOR_COLUMNS = """
    k.id AS prior_id, k.stream_id AS prior_stream_id, k.sender_username AS prior_username,
    k.sender_name AS prior_name, k.sender_surname AS prior_surname,
    k.sender_profile_photo AS prior_profile_photo, k.price AS prior_price,
    k.created_at_ms AS prior_created_at_ms, k.sender_balance_after AS prior_balance_after
"""

# One round trip: the stream, the sender's profile, balance and ban, and any superlike already
# stored under the request's idempotency key. Every join is optional so a missing row reads as NULL.
_LOAD_CONTEXT = text(f"""
SELECT s.host_id, s.state, s.superlike_price,
       u.id AS sender_id, u.username, u.name, u.surname, u.profile_photo,
       w.balance,
       EXISTS (SELECT 1 FROM chat_bans b WHERE b.stream_id = p.sid AND b.user_id = p.uid) AS banned,
       {_PRIOR_COLUMNS}
FROM (SELECT CAST(:stream_id AS VARCHAR(24)) AS sid, CAST(:sender_id AS VARCHAR(24)) AS uid,
             CAST(:key AS VARCHAR(255)) AS idem) AS p
LEFT JOIN live_streams s ON s.id = p.sid
LEFT JOIN users u ON u.id = p.uid
LEFT JOIN wallets w ON w.user_id = p.uid
LEFT JOIN superlikes k ON k.sender_id = p.uid AND k.idempotency_key = p.idem
""")

_FIND_BY_KEY = text(f"""
SELECT k.sender_id, {_PRIOR_COLUMNS}
FROM superlikes k WHERE k.sender_id = :sender_id AND k.idempotency_key = :key
""")

# The balance check and the debit are one statement: under concurrency the row lock makes the second
# debit re-read the first one's result, so a balance can never go below zero.
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
ON CONFLICT (sender_id, idempotency_key) DO NOTHING
RETURNING id
""")

# The host's credit is written pending (applied = false) and folded into the wallet by the settlement
# task: the superlike never locks the host's wallet row, so one hot stream does not serialise.
_INSERT_LEDGER_PAIR = text("""
INSERT INTO ledger_entries (user_id, amount, kind, superlike_id, created_at_ms, applied)
VALUES (:sender_id, -CAST(:price AS BIGINT), 'superlike_debit', :superlike_id, :created_at_ms, TRUE),
       (:host_id, CAST(:price AS BIGINT), 'superlike_credit', :superlike_id, :created_at_ms, FALSE)
""")

# PostgreSQL does the whole charge in one statement, run outside an explicit transaction: a single
# statement is atomic on its own, so the superlike costs two round trips (this and the context read)
# instead of four. Each step feeds the next, which fixes their order: no debit -> no superlike -> no
# ledger entries. Because no lock is held since the context read, `allowed` re-checks the inputs the
# rules used (stream live at this price, sender not banned) in the statement's snapshot. A second
# request with the same idempotency key fails the unique index, which undoes the whole statement.
_CHARGE_IN_ONE_STATEMENT = text("""
WITH allowed AS (
    SELECT 1 FROM live_streams s
    WHERE s.id = :stream_id AND s.host_id = :host_id AND s.state = 'live' AND s.superlike_price = :price
      AND NOT EXISTS (SELECT 1 FROM chat_bans b WHERE b.stream_id = :stream_id AND b.user_id = :sender_id)
), debit AS (
    UPDATE wallets SET balance = balance - :price
    WHERE user_id = :sender_id AND balance >= :price AND EXISTS (SELECT 1 FROM allowed)
    RETURNING balance
), superlike AS (
    INSERT INTO superlikes (id, stream_id, sender_id, sender_username, sender_name, sender_surname,
                            sender_profile_photo, price, sender_balance_after, created_at_ms,
                            idempotency_key)
    SELECT :superlike_id, :stream_id, :sender_id, :username, :name, :surname, :profile_photo, :price,
           debit.balance, :created_at_ms, :key
    FROM debit
    RETURNING id
), ledger AS (
    INSERT INTO ledger_entries (user_id, amount, kind, superlike_id, created_at_ms, applied)
    SELECT :sender_id, -CAST(:price AS BIGINT), 'superlike_debit', id, :created_at_ms, TRUE FROM superlike
    UNION ALL
    SELECT :host_id, CAST(:price AS BIGINT), 'superlike_credit', id, :created_at_ms, FALSE FROM superlike
)
SELECT EXISTS (SELECT 1 FROM allowed) AS allowed, (SELECT balance FROM debit) AS balance_after,
       (SELECT id FROM superlike) AS superlike_id
""")

KEY_CONSTRAINT = "uq_superlikes_sender_key"


class SqlSuperlikeRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._single_statement = connection.dialect.name == "postgresql"

    async def load_context(
        self, request: SuperlikeRequest
    ) -> tuple[SuperlikeContext, PriorSuperlike | None]:
        result = await self._connection.execute(
            _LOAD_CONTEXT,
            {"stream_id": request.stream_id, "sender_id": request.sender_id, "key": request.idempotency_key},
        )
        row = result.mappings().one()
        sender = None
        if row["sender_id"] is not None:
            sender = SenderSnapshot(
                user_id=row["sender_id"],
                username=row["username"],
                name=row["name"],
                surname=row["surname"],
                profile_photo=row["profile_photo"],
            )
        context = SuperlikeContext(
            stream_host_id=row["host_id"],
            stream_state=StreamState(row["state"]) if row["state"] is not None else None,
            stream_price=row["superlike_price"],
            sender=sender,
            sender_balance=row["balance"],
            sender_banned=bool(row["banned"]),
        )
        return context, _prior_from_row(row, request.sender_id)

    async def find_by_key(self, sender_id: str, key: str) -> PriorSuperlike | None:
        result = await self._connection.execute(_FIND_BY_KEY, {"sender_id": sender_id, "key": key})
        row = result.mappings().one_or_none()
        return None if row is None else _prior_from_row(row, sender_id)

    async def charge(self, superlike: Superlike, host_id: str, key: str | None) -> int | ChargeRefused:
        snapshot = superlike.sender
        params = {
            "superlike_id": superlike.superlike_id,
            "stream_id": superlike.stream_id,
            "sender_id": snapshot.user_id,
            "host_id": host_id,
            "username": snapshot.username,
            "name": snapshot.name,
            "surname": snapshot.surname,
            "profile_photo": snapshot.profile_photo,
            "price": superlike.price,
            "created_at_ms": superlike.created_at_ms,
            "key": key,
        }
        if self._single_statement:
            try:
                row = (await self._connection.execute(_CHARGE_IN_ONE_STATEMENT, params)).one()
            except IntegrityError as error:
                if KEY_CONSTRAINT in str(error.orig):
                    return ChargeRefused.IDEMPOTENCY_KEY_TAKEN
                raise
            if not row.allowed:
                return ChargeRefused.CONDITIONS_CHANGED
            if row.balance_after is None:
                return ChargeRefused.INSUFFICIENT_BALANCE
            return int(row.balance_after)
        # SQLite has no data-modifying CTEs; its statements run in-process, so three cost little.
        balance_after = (await self._connection.execute(_DEBIT, params)).scalar_one_or_none()
        if balance_after is None:
            return ChargeRefused.INSUFFICIENT_BALANCE
        inserted = await self._connection.execute(_INSERT_SUPERLIKE, {**params, "balance_after": balance_after})
        if inserted.scalar_one_or_none() is None:
            return ChargeRefused.IDEMPOTENCY_KEY_TAKEN
        await self._connection.execute(_INSERT_LEDGER_PAIR, params)
        return int(balance_after)


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
