"""Startup, shutdown and database outages of the real server process wiring."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.adapters.schema import SchemaNotCurrent
from server.app import PortInUse, start_server
from server.config import load_settings
from tests.api.conftest import error_of, send_superlike
from tests.conftest import SigningKeys, server_env
from tests.support import claims_for, migrated_storage, migrated_world, sign
from tests.tcp_proxy import TcpProxy


async def _health(channel: grpc.aio.Channel) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return response.status


async def test_a_second_server_on_a_taken_port_fails_loudly(tmp_path: Path, signing_keys: SigningKeys) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'port.db'}"
    async with migrated_storage(sqlite_url):
        pass
    first = await start_server(load_settings(server_env(sqlite_url, signing_keys.jwks_path)))
    try:
        with pytest.raises(PortInUse, match=f"cannot listen on 127.0.0.1:{first.port}"):
            await start_server(load_settings(server_env(sqlite_url, signing_keys.jwks_path, port=first.port)))
    finally:
        await first.stop(0)


async def test_shutdown_lets_the_in_flight_superlike_finish(tmp_path: Path, signing_keys: SigningKeys) -> None:
    database = tmp_path / "shutdown.db"
    url = f"sqlite:///{database}"
    world = await migrated_world(url)
    running = await start_server(load_settings(server_env(url, signing_keys.jwks_path)))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    # Another writer holds SQLite's write lock, so the superlike waits inside its transaction.
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    token = sign(claims_for(world.viewer_id), signing_keys.rsa_private)
    in_flight = asyncio.ensure_future(send_superlike(chat_grpc.LiveStreamChatStub(channel), world.stream_id, token))
    await asyncio.sleep(0.3)
    stopping = asyncio.ensure_future(running.stop(5))
    await asyncio.sleep(0.3)
    assert not in_flight.done()
    blocker.execute("ROLLBACK")
    blocker.close()
    response = await in_flight
    await stopping
    await channel.close()
    assert response.sender_balance == 90


async def test_database_outage_is_unavailable_and_health_recovers_by_itself(
    postgres_url: str, signing_keys: SigningKeys
) -> None:
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = postgres_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    world = await migrated_world(url)
    running = await start_server(load_settings(server_env(url, signing_keys.jwks_path)))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    stub = chat_grpc.LiveStreamChatStub(channel)
    token = sign(claims_for(world.viewer_id), signing_keys.rsa_private)

    async def send() -> chat_pb2.SendSuperlikeResponse:
        return await send_superlike(stub, world.stream_id, token)

    try:
        assert (await send()).sender_balance == 90
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        await proxy.cut()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await send()
        assert error_of(raised.value) == (
            grpc.StatusCode.UNAVAILABLE,
            "Service temporarily unavailable, please retry",
            "STORAGE_UNAVAILABLE",
        )
        await asyncio.sleep(0.1)
        assert await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        await proxy.restore()
        for _ in range(50):
            if await _health(channel) == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.1)
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        # Connections broken by the outage are replaced; the next calls succeed without a restart.
        outcomes = []
        for _ in range(3):
            try:
                outcomes.append((await send()).sender_balance)
            except grpc.aio.AioRpcError as error:
                outcomes.append(error.code())
        assert outcomes == [80, 70, 60]
    finally:
        await channel.close()
        await running.stop(1)
        await proxy.cut()


async def test_the_server_refuses_to_start_on_an_unmigrated_database(tmp_path: Path, signing_keys: SigningKeys) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(SchemaNotCurrent, match="run `livechat db upgrade`"):
        await start_server(load_settings(server_env(url, signing_keys.jwks_path)))


def test_an_admin_command_on_an_unmigrated_database_explains_the_remedy(tmp_path: Path) -> None:
    livechat = Path(sys.executable).parent / "livechat"
    (
        tmp_path / "empty.db"
    ).touch()  # an existing database without the schema (a missing file: tests/integration/test_cli.py)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    done = subprocess.run(
        [str(livechat), "admin", "show-user", "a" * 24], env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert json.loads(done.stderr) == {
        "error": "SCHEMA_MISSING",
        "message": "the database at DATABASE_URL has no livechat schema (no such table: users): "
        "run `livechat db upgrade`",
    }
