"""The live feed's wake-ups from every server process on one PostgreSQL: a dedicated connection
that LISTENs to the batch statement's one NOTIFY per committed batch (statements.py).

A listening connection that drops loses the notifications sent meanwhile, and a half-open one
would never say so: the connection is probed while idle, and after every (re)connect `on_resync`
makes the feed read every followed stream again. Wake-ups are hints; the feed reads the superlikes
from the table by position.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from server.adapters.stream_advances import FEED_CHANNEL, StreamAdvances, parse_wakeup

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 3.0
MAX_BACKOFF_SECONDS = 5.0


class FeedListener:
    def __init__(self, url: str, advances: StreamAdvances, *, connect_timeout_s: float) -> None:
        # asyncpg takes a libpq-style DSN: the URL without SQLAlchemy's driver suffix.
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._advances = advances
        self._connect_timeout_s = connect_timeout_s

    async def run(self, on_resync: Callable[[], None]) -> None:
        """Listens until cancelled, reconnecting with backoff."""
        backoff = 0.2
        while True:
            try:
                await self._listen_once(on_resync)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("live feed listener disconnected (%s); reconnecting in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _listen_once(self, on_resync: Callable[[], None]) -> None:
        connection = await asyncpg.connect(
            self._dsn, timeout=self._connect_timeout_s, server_settings={"application_name": "livechat-feed"}
        )
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(FEED_CHANNEL, self._on_notification)
            on_resync()  # anything committed while nobody listened
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), PROBE_INTERVAL_SECONDS)
                except TimeoutError:
                    await asyncio.wait_for(connection.fetchval("SELECT 1"), PROBE_TIMEOUT_SECONDS)
            raise ConnectionError("listening connection closed")
        finally:
            connection.terminate()

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._advances.publish(parse_wakeup(payload))
