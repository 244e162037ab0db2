"""The no-op SendSuperlike server: the benchmark's honest ceiling, never part of the product.

It answers every SendSuperlike with one constant, seed-shaped SendSuperlikeResponse (a seeded
sender's snapshot on a seeded stream, price 1: the fields and sizes the real server returns, so
Envoy's transcoder renders the same JSON body), without reading the token and without a database.
Everything else the product's server does per call is left out on purpose: the difference between
a superlike and this call through the same rendered Envoy config is the product's own work.

It is started the way `livechat serve` is (bench/bench_stack.py), and listens where it does: the
same settings from the same environment (LIVECHAT_GRPC_HOST/PORT, LIVECHAT_WORKERS,
LIVECHAT_EDGE_SOCKET_DIR...), the same gRPC server options, the product's own listener (the public
TCP port, and worker i's Unix socket for Envoy), the product's supervisor for `--workers N` (a parent
and N workers sharing the TCP port), the same garbage-collection settings, uvloop, and the gRPC
health service Envoy's cluster checks.

    python -m bench.noop_server [--workers N] [--batch-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python bench/noop_server.py` too

log = logging.getLogger("bench.noop_server")

# A sender in the middle of the seeded range: its username and surname have the length most seeded
# senders' have (bench_s12345 of 100,000 senders).
REPLY_SENDER_INDEX = 12_345


def constant_reply() -> object:
    """The one SendSuperlikeResponse every call gets, shaped like a seeded sender's real answer."""
    from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
    from bench import seeding
    from server.domain.clock import format_timestamp, now_ms

    index = REPLY_SENDER_INDEX
    sender = seeding.object_id(f"bench-sender-{index}")
    profile = seeding.sender_profile(index)
    return chat_pb2.SendSuperlikeResponse(
        stream_id=seeding.object_id("bench-stream-0"),
        sender_id=sender,
        sender_snapshot=chat_pb2.SenderSnapshot(
            id=sender,
            username=profile["username"],
            name=profile["name"],
            surname=profile["surname"],
            profile_photo=profile["profile_photo"],
        ),
        price=seeding.SUPERLIKE_PRICE,
        timestamp=format_timestamp(now_ms()),
        superlike_id=seeding.object_id("bench-noop-superlike"),
        sender_balance=seeding.SENDER_COINS - (seeding.HISTORY_PER_SENDER + 1) * seeding.SUPERLIKE_PRICE,
    )


MAX_BATCH = 128


class BatchedWait:
    """What a superlike's call waits for, without the work: calls join the batch being formed, one
    batch is "written" at a time (a sleep of `seconds`, no CPU), and every call of a batch is answered
    when it ends, as the real batcher answers a group commit. Calls that arrive meanwhile form the next
    batch. With it the no-op shows what waiting costs grpc.aio per call, apart from any work."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._forming: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None

    async def wait(self) -> None:
        # A future per call, as the real batcher has: a call cancelled by its client must not
        # cancel its neighbours' answer.
        answered = asyncio.get_running_loop().create_future()
        self._forming.append(answered)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        await answered

    async def _write_batches(self) -> None:
        while self._forming:
            # At most as many calls as the real batchers take (MAX_BATCH of both databases).
            batch, self._forming = self._forming[:MAX_BATCH], self._forming[MAX_BATCH:]
            await asyncio.sleep(self._seconds)
            for answered in batch:
                if not answered.done():
                    answered.set_result(None)


def build_servicer(reply: object, batch_seconds: float = 0.0) -> object:
    from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc

    class NoopLiveStreamChat(chat_grpc.LiveStreamChatServicer):
        async def SendSuperlike(self, request: object, context: object) -> object:  # noqa: N802 (generated name)
            return reply

    class WaitingNoopLiveStreamChat(chat_grpc.LiveStreamChatServicer):
        def __init__(self) -> None:
            self._batches = BatchedWait(batch_seconds)

        async def SendSuperlike(self, request: object, context: object) -> object:  # noqa: N802 (generated name)
            await self._batches.wait()
            return reply

    return WaitingNoopLiveStreamChat() if batch_seconds > 0 else NoopLiveStreamChat()


async def serve(settings: object, role: object, batch_seconds: float = 0.0) -> None:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
    from server.app import CHAT_SERVICE_NAME, SERVER_OPTIONS
    from server.garbage_collection import settle_startup_heap
    from server.workers.listeners import listen, server_options

    server = grpc.aio.server(options=server_options(SERVER_OPTIONS, role))
    chat_grpc.add_LiveStreamChatServicer_to_server(build_servicer(constant_reply(), batch_seconds), server)
    health_servicer = health.aio.HealthServicer()
    for service in ("", CHAT_SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    listening = listen(server, settings, role)
    try:
        await server.start()
        settle_startup_heap()
        log.info(
            "noop SendSuperlike server listening on %s:%d%s",
            settings.grpc_host,
            listening.port,
            f" and unix:{listening.edge_socket.path}" if listening.edge_socket else "",
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        role.announce_ready()
        await stop.wait()
        await health_servicer.enter_graceful_shutdown()
        await server.stop(1.0)
    finally:
        listening.release()
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, help="server processes (default LIVECHAT_WORKERS, 1)")
    parser.add_argument(
        "--batch-ms",
        type=float,
        default=0.0,
        help="answer in batches, one at a time, each taking this long without work (an experiment: "
        "what waiting like a group-committed superlike costs; 0, the default, answers at once)",
    )
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from server.config import load_settings, with_workers
    from server.observability.logs import configure_logging
    from server.workers.role import WorkerRole

    settings = load_settings()
    if args.workers is not None:
        settings = with_workers(settings, args.workers)
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1 and args.worker_index is None:
        # The parent, exactly as `livechat serve` runs it (server/cli: _supervise): it serves nothing.
        from server.workers.listeners import check_port_free
        from server.workers.sockets import prepare_socket_dir
        from server.workers.supervisor import Supervisor, worker_command

        check_port_free(settings.grpc_host, settings.grpc_port)
        if settings.edge_socket_dir is not None:
            prepare_socket_dir(settings.edge_socket_dir)
        supervisor = Supervisor(
            worker_command(settings.workers, ("-m", "bench.noop_server", "--batch-ms", str(args.batch_ms))),
            settings.workers,
            stop_grace_seconds=settings.shutdown_grace_seconds,
        )
        return supervisor.run()
    role = WorkerRole(args.worker_index or 0, settings.workers, args.ready_fd)
    run = serve(settings, role, args.batch_ms / 1000)
    try:
        import uvloop
    except ImportError:
        asyncio.run(run)
    else:
        uvloop.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
