"""Money safety with real processes: crashes, database outages, client deadlines and races never lose,
duplicate or half-book a charge.

Every test drives the real `livechat serve` process (and, for REST, the real Envoy in front of it) and
then checks the database directly: each 2xx answer has exactly one stored superlike, each superlike has
exactly its debit and its credit, balances equal their ledgers, and the money audit finds nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytest.register_assert_rewrite("tests.e2e.money")  # its checks report their values when they fail

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from devstack.stack import Stack
from server.adapters.storage import Storage
from tests.api.conftest import error_of
from tests.conftest import SigningKeys
from tests.e2e.conftest import Edge, stack_config
from tests.e2e.credentials import bearer_metadata, edge_token
from tests.e2e.money import (
    EDGE_UNAVAILABLE,
    INSUFFICIENT,
    OUTCOME_UNKNOWN,
    SERVER_UNAVAILABLE,
    CommitAckDropper,
    Load,
    Sender,
    Sent,
    assert_books_balance,
    audit,
    cli_audit,
    resend,
    send,
    settled_wallet,
    stored_superlikes,
    wallet,
)
from tests.support import create_stream, create_user, migrated_storage, unique_name
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

PRICE = 10
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
BOUND_SECONDS = 12.0  # no call may take longer than this, whatever breaks underneath


async def hot_stream(storage: Storage, keys: SigningKeys, senders: int, coins: int) -> tuple[str, str, list[Sender]]:
    """A fresh host with one live stream at PRICE, and `senders` viewers with `coins` each."""
    host = await create_user(storage)
    stream = await create_stream(storage, host["id"], price=PRICE)
    viewers = [await create_user(storage, coins=coins) for _ in range(senders)]
    return host["id"], stream["id"], [Sender(v["id"], edge_token(keys, v["id"])) for v in viewers]


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Polls without blocking the event loop (it also runs the TCP proxy); returns the seconds waited."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < timeout, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def health_of(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        return (await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)).status


def assert_only_ok_or_unavailable(sent: list[Sent], allowed: set[str]) -> Counter[str]:
    """Every call got an HTTP answer in bounded time: a 2xx or a 503 envelope with an allowed message."""
    assert [s for s in sent if s.status is None or s.seconds >= BOUND_SECONDS] == []
    messages: Counter[str] = Counter()
    for outcome in sent:
        if outcome.ok:
            assert outcome.status == 200
            continue
        assert outcome.status == 503, outcome
        message = outcome.error_message()
        assert message in allowed, outcome
        messages[message] += 1
    return messages


async def assert_every_key_settles_once(
    storage: Storage, port: int, stream_id: str, host_id: str, senders: list[Sender], coins: int, sent: list[Sent]
) -> tuple[list[Sent], int]:
    """Sends every call again with its key: all succeed, answered ones replay their superlike, and each
    key ends with exactly one superlike. Returns the second answers and how many calls whose client
    saw a failure had in fact been stored (their retry must replay, not charge again)."""
    by_id = {s.user_id: s for s in senders}
    before = await stored_superlikes(storage.engine, stream_id)
    stored_key_ids = {(row.sender_id, row.key): row.superlike_id for row in before.values()}
    again = await asyncio.to_thread(resend, port, stream_id, by_id, sent)
    assert [a for a in again if a.status != 200] == []
    assert [
        (s.key, s.superlike_id, a.superlike_id)
        for s, a in zip(sent, again, strict=True)
        if s.ok and a.superlike_id != s.superlike_id
    ] == []
    stored_before_failure = 0
    for first, second in zip(sent, again, strict=True):
        prior = stored_key_ids.get((first.sender_id, first.key))
        if prior is not None:
            assert second.superlike_id == prior, first.key
            stored_before_failure += not first.ok
    after = await assert_books_balance(
        storage, stream_id, host_id, {s.user_id: coins for s in senders}, PRICE, [*sent, *again]
    )
    assert sorted((row.sender_id, row.key) for row in after.values()) == sorted((s.sender_id, s.key) for s in sent)
    assert before == {k: after[k] for k in before}
    return again, stored_before_failure


@pytest_asyncio.fixture(scope="module")
async def pg_storage(postgres_url: str) -> AsyncIterator[Storage]:
    async with migrated_storage(postgres_url) as storage:
        yield storage


# --- 1. crash ------------------------------------------------------------------------------------------


async def test_sigkill_under_load_keeps_every_charge_whole_and_retries_charge_once(
    pg_storage: Storage, postgres_url: str, signing_keys: SigningKeys, tmp_path: Path
) -> None:
    """SIGKILL the server while 8 clients keep sending through Envoy, restart it, keep sending. Some
    calls die with the process (their outcome unknown to the client); none may be half-booked or
    answered without being stored, and every one of them, retried with its key, settles exactly once."""
    coins = 1_000_000
    host_id, stream_id, senders = await hot_stream(pg_storage, signing_keys, senders=12, coins=coins)
    stack = Stack(stack_config(tmp_path, postgres_url, signing_keys))
    # Blocking calls go to threads throughout: this event loop may also run other servers' tasks.
    await asyncio.to_thread(stack.start)
    try:
        port = stack.config.http_port
        load = Load(port, stream_id, senders, workers=8, prefix=unique_name("crash"))
        load.start()
        try:
            await asyncio.to_thread(load.wait_for, lambda s: s.ok, 150, 20)
            await asyncio.to_thread(stack.kill_server)
            served_before_restart = load.count(lambda s: s.ok)
            await asyncio.to_thread(load.wait_for, lambda s: not s.ok, 1, 10)
            await asyncio.to_thread(stack.start_server)
            await asyncio.to_thread(load.wait_for, lambda s: s.ok, served_before_restart + 150, 30)
        finally:
            await asyncio.to_thread(load.stop)
        sent = load.sent()

        messages = assert_only_ok_or_unavailable(sent, {EDGE_UNAVAILABLE, SERVER_UNAVAILABLE})
        assert messages[EDGE_UNAVAILABLE] >= 1, "the kill went unnoticed by the clients"
        assert len({s.key for s in sent}) == len(sent)
        stored = await assert_books_balance(
            pg_storage, stream_id, host_id, {s.user_id: coins for s in senders}, PRICE, sent
        )
        assert len(stored) >= sum(s.ok for s in sent)
        status, report = await asyncio.to_thread(cli_audit, postgres_url)
        assert (status, report["ok"], report["problems"]) == (0, True, [])

        await assert_every_key_settles_once(pg_storage, port, stream_id, host_id, senders, coins, sent)
    finally:
        await asyncio.to_thread(stack.stop)


# --- 2. database outage --------------------------------------------------------------------------------


async def test_database_outage_under_load_is_a_bounded_503_and_heals_without_a_restart(
    pg_storage: Storage, postgres_url: str, signing_keys: SigningKeys, tmp_path: Path
) -> None:
    """The server's link to PostgreSQL is cut under load and restored: meanwhile every call is a 503
    envelope within the bound (never a 500, never a hang), health says NOT_SERVING, and afterwards the
    same process serves again by itself with nothing stored half."""
    coins = 1_000_000
    host_id, stream_id, senders = await hot_stream(pg_storage, signing_keys, senders=8, coins=coins)
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    proxied = postgres_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    stack = Stack(stack_config(tmp_path, proxied, signing_keys))
    try:
        # Blocking calls go to threads: this event loop also runs the proxy the server talks through.
        await asyncio.to_thread(stack.start)
        port, grpc_port = stack.config.http_port, stack.config.grpc_port
        load = Load(port, stream_id, senders, workers=6, prefix=unique_name("outage"), pause=0.01)
        load.start()
        try:
            await eventually(lambda: _count(load, lambda s: s.ok, 60), 20, "superlikes before the outage")
            await proxy.cut()
            cut_at = len(load.sent())
            await eventually(lambda: _is(health_of(grpc_port), NOT_SERVING), 5, "health NOT_SERVING")
            await eventually(lambda: _count(load, lambda s: not s.ok, 30), 10, "refusals during the outage")
            await asyncio.sleep(0.5)
            during = load.sent()[cut_at:]
            await proxy.restore()
            await eventually(lambda: _is(health_of(grpc_port), SERVING), 10, "health SERVING again")
            first = await asyncio.to_thread(send, port, stream_id, senders[0], unique_name("after"))
            assert first.status == 200, first
            restored_ok = load.count(lambda s: s.ok)
            await eventually(lambda: _count(load, lambda s: s.ok, restored_ok + 60), 20, "load served again")
        finally:
            # Joined from a thread: the load's calls need this loop (the proxy) to finish.
            await asyncio.to_thread(load.stop)
        sent = load.sent()

        messages = assert_only_ok_or_unavailable(sent, {SERVER_UNAVAILABLE, OUTCOME_UNKNOWN, EDGE_UNAVAILABLE})
        assert messages[SERVER_UNAVAILABLE] + messages[OUTCOME_UNKNOWN] >= 1, "the server never reported the outage"
        assert sum(s.status == 503 for s in during) >= 1
        assert not any(s.ok for s in during[len(during) // 2 :]), "superlikes succeeded with the database cut"
        await assert_books_balance(
            pg_storage, stream_id, host_id, {s.user_id: coins for s in senders}, PRICE, [*sent, first]
        )
        # Every call the outage refused is safe to retry with its key: replayed if it was stored.
        await assert_every_key_settles_once(pg_storage, port, stream_id, host_id, senders, coins, [*sent, first])
    finally:
        await asyncio.to_thread(stack.stop)
        await proxy.cut()


async def _count(load: Load, predicate: Callable[[Sent], bool], at_least: int) -> bool:
    return load.count(predicate) >= at_least


async def _is(status: Awaitable[int], expected: int) -> bool:
    try:
        return await status == expected
    except grpc.aio.AioRpcError:
        return False


# --- 3. retries after a deadline -----------------------------------------------------------------------


@asynccontextmanager
async def writes_blocked(engine: AsyncEngine, sender_id: str) -> AsyncIterator[None]:
    """Another writer holds what SendSuperlike must write: an update of the sender's wallet that
    changes nothing and is rolled back. It locks the wallet row on PostgreSQL, and on SQLite the
    whole database (storage's engine begins with BEGIN IMMEDIATE). The server waits; clients time out."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        await connection.execute(text("UPDATE wallets SET balance = balance WHERE user_id = :id"), {"id": sender_id})
        try:
            yield
        finally:
            await transaction.rollback()


async def test_grpc_retry_after_deadline_exceeded_is_charged_once(edge: Edge) -> None:
    host_id, stream_id, (viewer,) = await hot_stream(edge.storage, edge.keys, senders=1, coins=100)
    key = unique_name("deadline")
    request = chat_pb2.SendSuperlikeRequest(stream_id=stream_id, request_id=key)
    metadata = bearer_metadata(viewer.token)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.grpc_port}") as channel:
        stub = chat_grpc.LiveStreamChatStub(channel)
        async with writes_blocked(edge.engine, viewer.user_id):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.SendSuperlike(request, metadata=metadata, timeout=1.0)
            assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            # A retry while the first attempt may still be waiting inside the server.
            racing = asyncio.ensure_future(stub.SendSuperlike(request, metadata=metadata, timeout=10))
            await asyncio.sleep(0.3)
            assert not racing.done()
        retried = await racing
        again = await stub.SendSuperlike(request, metadata=metadata, timeout=10)
    assert (retried.superlike_id, retried.sender_balance) == (again.superlike_id, 90)
    assert again == retried
    stored = await stored_superlikes(edge.engine, stream_id)
    assert [(row.superlike_id, row.key, row.fully_booked) for row in stored.values()] == [
        (retried.superlike_id, key, True)
    ]
    assert await wallet(edge.engine, viewer.user_id) == (90, 90)
    assert await settled_wallet(edge.engine, host_id, 10) == (10, 10)
    assert (await audit(edge.storage)).problems == []


