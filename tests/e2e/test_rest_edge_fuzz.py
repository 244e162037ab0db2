"""A property-based fuzz of the REST edge through the real Envoy and server: any method, path bytes,
header names, sizes and values, every content type (the gRPC family included) and any body. Every
answer is the success body or the envelope with a text from the service's table, never a 5xx, and
only the path picks the stream that is charged.

Requests are written as raw HTTP/1.1 bytes so nothing is cleaned up on the way. Hypothesis runs
derandomized (the same examples on every run) and bounded, so the test is deterministic and fast.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.api.status_codes import client_messages
from tests.e2e.conftest import Edge
from tests.e2e.http_client import ENVELOPE_KEYS, TIMESTAMP, Response, raw_request
from tests.e2e.money import stored_superlikes, wallet
from tests.support import World, build_world

pytestmark = pytest.mark.e2e

MESSAGES = set(client_messages())
PRICE = 1
COINS = 1_000_000

CONTENT_TYPES = [
    b"application/json",
    b"application/json; charset=utf-8",
    b"text/plain",
    b"",
    b"*/*",
    b"application/grpc",
    b"application/grpc+proto",
    b"application/grpc+json",
    b"application/grpc-web",
    b"application/grpc-web+proto",
    b"application/grpc-web-text",
    b"APPLICATION/GRPC-WEB",
    b"Application/Grpc",
    b"application/grpcx",
    b"application/grpc;foo",
    b"application/x-protobuf",
]
METHODS = [b"POST", b"GET", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"HEAD", b"TRACE", b"FOO", b"post"]
INTERESTING_NAMES = [
    b"grpc-timeout",
    b"grpc-encoding",
    b"x-user-id",
    b"x-envoy-original-path",
    b"x-envoy-internal",
    b"te",
    b"x-foo-bin",
    b"idempotency-key",
    b"x-forwarded-for",
    b"x-request-id",
    b"X-Foo!",
    b"&q",
    b"x_user_id",
    b"upgrade",
    b"connection",
    b"accept",
    b"authorization",
]
# Framing is not the subject: the request's own Host and Content-Length are the only ones.
FRAMING = {b"host", b"content-length", b"transfer-encoding", b"expect"}
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ{}()<>@,;=\"[]?/\\é"
PAD_SIZES = [0, 0, 0, 1024, 8 * 1024, 17 * 1024, 31 * 1024, 40 * 1024]


@st.composite
def requests(draw: st.DrawFn, world: World, decoy_id: str, token: str) -> tuple[bytes, bytes, list, bytes]:
    method = draw(st.sampled_from(METHODS))
    segment = draw(
        st.one_of(
            st.just(world.stream_id.encode()),
            st.just(world.stream_id.upper().encode()),
            st.binary(min_size=0, max_size=30),
            st.sampled_from([b"%ff", b"%C3%28", b"%C0%AF", b"a%2Fb", b"..", b"%2e%2e", b"caf%C3%A9", b"%00"]),
        )
    )
    path = draw(
        st.sampled_from(
            [
                b"/api/v1/live-stream/" + segment + b"/chat/superlike",
                b"/api/v1/live-stream/" + segment + b"/chat/superlike/",
                b"/api/v1/live-stream/" + segment,
                b"/" + segment,
                b"/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike",
            ]
        )
    )
    query = draw(
        st.sampled_from(
            [
                b"",
                b"?streamId=" + decoy_id.encode(),
                b"?stream_id=" + decoy_id.encode(),
                b"?" + segment,
            ]
        )
    )
    headers = [(b"Authorization", draw(st.sampled_from([b"Bearer ", b"bearer ", b"BEARER "])) + token.encode())]
    headers.append((b"Content-Type", draw(st.sampled_from(CONTENT_TYPES))))
    names = st.one_of(
        st.sampled_from(INTERESTING_NAMES),
        st.text(TOKEN_CHARS, min_size=1, max_size=12).map(lambda name: name.encode("latin-1")),
    )
    for name, value in draw(st.lists(st.tuples(names, st.binary(max_size=40)), max_size=4)):
        if name.lower() not in FRAMING:
            headers.append((name, value))
    pad = draw(st.sampled_from(PAD_SIZES))
    if pad:
        headers.append((b"X-Pad", b"p" * pad))
    body = draw(
        st.one_of(
            st.just(b""),
            st.just(b"{}"),
            st.just(json.dumps({"streamId": decoy_id}).encode()),
            st.just(json.dumps({"stream_id": decoy_id, "requestId": "k"}).encode()),
            st.binary(max_size=60),
        )
    )
    return method, path + query, headers, body


def assert_success_or_envelope(response: Response, method: bytes, stream_id: str) -> bool:
    """True when the request was charged (a 200 naming the path's stream)."""
    assert response.status < 500, (response.status, response.body)
    assert not any(name.startswith(("grpc-", "x-envoy-")) for name in response.headers), response.headers
    if method == b"HEAD":
        return False  # no body in an answer to HEAD
    assert response.headers.get("content-type") == "application/json", (response.status, response.headers)
    if response.status == 200:
        assert response.json()["streamId"] == stream_id
        return True
    document = json.loads(response.body, object_pairs_hook=list)
    assert [key for key, _ in document] == ENVELOPE_KEYS, response.body
    envelope = dict(document)
    assert (envelope["isSuccess"], envelope["statusCode"], envelope["data"]) == (False, response.status, None)
    assert len(envelope["errors"]) == 1 and envelope["errors"][0] in MESSAGES, response.body
    assert TIMESTAMP.fullmatch(envelope["timestamp"])
    return False


async def test_any_rest_request_gets_the_success_body_or_the_envelope_and_only_the_path_picks_the_stream(
    edge: Edge,
) -> None:
    world = await build_world(edge.storage, coins=COINS, price=PRICE)
    decoy = await build_world(edge.storage, coins=0, price=PRICE)
    token = edge.token_for(world.viewer_id)
    charged = examples = 0

    @settings(
        max_examples=250,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests(world, decoy.stream_id, token))
    def one_request(example: tuple[bytes, bytes, list, bytes]) -> None:
        nonlocal charged, examples
        examples += 1
        method, target, headers, body = example
        response = raw_request(edge.http_port, method, target, headers, body)
        charged += assert_success_or_envelope(response, method, world.stream_id)

    one_request()
    assert examples >= 250
    stored = await stored_superlikes(edge.engine, world.stream_id)
    assert 0 < len(stored) <= charged  # a repeated idempotency key replays without a charge
    assert await wallet(edge.engine, world.viewer_id) == (COINS - PRICE * len(stored),) * 2
    assert await stored_superlikes(edge.engine, decoy.stream_id) == {}
