"""What the server takes on Envoy's word, through the real Envoy and the real server processes.

Envoy reaches the server on its Unix socket and passes the `sub` of the token it verified in
x-livechat-verified-sub; only there does the server rely on it. These tests show that no header a
client sends is trusted (over REST, gRPC through Envoy, or gRPC straight to the server's TCP port),
that a token Envoy refuses never reaches the server at all, that what Envoy cannot check (the
algorithm, an `iat` in the future) the server still refuses, and that the server skips the signature
on its socket only: this stack's Envoy knows a key under a kid the server holds a different key for.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from devstack.stack import DEFAULT_AUDIENCE, DEFAULT_ISSUER, Stack
from server.api.caller import EDGE_VERIFIED_SUBJECT_METADATA
from tests.api.conftest import error_of
from tests.conftest import SigningKeys
from tests.e2e.conftest import running_stack, stack_config
from tests.e2e.http_client import Response, assert_envelope, raw_request, request, superlike_path
from tests.support import World, balance_of, build_world, migrated_storage

pytestmark = pytest.mark.e2e

UNAUTHENTICATED = (grpc.StatusCode.UNAUTHENTICATED, "Authentication required", "UNAUTHENTICATED")
EDGE_ONLY_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # Envoy's key for kid "edge-only"
SERVER_ONLY_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the server's, same kid


def _jwk(private: rsa.RSAPrivateKey, kid: str, alg: str | None = "RS256") -> dict:
    document = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    document.update({"kid": kid, "use": "sig", **({"alg": alg} if alg else {})})
    return document


@dataclass
class Trust:
    stack: Stack
    keys: SigningKeys
    world: World  # a viewer with coins on a live stream
    victim: World  # someone whose coins a forged header would spend

    @property
    def http_port(self) -> int:
        return self.stack.config.http_port

    def token(self, key: object = None, alg: str = "RS256", kid: str | None = "test-rsa", **claims: object) -> str:
        now = int(time.time())
        payload = {"sub": self.world.viewer_id, "iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE}
        payload |= {"iat": now, "nbf": now, "exp": now + 600}
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not ...}
        headers = {"typ": "JWT", **({"kid": kid} if kid else {})}
        # A JWS of any JSON: PyJWT's encode refuses some claims an attacker would send.
        return jwt.api_jws.encode(json.dumps(payload).encode(), key or self.keys.rsa_private, alg, headers)

    def rpc_lines(self) -> list[dict]:
        lines = [json.loads(line) for line in self.stack.server_log.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line["logger"] == "server.rpc"]

    def rpc_lines_after(self, seen: int, count: int, timeout_s: float = 10.0) -> list[dict]:
        """The RPC lines after the first `seen`, once there are at least `count` of them. A refused
        call's line is written after its status has gone out (grpc.aio sends an abort's status before
        the handler unwinds), so it may reach the log just after the client has its answer."""
        deadline = time.monotonic() + timeout_s
        while len(lines := self.rpc_lines()[seen:]) < count:
            assert time.monotonic() < deadline, f"the server logged {len(lines)} of {count} calls"
            time.sleep(0.05)
        return lines


@pytest.fixture(scope="module")
def trust(
    sqlite_url: str,
    separate_database: Callable[[str], str],
    signing_keys: SigningKeys,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Trust]:
    url = separate_database(sqlite_url)
    directory = tmp_path_factory.mktemp("trust")
    shared = [_jwk(signing_keys.rsa_private, "test-rsa"), _jwk(signing_keys.rsa_private, "bare", alg=None)]
    edge_jwks, server_jwks = directory / "edge-jwks.json", directory / "server-jwks.json"
    edge_jwks.write_text(json.dumps({"keys": [*shared, _jwk(EDGE_ONLY_KEY, "edge-only")]}))
    server_jwks.write_text(json.dumps({"keys": [*shared, _jwk(SERVER_ONLY_KEY, "edge-only")]}))
    config = stack_config(directory, url, signing_keys)
    config.jwks_path = edge_jwks  # Envoy's (the server's own comes from LIVECHAT_JWKS below)
    config.extra_server_env |= {"LIVECHAT_JWKS": str(server_jwks), "LIVECHAT_LOG_FORMAT": "json"}

    async def seed() -> tuple[World, World]:
        async with migrated_storage(url) as storage:
            return await build_world(storage, coins=1000), await build_world(storage, coins=1000)

    world, victim = asyncio.run(seed())
    with running_stack(config) as stack:
        yield Trust(stack, signing_keys, world, victim)


def post(trust: Trust, token: str | None, headers: dict[str, str] | None = None) -> Response:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    return request(trust.http_port, "POST", superlike_path(trust.world.stream_id), all_headers)


async def balance(trust: Trust, user_id: str) -> int:
    async with migrated_storage(trust.stack.config.database_url, pool_size=1) as storage:
        return await balance_of(storage, user_id)


async def grpc_send(port: int, trust: Trust, metadata: tuple[tuple[str, str], ...]) -> chat_pb2.SendSuperlikeResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        return await chat_grpc.LiveStreamChatStub(channel).SendSuperlike(
            chat_pb2.SendSuperlikeRequest(stream_id=trust.world.stream_id), metadata=metadata, timeout=10
        )


async def grpc_refusal(port: int, trust: Trust, metadata: tuple[tuple[str, str], ...]) -> tuple:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_send(port, trust, metadata)
    return error_of(raised.value)


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


def forged(subject: str) -> tuple[str, str]:
    return (EDGE_VERIFIED_SUBJECT_METADATA, subject)


async def test_a_forged_subject_header_over_rest_never_names_the_sender(trust: Trust) -> None:
    victim = trust.victim.viewer_id
    before = await balance(trust, victim)
    for name in ("x-livechat-verified-sub", "X-Livechat-Verified-Sub", "X-LIVECHAT-VERIFIED-SUB"):
        response = post(trust, trust.token(), {name: victim})
        assert response.status == 200, response.body
        assert response.json()["senderId"] == trust.world.viewer_id
    # Sent twice, before and after the Authorization header.
    twice = raw_request(
        trust.http_port,
        b"POST",
        superlike_path(trust.world.stream_id).encode(),
        [
            (b"X-Livechat-Verified-Sub", victim.encode()),
            (b"Authorization", f"Bearer {trust.token()}".encode()),
            (b"X-Livechat-Verified-Sub", victim.encode()),
        ],
    )
    assert twice.status == 200 and twice.json()["senderId"] == trust.world.viewer_id
    # Without a token, the header is no identity at all.
    assert_envelope(post(trust, None, {"X-Livechat-Verified-Sub": victim}), 401, "Authentication required")
    assert await balance(trust, victim) == before


async def test_a_forged_subject_header_over_grpc_through_envoy_never_names_the_sender(trust: Trust) -> None:
    victim = trust.victim.viewer_id
    response = await grpc_send(trust.http_port, trust, (bearer(trust.token()), forged(victim)))
    assert response.sender_id == trust.world.viewer_id
    assert await grpc_refusal(trust.http_port, trust, (forged(victim),)) == UNAUTHENTICATED


async def test_the_subject_header_sent_straight_to_the_servers_tcp_port_is_ignored(trust: Trust) -> None:
    port, victim = trust.stack.config.grpc_port, trust.victim.viewer_id
    before = await balance(trust, victim)
    response = await grpc_send(port, trust, (bearer(trust.token()), forged(victim)))
    assert response.sender_id == trust.world.viewer_id
    assert await grpc_refusal(port, trust, (forged(victim),)) == UNAUTHENTICATED
    forged_signature = trust.token(key=trust.keys.other_rsa_private, sub=victim)
    assert await grpc_refusal(port, trust, (bearer(forged_signature), forged(victim))) == UNAUTHENTICATED
    assert await balance(trust, victim) == before


def _unsigned(claims: dict) -> str:
    def part(document: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


# Tokens Envoy refuses: each of the server's own rules, enforced at the edge.
REFUSED_AT_THE_EDGE: dict[str, Callable[[Trust], str]] = {
    "expired past the leeway": lambda t: t.token(exp=int(time.time()) - 60),
    "not valid for another two minutes": lambda t: t.token(nbf=int(time.time()) + 120),
    "another issuer": lambda t: t.token(iss="https://evil.example"),
    "no issuer": lambda t: t.token(iss=...),
    "another audience": lambda t: t.token(aud="another-service"),
    "no audience": lambda t: t.token(aud=...),
    "no expiry": lambda t: t.token(exp=...),
    "no subject": lambda t: t.token(sub=...),
    "an empty subject": lambda t: t.token(sub=""),
    "a numeric subject": lambda t: t.token(sub=123),
    "a subject with a space": lambda t: t.token(sub="65a0 0000"),
    "a signature by a key outside the set": lambda t: t.token(key=t.keys.other_rsa_private),
    "a kid nobody published": lambda t: t.token(kid="rotated-away"),
    "alg none": lambda t: _unsigned({"sub": t.world.viewer_id, "iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE}),
}


async def test_a_token_envoy_refuses_never_reaches_the_server(trust: Trust) -> None:
    seen = len(trust.rpc_lines())
    for case, make in REFUSED_AT_THE_EDGE.items():
        token = make(trust)
        assert_envelope(post(trust, token), 401, "Authentication required")
        assert await grpc_refusal(trust.http_port, trust, (bearer(token),)) == UNAUTHENTICATED, case
    # One call that does reach the server, so its log is known to be written up to here.
    assert post(trust, trust.token()).status == 200
    lines = trust.rpc_lines_after(seen, 1)
    assert [(line["method"], line["code"]) for line in lines] == [("SendSuperlike", "OK")]


async def test_what_envoy_cannot_check_the_server_still_refuses_on_its_socket(trust: Trust) -> None:
    seen = len(trust.rpc_lines())
    cases = {
        # "bare" is published without "alg": Envoy takes any RSA algorithm with it, the server RS256 only.
        "RS384": trust.token(alg="RS384", kid="bare"),
        "PS256": trust.token(alg="PS256", kid="bare"),
        "issued in an hour": trust.token(iat=int(time.time()) + 3600),
    }
    for token in cases.values():
        assert_envelope(post(trust, token), 401, "Authentication required")
    lines = trust.rpc_lines_after(seen, len(cases))
    assert [(line["method"], line["code"], line["reason"]) for line in lines] == [
        ("SendSuperlike", "UNAUTHENTICATED", "UNAUTHENTICATED")
    ] * len(cases)


async def test_the_server_skips_the_signature_only_for_calls_on_its_socket(trust: Trust) -> None:
    # Envoy verifies kid "edge-only" with its key; the server holds another key under that kid.
    token = trust.token(key=EDGE_ONLY_KEY, kid="edge-only")
    # Twice: the second time Envoy answers from its cache of verified tokens and still passes the sub.
    for _ in range(2):
        response = post(trust, token)
        assert response.status == 200 and response.json()["senderId"] == trust.world.viewer_id
    assert await grpc_refusal(trust.stack.config.grpc_port, trust, (bearer(token),)) == UNAUTHENTICATED
    # Sent on the socket without Envoy's header (a route where Envoy verified nothing), the server
    # verifies the signature itself.
    socket_path = Path(trust.stack.config.worker_sockets()[0])
    async with grpc.aio.insecure_channel(f"unix:{socket_path}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await chat_grpc.LiveStreamChatStub(channel).SendSuperlike(
                chat_pb2.SendSuperlikeRequest(stream_id=trust.world.stream_id), metadata=(bearer(token),), timeout=10
            )
    assert error_of(raised.value) == UNAUTHENTICATED
