"""Test helpers shared by the suites: storage opened as the server opens it, seeding data through the
real admin use cases (in storage's write transactions, as `livechat admin` runs them), tokens."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.admin_repository import AdminRepository
from server.adapters.storage import Storage, open_storage
from server.cli.presenters import stream_json, user_json
from server.domain.accounts import Profile
from server.domain.superlike import StreamState
from server.services.admin import AdminService
from server.services.superlikes import SuperlikeService

T = TypeVar("T")

ISSUER = "https://auth.test.allmine.app"
AUDIENCE = "livechat-test"
_counter = itertools.count()


def unique_name(prefix: str) -> str:
    # Tests share databases, so every row they create has a name no other test (or run) uses.
    return f"{prefix}{os.getpid()}x{next(_counter)}x{time.monotonic_ns() % 10**9}"


@dataclass(frozen=True)
class World:
    host_id: str
    viewer_id: str
    stream_id: str


async def as_operator(storage: Storage, use: Callable[[AdminService], T]) -> T:
    """Runs `use` on the operator's use cases in one write transaction of `storage`, as `livechat
    admin` does (on SQLite, on the thread the server's writes run on)."""
    return await storage.write_transaction(lambda connection: use(AdminService(AdminRepository(connection))))


async def create_user(storage: Storage, coins: int = 0, **profile: str) -> dict:
    """A user as `livechat admin create-user` prints it."""
    new_profile = Profile(
        username=profile.get("username", unique_name("u")),
        name=profile.get("name", "Jane"),
        surname=profile.get("surname", "Doe"),
        profile_photo=profile.get("profile_photo", "jane.jpg"),
    )
    return user_json(await as_operator(storage, lambda admin: admin.create_user(new_profile, coins=coins)))


async def create_stream(storage: Storage, host_id: str, price: int = 10, state: StreamState = StreamState.LIVE) -> dict:
    """A stream as `livechat admin create-stream` prints it."""
    return stream_json(await as_operator(storage, lambda admin: admin.create_stream(host_id, price=price, state=state)))


async def build_world(
    storage: Storage, coins: int = 100, price: int = 10, state: StreamState = StreamState.LIVE
) -> World:
    host = await create_user(storage, coins=0)
    viewer = await create_user(storage, coins=coins, name="sample", surname="sample", profile_photo="sample.jpg")
    stream = await create_stream(storage, host["id"], price=price, state=state)
    return World(host_id=host["id"], viewer_id=viewer["id"], stream_id=stream["id"])


async def balance_of(storage: Storage, user_id: str) -> int:
    """What the user owns, pending superlike earnings included, as `livechat admin show-user` reports it."""
    return (await as_operator(storage, lambda admin: admin.get_user(user_id))).balance


def sign(claims: dict, key: object, alg: str = "RS256", kid: str | None = "test-rsa") -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def claims_for(subject: str, **overrides: object) -> dict:
    now = int(time.time())
    claims: dict = {"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def rows_of(engine: AsyncEngine, query: str) -> list[tuple]:
    """Every row of `query`, as plain tuples (for comparing with literals)."""
    async with engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(text(query))]


@contextlib.asynccontextmanager
async def migrated_storage(url: str, pool_size: int = 5) -> AsyncIterator[Storage]:
    """Storage on `url` as the server opens it, with the schema at head; closed on exit."""
    async with open_storage(url, pool_size=pool_size) as storage:
        await storage.upgrade()
        yield storage


async def migrated_world(url: str, coins: int = 100) -> World:
    """Migrates `url` and seeds a world there, for tests that start their own server on it."""
    async with migrated_storage(url, pool_size=1) as storage:
        return await build_world(storage, coins=coins)


def superlike_service(storage: Storage) -> SuperlikeService:
    """The SendSuperlike use case on `storage` through a writer of its own: each call acts as another
    server on the same database (its own group commit), the same call's requests share batches."""
    return SuperlikeService(storage.new_superlike_writer())


async def wait_until_a_postgres_lock_is_awaited(engine: AsyncEngine, timeout_s: float = 10.0) -> None:
    """Returns once some PostgreSQL session waits for a lock another holds (orders a race without sleeps)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        async with engine.connect() as connection:
            waiting = (await connection.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))).scalar_one()
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no statement waited on a lock within {timeout_s} s")
