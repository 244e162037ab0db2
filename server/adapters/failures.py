"""Failures that mean "the database cannot serve right now" whatever the backend; each backend's
failures.py adds its driver's own (postgres/failures.py, sqlite/failures.py)."""

from __future__ import annotations

import asyncio

from sqlalchemy import exc


def is_connectivity_failure(error: BaseException) -> bool:
    """True when the failure is the database being unreachable or overloaded, not a bug of ours."""
    if isinstance(error, exc.TimeoutError | OSError | asyncio.TimeoutError | ConnectionError):
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, exc.OperationalError | exc.InterfaceError):
            return True
        return isinstance(error.orig, OSError | ConnectionError | asyncio.TimeoutError)
    return False
