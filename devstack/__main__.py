"""`make run`: the whole product on an embedded SQLite database, Envoy in front, ready to curl.

Envoy reaches the server on its Unix socket (.local/run/sockets/worker-0.sock) as in production, so
REST calls rely on Envoy's token verification; direct gRPC callers on LIVECHAT_GRPC_PORT have their
tokens verified by the server. One worker: SQLite is served by one process.

Settings (environment): LIVECHAT_HTTP_PORT (8080), LIVECHAT_GRPC_PORT (50051), LIVECHAT_ADMIN_PORT
(9901, Envoy admin on 127.0.0.1), LIVECHAT_METRICS_PORT (9464, the server's Prometheus metrics),
DATABASE_URL (the default of every `livechat` command, sqlite:///.local/livechat.db), RESET=1 (`make run RESET=1`: delete that SQLite database first and
start from fresh demo data). Ctrl-C (or SIGTERM) stops everything.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from pathlib import Path

from devstack.demo_data import DEMO_HOST_ID, DEMO_STREAM_ID, DEMO_VIEWER_ID, TOP_UP_BELOW, DemoSeed, migrate_and_seed
from devstack.ports import port_is_free
from devstack.stack import ROOT, Stack, StackConfig, binary
from server.adapters.storage import delete_local_database, open_storage
from server.auth.local_keys import generate_keys, mint_token
from server.config import DEFAULT_DATABASE_URL

LOCAL_DIR = ROOT / ".local"


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        sys.exit(f"{name}={raw!r} is not a port number")
    if not 1 <= port <= 65535:
        sys.exit(f"{name}={port} is not a port number")
    if not port_is_free(port):
        sys.exit(f"port {port} ({name}) is taken: stop what uses it or set {name} to another port")
    return port


def database_url(env: dict[str, str] | os._Environ[str]) -> str:
    """The database every `livechat` command uses by default, so admin commands work on this stack."""
    return env.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def reset_database(url: str) -> str:
    """Deletes the local SQLite database (and its WAL files); refuses any other database."""
    path = delete_local_database(url)
    if path is None:
        sys.exit(f"RESET=1 deletes a local SQLite database; {url.split(':')[0]} data is not touched: reset it yourself")
    return f"deleted {path}: starting from fresh demo data"


async def _prepare(url: str) -> DemoSeed:
    async with open_storage(url, pool_size=1) as storage:
        return await migrate_and_seed(storage)


def describe_seed(seed: DemoSeed) -> str:
    if seed.created:
        return f"created: johndoe has {seed.viewer_balance} coins"
    if seed.topped_up_by:
        return (
            f"kept from the last run; johndoe had fewer than {TOP_UP_BELOW} coins and was topped up by "
            f"{seed.topped_up_by} to {seed.viewer_balance}"
        )
    return f"kept from the last run: johndoe has {seed.viewer_balance} coins"


def banner(config: StackConfig, url: str, token: str, key_path: Path, seed: DemoSeed) -> str:
    """What `make run` prints: every command in it runs as pasted in the repository root."""
    livechat, grpcurl = binary("livechat"), binary("grpcurl")
    # Admin commands read DATABASE_URL too; spell it out only when this stack does not use the default.
    admin_env = "" if url == DEFAULT_DATABASE_URL else f"DATABASE_URL='{url}' "
    body = json.dumps({"stream_id": DEMO_STREAM_ID})
    return f"""
Allmine live-stream chat is running.
  REST (Envoy)       http://127.0.0.1:{config.http_port}
  gRPC (via Envoy)   127.0.0.1:{config.http_port}
  gRPC (direct)      127.0.0.1:{config.grpc_port}
  Envoy -> server    unix:{config.worker_sockets()[0]}
  Envoy admin        http://127.0.0.1:{config.admin_port}
  OpenAPI            http://127.0.0.1:{config.http_port}/api/v1/openapi.json
  metrics            http://127.0.0.1:{config.extra_server_env["LIVECHAT_METRICS_PORT"]}/metrics (server), http://127.0.0.1:{config.admin_port}/stats/prometheus (Envoy)
  database           {url}
  logs               {config.workdir}/server.log, {config.workdir}/envoy.log
  demo data          {describe_seed(seed)}
                     (kept between runs; a rerun tops johndoe up by 1000 coins when fewer than {TOP_UP_BELOW}
                     are left; `make run RESET=1` deletes the database and starts from fresh demo data)

