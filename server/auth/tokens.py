"""Verification of the bearer tokens that identify callers. Knows JWTs, nothing about gRPC or HTTP."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from server.auth.jwks import JwksKeySet
from server.auth.vouched import checked_subject, key_id, unverified_parts
from server.domain.errors import Unauthenticated

log = logging.getLogger(__name__)

_ASYMMETRIC = ("RS256", "ES256")


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    issuer: str
    audience: str
    leeway_seconds: int = 30
    # HS256 is only accepted when a shared secret is configured, and never with a JWKS key: that is
    # what stops the "HS256 signed with the RSA public key" confusion attack.
    hs256_secret: str | None = None


# A client sends the same token with every call until it expires; re-verifying its signature each
# time is most of the cost of authentication. Verified tokens are remembered briefly (bounded in count
# and in time, so a key removed from the JWKS stops being honoured within a minute).
VERIFIED_CACHE_SIZE = 10_000
VERIFIED_CACHE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class _Verified:
    subject: str
    not_before: float
    expires: float
    cached_until: float


class TokenVerifier:
    def __init__(self, policy: TokenPolicy, keys: JwksKeySet, clock: object = time.time) -> None:
        self._policy = policy
        self._keys = keys
        self._clock = clock
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        # Tokens Envoy verified whose claims passed the policy here (subject_vouched_for), kept
        # apart from the ones the server verified itself: a TCP caller's token is only ever taken
        # on the server's own verification.
        self._vouched: OrderedDict[str, _Verified] = OrderedDict()

    async def subject_of(self, token: str) -> str:
        """Returns the verified `sub` claim; raises Unauthenticated with a generic message otherwise.

        Why a token failed is logged, never returned: the caller learns only that it is not accepted.
        """
        now = self._clock()  # type: ignore[operator]
        remembered = self._verified.get(token)
        if remembered is not None and now < remembered.cached_until:
            return self._still_valid(remembered, now)
        subject, claims = await self._verify(token)
        self._remember(self._verified, token, subject, claims, now)
        return subject

    async def subject_vouched_for(self, token: str, vouched_subject: str) -> str:
        """The subject of a token Envoy has verified, given the `sub` Envoy passed on: the server's
        own policy (vouched.py) minus the signature. The key that signed it must still be in the
        server's key set, and Envoy's subject must be the token's. A token whose algorithm the server
        keeps to itself (HS256 with a shared secret, which Envoy does not hold) is verified in full.

        A token that passed is remembered as a verified one is (the same bounds in count and time):
        the next call with it only compares the subject and the token's time bounds, so a key removed
        from the key set stops being honoured for it within a minute, as for a verified token."""
        now = self._clock()  # type: ignore[operator]
        remembered = self._vouched.get(token)
        if remembered is not None and now < remembered.cached_until and remembered.subject == vouched_subject:
            return self._still_valid(remembered, now)
        header, claims = unverified_parts(token)
        alg = header.get("alg")
        if alg not in _ASYMMETRIC:
            return await self.subject_of(token)
        kid = key_id(header)
        if not await self._keys.candidates(kid, alg):
            log.info("rejected edge-verified token: no %s key with kid %r", alg, kid)
            raise Unauthenticated()
        # Read again: finding the key may have waited for the key set to be fetched.
        now = self._clock()  # type: ignore[operator]
        policy = self._policy
        subject = checked_subject(
            claims, issuer=policy.issuer, audience=policy.audience, leeway=policy.leeway_seconds, now=now
        )
        if subject != vouched_subject:
            log.warning("refused: the edge vouched for subject %r, the token names %r", vouched_subject, subject)
            raise Unauthenticated()
        self._remember(self._vouched, token, subject, claims, now)
        return subject

    def _still_valid(self, remembered: _Verified, now: float) -> str:
        """A remembered token's subject while its own time bounds hold (with the leeway)."""
        leeway = self._policy.leeway_seconds
        if remembered.not_before - leeway <= now < remembered.expires + leeway:
            return remembered.subject
        raise Unauthenticated()

    @staticmethod
    def _remember(
        cache: OrderedDict[str, _Verified], token: str, subject: str, claims: dict[str, object], now: float
    ) -> None:
        expires = claims["exp"]
        not_before = claims.get("nbf", 0)
        if not isinstance(expires, int | float) or not isinstance(not_before, int | float):
            return
        # Whole seconds, as PyJWT and the vouched policy read them.
        cache[token] = _Verified(subject, int(not_before), int(expires), now + VERIFIED_CACHE_SECONDS)
        if len(cache) > VERIFIED_CACHE_SIZE:
            cache.popitem(last=False)

    async def _verify(self, token: str) -> tuple[str, dict[str, object]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            log.info("rejected token: unreadable header (%s)", error)
            raise Unauthenticated() from None
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(kid, str | None):
            raise Unauthenticated()
        if alg in _ASYMMETRIC:
            keys = [key.key for key in await self._keys.candidates(kid, alg)]
        elif alg == "HS256" and self._policy.hs256_secret:
            keys = [self._policy.hs256_secret]
        else:
            log.info("rejected token: algorithm %r not accepted", alg)
            raise Unauthenticated()
        if not keys:
            log.info("rejected token: no %s key with kid %r", alg, kid)
            raise Unauthenticated()
        last_error: Exception | None = None
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self._policy.audience,
                    issuer=self._policy.issuer,
                    leeway=self._policy.leeway_seconds,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            except jwt.InvalidSignatureError as error:
                last_error = error
                continue
            except jwt.PyJWTError as error:
                log.info("rejected token: %s", error)
                raise Unauthenticated() from None
            subject = claims.get("sub")
            if not isinstance(subject, str) or not subject:
                raise Unauthenticated()
            return subject, claims
        log.info("rejected token: %s", last_error)
        raise Unauthenticated()
