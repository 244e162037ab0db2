"""Schema migrations (Alembic), run programmatically by `livechat db upgrade`, tests and the local stack."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.adapters.database import READ_ONLY_OPTION

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


class ForeignKeyViolation(Exception):
    """A migration left rows that reference missing rows; it was rolled back."""


def _set_sqlite_foreign_keys(connection: Connection, enabled: bool) -> None:
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
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            await connection.run_sync(_set_sqlite_foreign_keys, False)
        try:
            async with connection.begin():
                yield connection
                if sqlite:
                    broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise ForeignKeyViolation(f"the migration left dangling references: {broken[:5]}")
        finally:
            if sqlite:
                await connection.run_sync(_set_sqlite_foreign_keys, True)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    def _upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with migration_transaction(engine) as connection:
        await connection.run_sync(_upgrade)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    def _downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with migration_transaction(engine) as connection:
        await connection.run_sync(_downgrade)


class SchemaNotCurrent(Exception):
    """The database is reachable but not migrated to this release's schema."""


async def check_current(engine: AsyncEngine) -> None:
    """Raises SchemaNotCurrent unless the database is at the newest migration.

    Serving an unmigrated database would turn every call into an error; failing at startup with the
    remedy in the message is kinder to whoever deploys it.
    """
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()

    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        await connection.execution_options(**{READ_ONLY_OPTION: True})
        current = await connection.run_sync(_current)
    if current != head:
        raise SchemaNotCurrent(
            f"the database schema is at revision {current or 'none'}, this release needs {head}: "
            "run `livechat db upgrade` with the same DATABASE_URL"
        )
