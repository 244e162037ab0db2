"""The production shape: two server processes on one PostgreSQL behind one Envoy. A superlike sent
through either replica reaches subscribers on both, and when one replica is killed with SIGKILL its
subscribers reconnect (to the other) with their last event id and lose nothing, repeat nothing."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
import pytest
import pytest_asyncio

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from devstack.ports import free_port
from devstack.stack import Stack
from server.adapters.storage import Storage
from tests.conftest import SigningKeys
from tests.e2e.conftest import stack_config
from tests.e2e.credentials import bearer_header, bearer_metadata, edge_token
from tests.e2e.http_client import request, superlike_path
from tests.e2e.sse_client import EventStream, events_path
from tests.support import build_world, create_user, migrated_storage

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@dataclass
class Replicas:
    stack: Stack
    storage: Storage
    keys: SigningKeys

    @property
    def ports(self) -> tuple[int, int]:
        return self.stack.config.grpc_port, self.stack.config.replica_grpc_ports[0]


@pytest.fixture
def replicas_database_url(postgres_url: str, separate_database: Callable[[str], str]) -> str:
    return separate_database(postgres_url)


@pytest_asyncio.fixture
async def replicas(
    replicas_database_url: str, signing_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Replicas]:
    url = replicas_database_url
    async with migrated_storage(url) as storage:
        config = stack_config(tmp_path_factory.mktemp("replicas"), url, signing_keys)
        config.replica_grpc_ports = (free_port(),)
        config.extra_server_env["LIVECHAT_FEED_PING_SECONDS"] = "1"
        stack = Stack(config)
        await asyncio.to_thread(stack.start)
        try:
            yield Replicas(stack, storage, signing_keys)
        finally:
            await asyncio.to_thread(stack.stop)


async def test_a_superlike_sent_through_either_replica_reaches_subscribers_on_both(replicas: Replicas) -> None:
    world = await build_world(replicas.storage, coins=1000)
    metadata = bearer_metadata(edge_token(replicas.keys, world.viewer_id))
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in replicas.ports]
    try:
        stubs = [chat_grpc.LiveStreamChatStub(channel) for channel in channels]
        calls = [
            stub.StreamSuperlikes(chat_pb2.StreamSuperlikesRequest(stream_id=world.stream_id), metadata=metadata)
            for stub in stubs
        ]
        for call in calls:
            await asyncio.wait_for(call.initial_metadata(), 10)
        sent = []
        for stub in (*stubs, *stubs):  # alternately through each replica
            response = await stub.SendSuperlike(
                chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id), metadata=metadata, timeout=10
            )
            sent.append(response.superlike_id)
        received = [[(await asyncio.wait_for(call.read(), 10)).superlike.superlike_id for _ in sent] for call in calls]
        for call in calls:
            call.cancel()
    finally:
        for channel in channels:
            await channel.close()
    assert received == [sent, sent]


@dataclass
class Follower:
    """An SSE client that reconnects with Last-Event-ID whenever its stream ends or breaks."""

    port: int
    stream_id: str
    token: str
    ids: list[str] = field(default_factory=list)
    connections: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    connected: threading.Event = field(default_factory=threading.Event)
    last_event_id: str | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            headers = bearer_header(self.token)
            if self.last_event_id is not None:
                headers["Last-Event-ID"] = self.last_event_id
            try:
                with EventStream(self.port, events_path(self.stream_id), headers, timeout_s=5) as feed:
                    if feed.status != 200:
                        time.sleep(0.2)
                        continue
                    self.connections += 1
                    self.connected.set()
                    while not self.stop.is_set():
                        event = feed.next()
                        if event is None:
                            break
                        if event.event == "superlike":
                            self.ids.append(dict(event.json())["superlikeId"])
                            self.last_event_id = event.id
            except (OSError, http.client.HTTPException):
                time.sleep(0.2)


def send_until_answered(port: int, stream_id: str, token: str) -> str:
    """A superlike over REST, retried with its key until answered (a replica may die mid-request)."""
    key = uuid.uuid4().hex
    for _ in range(100):
        try:
            response = request(
                port, "POST", superlike_path(stream_id), headers={**bearer_header(token), "Idempotency-Key": key}
            )
        except OSError:
            continue
        if response.status == 200:
            return response.json()["superlikeId"]
        assert response.status == 503, response.body
        time.sleep(0.1)
    raise AssertionError("never answered")


async def test_sigkill_of_a_replica_loses_nothing_for_its_subscribers(replicas: Replicas) -> None:
    world = await build_world(replicas.storage, coins=1000)
    senders = [world.viewer_id, *[(await create_user(replicas.storage, coins=1000))["id"] for _ in range(2)]]
    port = replicas.stack.config.http_port
    token = edge_token(replicas.keys, world.viewer_id)
    followers = [Follower(port, world.stream_id, token) for _ in range(4)]  # Envoy spreads them over both
    threads = [threading.Thread(target=follower.run, daemon=True) for follower in followers]
    for thread in threads:
        thread.start()
    for follower in followers:
        assert await asyncio.to_thread(follower.connected.wait, 10)

    sent: list[str] = []
    for index in range(30):
        if index == 10:
            await asyncio.to_thread(replicas.stack.kill_replica, replicas.ports[1])
        sender_token = edge_token(replicas.keys, senders[index % 3])
        sent.append(await asyncio.to_thread(send_until_answered, port, world.stream_id, sender_token))

    deadline = time.monotonic() + 20
    while any(len(follower.ids) < len(sent) for follower in followers) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for follower in followers:
        follower.stop.set()
    for thread in threads:
        await asyncio.to_thread(thread.join, 10)

    for follower in followers:
        assert follower.ids == sent  # every one, once, in the order they were answered
    assert sum(follower.connections > 1 for follower in followers) >= 1  # someone lost its replica