Send a superlike over REST (token for the demo viewer {DEMO_VIEWER_ID}, valid 24 h):

curl -sS -X POST "http://127.0.0.1:{config.http_port}/api/v1/live-stream/{DEMO_STREAM_ID}/chat/superlike" \\
  -H "Authorization: Bearer {token}" -H "Idempotency-Key: $(date +%s%N)"

The same over gRPC:

{grpcurl} -plaintext -H "authorization: Bearer {token}" -d '{body}' \\
  127.0.0.1:{config.http_port} allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike

The stream's history (newest first) and its top supporters:

curl -sS "http://127.0.0.1:{config.http_port}/api/v1/live-stream/{DEMO_STREAM_ID}/chat/superlikes?pageSize=20" \\
  -H "Authorization: Bearer {token}"
curl -sS "http://127.0.0.1:{config.http_port}/api/v1/live-stream/{DEMO_STREAM_ID}/chat/top-supporters?limit=10" \\
  -H "Authorization: Bearer {token}"

Follow the stream's superlikes live (Server-Sent Events; send one above to see it arrive):

curl -N "http://127.0.0.1:{config.http_port}/api/v1/live-stream/{DEMO_STREAM_ID}/chat/superlikes/events?backlog=5" \\
  -H "Authorization: Bearer {token}"

The streamer's overlay (a browser source; shows each superlike as it arrives):

  http://127.0.0.1:{config.http_port}/overlay/{DEMO_STREAM_ID}?access_token={token}

The demo viewer's coins, and a token for the demo host (any user id works; run them in {ROOT}):

{admin_env}{livechat} admin show-user {DEMO_VIEWER_ID}
{livechat} dev token --sub {DEMO_HOST_ID} --key {key_path} \\
  --issuer {config.issuer} --audience {config.audience}

Press Ctrl-C to stop."""


def main() -> int:
    http_port = _port("LIVECHAT_HTTP_PORT", 8080)
    grpc_port = _port("LIVECHAT_GRPC_PORT", 50051)
    admin_port = _port("LIVECHAT_ADMIN_PORT", 9901)
    metrics_port = _port("LIVECHAT_METRICS_PORT", 9464)
    # Relative paths (the default database, .local/) mean the repository root, whoever started us.
    os.chdir(ROOT)
    url = database_url(os.environ)
    if os.environ.get("RESET") == "1":
        print(reset_database(url), flush=True)
    key_path, jwks_path = generate_keys(LOCAL_DIR / "keys")
    seed = asyncio.run(_prepare(url))
    config = StackConfig(
        workdir=LOCAL_DIR / "run",
        database_url=url,
        jwks_path=jwks_path,
        grpc_port=grpc_port,
        http_port=http_port,
        admin_port=admin_port,
        extra_server_env={"LIVECHAT_METRICS_PORT": str(metrics_port)},
    )
    token = mint_token(
        key_path.read_bytes(),
        subject=DEMO_VIEWER_ID,
        issuer=config.issuer,
        audience=config.audience,
        ttl_seconds=24 * 3600,
    )
    stack = Stack(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("starting the gRPC server and Envoy ...", flush=True)
    stack.start()
    try:
        print(banner(config, url, token, key_path, seed), flush=True)
        while not stop.is_set():
            if (
                stack.server is None
                or stack.server.poll() is not None
                or stack.envoy is None
                or stack.envoy.poll() is not None
            ):
                print("a process exited unexpectedly; see the logs above", file=sys.stderr)
                return 1
            stop.wait(0.5)
    finally:
        print("\nstopping ...", flush=True)
        stack.stop()
        print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
