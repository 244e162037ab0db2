"""`livechat serve --workers 2` on PostgreSQL behind Envoy, the way production runs it.

Envoy reaches each worker on its own Unix socket (least request); direct gRPC callers share the TCP
port (SO_REUSEPORT). Both workers serve, each one's group commit and settlement run side by side on
one database without charging twice or losing a credit, the live feed crosses workers, and the
supervisor restarts a killed worker while Envoy routes around it, then stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from devstack.stack import Stack
from server.adapters.storage import Storage
from tests.conftest import SigningKeys
from tests.e2e.conftest import stack_config
from tests.e2e.credentials import bearer_metadata, edge_token
from tests.e2e.money import Sender, Sent, assert_books_balance, cli_audit, send, send_all
from tests.e2e.sse_client import EventStream, events_path
from tests.support import create_stream, create_user, migrated_storage, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PRICE = 10
COINS = 100_000


@dataclass
class Workers:
    stack: Stack
    storage: Storage
    keys: SigningKeys

    def log(self) -> list[dict]:
        return [json.loads(line) for line in self.stack.server_log.read_text().splitlines() if line.startswith("{")]

    def served_by(self, request_id_prefix: str) -> Counter[int]:
        """SendSuperlike calls per worker, of those whose request id starts with the prefix."""
        return Counter(
            line["worker"]
            for line in self.log()
            if line["logger"] == "server.rpc"
            and line["method"] == "SendSuperlike"
            and line["request_id"].startswith(request_id_prefix)
        )

    def serving_pids(self) -> dict[int, int]:
        """Each worker's pid, once the supervisor has heard from that process that it serves."""
        started: dict[int, int] = {}
        serving: dict[int, int] = {}
        for line in self.log():
            if line["logger"] != "server.workers.supervisor" or not line["message"].startswith("worker "):
                continue
            words = line["message"].split()
            if words[2:4] == ["started", "(pid"]:
                started[int(words[1])] = int(words[4].rstrip(")"))
            elif words[2] == "serving":
                serving[int(words[1])] = started[int(words[1])]
        return serving


@pytest.fixture
def workers_database_url(postgres_url: str, separate_database: Callable[[str], str]) -> str:
    return separate_database(postgres_url)


@pytest_asyncio.fixture
async def workers(
    workers_database_url: str, signing_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Workers]:
    async with migrated_storage(workers_database_url) as storage:
        config = stack_config(tmp_path_factory.mktemp("workers"), workers_database_url, signing_keys)
        config.workers = 2
        config.extra_server_env |= {"LIVECHAT_LOG_FORMAT": "json", "LIVECHAT_FEED_PING_SECONDS": "1"}
        stack = Stack(config)
        await asyncio.to_thread(stack.start)
        try:
            yield Workers(stack, storage, signing_keys)
        finally:
            await asyncio.to_thread(stack.stop)


async def hot_stream(workers: Workers, senders: int) -> tuple[str, str, list[Sender]]:
    host = await create_user(workers.storage)
    stream = await create_stream(workers.storage, host["id"], price=PRICE)
    viewers = [await create_user(workers.storage, coins=COINS) for _ in range(senders)]
    return host["id"], stream["id"], [Sender(v["id"], edge_token(workers.keys, v["id"])) for v in viewers]


