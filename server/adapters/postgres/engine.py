"""The PostgreSQL engine: an asyncpg pool sized by the settings, with timeouts that fail fast."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

LOCK_TIMEOUT_MS = 2000


def create_postgres_engine(
    url: str, *, pool_size: int, connect_timeout_s: float, command_timeout_s: float
) -> AsyncEngine:
    """`url` as people paste it (postgres:// or postgresql://, any driver named): asyncpg is used."""
    return create_async_engine(
        make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False),
        pool_size=pool_size,
        max_overflow=0,
        # A request waits at most this long for a connection, then fails as UNAVAILABLE: a saturated
        # pool must not turn into requests hanging past their deadline.
        pool_timeout=connect_timeout_s,
        # Connections broken by a database restart are detected on use and replaced; a pre-ping per
        # checkout would add a round trip to every superlike.
        pool_pre_ping=False,
        connect_args={
            "timeout": connect_timeout_s,
            "command_timeout": command_timeout_s,
            "server_settings": {
                "application_name": "livechat",
                # A row held locked elsewhere (an open admin transaction, a stuck session) must not
                # stall a whole batch of superlikes: the statement gives up and the batch is
                # written again without waiting on anyone else's lock (superlikes.py).
                "lock_timeout": str(LOCK_TIMEOUT_MS),
            },
        },
    )
