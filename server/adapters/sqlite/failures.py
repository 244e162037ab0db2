"""How SQLite failures are classified: only a few of its OperationalErrors mean "cannot serve now"."""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc

from server.adapters.failures import is_connectivity_failure

# SQLite reports bugs (no such table, syntax) as OperationalError too; only these mean "the database
# cannot serve right now".
_TRANSIENT = ("database is locked", "unable to open", "disk i/o error", "database or disk is full")


def is_sqlite_error(error: BaseException) -> bool:
    return isinstance(error, sqlite3.Error) or (
        isinstance(error, exc.DBAPIError) and isinstance(error.orig, sqlite3.Error)
    )


def is_unavailable(error: BaseException) -> bool:
    """True when SQLite cannot serve right now (locked too long, file unreachable, disk full)."""
    if isinstance(error, sqlite3.Error):  # the write path runs on the driver directly
        return _transient(error)
    if isinstance(error, exc.DBAPIError) and isinstance(error.orig, sqlite3.Error):
        return error.connection_invalidated or _transient(error.orig)
    return is_connectivity_failure(error)


def _transient(error: sqlite3.Error) -> bool:
    message = str(error).lower()
    return any(transient in message for transient in _TRANSIENT)
