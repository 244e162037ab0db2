"""gRPC callers through the same Envoy listener and directly, including the real grpcurl binary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

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
        "-H", f"authorization: Bearer {edge.token_for(world.viewer_id)}",
        "-d", json.dumps({"stream_id": world.stream_id}),
        f"127.0.0.1:{port}", METHOD,
    )
    assert sent.returncode == 0, sent.stderr
    response = json.loads(sent.stdout)
    assert (response["stream_id"], response["sender_id"], response["price"]) == (world.stream_id, world.viewer_id, 10)
    assert response["sender_snapshot"]["_id"] == world.viewer_id


async def test_grpcurl_shows_the_error_reason(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=1)
    failed = grpcurl(
        "-H", f"authorization: Bearer {edge.token_for(world.viewer_id)}",
        "-d", json.dumps({"stream_id": world.stream_id}),
        f"127.0.0.1:{edge.http_port}", METHOD,
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
            grpc.StatusCode.ABORTED, "Insufficient coin balance for a superlike", "INSUFFICIENT_BALANCE",
        )
        # Envoy's own refusal of a missing token is a plain gRPC status too, not an HTTP envelope.
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.SendSuperlike(request_message, timeout=10)
        assert (raised.value.code(), raised.value.details()) == (
            grpc.StatusCode.UNAUTHENTICATED, "Authentication required",
        )


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
            stack.config.http_port, "POST", f"/api/v1/live-stream/{world.stream_id}/chat/superlike",
            {"Authorization": f"Bearer {token}"},
        )
        assert_envelope(response, 503, "Service temporarily unavailable")
        assert b"upstream" not in response.body
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.http_port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await chat_grpc.LiveStreamChatStub(channel).SendSuperlike(
                    chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id),
                    metadata=(("authorization", f"Bearer {token}"),), timeout=10,
                )
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        stack.stop()
