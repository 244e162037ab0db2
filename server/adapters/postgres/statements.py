"""PostgreSQL's superlike statements: a whole batch (distinct senders, see send_batcher.py) is ONE
statement, run in autocommit (a statement is atomic on its own), so a batch costs one round trip and
one commit. The requests arrive as parallel arrays; `n` keeps each one's place in the answer."""

from __future__ import annotations

from server.adapters.stream_advances import FEED_CHANNEL
from server.adapters.superlike_sql import (
    ADD_TO_SUPPORTER_TOTAL,
    FACTS_COLUMNS,
    LEDGER_COLUMNS,
    PENDING_CREDIT_COLUMNS,
    REQUEST_COLUMNS,
    SUPERLIKE_COLUMNS,
    SUPPORTER_COLUMNS,
    ledger_pair_values,
    refusal_sql,
    superlike_values,
)

# The requests and their facts, one row per request.
_REQUESTS_AND_FACTS = f"""
WITH p AS (
    SELECT * FROM unnest($1::varchar(24)[], $2::varchar(24)[], $3::varchar(255)[], $4::varchar(24)[],
                         $5::bigint[])
             WITH ORDINALITY AS p(sid, uid, idem, superlike_id, created_at_ms, n)
), ctx AS (
    -- One index lookup per request and table, whatever the tables' sizes and the planner's guess
    -- of the batch size (LIMIT 1 keeps each lookup a nested loop, not a join over whole tables).
    SELECT p.n, {REQUEST_COLUMNS},
           {FACTS_COLUMNS}
    FROM p
    LEFT JOIN LATERAL (SELECT * FROM live_streams WHERE id = p.sid LIMIT 1) s ON TRUE
    LEFT JOIN LATERAL (SELECT * FROM users WHERE id = p.uid LIMIT 1) u ON TRUE
    LEFT JOIN LATERAL (SELECT * FROM wallets WHERE user_id = p.uid LIMIT 1) w ON TRUE
    LEFT JOIN LATERAL (
        SELECT * FROM superlikes WHERE sender_id = p.uid AND idempotency_key = p.idem LIMIT 1
    ) k ON TRUE
)"""

_DEBIT_ENTRY, _CREDIT_ENTRY = ledger_pair_values(lambda name: name)

