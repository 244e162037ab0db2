"""Alembic environment: runs on the connection `server.adapters.schema` hands over, or opens its own
from DATABASE_URL / `sqlalchemy.url` when run by the alembic command line."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from server.adapters.storage import open_storage
from server.adapters.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # Batch mode: SQLite recreates a table to alter it, PostgreSQL runs plain ALTERs.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_own_connection() -> None:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("set DATABASE_URL or sqlalchemy.url to migrate")
    async with open_storage(url, pool_size=1) as storage:
        async with storage.migration_transaction() as connection:
            await connection.run_sync(_run)


shared = config.attributes.get("connection")
if shared is not None:
    _run(shared)
else:
    asyncio.run(_run_own_connection())
