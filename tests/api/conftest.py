"""A real server (production wiring from server.app) per database, and clients of it.

Two ways in, both on the production server:
- pytest-grpc's fixtures (`grpc_addr`, `grpc_server`, `grpc_channel`, `grpc_stub`, ...), the idiom
  internal teams use for gRPC services: its `grpc_server` is overridden here to run `start_server` on
  `grpc_addr` (pytest-grpc's own builds a synchronous `grpc.server`, which cannot host grpc.aio
  servicers). Its channel is synchronous, so the server runs on an event loop of its own.
- `api`: a grpc.aio channel to a server on the test's own event loop, for the tests that start, stop
  and restart servers themselves.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.adapters.storage import Storage
from server.app import RunningServer, start_server
from server.cli.presenters import user_json
from server.config import load_settings
from tests.api.server_thread import serving_in_thread
from tests.conftest import SigningKeys, server_env
from tests.support import as_operator, balance_of, claims_for, migrated_storage, sign


async def send_superlike(
    stub: chat_grpc.LiveStreamChatStub,
    stream_id: str,
    token: str | None,
    request_id: str = "",
    metadata: tuple[tuple[str, str], ...] = (),
) -> chat_pb2.SendSuperlikeResponse:
    """One SendSuperlike call, with `authorization: Bearer <token>` unless token is None."""
    if token is not None:
        metadata = (("authorization", f"Bearer {token}"), *metadata)
    return await stub.SendSuperlike(
        chat_pb2.SendSuperlikeRequest(stream_id=stream_id, request_id=request_id), metadata=metadata, timeout=10
    )


@dataclass
class Api:
    server: RunningServer
    channel: grpc.aio.Channel
    stub: chat_grpc.LiveStreamChatStub
    storage: Storage  # the server's database, opened beside the server for seeding and checks
    keys: SigningKeys

    def token_for(self, user_id: str, **claims: object) -> str:
        return sign(claims_for(user_id, **claims), self.keys.rsa_private)

    async def send(
        self,
        stream_id: str,
        token: str | None,
        request_id: str = "",
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> chat_pb2.SendSuperlikeResponse:
        return await send_superlike(self.stub, stream_id, token, request_id, metadata)

    async def refusal(
        self,
        stream_id: str,
        token: str | None,
        request_id: str = "",
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> tuple[grpc.StatusCode, str, str]:
        """(code, message, reason) of a call that must fail."""
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await self.send(stream_id, token, request_id, metadata)
        return error_of(raised.value)

    async def user(self, user_id: str) -> dict:
        """The user as `livechat admin show-user` prints it."""
        return user_json(await as_operator(self.storage, lambda admin: admin.get_user(user_id)))

    async def balance_of(self, user_id: str) -> int:
        """What the user owns, pending superlike earnings included."""
        return await balance_of(self.storage, user_id)


def error_of(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, str]:
    """(code, message, ErrorInfo.reason) of a failed call, read back from grpc-status-details-bin."""
    status = rpc_status.from_call(error)
    assert status is not None, "every error carries a google.rpc.Status"
    assert status.message == error.details()
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        assert detail.Unpack(info)
        infos.append(info)
    assert len(infos) == 1
    assert infos[0].domain == "livestream.allmine.app"
    return error.code(), error.details(), infos[0].reason


@pytest.fixture(scope="session")
def api_database_url(database_url: str, separate_database: Callable[[str], str]) -> str:
    return separate_database(database_url)


@pytest_asyncio.fixture(scope="session")
async def api_storage(api_database_url: str) -> AsyncIterator[Storage]:
    """The API servers' database, opened beside them for seeding and checks."""
    async with migrated_storage(api_database_url, pool_size=10) as storage:
        yield storage


@pytest_asyncio.fixture(scope="session")
async def api(api_database_url: str, api_storage: Storage, signing_keys: SigningKeys) -> AsyncIterator[Api]:
    # The server settles pending credits in the background, so it gets a database of its own.
    running = await start_server(load_settings(server_env(api_database_url, signing_keys.jwks_path)))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield Api(running, channel, chat_grpc.LiveStreamChatStub(channel), api_storage, signing_keys)
    finally:
        await channel.close()
        await running.stop(1)


@dataclass
class Seeds:
    """What a pytest-grpc test needs beside its stub: the server's database and token signing."""

    storage: Storage
    keys: SigningKeys

    def token_for(self, user_id: str, **claims: object) -> str:
        return sign(claims_for(user_id, **claims), self.keys.rsa_private)

    async def user(self, user_id: str) -> dict:
        return user_json(await as_operator(self.storage, lambda admin: admin.get_user(user_id)))

    async def balance_of(self, user_id: str) -> int:
        return await balance_of(self.storage, user_id)


@pytest.fixture(scope="session")
def seeds(api_storage: Storage, signing_keys: SigningKeys) -> Seeds:
    return Seeds(api_storage, signing_keys)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# pytest-grpc's fixtures, pointed at this service.
@pytest.fixture(scope="module")
def grpc_addr() -> str:
    """pytest-grpc's address fixture, with its socket closed: the plugin's own leaves it to the
    garbage collector (a ResourceWarning, an error in this suite)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture(scope="module")
def grpc_stub_cls() -> type[chat_grpc.LiveStreamChatStub]:
    return chat_grpc.LiveStreamChatStub


@pytest.fixture(scope="module")
def grpc_add_to_server() -> Callable[[chat_grpc.LiveStreamChatServicer, grpc.aio.Server], None]:
    """How the service is registered on a server (start_server does it; here for pytest-grpc's idiom)."""
    return chat_grpc.add_LiveStreamChatServicer_to_server


@pytest.fixture(scope="module")
def grpc_server(
    grpc_addr: str, api_database_url: str, api_storage: Storage, signing_keys: SigningKeys
) -> Iterator[RunningServer]:
    """The production server (start_server: health, reflection, storage, settlement) on grpc_addr."""
    port = int(grpc_addr.rpartition(":")[2])
    env = server_env(api_database_url, signing_keys.jwks_path, port=port)
    with serving_in_thread(load_settings(env)) as running:
        yield running


@pytest.fixture(scope="module")
def grpc_servicer(grpc_server: RunningServer) -> chat_grpc.LiveStreamChatServicer:
    """The servicer instance the running server hosts."""
    assert grpc_server.servicer is not None
    return grpc_server.servicer
