"""The JWT matrix: only a valid, unexpired token for our issuer and audience identifies a caller."""

from __future__ import annotations

import base64
import json
import time

import grpc
import jwt
import pytest

from server.api.caller import bearer_token
from server.domain.errors import Unauthenticated
from tests.api.conftest import Api
from tests.support import build_world, claims_for, sign

NOW = int(time.time())
UNAUTHENTICATED = (grpc.StatusCode.UNAUTHENTICATED, "Authentication required", "UNAUTHENTICATED")


def _unsigned(claims: dict) -> str:
    def part(document: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _hs256_with_public_key(claims: dict, public_pem: bytes) -> str:
    # PyJWT refuses to HMAC with a PEM key, so the confusion token is built by hand, as an attacker would.
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': 'test-rsa'}).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


CASES = {
    "garbage": lambda api, sub: "not-a-jwt",
    "three garbage segments": lambda api, sub: "aaa.bbb.ccc",
    "expired": lambda api, sub: sign(
        claims_for(sub, exp=NOW - 3600, iat=NOW - 7200, nbf=NOW - 7200), api.keys.rsa_private
    ),
    "not yet valid": lambda api, sub: sign(claims_for(sub, nbf=NOW + 3600, exp=NOW + 7200), api.keys.rsa_private),
    "wrong issuer": lambda api, sub: sign(claims_for(sub, iss="https://evil.example"), api.keys.rsa_private),
    "wrong audience": lambda api, sub: sign(claims_for(sub, aud="another-service"), api.keys.rsa_private),
    "no expiry": lambda api, sub: sign(claims_for(sub, exp=None), api.keys.rsa_private),
    "no subject": lambda api, sub: sign(claims_for(sub, sub=None), api.keys.rsa_private),
    "bad signature": lambda api, sub: sign(claims_for(sub), api.keys.other_rsa_private),
    "unknown kid": lambda api, sub: sign(claims_for(sub), api.keys.rsa_private, kid="rotated-away"),
    "alg none": lambda api, sub: _unsigned(claims_for(sub)),
    "hs256 signed with the rsa public key": lambda api, sub: _hs256_with_public_key(
        claims_for(sub), api.keys.rsa_public_pem
    ),
    "tampered payload": lambda api, sub: _tamper(sign(claims_for(sub), api.keys.rsa_private)),
}


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "cccccccccccccccccccccccc"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("case", sorted(CASES))
async def test_rejected_tokens_are_unauthenticated_and_charge_nothing(api: Api, case: str) -> None:
    world = await build_world(api.storage, coins=100)
    token = CASES[case](api, world.viewer_id)
    assert await api.refusal(world.stream_id, token) == UNAUTHENTICATED
    assert await api.balance_of(world.viewer_id) == 100


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Basic dXNlcjpwYXNz"),), (("authorization", "Bearer "),), (("authorization", "Bearer"),)],
)
async def test_missing_or_non_bearer_authorization_is_unauthenticated(api: Api, metadata: tuple) -> None:
    world = await build_world(api.storage)
    assert await api.refusal(world.stream_id, None, metadata=metadata) == UNAUTHENTICATED


@pytest.mark.parametrize("header", ["BEARER {token}", "bearer {token}", "BeArEr {token}", "  Bearer   {token}  "])
async def test_bearer_scheme_in_any_case_and_with_spaces_around_is_accepted(api: Api, header: str) -> None:
    world = await build_world(api.storage, coins=100)
    token = api.token_for(world.viewer_id)
    response = await api.send(world.stream_id, None, metadata=(("authorization", header.format(token=token)),))
    assert (response.sender_id, response.sender_balance) == (world.viewer_id, 90)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer{token}",
        "Bearer {token} extra",
        "Bearer {token},x",
        "Bearer {token} {token}",
        "Token {token}",
        "Bearer: {token}",
    ],
)
async def test_a_valid_token_in_a_malformed_authorization_is_unauthenticated(api: Api, header: str) -> None:
    world = await build_world(api.storage, coins=100)
    token = api.token_for(world.viewer_id)
    authorization = (("authorization", header.format(token=token)),)
    assert await api.refusal(world.stream_id, None, metadata=authorization) == UNAUTHENTICATED
    assert await api.balance_of(world.viewer_id) == 100


# gRPC clients cannot send HTAB or bytes outside printable ASCII in metadata, but a proxy in front may
# pass them on, so the parsing rule itself is checked here.
@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer\tabc.def.ghi", "abc.def.ghi"), ("\t bEaReR \t a-b_c~d+e/f== \t", "a-b_c~d+e/f==")],
)
def test_bearer_token_tolerates_http_whitespace_around_and_between(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    "header", ["Bearer\xa0abc", "\xa0Bearer abc", "Bearer abc\r\n", "Bearer\nabc", "Bearer abc=def", "Bearer ="]
)
def test_bearer_token_refuses_anything_but_http_whitespace_and_token68(header: str) -> None:
    with pytest.raises(Unauthenticated):
        bearer_token(header)


async def test_es256_tokens_from_the_jwks_are_accepted(api: Api) -> None:
    world = await build_world(api.storage)
    token = jwt.encode(claims_for(world.viewer_id), api.keys.ec_private, algorithm="ES256", headers={"kid": "test-ec"})
    assert (await api.send(world.stream_id, token)).sender_id == world.viewer_id


async def test_token_without_kid_is_matched_by_key_type(api: Api) -> None:
    world = await build_world(api.storage)
    token = sign(claims_for(world.viewer_id), api.keys.rsa_private, kid=None)
    assert (await api.send(world.stream_id, token)).sender_id == world.viewer_id
