"""The Unix sockets Envoy reaches the workers on: where they are, and who may connect to them.

A call arriving on one of them may rely on Envoy's token verification (server/api/caller.py), so
only the server's own user (and root) may connect: connect(2) on a Unix socket needs write permission
on the socket file, and each is created 0600 in a directory that is the server user's and writable by
nobody else (who could otherwise put a socket of their own in its place). Envoy runs as that user.

grpc removes an existing socket file before it binds, which is what a restarted worker needs, but it
would also let a second server silently take a running worker's socket: each worker holds a lock file
beside its socket for as long as it runs (the kernel releases it when the process dies, however).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# sun_path holds 108 bytes, the terminating NUL included.
MAX_SOCKET_PATH_BYTES = 107


class SocketUnusable(Exception):
    """The socket directory or a worker's socket cannot be used safely; the message says why."""


def worker_socket_path(directory: str | Path, index: int) -> Path:
    """Worker `index`'s socket: envoy/render.py lists the same paths as the edge's upstream."""
    return Path(directory) / f"worker-{index}.sock"


def prepare_socket_dir(directory: str | Path) -> Path:
    """Creates the directory (0700) or checks an existing one: this user's, writable by nobody else."""
    path = Path(directory)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except FileExistsError:
        raise SocketUnusable(f"LIVECHAT_EDGE_SOCKET_DIR={path} is not a directory") from None
    except OSError as error:
        raise SocketUnusable(f"LIVECHAT_EDGE_SOCKET_DIR={path}: {error.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SocketUnusable(f"LIVECHAT_EDGE_SOCKET_DIR={path} is not a directory")
    if info.st_uid != os.geteuid():
        raise SocketUnusable(
            f"LIVECHAT_EDGE_SOCKET_DIR={path} belongs to uid {info.st_uid}, not to this server's user "
            f"({os.geteuid()}): calls on its sockets are trusted, so the directory must be the server's"
        )
    if info.st_mode & 0o022:
        raise SocketUnusable(
            f"LIVECHAT_EDGE_SOCKET_DIR={path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o}): "
            "another user could put a socket of their own there; make it 0700"
        )
    return path


@dataclass
class ClaimedSocket:
    """A worker's socket path, locked against other servers until `release` (or the process ends)."""

    path: Path
    _lock_fd: int | None

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the lock
            self._lock_fd = None


def claim_worker_socket(directory: str | Path, index: int) -> ClaimedSocket:
    path = worker_socket_path(prepare_socket_dir(directory), index)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise SocketUnusable(
            f"{path} is longer than the {MAX_SOCKET_PATH_BYTES} bytes a Unix socket path may have: "
            "set LIVECHAT_EDGE_SOCKET_DIR to a shorter directory"
        )
    lock_path = path.with_suffix(".lock")
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise SocketUnusable(f"{path} is served by another running server (it holds {lock_path})") from None
    return ClaimedSocket(path, lock_fd)


@contextlib.contextmanager
def owner_only_files() -> Iterator[None]:
    """Files (a socket) created meanwhile are 0600 from the start, not after a chmod."""
    previous = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(previous)
