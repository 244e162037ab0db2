"""The real stack for end-to-end tests: `livechat serve` + Envoy as processes, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.ports import free_port
from devstack.stack import DEFAULT_AUDIENCE, DEFAULT_ISSUER, Stack, StackConfig
from tests.conftest import SigningKeys
from tests.support import claims_for, sign


@dataclass
class Edge:
    stack: Stack
    engine: AsyncEngine
    keys: SigningKeys

    @property
    def http_port(self) -> int:
        return self.stack.config.http_port

    @property
    def grpc_port(self) -> int:
        return self.stack.config.grpc_port

    def token_for(self, user_id: str, **claims: object) -> str:
        claims.setdefault("iss", DEFAULT_ISSUER)
        claims.setdefault("aud", DEFAULT_AUDIENCE)
        return sign(claims_for(user_id, **claims), self.keys.rsa_private)


def stack_config(workdir: Path, database_url: str, keys: SigningKeys) -> StackConfig:
    return StackConfig(
        workdir=workdir,
        database_url=database_url,
        jwks_path=keys.jwks_path,
        grpc_port=free_port(),
        http_port=free_port(),
        admin_port=free_port(),
        extra_server_env={"LIVECHAT_HEALTH_INTERVAL_SECONDS": "0.5"},
    )


@pytest.fixture(scope="session")
def edge(
    engine: AsyncEngine, database_url: str, signing_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Edge]:
    # `engine` has migrated the database; the server process shares it.
    stack = Stack(stack_config(tmp_path_factory.mktemp("stack"), database_url, signing_keys))
    stack.start()
    try:
        yield Edge(stack, engine, signing_keys)
    finally:
        stack.stop()
