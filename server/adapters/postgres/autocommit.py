"""One fixed statement in autocommit on a pooled connection, straight on the asyncpg driver, with
its failures told apart: not sent (StorageUnavailable), or sent and unanswered (OutcomeUnknown)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.postgres.failures import failed_before_sending, is_unavailable
from server.domain.errors import OutcomeUnknown, StorageUnavailable

log = logging.getLogger(__name__)


async def fetch_autocommit(engine: AsyncEngine, sql: str, args: tuple[Any, ...]) -> list[asyncpg.Record]:
    """Runs `sql` once: SQLAlchemy's execution and result layers add CPU and nothing a fixed
    statement needs. The database's own refusals (asyncpg.PostgresError) reach the caller as they
    are; in autocommit they wrote nothing."""
    # A database restart leaves every pooled connection dead; each refuses before sending, so trying
    # the next one (up to a fresh connection) is safe and costs no round trip.
    passes = engine.sync_engine.pool.size() + 1
    for pass_number in range(1, passes + 1):
        try:
            connection = await engine.connect()
        except Exception as error:
            if is_unavailable(error):
                log.warning("database unavailable: %s", error)
                raise StorageUnavailable() from error
            raise
        try:
            driver = (await connection.get_raw_connection()).driver_connection
            return await driver.fetch(sql, *args)
        except asyncio.CancelledError:
            # Cancelled mid-statement (shutdown): the connection's state is unknown, so it must not
            # go back to the pool.
            await connection.invalidate()
            raise
        except Exception as error:
            if not is_unavailable(error):
                raise
            await connection.invalidate()  # the pool must not hand this connection out again
            if failed_before_sending(error):
                if pass_number < passes:
                    continue  # it died while pooled; the statement never left, so try another
                raise StorageUnavailable() from error
            # Once the statement was sent, a broken connection may have lost the answer to a commit:
            # saying "nothing changed" then could make a client pay twice.
            log.warning("connection lost with a statement in flight: %s", error)
            raise OutcomeUnknown() from error
        finally:
            await connection.close()
    raise AssertionError("unreachable")
