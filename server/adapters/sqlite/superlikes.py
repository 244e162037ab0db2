"""Superlikes on SQLite: batches (send_batcher.py), each one BEGIN IMMEDIATE transaction run as a
single call on the SQLite thread (worker.py): one commit, and one WAL sync, per batch.

Inside the transaction each request is two statements (its facts, its debit) run on the driver's own
cursor (sqlite3 takes these `:name` parameters as they are): through SQLAlchemy's execution and
result layers they cost several times what SQLite itself spends. The rows the charges write (the
superlikes, their ledger entries) and what a batch adds to each stream's position and each sender's
running total are written once per batch, each statement an executemany.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from sqlalchemy import Connection

from server.adapters.rows import charged_from_row, facts_from_row, prior_from_row
from server.adapters.send_batcher import BatchedWriter, BatchResult, PendingSend
from server.adapters.sqlite.failures import is_unavailable
from server.adapters.sqlite.worker import SqliteWorker
from server.adapters.stream_advances import StreamAdvances
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
from server.domain.errors import StorageUnavailable
from server.domain.send_outcome import Charged, Replayed, SendOutcome, not_charged

log = logging.getLogger(__name__)

# Larger batches only lengthen the transaction that holds SQLite's single write lock.
MAX_BATCH = 128


def _param(name: str) -> str:
    return f":{name}"


# The request's facts and the rules' verdict on them (their SQL mirror: NULL when allowed).
_FACTS_SQL = f"""
WITH p AS (
    SELECT CAST(:stream_id AS VARCHAR(24)) AS sid, CAST(:sender_id AS VARCHAR(24)) AS uid,
           CAST(:idem AS VARCHAR(255)) AS idem, :superlike_id AS superlike_id, :created_at_ms AS created_at_ms
), facts AS (
    SELECT {REQUEST_COLUMNS},
           {FACTS_COLUMNS},
           s.last_position AS stream_last_position
    FROM p
    LEFT JOIN live_streams s ON s.id = p.sid
    LEFT JOIN users u ON u.id = p.uid
    LEFT JOIN wallets w ON w.user_id = p.uid
    LEFT JOIN superlikes k ON k.sender_id = p.uid AND k.idempotency_key = p.idem
)
SELECT facts.*, {refusal_sql("facts")} AS refusal FROM facts
"""

_DEBIT_SQL = """
UPDATE wallets SET balance = balance - :superlike_price
WHERE user_id = :sender_id AND balance >= :superlike_price
RETURNING balance
"""

# Once per batch and stream. The transaction holds SQLite's only write lock from the first facts read
# to the commit, so positions counted on from the stream's last one are taken in commit order.
_SET_LAST_POSITION_SQL = "UPDATE live_streams SET last_position = :position WHERE id = :stream_id"

_ADD_TO_SUPPORTER_SQL = f"""
INSERT INTO stream_supporters ({SUPPORTER_COLUMNS})
VALUES (:stream_id, :sender_id, :price, 1, :position)
{ADD_TO_SUPPORTER_TOTAL}
"""

_ADD_PENDING_CREDIT_SQL = f"INSERT INTO pending_credits ({PENDING_CREDIT_COLUMNS}) VALUES (:host_id, :amount, :entries)"

_INSERT_SUPERLIKE_SQL = f"INSERT INTO superlikes ({SUPERLIKE_COLUMNS}) VALUES ({superlike_values(_param)})"

_INSERT_LEDGER_PAIR_SQL = "INSERT INTO ledger_entries ({}) VALUES ({}), ({})".format(
    LEDGER_COLUMNS, *ledger_pair_values(_param)
)


class SqliteSuperlikes(BatchedWriter):
    """The write port on SQLite."""

    def __init__(self, worker: SqliteWorker, advances: StreamAdvances | None = None) -> None:
        super().__init__(max_batch=MAX_BATCH, max_in_flight=1)
        self._worker = worker
        self._advances = advances or StreamAdvances()

    async def _write_batch(self, batch: Sequence[PendingSend]) -> BatchResult:
        advanced: dict[str, int] = {}
        try:
            outcomes = await self._worker.write(partial(_write_in_transaction, batch=batch, advanced=advanced))
            self._advances.publish(advanced)  # committed: the live feed may read them now
            return outcomes
        except Exception as error:
            # StorageUnavailable covers OutcomeUnknown: the commit itself failed and may have been
            # durable; writing the requests again could charge them twice.
            if len(batch) == 1 or isinstance(error, StorageUnavailable) or is_unavailable(error):
                converted = _storage_error(error)
                if converted is error:
                    raise
                raise converted from error
            # One request's failure undid the whole transaction; one at a time, only it fails.
            log.warning("superlike batch failed, writing it one by one: %s", error)
        results: list[SendOutcome | BaseException] = []
        for index, pending in enumerate(batch):
            own_advance: dict[str, int] = {}
            try:
                (outcome,) = await self._worker.write(
                    partial(_write_in_transaction, batch=[pending], advanced=own_advance)
                )
                results.append(outcome)
                self._advances.publish(own_advance)
            except Exception as error:
                failure = _storage_error(error)
                results.append(failure)
                if isinstance(failure, StorageUnavailable):
                    # The database itself cannot serve: locked by another process past the busy
                    # timeout, unreachable, full (or the commit's outcome is unknown). That is no
                    # request's own fault, and every later one would wait out the same timeout on
                    # this thread: the requests not tried yet were not sent at all, as on PostgreSQL.
                    results.extend(StorageUnavailable() for _ in batch[index + 1 :])
                    break
        return results


def _storage_error(error: Exception) -> Exception:
    """A failure as the caller must see it: the database being unavailable is StorageUnavailable
    (nothing was written, the transaction rolled back); anything else is a bug, raised as is."""
    if isinstance(error, StorageUnavailable) or not is_unavailable(error):
        return error
    log.warning("database unavailable: %s", error)
    unavailable = StorageUnavailable()
    unavailable.__cause__ = error
    return unavailable


_FACTS_NAMES: tuple[str, ...] | None = None


def _facts_names(cursor: Any) -> tuple[str, ...]:
    """The facts statement's column names: fixed, so read once rather than per superlike."""
    global _FACTS_NAMES
    if _FACTS_NAMES is None:
        _FACTS_NAMES = tuple(column[0] for column in cursor.description)
    return _FACTS_NAMES


