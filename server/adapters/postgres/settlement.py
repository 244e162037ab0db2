"""Settlement on PostgreSQL: one statement folds every pending credit (see ../settlement.py)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.settlement import ANY_PENDING

# Several servers settle the same database: a transaction-scoped advisory lock lets one of them do a
# round while the others skip it, instead of locking wallets in different orders and deadlocking.
_SETTLE = text("""
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


async def settle(engine: AsyncEngine) -> int:
    """Applies every pending credit visible now; returns how many entries were applied."""
    async with engine.connect() as connection:
        if not (await connection.execute(ANY_PENDING)).scalar_one():
            return 0
    async with engine.begin() as connection:
        return int((await connection.execute(_SETTLE)).scalar_one())