async def test_rest_retry_after_a_client_timeout_is_charged_once(edge: Edge) -> None:
    host_id, stream_id, (viewer,) = await hot_stream(edge.storage, edge.keys, senders=1, coins=100)
    key = unique_name("rest-timeout")
    async with writes_blocked(edge.engine, viewer.user_id):
        timed_out = await asyncio.to_thread(send, edge.http_port, stream_id, viewer, key, 1.0)
        assert (timed_out.status, "timed out" in timed_out.error) == (None, True), timed_out
    retried = await asyncio.to_thread(send, edge.http_port, stream_id, viewer, key)
    again = await asyncio.to_thread(send, edge.http_port, stream_id, viewer, key)
    assert (retried.status, again.status) == (200, 200), (retried, again)
    assert retried.body == again.body
    assert retried.document()["senderBalance"] == "90"
    stored = await stored_superlikes(edge.engine, stream_id)
    assert [(row.superlike_id, row.key, row.fully_booked) for row in stored.values()] == [
        (retried.superlike_id, key, True)
    ]
    assert await wallet(edge.engine, viewer.user_id) == (90, 90)
    assert await settled_wallet(edge.engine, host_id, 10) == (10, 10)


async def test_deadlines_while_the_database_is_busy_do_not_exhaust_the_server(edge: Edge) -> None:
    """More timed-out calls than the server has pooled connections; afterwards it serves normally."""
    host_id, stream_id, (viewer,) = await hot_stream(edge.storage, edge.keys, senders=1, coins=1000)
    metadata = bearer_metadata(viewer.token)
    keys = [unique_name("busy") for _ in range(16)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.grpc_port}") as channel:
        stub = chat_grpc.LiveStreamChatStub(channel)
        async with writes_blocked(edge.engine, viewer.user_id):
            calls = [
                stub.SendSuperlike(
                    chat_pb2.SendSuperlikeRequest(stream_id=stream_id, request_id=key), metadata=metadata, timeout=1.0
                )
                for key in keys
            ]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert [o.code() if isinstance(o, grpc.aio.AioRpcError) else o for o in outcomes] == [
                grpc.StatusCode.DEADLINE_EXCEEDED
            ] * len(keys)
        started = time.monotonic()
        retried = [
            await stub.SendSuperlike(
                chat_pb2.SendSuperlikeRequest(stream_id=stream_id, request_id=key), metadata=metadata, timeout=10
            )
            for key in keys
        ]
        assert time.monotonic() - started < 8
    assert sorted(r.sender_balance for r in retried) == [1000 - PRICE * n for n in range(16, 0, -1)]
    stored = await stored_superlikes(edge.engine, stream_id)
    assert sorted(row.key for row in stored.values()) == sorted(keys)
    assert await settled_wallet(edge.engine, host_id, PRICE * 16) == (PRICE * 16,) * 2
    assert (await audit(edge.storage)).problems == []


