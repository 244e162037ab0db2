"""SQL text both backends read superlikes back with. Plain strings composed once at import; each
backend names its parameters its own way (`:name` on SQLite, `$n` on PostgreSQL) through `ref`.

Each statement starts from the stream's row, so one round trip also tells "no such stream" (no rows)
from "nothing yet" (one row whose superlike columns are NULL).
"""

from __future__ import annotations

from collections.abc import Callable

ParamRef = Callable[[str], str]

# A superlike as the history shows it, from the superlikes table aliased `k`; never a balance.
POSTED_COLUMNS = """k.id AS superlike_id, k.stream_id, k.sender_id, k.sender_username, k.sender_name,
       k.sender_surname, k.sender_profile_photo, k.price, k.created_at_ms, k.stream_position"""


def page_sql(ref: ParamRef) -> str:
    """The stream's superlikes below position `before`, newest first, at most `limit` (the stream's
    unique (stream_id, stream_position) index, walked backwards: a deep page costs what the first
    does)."""
    return f"""
SELECT s.id AS found, page.*
FROM live_streams s
LEFT JOIN (
    SELECT {POSTED_COLUMNS}
    FROM superlikes k
    WHERE k.stream_id = {ref("stream_id")} AND k.stream_position < {ref("before")}
    ORDER BY k.stream_position DESC
    LIMIT {ref("limit")}
) AS page ON TRUE
WHERE s.id = {ref("stream_id")}
ORDER BY page.stream_position DESC
"""


def after_sql(ref: ParamRef) -> str:
    """The stream's superlikes above position `after`, oldest first, at most `limit`: what a feed
    subscriber has not seen yet."""
    return f"""
SELECT s.id AS found, s.last_position, batch.*
FROM live_streams s
LEFT JOIN (
    SELECT {POSTED_COLUMNS}
    FROM superlikes k
    WHERE k.stream_id = {ref("stream_id")} AND k.stream_position > {ref("after")}
    ORDER BY k.stream_position
    LIMIT {ref("limit")}
) AS batch ON TRUE
WHERE s.id = {ref("stream_id")}
ORDER BY batch.stream_position
"""


def top_supporters_sql(ref: ParamRef) -> str:
    """The stream's supporters by total, highest first, ties to whoever got there first; each with
    the sender's current profile. Reads the running totals the write path keeps, never the history."""
    return f"""
SELECT s.id AS found, top.*
FROM live_streams s
LEFT JOIN (
    SELECT t.sender_id, u.username, u.name, u.surname, u.profile_photo,
           t.coins, t.superlikes, t.reached_at_position
    FROM stream_supporters t JOIN users u ON u.id = t.sender_id
    WHERE t.stream_id = {ref("stream_id")}
    ORDER BY t.coins DESC, t.reached_at_position
    LIMIT {ref("limit")}
) AS top ON TRUE
WHERE s.id = {ref("stream_id")}
ORDER BY top.coins DESC, top.reached_at_position
"""


POSITION_KEY_SQL = "SELECT secret FROM service_keys WHERE name = 'stream_positions'"