def _write_in_transaction(
    connection: Connection, *, batch: Sequence[PendingSend], advanced: dict[str, int]
) -> list[SendOutcome]:
    # The transaction holds SQLite's single write lock from the first read to the commit: nothing can
    # change in between, so the rules decide on current data and the debit cannot fail after them.
    # Earlier requests of the same batch are part of that current data.
    cursor = connection.connection.driver_connection.cursor()
    try:
        charged: list[dict[str, Any]] = []
        totals: list[dict[str, Any]] = []
        owed: dict[str, dict[str, Any]] = {}
        outcomes = [_send_with_cursor(cursor, pending, advanced, charged, totals, owed) for pending in batch]
        # The charged requests' rows, each statement once for the whole batch (sqlite3 loops in C);
        # no later request of the batch reads them (one request per sender, so no key of the batch
        # can be another's).
        cursor.executemany(_INSERT_SUPERLIKE_SQL, charged)
        cursor.executemany(_INSERT_LEDGER_PAIR_SQL, charged)
        # What the batch's charges add up to, written once per stream, sender and host (a batch holds
        # one request per sender): each stream's last position, each sender's running total, what
        # each host is owed until settlement.
        cursor.executemany(
            _SET_LAST_POSITION_SQL, [{"stream_id": sid, "position": last} for sid, last in advanced.items()]
        )
        cursor.executemany(_ADD_TO_SUPPORTER_SQL, totals)
        cursor.executemany(_ADD_PENDING_CREDIT_SQL, list(owed.values()))
        return outcomes
    finally:
        cursor.close()


def _send_with_cursor(
    cursor: Any,
    pending: PendingSend,
    advanced: dict[str, int],
    charged: list[dict[str, Any]],
    totals: list[dict[str, Any]],
    owed: dict[str, dict[str, Any]],
) -> SendOutcome:
    """One request's facts, verdict and debit; its superlike row (with its ledger entries), stream
    position, supporter total and host credit are collected in `charged`, `advanced`, `totals` and
    `owed` for the batch to write at once."""
    request = pending.request
    cursor.execute(
        _FACTS_SQL,
        {
            "stream_id": request.stream_id,
            "sender_id": request.sender_id,
            "idem": request.idempotency_key,
            "superlike_id": pending.superlike_id,
            "created_at_ms": pending.created_at_ms,
        },
    )
    row = dict(zip(_facts_names(cursor), cursor.fetchone(), strict=True))
    prior = prior_from_row(row, request.sender_id)
    if prior is not None:
        return Replayed(prior)
    if row["refusal"] is not None:
        return not_charged(facts_from_row(row))
    debited = cursor.execute(_DEBIT_SQL, row).fetchone()
    if debited is None:
        return not_charged(facts_from_row(row))
    row["balance_after"] = int(debited[0])
    position = advanced.get(request.stream_id, row["stream_last_position"]) + 1
    row["stream_position"] = position
    # Published once the transaction commits (a rolled-back batch publishes nothing).
    advanced[request.stream_id] = position
    charged.append(row)
    totals.append(
        {
            "stream_id": request.stream_id,
            "sender_id": request.sender_id,
            "price": row["superlike_price"],
            "position": position,
        }
    )
    credit = owed.setdefault(row["host_id"], {"host_id": row["host_id"], "amount": 0, "entries": 0})
    credit["amount"] += row["superlike_price"]
    credit["entries"] += 1
    return Charged(charged_from_row(row))
