"""The supervisor of `livechat serve --workers N`, with real processes (tests/unit/supervised_children.py):
a signal stops every worker gracefully, a worker that cannot start stops everything, a dead worker is
restarted, workers that keep dying make the parent give up, and workers never outlive the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

CHILDREN = Path(__file__).resolve().parent / "supervised_children.py"


def pids(directory: Path, index: int, suffix: str = "pids") -> list[int]:
    path = directory / f"worker-{index}.{suffix}"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def eventually(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"


def log_of(tmp_path: Path) -> str:
    return (tmp_path / "supervisor.log").read_text()


@contextmanager
def supervisor(tmp_path: Path, workers: int, mode: str, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    with (tmp_path / "supervisor.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(CHILDREN), "supervise", str(workers), mode, str(tmp_path), *extra], stderr=log
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        for index in range(workers):
            for pid in pids(tmp_path, index):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def serving(tmp_path: Path, workers: int) -> list[int]:
    """The workers' pids, once the supervisor knows every one serves."""
    eventually(lambda: f"{workers} workers serving" in log_of(tmp_path), "every worker serving")
    return [pids(tmp_path, i)[-1] for i in range(workers)]


def test_sigterm_to_the_parent_stops_every_worker_gracefully_and_it_exits_0(tmp_path: Path) -> None:
    with supervisor(tmp_path, 3, "serve") as process:
        started = serving(tmp_path, 3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert [pids(tmp_path, i, "stopped") for i in range(3)] == [[pid] for pid in started]


def test_a_worker_that_cannot_start_stops_the_others_and_the_parent_exits_with_its_status(tmp_path: Path) -> None:
    with supervisor(tmp_path, 3, "fail-start") as process:
        assert process.wait(30) == 3
        # Workers 0 and 2 may be stopped while Python is still starting them (before they record
        # their pid or set their SIGTERM handler): what must hold is that none was restarted and
        # none outlives the parent.
        assert len(pids(tmp_path, 1)) == 1
        assert all(len(pids(tmp_path, i)) <= 1 for i in (0, 2))
        eventually(lambda: not any(alive(pid) for i in (0, 2) for pid in pids(tmp_path, i)), "the others stopped")
        assert "worker 1 exited with status 3 while starting; stopping" in log_of(tmp_path)


def test_a_killed_worker_is_restarted_and_the_others_keep_running(tmp_path: Path) -> None:
    with supervisor(tmp_path, 2, "serve") as process:
        first, second = serving(tmp_path, 2)
        os.kill(second, signal.SIGKILL)
        eventually(lambda: len(pids(tmp_path, 1)) == 2, "worker 1 restarted")
        restarted = pids(tmp_path, 1)[-1]
        assert restarted != second and alive(restarted) and alive(first)
        assert pids(tmp_path, 0) == [first]
        eventually(lambda: "worker 1 serving" in log_of(tmp_path).split("restarting it")[-1], "worker 1 serving again")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert (pids(tmp_path, 0, "stopped"), pids(tmp_path, 1, "stopped")) == ([first], [restarted])
        assert f"worker 1 (pid {second}) exited with status -9; restarting it in 0.5 s" in log_of(tmp_path)


def test_workers_that_keep_dying_make_the_parent_give_up_with_status_1(tmp_path: Path) -> None:
    with supervisor(tmp_path, 1, "crash", "2") as process:
        assert process.wait(30) == 1
        # The first start, then a restart after each of the 2 deaths allowed; the third death ends it.
        assert len(pids(tmp_path, 0)) == 3
        assert "workers died 3 times within 60 s: giving up" in log_of(tmp_path)


def test_the_workers_stop_when_the_parent_is_killed(tmp_path: Path) -> None:
    with supervisor(tmp_path, 2, "serve") as process:
        started = serving(tmp_path, 2)
        process.kill()
        process.wait(10)
        eventually(lambda: not any(alive(pid) for pid in started), "every worker gone with its parent")
        assert [pids(tmp_path, i, "stopped") for i in range(2)] == [[pid] for pid in started]
