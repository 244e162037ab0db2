"""Rows of the facts statements (superlike_sql.py) as domain values, for both backends. A row is any
mapping by column name: an asyncpg Record or a dict from SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.domain.history import FeedBatch, HistoryPage, PostedSuperlike, SupporterTotal
from server.domain.superlike import SenderSnapshot, StreamState, Superlike
from server.domain.superlike_rules import SuperlikeFacts

_PROFILE_COLUMNS = ("username", "name", "surname", "profile_photo")
# Column names by prefix, spelled once: rows are read for every superlike written or shown.
_PREFIXED_PROFILE_COLUMNS = {
    prefix: tuple(prefix + column for column in _PROFILE_COLUMNS) for prefix in ("", "prior_", "sender_")
}


def _snapshot(row: Any, user_id: str, prefix: str = "") -> SenderSnapshot:
    """A profile from the row's `<prefix>username`, `<prefix>name`, ... columns (the statements name
    a live profile's columns plainly, a stored snapshot's with its table's prefix)."""
    username, name, surname, profile_photo = _PREFIXED_PROFILE_COLUMNS[prefix]
    return SenderSnapshot(user_id, row[username], row[name], row[surname], row[profile_photo])


def facts_from_row(row: Any) -> SuperlikeFacts:
    sender = _snapshot(row, row["sender_id"]) if row["sender_id"] is not None else None
    return SuperlikeFacts(
        stream_host_id=row["host_id"],
        stream_state=StreamState(row["state"]) if row["state"] is not None else None,
        stream_price=row["superlike_price"],
        sender=sender,
        sender_balance=row["balance"],
        sender_banned=bool(row["banned"]),
    )


def prior_from_row(row: Any, sender_id: str) -> Superlike | None:
    """The superlike already stored under the request's key, if any."""
    if row["prior_id"] is None:
        return None
    return Superlike(
        superlike_id=row["prior_id"],
        stream_id=row["prior_stream_id"],
        sender=_snapshot(row, sender_id, "prior_"),
        price=row["prior_price"],
        created_at_ms=row["prior_created_at_ms"],
        sender_balance_after=row["prior_balance_after"],
    )


def charged_from_row(row: Any) -> Superlike:
    """The superlike a charge just stored, from its facts row with the debit's `balance_after`: the
    sender's live profile and the stream's price as the facts read them (the rules' facts themselves
    are only needed to refuse)."""
    return Superlike(
        superlike_id=row["superlike_id"],
        stream_id=row["stream_id"],
        sender=_snapshot(row, row["sender_id"]),
        price=row["superlike_price"],
        created_at_ms=row["created_at_ms"],
        sender_balance_after=int(row["balance_after"]),
    )


def posted_from_row(row: Any) -> PostedSuperlike:
    """A superlike of history_sql.POSTED_COLUMNS."""
    return PostedSuperlike(
        superlike_id=row["superlike_id"],
        stream_id=row["stream_id"],
        sender=_snapshot(row, row["sender_id"], "sender_"),
        price=int(row["price"]),
        created_at_ms=int(row["created_at_ms"]),
        position=int(row["stream_position"]),
    )


def supporter_from_row(row: Any) -> SupporterTotal:
    return SupporterTotal(
        sender=_snapshot(row, row["sender_id"]),
        coins=int(row["coins"]),
        superlikes=int(row["superlikes"]),
        reached_at_position=int(row["reached_at_position"]),
    )


def history_page(rows: Sequence[Any], limit: int) -> HistoryPage | None:
    """page_sql's rows (asked for limit + 1) as a page; None when the stream does not exist."""
    if not rows:
        return None
    posted = [posted_from_row(row) for row in rows if row["superlike_id"] is not None]
    return HistoryPage(superlikes=posted[:limit], has_more=len(posted) > limit)


def feed_batch(rows: Sequence[Any]) -> FeedBatch | None:
    """after_sql's rows; None when the stream does not exist."""
    if not rows:
        return None
    posted = [posted_from_row(row) for row in rows if row["superlike_id"] is not None]
    return FeedBatch(superlikes=posted, last_position=int(rows[0]["last_position"]))


def supporter_totals(rows: Sequence[Any]) -> list[SupporterTotal] | None:
    """top_supporters_sql's rows; None when the stream does not exist."""
    if not rows:
        return None
    return [supporter_from_row(row) for row in rows if row["sender_id"] is not None]
