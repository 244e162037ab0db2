"""REST through the real Envoy to the real server: the contract's body and envelope, byte for byte."""

from __future__ import annotations

import base64
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.domain.superlike import StreamState
from tests.e2e.conftest import Edge
from tests.e2e.http_client import TIMESTAMP, Response, assert_envelope, request, superlike_path
from tests.support import as_operator, balance_of, build_world, claims_for, create_stream, sign

pytestmark = pytest.mark.e2e


def post(
    edge: Edge, stream_id: str, token: str | None, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Response:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    return request(edge.http_port, "POST", superlike_path(stream_id), all_headers, body)


async def test_success_body_is_the_contract_body_plus_receipt_fields(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=100, price=10)
    response = post(edge, world.stream_id, edge.token_for(world.viewer_id))
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert not any(name.startswith(("grpc-", "x-envoy-")) or name == "server" for name in response.headers)
    document = response.json()
    username = document["senderSnapshot"]["username"]
    expected = (  # noqa: UP031 (a JSON template: an f-string would double every brace)
        '{"streamId":"%s","senderId":"%s","senderSnapshot":{"_id":"%s","username":"%s","name":"sample",'
        '"surname":"sample","profilePhoto":"sample.jpg"},"price":10,"timestamp":"%s","superlikeId":"%s",'
        '"senderBalance":"90"}'
    ) % (world.stream_id, world.viewer_id, world.viewer_id, username, document["timestamp"], document["superlikeId"])
    assert response.body.decode() == expected
    assert TIMESTAMP.fullmatch(document["timestamp"])
    assert re.fullmatch(r"[0-9a-f]{24}", document["superlikeId"])
    assert await balance_of(edge.storage, world.host_id) == 10


async def test_a_balance_spent_to_zero_keeps_zero_in_the_body(edge: Edge) -> None:
    # The cheapest price is one coin (a free stream cannot exist); proto3 JSON would drop a zero.
    world = await build_world(edge.storage, coins=1, price=1)
    document = post(edge, world.stream_id, edge.token_for(world.viewer_id)).json()
    assert (document["price"], document["senderBalance"]) == (1, "0")


async def test_service_errors_become_the_envelope(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=100)
    viewer = edge.token_for(world.viewer_id)
    assert_envelope(post(edge, "string", viewer), 400, "streamId must be a 24-character hex id")
    assert_envelope(post(edge, "a" * 24, viewer), 404, "Live stream not found")
    assert_envelope(post(edge, world.stream_id, edge.token_for("b" * 24)), 404, "Sender account not found")
    assert_envelope(
        post(edge, world.stream_id, edge.token_for(world.host_id)),
        403,
        "The host cannot send a superlike to their own live stream",
    )
    ended = await create_stream(edge.storage, world.host_id, state=StreamState.ENDED)
    assert_envelope(post(edge, ended["id"], viewer), 409, "Live stream is not live")
    poor = await build_world(edge.storage, coins=5)
    assert_envelope(
        post(edge, poor.stream_id, edge.token_for(poor.viewer_id)), 409, "Insufficient coin balance for a superlike"
    )
    await as_operator(edge.storage, lambda admin: admin.ban(world.stream_id, world.viewer_id))
    assert_envelope(post(edge, world.stream_id, viewer), 403, "You are banned from this live stream's chat")
    assert await balance_of(edge.storage, world.viewer_id) == 100


def _unsigned(claims: dict) -> str:
    def part(document: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize(
    "case", ["none", "garbage", "expired", "wrong issuer", "wrong audience", "bad signature", "alg none", "basic"]
)
async def test_rejected_tokens_get_the_401_envelope_at_the_edge(edge: Edge, case: str) -> None:
    world = await build_world(edge.storage, coins=100)
    now = int(time.time())
    base = {"iss": "https://auth.allmine.app", "aud": "livestream.allmine.app"}
    tokens = {
        "none": None,
        "garbage": "garbage",
        "expired": sign(
            claims_for(world.viewer_id, **base, exp=now - 600, iat=now - 1200, nbf=now - 1200), edge.keys.rsa_private
        ),
        "wrong issuer": edge.token_for(world.viewer_id, iss="https://evil.example"),
        "wrong audience": edge.token_for(world.viewer_id, aud="other"),
        "bad signature": sign(claims_for(world.viewer_id, **base), edge.keys.other_rsa_private),
        "alg none": _unsigned(claims_for(world.viewer_id, **base)),
    }
    if case == "basic":
        response = post(edge, world.stream_id, None, {"Authorization": "Basic dXNlcjpwYXNz"})
    else:
        response = post(edge, world.stream_id, tokens[case])
    assert_envelope(response, 401, "Authentication required")
    assert b"Jwt" not in response.body
    assert await balance_of(edge.storage, world.viewer_id) == 100


async def test_edge_local_errors_use_the_envelope(edge: Edge) -> None:
    world = await build_world(edge.storage)
    token = edge.token_for(world.viewer_id)
    assert_envelope(request(edge.http_port, "GET", "/api/v1/nothing-here"), 404, "Resource not found")
    assert_envelope(
        request(edge.http_port, "POST", "/", {"Authorization": f"Bearer {token}"}), 404, "Resource not found"
    )
    assert_envelope(
        post(edge, world.stream_id, token, {"Content-Type": "application/json"}, b'{"streamId": '),
        400,
        "Invalid JSON request body",
    )
    assert_envelope(post(edge, world.stream_id, token, {"X-Padding": "x" * 40_000}), 431, "Request headers too large")


async def test_a_forged_identity_header_is_ignored(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=100)
    victim = await build_world(edge.storage, coins=100)
    forged = {"X-User-Id": victim.viewer_id, "X-Forwarded-User": victim.viewer_id, "X-Jwt-Payload": "e30"}
    response = post(edge, world.stream_id, edge.token_for(world.viewer_id), forged)
    assert response.json()["senderId"] == world.viewer_id
    assert_envelope(post(edge, world.stream_id, None, forged), 401, "Authentication required")
    assert await balance_of(edge.storage, victim.viewer_id) == 100


async def test_idempotency_key_is_shared_by_rest_and_grpc(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=100)
    token = edge.token_for(world.viewer_id)
    rest_first = post(edge, world.stream_id, token, {"Idempotency-Key": "rest-then-grpc"}).json()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.grpc_port}") as channel:
        stub = chat_grpc.LiveStreamChatStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        via_grpc = await stub.SendSuperlike(
            chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id, request_id="rest-then-grpc"), metadata=metadata
        )
        assert (via_grpc.superlike_id, via_grpc.timestamp) == (rest_first["superlikeId"], rest_first["timestamp"])
        grpc_first = await stub.SendSuperlike(
            chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id, request_id="grpc-then-rest"), metadata=metadata
        )
    rest_replay = post(edge, world.stream_id, token, {"Idempotency-Key": "grpc-then-rest"}).json()
    assert (rest_replay["superlikeId"], rest_replay["timestamp"]) == (grpc_first.superlike_id, grpc_first.timestamp)
    assert await balance_of(edge.storage, world.viewer_id) == 80
    other = await create_stream(edge.storage, world.host_id)
    assert_envelope(
        post(edge, other["id"], token, {"Idempotency-Key": "rest-then-grpc"}),
        409,
        "Idempotency key was already used for a different request",
    )
    assert_envelope(
        post(edge, world.stream_id, token, {"Idempotency-Key": "x" * 256}),
        400,
        "Idempotency key must be 1 to 255 printable ASCII characters",
    )


async def test_concurrent_rest_retries_with_one_key_charge_once(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=100)
    token = edge.token_for(world.viewer_id)
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(
            pool.map(lambda _: post(edge, world.stream_id, token, {"Idempotency-Key": "storm"}), range(16))
        )
    assert {r.status for r in responses} == {200}
    assert len({r.body for r in responses}) == 1
    assert await balance_of(edge.storage, world.viewer_id) == 90
