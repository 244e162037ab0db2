"""Remembered tokens still expire on time and are re-verified after the cache window."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from server.auth.jwks import JwksKeySet
from server.auth.tokens import VERIFIED_CACHE_SECONDS, TokenPolicy, TokenVerifier
from server.domain.errors import Unauthenticated

T0 = 2_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": "k", "use": "sig", "alg": "RS256"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return private, path


async def test_a_remembered_token_is_refused_once_it_expires(key: tuple) -> None:
    private, path = key
    keys = JwksKeySet(str(path))
    await keys.load()
    clock = Clock()
    verifier = TokenVerifier(TokenPolicy("iss", "aud", leeway_seconds=0), keys, clock=clock)
    token = jwt.encode(
        {"sub": "a" * 24, "iss": "iss", "aud": "aud", "exp": T0 + 10},
        private,
        algorithm="RS256",
        headers={"kid": "k"},
    )
    # PyJWT checks exp against the real clock, so the token is minted far in the future (T0 ~ 2033).
    assert await verifier.subject_of(token) == "a" * 24
    clock.now = T0 + 9
    assert await verifier.subject_of(token) == "a" * 24
    clock.now = T0 + 10
    with pytest.raises(Unauthenticated):
        await verifier.subject_of(token)


async def test_the_cache_window_forces_a_fresh_verification(key: tuple, tmp_path: Path) -> None:
    private, path = key
    # ttl 0: every lookup that reaches the key set re-reads the JWKS file.
    keys = JwksKeySet(str(path), ttl_seconds=0, min_refresh_interval_seconds=0)
    await keys.load()
    clock = Clock()
    verifier = TokenVerifier(TokenPolicy("iss", "aud"), keys, clock=clock)
    token = jwt.encode(
        {"sub": "a" * 24, "iss": "iss", "aud": "aud", "exp": T0 + 3600},
        private,
        algorithm="RS256",
        headers={"kid": "k"},
    )
    assert await verifier.subject_of(token) == "a" * 24
    # The identity provider rotates its key: kid "k" leaves the JWKS.
    rotated = json.loads(
        RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    )
    rotated.update({"kid": "k2", "use": "sig", "alg": "RS256"})
    path.write_text(json.dumps({"keys": [rotated]}))
    # Within the window the token is still remembered ...
    clock.now = T0 + VERIFIED_CACHE_SECONDS - 1
    assert await verifier.subject_of(token) == "a" * 24
    # ... and after it the token must verify again, which it no longer can.
    clock.now = T0 + VERIFIED_CACHE_SECONDS + 1
    with pytest.raises(Unauthenticated):
        await verifier.subject_of(token)
