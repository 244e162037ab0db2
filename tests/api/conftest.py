"""A real server (production wiring from server.app) on port 0, per database, and a client channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from grpc_status import rpc_status
from google.rpc import error_details_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.adapters.storage import Storage
from server.app import RunningServer, start_server
from server.cli.presenters import user_json
from server.config import load_settings
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


def error_of(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, str]:
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
async def api(api_database_url: str, signing_keys: SigningKeys) -> AsyncIterator[Api]:
    # The server settles pending credits in the background, so it gets a database of its own.
    async with migrated_storage(api_database_url, pool_size=10) as storage:
        running = await start_server(load_settings(server_env(api_database_url, signing_keys.jwks_path)))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        try:
            yield Api(running, channel, chat_grpc.LiveStreamChatStub(channel), storage, signing_keys)
        finally:
            await channel.close()
            await running.stop(1)
