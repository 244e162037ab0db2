"""How much of a SQLite superlike is driver overhead: the same five-statement write transaction run
through SQLAlchemy + aiosqlite (one thread hand-off per statement, as the server does today) and as
one call on a dedicated thread with the stdlib driver.

    .venv/bin/python bench/sqlite_driver_overhead.py [transactions]

Prints transactions/s and CPU milliseconds per transaction of this process for both.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text

from server.adapters.storage import open_storage

USER = "a" * 24
STATEMENTS = [
    f"SELECT balance FROM wallets WHERE user_id = '{USER}'",
    f"UPDATE wallets SET balance = balance - 1 WHERE user_id = '{USER}' RETURNING balance",
    f"INSERT INTO ledger_entries (user_id, amount, kind, created_at_ms) VALUES ('{USER}', 1, 'coin_credit', 0)",
    f"INSERT INTO ledger_entries (user_id, amount, kind, created_at_ms) VALUES ('{USER}', -1, 'coin_credit', 0)",
]
CONCURRENCY = 64


async def _prepare(path: Path) -> None:
    async with open_storage(f"sqlite:///{path}") as storage:
        await storage.upgrade()
        async with storage.engine.begin() as connection:
            await connection.execute(text(f"INSERT INTO users VALUES ('{USER}', 'u', 'n', 's', 'p', 0)"))
            await connection.execute(text(f"INSERT INTO wallets VALUES ('{USER}', 1000000000)"))


async def _measure(label: str, transaction: object, count: int) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with gate:
            await transaction()  # type: ignore[operator]

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{label:<34} {count / wall:7.0f} tx/s  {1000 * cpu / count:6.3f} ms CPU/tx")


async def _through_aiosqlite(path: Path, count: int) -> None:
    # Storage's async engine is the aiosqlite one (sqlite/engine.py).
    async with open_storage(f"sqlite:///{path}") as storage:
        statements = [text(s) for s in STATEMENTS]

        async def transaction() -> None:
            async with storage.engine.begin() as connection:
                for statement in statements:
                    await connection.execute(statement)

        await _measure("SQLAlchemy + aiosqlite (today)", transaction, count)


async def _one_hop(path: Path, count: int) -> None:
    thread = ThreadPoolExecutor(max_workers=1)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")

    def run() -> None:
        connection.execute("BEGIN IMMEDIATE")
        for statement in STATEMENTS:
            connection.execute(statement).fetchall()
        connection.execute("COMMIT")

    loop = asyncio.get_running_loop()
    await _measure("one call on a dedicated thread", lambda: loop.run_in_executor(thread, run), count)
    thread.shutdown()
    connection.close()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "overhead.db"
        asyncio.run(_prepare(path))
        asyncio.run(_through_aiosqlite(path, count))
        asyncio.run(_one_hop(path, count))


if __name__ == "__main__":
    main()