@pytest_asyncio.fixture(scope="module")
async def lossy_stack(
    pg_storage: Storage, postgres_url: str, signing_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Stack, CommitAckDropper]]:
    """A stack on PostgreSQL whose database link can lose one commit acknowledgement on demand."""
    target = urlsplit(postgres_url)
    dropper = CommitAckDropper(target.hostname or "127.0.0.1", target.port or 5432)
    await dropper.start()
    proxied = postgres_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{dropper.port}")
    stack = Stack(stack_config(tmp_path_factory.mktemp("lossy"), proxied, signing_keys))
    try:
        await asyncio.to_thread(stack.start)  # the dropper runs on this loop
        yield stack, dropper
    finally:
        await dropper.release()
        await asyncio.to_thread(stack.stop)
        await dropper.close()


@pytest.mark.parametrize("transport", ["grpc", "rest"])
async def test_a_retry_after_the_commit_answer_was_lost_replays_and_charges_once(
    lossy_stack: tuple[Stack, CommitAckDropper], pg_storage: Storage, signing_keys: SigningKeys, transport: str
) -> None:
    """The worst case for a retry: the charge committed, but the answer never reached the client."""
    stack, dropper = lossy_stack
    host_id, stream_id, (viewer,) = await hot_stream(pg_storage, signing_keys, senders=1, coins=100)
    key = unique_name(f"lost-{transport}")
    request = chat_pb2.SendSuperlikeRequest(stream_id=stream_id, request_id=key)
    metadata = bearer_metadata(viewer.token)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.grpc_port}") as channel:
        stub = chat_grpc.LiveStreamChatStub(channel)
        dropper.arm(key)
        if transport == "grpc":
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.SendSuperlike(request, metadata=metadata, timeout=2.0)
            assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        else:
            timed_out = await asyncio.to_thread(send, stack.config.http_port, stream_id, viewer, key, 2.0)
            assert (timed_out.status, "timed out" in timed_out.error) == (None, True), timed_out
        assert dropper.holding.is_set(), "the commit was never seen"
        committed = await stored_superlikes(pg_storage.engine, stream_id)
        assert [(row.key, row.fully_booked) for row in committed.values()] == [(key, True)]
        assert await wallet(pg_storage.engine, viewer.user_id) == (90, 90)
        await dropper.release()

        if transport == "grpc":
            retried = [(await stub.SendSuperlike(request, metadata=metadata, timeout=10)) for _ in range(2)]
            answers = [(r.superlike_id, r.sender_balance) for r in retried]
        else:
            retried_rest = [
                await asyncio.to_thread(send, stack.config.http_port, stream_id, viewer, key) for _ in range(2)
            ]
            assert [r.status for r in retried_rest] == [200, 200], retried_rest
            answers = [(r.superlike_id, int(r.document()["senderBalance"])) for r in retried_rest]
    assert answers == [(next(iter(committed)), 90)] * 2
    assert await stored_superlikes(pg_storage.engine, stream_id) == committed
    assert await wallet(pg_storage.engine, viewer.user_id) == (90, 90)
    assert await settled_wallet(pg_storage.engine, host_id, 10) == (10, 10)


