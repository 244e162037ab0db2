"""Schema migrations (Alembic), run programmatically through a Storage (`upgrade`, `check_schema`)
by `livechat db upgrade`, the server, tests and the local stack."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.execution_options import READ_ONLY_OPTION

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


class ForeignKeyViolation(Exception):
    """A migration left rows that reference missing rows; it was rolled back."""


def run_upgrade(connection: Connection, revision: str = "head") -> None:
    """Migrates up to `revision` on the caller's connection, inside the caller's transaction
    (Storage.upgrade opens one the way its database needs)."""
    command.upgrade(_on_connection(connection), revision)


def run_downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(_on_connection(connection), revision)


def _on_connection(connection: Connection) -> Config:
    """Alembic's configuration, running its migrations on `connection` (migrations/env.py)."""
    config = alembic_config()
    config.attributes["connection"] = connection
    return config


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
