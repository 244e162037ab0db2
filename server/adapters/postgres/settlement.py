"""Settlement on PostgreSQL: one statement folds every pending credit (see ../settlement.py)."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.settlement import ANY_PENDING

log = logging.getLogger(__name__)

# Several servers settle the same database: a transaction-scoped advisory lock lets one of them do a
# round while the others skip it, instead of locking wallets in different orders and deadlocking.
_SETTLE = text("""
WITH turn AS (
    SELECT pg_try_advisory_xact_lock(7316604523) AS mine
), picked AS (
    DELETE FROM pending_credits
    WHERE (SELECT mine FROM turn)
    RETURNING user_id, amount, entries
), totals AS (
    SELECT user_id, SUM(amount) AS amount, SUM(entries) AS entries FROM picked GROUP BY user_id
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
SELECT COALESCE((SELECT SUM(entries) FROM credited), 0) AS entries, (SELECT count(*) FROM picked) AS rows
""")

# A deleted row's space, and its slot on the page, are only reused once VACUUM has been by. The queue
# turns over a row per host and batch (thousands a second on a busy service), autovacuum looks at a
# table at most once a minute (and may be off), and every settlement reads the whole queue: left to
# autovacuum, that read grows with every row deleted since its last visit (400 pages of dead rows,
# 1.5 ms a round, after a few minutes with it off). So each server vacuums the queue itself after
# deleting this many rows: a few dozen pages, about a millisecond. SKIP_LOCKED: a vacuum another
# server is running is enough. TRUNCATE false: shrinking the file would take a lock superlike batches
# wait for; the space is reused instead.
VACUUM_AFTER_ROWS = 5_000
_VACUUM = text("VACUUM (SKIP_LOCKED, TRUNCATE false) pending_credits")


class PostgresSettlement:
    def __init__(self, engine: AsyncEngine, vacuum_after_rows: int = VACUUM_AFTER_ROWS) -> None:
        self._engine = engine
        self._vacuum_after_rows = vacuum_after_rows
        self._deleted_since_vacuum = 0

    async def settle(self) -> int:
        """Applies every pending credit visible now; returns how many credit entries they were."""
        async with self._engine.connect() as connection:
            if not (await connection.execute(ANY_PENDING)).scalar_one():
                return 0
        async with self._engine.begin() as connection:
            entries, rows = (await connection.execute(_SETTLE)).one()
        self._deleted_since_vacuum += rows
        if self._deleted_since_vacuum >= self._vacuum_after_rows:
            self._deleted_since_vacuum = 0
            await self._vacuum()
        return int(entries)

    async def _vacuum(self) -> None:
        try:
            async with self._engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(_VACUUM)
        except Exception as error:  # the credits are settled; autovacuum remains
            log.warning("could not vacuum pending_credits: %s", error)