# The batch, step by step (each step feeds on the previous one: no debit -> no superlike -> no
# ledger entries):
#   ctx     the rules' facts, one row per request.
#   locked  the requests the rules allow (their SQL mirror, superlike_sql.refusal_sql) with an unused
#           key; their senders' wallets locked in user id order. Settlement locks in the same order,
#           so batches of several servers and settlement never wait for each other in a cycle.
#   debit   re-checks the balance on the latest row version (a concurrent debit may have committed
#           since the snapshot), so a balance never goes below zero.
#   streams the charged requests' streams, locked in id order after the wallets (every batch locks
#           in that order), and `positions` moves each one's last_position past its new superlikes.
#           The lock is held to the commit, so a stream's positions become visible in their order:
#           history pages and the live feed can walk them by key without skipping a late commit.
#   positioned  each charge with its position: its stream's base plus its rank in the batch.
#   superlike, ledger  the superlike rows and their two ledger entries.
#   pending     one pending_credits row per host: what the batch owes it (see tables.py).
#   supporters  each sender's running total on the stream (superlike_sql.ADD_TO_SUPPORTER_TOTAL):
#           one index probe per total. (An UPDATE of the totals that exist before an INSERT of the
#           rest saves ON CONFLICT's row lock, one WAL record per total, but probes twice for a new
#           one; it measured no less CPU on a hot stream and more on spread ones.)
#   wakeup  ONE notification per committed batch for the live feeds of every server process
#           (postgres/feed_listener.py): "stream:last_position,..." for the streams it advanced, at
#           most 128 x 36 bytes, well under NOTIFY's 8,000-byte limit. It is sent only if the
#           statement commits, and it is a hint: listeners read the superlikes from the table by
#           position. (NOTIFY serialises the commits of notifying transactions on a database-wide
#           lock, so there is never more than one per batch.) The final SELECT names it, because a
#           plain SELECT in WITH runs only as far as the outer query reads it.
# A concurrent request (another server) with the same idempotency key fails the unique index, which
# undoes the whole statement; the batch is then written again (superlikes.py). The host's credit
# waits in pending_credits until settlement (settlement.py): the host's wallet row is not locked, so
# superlikes on one hot stream do not queue behind each other.
SEND_BATCH_SQL = f"""{_REQUESTS_AND_FACTS}, locked AS (
    SELECT allowed.*
    FROM ctx AS allowed JOIN wallets ON wallets.user_id = allowed.sender_id
    WHERE allowed.prior_id IS NULL AND {refusal_sql("allowed")} IS NULL
    ORDER BY wallets.user_id
    FOR UPDATE OF wallets
), debit AS (
    UPDATE wallets SET balance = wallets.balance - locked.superlike_price
    FROM locked
    WHERE wallets.user_id = locked.sender_id
      AND wallets.balance >= locked.superlike_price
    RETURNING locked.*, wallets.balance AS balance_after
), streams AS (
    SELECT live_streams.id FROM live_streams
    WHERE live_streams.id IN (SELECT stream_id FROM debit)
    ORDER BY live_streams.id
    FOR UPDATE OF live_streams
), positions AS (
    UPDATE live_streams SET last_position = live_streams.last_position + charged.n_charged
    FROM (SELECT stream_id, count(*) AS n_charged FROM debit GROUP BY stream_id) AS charged
    WHERE live_streams.id = charged.stream_id AND live_streams.id IN (SELECT id FROM streams)
    RETURNING live_streams.id AS stream_id, live_streams.last_position - charged.n_charged AS base,
              live_streams.last_position
), positioned AS (
    SELECT debit.*,
           positions.base + row_number() OVER (PARTITION BY debit.stream_id ORDER BY debit.n) AS stream_position
    FROM debit JOIN positions ON positions.stream_id = debit.stream_id
), superlike AS (
    INSERT INTO superlikes ({SUPERLIKE_COLUMNS})
    SELECT {superlike_values(lambda name: name)}
    FROM positioned
), ledger AS (
    -- Every debit row is a superlike row of this statement, and foreign keys are checked when the
    -- statement ends, so the entries can come straight from `debit`.
    INSERT INTO ledger_entries ({LEDGER_COLUMNS})
    SELECT {_DEBIT_ENTRY} FROM debit
    UNION ALL
    SELECT {_CREDIT_ENTRY} FROM debit
), pending AS (
    INSERT INTO pending_credits ({PENDING_CREDIT_COLUMNS})
    SELECT host_id, SUM(superlike_price), COUNT(*) FROM debit GROUP BY host_id
), supporters AS (
    INSERT INTO stream_supporters ({SUPPORTER_COLUMNS})
    SELECT stream_id, sender_id, SUM(superlike_price), COUNT(*), MAX(stream_position)
    FROM positioned GROUP BY stream_id, sender_id
    {ADD_TO_SUPPORTER_TOTAL}
), wakeup AS (
    SELECT pg_notify('{FEED_CHANNEL}', string_agg(stream_id || ':' || last_position, ',')) AS sent
    FROM positions
    HAVING count(*) > 0
)
SELECT ctx.*, positioned.balance_after, positioned.stream_position, (SELECT count(*) FROM wakeup) AS wakeups
FROM ctx LEFT JOIN positioned ON positioned.n = ctx.n
ORDER BY ctx.n
"""

# The facts alone, read again for requests whose debit found the coins already spent: a fresh
# snapshot tells whether that spender was another server's request with the same key.
READ_FACTS_SQL = f"""{_REQUESTS_AND_FACTS}
SELECT ctx.*, NULL::bigint AS balance_after, NULL::bigint AS stream_position FROM ctx ORDER BY ctx.n
"""
