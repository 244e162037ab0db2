"""The real stack for end-to-end tests: `livechat serve` + Envoy as processes, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.ports import free_port
from devstack.stack import Stack, StackConfig
from server.adapters.storage import Storage
from tests.conftest import SigningKeys
from tests.e2e.credentials import edge_token
from tests.support import migrated_storage


@dataclass
class Edge:
    stack: Stack
    storage: Storage  # the stack's database, opened beside it for seeding and checks
    keys: SigningKeys

    @property
    def engine(self) -> AsyncEngine:
        return self.storage.engine

    @property
    def http_port(self) -> int:
        return self.stack.config.http_port

    @property
    def grpc_port(self) -> int:
        return self.stack.config.grpc_port

    def token_for(self, user_id: str, **claims: object) -> str:
        return edge_token(self.keys, user_id, **claims)


def stack_config(workdir: Path, database_url: str, keys: SigningKeys) -> StackConfig:
    return StackConfig(
        workdir=workdir,
        database_url=database_url,
        jwks_path=keys.jwks_path,
        grpc_port=free_port(),
        http_port=free_port(),
        admin_port=free_port(),
        extra_server_env={"LIVECHAT_HEALTH_INTERVAL_SECONDS": "0.5"},
        # As in production: Envoy reaches the server on its Unix socket (<workdir>/sockets), so REST
        # calls rely on Envoy's token check; the tests' direct gRPC calls use the TCP port.
        edge_over_unix_socket=True,
        # These tests drive one caller far faster than a person can (races, retries, fuzzing): the
        # per-caller limit is raised out of their way. tests/e2e/test_rate_limit_edge.py runs the
        # product's own limit.
        envoy_overrides={"send_burst": 100_000, "send_per_second": 100_000},
        die_with_parent=True,
    )


@contextmanager
def running_stack(config: StackConfig) -> Iterator[Stack]:
    """The server and Envoy of `config` started, and stopped (by PID) however the block ends."""
    stack = Stack(config)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def edge_database_url(database_url: str, separate_database: Callable[[str], str]) -> str:
    # A database of its own: the stack's server settles pending credits in the background, and on
    # SQLite the in-process servers of tests/api would hold the file's write lock while the test
    # event loop is paused mid-write, stalling this separate process in a way no deployment has.
    return separate_database(database_url)


@pytest_asyncio.fixture(scope="session")
async def edge_storage(edge_database_url: str) -> AsyncIterator[Storage]:
    async with migrated_storage(edge_database_url) as storage:
        yield storage


@pytest.fixture(scope="session")
def edge(
    edge_storage: Storage,
    edge_database_url: str,
    signing_keys: SigningKeys,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Edge]:
    # `edge_storage` has migrated the database; the server process shares it.
    with running_stack(stack_config(tmp_path_factory.mktemp("stack"), edge_database_url, signing_keys)) as stack:
        yield Edge(stack, edge_storage, signing_keys)
