"""A local signing key for development and tests: the private key, its public JWKS, and tokens.

Production never uses this: there the JWKS comes from the identity provider (LIVECHAT_JWKS=https://...).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

PRIVATE_KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"
LOCAL_KID = "livechat-local-1"


def generate_keys(directory: Path, kid: str = LOCAL_KID) -> tuple[Path, Path]:
    """Writes `signing-key.pem` (private, mode 0600) and `jwks.json` unless they already exist."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, jwks_path = directory / PRIVATE_KEY_FILE, directory / JWKS_FILE
    if key_path.exists() and jwks_path.exists():
        return key_path, jwks_path
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    public_jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    jwks_path.write_text(json.dumps({"keys": [public_jwk]}, indent=2) + "\n")
    return key_path, jwks_path


def mint_token(
    private_key_pem: bytes,
    *,
    subject: str,
    issuer: str,
    audience: str,
    ttl_seconds: int = 3600,
    kid: str = LOCAL_KID,
) -> str:
    now = int(time.time())
    claims = {"sub": subject, "iss": issuer, "aud": audience, "iat": now, "nbf": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, private_key_pem, algorithm="RS256", headers={"kid": kid})
