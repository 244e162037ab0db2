"""Folding pending host credits into wallet balances: what both backends share.

A write of superlikes records what it owes each host as a `pending_credits` row (tables.py) instead of
updating the host's wallet row, so concurrent superlikes on one stream never wait for each other. Each
backend settles them (postgres/settlement.py, sqlite/settlement.py) so that the rows it deletes are
exactly the ones it adds: running it concurrently (several servers) or while superlikes commit can
neither lose nor double a credit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import text

log = logging.getLogger(__name__)

# A cheap read first (the queue holds only what is not settled yet): most ticks find nothing to do.
ANY_PENDING = text("SELECT EXISTS (SELECT 1 FROM pending_credits)")


async def settle_every(
    settle: Callable[[], Awaitable[int]],
    interval_seconds: float,
    on_settled: Callable[[int], None] | None = None,
) -> None:
    """Settles every `interval_seconds` until cancelled; database outages are retried quietly.
    `on_settled` is told how many credit entries each completed run applied (metrics)."""
    while True:
        try:
            applied = await settle()
            if on_settled is not None:
                on_settled(applied)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # an outage is reported by the health task; keep trying
            log.debug("settlement skipped: %s", error)
        await asyncio.sleep(interval_seconds)
