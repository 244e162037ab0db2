"""gRPC callers through the same Envoy listener and directly, including the real grpcurl binary."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from devstack.stack import Stack
from tests.api.conftest import error_of
from tests.conftest import SigningKeys
from tests.e2e.conftest import Edge, stack_config
from tests.e2e.http_client import assert_envelope, request
from tests.support import build_world

pytestmark = pytest.mark.e2e

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
METHOD = "allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike"


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("through", ["envoy", "direct"])
async def test_grpcurl_lists_services_and_sends_a_superlike(edge: Edge, through: str) -> None:
    port = edge.http_port if through == "envoy" else edge.grpc_port
    listed = grpcurl(f"127.0.0.1:{port}", "list")
    assert listed.returncode == 0, listed.stderr
    assert "allmine.livestream.chat.v1.LiveStreamChat" in listed.stdout.split()
    world = await build_world(edge.storage, coins=100)
    sent = grpcurl(
        "-H",
        f"authorization: Bearer {edge.token_for(world.viewer_id)}",
        "-d",
        json.dumps({"stream_id": world.stream_id}),
        f"127.0.0.1:{port}",
        METHOD,
    )
    assert sent.returncode == 0, sent.stderr
    response = json.loads(sent.stdout)
    assert (response["stream_id"], response["sender_id"], response["price"]) == (world.stream_id, world.viewer_id, 10)
    assert response["sender_snapshot"]["_id"] == world.viewer_id


async def test_grpcurl_shows_the_error_reason(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=1)
    failed = grpcurl(
        "-H",
        f"authorization: Bearer {edge.token_for(world.viewer_id)}",
        "-d",
        json.dumps({"stream_id": world.stream_id}),
        f"127.0.0.1:{edge.http_port}",
        METHOD,
    )
    assert failed.returncode != 0
    assert "Code: Aborted" in failed.stderr
    assert "Message: Insufficient coin balance for a superlike" in failed.stderr
    assert '"reason":"INSUFFICIENT_BALANCE"' in failed.stderr


async def test_native_grpc_through_envoy_keeps_plain_statuses_and_details(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=5)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.http_port}") as channel:
        stub = chat_grpc.LiveStreamChatStub(channel)
        request_message = chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.SendSuperlike(
                request_message, metadata=(("authorization", f"Bearer {edge.token_for(world.viewer_id)}"),), timeout=10
            )
        assert error_of(raised.value) == (
            grpc.StatusCode.ABORTED,
            "Insufficient coin balance for a superlike",
            "INSUFFICIENT_BALANCE",
        )
        # Envoy's own refusal of a missing token is a plain gRPC status too, not an HTTP envelope.
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.SendSuperlike(request_message, timeout=10)
        assert error_of(raised.value) == (grpc.StatusCode.UNAUTHENTICATED, "Authentication required", "UNAUTHENTICATED")


async def test_upstream_down_is_a_503_envelope_and_unavailable_for_grpc(
    database_url: str, signing_keys: SigningKeys, tmp_path: Path, edge: Edge
) -> None:
    # An Envoy whose upstream port has nothing listening.
    stack = Stack(stack_config(tmp_path, database_url, signing_keys))
    stack.start_envoy(wait_for_healthy_upstream=False)
    try:
        world = await build_world(edge.storage)
        token = edge.token_for(world.viewer_id)
        response = request(
            stack.config.http_port,
            "POST",
            f"/api/v1/live-stream/{world.stream_id}/chat/superlike",
            {"Authorization": f"Bearer {token}"},
        )
        assert_envelope(response, 503, "Service temporarily unavailable")
        assert b"upstream" not in response.body
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.http_port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await chat_grpc.LiveStreamChatStub(channel).SendSuperlike(
                    chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id),
                    metadata=(("authorization", f"Bearer {token}"),),
                    timeout=10,
                )
            assert error_of(raised.value) == (
                grpc.StatusCode.UNAVAILABLE,
                "Service temporarily unavailable",
                "UNAVAILABLE",
            )
    finally:
        stack.stop()


async def test_envoys_own_refusals_carry_the_servers_error_model(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=100)
    token = (("authorization", f"Bearer {edge.token_for(world.viewer_id)}"),)
    request_message = chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.http_port}") as channel:
        stub = chat_grpc.LiveStreamChatStub(channel)
        for metadata in ((), (("authorization", "Bearer garbage"),), (("authorization", "Basic dXNlcjpwYXNz"),)):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.SendSuperlike(request_message, metadata=metadata, timeout=10)
            assert error_of(raised.value) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "Authentication required",
                "UNAUTHENTICATED",
            )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await channel.unary_unary("/no.such.Service/Method")(b"", metadata=token, timeout=10)
        assert error_of(raised.value) == (grpc.StatusCode.UNIMPLEMENTED, "Unknown service or method", "UNKNOWN_METHOD")
        # The scheme in any case, as for REST callers.
        response = await stub.SendSuperlike(
            request_message, metadata=(("authorization", f"bearer {edge.token_for(world.viewer_id)}"),), timeout=10
        )
        assert response.sender_id == world.viewer_id


async def test_grpcurl_shows_envoys_refusal_details(edge: Edge) -> None:
    world = await build_world(edge.storage)
    failed = grpcurl("-d", json.dumps({"stream_id": world.stream_id}), f"127.0.0.1:{edge.http_port}", METHOD)
    assert failed.returncode != 0
    assert "Code: Unauthenticated" in failed.stderr
    assert "Message: Authentication required" in failed.stderr
    assert (
        '{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"livestream.allmine.app",'
        '"reason":"UNAUTHENTICATED"}'
    ) in failed.stderr


async def test_a_quiet_connection_through_envoy_outlives_many_keepalive_pings(
    database_url: str, signing_keys: SigningKeys, tmp_path: Path, edge: Edge
) -> None:
    # A second Envoy in front of the edge's server that pings its upstream connection every second.
    config = stack_config(tmp_path, database_url, signing_keys)
    config.grpc_port = edge.grpc_port
    config.socket_dir = edge.stack.config.edge_socket_dir  # the connection it keeps is the socket's
    config.envoy_overrides = {"upstream_keepalive_seconds": 1}
    stack = Stack(config)
    stack.start_envoy()
    try:
        world = await build_world(edge.storage, coins=100)
        metadata = (("authorization", f"Bearer {edge.token_for(world.viewer_id)}"),)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{config.http_port}") as channel:
            stub = chat_grpc.LiveStreamChatStub(channel)
            await stub.SendSuperlike(chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id), metadata=metadata)
            # A long-lived stream that sends nothing after its first message keeps the connection quiet.
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            await asyncio.sleep(10)  # ~10 pings; gRPC used to GOAWAY after 3 that came "too often"
            assert not watch.done()
            response = await stub.SendSuperlike(
                chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id), metadata=metadata, timeout=10
            )
            assert response.sender_balance == 80
            watch.cancel()
        stats = (
            urllib.request.urlopen(
                f"http://127.0.0.1:{config.admin_port}/stats?filter=upstream_cx_close_notify", timeout=5
            )
            .read()
            .decode()
        )
        assert "cluster.livestream_chat.upstream_cx_close_notify: 0" in stats
    finally:
        stack.stop()


async def test_the_access_log_shows_the_real_grpc_status_or_none(edge: Edge) -> None:
    marker = f"/api/v1/no-such-route-{time.monotonic_ns()}"
    assert_envelope(request(edge.http_port, "GET", marker), 404, "Resource not found")
    world = await build_world(edge.storage, coins=1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.http_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await chat_grpc.LiveStreamChatStub(channel).SendSuperlike(
                chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id, request_id=marker[-12:]),
                metadata=(("authorization", f"Bearer {edge.token_for(world.viewer_id)}"),),
                timeout=10,
            )
        with pytest.raises(grpc.aio.AioRpcError):
            await chat_grpc.LiveStreamChatStub(channel).SendSuperlike(
                chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id), timeout=10
            )
    deadline = time.monotonic() + 10
    while True:
        # Other tests log arbitrary request bytes (the edge fuzz): read the log as bytes, leniently.
        lines = [
            json.loads(line)
            for line in edge.stack.envoy_log.read_text(errors="replace").splitlines()
            if line.startswith("{")
        ]
        rest = [line for line in lines if line["path"] == marker]
        grpc_lines = [
            (line["status"], line["grpc_status"])
            for line in lines
            if line["path"] == "/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike"
            and line["protocol"] == "HTTP/2"
        ]
        logged = (200, 10) in grpc_lines and (200, 16) in grpc_lines
        if (rest and logged) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert [(line["method"], line["status"], line["grpc_status"]) for line in rest] == [
        ("GET", 404, None)
    ]  # REST: no gRPC status
    assert (200, 10) in grpc_lines  # the server's ABORTED
    assert (200, 16) in grpc_lines  # Envoy's own UNAUTHENTICATED
