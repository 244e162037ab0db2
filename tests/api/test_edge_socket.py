"""The Unix socket Envoy reaches the server on (LIVECHAT_EDGE_SOCKET_DIR), with the real server.

Here the test plays Envoy: it connects to the socket itself (it runs as the server's user, as Envoy
does) and sets the header Envoy's jwt_authn would set. What the server then trusts, and what it
never trusts on TCP, is what these tests pin down; tests/e2e/test_edge_trust.py does the same through
the real Envoy.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.api.caller import EDGE_VERIFIED_SUBJECT_METADATA
from server.app import RunningServer, start_server
from server.config import load_settings
from server.workers.sockets import SocketUnusable
from tests.api.conftest import error_of, send_superlike
from tests.conftest import SigningKeys, server_env
from tests.support import World, build_world, claims_for, migrated_storage, sign

UNAUTHENTICATED = (grpc.StatusCode.UNAUTHENTICATED, "Authentication required", "UNAUTHENTICATED")
VICTIM = "65a00000000000000000dead"


@dataclass
class Served:
    running: RunningServer
    keys: SigningKeys
    world: World
    socket_stub: chat_grpc.LiveStreamChatStub
    tcp_stub: chat_grpc.LiveStreamChatStub

    def token(self, subject: str | None = None, key: object = None, **claims: object) -> str:
        return sign(claims_for(subject or self.world.viewer_id, **claims), key or self.keys.rsa_private)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(tmp_path_factory: pytest.TempPathFactory, signing_keys: SigningKeys) -> AsyncIterator[Served]:
    directory = tmp_path_factory.mktemp("edge")
    url = f"sqlite:///{directory / 'edge.db'}"
    async with migrated_storage(url) as storage:
        world = await build_world(storage, coins=1000)
    env = {**server_env(url, signing_keys.jwks_path), "LIVECHAT_EDGE_SOCKET_DIR": str(directory / "sockets")}
    running = await start_server(load_settings(env))
    assert running.edge_socket == str(directory / "sockets" / "worker-0.sock")
    socket_channel = grpc.aio.insecure_channel(f"unix:{running.edge_socket}")
    tcp_channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield Served(
            running,
            signing_keys,
            world,
            chat_grpc.LiveStreamChatStub(socket_channel),
            chat_grpc.LiveStreamChatStub(tcp_channel),
        )
    finally:
        await socket_channel.close()
        await tcp_channel.close()
        await running.stop(1)


def vouched(subject: str) -> tuple[tuple[str, str], ...]:
    return ((EDGE_VERIFIED_SUBJECT_METADATA, subject),)


async def refused(stub: chat_grpc.LiveStreamChatStub, served: Served, token: str | None, metadata=()) -> tuple:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await send_superlike(stub, served.world.stream_id, token, metadata=metadata)
    return error_of(raised.value)


async def test_the_socket_is_the_server_users_alone(served: Served) -> None:
    path = Path(served.running.edge_socket or "")
    assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    if os.geteuid() != 0:
        return  # another user to try it with needs root
    # Another user cannot connect: neither traverse the directory nor write the socket.
    probe = (
        "import os, socket, sys; os.setgid(65534); os.setuid(65534); s = socket.socket(socket.AF_UNIX)\n"
        "try: s.connect(sys.argv[1])\nexcept PermissionError: sys.exit(13)\n"
    )
    assert subprocess.run([sys.executable, "-c", probe, str(path)], timeout=30).returncode == 13


async def test_on_the_socket_the_subject_envoy_verified_is_the_sender(served: Served) -> None:
    response = await send_superlike(
        served.socket_stub, served.world.stream_id, served.token(), metadata=vouched(served.world.viewer_id)
    )
    assert response.sender_id == served.world.viewer_id


async def test_on_the_socket_the_signature_is_envoys_to_check_and_the_claims_the_servers(served: Served) -> None:
    # Envoy checked the signature (only Envoy can connect here): a token signed by a key outside the
    # key set, but whose kid the set has, is not checked again...
    forged = served.token(key=served.keys.other_rsa_private)
    response = await send_superlike(
        served.socket_stub, served.world.stream_id, forged, metadata=vouched(served.world.viewer_id)
    )
    assert response.sender_id == served.world.viewer_id
    # ...but every claim the server's policy requires is.
    for claims in ({"exp": 1}, {"aud": "another-service"}, {"iss": "https://evil.example"}, {"iat": 4_000_000_000}):
        token = served.token(**claims)
        assert await refused(served.socket_stub, served, token, vouched(served.world.viewer_id)) == UNAUTHENTICATED


async def test_on_the_socket_envoys_subject_must_be_the_tokens_and_said_once(served: Served) -> None:
    token = served.token()
    assert await refused(served.socket_stub, served, token, vouched(VICTIM)) == UNAUTHENTICATED
    twice = (*vouched(served.world.viewer_id), *vouched(served.world.viewer_id))
    assert await refused(served.socket_stub, served, token, twice) == UNAUTHENTICATED
    assert await refused(served.socket_stub, served, None, vouched(served.world.viewer_id)) == UNAUTHENTICATED


async def test_on_the_socket_without_envoys_subject_the_token_is_verified_in_full(served: Served) -> None:
    response = await send_superlike(served.socket_stub, served.world.stream_id, served.token())
    assert response.sender_id == served.world.viewer_id
    forged = served.token(key=served.keys.other_rsa_private)
    assert await refused(served.socket_stub, served, forged) == UNAUTHENTICATED


async def test_over_tcp_the_subject_header_is_never_read(served: Served) -> None:
    # A valid token with the header naming someone else: the token's subject is the sender.
    response = await send_superlike(served.tcp_stub, served.world.stream_id, served.token(), metadata=vouched(VICTIM))
    assert response.sender_id == served.world.viewer_id
    # The header does not stand in for a token, nor for a valid signature.
    assert await refused(served.tcp_stub, served, None, vouched(served.world.viewer_id)) == UNAUTHENTICATED
    forged = served.token(key=served.keys.other_rsa_private)
    assert await refused(served.tcp_stub, served, forged, vouched(served.world.viewer_id)) == UNAUTHENTICATED


async def test_a_second_server_cannot_take_a_running_servers_socket(
    served: Served, signing_keys: SigningKeys, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'second.db'}"
    async with migrated_storage(url):
        pass
    socket_dir = str(Path(served.running.edge_socket or "").parent)
    env = {**server_env(url, signing_keys.jwks_path), "LIVECHAT_EDGE_SOCKET_DIR": socket_dir}
    with pytest.raises(SocketUnusable, match=r"worker-0\.sock is served by another running server"):
        await start_server(load_settings(env))
    # The first server still answers on its socket.
    response = await send_superlike(served.socket_stub, served.world.stream_id, served.token())
    assert response.sender_id == served.world.viewer_id


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda d: d.mkdir(mode=0o777) or os.chmod(d, 0o777), "is writable by group or others (mode 777)"),
        (lambda d: d.write_text(""), "is not a directory"),
    ],
)
async def test_an_unsafe_socket_directory_is_refused_at_startup(
    tmp_path: Path, signing_keys: SigningKeys, prepare, message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'unsafe.db'}"
    async with migrated_storage(url):
        pass
    directory = tmp_path / "sockets"
    prepare(directory)
    env = {**server_env(url, signing_keys.jwks_path), "LIVECHAT_EDGE_SOCKET_DIR": str(directory)}
    with pytest.raises(SocketUnusable, match=message.replace("(", r"\(").replace(")", r"\)")):
        await start_server(load_settings(env))


async def test_the_socket_is_gone_when_the_server_stops(tmp_path: Path, signing_keys: SigningKeys) -> None:
    url = f"sqlite:///{tmp_path / 'stop.db'}"
    async with migrated_storage(url):
        pass
    env = {**server_env(url, signing_keys.jwks_path), "LIVECHAT_EDGE_SOCKET_DIR": str(tmp_path / "sockets")}
    running = await start_server(load_settings(env))
    path = Path(running.edge_socket or "")
    assert path.exists()
    await running.stop(0)
    assert not path.exists()
    probe = socket.socket(socket.AF_UNIX)
    with probe, pytest.raises(FileNotFoundError):
        probe.connect(str(path))
