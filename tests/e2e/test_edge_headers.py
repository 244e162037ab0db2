"""What the edge lets through to the server and back, on its fast routes (no error_envelope.lua) and on
the routes that keep it: a stand-in gRPC server (real grpc.aio, behind the real Envoy) answers each
superlike with the names of the metadata it received, so the test sees exactly what crossed the edge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from tests.conftest import SigningKeys
from tests.e2e.conftest import Edge
from tests.e2e.http_client import assert_envelope, raw_request, request, superlike_path
from tests.e2e.stand_in import edge_in_front_of

pytestmark = pytest.mark.e2e

FORGED = {
    "X-User-Id": "b" * 24,
    "X-Forwarded-User": "b" * 24,
    "X-Jwt-Payload": "e30",
    "X-Envoy-Internal": "true",
    "X-Envoy-Original-Path": "/somewhere/else",
    "X-Envoy-Livechat-Protocol": "HTTP/2",
}


class Echo(chat_grpc.LiveStreamChatServicer):
    """Answers with the metadata it received: names (sorted, comma-separated) as the sender id, the
    authorization value as the username, the x-envoy-original-path value as the photo."""

    async def SendSuperlike(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        metadata = dict(context.invocation_metadata())
        return chat_pb2.SendSuperlikeResponse(
            stream_id=request.stream_id,
            sender_id=",".join(sorted(metadata)),
            sender_snapshot=chat_pb2.SenderSnapshot(
                username=metadata.get("authorization", ""),
                profile_photo=metadata.get("x-envoy-original-path", ""),
            ),
        )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def echo_edge(
    database_url: str, signing_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[int]:
    async with edge_in_front_of(Echo(), tmp_path_factory.mktemp("echo"), database_url, signing_keys) as http_port:
        yield http_port


def _received(document: dict) -> set[str]:
    return set(document["senderId"].split(","))


def _assert_nothing_forged_arrived(received: set[str]) -> None:
    assert not received & {"x-user-id", "x-forwarded-user", "x-jwt-payload", "x-envoy-internal"}
    assert "x-envoy-livechat-protocol" not in received  # the edge's own note stays at the edge


@pytest.mark.parametrize(
    ("case", "scheme", "query"),
    [
        ("fast route", "Bearer", ""),
        ("with error_envelope.lua: the scheme", "bEaReR", ""),
        ("with error_envelope.lua: a query", "Bearer", "?streamId=" + "c" * 24),
    ],
)
async def test_a_rest_call_reaches_the_server_without_forged_or_grpc_metadata(
    echo_edge: int, edge: Edge, case: str, scheme: str, query: str
) -> None:
    token = edge.token_for("a" * 24)
    headers = {
        **FORGED,
        "Authorization": f"{scheme} {token}",
        "Idempotency-Key": "k-1",
        "Grpc-Timeout": "1n",
        "X-Foo-Bin": "AAAA",
    }
    response = await asyncio.to_thread(request, echo_edge, "POST", superlike_path("s" * 24) + query, headers)
    assert response.status == 200, response.body
    assert not any(name.startswith(("grpc-", "x-envoy-")) for name in response.headers)
    document = response.json()
    received = _received(document)
    _assert_nothing_forged_arrived(received)
    assert "idempotency-key" in received
    assert not any(name.startswith("grpc-") and name != "grpc-accept-encoding" for name in received)
    assert "grpc-timeout" not in received and "x-foo-bin" not in received
    assert document["senderSnapshot"]["username"] == f"Bearer {token}"
    assert document["streamId"] == "s" * 24
    # The transcoder names the REST path; a client's own value never survives, nor does a query.
    assert document["senderSnapshot"]["profilePhoto"] == superlike_path("s" * 24)


@pytest.mark.parametrize(("case", "scheme"), [("fast route", "Bearer"), ("with error_envelope.lua", "bearer")])
async def test_a_grpc_call_reaches_the_server_without_forged_metadata(
    echo_edge: int, edge: Edge, case: str, scheme: str
) -> None:
    token = edge.token_for("a" * 24)
    metadata = (
        ("authorization", f"{scheme} {token}"),
        *((name.lower(), value) for name, value in FORGED.items()),
        ("idempotency-key", "k-2"),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{echo_edge}") as channel:
        reply = await chat_grpc.LiveStreamChatStub(channel).SendSuperlike(
            chat_pb2.SendSuperlikeRequest(stream_id="s" * 24), metadata=metadata, timeout=10
        )
    received = set(reply.sender_id.split(","))
    _assert_nothing_forged_arrived(received)
    assert "x-envoy-original-path" not in received
    assert "idempotency-key" in received
    assert reply.sender_snapshot.username == f"Bearer {token}"


async def test_the_protocol_note_cannot_be_forged(echo_edge: int, edge: Edge) -> None:
    # gRPC needs HTTP/2: over HTTP/1.1 it is refused, whatever the request claims about itself.
    token = edge.token_for("a" * 24)
    response = await asyncio.to_thread(
        raw_request,
        echo_edge,
        b"POST",
        b"/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike",
        [
            (b"Authorization", f"Bearer {token}".encode()),
            (b"Content-Type", b"application/grpc"),
            (b"X-Envoy-Livechat-Protocol", b"HTTP/2"),
            (b"TE", b"trailers"),
        ],
        b"\x00\x00\x00\x00\x00",
    )
    assert_envelope(response, 400, "Validation failed")
