"""Test helpers shared by the suites: seeding data through the real admin use cases, tokens."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import jwt
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.adapters import schema
from server.adapters.admin_repository import AdminRepository
from server.adapters.database import create_engine
from server.adapters.sqlite_worker import SqliteWorker
from server.adapters.superlike_repository import superlike_repository
from server.adapters.unit_of_work import SqlUnitOfWork
from server.cli.presenters import stream_json, user_json
from server.domain.accounts import Profile
from server.domain.superlike import StreamState
from server.services.admin import AdminService
from server.services.superlikes import SuperlikeService

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


def admin(connection: AsyncConnection) -> AdminService:
    """The operator's use cases on the caller's connection and transaction."""
    return AdminService(AdminRepository(connection))


async def create_user(engine: AsyncEngine, coins: int = 0, **profile: str) -> dict:
    """A user as `livechat admin create-user` prints it."""
    async with engine.begin() as connection:
        account = await admin(connection).create_user(
            Profile(
                username=profile.get("username", unique_name("u")),
                name=profile.get("name", "Jane"),
                surname=profile.get("surname", "Doe"),
                profile_photo=profile.get("profile_photo", "jane.jpg"),
            ),
            coins=coins,
        )
    return user_json(account)


async def create_stream(
    engine: AsyncEngine, host_id: str, price: int = 10, state: StreamState = StreamState.LIVE
) -> dict:
    """A stream as `livechat admin create-stream` prints it."""
    async with engine.begin() as connection:
        return stream_json(await admin(connection).create_stream(host_id, price=price, state=state))


async def build_world(
    engine: AsyncEngine, coins: int = 100, price: int = 10, state: StreamState = StreamState.LIVE
) -> World:
    host = await create_user(engine, coins=0)
    viewer = await create_user(engine, coins=coins, name="sample", surname="sample", profile_photo="sample.jpg")
    stream = await create_stream(engine, host["id"], price=price, state=state)
    return World(host_id=host["id"], viewer_id=viewer["id"], stream_id=stream["id"])




def sign(claims: dict, key: object, alg: str = "RS256", kid: str | None = "test-rsa") -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def claims_for(subject: str, **overrides: object) -> dict:
    now = int(time.time())
    claims: dict = {"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@contextlib.asynccontextmanager
async def migrated_engine(url: str, pool_size: int = 5) -> AsyncIterator[AsyncEngine]:
    """An engine on `url` with the schema at head, disposed on exit."""
    engine = create_engine(url, pool_size=pool_size)
    try:
        await schema.upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


async def migrated_world(url: str, coins: int = 100) -> World:
    """Migrates `url` and seeds a world there, for tests that start their own server on it."""
    async with migrated_engine(url, pool_size=1) as engine:
        return await build_world(engine, coins=coins)


_sqlite_workers: dict[str, SqliteWorker] = {}


def superlike_service(engine: AsyncEngine) -> SuperlikeService:
    """The SendSuperlike use case on `engine`, wired as server.app wires it (SQLite on its thread)."""
    worker = None
    if engine.dialect.name == "sqlite":
        url = engine.url.render_as_string(hide_password=False)
        if url not in _sqlite_workers:
            _sqlite_workers[url] = SqliteWorker(url)
        worker = _sqlite_workers[url]
    storage = superlike_repository(engine, worker)
    return SuperlikeService(lambda: SqlUnitOfWork(storage))