async def test_an_unavailable_answer_after_a_committed_charge_is_safe_to_retry_with_its_key(
    lossy_stack: tuple[Stack, CommitAckDropper], pg_storage: Storage, signing_keys: SigningKeys
) -> None:
    """The link breaks after the charge committed, while the server waits for the answer: the server
    cannot know whether it committed, says so (OUTCOME_UNKNOWN, never "nothing changed"), and the retry
    with the same key replays the charge."""
    stack, dropper = lossy_stack
    host_id, stream_id, (viewer,) = await hot_stream(pg_storage, signing_keys, senders=1, coins=100)
    key = unique_name("ambiguous")
    request = chat_pb2.SendSuperlikeRequest(stream_id=stream_id, request_id=key)
    metadata = bearer_metadata(viewer.token)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.grpc_port}") as channel:
        stub = chat_grpc.LiveStreamChatStub(channel)
        dropper.arm(key)
        call = asyncio.ensure_future(stub.SendSuperlike(request, metadata=metadata, timeout=10))
        await eventually(lambda: _flag(dropper.holding), 5, "the charge reached the database")
        await asyncio.sleep(0.2)
        assert not call.done()
        await dropper.release()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert error_of(raised.value) == (grpc.StatusCode.UNAVAILABLE, OUTCOME_UNKNOWN, "OUTCOME_UNKNOWN")
        committed = await stored_superlikes(pg_storage.engine, stream_id)
        assert [(row.key, row.fully_booked) for row in committed.values()] == [(key, True)]
        retried = await stub.SendSuperlike(request, metadata=metadata, timeout=10)
    assert (retried.superlike_id, retried.sender_balance) == (next(iter(committed)), 90)
    assert await wallet(pg_storage.engine, viewer.user_id) == (90, 90)
    assert await settled_wallet(pg_storage.engine, host_id, 10) == (10, 10)


