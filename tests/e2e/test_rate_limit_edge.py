"""The per-caller limit on SendSuperlike at the real Envoy: a caller over its burst is refused with
the envelope and Retry-After (REST) or RESOURCE_EXHAUSTED with ErrorInfo RATE_LIMITED (gRPC), one
bucket per caller shared by both ways in, nothing charged, other callers and other methods untouched."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from devstack.stack import Stack
from server.adapters.storage import Storage
from tests.api.conftest import error_of
from tests.conftest import SigningKeys
from tests.e2e.conftest import running_stack, stack_config
from tests.e2e.credentials import bearer_header, bearer_metadata, edge_token
from tests.e2e.http_client import assert_envelope, request, superlike_path
from tests.e2e.money import stored_superlikes
from tests.support import balance_of, build_world

pytestmark = pytest.mark.e2e

BURST = 3
SECONDS_PER_TOKEN = 60  # nothing refills within a test
MESSAGE = "Too many requests; retry shortly"


@pytest.fixture(scope="module")
def limited_stack(
    edge_storage: Storage, edge_database_url: str, signing_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    config = stack_config(tmp_path_factory.mktemp("limited"), edge_database_url, signing_keys)
    config.envoy_overrides = {"send_burst": BURST, "send_per_second": 1 / SECONDS_PER_TOKEN}
    with running_stack(config) as stack:
        yield stack


def _grpc_send(port: int, stream_id: str, token: str) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            chat_grpc.LiveStreamChatStub(channel).SendSuperlike(
                chat_pb2.SendSuperlikeRequest(stream_id=stream_id), metadata=bearer_metadata(token), timeout=10
            )
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            assert error_of(error) == (grpc.StatusCode.RESOURCE_EXHAUSTED, MESSAGE, "RATE_LIMITED")
            return error.code()


async def test_a_caller_over_its_burst_is_refused_on_both_transports_and_charged_nothing(
    limited_stack: Stack, edge_storage: Storage, signing_keys: SigningKeys
) -> None:
    world = await build_world(edge_storage, coins=1000, price=10)
    other = await build_world(edge_storage, coins=1000, price=10)
    token = edge_token(signing_keys, world.viewer_id)
    port = limited_stack.config.http_port

    def rest_sends(count: int, caller_token: str, stream_id: str) -> list:
        return [request(port, "POST", superlike_path(stream_id), bearer_header(caller_token)) for _ in range(count)]

    answers = await asyncio.to_thread(rest_sends, BURST + 2, token, world.stream_id)
    assert [answer.status for answer in answers] == [200] * BURST + [429, 429]
    for refused in answers[BURST:]:
        assert_envelope(refused, 429, MESSAGE)
        assert refused.headers["retry-after"] == str(SECONDS_PER_TOKEN)
    # The same caller's bucket is empty over gRPC too.
    assert await asyncio.to_thread(_grpc_send, port, world.stream_id, token) == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Another caller has a bucket of its own, and reading is never limited.
    other_token = edge_token(signing_keys, other.viewer_id)
    assert [a.status for a in await asyncio.to_thread(rest_sends, 1, other_token, other.stream_id)] == [200]
    assert await asyncio.to_thread(_grpc_send, port, other.stream_id, other_token) == grpc.StatusCode.OK
    history = await asyncio.to_thread(
        request, port, "GET", f"/api/v1/live-stream/{world.stream_id}/chat/superlikes", bearer_header(token)
    )
    assert history.status == 200 and len(history.json()["superlikes"]) == BURST

    assert await balance_of(edge_storage, world.viewer_id) == 1000 - 10 * BURST
    assert len(await stored_superlikes(edge_storage.engine, world.stream_id)) == BURST
    stats = await asyncio.to_thread(
        request, limited_stack.config.admin_port, "GET", "/stats?filter=send_rate_limit.http_local_rate_limit"
    )
    assert "send_rate_limit.http_local_rate_limit.rate_limited: 3" in stats.body.decode()
