"""`make run`: the whole product on an embedded SQLite database, Envoy in front, ready to curl.

Settings (environment): LIVECHAT_HTTP_PORT (8080), LIVECHAT_GRPC_PORT (50051), LIVECHAT_ADMIN_PORT
(9901, Envoy admin on 127.0.0.1), DATABASE_URL (sqlite:///.local/livechat.db). Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from pathlib import Path

from devstack.demo_data import DEMO_STREAM_ID, DEMO_VIEWER_ID, migrate_and_seed
from devstack.ports import port_is_free
from devstack.stack import ROOT, Stack, StackConfig
from server.adapters.storage import open_storage
from server.auth.local_keys import generate_keys, mint_token

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


async def _prepare(database_url: str) -> None:
    async with open_storage(database_url, pool_size=1) as storage:
        await migrate_and_seed(storage.engine)


def main() -> int:
    http_port = _port("LIVECHAT_HTTP_PORT", 8080)
    grpc_port = _port("LIVECHAT_GRPC_PORT", 50051)
    admin_port = _port("LIVECHAT_ADMIN_PORT", 9901)
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{LOCAL_DIR / 'livechat.db'}"
    key_path, jwks_path = generate_keys(LOCAL_DIR / "keys")
    asyncio.run(_prepare(database_url))
    config = StackConfig(
        workdir=LOCAL_DIR / "run",
        database_url=database_url,
        jwks_path=jwks_path,
        grpc_port=grpc_port,
        http_port=http_port,
        admin_port=admin_port,
    )
    token = mint_token(
        key_path.read_bytes(), subject=DEMO_VIEWER_ID, issuer=config.issuer, audience=config.audience,
        ttl_seconds=24 * 3600,
    )
    stack = Stack(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("starting the gRPC server and Envoy ...", flush=True)
    stack.start()
    try:
        body = json.dumps({"stream_id": DEMO_STREAM_ID})
        print(
            f"""
Allmine live-stream chat is running.
  REST (Envoy)       http://127.0.0.1:{http_port}
  gRPC (via Envoy)   127.0.0.1:{http_port}
  gRPC (direct)      127.0.0.1:{grpc_port}
  Envoy admin        http://127.0.0.1:{admin_port}
  database           {database_url}
  logs               {config.workdir}/server.log, {config.workdir}/envoy.log

Send a superlike over REST (token for the demo viewer {DEMO_VIEWER_ID}, valid 24 h):

curl -sS -X POST "http://127.0.0.1:{http_port}/api/v1/live-stream/{DEMO_STREAM_ID}/chat/superlike" \\
  -H "Authorization: Bearer {token}" -H "Idempotency-Key: $(date +%s%N)"

The same over gRPC with grpcurl ({Path(sys.executable).parent / 'grpcurl'}):

grpcurl -plaintext -H "authorization: Bearer {token}" -d '{body}' \\
  127.0.0.1:{http_port} allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike

Follow the stream's superlikes live (Server-Sent Events; send one above to see it arrive):

curl -N "http://127.0.0.1:{http_port}/api/v1/live-stream/{DEMO_STREAM_ID}/chat/superlikes/events?backlog=5" \
  -H "Authorization: Bearer {token}"

The streamer's overlay (a browser source; shows each superlike as it arrives):

  http://127.0.0.1:{http_port}/overlay/{DEMO_STREAM_ID}?access_token={token}

Another user's token: {Path(sys.executable).parent / 'livechat'} dev token --sub <user id> --key {key_path} \\
  --issuer {config.issuer} --audience {config.audience}

Press Ctrl-C to stop.""",
            flush=True,
        )
        while not stop.is_set():
            if stack.server is None or stack.server.poll() is not None or stack.envoy is None or stack.envoy.poll() is not None:
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
