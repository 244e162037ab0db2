"""Only the service's own texts reach REST clients. The real server never sends anything else, so a
stand-in gRPC server (real grpc.aio, behind the real Envoy) plays an upstream whose messages come
from a library or a proxy: each is replaced by the default text for its status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from tests.conftest import SigningKeys
from tests.e2e.conftest import Edge
from tests.e2e.http_client import assert_envelope, request, superlike_path
from tests.e2e.stand_in import edge_in_front_of

pytestmark = pytest.mark.e2e

# stream id in the path -> what the stand-in answers
ANSWERS = {
    "internal": (grpc.StatusCode.INTERNAL, "Unexpected <class 'KeyError'>: 'sender' at line 42"),
    "limit": (grpc.StatusCode.RESOURCE_EXHAUSTED, "received metadata size exceeds hard limit (21561 vs. 16384)"),
    "header": (grpc.StatusCode.INVALID_ARGUMENT, "Illegal header key: x-foo!"),
    "reset": (grpc.StatusCode.UNAVAILABLE, "upstream connect error or disconnect/reset before headers"),
    "quote": (grpc.StatusCode.NOT_FOUND, 'Live stream not found", "injected'),
    "empty": (grpc.StatusCode.ABORTED, ""),
    "known": (grpc.StatusCode.ABORTED, "Insufficient coin balance for a superlike"),
    "variant": (grpc.StatusCode.INVALID_ARGUMENT, "Only one Idempotency-Key may be sent"),
    # After the initial metadata: the status comes in trailers, not as a trailers-only answer.
    "late-known": (grpc.StatusCode.ABORTED, "Live stream is not live"),
    "late-other": (grpc.StatusCode.ABORTED, "lock timeout"),
}


class StandIn(chat_grpc.LiveStreamChatServicer):
    async def SendSuperlike(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        code, message = ANSWERS[request.stream_id]
        if request.stream_id.startswith("late-"):
            await context.send_initial_metadata(())
        await context.abort(code, message)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stand_in_edge(
    database_url: str, signing_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[int]:
    async with edge_in_front_of(
        StandIn(), tmp_path_factory.mktemp("stand-in"), database_url, signing_keys
    ) as http_port:
        yield http_port


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("internal", 500, "Internal server error"),
        ("limit", 429, "Too many requests; retry shortly"),
        ("header", 400, "Validation failed"),
        ("reset", 503, "Service temporarily unavailable"),
        ("quote", 404, "Resource not found"),
        ("empty", 409, "Request could not be processed"),
        ("known", 409, "Insufficient coin balance for a superlike"),
        ("variant", 400, "Only one Idempotency-Key may be sent"),
        ("late-known", 409, "Live stream is not live"),
        ("late-other", 409, "Request could not be processed"),
    ],
)
async def test_an_upstream_text_outside_the_table_never_reaches_a_rest_client(
    stand_in_edge: int, edge: Edge, case: str, status: int, message: str
) -> None:
    token = edge.token_for("a" * 24)
    # In a thread: the stand-in serves on this event loop.
    response = await asyncio.to_thread(
        request, stand_in_edge, "POST", superlike_path(case), {"Authorization": f"Bearer {token}"}
    )
    assert_envelope(response, status, message)
