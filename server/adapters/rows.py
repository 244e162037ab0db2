"""Rows of the facts statements (superlike_sql.py) as domain values, for both backends. A row is any
mapping by column name: an asyncpg Record or a dict from SQLite."""

from __future__ import annotations

from typing import Any

from server.domain.superlike import SenderSnapshot, StreamState, Superlike
from server.domain.superlike_rules import SuperlikeFacts


def facts_from_row(row: Any) -> SuperlikeFacts:
    sender = None
    if row["sender_id"] is not None:
        sender = SenderSnapshot(
            user_id=row["sender_id"],
            username=row["username"],
            name=row["name"],
            surname=row["surname"],
            profile_photo=row["profile_photo"],
        )
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
        sender=SenderSnapshot(
            user_id=sender_id,
            username=row["prior_username"],
            name=row["prior_name"],
            surname=row["prior_surname"],
            profile_photo=row["prior_profile_photo"],
        ),
        price=row["prior_price"],
        created_at_ms=row["prior_created_at_ms"],
        sender_balance_after=row["prior_balance_after"],
    )


def new_superlike(row: Any, facts: SuperlikeFacts, balance_after: int) -> Superlike:
    """The superlike a charge just stored, from its facts row."""
    assert facts.sender is not None and facts.stream_price is not None
    return Superlike(
        superlike_id=row["superlike_id"],
        stream_id=row["stream_id"],
        sender=facts.sender,
        price=facts.stream_price,
        created_at_ms=row["created_at_ms"],
        sender_balance_after=balance_after,
    )