async def _flag(event: asyncio.Event) -> bool:
    return event.is_set()


# --- 4. races ------------------------------------------------------------------------------------------


async def test_hot_stream_race_charges_exactly_what_each_sender_can_afford(edge: Edge) -> None:
    """150 REST calls released at once on one stream: 20 senders x 5 who can afford 3 each, and one
    sender firing 50 who can afford 20. Exactly the affordable ones succeed; the rest get the 409."""
    host_id, stream_id, crowd = await hot_stream(edge.storage, edge.keys, senders=20, coins=3 * PRICE)
    rich = await create_user(edge.storage, coins=20 * PRICE)
    racer = Sender(rich["id"], edge_token(edge.keys, rich["id"]))
    calls: list[tuple[Sender, str | None]] = []
    for round_ in range(5):
        calls += [(sender, f"{sender.user_id}-{round_}") for sender in crowd]
        calls += [(racer, None)] * 10  # the racer sends without a key: 50 distinct superlikes
    start = threading.Barrier(len(calls))

    def fire(call: tuple[Sender, str | None]) -> Sent:
        start.wait(30)
        return send(edge.http_port, stream_id, call[0], call[1])

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        sent = await asyncio.to_thread(lambda: list(pool.map(fire, calls)))

    assert [s for s in sent if not (s.status == 200 or (s.status == 409 and s.error_message() == INSUFFICIENT))] == []
    outcomes = Counter((s.sender_id, s.status) for s in sent)
    assert {sender: (outcomes[(sender.user_id, 200)], outcomes[(sender.user_id, 409)]) for sender in crowd} == {
        sender: (3, 2) for sender in crowd
    }
    assert (outcomes[(racer.user_id, 200)], outcomes[(racer.user_id, 409)]) == (20, 30)
    # Each success saw its own debit: the balances after are all distinct, down to zero.
    racer_balances = sorted(int(s.document()["senderBalance"]) for s in sent if s.ok and s.sender_id == racer.user_id)
    assert racer_balances == list(range(0, 20 * PRICE, PRICE))
    stored = await assert_books_balance(
        edge.storage,
        stream_id,
        host_id,
        {**{s.user_id: 3 * PRICE for s in crowd}, racer.user_id: 20 * PRICE},
        PRICE,
        sent,
    )
    assert len(stored) == 80
    assert await settled_wallet(edge.engine, host_id, 800) == (800, 800)
    status, report = await asyncio.to_thread(cli_audit, edge.stack.config.database_url)
    assert (status, report["ok"], report["problems"]) == (0, True, [])
