"""Settlement on SQLite, on the SQLite thread (see ../settlement.py)."""

from __future__ import annotations

from sqlalchemy import Connection, text

from server.adapters.settlement import ANY_PENDING
from server.adapters.sqlite.worker import SqliteWorker

# SQLite runs one writer at a time (BEGIN IMMEDIATE), so two statements in one transaction see the
# same pending set.
_SETTLE_WALLETS = text("""
UPDATE wallets SET balance = balance + (
    SELECT SUM(amount) FROM ledger_entries e WHERE e.user_id = wallets.user_id AND NOT e.applied
)
WHERE user_id IN (SELECT user_id FROM ledger_entries WHERE NOT applied)
""")
_SETTLE_ENTRIES = text("UPDATE ledger_entries SET applied = 1 WHERE NOT applied")


async def settle(worker: SqliteWorker) -> int:
    """Applies every pending credit visible now; returns how many entries were applied."""
    # Most ticks find nothing to do, and must not take SQLite's write lock just to learn that.
    if not await worker.read(lambda connection: connection.execute(ANY_PENDING).scalar_one()):
        return 0
    return await worker.write(_settle)


def _settle(connection: Connection) -> int:
    connection.execute(_SETTLE_WALLETS)
    return int(connection.execute(_SETTLE_ENTRIES).rowcount)
