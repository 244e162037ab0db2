"""Alembic environment: runs on the connection `server.adapters.schema` hands over, or opens its own
from DATABASE_URL / `sqlalchemy.url` when run by the alembic command line."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from server.adapters.database import create_engine
from server.adapters.schema import migration_transaction
from server.adapters.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_own_connection() -> None:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("set DATABASE_URL or sqlalchemy.url to migrate")
    engine = create_engine(url)
    try:
        async with migration_transaction(engine) as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


shared = config.attributes.get("connection")
if shared is not None:
    _run(shared)
else:
    asyncio.run(_run_own_connection())
