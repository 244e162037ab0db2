"""SQL text both backends write superlikes with: the rules' facts, the rules' SQL mirror, and the
column lists of the rows a superlike writes. Plain strings, composed once at import: the hot path
builds no statements.

Every statement reads its requests from a relation `p` with columns (sid, uid, idem, superlike_id,
created_at_ms), one row per request; each backend builds `p` its own way.
"""

from __future__ import annotations

from collections.abc import Callable

from server.domain import errors
from server.domain.superlike import StreamState

# A request's own values, under the names the statements below use for them.
REQUEST_COLUMNS = "p.superlike_id, p.created_at_ms, p.idem, p.sid AS stream_id"

# The rules' facts, one row per request: the stream, the sender's profile, balance and ban, and any
# superlike already stored under the request's idempotency key (`prior_*`). Joined from `p` to
# aliases s (live_streams), u (users), w (wallets), k (superlikes), each optional, so a missing row
# reads as NULL rather than as no row.
FACTS_COLUMNS = """s.host_id, s.state, s.superlike_price,
           u.id AS sender_id, u.username, u.name, u.surname, u.profile_photo,
           w.balance,
           EXISTS (SELECT 1 FROM chat_bans b WHERE b.stream_id = p.sid AND b.user_id = p.uid) AS banned,
           k.id AS prior_id, k.stream_id AS prior_stream_id, k.sender_username AS prior_username,
           k.sender_name AS prior_name, k.sender_surname AS prior_surname,
           k.sender_profile_photo AS prior_profile_photo, k.price AS prior_price,
           k.created_at_ms AS prior_created_at_ms, k.sender_balance_after AS prior_balance_after"""


def refusal_sql(facts: str) -> str:
    """The SQL mirror of server.domain.superlike_rules.refusal, over a row `facts` with the columns
    above: the reason of the first rule that refuses, in the same order, or NULL when the superlike
    is allowed. Valid on SQLite and PostgreSQL alike; tests/integration/test_rule_mirror.py holds it
    to the Python rules on both."""
    return f"""CASE
        WHEN {facts}.host_id IS NULL OR {facts}.state IS NULL OR {facts}.superlike_price IS NULL
            THEN '{errors.StreamNotFound.reason}'
        WHEN {facts}.sender_id IS NULL OR {facts}.balance IS NULL THEN '{errors.SenderNotFound.reason}'
        WHEN {facts}.host_id = {facts}.sender_id THEN '{errors.SenderIsHost.reason}'
        WHEN {facts}.banned THEN '{errors.SenderBanned.reason}'
        WHEN {facts}.state <> '{StreamState.LIVE.value}' THEN '{errors.StreamNotLive.reason}'
        WHEN {facts}.balance < {facts}.superlike_price THEN '{errors.InsufficientBalance.reason}'
    END"""


# The rows a charge writes, each column paired with the name its value goes by in the statements
# (a column of the facts row, or balance_after from the debit).
_SUPERLIKE_VALUES = {
    "id": "superlike_id",
    "stream_id": "stream_id",
    "sender_id": "sender_id",
    "sender_username": "username",
    "sender_name": "name",
    "sender_surname": "surname",
    "sender_profile_photo": "profile_photo",
    "price": "superlike_price",
    "sender_balance_after": "balance_after",
    "created_at_ms": "created_at_ms",
    "idempotency_key": "idem",
    "stream_position": "stream_position",
}
SUPERLIKE_COLUMNS = ", ".join(_SUPERLIKE_VALUES)
LEDGER_COLUMNS = "user_id, amount, kind, superlike_id, created_at_ms"
SUPPORTER_COLUMNS = "stream_id, sender_id, coins, superlikes, reached_at_position"
PENDING_CREDIT_COLUMNS = "user_id, amount, entries"

# A sender's running total on a stream grows by what one write charged them there. Each sender has
# at most one request per batch (send_batcher.py), so a batch writes each supporter row once.
ADD_TO_SUPPORTER_TOTAL = """ON CONFLICT (stream_id, sender_id) DO UPDATE SET
        coins = stream_supporters.coins + excluded.coins,
        superlikes = stream_supporters.superlikes + excluded.superlikes,
        reached_at_position = excluded.reached_at_position"""

# How a statement refers to a named value: a column as is (PostgreSQL, from a CTE), or a `:name`
# parameter (SQLite).
ValueRef = Callable[[str], str]


def superlike_values(ref: ValueRef) -> str:
    """The values of SUPERLIKE_COLUMNS, in order."""
    return ", ".join(ref(name) for name in _SUPERLIKE_VALUES.values())


def ledger_pair_values(ref: ValueRef) -> tuple[str, str]:
    """The values of LEDGER_COLUMNS for a superlike's two entries: the sender's debit, and the host's
    credit, which reaches the host's wallet through pending_credits (see tables.py)."""
    price, superlike, at = ref("superlike_price"), ref("superlike_id"), ref("created_at_ms")
    return (
        f"{ref('sender_id')}, -CAST({price} AS BIGINT), 'superlike_debit', {superlike}, {at}",
        f"{ref('host_id')}, CAST({price} AS BIGINT), 'superlike_credit', {superlike}, {at}",
    )
