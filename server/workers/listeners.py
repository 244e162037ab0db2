"""Where one server process listens: the public gRPC port for direct callers, and its Unix socket
for Envoy (when LIVECHAT_EDGE_SOCKET_DIR is set).

Several workers share the TCP port through SO_REUSEPORT: the kernel spreads new connections over
them. grpc turns SO_REUSEPORT on by default, which would let a second server on a taken port share it
silently; a single server therefore turns it off (and a taken port fails loudly), and the supervisor
checks the port is free before its workers share it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Protocol

from server.config import Settings
from server.workers.role import WorkerRole
from server.workers.sockets import ClaimedSocket, claim_worker_socket, owner_only_files


class PortInUse(Exception):
    pass


class Bindable(Protocol):
    def add_insecure_port(self, address: str) -> int: ...


@dataclass
class Listening:
    port: int
    edge_socket: ClaimedSocket | None

    def release(self) -> None:
        if self.edge_socket is not None:
            self.edge_socket.release()


def server_options(options: list[tuple[str, Any]], role: WorkerRole) -> list[tuple[str, Any]]:
    """The grpc server options with SO_REUSEPORT on exactly when workers share the port."""
    return [
        *(option for option in options if option[0] != "grpc.so_reuseport"),
        ("grpc.so_reuseport", int(role.shares_port)),
    ]


def listen(server: Bindable, settings: Settings, role: WorkerRole) -> Listening:
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise PortInUse(f"cannot listen on {address}: the port is taken or the address is invalid") from error
    if port == 0:
        raise PortInUse(f"cannot listen on {address}")
    if settings.edge_socket_dir is None:
        return Listening(port, None)
    claimed = claim_worker_socket(settings.edge_socket_dir, role.index)
    with owner_only_files():
        bound = server.add_insecure_port(f"unix:{claimed.path}")
    if bound == 0:
        claimed.release()
        raise PortInUse(f"cannot listen on unix:{claimed.path}")
    return Listening(port, claimed)


def check_port_free(host: str, port: int) -> None:
    """Raises PortInUse when something listens on host:port (before workers share it)."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As grpc binds: connections of an earlier run waiting in TIME_WAIT do not count, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PortInUse(f"cannot listen on {host}:{port}: {error.strerror}") from None
