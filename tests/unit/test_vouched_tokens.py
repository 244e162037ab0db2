"""A token Envoy verified is held to the same claim policy as one the server verifies itself, and
remembered as a verified one is.

Each case is decided twice by the same TokenVerifier: in full (PyJWT, signature included; TCP callers)
and as vouched for by Envoy (server/auth/vouched.py; calls on the server's Unix socket). The two must
give the same answer, except where the vouched path is stricter (a numeric string as a time, which
Envoy's jwt_authn refuses too; a critical header extension, which no token of ours carries). The signature is what only the full path checks.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from server.auth import tokens as tokens_module
from server.auth.jwks import JwksKeySet
from server.auth.tokens import TokenPolicy, TokenVerifier
from server.domain.errors import Unauthenticated

ISSUER, AUDIENCE, SUBJECT = "https://issuer.test", "livechat", "65a0000000000000000000aa"
SECRET = "s" * 32
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(public: object, kid: str, alg: str | None) -> dict:
    algorithm = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
    document = json.loads(algorithm.to_jwk(public))
    document.update({"kid": kid, "use": "sig"})
    if alg is not None:
        document["alg"] = alg
    return document


@pytest.fixture
def verifier(tmp_path: Path) -> TokenVerifier:
    path = tmp_path / "jwks.json"
    keys = [
        _jwk(RSA_KEY.public_key(), "rsa", "RS256"),
        _jwk(EC_KEY.public_key(), "ec", "ES256"),
        # A key published without "alg", as some identity providers do: Envoy then accepts any RSA
        # algorithm with it; the server only RS256.
        _jwk(RSA_KEY.public_key(), "bare", None),
    ]
    path.write_text(json.dumps({"keys": keys}))
    policy = TokenPolicy(issuer=ISSUER, audience=AUDIENCE, leeway_seconds=30, hs256_secret=SECRET)
    return TokenVerifier(policy, JwksKeySet(str(path)))


def _claims(now: int, **overrides: object) -> dict:
    claims: dict = {"sub": SUBJECT, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600}
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not ...}


def _signed(claims: dict, key: object = RSA_KEY, alg: str = "RS256", kid: str | None = "rsa") -> str:
    # Signed as a JWS of any JSON: PyJWT's own encode refuses some of the claims an attacker or a
    # faulty identity provider could send.
    payload = json.dumps(claims).encode()
    return jwt.api_jws.encode(payload, key, algorithm=alg, headers={"typ": "JWT", **({"kid": kid} if kid else {})})


def _segment(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def _signed_with_header(claims: dict, header: dict) -> str:
    """RS256 with exactly this JOSE header (PyJWT's encode would rewrite some of it)."""
    signing_input = f"{_segment({'alg': 'RS256', 'typ': 'JWT', **header})}.{_segment(claims)}"
    signature = RSA_KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


async def _decision(check: object) -> str:
    try:
        return await check  # type: ignore[misc]
    except Unauthenticated:
        return "refused"


# case -> (token at a time, what the full verification says, what the vouched path says)
CASES = {
    "valid": (lambda now: _signed(_claims(now)), SUBJECT, SUBJECT),
    "valid ES256": (lambda now: _signed(_claims(now), EC_KEY, "ES256", "ec"), SUBJECT, SUBJECT),
    "audience in a list": (lambda now: _signed(_claims(now, aud=["other", AUDIENCE])), SUBJECT, SUBJECT),
    "expired within the leeway": (lambda now: _signed(_claims(now, exp=now - 25)), SUBJECT, SUBJECT),
    "expired past the leeway": (lambda now: _signed(_claims(now, exp=now - 31)), "refused", "refused"),
    "not yet valid within the leeway": (lambda now: _signed(_claims(now, nbf=now + 25)), SUBJECT, SUBJECT),
    "not yet valid past the leeway": (lambda now: _signed(_claims(now, nbf=now + 35)), "refused", "refused"),
    "issued in the future": (lambda now: _signed(_claims(now, iat=now + 35)), "refused", "refused"),
    "iat not a number": (lambda now: _signed(_claims(now, iat="yesterday")), "refused", "refused"),
    "exp a numeric string": (lambda now: _signed(_claims(now, exp=str(now + 600))), SUBJECT, "refused"),
    "exp a boolean": (lambda now: _signed(_claims(now, exp=True)), "refused", "refused"),
    "no exp": (lambda now: _signed(_claims(now, exp=...)), "refused", "refused"),
    "null exp": (lambda now: _signed(_claims(now, exp=None)), "refused", "refused"),
    "wrong issuer": (lambda now: _signed(_claims(now, iss="https://evil.test")), "refused", "refused"),
    "issuer not a string": (lambda now: _signed(_claims(now, iss=["https://issuer.test"])), "refused", "refused"),
    "no issuer": (lambda now: _signed(_claims(now, iss=...)), "refused", "refused"),
    "wrong audience": (lambda now: _signed(_claims(now, aud="other")), "refused", "refused"),
    "audience list with a number": (lambda now: _signed(_claims(now, aud=[AUDIENCE, 7])), "refused", "refused"),
    "empty audience list": (lambda now: _signed(_claims(now, aud=[])), "refused", "refused"),
    "no audience": (lambda now: _signed(_claims(now, aud=...)), "refused", "refused"),
    "no subject": (lambda now: _signed(_claims(now, sub=...)), "refused", "refused"),
    "empty subject": (lambda now: _signed(_claims(now, sub="")), "refused", "refused"),
    "numeric subject": (lambda now: _signed(_claims(now, sub=123)), "refused", "refused"),
    "jti not a string": (lambda now: _signed(_claims(now, jti=5)), "refused", "refused"),
    "RS384 with a key published without alg": (
        lambda now: _signed(_claims(now), alg="RS384", kid="bare"),
        "refused",
        "refused",
    ),
    "PS256 with a key published without alg": (
        lambda now: _signed(_claims(now), alg="PS256", kid="bare"),
        "refused",
        "refused",
    ),
    "a null kid": (lambda now: _signed_with_header(_claims(now), {"kid": None}), "refused", "refused"),
    "a critical extension": (
        lambda now: _signed_with_header(_claims(now), {"kid": "rsa", "crit": ["b64"], "b64": True}),
        SUBJECT,
        "refused",
    ),
    "a kid the key set does not have": (lambda now: _signed(_claims(now), kid="rotated-away"), "refused", "refused"),
    # The server's own shared secret: Envoy holds no such key, so the vouched path verifies it in full.
    "HS256 with the configured secret": (lambda now: _signed(_claims(now), SECRET, "HS256", None), SUBJECT, SUBJECT),
    "HS256 with another secret": (lambda now: _signed(_claims(now), "t" * 32, "HS256", None), "refused", "refused"),
    # Only the full path checks the signature: on the socket, that is Envoy's job.
    "signed by a key not in the set": (lambda now: _signed(_claims(now), OTHER_KEY), "refused", SUBJECT),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_vouched_path_decides_like_the_full_verification_but_for_the_signature(
    verifier: TokenVerifier, case: str
) -> None:
    make, full, vouched = CASES[case]
    # PyJWT reads the real clock: each case is built from it when it runs (and takes well under a second).
    token = make(int(time.time()))
    assert await _decision(verifier.subject_of(token)) == full
    assert await _decision(verifier.subject_vouched_for(token, SUBJECT)) == vouched


async def test_the_subject_envoy_vouched_for_must_be_the_tokens(verifier: TokenVerifier) -> None:
    with pytest.raises(Unauthenticated):
        await verifier.subject_vouched_for(_signed(_claims(int(time.time()))), "65a0000000000000000000bb")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        f"{_segment({'alg': 'RS256', 'kid': 'rsa'})}.{_segment(['not', 'an', 'object'])}.sig",
        f"{_segment({'alg': 'RS256', 'kid': 'rsa'})}.{_segment(_claims(2_000_000_000))}+.sig",  # not base64url
        f"{_segment({'alg': 'RS256', 'kid': 7})}.{_segment(_claims(2_000_000_000))}.sig",
        f"{_segment({'alg': 'none'})}.{_segment(_claims(2_000_000_000))}.",
        f"{_segment({'alg': 'RS256', 'kid': None})}.{_segment(_claims(2_000_000_000))}.sig",
        f"{_segment({'alg': 'RS256', 'kid': 'rsa', 'crit': ['b64'], 'b64': True})}.{_segment(_claims(2_000_000_000))}.sig",
    ],
)
async def test_malformed_tokens_are_refused_on_the_vouched_path(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(Unauthenticated):
        await verifier.subject_vouched_for(token, SUBJECT)


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked(verifier: TokenVerifier) -> tuple[TokenVerifier, _Clock]:
    clock = _Clock(time.time())
    return TokenVerifier(verifier._policy, verifier._keys, clock), clock


async def test_a_vouched_token_is_read_once_then_remembered(
    clocked: tuple[TokenVerifier, _Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier, clock = clocked
    token = _signed(_claims(int(clock.now)))
    assert await verifier.subject_vouched_for(token, SUBJECT) == SUBJECT
    reads = []
    monkeypatch.setattr(tokens_module, "unverified_parts", lambda t: reads.append(t) or ({}, {}))

    assert await verifier.subject_vouched_for(token, SUBJECT) == SUBJECT
    assert reads == []


async def test_a_remembered_vouched_token_still_expires_at_its_exp(clocked: tuple[TokenVerifier, _Clock]) -> None:
    verifier, clock = clocked
    issued = int(clock.now)
    token = _signed(_claims(issued, exp=issued + 40))
    assert await verifier.subject_vouched_for(token, SUBJECT) == SUBJECT

    clock.now = issued + 40 + 30 - 0.5  # exp plus the 30 s leeway, not yet passed
    assert await verifier.subject_vouched_for(token, SUBJECT) == SUBJECT
    clock.now = issued + 40 + 30
    with pytest.raises(Unauthenticated):
        await verifier.subject_vouched_for(token, SUBJECT)


async def test_a_remembered_vouched_token_is_refused_for_another_subject(
    clocked: tuple[TokenVerifier, _Clock],
) -> None:
    verifier, clock = clocked
    token = _signed(_claims(int(clock.now)))
    assert await verifier.subject_vouched_for(token, SUBJECT) == SUBJECT

    with pytest.raises(Unauthenticated):
        await verifier.subject_vouched_for(token, "65a0000000000000000000bb")


async def test_a_vouched_token_is_not_taken_as_verified_from_a_tcp_caller(
    clocked: tuple[TokenVerifier, _Clock],
) -> None:
    # Signed by a key outside the key set: Envoy's word is enough on the socket, never over TCP.
    verifier, clock = clocked
    token = _signed(_claims(int(clock.now)), OTHER_KEY)
    assert await verifier.subject_vouched_for(token, SUBJECT) == SUBJECT

    with pytest.raises(Unauthenticated):
        await verifier.subject_of(token)


async def test_the_vouched_memory_is_read_again_after_a_minute(
    clocked: tuple[TokenVerifier, _Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier, clock = clocked
    token = _signed(_claims(int(clock.now), exp=int(clock.now) + 3600))
    assert await verifier.subject_vouched_for(token, SUBJECT) == SUBJECT
    reads = []
    original = tokens_module.unverified_parts
    monkeypatch.setattr(tokens_module, "unverified_parts", lambda t: reads.append(t) or original(t))

    clock.now += 60
    assert await verifier.subject_vouched_for(token, SUBJECT) == SUBJECT
    assert reads == [token]


async def test_the_time_is_read_after_the_key_set_answers(
    clocked: tuple[TokenVerifier, _Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Finding the key may wait for the key set to be fetched: a token that expired meanwhile is refused.
    verifier, clock = clocked
    issued = int(clock.now)
    token = _signed(_claims(issued, exp=issued + 10))
    clock.now = issued + 10 + 30 - 1  # exp plus the leeway, a second before
    candidates = verifier._keys.candidates

    async def slow_candidates(kid: object, alg: object) -> object:
        clock.now += 5  # the fetch took five seconds
        return await candidates(kid, alg)

    monkeypatch.setattr(verifier._keys, "candidates", slow_candidates)

    with pytest.raises(Unauthenticated):
        await verifier.subject_vouched_for(token, SUBJECT)
