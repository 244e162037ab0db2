"""Settlement on SQLite, on the SQLite thread (see ../settlement.py)."""

from __future__ import annotations

from sqlalchemy import Connection, text

from server.adapters.settlement import ANY_PENDING
from server.adapters.sqlite.worker import SqliteWorker

# SQLite runs one writer at a time (BEGIN IMMEDIATE), so the statements of one transaction see the
# same pending rows, and the DELETE removes exactly the ones added.
_OWED = text("SELECT user_id, SUM(amount), SUM(entries) FROM pending_credits GROUP BY user_id ORDER BY user_id")
_CREDIT = text("UPDATE wallets SET balance = balance + :amount WHERE user_id = :user_id")
_SETTLED = text("DELETE FROM pending_credits")


async def settle(worker: SqliteWorker) -> int:
    """Applies every pending credit visible now; returns how many credit entries they were."""
    # Most ticks find nothing to do, and must not take SQLite's write lock just to learn that.
    if not await worker.read(lambda connection: connection.execute(ANY_PENDING).scalar_one()):
        return 0
    return await worker.write(_settle)


def _settle(connection: Connection) -> int:
    owed = connection.execute(_OWED).all()
    if owed:
        connection.execute(_CREDIT, [{"user_id": user_id, "amount": amount} for user_id, amount, _ in owed])
        connection.execute(_SETTLED)
    return sum(int(entries) for _, _, entries in owed)
