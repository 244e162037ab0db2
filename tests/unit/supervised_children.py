"""Real processes for tests/unit/test_supervisor.py: the supervisor, and workers that behave on cue.

    python supervised_children.py supervise WORKERS MODE DIR [MAX_DEATHS]
    python supervised_children.py worker MODE INDEX READY_FD DIR      (what the supervisor starts)

Workers append their pid to DIR/worker-<i>.pids when they start and to DIR/worker-<i>.stopped when
SIGTERM stops them. MODE: "serve" (ready, then wait for SIGTERM), "fail-start" (worker 1 exits 3
before it is ready, the others serve), "crash" (ready, then exit 4 a moment later).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _append(path: Path, line: str) -> None:
    with path.open("a") as file:
        file.write(line + "\n")


def worker(mode: str, index: int, ready_fd: int, directory: Path) -> int:
    _append(directory / f"worker-{index}.pids", str(os.getpid()))
    if mode == "fail-start" and index == 1:
        return 3
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    if mode == "crash":
        time.sleep(0.2)
        return 4
    while not stopping:
        time.sleep(0.02)
    _append(directory / f"worker-{index}.stopped", str(os.getpid()))
    return 0


def supervise(workers: int, mode: str, directory: Path, max_deaths: int) -> int:
    sys.path.insert(0, str(ROOT))
    from server.observability.logs import configure_logging
    from server.workers.supervisor import Supervisor

    configure_logging("INFO")

    def command(index: int, ready_fd: int) -> list[str]:
        return [sys.executable, __file__, "worker", mode, str(index), str(ready_fd), str(directory)]

    return Supervisor(command, workers, stop_grace_seconds=5, max_deaths=max_deaths).run()


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        sys.exit(worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])))
    max_deaths = int(sys.argv[5]) if len(sys.argv) > 5 else 5
    sys.exit(supervise(int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), max_deaths))
