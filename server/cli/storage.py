"""How every `livechat` command opens the database: one place, one engine per command.

A command that only reads or changes data never creates a database: on SQLite, connecting to a
missing file would create an empty one (and the next command would then report a missing schema
instead of a missing database). Only `livechat db upgrade` creates the file.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.database import create_engine
from server.config import Settings


class DatabaseMissing(Exception):
    """DATABASE_URL names a SQLite file that does not exist."""

    reason = "DATABASE_MISSING"


def sqlite_file(database_url: str) -> Path | None:
    """The file a sqlite:// URL names; None for other databases and in-memory SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def require_existing_database(settings: Settings) -> None:
    path = sqlite_file(settings.database_url)
    if path is not None and not path.is_file():
        raise DatabaseMissing(
            f"no database at {path} (DATABASE_URL={settings.database_url}): run `livechat db upgrade` "
            "to create it, or set DATABASE_URL to the database `make run` or the server uses"
        )


def open_engine(settings: Settings, *, create: bool = False, command_timeout_s: float = 30.0) -> AsyncEngine:
    """An engine with one connection for one command; the caller disposes it."""
    path = sqlite_file(settings.database_url)
    if create and path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if not create:
        require_existing_database(settings)
    return create_engine(settings.database_url, pool_size=1, command_timeout_s=command_timeout_s)
