"""Migrations on SQLite: a table is altered by rebuilding it, which foreign keys must allow."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.adapters.schema import ForeignKeyViolation


def _set_foreign_keys(connection: Connection, enabled: bool) -> None:
    # On the driver's connection, before SQLAlchemy begins a transaction: inside one the pragma is
    # silently ignored.
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if enabled else 'OFF'}")
    finally:
        cursor.close()


@contextlib.asynccontextmanager
async def migration_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction for a migration run, committed when the block finishes without error.

    SQLite alters a table by rebuilding it (Alembic's batch mode: copy, drop, rename). Dropping a
    table other tables reference fails while foreign keys are enforced, so they are off for the
    run, and `PRAGMA foreign_key_check` must find nothing before the COMMIT.
    """
    async with engine.connect() as connection:
        await connection.run_sync(_set_foreign_keys, False)
        try:
            async with connection.begin():
                yield connection
                broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    raise ForeignKeyViolation(f"the migration left dangling references: {broken[:5]}")
        finally:
            await connection.run_sync(_set_foreign_keys, True)
