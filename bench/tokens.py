"""The senders' RS256 tokens for a benchmark run, signed once and kept on disk.

Signing is ~1 ms of CPU per token: 100,000 senders are about two minutes on one core, on every run.
The tokens are kept in `<cache dir>/<key fingerprint>.tokens` (one `sender<TAB>token<TAB>exp` line
each), for the signing key, issuer and audience the fingerprint names, and reused while they stay
valid long enough for the run; missing or expiring ones are signed in a process pool (every core)
and the file is rewritten. A new signing key (bench/.work/keys deleted) starts a new file.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Tokens are signed to live this long, so one signing serves many runs.
TOKEN_LIFETIME_S = 14 * 24 * 3600
SIGNING_BATCH = 2_000


@dataclass(frozen=True)
class Minted:
    tokens: list[str]
    reused: int
    signed: int
    seconds: float
    cache_file: Path


def tokens_for(
    sender_ids: list[str],
    *,
    key_path: Path,
    issuer: str,
    audience: str,
    cache_dir: Path,
    valid_for_s: float,
) -> Minted:
    """One token per sender, in the senders' order, each valid for at least `valid_for_s` more seconds."""
    started = time.monotonic()
    key_pem = key_path.read_bytes()
    fingerprint = hashlib.sha256(b"\0".join([key_pem, issuer.encode(), audience.encode()])).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_file = cache_dir / f"{fingerprint}.tokens"
    cached = _read(cache_file)
    needed_until = time.time() + valid_for_s
    fresh = {sender: token for sender, (token, expires) in cached.items() if expires >= needed_until}
    missing = [sender for sender in sender_ids if sender not in fresh]
    if missing:
        expires = int(time.time()) + max(TOKEN_LIFETIME_S, int(valid_for_s) + 3600)
        fresh.update(_sign_all(key_pem, missing, issuer, audience, expires - int(time.time())))
        cached.update({sender: (fresh[sender], expires) for sender in missing})
        _write(cache_file, cached)
    return Minted(
        tokens=[fresh[sender] for sender in sender_ids],
        reused=len(sender_ids) - len(missing),
        signed=len(missing),
        seconds=round(time.monotonic() - started, 2),
        cache_file=cache_file,
    )


def _read(path: Path) -> dict[str, tuple[str, int]]:
    if not path.exists():
        return {}
    entries: dict[str, tuple[str, int]] = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].isdigit():
            entries[parts[0]] = (parts[1], int(parts[2]))
    return entries


def _write(path: Path, entries: dict[str, tuple[str, int]]) -> None:
    # Written beside and renamed: an interrupted run never leaves a half file to be trusted.
    partial = path.with_suffix(".partial")
    partial.touch(mode=0o600)
    partial.write_text("".join(f"{sender}\t{token}\t{exp}\n" for sender, (token, exp) in entries.items()))
    partial.replace(path)


def _sign_all(key_pem: bytes, senders: list[str], issuer: str, audience: str, ttl_s: int) -> dict[str, str]:
    batches = [senders[i : i + SIGNING_BATCH] for i in range(0, len(senders), SIGNING_BATCH)]
    if len(batches) == 1:
        return dict(zip(senders, _sign_batch(key_pem, batches[0], issuer, audience, ttl_s), strict=True))
    workers = max(1, min(len(batches), len(os.sched_getaffinity(0))))
    signed: dict[str, str] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(
            _sign_batch,
            [key_pem] * len(batches),
            batches,
            [issuer] * len(batches),
            [audience] * len(batches),
            [ttl_s] * len(batches),
        )
        for batch, tokens in zip(batches, results, strict=True):
            signed.update(zip(batch, tokens, strict=True))
    return signed


def _sign_batch(key_pem: bytes, senders: list[str], issuer: str, audience: str, ttl_s: int) -> list[str]:
    from cryptography.hazmat.primitives import serialization

    from server.auth.local_keys import mint_token

    # Loaded once per batch: PyJWT re-parses a PEM on every call (~40 ms), a key object it takes as is.
    private_key = serialization.load_pem_private_key(key_pem, password=None)
    return [
        mint_token(private_key, subject=sender, issuer=issuer, audience=audience, ttl_seconds=ttl_s)  # type: ignore[arg-type]
        for sender in senders
    ]
