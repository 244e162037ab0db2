"""Shared fixtures: real databases (SQLite file, PostgreSQL), signing keys, a running gRPC server."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.storage import Storage
from tests.support import AUDIENCE, ISSUER, migrated_storage

POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _unreachable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
    pytest.skip(f"PostgreSQL unreachable: {reason}")


async def _admin_execute(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the test PostgreSQL for this run, dropped at the end.

    Sync on purpose: it runs outside the test event loop, so parametrised fixtures can request it.
    """
    name = f"livechat_test_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        _unreachable(str(error))
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    yield f"{base}/{name}"
    asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def separate_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], str]]:
    """Another empty database of the same kind as the given URL.

    Every running server folds pending host credits in the background; a server sharing a database
    with tests that read those credits would change them under the tests' feet. Servers that live for
    the whole session therefore get a database of their own.
    """
    created: list[str] = []

    def make(like_url: str) -> str:
        if like_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'separate.db'}"
        request.getfixturevalue("postgres_url")  # skips (or fails under CI) when PostgreSQL is missing
        name = f"livechat_test_{secrets.token_hex(4)}"
        asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return f"{POSTGRES_ADMIN_URL.rpartition('/')[0]}/{name}"

    yield make
    for name in created:
        asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'livechat.db'}"


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Every test that takes this runs on both databases the service supports."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest_asyncio.fixture(scope="session")
async def storage(database_url: str) -> AsyncIterator[Storage]:
    async with migrated_storage(database_url, pool_size=20) as storage:
        yield storage


@pytest_asyncio.fixture(scope="session")
async def engine(storage: Storage) -> AsyncEngine:
    return storage.engine


@dataclass(frozen=True)
class SigningKeys:
    rsa_private: rsa.RSAPrivateKey
    rsa_public_pem: bytes
    ec_private: ec.EllipticCurvePrivateKey
    other_rsa_private: rsa.RSAPrivateKey  # not in the JWKS: signatures with it must fail
    jwks_path: Path


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_private = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_private.public_key()))
    rsa_jwk.update({"kid": "test-rsa", "use": "sig", "alg": "RS256"})
    ec_jwk = json.loads(ECAlgorithm.to_jwk(ec_private.public_key()))
    ec_jwk.update({"kid": "test-ec", "use": "sig", "alg": "ES256"})
    jwks_path = tmp_path_factory.mktemp("keys") / "jwks.json"
    jwks_path.write_text(json.dumps({"keys": [rsa_jwk, ec_jwk]}))
    return SigningKeys(
        rsa_private=rsa_private,
        rsa_public_pem=rsa_private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        ec_private=ec_private,
        other_rsa_private=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        jwks_path=jwks_path,
    )


def server_env(database_url: str, jwks_path: Path, port: int = 0) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "LIVECHAT_GRPC_HOST": "127.0.0.1",
        "LIVECHAT_GRPC_PORT": str(port),
        "LIVECHAT_JWKS": str(jwks_path),
        "LIVECHAT_JWT_ISSUER": ISSUER,
        "LIVECHAT_JWT_AUDIENCE": AUDIENCE,
        "LIVECHAT_HEALTH_INTERVAL_SECONDS": "0.2",
        "LIVECHAT_SHUTDOWN_GRACE_SECONDS": "5",
    }
