"""Transitional: the names server/adapters/admin_repository.py and server/cli.py still import from
before storage was opened in one place. New code opens storage with
server.adapters.storage.open_storage; this module goes once those two do too."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.execution_options import READ_ONLY_OPTION
from server.adapters.postgres import failures as postgres_failures
from server.adapters.sqlite import failures as sqlite_failures
from server.adapters.storage import open_engine as create_engine

__all__ = ["READ_ONLY_OPTION", "create_engine", "is_sqlite", "is_unavailable"]


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def is_unavailable(error: BaseException) -> bool:
    if sqlite_failures.is_sqlite_error(error):
        return sqlite_failures.is_unavailable(error)
    return postgres_failures.is_unavailable(error)
