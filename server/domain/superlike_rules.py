"""The rules of sending a superlike, stated once.

The database enforces them atomically with the write through an SQL mirror of `refusal`
(server/adapters/superlike_sql.py, `REFUSAL_SQL`); tests/integration/test_rule_mirror.py runs random
states through both, on SQLite and PostgreSQL, and requires the same verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.domain import errors
from server.domain.superlike import SenderSnapshot, StreamState


@dataclass(frozen=True, slots=True)
class SuperlikeFacts:
    """What the rules decide on, read in one go. `None` fields mean "does not exist"."""

    stream_host_id: str | None
    stream_state: StreamState | None
    stream_price: int | None
    sender: SenderSnapshot | None
    sender_balance: int | None
    sender_banned: bool


def refusal(facts: SuperlikeFacts) -> type[errors.DomainError] | None:
    """The first rule, in the contract's order, that refuses a superlike on these facts; None when
    the superlike is allowed (its price is then `facts.stream_price`)."""
    if facts.stream_host_id is None or facts.stream_state is None or facts.stream_price is None:
        return errors.StreamNotFound
    if facts.sender is None or facts.sender_balance is None:
        return errors.SenderNotFound
    if facts.stream_host_id == facts.sender.user_id:
        return errors.SenderIsHost
    if facts.sender_banned:
        return errors.SenderBanned
    if facts.stream_state is not StreamState.LIVE:
        return errors.StreamNotLive
    if facts.sender_balance < facts.stream_price:
        return errors.InsufficientBalance
    return None
