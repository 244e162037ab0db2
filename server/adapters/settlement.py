"""Folding pending host credits into wallet balances.

A superlike writes the host's credit as a pending ledger entry instead of updating the host's wallet
row, so concurrent superlikes on one stream never wait for each other. This task applies pending
entries in one statement: the entries it marks applied are exactly the ones it adds, so running it
concurrently (several servers) or while superlikes commit can neither lose nor double a credit.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.adapters.database import READ_ONLY_OPTION
from server.adapters.sqlite_worker import SqliteWorker

log = logging.getLogger(__name__)

# Several servers settle the same database: a transaction-scoped advisory lock lets one of them do a
# round while the others skip it, instead of locking wallets in different orders and deadlocking.
_SETTLE_POSTGRES = text("""
WITH turn AS (
    SELECT pg_try_advisory_xact_lock(7316604523) AS mine
), picked AS (
    UPDATE ledger_entries SET applied = TRUE
    WHERE NOT applied AND (SELECT mine FROM turn)
    RETURNING user_id, amount
), totals AS (
    SELECT user_id, SUM(amount) AS amount, COUNT(*) AS entries FROM picked GROUP BY user_id
), locked AS (
    -- Wallets locked in user id order, as superlike batches lock theirs: no cycle of waits.
    SELECT w.user_id FROM wallets w WHERE w.user_id IN (SELECT user_id FROM totals)
    ORDER BY w.user_id FOR UPDATE
), credited AS (
    UPDATE wallets SET balance = wallets.balance + totals.amount
    FROM totals JOIN locked ON locked.user_id = totals.user_id
    WHERE wallets.user_id = totals.user_id
    RETURNING totals.entries
)
SELECT COALESCE(SUM(entries), 0) FROM credited
""")

# SQLite runs one writer at a time (BEGIN IMMEDIATE), so two statements in one transaction see the
# same pending set.
_SETTLE_SQLITE_WALLETS = text("""
UPDATE wallets SET balance = balance + (
    SELECT SUM(amount) FROM ledger_entries e WHERE e.user_id = wallets.user_id AND NOT e.applied
)
WHERE user_id IN (SELECT user_id FROM ledger_entries WHERE NOT applied)
""")
_SETTLE_SQLITE_ENTRIES = text("UPDATE ledger_entries SET applied = 1 WHERE NOT applied")


async def settle_pending_credits(connection: AsyncConnection) -> int:
    """Applies every pending credit visible now; returns how many entries were applied."""
    if connection.dialect.name == "postgresql":
        return int((await connection.execute(_SETTLE_POSTGRES)).scalar_one())
    await connection.execute(_SETTLE_SQLITE_WALLETS)
    return int((await connection.execute(_SETTLE_SQLITE_ENTRIES)).rowcount)


_ANY_PENDING = text("SELECT EXISTS (SELECT 1 FROM ledger_entries WHERE NOT applied)")


async def settle_once(engine: AsyncEngine, sqlite_worker: SqliteWorker | None = None) -> int:
    # A cheap read (the partial index on pending entries) first: most ticks find nothing to do, and
    # must not take SQLite's write lock just to learn that.
    if sqlite_worker is not None:
        if not await sqlite_worker.read(lambda connection: connection.execute(_ANY_PENDING).scalar_one()):
            return 0
        return await sqlite_worker.write(_settle_sqlite)
    async with engine.connect() as connection:
        await connection.execution_options(**{READ_ONLY_OPTION: True})
        if not (await connection.execute(_ANY_PENDING)).scalar_one():
            return 0
    async with engine.begin() as connection:
        return await settle_pending_credits(connection)


def _settle_sqlite(connection: Connection) -> int:
    connection.execute(_SETTLE_SQLITE_WALLETS)
    return int(connection.execute(_SETTLE_SQLITE_ENTRIES).rowcount)


async def run_settlement(
    engine: AsyncEngine, interval_seconds: float, sqlite_worker: SqliteWorker | None = None
) -> None:
    """Settles every `interval_seconds` until cancelled; database outages are retried quietly."""
    while True:
        try:
            await settle_once(engine, sqlite_worker)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # an outage is reported by the health task; keep trying
            log.debug("settlement skipped: %s", error)
        await asyncio.sleep(interval_seconds)
