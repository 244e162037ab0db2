"""`livechat serve --workers N` refusals, as operators meet them: the real CLI process, a JSON error
on stderr and the exit status, before any worker starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def serve(*args: str, env: dict[str, str]) -> tuple[int, dict]:
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("LIVECHAT_")}
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", *args],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stderr.strip().splitlines()[-1])


def test_several_workers_on_sqlite_are_refused_with_the_reason(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'one.db'}"}
    assert serve("--workers", "2", env=env) == (
        2,
        {
            "error": "CONFIG",
            "message": "2 workers: SQLite is served by one process (its single writer and the live feed's "
            "in-process fan-out live there): run one worker, or use PostgreSQL for more",
        },
    )
    assert serve(env={**env, "LIVECHAT_WORKERS": "2"})[0] == 2


def test_workers_on_a_taken_port_are_refused_before_any_starts(postgres_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"DATABASE_URL": postgres_url, "LIVECHAT_GRPC_PORT": str(port), "LIVECHAT_GRPC_HOST": "127.0.0.1"}
        assert serve("--workers", "2", env=env) == (
            1,
            {"error": "PortInUse", "message": f"cannot listen on 127.0.0.1:{port}: Address already in use"},
        )


def test_workers_with_an_unsafe_socket_directory_are_refused_before_any_starts(
    postgres_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "sockets"
    directory.mkdir()
    directory.chmod(0o777)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"DATABASE_URL": postgres_url, "LIVECHAT_GRPC_PORT": str(port), "LIVECHAT_EDGE_SOCKET_DIR": str(directory)}
    assert serve("--workers", "2", env=env) == (
        1,
        {
            "error": "SocketUnusable",
            "message": f"LIVECHAT_EDGE_SOCKET_DIR={directory} is writable by group or others (mode 777): "
            "another user could put a socket of their own there; make it 0700",
        },
    )
