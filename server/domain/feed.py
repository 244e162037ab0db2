"""The live feed's rules: where a subscriber starts, and what a backlog may ask for.

A feed walks a stream's superlikes by position (server/domain/positions.py), the same order the
history shows. A subscriber starts right after a position: its cursor's, or the stream's last one
minus a backlog, or the stream's last one ("from now"); everything after it is delivered once, in order.
"""

from __future__ import annotations

from server.domain import errors

MAX_BACKLOG = 100


def resolve_backlog(requested: int) -> int:
    if not 0 <= requested <= MAX_BACKLOG:
        raise errors.InvalidBacklog()
    return requested


def start_after(last_position: int, backlog: int) -> int:
    """The position a subscriber without a cursor continues after: the last `backlog` superlikes
    (all of them when the stream has fewer) are delivered first."""
    return max(0, last_position - backlog)
