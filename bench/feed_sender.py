"""Superlikes at a fixed rate over REST through Envoy, for the live-feed benchmark.

Run by bench/feed.py as `python bench/feed_sender.py <job.json>`, in a process of its own so that the
subscribers' work never delays a send or its clock. Open loop: send i starts at t0 + i / rate whether
or not earlier ones were answered (a new keep-alive connection is opened when none is free), each
from the next sender's token with its own Idempotency-Key. A send that fails (connection error or
503) is retried with the same key until answered, so nothing is charged twice and every superlike's
answer is known. Writes one record per send (JSON): when it was due, started and answered, its
status, superlikeId and the server's timestamp.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import resource
import sys
import time
import uuid
from typing import Any

RETRY_FOR_S = 30.0


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.writer.write((head + "\r\n").encode())
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        if "content-length" in fields:
            body = await self.reader.readexactly(int(fields["content-length"]))
        else:  # chunked
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(data[:-2])
            body = b"".join(parts)
        if fields.get("connection", "").lower() == "close":
            self.writer.close()
        return status, body

    @property
    def usable(self) -> bool:
        return not self.writer.is_closing()


class Pool:
    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Connection] = []
        self.opened = 0

    async def acquire(self) -> Connection:
        while self.idle:
            connection = self.idle.pop()
            if connection.usable:
                return connection
        self.opened += 1
        return Connection(*await asyncio.open_connection("127.0.0.1", self.port))

    def release(self, connection: Connection) -> None:
        if connection.usable:
            self.idle.append(connection)


def _epoch_ms(timestamp: str) -> int:
    return int(dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


async def send_one(pool: Pool, path: str, token: str, due: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
    started = time.time()
    record: dict[str, Any] = {"due": due, "started": started, "attempts": 0, "errors": []}
    while True:
        record["attempts"] += 1
        connection = None
        try:
            connection = await pool.acquire()
            status, body = await connection.post(path, headers)
            pool.release(connection)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
            if connection is not None:
                connection.writer.close()
            status, body = None, repr(error).encode()
        if status == 200:
            answer = json.loads(body)
            record.update(
                answered=time.time(),
                status=200,
                superlike_id=answer["superlikeId"],
                server_ms=_epoch_ms(answer["timestamp"]),
            )
            return record
        record["errors"].append(f"{status} {body[:200].decode(errors='replace')}")
        if status not in (None, 503) or time.time() - started > RETRY_FOR_S:
            record.update(answered=time.time(), status=status)
            return record
        await asyncio.sleep(0.1)


async def main(job_path: str) -> None:
    job = json.loads(open(job_path, encoding="utf-8").read())
    pool, tokens, rate = Pool(job["port"]), job["tokens"], job["rate"]
    count = round(rate * job["duration_s"])
    # Warm connections: the first sends should not pay for TCP handshakes the steady state never does.
    for _ in range(min(8, count)):
        pool.release(await pool.acquire())
    t0 = time.time() + 0.1
    tasks = []
    for index in range(count):
        due = t0 + index / rate
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        token = tokens[(job.get("token_offset", 0) + index) % len(tokens)]
        tasks.append(asyncio.create_task(send_one(pool, job["path"], token, due)))
    records = await asyncio.gather(*tasks)
    with open(job["out"], "w", encoding="utf-8") as handle:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        json.dump(
            {
                "records": records,
                "connections_opened": pool.opened,
                "t0": t0,
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            },
            handle,
        )
    print("done", flush=True)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(sys.argv[1]))
    except ImportError:
        asyncio.run(main(sys.argv[1]))
