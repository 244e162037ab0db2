"""Where committed superlikes tell the live feed that a stream moved on.

A writer publishes, right after a batch commits, each stream's highest new position (stream id ->
position); the PostgreSQL listener publishes what other processes committed. Listeners are called
synchronously on the event loop and must not block: the feed's hub only records the position and
wakes its reader (server/services/feed_hub.py). A wake-up is a hint, never the data: the feed reads
the superlikes from the table by position.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

log = logging.getLogger(__name__)

Positions = Mapping[str, int]

# PostgreSQL's NOTIFY channel of committed batches (postgres/statements.py, postgres/feed_listener.py).
FEED_CHANNEL = "livechat_superlikes"


class StreamAdvances:
    def __init__(self) -> None:
        self._listeners: list[Callable[[Positions], None]] = []

    def subscribe(self, listener: Callable[[Positions], None]) -> Callable[[], None]:
        """Calls `listener` with every advance from now on, until the returned function is called."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, positions: Positions) -> None:
        if not positions:
            return
        for listener in self._listeners:
            try:
                listener(positions)
            except Exception:  # a listener's bug must not fail the write that already committed
                log.exception("stream advance listener failed")


def highest_positions(pairs: Iterable[tuple[str, int | None]]) -> dict[str, int]:
    """(stream id, position or None when not charged) -> each stream's highest position."""
    highest: dict[str, int] = {}
    for stream_id, position in pairs:
        if position is not None and position > highest.get(stream_id, 0):
            highest[stream_id] = int(position)
    return highest


def parse_wakeup(payload: str) -> dict[str, int]:
    """A NOTIFY payload "stream:position,stream:position" (malformed parts are skipped: it is only
    a hint)."""
    positions: dict[str, int] = {}
    for part in payload.split(","):
        stream_id, _, position = part.partition(":")
        if stream_id and position.isdigit():
            positions[stream_id] = max(positions.get(stream_id, 0), int(position))
    return positions
