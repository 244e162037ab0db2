"""A fleet of Server-Sent Events subscribers in one process: raw HTTP/1.1 over asyncio protocols
(uvloop), no HTTP library, so one process can follow about a thousand feeds.

Run by bench/feed.py as `python bench/feed_subscribers.py <job.json>`. It connects every subscriber,
prints `ready`, then on `drain <events> <timeout_s>` (stdin) waits until every subscriber has
received that many superlikes (or the timeout) and prints `drained`; on the next line it writes what
each one received (pickle) and exits.

Per subscriber it records every superlike id in arrival order with the arrival time (time.time(),
taken once per socket read, when the HTTP chunk holding it is complete), the chunks that carried
superlikes, its connections, and any `event: error`. When a stream ends or breaks it reconnects as a
browser's EventSource does: after the `retry:` delay the server sent, with `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import random
import re
import sys
import time
from array import array
from typing import Any

# One superlike event as the server renders it (server/api/server_sent_events.py): its cursor, then
# its JSON, whose superlikeId is the last field.
EVENT = re.compile(rb'id: ([^\n]*)\nevent: superlike\ndata: [^\n]*"superlikeId":"([0-9a-f]{24})"')
CONNECT_CONCURRENCY = 50


class SubscriberState:
    """What one subscriber received, across all its connections."""

    def __init__(self, index: int, host: str, port: int, path: str, token: str) -> None:
        self.index, self.host, self.port, self.path, self.token = index, host, port, path, token
        self.ids = array("i")  # positions in the fleet's id table, in arrival order
        self.times = array("d")
        self.superlike_chunks = 0
        self.connections = 0
        self.refused: list[int] = []  # non-200 statuses (then it retries)
        self.error_events: list[str] = []
        self.breaks = 0  # connections that ended or broke while the fleet was running
        self.last_event_id: str | None = None
        self.lost_at: float | None = None
        self.gaps: list[float] = []  # seconds from a lost connection to the next 200
        self.lost_times: list[float] = []
        self.retry_s = 1.0
        self.ready = asyncio.get_running_loop().create_future()


class SseConnection(asyncio.Protocol):
    def __init__(self, fleet: Fleet, state: SubscriberState) -> None:
        self.fleet, self.state = fleet, state
        self.buffer = bytearray()
        self.events = bytearray()
        self.in_body = False
        self.chunk_left: int | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        state = self.state
        head = (
            f"GET {state.path} HTTP/1.1\r\nHost: 127.0.0.1:{state.port}\r\n"
            f"Authorization: Bearer {state.token}\r\nAccept: text/event-stream\r\n"
        )
        if state.last_event_id is not None:
            head += f"Last-Event-ID: {state.last_event_id}\r\n"
        transport.write((head + "\r\n").encode())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer
        buffer += data
        if not self.in_body:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            status = int(head.split(b" ", 2)[1])
            if status != 200 or b"chunked" not in head.lower():
                self.state.refused.append(status)
                self.transport.close()  # type: ignore[union-attr]
                return
            self.in_body = True
            self.state.connections += 1
            if self.state.lost_at is not None:
                self.state.gaps.append(now - self.state.lost_at)
                self.state.lost_at = None
        self._dechunk(now)

    def _dechunk(self, now: float) -> None:
        buffer, position, payload = self.buffer, 0, []
        while True:
            if self.chunk_left is None:
                eol = buffer.find(b"\r\n", position)
                if eol < 0:
                    break
                size = int(bytes(buffer[position:eol]).split(b";")[0], 16)
                position = eol + 2
                if size == 0:  # the response ended
                    self.transport.close()  # type: ignore[union-attr]
                    break
                self.chunk_left = size
            if len(buffer) - position < self.chunk_left + 2:
                break
            chunk = bytes(buffer[position : position + self.chunk_left])
            position += self.chunk_left + 2
            self.chunk_left = None
            if b"event: superlike" in chunk:
                self.state.superlike_chunks += 1
            payload.append(chunk)
        del buffer[:position]
        if payload:
            self._events(b"".join(payload), now)

    def _events(self, text: bytes, now: float) -> None:
        state = self.state
        if not state.ready.done():
            state.ready.set_result(None)
        events = self.events
        events += text
        cut = events.rfind(b"\n\n")
        if cut < 0:
            return
        block = bytes(events[: cut + 2])
        del events[: cut + 2]
        found = EVENT.findall(block)
        if found:
            table, order, ids, times = self.fleet.table, self.fleet.order, state.ids, state.times
            for _, superlike_id in found:
                index = table.get(superlike_id)
                if index is None:
                    index = table[superlike_id] = len(order)
                    order.append(superlike_id)
                ids.append(index)
                times.append(now)
            state.last_event_id = found[-1][0].decode()
        if b"event: error" in block:
            state.error_events.append(block[block.find(b"event: error") :][:300].decode(errors="replace"))
        if block.startswith(b"retry: "):
            state.retry_s = int(block[7 : block.find(b"\n")]) / 1000

    def connection_lost(self, exc: Exception | None) -> None:
        self.fleet.reconnect_later(self.state)


class Fleet:
    def __init__(self, job: dict[str, Any]) -> None:
        self.table: dict[bytes, int] = {}
        self.order: list[bytes] = []
        self.running = True
        self.reconnects: set[asyncio.Task[None]] = set()
        ports = job["ports"]
        self.states = [
            SubscriberState(
                index, "127.0.0.1", ports[index % len(ports)], job["path"], job["tokens"][index % len(job["tokens"])]
            )
            for index in range(job["subscribers"])
        ]

    async def connect(self, state: SubscriberState) -> None:
        loop = asyncio.get_running_loop()
        while self.running:
            try:
                await loop.create_connection(lambda: SseConnection(self, state), state.host, state.port)
                return
            except OSError:
                await asyncio.sleep(0.2)

    def reconnect_later(self, state: SubscriberState) -> None:
        if not self.running:
            return
        state.breaks += 1
        state.lost_times.append(time.time())
        if state.lost_at is None:
            state.lost_at = state.lost_times[-1]

        async def again() -> None:
            # EventSource waits the server's `retry:` delay; the jitter spreads a replica's subscribers.
            await asyncio.sleep(state.retry_s + random.uniform(0, 0.25))
            await self.connect(state)

        task = asyncio.create_task(again())
        self.reconnects.add(task)
        task.add_done_callback(self.reconnects.discard)

    async def connect_all(self, timeout_s: float) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(state: SubscriberState) -> None:
            async with gate:
                await self.connect(state)
                await state.ready

        await asyncio.wait_for(asyncio.gather(*(one(s) for s in self.states)), timeout_s)

    async def drain(self, events: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(len(s.ids) >= events for s in self.states):
                return True
            await asyncio.sleep(0.05)
        return False

    def result(self, drained: bool) -> dict[str, Any]:
        return {
            "drained": drained,
            "order": [superlike_id.decode() for superlike_id in self.order],
            "subscribers": [
                {
                    "index": s.index,
                    "port": s.port,
                    "ids": s.ids,
                    "times": s.times,
                    "superlike_chunks": s.superlike_chunks,
                    "connections": s.connections,
                    "breaks": s.breaks,
                    "gaps": s.gaps,
                    "lost_times": s.lost_times,
                    "refused": s.refused,
                    "error_events": s.error_events[:5],
                }
                for s in self.states
            ],
        }


async def main(job_path: str) -> None:
    job = json.loads(open(job_path, encoding="utf-8").read())
    fleet = Fleet(job)
    loop = asyncio.get_running_loop()
    try:
        await fleet.connect_all(job.get("connect_timeout_s", 120))
    except TimeoutError:
        print(f"failed {sum(s.ready.done() for s in fleet.states)} of {len(fleet.states)} connected", flush=True)
        return
    print("ready", flush=True)
    command = (await loop.run_in_executor(None, sys.stdin.readline)).split()
    drained = False
    if command and command[0] == "drain":
        drained = await fleet.drain(int(command[1]), float(command[2]))
    # The benchmark reads this process's CPU now, while it still exists, then lets it finish.
    print("drained", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    fleet.running = False
    for task in list(fleet.reconnects):
        task.cancel()
    with open(job["out"], "wb") as handle:
        pickle.dump(fleet.result(drained), handle, protocol=pickle.HIGHEST_PROTOCOL)
    print("done", flush=True)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(sys.argv[1]))
    except ImportError:
        asyncio.run(main(sys.argv[1]))
