"""A failure the service did not foresee: the caller gets INTERNAL with the table's text and reason,
never the exception's own words; the log gets the exception. The real servicer on a real gRPC server;
only storage is a fake that breaks."""

from __future__ import annotations

import logging

import grpc
import pytest

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.api.superlike_servicer import LiveStreamChatServicer
from server.app import build_verifier
from server.config import load_settings
from server.services.feed import FeedService
from server.services.feed_hub import FeedHub
from server.services.history import HistoryService
from server.services.superlikes import SuperlikeService
from tests.api.conftest import error_of
from tests.conftest import SigningKeys, server_env
from tests.support import claims_for, sign

SECRET_DETAIL = "driver said: relation superlikes is on fire"


class BrokenStorage:
    """Every read and write raises an error no rule knows about."""

    async def send(self, *args: object) -> None:
        raise RuntimeError(SECRET_DETAIL)

    async def position_key(self) -> bytes:
        return b"k" * 32

    async def page(self, *args: object) -> None:
        raise RuntimeError(SECRET_DETAIL)

    async def top_supporters(self, *args: object) -> None:
        raise RuntimeError(SECRET_DETAIL)

    async def after(self, *args: object) -> None:
        raise RuntimeError(SECRET_DETAIL)


async def test_an_unforeseen_failure_is_internal_with_the_tables_text_and_logged(
    signing_keys: SigningKeys, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(server_env("sqlite:///unused.db", signing_keys.jwks_path))
    verifier, keys = build_verifier(settings)
    await keys.load()
    broken = BrokenStorage()
    history = HistoryService(broken)
    servicer = LiveStreamChatServicer(
        SuperlikeService(broken), history, verifier, feed=FeedService(broken, FeedHub(broken), history)
    )
    server = grpc.aio.server()
    chat_grpc.add_LiveStreamChatServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stream = "64d15f9e2e6c8f4d5a123000"
    metadata = (("authorization", f"Bearer {sign(claims_for('64d15f9e2e6c8f4d5a123456'), signing_keys.rsa_private)}"),)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = chat_grpc.LiveStreamChatStub(channel)
            calls = {
                # Started one at a time: a grpc.aio call is sent as soon as it is created.
                "SendSuperlike": lambda: stub.SendSuperlike(
                    chat_pb2.SendSuperlikeRequest(stream_id=stream), metadata=metadata
                ),
                "ListSuperlikes": lambda: stub.ListSuperlikes(
                    chat_pb2.ListSuperlikesRequest(stream_id=stream), metadata=metadata
                ),
                "ListTopSupporters": lambda: stub.ListTopSupporters(
                    chat_pb2.ListTopSupportersRequest(stream_id=stream), metadata=metadata
                ),
            }
            for name, start in calls.items():
                with caplog.at_level(logging.ERROR, logger="server.api.superlike_servicer"):
                    caplog.clear()
                    with pytest.raises(grpc.aio.AioRpcError) as raised:
                        await start()
                assert error_of(raised.value) == (grpc.StatusCode.INTERNAL, "Internal server error", "INTERNAL")
                assert SECRET_DETAIL not in str(raised.value.debug_error_string())
                assert [record.getMessage() for record in caplog.records] == [f"{name} failed unexpectedly"]
                assert SECRET_DETAIL in str(caplog.records[0].exc_info[1])
    finally:
        await server.stop(0)
