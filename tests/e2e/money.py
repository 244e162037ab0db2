"""Helpers for the money-safety tests: REST load through Envoy and exact checks of what got stored.

Every check reads the database directly (never through the service under test), so a wrong answer
from the service cannot hide a wrong row.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.audit import AuditReport, audit_database
from server.adapters.storage import Storage
from tests.e2e.credentials import bearer_header
from tests.e2e.http_client import ENVELOPE_KEYS, TIMESTAMP, superlike_path
from tests.tcp_proxy import Link, TcpProxy

SERVER_UNAVAILABLE = "Service temporarily unavailable, please retry"  # the server: STORAGE_UNAVAILABLE
# the server, when the connection broke while the charge was in flight: OUTCOME_UNKNOWN
OUTCOME_UNKNOWN = (
    "Service temporarily unavailable; the superlike may have been sent. "
    "Retry with the same Idempotency-Key to get its outcome without a second charge"
)
EDGE_UNAVAILABLE = "Service temporarily unavailable"  # Envoy: upstream down, reset or unhealthy
INSUFFICIENT = "Insufficient coin balance for a superlike"


@dataclass(frozen=True)
class Sender:
    user_id: str
    token: str


@dataclass(frozen=True)
class Sent:
    """One REST call and what came back: status None means no HTTP response at all."""

    sender_id: str
    key: str | None
    status: int | None
    body: bytes
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def document(self) -> Any:
        return json.loads(self.body)

    @property
    def superlike_id(self) -> str:
        return str(self.document()["superlikeId"])

    def error_message(self) -> str:
        """The envelope's single message; fails unless the body is exactly the error envelope."""
        document = json.loads(self.body, object_pairs_hook=list)
        assert [name for name, _ in document] == ENVELOPE_KEYS, self
        envelope = dict(document)
        assert envelope["isSuccess"] is False and envelope["data"] is None, self
        assert envelope["statusCode"] == self.status, self
        assert TIMESTAMP.fullmatch(envelope["timestamp"]), self
        assert isinstance(envelope["errors"], list) and len(envelope["errors"]) == 1, self
        return str(envelope["errors"][0])


def send(port: int, stream_id: str, sender: Sender, key: str | None, timeout: float = 12.0) -> Sent:
    headers = bearer_header(sender.token)
    if key is not None:
        headers["Idempotency-Key"] = key
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", superlike_path(stream_id), headers=headers)
        response = connection.getresponse()
        body = response.read()
        return Sent(sender.user_id, key, response.status, body, time.monotonic() - started)
    except (OSError, http.client.HTTPException) as error:  # socket.timeout is an OSError
        return Sent(sender.user_id, key, None, b"", time.monotonic() - started, repr(error))
    finally:
        connection.close()


def send_all(port: int, stream_id: str, calls: Sequence[tuple[Sender, str | None]], workers: int = 8) -> list[Sent]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda call: send(port, stream_id, call[0], call[1]), calls))


def resend(port: int, stream_id: str, senders: dict[str, Sender], sent: Sequence[Sent]) -> list[Sent]:
    """The same calls again, same sender and idempotency key, in the same order."""
    return send_all(port, stream_id, [(senders[s.sender_id], s.key) for s in sent])


