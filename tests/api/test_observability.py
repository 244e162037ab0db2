"""What operators see of a running server: its Prometheus endpoint moves by exactly what was sent,
and every call leaves one log line with no credential in it."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.adapters.storage import Storage
from server.api.rpc_observer import (
    RpcObserver,
    RpcRecord,
    call_metadata,
    finish_call,
    finish_call_of,
    note_caller,
    note_refusal,
)
from server.app import RunningServer, start_server
from server.config import load_settings
from server.observability.logs import JsonFormatter
from tests.conftest import SigningKeys, server_env
from tests.support import build_world, claims_for, migrated_storage, sign

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Observed:
    server: RunningServer
    stub: chat_grpc.LiveStreamChatStub
    storage: Storage
    keys: SigningKeys

    def token_for(self, user_id: str) -> str:
        return sign(claims_for(user_id), self.keys.rsa_private)

    async def scrape(self) -> Samples:
        url = f"http://127.0.0.1:{self.server.metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        }

    async def send(self, stream_id: str, token: str, request_id: str = "", request_tag: str = "") -> None:
        metadata = [("authorization", f"Bearer {token}")]
        if request_tag:
            metadata.append(("x-request-id", request_tag))
        request = chat_pb2.SendSuperlikeRequest(stream_id=stream_id, request_id=request_id)
        try:
            await self.stub.SendSuperlike(request, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError:
            pass  # refusals are part of what is counted


@pytest.fixture(scope="module")
def observed_database_url(database_url: str, separate_database: Callable[[str], str]) -> str:
    # A database of its own: the settled-credits counter must see only this server's settlements.
    return separate_database(database_url)


@pytest_asyncio.fixture(scope="module")
async def observed(observed_database_url: str, signing_keys: SigningKeys) -> AsyncIterator[Observed]:
    url = observed_database_url
    async with migrated_storage(url) as storage:
        env = {**server_env(url, signing_keys.jwks_path), "LIVECHAT_METRICS_PORT": "0"}
        running = await start_server(load_settings(env))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        try:
            yield Observed(running, chat_grpc.LiveStreamChatStub(channel), storage, signing_keys)
        finally:
            await channel.close()
            await running.stop(1)


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_counters_move_by_exactly_what_was_sent(observed: Observed) -> None:
    rich = await build_world(observed.storage, coins=100, price=10)
    poor = await build_world(observed.storage, coins=5, price=10)
    before = await observed.scrape()

    token = observed.token_for(rich.viewer_id)
    await observed.send(rich.stream_id, token, request_id="metrics-1")
    await observed.send(rich.stream_id, token, request_id="metrics-1")  # a replay: answered, not charged
    await observed.send(rich.stream_id, token)
    await observed.send(poor.stream_id, observed.token_for(poor.viewer_id))
    await observed.send(poor.stream_id, observed.token_for(poor.viewer_id))
    await observed.send(rich.stream_id, "not-a-token")
    await observed.stub.ListSuperlikes(
        chat_pb2.ListSuperlikesRequest(stream_id=rich.stream_id), metadata=[("authorization", f"Bearer {token}")]
    )
    after = await observed.scrape()

    name = "livechat_superlikes_total"
    assert _delta(before, after, name, reason="OK") == 3
    assert _delta(before, after, name, reason="INSUFFICIENT_BALANCE") == 2
    assert _delta(before, after, name, reason="UNAUTHENTICATED") == 1
    latency = "livechat_rpc_duration_seconds_count"
    assert _delta(before, after, latency, method="SendSuperlike", code="OK") == 3
    assert _delta(before, after, latency, method="SendSuperlike", code="ABORTED") == 2
    assert _delta(before, after, latency, method="SendSuperlike", code="UNAUTHENTICATED") == 1
    assert _delta(before, after, latency, method="ListSuperlikes", code="OK") == 1
    # Sent one after another, each request that reached storage was a batch of one (the refused
    # token never did).
    assert _delta(before, after, "livechat_superlike_batch_size_count") == 5
    assert _delta(before, after, "livechat_superlike_batch_size_sum") == 5
    assert after[("livechat_db_pool_connections_in_use", ())] >= 0

    for _ in range(100):  # the two charges' host credits, settled in the background
        settled = _delta(before, await observed.scrape(), "livechat_host_credits_settled_total")
        if settled == 2:
            break
        await asyncio.sleep(0.05)
    assert settled == 2
    assert (await observed.scrape())[("livechat_settlement_lag_seconds", ())] < 5


async def test_the_live_feed_subscribers_gauge_follows_the_open_feeds(observed: Observed) -> None:
    world = await build_world(observed.storage, coins=100, price=10)
    gauge = ("livechat_live_feed_subscribers", ())
    before = (await observed.scrape())[gauge]
    metadata = [("authorization", f"Bearer {observed.token_for(world.viewer_id)}")]
    calls = [
        observed.stub.StreamSuperlikes(chat_pb2.StreamSuperlikesRequest(stream_id=world.stream_id), metadata=metadata)
        for _ in range(2)
    ]
    for call in calls:
        await asyncio.wait_for(call.initial_metadata(), 10)  # subscribed
    assert (await observed.scrape())[gauge] == before + 2
    for call in calls:
        call.cancel()
    for _ in range(100):  # the server notices the cancellations
        if (await observed.scrape())[gauge] == before:
            break
        await asyncio.sleep(0.05)
    assert (await observed.scrape())[gauge] == before


async def test_one_log_line_per_call_without_credentials(observed: Observed) -> None:
    world = await build_world(observed.storage, coins=100, price=10)
    token = observed.token_for(world.viewer_id)
    lines: list[str] = []
    handler = logging.Handler()
    formatter = JsonFormatter()
    handler.emit = lambda record: lines.append(formatter.format(record))  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        await observed.send(world.stream_id, token, request_tag="req-ok-1")
        await observed.send(world.stream_id, token + "x", request_tag="req-bad-signature")
        await observed.send("not-an-id", token, request_tag=f"req {token}")
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)

    rpc_lines = [json.loads(line) for line in lines if json.loads(line)["logger"] == "server.rpc"]
    assert [
        {key: line[key] for key in ("level", "method", "code", "reason", "request_id", "caller_id")}
        for line in rpc_lines
    ] == [
        {
            "level": "INFO",
            "method": "SendSuperlike",
            "code": "OK",
            "reason": "OK",
            "request_id": "req-ok-1",
            "caller_id": world.viewer_id,
        },
        {
            "level": "INFO",
            "method": "SendSuperlike",
            "code": "UNAUTHENTICATED",
            "reason": "UNAUTHENTICATED",
            "request_id": "req-bad-signature",
            "caller_id": "",
        },
        {
            "level": "INFO",
            "method": "SendSuperlike",
            "code": "INVALID_ARGUMENT",
            "reason": "INVALID_STREAM_ID",
            "request_id": "req [token]",
            "caller_id": world.viewer_id,
        },
    ]
    assert all(isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0 for line in rpc_lines)
    assert not [line for line in lines if token.split(".")[2][:20] in line or token.split(".")[1][:20] in line]


async def test_streaming_calls_are_observed_once_when_they_end_whatever_the_handler_style() -> None:
    """The live feed's methods stream: each call is one record, taken when the stream closes, for
    handlers that yield and for handlers that write through the context."""
    records: list[RpcRecord] = []
    seen_metadata: list[tuple[str, bool]] = []

    class Feeds:
        async def Yielding(self, request: bytes, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]  # noqa: N802
            note_caller("caller-1")
            # The call's metadata as read once by the observer, the same as grpc's own.
            seen_metadata.append(
                (dict(call_metadata(context))["x-request-id"], call_metadata(context) is call_metadata(context))
            )
            for chunk in (b"a", b"b"):
                yield chunk

        async def Writing(self, request: bytes, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
            await context.write(b"c")
            note_refusal(grpc.StatusCode.UNAVAILABLE, "FEED_INTERRUPTED")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "interrupted")

        async def Endless(self, request: bytes, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]  # noqa: N802
            yield b"d"
            await asyncio.Event().wait()  # a feed nobody sends to: it ends when the client leaves

    methods = ("Yielding", "Writing", "Endless")
    observed = RpcObserver([records.append]).observe(Feeds(), methods)
    service = "test.Feeds"
    handlers = grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_stream_rpc_method_handler(getattr(observed, method)) for method in methods}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream(f"/{service}/Yielding")(b"", metadata=[("x-request-id", "r-1")])
            assert [chunk async for chunk in call] == [b"a", b"b"]
            call = channel.unary_stream(f"/{service}/Writing")(b"")
            with pytest.raises(grpc.aio.AioRpcError):
                [chunk async for chunk in call]
            call = channel.unary_stream(f"/{service}/Endless")(b"")
            assert await call.read() == b"d"
            call.cancel()  # the client leaves
            for _ in range(100):
                if len(records) == 3:
                    break
                await asyncio.sleep(0.02)
    finally:
        await server.stop(0)
    assert [(r.method, r.code, r.reason, r.request_id, r.caller_id) for r in records] == [
        ("Yielding", "OK", "OK", "r-1", "caller-1"),
        ("Writing", "UNAVAILABLE", "FEED_INTERRUPTED", "", ""),
        ("Endless", "CANCELLED", "CANCELLED", "", ""),
    ]
    assert seen_metadata == [("r-1", True)]


def test_a_calls_cached_metadata_is_read_only_for_that_call() -> None:
    """A task started inside a call inherits its record; asking about another call's context must
    give that call's own headers, never the first call's credentials."""

    class Context:
        def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
            self.metadata, self.reads = metadata, 0

        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            self.reads += 1
            return self.metadata

    first, other = Context((("authorization", "Bearer first"),)), Context((("authorization", "Bearer other"),))

    def inside_the_first_call() -> None:
        record = RpcObserver([])._begin("SendSuperlike", first)  # type: ignore[arg-type]
        assert call_metadata(first) == (("authorization", "Bearer first"),)  # type: ignore[arg-type]
        assert call_metadata(first) == (("authorization", "Bearer first"),)  # type: ignore[arg-type]
        assert first.reads == 1  # read from grpc once
        assert call_metadata(other) == (("authorization", "Bearer other"),)  # type: ignore[arg-type]
        assert "Bearer" not in repr(record)

    contextvars.copy_context().run(inside_the_first_call)


def test_a_refusal_is_recorded_once_and_before_its_status_goes_out() -> None:
    """grpc.aio sends an abort's status before the handler unwinds: the servicer ends the record
    first (finish_call), and the call's end does not record it again."""

    class Context:
        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return (("x-request-id", "req-1"),)

    observed: list[tuple[str, str, str]] = []
    observer = RpcObserver([lambda record: observed.append((record.method, record.code, record.reason))])

    def inside_a_call() -> None:
        record = observer._begin("SendSuperlike", Context())  # type: ignore[arg-type]
        note_refusal(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_STREAM_ID")
        finish_call()
        assert observed == [("SendSuperlike", "INVALID_ARGUMENT", "INVALID_STREAM_ID")]
        finish_call_of(record)  # the call's own end, as the handler unwinds
        finish_call()

    contextvars.copy_context().run(inside_a_call)
    assert observed == [("SendSuperlike", "INVALID_ARGUMENT", "INVALID_STREAM_ID")]
