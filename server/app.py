"""The composition root: the only place that opens storage for the server and wires it to services,
servicers and the gRPC server.

`start_server(settings)` returns a running server whose bound port is known, so tests run the
production wiring on port 0 and the CLI runs the same function on the configured port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.adapters.settlement import settle_every
from server.adapters.storage import Storage, open_storage
from server.api.health import StorageHealth
from server.api.superlike_servicer import LiveStreamChatServicer
from server.auth.jwks import JwksKeySet
from server.auth.tokens import TokenPolicy, TokenVerifier
from server.config import Settings
from server.domain.errors import StorageUnavailable
from server.observability.wiring import Instruments, instrument
from server.services.feed import FeedService
from server.services.feed_budget import FanoutBudget
from server.services.feed_hub import FeedHub
from server.services.history import HistoryService
from server.services.superlikes import SuperlikeService

log = logging.getLogger(__name__)

CHAT_SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["LiveStreamChat"].full_name

# Envoy carries at most 32 KB of request headers (max_request_headers_kb), and the transcoder adds the
# REST path once more (x-envoy-original-path). gRPC's own defaults (8 KB soft, 16 KB hard) sat below
# that and refused at random between the two; above both, Envoy's limit is the only one, and its 431
# the only answer to oversized headers.
MAX_METADATA_BYTES = 2 * 32 * 1024 + 16 * 1024

SERVER_OPTIONS = [
    # grpc enables SO_REUSEPORT by default: a second server on a taken port would silently share it.
    ("grpc.so_reuseport", 0),
    # Requests are tiny; refusing large ones early protects memory.
    ("grpc.max_receive_message_length", 64 * 1024),
    ("grpc.max_metadata_size", MAX_METADATA_BYTES),
    ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
    ("grpc.keepalive_time_ms", 60_000),
    # Envoy pings its idle upstream connections (every 30 s; render.py --upstream-keepalive-seconds).
    # gRPC counts a ping that comes sooner than this after the last one, while it sends no data, as a
    # strike, and closes the connection with GOAWAY after max_ping_strikes (2) of them, failing every
    # stream on it. Pings once a second or slower are welcome, with or without calls in flight.
    ("grpc.http2.min_ping_interval_without_data_ms", 1_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.keepalive_permit_without_calls", 1),
]


class PortInUse(Exception):
    pass


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    storage: Storage
    health: health.aio.HealthServicer
    feed_hub: FeedHub
    _background: list[asyncio.Task[None]]
    # The servicer the server hosts (pytest-grpc's `grpc_servicer` fixture hands it to tests).
    servicer: LiveStreamChatServicer | None = None
    # Metrics (and their endpoint when LIVECHAT_METRICS_PORT is set) and the RPC log line.
    instruments: Instruments | None = None

    @property
    def metrics_port(self) -> int | None:
        return None if self.instruments is None else self.instruments.metrics_port

    async def stop(self, grace_seconds: float) -> None:
        """Stops taking calls, lets in-flight ones finish for up to `grace_seconds`, then releases."""
        await self.health.enter_graceful_shutdown()
        # Live feeds never finish by themselves: end them first (clients reconnect elsewhere with
        # their cursor), so they do not hold the grace period.
        await self.feed_hub.close()
        await self.server.stop(grace_seconds)
        # Batches already queued get the same grace to reach the database; later calls are refused.
        await self.storage.superlikes.close(max(grace_seconds, 1.0))
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Leave no credit pending behind us when the database is reachable (another server or the
        # next start would fold it anyway).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.storage.settle(), timeout=5)
        await self.storage.close()
        if self.instruments is not None:
            self.instruments.close()


def build_verifier(settings: Settings) -> tuple[TokenVerifier, JwksKeySet]:
    keys = JwksKeySet(settings.jwks)
    policy = TokenPolicy(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
        hs256_secret=settings.jwt_hs256_secret,
    )
    return TokenVerifier(policy, keys), keys


async def start_server(settings: Settings) -> RunningServer:
    settings.require_auth()
    verifier, keys = build_verifier(settings)
    await keys.load()  # fail at startup, not on the first request, when the JWKS is unusable
    storage = open_storage(settings)
    try:
        await _check_schema(storage)
        return await _start(settings, storage, verifier)
    except BaseException:
        await storage.close()
        raise


async def _check_schema(storage: Storage) -> None:
    try:
        await storage.check_schema()
    except StorageUnavailable as error:
        # An unreachable database is not a reason to refuse to start: the server comes up
        # NOT_SERVING and recovers by itself, like after any outage.
        log.warning("database unreachable at startup, schema not checked: %s", error.__cause__)


async def _start(settings: Settings, storage: Storage, verifier: TokenVerifier) -> RunningServer:
    health_servicer = health.aio.HealthServicer()
    storage_health = StorageHealth(
        health_servicer,
        storage.reachable,
        services=["", CHAT_SERVICE_NAME],
        interval_seconds=settings.health_check_interval_seconds,
    )
    superlikes = SuperlikeService(storage.superlikes)
    history = HistoryService(storage.history)
    fanout_budget = FanoutBudget(settings.feed_fanout_per_second)
    feed_hub = FeedHub(storage.history, budget=fanout_budget)
    storage.advances.subscribe(feed_hub.advanced)
    servicer = LiveStreamChatServicer(
        superlikes,
        history,
        verifier,
        storage_health.report_unavailable,
        feed=FeedService(storage.history, feed_hub, history),
        feed_ping_seconds=settings.feed_ping_seconds,
    )

    instruments = instrument(settings, storage)
    instruments.metrics.watch_feed_subscribers(feed_hub.total_subscribers)
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=[instruments.interceptor])
    chat_grpc.add_LiveStreamChatServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [CHAT_SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        instruments.close()
        raise PortInUse(f"cannot listen on {address}: the port is taken or the address is invalid") from error
    if port == 0:
        instruments.close()
        raise PortInUse(f"cannot listen on {address}")
    await storage_health.check_now()
    await server.start()
    background = [
        asyncio.create_task(storage_health.run(), name="storage-health"),
        asyncio.create_task(
            settle_every(storage.settle, settings.settle_interval_seconds, instruments.metrics.observe_settlement),
            name="settlement",
        ),
        asyncio.create_task(storage.watch_advances(feed_hub.resync), name="feed-wakeups"),
        asyncio.create_task(fanout_budget.follow_loop(), name="feed-fanout-budget"),
    ]
    log.info("gRPC server listening on %s:%d", settings.grpc_host, port)
    if instruments.metrics_port is not None:
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, instruments.metrics_port)
    return RunningServer(server, port, storage, health_servicer, feed_hub, background, servicer, instruments)


async def serve(settings: Settings) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    running = await start_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("shutting down: finishing in-flight calls (grace %.1fs)", settings.shutdown_grace_seconds)
    finally:
        await running.stop(settings.shutdown_grace_seconds)
    log.info("stopped")
