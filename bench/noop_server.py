"""The no-op SendSuperlike server: the benchmark's honest ceiling, never part of the product.

It answers every SendSuperlike with one constant, seed-shaped SendSuperlikeResponse (a seeded
sender's snapshot on a seeded stream, price 1: the fields and sizes the real server returns, so
Envoy's transcoder renders the same JSON body), without reading the token and without a database.
Everything else the product's server does per call is left out on purpose: the difference between
a superlike and this call through the same rendered Envoy config is the product's own work.

It is started the way `livechat serve` is (bench/bench_stack.py): the same environment
(LIVECHAT_GRPC_HOST, LIVECHAT_GRPC_PORT, read by the server's own settings loader), the same gRPC
server options, uvloop, and the gRPC health service Envoy's cluster checks. `--unix PATH` also
listens on a Unix socket, so Envoy can be pointed at the place the server listens for it; `--workers
N` runs N processes on the one TCP port (SO_REUSEPORT: the kernel spreads the connections), so the
no-op can be measured with as many cores as the server is given.

    python -m bench.noop_server [--unix PATH] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
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


def build_servicer(reply: object) -> object:
    from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc

    class NoopLiveStreamChat(chat_grpc.LiveStreamChatServicer):
        async def SendSuperlike(self, request: object, context: object) -> object:  # noqa: N802 (generated name)
            return reply

    return NoopLiveStreamChat()


def _listen(server: object, address: str) -> None:
    # grpcio reports a taken address by returning 0 or by raising, depending on the version.
    try:
        port = server.add_insecure_port(address)  # type: ignore[attr-defined]
    except RuntimeError:
        port = 0
    if not port:
        raise SystemExit(f"noop server: cannot listen on {address}")


async def serve(unix_path: str | None, reuse_port: bool = False) -> None:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
    from server.app import CHAT_SERVICE_NAME, SERVER_OPTIONS
    from server.config import load_settings

    settings = load_settings()
    # The server refuses to share its port (so_reuseport 0); the no-op's workers share it on purpose.
    options = [(key, 1 if key == "grpc.so_reuseport" and reuse_port else value) for key, value in SERVER_OPTIONS]
    server = grpc.aio.server(options=options)
    chat_grpc.add_LiveStreamChatServicer_to_server(build_servicer(constant_reply()), server)
    health_servicer = health.aio.HealthServicer()
    for service in ("", CHAT_SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    _listen(server, address)
    if unix_path is not None:
        Path(unix_path).unlink(missing_ok=True)
        _listen(server, f"unix:{unix_path}")
    await server.start()
    log.info("noop SendSuperlike server listening on %s%s", address, f" and unix:{unix_path}" if unix_path else "")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(1.0)
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unix", metavar="PATH", help="also listen on this Unix socket (for Envoy)")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the TCP port (1)")
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a worker of --workers
    args = parser.parse_args(argv)
    if args.workers < 1 or (args.workers > 1 and args.unix):
        parser.error("--workers must be >= 1; a Unix socket cannot be shared by several workers")
    from server.config import load_settings
    from server.observability.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    from devstack.stack import _die_with_parent

    # The other workers are children of this one: stopping this process stops them all, and if it
    # is killed outright the kernel stops them (PR_SET_PDEATHSIG).
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.noop_server", "--reuse-port"], cwd=ROOT, preexec_fn=_die_with_parent
        )
        for _ in range(args.workers - 1)
    ]
    try:
        run = serve(args.unix, reuse_port=args.reuse_port or args.workers > 1)
        try:
            import uvloop
        except ImportError:
            asyncio.run(run)
        else:
            uvloop.run(run)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
