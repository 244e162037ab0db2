"""Envoy (the rendered config, the real binary) in front of a stand-in LiveStreamChat servicer: for
edge behaviour that needs the server to answer something the real one never would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from devstack.stack import Stack
from tests.conftest import SigningKeys
from tests.e2e.conftest import stack_config


@asynccontextmanager
async def edge_in_front_of(
    servicer: chat_grpc.LiveStreamChatServicer, workdir: Path, database_url: str, signing_keys: SigningKeys
) -> AsyncIterator[int]:
    """Serves `servicer` (and a SERVING health check) on a TCP port and yields Envoy's HTTP port."""
    server = grpc.aio.server()
    chat_grpc.add_LiveStreamChatServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    config = stack_config(workdir, database_url, signing_keys)
    config.grpc_port = port
    config.edge_over_unix_socket = False  # the stand-in listens on TCP only
    stack = Stack(config)
    try:
        # In a thread: the stand-in answers Envoy's health checks on this event loop meanwhile.
        await asyncio.to_thread(stack.start_envoy)
        yield config.http_port
    finally:
        stack.stop()
        await server.stop(0)
