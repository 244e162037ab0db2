"""A deep history page costs what the first one does: ListSuperlikes' storage read timed at page 1 and
page 1,000 (page size 50) of one stream holding 100,000 superlikes, on SQLite and PostgreSQL.

    .venv/bin/python bench/history_depth.py [--postgres-url postgresql://postgres@127.0.0.1/livechat_bench_history]

Writes bench/results/history-depth.json and prints a table. The read is the one the server makes for a
page (storage.history.page), timed in-process so the figure is the database's work, not the edge's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from bench.seeding import reset_postgres, reset_sqlite  # noqa: E402
from server.adapters.storage import open_storage  # noqa: E402
from server.adapters.tables import LiveStream, StreamSupporter, SuperlikeRecord, User  # noqa: E402
from server.services.history import NEWEST  # noqa: E402

SUPERLIKES = 100_000
SENDERS = 1_000
PAGE_SIZE = 50
DEEP_PAGE = 1_000
CALLS = 300
RESULTS = Path(__file__).resolve().parent / "results" / "history-depth.json"
STREAM = "ab" * 12
HOST = "cd" * 12


def _sender(i: int) -> str:
    return f"{i:024x}"


async def _seed(url: str) -> None:
    async with open_storage(url, pool_size=2) as storage:
        await storage.upgrade()
        users = [{"id": HOST, "username": "host", "name": "H", "surname": "H", "profile_photo": "", "created_at_ms": 0}]
        users += [
            {
                "id": _sender(i),
                "username": f"s{i}",
                "name": "S",
                "surname": str(i),
                "profile_photo": f"{i}.jpg",
                "created_at_ms": 0,
            }
            for i in range(SENDERS)
        ]
        async with storage.engine.begin() as connection:
            await connection.execute(insert(User), users)
            await connection.execute(
                insert(LiveStream),
                [
                    {
                        "id": STREAM,
                        "host_id": HOST,
                        "state": "live",
                        "superlike_price": 1,
                        "created_at_ms": 0,
                        "last_position": SUPERLIKES,
                    }
                ],
            )
            for start in range(0, SUPERLIKES, 10_000):
                await connection.execute(
                    insert(SuperlikeRecord),
                    [
                        {
                            "id": f"{position:024x}",
                            "stream_id": STREAM,
                            "sender_id": _sender(position % SENDERS),
                            "sender_username": f"s{position % SENDERS}",
                            "sender_name": "S",
                            "sender_surname": str(position % SENDERS),
                            "sender_profile_photo": "",
                            "price": 1,
                            "sender_balance_after": 0,
                            "created_at_ms": position,
                            "idempotency_key": None,
                            "stream_position": position,
                        }
                        for position in range(start + 1, start + 10_001)
                    ],
                )
            await connection.execute(
                insert(StreamSupporter),
                [
                    {
                        "stream_id": STREAM,
                        "sender_id": _sender(i),
                        "coins": SUPERLIKES // SENDERS,
                        "superlikes": SUPERLIKES // SENDERS,
                        "reached_at_position": SUPERLIKES - SENDERS + 1 + i,
                    }
                    for i in range(SENDERS)
                ],
            )
        await storage.refresh_statistics()


async def _time(url: str) -> dict[str, Any]:
    async with open_storage(url, pool_size=2) as storage:
        deep_before = SUPERLIKES - (DEEP_PAGE - 1) * PAGE_SIZE + 1

        async def timed(before: int) -> list[float]:
            samples = []
            for _ in range(CALLS):
                start = time.perf_counter()
                page = await storage.history.page(STREAM, before, PAGE_SIZE)
                samples.append((time.perf_counter() - start) * 1000)
                assert page is not None and len(page.superlikes) == PAGE_SIZE
            return samples

        await timed(NEWEST)  # warm caches and prepared statements
        first, deep = await timed(NEWEST), await timed(deep_before)
        top: list[float] = []
        for _ in range(CALLS):
            start = time.perf_counter()
            await storage.history.top_supporters(STREAM, 100)
            top.append((time.perf_counter() - start) * 1000)
        return {
            "database": await storage.describe(),
            "page_1_ms": _summary(first),
            f"page_{DEEP_PAGE}_ms": _summary(deep),
            "top_100_of_1000_supporters_ms": _summary(top),
        }


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": round(statistics.median(ordered), 3), "p99": round(ordered[int(len(ordered) * 0.99) - 1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/livechat_bench_history")
    parser.add_argument("--postgres-admin-db", default="postgres")
    parser.add_argument("--sqlite-path", default=".local/bench/history-depth.db")
    args = parser.parse_args()
    results: dict[str, Any] = {"superlikes": SUPERLIKES, "page_size": PAGE_SIZE, "deep_page": DEEP_PAGE, "calls": CALLS}
    for name, url in (
        ("sqlite", reset_sqlite(Path(args.sqlite_path))),
        ("postgres", asyncio.run(reset_postgres(args.postgres_url, args.postgres_admin_db))),
    ):
        asyncio.run(_seed(url))
        results[name] = asyncio.run(_time(url))
        print(
            f"{name:9} page 1 {results[name]['page_1_ms']}  page {DEEP_PAGE} {results[name][f'page_{DEEP_PAGE}_ms']}"
            f"  top 100 {results[name]['top_100_of_1000_supporters_ms']}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
