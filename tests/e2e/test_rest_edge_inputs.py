"""Inputs at the REST edge that once crossed it wrongly: the stream comes from the path only, bytes the
server cannot read are refused at the edge, one deterministic header limit, gRPC content types over
HTTP/1.1, the auth scheme in any case. Every answer is the success body or the envelope."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Edge
from tests.e2e.http_client import Response, assert_envelope, raw_request, request, superlike_path
from tests.e2e.money import stored_superlikes, wallet
from tests.support import build_world

pytestmark = pytest.mark.e2e

GRPC_FAMILY = [
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "APPLICATION/GRPC-WEB",
    "Application/Grpc",
    "application/grpcx",
    "application/grpc",
    "application/grpc+proto",
    "application/grpc+json",
]


def assert_charged_path_stream(response: Response, stream_id: str) -> None:
    assert response.status == 200, response.body
    assert response.headers["content-type"] == "application/json"
    assert response.json()["streamId"] == stream_id


@pytest.mark.parametrize("content_type", GRPC_FAMILY)
@pytest.mark.parametrize("query_key", ["streamId", "stream_id"])
async def test_only_the_path_names_the_stream_whatever_the_content_type(
    edge: Edge, content_type: str, query_key: str
) -> None:
    world = await build_world(edge.storage, coins=100)
    decoy = await build_world(edge.storage, coins=0)
    response = request(
        edge.http_port,
        "POST",
        f"{superlike_path(world.stream_id)}?{query_key}={decoy.stream_id}",
        {"Authorization": f"Bearer {edge.token_for(world.viewer_id)}", "Content-Type": content_type},
        b"{}",
    )
    if content_type.startswith("application/grpc") and content_type[16:17] in ("", "+"):
        # gRPC content types over HTTP/1.1: gRPC needs HTTP/2, so nothing is sent anywhere.
        assert_envelope(response, 400, "Validation failed")
        assert await wallet(edge.engine, world.viewer_id) == (100, 100)
    else:
        assert_charged_path_stream(response, world.stream_id)
        assert len(await stored_superlikes(edge.engine, world.stream_id)) == 1
    assert await stored_superlikes(edge.engine, decoy.stream_id) == {}


@pytest.mark.parametrize("segment", [b"%ff", b"%C3%28", b"%C0%AF", b"%ED%A0%80", b"%F4%90%80%80", b"ok%e2%82"])
async def test_a_path_that_is_not_utf8_is_a_400(edge: Edge, segment: bytes) -> None:
    world = await build_world(edge.storage, coins=100)
    response = raw_request(
        edge.http_port,
        b"POST",
        b"/api/v1/live-stream/" + segment + b"/chat/superlike",
        [(b"Authorization", f"Bearer {edge.token_for(world.viewer_id)}".encode())],
    )
    assert_envelope(response, 400, "Validation failed")


async def test_a_utf8_stream_id_is_only_an_invalid_stream_id(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=100)
    response = raw_request(
        edge.http_port,
        b"POST",
        b"/api/v1/live-stream/caf%C3%A9/chat/superlike",
        [(b"Authorization", f"Bearer {edge.token_for(world.viewer_id)}".encode())],
    )
    assert_envelope(response, 400, "streamId must be a 24-character hex id")


@pytest.mark.parametrize("name", [b"X-Foo!", b"&q", b"X-Foo#", b"X{y}", b"X-Caf\xe9"])
async def test_a_header_name_that_is_not_grpc_metadata_is_a_400(edge: Edge, name: bytes) -> None:
    world = await build_world(edge.storage, coins=100)
    response = raw_request(
        edge.http_port,
        b"POST",
        superlike_path(world.stream_id).encode(),
        [(b"Authorization", f"Bearer {edge.token_for(world.viewer_id)}".encode()), (name, b"x")],
    )
    assert_envelope(response, 400, "Validation failed")
    assert await wallet(edge.engine, world.viewer_id) == (100, 100)


async def test_binary_metadata_from_a_rest_caller_is_dropped(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=100)
    response = raw_request(
        edge.http_port,
        b"POST",
        superlike_path(world.stream_id).encode(),
        [(b"Authorization", f"Bearer {edge.token_for(world.viewer_id)}".encode()), (b"X-Foo-Bin", b"!!not base64")],
    )
    assert_charged_path_stream(response, world.stream_id)


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR", "Bearer  "])
async def test_the_auth_scheme_is_accepted_in_any_case(edge: Edge, scheme: str) -> None:
    world = await build_world(edge.storage, coins=100)
    token = edge.token_for(world.viewer_id)
    response = request(edge.http_port, "POST", superlike_path(world.stream_id), {"Authorization": f"{scheme} {token}"})
    assert_charged_path_stream(response, world.stream_id)
    assert response.json()["senderId"] == world.viewer_id


async def test_another_scheme_is_still_401(edge: Edge) -> None:
    world = await build_world(edge.storage, coins=100)
    token = edge.token_for(world.viewer_id)
    for value in (f"Token {token}", f"Bearerx {token}", f"Basic {token}", token):
        response = request(edge.http_port, "POST", superlike_path(world.stream_id), {"Authorization": value})
        assert_envelope(response, 401, "Authentication required")


SIZES_KB = [1, 4, 8, 12, 16, 20, 24, 31, 33, 48, 64]
LIMIT_KB = 32  # Envoy's max_request_headers_kb: request line and headers together


@pytest.mark.parametrize("where", ["header", "idempotency key", "path", "query"])
async def test_one_deterministic_limit_for_headers_and_urls(edge: Edge, where: str) -> None:
    world = await build_world(edge.storage, coins=10_000, price=1)
    token = f"Bearer {edge.token_for(world.viewer_id)}".encode()
    path = superlike_path(world.stream_id).encode()
    charged = 0
    for size_kb in SIZES_KB:
        pad = b"x" * (size_kb * 1024 - 100 if size_kb < LIMIT_KB else size_kb * 1024)
        for _ in range(3):
            headers = [(b"Authorization", token)]
            target = path
            if where == "header":
                headers.append((b"X-Pad", pad))
            elif where == "idempotency key":
                headers.append((b"Idempotency-Key", pad))
            elif where == "path":
                target = b"/api/v1/live-stream/" + pad + b"/chat/superlike"
            else:
                target = path + b"?q=" + pad
            response = raw_request(edge.http_port, b"POST", target, headers)
            if size_kb > LIMIT_KB:
                assert_envelope(response, 431, "Request headers too large")
            elif where == "idempotency key":
                assert_envelope(response, 400, "Idempotency key must be 1 to 255 printable ASCII characters")
            elif where == "path":
                assert_envelope(response, 400, "streamId must be a 24-character hex id")
            else:
                assert_charged_path_stream(response, world.stream_id)
                charged += 1
    assert len(await stored_superlikes(edge.engine, world.stream_id)) == charged


@pytest.mark.parametrize(
    ("method", "path", "content_type", "status", "message"),
    [
        ("POST", "superlike", "application/grpc", 400, "Validation failed"),
        ("POST", "superlike", "application/grpc+proto", 400, "Validation failed"),
        ("PATCH", "superlike", "application/grpc-web+proto", 405, "Method not allowed"),
        ("PATCH", "superlike", "application/grpc", 405, "Method not allowed"),
        ("GET", "/api/v1/other", "application/grpc", 404, "Resource not found"),
        (
            "POST",
            "/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike",
            "application/grpc",
            400,
            "Validation failed",
        ),
        ("POST", "/api/v1/live-stream/a%2Fb/chat/superlike", "application/grpc-web", 400, "Validation failed"),
        ("POST", "/api/v1/live-stream/a%2Fb/chat/superlike", "application/grpc", 400, "Validation failed"),
        ("POST", "/api/v1/live-stream/a%5Cb/chat/superlike", "application/grpc-web", 400, "Validation failed"),
    ],
)
async def test_every_http1_answer_is_the_envelope_even_for_grpc_content_types(
    edge: Edge, method: str, path: str, content_type: str, status: int, message: str
) -> None:
    world = await build_world(edge.storage, coins=100)
    target = superlike_path(world.stream_id) if path == "superlike" else path
    response = request(
        edge.http_port,
        method,
        target,
        {"Authorization": f"Bearer {edge.token_for(world.viewer_id)}", "Content-Type": content_type},
        b"{}",
    )
    assert_envelope(response, status, message)
    assert await wallet(edge.engine, world.viewer_id) == (100, 100)


@pytest.mark.parametrize("content_type", ["application/json", "application/grpc+json", "application/grpc"])
@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/live-stream/%00/chat/superlike", 400),  # refused by Envoy itself (path normalization)
        ("superlike", 405),  # refused by the Lua filter (the route is POST only)
        ("/api/v1/other", 404),
    ],
)
async def test_a_head_request_gets_the_status_its_get_would_have_and_no_body(
    edge: Edge, path: str, status: int, content_type: str
) -> None:
    world = await build_world(edge.storage, coins=100)
    target = superlike_path(world.stream_id) if path == "superlike" else path
    headers = {"Authorization": f"Bearer {edge.token_for(world.viewer_id)}", "Content-Type": content_type}
    response = request(edge.http_port, "HEAD", target, headers)
    assert (response.status, response.body, response.headers["content-type"]) == (status, b"", "application/json")
    assert not any(name.startswith(("grpc-", "x-envoy-")) for name in response.headers)
