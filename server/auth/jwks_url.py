"""Where signing keys may come from: https anywhere, plain http only on loopback.

Keys fetched over plain HTTP could be swapped in transit, letting anyone mint tokens. Both the server
(server/auth/jwks.py) and the edge's config renderer (envoy/render.py) apply this one rule; standard
library only, so the renderer can use it without the server's dependencies.
"""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class InsecureJwksUrl(ValueError):
    """A JWKS URL that is not https (or plain http on loopback)."""


def is_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


def check_jwks_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InsecureJwksUrl(f"JWKS URL must be an http(s) URL, got {url!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise InsecureJwksUrl(f"JWKS URL {url} must use https (plain http is accepted on loopback only)")
