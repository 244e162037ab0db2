"""The superlike rules are stated once in Python (server/domain/superlike_rules.py) and enforced in
the database by their SQL mirror (server/adapters/superlike_sql.py): on random stream, sender and
wallet states, both give the same verdict, on SQLite and on PostgreSQL."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from server.adapters.storage import Storage
from server.adapters.superlike_sql import refusal_sql
from server.domain.clock import now_ms
from server.domain.ids import new_object_id
from server.domain.send_outcome import Charged, Refused
from server.domain.streams import MIN_SUPERLIKE_PRICE
from server.domain.superlike import SenderSnapshot, StreamState, SuperlikeRequest
from server.domain.superlike_rules import SuperlikeFacts, refusal
from tests.support import as_operator, create_stream, create_user, unique_name

HOST = "a" * 24
SENDER = "b" * 24
bounded = settings(max_examples=60, derandomize=True, deadline=None)

_MIRROR_ON_LITERAL_FACTS = text(f"""
SELECT {refusal_sql("facts")} AS refusal FROM (
    SELECT CAST(:host_id AS VARCHAR(24)) AS host_id, CAST(:state AS VARCHAR(16)) AS state,
           CAST(:superlike_price AS INTEGER) AS superlike_price, CAST(:sender_id AS VARCHAR(24)) AS sender_id,
           CAST(:balance AS BIGINT) AS balance, CAST(:banned AS BOOLEAN) AS banned
) AS facts
""")


def mostly(value: object, otherwise: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly `value`: an early refusal decides the verdict at once, so the later rules need the
    earlier ones to pass."""
    return st.one_of(st.just(value), st.just(value), st.just(value), otherwise)


@st.composite
def balances_around(draw: st.DrawFn, price: int) -> int:
    """Balances near the price (one coin short, exact, one more) as often as anywhere else."""
    return draw(st.one_of(st.integers(max(price - 2, 0), price + 2), st.integers(0, 30)))


@st.composite
def any_facts(draw: st.DrawFn) -> SuperlikeFacts:
    price = draw(mostly(10, st.one_of(st.none(), st.integers(MIN_SUPERLIKE_PRICE, 20))))
    return SuperlikeFacts(
        stream_host_id=draw(mostly(HOST, st.sampled_from([None, SENDER]))),
        stream_state=draw(st.sampled_from([None, *StreamState, StreamState.LIVE])),
        stream_price=price,
        sender=draw(mostly(SenderSnapshot(SENDER, "u", "n", "s", "p.jpg"), st.none())),
        sender_balance=draw(st.one_of(st.none(), *[balances_around(price or 0)] * 3)),
        sender_banned=draw(st.booleans()),
    )


@settings(max_examples=500, derandomize=True, deadline=None)
@given(facts=any_facts())
async def test_the_sql_mirror_refuses_for_the_same_reason_as_the_python_rules(
    storage: Storage, facts: SuperlikeFacts
) -> None:
    params = {
        "host_id": facts.stream_host_id,
        "state": facts.stream_state.value if facts.stream_state is not None else None,
        "superlike_price": facts.stream_price,
        "sender_id": facts.sender.user_id if facts.sender is not None else None,
        "balance": facts.sender_balance,
        "banned": facts.sender_banned,
    }
    sql_reason = await storage.read_snapshot(
        lambda connection: connection.execute(_MIRROR_ON_LITERAL_FACTS, params).scalar_one()
    )
    python_refusal = refusal(facts)
    assert sql_reason == (python_refusal.reason if python_refusal is not None else None)


@st.composite
def worlds(draw: st.DrawFn) -> dict:
    price = draw(st.integers(MIN_SUPERLIKE_PRICE, 20))
    return {
        "stream_exists": draw(mostly(True, st.just(False))),
        "state": draw(mostly(StreamState.LIVE, st.sampled_from([StreamState.SCHEDULED, StreamState.ENDED]))),
        "price": price,
        "sender_exists": draw(mostly(True, st.just(False))),
        "sender_is_host": draw(mostly(False, st.just(True))),
        "banned": draw(mostly(False, st.just(True))),
        "balance": draw(balances_around(price)),
    }


@bounded
@given(world=worlds())
async def test_the_database_charges_exactly_when_the_python_rules_allow(storage: Storage, world: dict) -> None:
    """The real write path (PostgreSQL's batch statement, SQLite's transaction) on real rows."""
    stream_exists, state, price = world["stream_exists"], world["state"], world["price"]
    sender_exists, banned, balance = world["sender_exists"], world["banned"], world["balance"]
    sender_is_host = world["sender_is_host"] and sender_exists and stream_exists
    host = await create_user(storage, coins=balance if sender_is_host else 0)
    sender = host if sender_is_host else await create_user(storage, coins=balance) if sender_exists else None
    sender_id = sender["id"] if sender is not None else new_object_id(now_ms())
    stream_id = new_object_id(now_ms())
    if stream_exists:
        stream_id = (await create_stream(storage, host["id"], price=price, state=state))["id"]
        if banned and sender is not None:
            await as_operator(storage, lambda admin: admin.ban(stream_id, sender_id))
    facts = SuperlikeFacts(
        stream_host_id=host["id"] if stream_exists else None,
        stream_state=state if stream_exists else None,
        stream_price=price if stream_exists else None,
        sender=SenderSnapshot(sender_id, sender["username"], "Jane", "Doe", "jane.jpg") if sender else None,
        sender_balance=balance if sender is not None else None,
        sender_banned=banned and stream_exists and sender is not None,
    )

    request = SuperlikeRequest(stream_id, sender_id, unique_name("mirror"))
    created_at_ms = now_ms()
    outcome = await storage.new_superlike_writer().send(request, new_object_id(created_at_ms), created_at_ms)

    expected = refusal(facts)
    if expected is None:
        assert isinstance(outcome, Charged)
        assert (outcome.superlike.price, outcome.superlike.sender_balance_after) == (price, balance - price)
    else:
        assert isinstance(outcome, Refused)
        assert outcome.facts == facts
        assert outcome.error().reason == expected.reason
