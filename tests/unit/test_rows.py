"""Rows of the facts statements as domain values: a charged row becomes its superlike with the
sender's profile and the stream's price as the facts read them."""

from __future__ import annotations

from server.adapters.rows import charged_from_row, facts_from_row
from server.domain.superlike import Superlike

CHARGED_ROW = {
    "n": 1,
    "host_id": "5f1c8d2e8c7e4f739a593c3c",
    "state": "live",
    "superlike_price": 7,
    "sender_id": "4f1c8d2e8c7e4f739a593c3c",
    "username": "jane",
    "name": "Jane",
    "surname": "Doe",
    "profile_photo": "jane.jpg",
    "balance": 100,
    "banned": False,
    "prior_id": None,
    "superlike_id": "6f1c8d2e8c7e4f739a593c3c",
    "stream_id": "7f1c8d2e8c7e4f739a593c3c",
    "created_at_ms": 1_700_000_000_123,
    "balance_after": 93,
}


def test_a_charged_row_makes_its_superlike_from_the_profile_and_price_its_facts_read() -> None:
    facts = facts_from_row(CHARGED_ROW)
    assert charged_from_row(CHARGED_ROW) == Superlike(
        superlike_id="6f1c8d2e8c7e4f739a593c3c",
        stream_id="7f1c8d2e8c7e4f739a593c3c",
        sender=facts.sender,
        price=facts.stream_price,
        created_at_ms=1_700_000_000_123,
        sender_balance_after=93,
    )
    assert (facts.sender.username, facts.stream_price) == ("jane", 7)
