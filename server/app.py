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
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.adapters.settlement import settle_every
from server.adapters.storage import Storage, open_storage
from server.api.health import StorageHealth
from server.api.rpc_observer import OBSERVED_METHODS
from server.api.superlike_servicer import LiveStreamChatServicer
from server.auth.jwks import JwksKeySet
from server.auth.tokens import TokenPolicy, TokenVerifier
from server.config import Settings
from server.domain.errors import StorageUnavailable
from server.garbage_collection import settle_startup_heap
from server.observability.wiring import Instruments, instrument
from server.services.feed import FeedService
from server.services.feed_budget import FanoutBudget
from server.services.feed_hub import FeedHub
from server.services.history import HistoryService
from server.services.superlikes import SuperlikeService
from server.workers.listeners import Listening, PortInUse, listen, server_options
from server.workers.role import WorkerRole

__all__ = ["PortInUse", "RunningServer", "serve", "start_server"]

log = logging.getLogger(__name__)

CHAT_SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["LiveStreamChat"].full_name

# Envoy carries at most 32 KB of request headers (max_request_headers_kb), and the transcoder adds the
# REST path once more (x-envoy-original-path). gRPC's own defaults (8 KB soft, 16 KB hard) sat below
# that and refused at random between the two; above both, Envoy's limit is the only one, and its 431
# the only answer to oversized headers.
MAX_METADATA_BYTES = 2 * 32 * 1024 + 16 * 1024

SERVER_OPTIONS = [
    # SO_REUSEPORT: on only when workers share the port (server/workers/listeners.py).
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
    # The Unix socket Envoy reaches this server on (LIVECHAT_EDGE_SOCKET_DIR), None without one.
    listening: Listening | None = None

    @property
    def edge_socket(self) -> str | None:
        if self.listening is None or self.listening.edge_socket is None:
            return None
        return str(self.listening.edge_socket.path)

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
        await _cancel_and_wait(self._background)
        # Leave no credit pending behind us when the database is reachable (another server or the
        # next start would fold it anyway).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.storage.settle(), timeout=5)
        await self.storage.close()
        if self.instruments is not None:
            self.instruments.close()
        if self.listening is not None:
            self.listening.release()


async def _cancel_and_wait(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancels the tasks and waits until every one has ended, cancelling again those still running
    after a second: on Python 3.11 a cancellation that arrives as an inner `asyncio.wait_for` (the
    health loop's, the PostgreSQL feed listener's) completes can be lost, and a loop task would then
    run on forever."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    for task in tasks:  # collect the outcomes, so none is reported as never retrieved
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.warning("background task %s ended with %r", task.get_name(), error)


def build_verifier(settings: Settings) -> tuple[TokenVerifier, JwksKeySet]:
    keys = JwksKeySet(settings.jwks)
    policy = TokenPolicy(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
        hs256_secret=settings.jwt_hs256_secret,
    )
    return TokenVerifier(policy, keys), keys


async def start_server(settings: Settings, role: WorkerRole | None = None) -> RunningServer:
    """A running server; `role`: which of several workers it is (default: the only one)."""
    settings.require_auth()
    verifier, keys = build_verifier(settings)
    await keys.load()  # fail at startup, not on the first request, when the JWKS is unusable
    storage = open_storage(settings)
    try:
        await _check_schema(storage)
        return await _start(settings, storage, verifier, role or WorkerRole())
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


async def _start(settings: Settings, storage: Storage, verifier: TokenVerifier, role: WorkerRole) -> RunningServer:
    health_servicer = health.aio.HealthServicer()
    storage_health = StorageHealth(
        health_servicer,
        storage.reachable,
        services=["", CHAT_SERVICE_NAME],
        interval_seconds=settings.health_check_interval_seconds,
    )
    superlikes = SuperlikeService(storage.superlikes)
    history = HistoryService(storage.history)
    fanout_budget = FanoutBudget(settings.feed_fanout_per_second, floor=settings.feed_fanout_floor)
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
    server = grpc.aio.server(options=server_options(SERVER_OPTIONS, role))
    chat_grpc.add_LiveStreamChatServicer_to_server(instruments.rpc_observer.observe(servicer, OBSERVED_METHODS), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [CHAT_SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    try:
        listening = listen(server, settings, role)
    except BaseException:
        instruments.close()
        raise
    port = listening.port
    await storage_health.check_now()
    await server.start()
    background = [
        asyncio.create_task(storage_health.run(), name="storage-health"),
        asyncio.create_task(
            settle_every(storage.settle, settings.settle_interval_seconds, instruments.metrics.observe_settlement),
            name="settlement",
        ),
        asyncio.create_task(storage.watch_advances(feed_hub.resync), name="feed-wakeups"),
    ]
    if fanout_budget.adapts:
        background.append(asyncio.create_task(fanout_budget.follow_loop(), name="feed-fanout-budget"))
    log.info("gRPC server listening on %s:%d", settings.grpc_host, port)
    if listening.edge_socket is not None:
        log.info("listening for Envoy on unix:%s", listening.edge_socket.path)
    if instruments.metrics_port is not None:
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, instruments.metrics_port)
    return RunningServer(server, port, storage, health_servicer, feed_hub, background, servicer, instruments, listening)


async def serve(settings: Settings, role: WorkerRole | None = None) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    role = role or WorkerRole()
    running = await start_server(settings, role)
    settle_startup_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    role.announce_ready()
    try:
        await stop.wait()
        log.info("shutting down: finishing in-flight calls (grace %.1fs)", settings.shutdown_grace_seconds)
    finally:
        await running.stop(settings.shutdown_grace_seconds)
    log.info("stopped")
