"""How every `livechat` command opens the database: through open_storage, once per command.

A command that only reads or changes data never creates a database: on SQLite, connecting to a
missing file would create an empty one (and the next command would then report a missing schema
instead of a missing database). Only `livechat db upgrade` creates it.

Database failures leave a command as one CommandFailed with an operator-readable reason, never a
traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from sqlalchemy.exc import SQLAlchemyError

from server.adapters.storage import DatabaseMissing, Storage, open_storage, require_existing_database
from server.config import Settings


class CommandFailed(Exception):
    """A command could not do its work; `reason` and `message` are what the CLI prints."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _missing(missing: DatabaseMissing, settings: Settings) -> CommandFailed:
    return CommandFailed(
        "DATABASE_MISSING",
        f"no database at {missing.path} (DATABASE_URL={settings.database_url}): run `livechat db upgrade` "
        "to create it, or set DATABASE_URL to the database `make run` or the server uses",
    )


def require_database(settings: Settings) -> None:
    """For `serve`, which opens storage itself: refuses a missing database file as the commands do."""
    try:
        require_existing_database(settings)
    except DatabaseMissing as missing:
        raise _missing(missing, settings) from None


@contextlib.asynccontextmanager
async def command_storage(
    settings: Settings, *, create: bool = False, command_timeout_s: float = 30.0
) -> AsyncIterator[Storage]:
    """Storage with one connection for one command, closed when the command ends."""
    try:
        storage = open_storage(settings, pool_size=1, command_timeout_s=command_timeout_s, create=create)
    except DatabaseMissing as missing:
        raise _missing(missing, settings) from None
    try:
        async with storage:
            yield storage
    except (SQLAlchemyError, OSError) as error:
        raise CommandFailed(*_database_error(error, storage.is_unavailable)) from error


def _database_error(error: BaseException, is_unavailable: Callable[[BaseException], bool]) -> tuple[str, str]:
    detail = str(getattr(error, "orig", None) or error).splitlines()[0]
    if "no such table" in detail or "does not exist" in detail:
        return (
            "SCHEMA_MISSING",
            f"the database at DATABASE_URL has no livechat schema ({detail}): run `livechat db upgrade`",
        )
    if is_unavailable(error):
        return "STORAGE_UNAVAILABLE", f"cannot reach the database: {detail}"
    return "DATABASE_ERROR", detail
