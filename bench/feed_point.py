"""One measured point of the live-feed benchmark: N subscribers connected, superlikes sent at R/s for
D seconds, every subscriber drained, then checked and measured (bench/feed_analysis.py)."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench import feed_analysis, procstat
from server.adapters.storage import open_storage

BENCH_DIR = Path(__file__).resolve().parent
DRAIN_TIMEOUT_S = 30.0


@dataclass
class Target:
    """Where a point runs: ports to subscribe and send through, and the processes to measure."""

    database_url: str
    stream_id: str
    subscribe_ports: list[int]
    send_port: int
    measured: dict[str, int]  # name -> pid (servers, Envoys)
    tokens: list[str]
    workdir: Path


@dataclass
class Point:
    label: str
    subscribers: int
    rate: float
    duration_s: float
    per_process: int = 1000
    # (seconds after the first send, action): e.g. SIGKILL of a replica mid-run.
    action: tuple[float, Callable[[], None]] | None = None
    token_offset: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


LIVE_CHILDREN: set[Child] = set()  # stopped by PID on SIGTERM too (bench/feed.py)


class Child:
    """A load process started by PID, its stdout lines read on a thread."""

    def __init__(self, script: str, job: dict[str, Any], job_path: Path) -> None:
        job_path.write_text(json.dumps(job))
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / script), str(job_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(f"{job_path}.stderr", "wb"),
            text=True,
            start_new_session=True,
        )
        LIVE_CHILDREN.add(self)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("<eof>")

    def expect(self, word: str, timeout_s: float) -> None:
        try:
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise RuntimeError(f"{self.process.args[1]}: no '{word}' within {timeout_s} s") from None
        if line != word:
            raise RuntimeError(f"{self.process.args[1]}: expected '{word}', got '{line}'")

    def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        LIVE_CHILDREN.discard(self)


def _query(database_url: str, statement: str, **params: Any) -> list[Any]:
    async def run() -> list[Any]:
        async with open_storage(database_url, pool_size=1) as storage:
            return await storage.read_snapshot(lambda c: list(c.execute(text(statement), params)))

    return asyncio.run(run())


def stream_position(database_url: str, stream_id: str) -> int:
    [(position,)] = _query(database_url, "SELECT last_position FROM live_streams WHERE id = :s", s=stream_id)
    return int(position)


def superlikes_after(database_url: str, stream_id: str, position: int) -> list[str]:
    rows = _query(
        database_url,
        "SELECT id FROM superlikes WHERE stream_id = :s AND stream_position > :p ORDER BY stream_position",
        s=stream_id,
        p=position,
    )
    return [row[0] for row in rows]


def _cpu(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: procstat.cpu_seconds(pid) for name, pid in pids.items()}


def run_point(target: Target, point: Point, log: Callable[[str], None]) -> dict[str, Any]:
    work = target.workdir / point.label.replace("/", "-")
    work.mkdir(parents=True, exist_ok=True)
    path = f"/api/v1/live-stream/{target.stream_id}/chat/superlikes/events"
    fleets: list[Child] = []
    sender: Child | None = None
    load = {"loadavg_start": open("/proc/loadavg").read().split()[:3]}
    try:
        remaining, index = point.subscribers, 0
        while remaining > 0:
            count = min(point.per_process, remaining)
            fleets.append(
                Child(
                    "feed_subscribers.py",
                    {
                        "ports": target.subscribe_ports,
                        "path": path,
                        "subscribers": count,
                        "tokens": target.tokens[index * point.per_process :][:count] or target.tokens,
                        "out": str(work / f"fleet-{index}.pickle"),
                    },
                    work / f"fleet-{index}.json",
                )
            )
            remaining -= count
            index += 1
        connect_started = time.monotonic()
        for fleet in fleets:
            fleet.expect("ready", 180)
        connect_s = time.monotonic() - connect_started
        start_position = stream_position(target.database_url, target.stream_id)
        clients = {f"client{i}": f.process.pid for i, f in enumerate(fleets)}
        sampler = procstat.RssSampler(target.measured["server"], target.measured.get("envoy"))
        others = {k: v for k, v in target.measured.items() if k not in ("server", "envoy")}
        sampler.start()
        rss_others_peak = {name: procstat.rss_kb(pid) or 0 for name, pid in others.items()}
        cpu_before, t_before = _cpu({**target.measured, **clients}), time.monotonic()
        sender = Child(
            "feed_sender.py",
            {
                "port": target.send_port,
                "path": f"/api/v1/live-stream/{target.stream_id}/chat/superlike",
                "tokens": target.tokens,
                "rate": point.rate,
                "duration_s": point.duration_s,
                "token_offset": point.token_offset,
                "out": str(work / "sends.json"),
            },
            work / "sender.json",
        )
        if point.action is not None:
            at, action = point.action
            time.sleep(at)
            log(f"{point.label}: action at {at} s")
            action_started = time.time()
            action()
            load["action_at"] = action_started
        sender.expect("done", point.duration_s * 3 + 90)
        sends_done = time.monotonic()
        expected = superlikes_after(target.database_url, target.stream_id, start_position)
        for fleet in fleets:
            fleet.tell(f"drain {len(expected)} {DRAIN_TIMEOUT_S}")
        for fleet in fleets:
            fleet.expect("drained", DRAIN_TIMEOUT_S + 60)
        cpu_after, t_after = _cpu({**target.measured, **clients}), time.monotonic()
        for fleet in fleets:
            fleet.tell("finish")
        for fleet in fleets:
            fleet.expect("done", 120)
        for name, pid in others.items():
            rss_others_peak[name] = max(rss_others_peak[name], procstat.rss_kb(pid) or 0)
        sampler.stop()
        load["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    finally:
        for child in [*fleets, *([sender] if sender else [])]:
            child.stop()
    wall = t_after - t_before
    cpu = {
        name: (
            None
            if cpu_after[name] is None or cpu_before[name] is None
            else round(cpu_after[name] - cpu_before[name], 3)
        )
        for name in cpu_before
    }
    sends = json.loads((work / "sends.json").read_text())
    cpu["sender"] = sends["cpu_s"]  # its whole life: a few connections and `rate` requests a second
    results = [pickle.loads((work / f"fleet-{i}.pickle").read_bytes()) for i in range(len(fleets))]
    checked = feed_analysis.check_and_measure(expected, sends["records"], results)
    if "action_at" in load:
        # When the subscribers saw their streams break, counted from the action (a SIGKILL).
        lost = [t - load["action_at"] for r in results for sub in r["subscribers"] for t in sub.get("lost_times", [])]
        checked["breaks_after_action_ms"] = feed_analysis.percentiles(array("d", lost), (0, 50))
    chunks = checked["superlike_chunks"] or 1
    memory = sampler.window(0, sampler.now())
    memory.update({f"{name}_rss_peak_kb": kb for name, kb in rss_others_peak.items()})
    result = {
        "label": point.label,
        "subscribers": point.subscribers,
        "rate": point.rate,
        "duration_s": point.duration_s,
        "client_processes": len(fleets),
        "connect_s": round(connect_s, 1),
        "drained_all": all(r["drained"] for r in results),
        "drain_s": round(t_after - sends_done, 2),
        "window_s": round(wall, 2),
        "send": feed_analysis.send_stats(sends["records"]),
        "send_connections_opened": sends["connections_opened"],
        **checked,
        "cpu_s": cpu,
        "cpu_cores": {k: (None if v is None else round(v / wall, 3)) for k, v in cpu.items()},
        "cpu_us_per_chunk": {k: (None if v is None else round(1e6 * v / chunks, 1)) for k, v in cpu.items()},
        "memory": memory,
        **load,
        **point.extra,
    }
    return result


def summary_line(result: dict[str, Any]) -> str:
    d, s, c = result["delivery_ms_from_server_timestamp"], result["send"]["latency_ms"], result["cpu_cores"]
    client = sum(v or 0 for k, v in c.items() if k.startswith("client"))
    return (
        f"{result['label']}: {result['subscribers']} subs x {result['rate']:g}/s: delivery p50 {d['p50']} p99 {d['p99']} ms, "
        f"send p99 {s['p99']} ms, failing subs {result['subscribers_failing']} {result['violations']}, "
        f"events/chunk {result['events_per_chunk']}, cores "
        + " ".join(f"{k} {v}" for k, v in c.items() if not k.startswith("client"))
        + f" clients {client:.2f}"
    )


def os_load() -> list[str]:
    return open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