async def direct_send(port: int, stream_id: str, sender: Sender, key: str, request_id: str) -> str:
    """One SendSuperlike straight to the TCP port, on a connection of its own (no shared subchannel),
    so the kernel picks a worker for it afresh."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        response = await chat_grpc.LiveStreamChatStub(channel).SendSuperlike(
            chat_pb2.SendSuperlikeRequest(stream_id=stream_id, request_id=key),
            metadata=(*bearer_metadata(sender.token), ("x-request-id", request_id)),
            timeout=10,
        )
    return response.superlike_id


def _answer(stream_id: str, sender_id: str, superlike_id: str) -> dict:
    """What a REST answer for a direct call would have said (assert_books_balance reads these fields)."""
    return {"streamId": stream_id, "senderId": sender_id, "price": PRICE, "superlikeId": superlike_id}


async def test_both_workers_serve_and_every_superlike_is_charged_once(workers: Workers) -> None:
    host_id, stream_id, senders = await hot_stream(workers, senders=8)
    port = workers.stack.config.http_port
    calls = [(senders[i % len(senders)], unique_name("rest")) for i in range(64)]
    sent = await asyncio.to_thread(send_all, port, stream_id, calls, 16)
    assert [s for s in sent if not s.ok] == []
    # Every call again with its key, twice at once: whichever worker each lands on, it replays.
    again = await asyncio.to_thread(send_all, port, stream_id, [*calls, *calls], 16)
    assert [a.superlike_id for a in again] == [s.superlike_id for s in (*sent, *sent)]

    # Direct callers on the shared port: 24 connections, each placed on a worker by the kernel, every
    # key sent a second time on another connection.
    direct_port = workers.stack.config.grpc_port
    direct_keys = [(senders[i % len(senders)], unique_name("direct")) for i in range(24)]
    first = [await direct_send(direct_port, stream_id, s, key, f"direct-{key}") for s, key in direct_keys]
    second = [await direct_send(direct_port, stream_id, s, key, f"direct-{key}") for s, key in direct_keys]
    assert first == second
    direct = [
        Sent(s.user_id, key, 200, json.dumps(_answer(stream_id, s.user_id, superlike_id)).encode(), 0.0)
        for (s, key), superlike_id in zip(direct_keys, first, strict=True)
    ]

    # Envoy sends calls to both workers' sockets, the kernel spreads direct connections over both.
    through_envoy = workers.served_by("") - workers.served_by("direct-")  # Envoy sets every request id
    assert set(through_envoy) == {0, 1}
    assert set(workers.served_by("direct-")) == {0, 1}

    # One superlike per key, each fully booked, balances and the host's settled credit exact.
    stored = await assert_books_balance(
        workers.storage, stream_id, host_id, {s.user_id: COINS for s in senders}, PRICE, [*sent, *direct]
    )
    assert len(stored) == len(calls) + len(direct_keys)
    status, report = await asyncio.to_thread(cli_audit, workers.stack.config.database_url)
    assert (status, report["ok"], report["problems"]) == (0, True, [])


async def _feed_on(socket_path: Path, stream_id: str, token: str) -> tuple[grpc.aio.Channel, grpc.aio.UnaryStreamCall]:
    channel = grpc.aio.insecure_channel(f"unix:{socket_path}")
    call = chat_grpc.LiveStreamChatStub(channel).StreamSuperlikes(
        chat_pb2.StreamSuperlikesRequest(stream_id=stream_id), metadata=bearer_metadata(token)
    )
    await asyncio.wait_for(call.initial_metadata(), 10)
    return channel, call


async def test_the_live_feed_carries_a_superlike_sent_to_one_worker_to_subscribers_of_the_other(
    workers: Workers,
) -> None:
    _, stream_id, (viewer,) = await hot_stream(workers, senders=1)
    sockets = workers.stack.config.worker_sockets()
    # The test connects to each worker's socket itself (it runs as the server's user, like Envoy).
    feeds = [await _feed_on(path, stream_id, viewer.token) for path in sockets]
    stubs = [chat_grpc.LiveStreamChatStub(channel) for channel, _ in feeds]
    with EventStream(
        workers.stack.config.http_port, events_path(stream_id), {"Authorization": f"Bearer {viewer.token}"}
    ) as sse:
        assert sse.status == 200
        try:
            sent = []
            for stub in (stubs[1], stubs[0], stubs[1], stubs[0]):
                response = await stub.SendSuperlike(
                    chat_pb2.SendSuperlikeRequest(stream_id=stream_id),
                    metadata=bearer_metadata(viewer.token),
                    timeout=10,
                )
                sent.append(response.superlike_id)
            received = [
                [(await asyncio.wait_for(call.read(), 10)).superlike.superlike_id for _ in sent] for _, call in feeds
            ]
            over_sse = []
            while len(over_sse) < len(sent):
                event = await asyncio.to_thread(sse.next)
                assert event is not None
                if event.event == "superlike":
                    over_sse.append(dict(event.json())["superlikeId"])
        finally:
            for channel, call in feeds:
                call.cancel()
                await channel.close()
    assert received == [sent, sent]
    assert over_sse == sent


def _send_until_answered(port: int, stream_id: str, sender: Sender) -> Sent:
    """A REST superlike retried with its key until answered (its worker may be the one killed)."""
    key = uuid.uuid4().hex
    for _ in range(200):
        outcome = send(port, stream_id, sender, key)
        if outcome.ok:
            return outcome
        assert outcome.status in (None, 503), outcome
        time.sleep(0.05)
    raise AssertionError("never answered")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"


async def test_a_killed_worker_is_restarted_while_envoy_routes_around_it_and_sigterm_stops_all(
    workers: Workers,
) -> None:
    host_id, stream_id, senders = await hot_stream(workers, senders=4)
    port = workers.stack.config.http_port
    killed = workers.serving_pids()[1]
    os.kill(killed, signal.SIGKILL)
    sent = [await asyncio.to_thread(_send_until_answered, port, stream_id, senders[i % 4]) for i in range(20)]

    deadline = time.monotonic() + 30
    while workers.serving_pids()[1] == killed:
        assert time.monotonic() < deadline, "worker 1 was not restarted"
        await asyncio.sleep(0.1)
    restarted = workers.serving_pids()[1]
    assert _alive(restarted) and _alive(workers.serving_pids()[0])
    # Envoy sees the restarted worker's socket healthy again and sends it calls.
    await asyncio.to_thread(workers.stack.wait_until_upstream_healthy)
    before = workers.served_by("")[1]
    deadline = time.monotonic() + 30
    while workers.served_by("")[1] == before:
        assert time.monotonic() < deadline, "the restarted worker got no call"
        sent.append(await asyncio.to_thread(_send_until_answered, port, stream_id, senders[len(sent) % 4]))

    await assert_books_balance(workers.storage, stream_id, host_id, {s.user_id: COINS for s in senders}, PRICE, sent)

    # SIGTERM to the parent: both workers shut down gracefully, the parent exits 0, the sockets go.
    parent = workers.stack.server
    assert parent is not None
    pids = list(workers.serving_pids().values())
    parent.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(parent.wait, 30) == 0
    assert not any(_alive(pid) for pid in pids)
    assert [path.exists() for path in workers.stack.config.worker_sockets()] == [False, False]
    stopped = [line.get("worker") for line in workers.log() if line["message"] == "stopped"]
    assert sorted(stopped[-2:]) == [0, 1]
