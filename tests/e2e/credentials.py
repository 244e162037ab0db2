"""How the e2e tests authenticate: tokens signed as the stack's issuer, and where a client puts them."""

from __future__ import annotations

from devstack.stack import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from tests.conftest import SigningKeys
from tests.support import claims_for, sign


def edge_token(keys: SigningKeys, user_id: str, **claims: object) -> str:
    """A valid token for `user_id` from the issuer and for the audience the running stack expects."""
    claims.setdefault("iss", DEFAULT_ISSUER)
    claims.setdefault("aud", DEFAULT_AUDIENCE)
    return sign(claims_for(user_id, **claims), keys.rsa_private)


def bearer_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
