"""Every outcome of SendSuperlike through a real gRPC channel to the production-wired server.

Written with pytest-grpc's fixtures (grpc_stub, grpc_channel), as an internal team tests a gRPC
service; tests/api/conftest.py runs the production server behind them."""

from __future__ import annotations

import re

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.domain.superlike import StreamState
from tests.api.conftest import Seeds, error_of
from tests.support import as_operator, build_world, create_stream

OBJECT_ID = re.compile(r"[0-9a-f]{24}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
Metadata = tuple[tuple[str, str], ...]


def send(
    stub: chat_grpc.LiveStreamChatStub, stream_id: str, token: str | None, request_id: str = "", metadata: Metadata = ()
) -> chat_pb2.SendSuperlikeResponse:
    """One SendSuperlike call, with `authorization: Bearer <token>` unless token is None."""
    if token is not None:
        metadata = (("authorization", f"Bearer {token}"), *metadata)
    request = chat_pb2.SendSuperlikeRequest(stream_id=stream_id, request_id=request_id)
    return stub.SendSuperlike(request, metadata=metadata, timeout=10)


def refusal(
    stub: chat_grpc.LiveStreamChatStub, stream_id: str, token: str | None, request_id: str = "", metadata: Metadata = ()
) -> tuple[grpc.StatusCode, str, str]:
    """(code, message, reason) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as raised:
        send(stub, stream_id, token, request_id, metadata)
    return error_of(raised.value)


async def test_superlike_returns_the_contract_body_and_receipt(
    grpc_stub: chat_grpc.LiveStreamChatStub, seeds: Seeds
) -> None:
    world = await build_world(seeds.storage, coins=100, price=10)
    response = send(grpc_stub, world.stream_id, seeds.token_for(world.viewer_id))
    assert response.stream_id == world.stream_id
    assert response.sender_id == world.viewer_id
    snapshot = response.sender_snapshot
    username = (await seeds.user(world.viewer_id))["username"]
    assert (snapshot.id, snapshot.username, snapshot.name, snapshot.surname, snapshot.profile_photo) == (
        world.viewer_id,
        username,
        "sample",
        "sample",
        "sample.jpg",
    )
    assert response.price == 10
    assert TIMESTAMP.fullmatch(response.timestamp)
    assert OBJECT_ID.fullmatch(response.superlike_id)
    assert response.sender_balance == 90
    assert await seeds.balance_of(world.viewer_id) == 90
    assert await seeds.balance_of(world.host_id) == 10


async def test_uppercase_stream_id_is_accepted_and_answered_in_lowercase(
    grpc_stub: chat_grpc.LiveStreamChatStub, seeds: Seeds
) -> None:
    world = await build_world(seeds.storage)
    response = send(grpc_stub, world.stream_id.upper(), seeds.token_for(world.viewer_id))
    assert response.stream_id == world.stream_id


@pytest.mark.parametrize(
    ("stream_id", "message"),
    [
        ("string", "streamId must be a 24-character hex id"),
        ("", "streamId must be a 24-character hex id"),
        ("64d15f9e2e6c8f4d5a12300", "streamId must be a 24-character hex id"),
        ("64d15f9e2e6c8f4d5a12300z", "streamId must be a 24-character hex id"),
    ],
)
async def test_malformed_stream_id_is_invalid_argument(
    grpc_stub: chat_grpc.LiveStreamChatStub, seeds: Seeds, stream_id: str, message: str
) -> None:
    world = await build_world(seeds.storage)
    assert refusal(grpc_stub, stream_id, seeds.token_for(world.viewer_id)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
        "INVALID_STREAM_ID",
    )


async def test_every_rule_refusal_has_its_code_message_and_reason_and_charges_nothing(
    grpc_stub: chat_grpc.LiveStreamChatStub, seeds: Seeds
) -> None:
    world = await build_world(seeds.storage, coins=100)
    viewer = seeds.token_for(world.viewer_id)
    assert refusal(grpc_stub, "aaaaaaaaaaaaaaaaaaaaaaaa", viewer) == (
        grpc.StatusCode.NOT_FOUND,
        "Live stream not found",
        "STREAM_NOT_FOUND",
    )
    assert refusal(grpc_stub, world.stream_id, seeds.token_for("bbbbbbbbbbbbbbbbbbbbbbbb")) == (
        grpc.StatusCode.NOT_FOUND,
        "Sender account not found",
        "SENDER_NOT_FOUND",
    )
    assert refusal(grpc_stub, world.stream_id, seeds.token_for(world.host_id)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "The host cannot send a superlike to their own live stream",
        "SENDER_IS_HOST",
    )
    await as_operator(seeds.storage, lambda admin: admin.ban(world.stream_id, world.viewer_id))
    assert refusal(grpc_stub, world.stream_id, viewer) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "You are banned from this live stream's chat",
        "SENDER_BANNED",
    )
    scheduled = await create_stream(seeds.storage, world.host_id, state=StreamState.SCHEDULED)
    assert refusal(grpc_stub, scheduled["id"], viewer) == (
        grpc.StatusCode.ABORTED,
        "Live stream is not live",
        "STREAM_NOT_LIVE",
    )
    ended = await create_stream(seeds.storage, world.host_id, state=StreamState.ENDED)
    assert refusal(grpc_stub, ended["id"], viewer) == (
        grpc.StatusCode.ABORTED,
        "Live stream is not live",
        "STREAM_NOT_LIVE",
    )
    poor = await build_world(seeds.storage, coins=9, price=10)
    assert refusal(grpc_stub, poor.stream_id, seeds.token_for(poor.viewer_id)) == (
        grpc.StatusCode.ABORTED,
        "Insufficient coin balance for a superlike",
        "INSUFFICIENT_BALANCE",
    )
    assert await seeds.balance_of(world.viewer_id) == 100
    assert await seeds.balance_of(poor.viewer_id) == 9
    assert await seeds.balance_of(world.host_id) == 0


async def test_retry_with_request_id_or_metadata_key_is_charged_once(
    grpc_stub: chat_grpc.LiveStreamChatStub, seeds: Seeds
) -> None:
    world = await build_world(seeds.storage, coins=100)
    token = seeds.token_for(world.viewer_id)
    first = send(grpc_stub, world.stream_id, token, request_id="order-1")
    assert send(grpc_stub, world.stream_id, token, request_id="order-1") == first
    assert send(grpc_stub, world.stream_id, token, metadata=(("idempotency-key", "order-1"),)) == first
    assert await seeds.balance_of(world.viewer_id) == 90


async def test_key_used_for_another_stream_is_refused_and_charges_nothing(
    grpc_stub: chat_grpc.LiveStreamChatStub, seeds: Seeds
) -> None:
    world = await build_world(seeds.storage, coins=100)
    token = seeds.token_for(world.viewer_id)
    send(grpc_stub, world.stream_id, token, request_id="order-1")
    other = await create_stream(seeds.storage, world.host_id)
    assert refusal(grpc_stub, other["id"], token, request_id="order-1") == (
        grpc.StatusCode.ABORTED,
        "Idempotency key was already used for a different request",
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert await seeds.balance_of(world.viewer_id) == 90


@pytest.mark.parametrize(
    ("request_id", "metadata", "message"),
    [
        ("a", (("idempotency-key", "b"),), "requestId and the Idempotency-Key header must match when both are sent"),
        ("", (("idempotency-key", "a"), ("idempotency-key", "b")), "Only one Idempotency-Key may be sent"),
        ("x" * 256, (), "Idempotency key must be 1 to 255 printable ASCII characters"),
    ],
)
async def test_ambiguous_or_malformed_idempotency_keys_are_invalid(
    grpc_stub: chat_grpc.LiveStreamChatStub,
    seeds: Seeds,
    request_id: str,
    metadata: tuple[tuple[str, str], ...],
    message: str,
) -> None:
    world = await build_world(seeds.storage)
    assert refusal(grpc_stub, world.stream_id, seeds.token_for(world.viewer_id), request_id, metadata) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
        "INVALID_IDEMPOTENCY_KEY",
    )
    assert await seeds.balance_of(world.viewer_id) == 100


async def test_identity_headers_a_client_can_set_are_ignored(
    grpc_stub: chat_grpc.LiveStreamChatStub, seeds: Seeds
) -> None:
    world = await build_world(seeds.storage, coins=100)
    other = await build_world(seeds.storage, coins=100)
    forged = (("x-user-id", other.viewer_id), ("x-forwarded-user", other.viewer_id), ("x-jwt-sub", other.viewer_id))
    response = send(grpc_stub, world.stream_id, seeds.token_for(world.viewer_id), metadata=forged)
    assert response.sender_id == world.viewer_id
    assert await seeds.balance_of(other.viewer_id) == 100
    assert refusal(grpc_stub, world.stream_id, None, metadata=forged) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "Authentication required",
        "UNAUTHENTICATED",
    )
    assert await seeds.balance_of(world.viewer_id) == 90


def test_health_reports_serving_and_reflection_lists_the_services(grpc_channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(grpc_channel)
    for service in ("", "allmine.livestream.chat.v1.LiveStreamChat"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(grpc_channel)
    responses = list(
        reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    )
    assert len(responses) == 1
    assert sorted(service.name for service in responses[0].list_services_response.service) == [
        "allmine.livestream.chat.v1.LiveStreamChat",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
