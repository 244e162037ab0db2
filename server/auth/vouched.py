"""The claim policy for a token whose signature Envoy has already checked.

On the REST (and gRPC-through-Envoy) path, Envoy's jwt_authn verifies the bearer token with the same
JWKS the server uses and is configured at least as strictly as TokenPolicy (envoy/render.py: issuer,
audience, required `exp` and `sub`, the same clock skew). What it cannot be told is checked here:
the algorithms the server accepts, an `iat` in the future, and claims of the wrong type. Every claim
TokenPolicy requires is checked once more, the way PyJWT checks it for a directly verified token
(tests/unit/test_vouched_tokens.py holds the two to the same decisions), so the only thing a trusted
call skips is the signature arithmetic.

Parsing is plain base64url and JSON: PyJWT's decode without verification costs nearly as much as a
verified one, which is what this path exists to avoid.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from server.domain.errors import Unauthenticated

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def _json_segment(segment: str) -> dict[str, Any]:
    if not _BASE64URL.fullmatch(segment):
        raise Unauthenticated()
    try:
        document = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        raise Unauthenticated() from None
    if not isinstance(document, dict):
        raise Unauthenticated()
    return document


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The token's JOSE header and claims, read without checking the signature."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthenticated()
    return _json_segment(parts[0]), _json_segment(parts[1])


def key_id(header: dict[str, Any]) -> str | None:
    """The header's `kid`, refusing what PyJWT refuses of a header: a `kid` that is not a string (null
    included), and critical extensions (`crit`, `b64`), which no token of ours carries."""
    if "crit" in header or "b64" in header:
        raise Unauthenticated()
    if "kid" not in header:
        return None
    kid = header["kid"]
    if not isinstance(kid, str):
        raise Unauthenticated()
    return kid


def _seconds(claims: dict[str, Any], name: str) -> int:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthenticated()
    return int(value)  # whole seconds, as PyJWT reads them


def checked_subject(claims: dict[str, Any], *, issuer: str, audience: str, leeway: float, now: float) -> str:
    """The `sub` of claims that satisfy the policy at `now`; Unauthenticated otherwise."""
    if any(claims.get(name) is None for name in ("exp", "iss", "aud", "sub")):
        raise Unauthenticated()
    if "iat" in claims and _seconds(claims, "iat") > now + leeway:
        raise Unauthenticated()
    if "nbf" in claims and _seconds(claims, "nbf") > now + leeway:
        raise Unauthenticated()
    if _seconds(claims, "exp") <= now - leeway:
        raise Unauthenticated()
    if claims["iss"] != issuer:
        raise Unauthenticated()
    audiences = claims["aud"]
    if isinstance(audiences, str):
        audiences = [audiences]
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences) or audience not in audiences:
        raise Unauthenticated()
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise Unauthenticated()
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated()
    return subject
