"""CPU seconds and resident memory of the processes under test, read from procfs."""

from __future__ import annotations

import os
import re
import resource
import threading
import time
from dataclasses import dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the whole process (all threads), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """pid and its descendants: `livechat serve --workers N` is a supervisor and N worker processes."""
    tree, index = [pid], 0
    while index < len(tree):
        current = tree[index]
        index += 1
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as handle:
                    tree.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return tree


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def parent_of(pid: int | str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
        return int(stat[stat.rindex(")") + 2 :].split()[1])
    except (OSError, ValueError):
        return None


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """utime + stime of every process of the tree, by pid (empty once the process is gone)."""
    seconds = {member: cpu_seconds(member) for member in process_tree(pid)}
    return {member: value for member, value in seconds.items() if value is not None}


def tree_rss_kb(pid: int) -> int | None:
    sizes = [rss_kb(member) for member in process_tree(pid)]
    present = [size for size in sizes if size is not None]
    return sum(present) if present else None


@dataclass(frozen=True)
class PostgresScope:
    """The PostgreSQL processes that work for the benchmark: the postmaster the benchmark's database
    lives on and its children, except backends (and autovacuum workers) of other databases. A shared
    machine may run other PostgreSQL servers and other databases' clients; every `postgres` process
    would count their work too."""

    postmaster: int
    database: str


# "postgres: [cluster: ]user database host(port) state", or "[local]" for a Unix socket.
_BACKEND = re.compile(r"^(?:\S+/\S+: )?\S+ (\S+) (?:\S+\(\d+\)|\[local\])")
_AUTOVACUUM = re.compile(r"^(?:\S+/\S+: )?autovacuum worker (\S+)")


def postgres_pids(scope: PostgresScope) -> list[int]:
    pids = [scope.postmaster]
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or parent_of(entry) != scope.postmaster:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                title = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if works_for(title, scope.database):
            pids.append(int(entry))
    return pids


def works_for(title: str, database: str) -> bool:
    """Whether a postgres child with this process title works for `database`: a backend or autovacuum
    worker of that database, or a process the whole server shares (WAL writer, checkpointer...)."""
    title = title.removeprefix("postgres: ")
    match = _BACKEND.match(title) or _AUTOVACUUM.match(title)
    return match is None or match.group(1) == database


def children_cpu_seconds() -> float:
    """CPU of every child this process has reaped: the load tools, which exit at the end of each run."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_cpu_seconds() -> tuple[float, float]:
    """The whole machine's CPU seconds so far: (busy, stolen). Stolen is time the hypervisor gave this
    machine's vCPUs to someone else while they had work: on a shared host it makes the same work
    take longer, and it is what a run's figures carry from the neighbours."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


@dataclass
class CpuSnapshot:
    at: float
    server: dict[int, float] | None  # the server's process tree (workers included), by pid
    envoy: float | None
    postgres: dict[int, float]
    load_tool: float
    machine: tuple[float, float] = (0.0, 0.0)  # machine_cpu_seconds()


def snapshot(server_pid: int | None, envoy_pid: int | None, postgres_scope: PostgresScope | None) -> CpuSnapshot:
    """CPU seconds so far of the server's process tree, Envoy, PostgreSQL (when in scope) and the
    load tools this process has reaped."""
    postgres: dict[int, float] = {}
    if postgres_scope is not None:
        for pid in postgres_pids(postgres_scope):
            seconds = cpu_seconds(pid)
            if seconds is not None:
                postgres[pid] = seconds
    return CpuSnapshot(
        at=time.monotonic(),
        server=tree_cpu_seconds(server_pid) if server_pid else None,
        envoy=cpu_seconds(envoy_pid) if envoy_pid else None,
        postgres=postgres,
        load_tool=children_cpu_seconds(),
        machine=machine_cpu_seconds(),
    )


def machine_cores(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """The machine's cores busy and stolen over the window (CPU seconds / wall seconds)."""
    wall = (after.at - before.at) or 1.0
    return {
        "busy": round((after.machine[0] - before.machine[0]) / wall, 3),
        "stolen": round((after.machine[1] - before.machine[1]) / wall, 3),
    }


def cpu_delta(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float | None]:
    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 3)

    # Processes that started during the window count from zero (backends, workers); the pool keeps
    # its connections, so backends rarely come and go during a run.
    postgres = sum(seconds - before.postgres.get(pid, 0.0) for pid, seconds in after.postgres.items())
    server = None
    if before.server and after.server:
        server = round(sum(seconds - before.server.get(pid, 0.0) for pid, seconds in after.server.items()), 3)
    return {
        "wall_s": round(after.at - before.at, 3),
        "server": server,
        "envoy": diff(before.envoy, after.envoy),
        "postgres": round(postgres, 3) if after.postgres else None,
        "load_tool": round(after.load_tool - before.load_tool, 3),
    }


@dataclass
class RssSampler:
    """Samples VmRSS of the server (its process tree) and Envoy every `interval` seconds on a
    background thread."""

    server_pid: int
    envoy_pid: int | None
    interval: float = 0.5
    samples: list[tuple[float, int | None, int | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sample()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def _sample(self) -> None:
        envoy = rss_kb(self.envoy_pid) if self.envoy_pid else None
        self.samples.append((round(self.now(), 2), tree_rss_kb(self.server_pid), envoy))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def window(self, start: float, end: float) -> dict[str, int | None]:
        inside = [s for s in list(self.samples) if start <= s[0] <= end]
        server = [s[1] for s in inside if s[1] is not None]
        envoy = [s[2] for s in inside if s[2] is not None]
        return {
            "server_rss_start_kb": server[0] if server else None,
            "server_rss_end_kb": server[-1] if server else None,
            "server_rss_peak_kb": max(server) if server else None,
            "envoy_rss_peak_kb": max(envoy) if envoy else None,
            "samples": len(inside),
        }