class Load:
    """`workers` threads sending superlikes to one stream until stopped, every call with a new key.
    Stop it from a thread (`asyncio.to_thread(load.stop)`) when its calls depend on the event loop.

    Sender i of worker w is senders[(w + i * workers) % len(senders)], so every sender is used by
    several workers at once.
    """

    def __init__(
        self,
        port: int,
        stream_id: str,
        senders: Sequence[Sender],
        workers: int,
        prefix: str,
        timeout: float = 12.0,
        pause: float = 0.0,
    ) -> None:
        self._port = port
        self._stream_id = stream_id
        self._senders = list(senders)
        self._workers = workers
        self._prefix = prefix
        self._timeout = timeout
        self._pause = pause
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent: list[Sent] = []
        self._threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(workers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> list[Sent]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self._timeout + 5)
        assert not any(thread.is_alive() for thread in self._threads), "a load thread hung"
        return self.sent()

    def sent(self) -> list[Sent]:
        with self._lock:
            return list(self._sent)

    def count(self, predicate: Any = None) -> int:
        with self._lock:
            return sum(1 for s in self._sent if predicate is None or predicate(s))

    def wait_for(self, predicate: Any, at_least: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count(predicate) < at_least:
            assert time.monotonic() < deadline, f"load: fewer than {at_least} matching calls after {timeout}s"
            time.sleep(0.02)

    def _run(self, worker: int) -> None:
        i = 0
        while not self._stop.is_set():
            sender = self._senders[(worker + i * self._workers) % len(self._senders)]
            outcome = send(self._port, self._stream_id, sender, f"{self._prefix}-{worker}-{i}", self._timeout)
            with self._lock:
                self._sent.append(outcome)
            i += 1
            if self._pause:
                time.sleep(self._pause)


# --- what the database holds -------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredSuperlike:
    superlike_id: str
    sender_id: str
    key: str | None
    price: int
    debits: int  # ledger entries: -price from the sender, kind superlike_debit
    credits: int  # +price to the stream's host, kind superlike_credit
    entries: int  # all ledger entries naming this superlike

    @property
    def fully_booked(self) -> bool:
        return (self.debits, self.credits, self.entries) == (1, 1, 2)


_STORED = text("""
SELECT k.id, k.sender_id, k.idempotency_key, k.price,
       (SELECT count(*) FROM ledger_entries e WHERE e.superlike_id = k.id AND e.kind = 'superlike_debit'
                AND e.user_id = k.sender_id AND e.amount = -k.price) AS debits,
       (SELECT count(*) FROM ledger_entries e WHERE e.superlike_id = k.id AND e.kind = 'superlike_credit'
                AND e.user_id = s.host_id AND e.amount = k.price) AS credits,
       (SELECT count(*) FROM ledger_entries e WHERE e.superlike_id = k.id) AS entries
FROM superlikes k JOIN live_streams s ON s.id = k.stream_id
WHERE k.stream_id = :stream_id
""")

_WALLET = text("""
SELECT w.balance, (SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e WHERE e.user_id = w.user_id)
FROM wallets w WHERE w.user_id = :user_id
""")


async def stored_superlikes(engine: AsyncEngine, stream_id: str) -> dict[str, StoredSuperlike]:
    async with engine.connect() as connection:
        rows = (await connection.execute(_STORED, {"stream_id": stream_id})).all()
    return {row[0]: StoredSuperlike(*row) for row in rows}


async def wallet(engine: AsyncEngine, user_id: str) -> tuple[int, int]:
    """(balance, sum of the user's ledger entries)."""
    async with engine.connect() as connection:
        balance, total = (await connection.execute(_WALLET, {"user_id": user_id})).one()
    return int(balance), int(total)


async def settled_wallet(engine: AsyncEngine, user_id: str, expected: int, timeout: float = 10.0) -> tuple[int, int]:
    """(balance, ledger sum) once both equal `expected`, or as they are after `timeout` seconds.

    A host's credits may reach the wallet shortly after the superlike commits (the server folds
    pending credits in continuously), so the host's wallet is checked as it settles, within a bound.
    """
    deadline = time.monotonic() + timeout
    while True:
        current = await wallet(engine, user_id)
        if current == (expected, expected) or time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.05)


async def audit(storage: Storage) -> AuditReport:
    return await audit_database(storage)


