"""Verification of the bearer tokens that identify callers. Knows JWTs, nothing about gRPC or HTTP."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import jwt

from server.auth.jwks import JwksKeySet
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


class TokenVerifier:
    def __init__(self, policy: TokenPolicy, keys: JwksKeySet) -> None:
        self._policy = policy
        self._keys = keys

    async def subject_of(self, token: str) -> str:
        """Returns the verified `sub` claim; raises Unauthenticated with a generic message otherwise.

        Why a token failed is logged, never returned: the caller learns only that it is not accepted.
        """
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
            return subject
        log.info("rejected token: %s", last_error)
        raise Unauthenticated()
