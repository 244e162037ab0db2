"""Signing keys from a JWKS document, read from a file or fetched from a URL, cached and refreshed.

Refreshes happen when the cache is older than `ttl_seconds` or a token names an unknown `kid` (key
rotation), at most once per `min_refresh_interval_seconds` so garbage tokens cannot hammer the source.
Fetching runs in a worker thread: the event loop never blocks on the network or the disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import jwt

from server.auth.jwks_url import InsecureJwksUrl, check_jwks_url, is_url

log = logging.getLogger(__name__)

_KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}


class JwksUnavailable(Exception):
    """The key set could not be read; callers treat the token as unverifiable."""


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urllib.parse.urlsplit(newurl).scheme != "https":
            raise urllib.error.HTTPError(newurl, code, "JWKS redirect away from https refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoDowngrade)


def check_jwks_source(source: str) -> None:
    try:
        check_jwks_url(source)
    except InsecureJwksUrl as error:
        raise JwksUnavailable(str(error)) from None


def load_jwks_document(source: str, timeout_seconds: float = 5.0) -> dict[str, object]:
    if is_url(source):
        check_jwks_source(source)
        with _OPENER.open(source, timeout=timeout_seconds) as response:
            return json.loads(response.read())
    return json.loads(Path(source).read_text())


def parse_jwks(document: dict[str, object]) -> list[jwt.PyJWK]:
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise JwksUnavailable("JWKS document has no 'keys' list")
    parsed = []
    for entry in keys:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in _KEY_TYPES.values():
            continue  # symmetric or unknown key types never verify our tokens
        try:
            parsed.append(jwt.PyJWK(entry))
        except jwt.PyJWKError as error:
            log.warning("skipping unusable JWKS key %s: %s", entry.get("kid"), error)
    return parsed


class JwksKeySet:
    def __init__(
        self,
        source: str,
        *,
        ttl_seconds: float = 300.0,
        min_refresh_interval_seconds: float = 30.0,
    ) -> None:
        self._source = source
        self._ttl = ttl_seconds
        self._min_refresh_interval = min_refresh_interval_seconds
        self._keys: list[jwt.PyJWK] = []
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Reads the key set now; raises JwksUnavailable so startup fails loudly on a bad source."""
        try:
            document = await asyncio.to_thread(load_jwks_document, self._source)
        except (OSError, ValueError) as error:
            raise JwksUnavailable(f"cannot read JWKS from {self._source}: {error}") from error
        keys = parse_jwks(document)
        if not keys:
            raise JwksUnavailable(f"JWKS at {self._source} has no RSA or EC signing keys")
        self._keys = keys
        self._loaded_at = time.monotonic()

    async def candidates(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        """Keys that may have signed a token with this header: matching kid (if any) and key type."""
        found = self._matching(kid, alg)
        stale = time.monotonic() - self._loaded_at > self._ttl
        if found and not stale:
            return found
        await self._refresh()
        return self._matching(kid, alg)

    def _matching(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        key_type = _KEY_TYPES[alg]
        return [
            key
            for key in self._keys
            if key.key_type == key_type and (kid is None or key.key_id == kid) and key.algorithm_name in (alg, None)
        ]

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._loaded_at < self._min_refresh_interval:
                return
            try:
                await self.load()
            except JwksUnavailable as error:
                # Keep serving with the keys we have; a source outage must not log everybody out.
                log.warning("JWKS refresh failed, keeping %d cached keys: %s", len(self._keys), error)
                self._loaded_at = time.monotonic() - self._ttl + self._min_refresh_interval
