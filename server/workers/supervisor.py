"""`livechat serve --workers N`: a parent process that runs N worker processes and keeps them running.

Each worker is a whole server (event loop, database pool, group commit, settlement task, live-feed
listener) started as `livechat serve --worker-index I`; the workers share the database, the public
gRPC port (SO_REUSEPORT) and nothing else, and each has its own Unix socket for Envoy. The parent
serves nothing. It:
  * starts every worker and waits until each says it serves (a byte on a pipe); a worker that fails
    to start the first time is a configuration or startup problem: everything stops, the parent
    exits with that worker's status;
  * restarts a worker that dies later, after a delay that doubles with each recent death, and gives
    up when more than MAX_DEATHS workers died within DEATH_WINDOW_SECONDS: it stops the others and
    exits 1, so the process manager above it (compose's restart policy, systemd) sees the failure;
  * passes SIGTERM/SIGINT on to every worker, waits for their graceful shutdown (the grace period
    plus a margin, then SIGKILL) and exits 0 when they all stopped cleanly.
Workers get SIGTERM when the parent dies, however it dies (Linux PR_SET_PDEATHSIG).

The parent never imports grpc (its threads do not survive fork): it only spawns and waits.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger(__name__)

DEATH_WINDOW_SECONDS = 60.0
MAX_DEATHS = 5
FIRST_RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 10.0
# Past the workers' own grace period, before the parent kills what is left.
KILL_MARGIN_SECONDS = 5.0
POLL_SECONDS = 0.05

# (worker index, the descriptor it writes its ready byte to) -> the worker's command line
WorkerCommand = Callable[[int, int], list[str]]


def worker_command(workers: int, program: Sequence[str] = ("-m", "server.cli", "serve")) -> WorkerCommand:
    """`program` (by default `livechat serve`) as worker i of `workers`, run by this Python."""

    def command(index: int, ready_fd: int) -> list[str]:
        return [
            sys.executable,
            *program,
            "--workers",
            str(workers),
            "--worker-index",
            str(index),
            "--ready-fd",
            str(ready_fd),
        ]

    return command


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    ready_pipe: int | None = None
    ready: bool = False
    restart_at: float = 0.0


class Supervisor:
    def __init__(
        self,
        command: WorkerCommand,
        workers: int,
        *,
        stop_grace_seconds: float,
        env: Mapping[str, str] | None = None,
        max_deaths: int = MAX_DEATHS,
        death_window_seconds: float = DEATH_WINDOW_SECONDS,
    ) -> None:
        self._command = command
        self._workers = [_Worker(index) for index in range(workers)]
        self._stop_grace = stop_grace_seconds
        self._env = dict(env) if env is not None else None
        self._max_deaths = max_deaths
        self._death_window = death_window_seconds
        self._deaths: list[float] = []
        self._stop_signal: int | None = None

    @property
    def pids(self) -> list[int | None]:
        return [worker.process.pid if worker.process else None for worker in self._workers]

    def run(self) -> int:
        """Supervises until a signal or a failure; returns the exit status for the parent."""
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            status = self._start_all()
            if status is None:
                status = self._keep_running()
            return status
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._stop_all()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _start_all(self) -> int | None:
        for worker in self._workers:
            self._spawn(worker)
        while not all(worker.ready for worker in self._workers):
            if self._stop_signal is not None:
                return self._stop_all()
            for worker in self._workers:
                self._read_ready(worker)
                assert worker.process is not None
                status = worker.process.poll()
                if status is not None and not worker.ready:
                    log.error("worker %d exited with status %s while starting; stopping", worker.index, status)
                    self._stop_all()
                    return status if status > 0 else 1
            time.sleep(POLL_SECONDS)
        log.info("%d workers serving (pids %s)", len(self._workers), " ".join(map(str, self.pids)))
        return None

    def _keep_running(self) -> int:
        while self._stop_signal is None:
            now = time.monotonic()
            for worker in self._workers:
                if worker.process is None:
                    if now >= worker.restart_at:
                        self._spawn(worker)
                    continue
                self._read_ready(worker)
                status = worker.process.poll()
                if status is None:
                    continue
                if not self._note_death(now):
                    log.error("workers died %d times within %.0f s: giving up", len(self._deaths), self._death_window)
                    self._stop_all()
                    return 1
                delay = min(FIRST_RESTART_DELAY_SECONDS * 2 ** (len(self._deaths) - 1), MAX_RESTART_DELAY_SECONDS)
                log.warning(
                    "worker %d (pid %d) exited with status %s; restarting it in %.1f s",
                    worker.index,
                    worker.process.pid,
                    status,
                    delay,
                )
                self._forget(worker)
                worker.restart_at = now + delay
            time.sleep(POLL_SECONDS)
        log.info("signal %d: stopping the workers (grace %.1f s)", self._stop_signal, self._stop_grace)
        return self._stop_all()

    def _note_death(self, now: float) -> bool:
        """Records a death; False when there were too many lately."""
        self._deaths = [at for at in self._deaths if now - at < self._death_window] + [now]
        return len(self._deaths) <= self._max_deaths

    def _spawn(self, worker: _Worker) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        try:
            worker.process = subprocess.Popen(
                self._command(worker.index, write_fd),
                env=self._env,
                pass_fds=(write_fd,),
                preexec_fn=_stop_with_parent,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the worker holds its own copy: EOF here means it is gone
        worker.ready_pipe, worker.ready = read_fd, False
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def _read_ready(self, worker: _Worker) -> None:
        if worker.ready or worker.ready_pipe is None:
            return
        try:
            said = os.read(worker.ready_pipe, 1)
        except BlockingIOError:
            return
        if said:
            worker.ready = True
            log.info("worker %d serving", worker.index)
        os.close(worker.ready_pipe)
        worker.ready_pipe = None

    def _forget(self, worker: _Worker) -> None:
        if worker.ready_pipe is not None:
            os.close(worker.ready_pipe)
        worker.process, worker.ready_pipe, worker.ready = None, None, False

    def _stop_all(self) -> int:
        """SIGTERM to every worker still running, then waits; 0 when every one stopped cleanly."""
        running = [w.process for w in self._workers if w.process is not None and w.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_grace + KILL_MARGIN_SECONDS
        clean = True
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop within the grace period: killing it", process.pid)
                process.kill()
                process.wait()
            clean = clean and process.returncode == 0
        for worker in self._workers:
            self._forget(worker)
        return 0 if clean else 1


_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
