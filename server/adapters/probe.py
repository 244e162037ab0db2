"""A cheap liveness probe of the database, for the health service."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.database import READ_ONLY_OPTION

log = logging.getLogger(__name__)

_PING = text("SELECT 1")


async def database_reachable(engine: AsyncEngine, timeout_seconds: float = 2.0) -> bool:
    try:
        async with asyncio.timeout(timeout_seconds):
            async with engine.connect() as connection:
                await connection.execution_options(**{READ_ONLY_OPTION: True})
                await connection.execute(_PING)
        return True
    except Exception as error:  # any failure means "not serving"; the reason goes to the log
        log.debug("database probe failed: %s", error)
        return False