def cli_audit(database_url: str) -> tuple[int, dict[str, Any]]:
    """`livechat admin audit` as an operator runs it: (exit status, the JSON it printed)."""
    livechat = Path(sys.executable).parent / "livechat"
    env = dict(os.environ, DATABASE_URL=database_url)
    done = subprocess.run([str(livechat), "admin", "audit"], env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


async def assert_books_balance(
    storage: Storage,
    stream_id: str,
    host_id: str,
    coins: dict[str, int],
    price: int,
    sent: Iterable[Sent],
) -> dict[str, StoredSuperlike]:
    """What every money test must hold afterwards, exactly:

    * every 2xx answer names a stored superlike of its sender, stored under its idempotency key, and
      no two 2xx answers for different keys name the same superlike;
    * every superlike of the stream has exactly its debit and its credit, nothing more;
    * at most one superlike per (sender, key), and no superlike under a key nobody sent;
    * each sender's balance is its starting coins minus price x its superlikes, the host's is (once
      settled, within a bound) price x all superlikes, and every balance equals the sum of its ledger
      entries;
    * the global audit finds nothing.
    Returns the stored superlikes by id.
    """
    sent = list(sent)
    engine = storage.engine
    stored = await stored_superlikes(engine, stream_id)
    sent_keys = {(s.sender_id, s.key) for s in sent}
    by_key = Counter((row.sender_id, row.key) for row in stored.values())
    assert [k for k, n in by_key.items() if n != 1 and k[1] is not None] == []
    assert [row for row in stored.values() if (row.sender_id, row.key) not in sent_keys and row.key is not None] == []
    assert [row for row in stored.values() if not row.fully_booked] == []
    assert {row.price for row in stored.values()} <= {price}
    answered: dict[tuple[str, str | None], str] = {}
    for outcome in sent:
        if not outcome.ok:
            continue
        document = outcome.document()
        assert (document["streamId"], document["senderId"], document["price"]) == (stream_id, outcome.sender_id, price)
        row = stored.get(outcome.superlike_id)
        assert row is not None, f"2xx for {outcome.key} but superlike {outcome.superlike_id} is not stored"
        assert (row.sender_id, row.key) == (outcome.sender_id, outcome.key)
        if outcome.key is not None:
            assert answered.setdefault((outcome.sender_id, outcome.key), row.superlike_id) == row.superlike_id
    ok_ids = [s.superlike_id for s in sent if s.ok]
    if all(s.key is not None for s in sent):
        assert len(set(ok_ids)) == len({(s.sender_id, s.key) for s in sent if s.ok})
    else:
        assert len(set(ok_ids)) == len(ok_ids), "two calls without a key were answered with one superlike"
    per_sender = Counter(row.sender_id for row in stored.values())
    for sender_id, start in coins.items():
        assert await wallet(engine, sender_id) == (start - price * per_sender[sender_id],) * 2, sender_id
    assert set(per_sender) <= set(coins)
    assert await settled_wallet(engine, host_id, price * len(stored)) == (price * len(stored),) * 2
    assert (await audit(storage)).problems == []
    return stored


# --- a database link that loses one commit acknowledgement -------------------------------------------


# PostgreSQL's ReadyForQuery message with status "idle": the transaction is over, i.e. committed.
_READY_IDLE = b"Z\x00\x00\x00\x05I"


class CommitAckDropper(TcpProxy):
    """A TCP forwarder to PostgreSQL that can lose the acknowledgement of exactly one committed charge.

    Armed with an idempotency key, it watches what the server sends. Once a statement on some
    connection carries the key (as a bound parameter, so prepared-statement caching cannot hide it),
    the database's answers on that connection are forwarded until the one that reports the connection
    idle again (ReadyForQuery "I": after COMMIT, or after a statement run in autocommit). That answer
    and everything after it are withheld. The charge is durably committed; the server never learns
    that it was. `release()` resets the withheld connection, as a failed network path would.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self._armed: bytes | None = None
        self._held: list[asyncio.StreamWriter] = []
        self.holding = asyncio.Event()

    def arm(self, key: str) -> None:
        self.holding.clear()
        self._armed = key.encode()

    async def release(self) -> None:
        for writer in self._held:
            writer.transport.abort()
        self._held.clear()

    async def close(self) -> None:
        await self.cut()

    def forward(self, data: bytes, to_upstream: bool, link: Link) -> bool:
        if to_upstream:
            if self._armed is not None and self._armed in data:
                link.state["keyed"], self._armed = True, None
            return True
        if link.state.get("keyed") and not link.state.get("mute") and _READY_IDLE in data:
            link.state["mute"] = True
            self._held += [link.client, link.upstream]
            self.holding.set()
        return not link.state.get("mute")
