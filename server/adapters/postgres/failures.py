"""How PostgreSQL (asyncpg) failures are classified: unreachable, never sent, busy, key taken."""

from __future__ import annotations

import asyncpg

from server.adapters.failures import is_connectivity_failure

# The unique index that serialises requests sharing an idempotency key (tables.py).
KEY_CONSTRAINT = "uq_superlikes_sender_key"

# Refusals that say "busy, try again" rather than "wrong": nothing was written.
BUSY_ERRORS = (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError)


def is_unavailable(error: BaseException) -> bool:
    """True when PostgreSQL is unreachable or overloaded, not a bug of ours."""
    # Raised by the driver itself on the hot path, which bypasses SQLAlchemy's wrapping. Other
    # InterfaceErrors (bad parameters, misuse) are bugs and must surface as such.
    if isinstance(error, asyncpg.PostgresConnectionError | asyncpg.exceptions.OperatorInterventionError):
        return True
    if isinstance(error, asyncpg.InterfaceError):
        return "closed" in str(error)
    return is_connectivity_failure(error)


def failed_before_sending(error: BaseException) -> bool:
    """True when the driver refused to send the statement because the connection was already closed
    (asyncpg's client-side InterfaceError): the database never saw it, so nothing can have changed."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, asyncpg.exceptions.InterfaceError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_key_taken(error: asyncpg.PostgresError) -> bool:
    """Another request with the same idempotency key committed first."""
    return isinstance(error, asyncpg.UniqueViolationError) and error.constraint_name == KEY_CONSTRAINT
