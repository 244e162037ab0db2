"""Rows of the facts statements as domain values: the shortcut for a charged row makes the same
superlike as the facts do."""

from __future__ import annotations

from server.adapters.rows import charged_from_row, facts_from_row, new_superlike

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


def test_a_charged_row_makes_the_superlike_its_facts_make() -> None:
    from_facts = new_superlike(CHARGED_ROW, facts_from_row(CHARGED_ROW), 93)
    assert charged_from_row(CHARGED_ROW) == from_facts
    assert (from_facts.sender.username, from_facts.price, from_facts.sender_balance_after) == ("jane", 7, 93)
