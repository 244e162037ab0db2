"""Where a superlike's database work goes, in figures the machine's load does not move: WAL written,
row versions and HOT updates, buffers touched, and the plans behind them.

    .venv/bin/python bench/storage_costs.py --postgres-url postgresql://postgres@127.0.0.1:5432/livechat_storage_costs

Seeds 100,000 senders who each sent one superlike on a hot stream (so it ranks 100,000 supporters: 50
big spenders, then everyone tied on 10 coins), plus 128 quiet streams, then on PostgreSQL:
- ListTopSupporters' statement (top 10 and top 100): ranking entries read, sorts, buffers, plan, and
  median execution time;
- for batches of 128 and of 16 superlikes (about what c64 makes), written by the server's own writer,
  `hot` (one stream, senders already on it: their running totals are updated) and `spread` (a stream
  each), settling after every second batch as the server does under load, each phase measured right
  after a CHECKPOINT: WAL bytes per batch (pg_current_wal_lsn; other writers on the same server count
  too), row versions per table (n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del), and per statement
  (pg_stat_statements, if the server preloads it) calls, time, buffers, WAL records, full-page images
  and bytes; with --waldump, pg_waldump's totals per record type;
- the batch statement under EXPLAIN ANALYZE: median execution time and its foreign-key checks.
On SQLite, the top-supporters plan (EXPLAIN QUERY PLAN) and its time. The database in the URL (and the
SQLite file) is dropped and recreated. Timings are medians of repeated runs and still move with the
machine's load; the counts do not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from bench.seeding import reset_postgres, reset_sqlite  # noqa: E402
from server.adapters.history_sql import top_supporters_sql  # noqa: E402
from server.adapters.postgres.statements import SEND_BATCH_SQL  # noqa: E402
from server.adapters.storage import open_storage  # noqa: E402
from server.adapters.tables import LedgerEntry, LiveStream, StreamSupporter, SuperlikeRecord, User, Wallet  # noqa: E402
from server.domain.ids import new_object_id  # noqa: E402
from server.domain.superlike import SuperlikeRequest  # noqa: E402

SENDERS = 100_000
QUIET_STREAMS = 128
HOT_STREAM, HOT_HOST = "ab" * 12, "cd" * 12
TABLES = ("wallets", "live_streams", "superlikes", "ledger_entries", "stream_supporters")
TOP_SQL = top_supporters_sql({"stream_id": "$1::varchar(24)", "limit": "$2::int"}.__getitem__)


def _id(kind: int, i: int) -> str:
    return f"{kind:02x}{i:022x}"


def _price(i: int) -> int:
    # A few big spenders with totals of their own, then everyone else on one superlike of 10 coins:
    # the top 10 are distinct, the 100th is tied with 99,950 others (a stream's usual long tail).
    return 10 * (51 - i) if i < 50 else 10


async def seed(url: str) -> None:
    """Every row as the write path would have left it, so the money audit holds."""
    senders = [_id(1, i) for i in range(SENDERS)]
    quiet = [(_id(2, i), _id(3, i)) for i in range(QUIET_STREAMS)]
    hosts = [HOT_HOST, *(host for _, host in quiet)]
    users = [
        {"id": uid, "username": f"u{uid}", "name": "N", "surname": "S", "profile_photo": "p.jpg", "created_at_ms": 0}
        for uid in senders + hosts
    ]
    coins = 10**9
    earned = sum(_price(i) for i in range(SENDERS))
    async with open_storage(url, pool_size=2) as storage:
        await storage.upgrade()
        async with storage.engine.begin() as connection:
            await connection.execute(insert(User), users)
            wallets = [{"user_id": uid, "balance": coins - _price(i)} for i, uid in enumerate(senders)]
            wallets += [{"user_id": HOT_HOST, "balance": earned}] + [{"user_id": h, "balance": 0} for _, h in quiet]
            await connection.execute(insert(Wallet), wallets)
            streams = [(HOT_STREAM, HOT_HOST, SENDERS), *((sid, host, 0) for sid, host in quiet)]
            await connection.execute(
                insert(LiveStream),
                [
                    {
                        "id": s,
                        "host_id": h,
                        "state": "live",
                        "superlike_price": 1,
                        "created_at_ms": 0,
                        "last_position": n,
                    }
                    for s, h, n in streams
                ],
            )
            for start in range(0, SENDERS, 10_000):
                chunk = range(start, min(start + 10_000, SENDERS))
                await connection.execute(insert(SuperlikeRecord), [_history_row(i) for i in chunk])
                entries = [_entry(senders[i], coins, "coin_credit", None) for i in chunk]
                entries += [_entry(senders[i], -_price(i), "superlike_debit", _id(4, i)) for i in chunk]
                entries += [_entry(HOT_HOST, _price(i), "superlike_credit", _id(4, i)) for i in chunk]
                await connection.execute(insert(LedgerEntry), entries)
                await connection.execute(
                    insert(StreamSupporter),
                    [
                        {
                            "stream_id": HOT_STREAM,
                            "sender_id": senders[i],
                            "coins": _price(i),
                            "superlikes": 1,
                            "reached_at_position": i + 1,
                        }
                        for i in chunk
                    ],
                )
        await storage.refresh_statistics()


def _history_row(i: int) -> dict[str, Any]:
    return {
        "id": _id(4, i),
        "stream_id": HOT_STREAM,
        "sender_id": _id(1, i),
        "sender_username": f"u{_id(1, i)}",
        "sender_name": "N",
        "sender_surname": "S",
        "sender_profile_photo": "p.jpg",
        "price": _price(i),
        "sender_balance_after": 10**9 - _price(i),
        "created_at_ms": i,
        "idempotency_key": f"k{i}" if i % 2 else None,
        "stream_position": i + 1,
    }


def _entry(user_id: str, amount: int, kind: str, superlike_id: str | None) -> dict[str, Any]:
    return {"user_id": user_id, "amount": amount, "kind": kind, "superlike_id": superlike_id, "created_at_ms": 0}


@dataclass(frozen=True)
class Phase:
    kind: str  # "hot" or "spread"
    size: int  # superlikes per batch
    batches: int

    @property
    def name(self) -> str:
        return f"{self.kind}_b{self.size}"

    def requests(self, rng: random.Random) -> list[SuperlikeRequest]:
        senders = rng.sample(range(SENDERS), self.size)
        if self.kind == "hot":
            return [SuperlikeRequest(HOT_STREAM, _id(1, s), None) for s in senders]
        streams = rng.sample(range(QUIET_STREAMS), self.size)
        return [
            SuperlikeRequest(_id(2, n), _id(1, s), f"k{rng.getrandbits(64)}")
            for n, s in zip(streams, senders, strict=True)
        ]


async def write_batches(url: str, phase: Phase, batches: int, rng: random.Random) -> None:
    """`batches` batches through the server's writer (all of one batch queued in one loop turn),
    settling after every second one (the server settles every 0.2 s)."""
    async with open_storage(url, pool_size=2) as storage:
        sizes: list[int] = []
        storage.superlikes.observe_batches(sizes.append)
        for number in range(batches):
            now = int(time.time() * 1000)
            sends = [storage.superlikes.send(r, new_object_id(now), now) for r in phase.requests(rng)]
            outcomes = await asyncio.gather(*sends)
            assert all(type(o).__name__ == "Charged" for o in outcomes), outcomes[:3]
            if number % 2:
                await storage.settle()
        await storage.settle()
        assert set(sizes) == {phase.size}, f"batches of {sorted(set(sizes))}, not {phase.size}"


async def table_counters(admin: asyncpg.Connection) -> dict[str, dict[str, int]]:
    await admin.execute("SELECT pg_stat_clear_snapshot()")
    rows = await admin.fetch(
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables"
        " WHERE relname = ANY($1::text[])",
        list(TABLES),
    )
    return {
        row["relname"]: {k: int(row[k]) for k in ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del")}
        for row in rows
    }


async def has_statements(admin: asyncpg.Connection) -> bool:
    try:
        await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await admin.fetch("SELECT 1 FROM pg_stat_statements LIMIT 1")
    except asyncpg.PostgresError:  # not in shared_preload_libraries: LSN and table counters only
        return False
    return True


async def statement_costs(admin: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await admin.fetch(
        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 60) AS query, calls, mean_exec_time,"
        " shared_blks_hit + shared_blks_read AS blocks, shared_blks_dirtied, wal_records, wal_fpi,"
        " wal_bytes FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname ="
        " current_database()) AND wal_bytes > 0 ORDER BY wal_bytes DESC LIMIT 6"
    )
    return [
        {
            "query": row["query"],
            "calls": row["calls"],
            "mean_exec_ms": round(row["mean_exec_time"], 3),
            **{
                f"{k}_per_call": round(float(row[k]) / row["calls"], 1)
                for k in ("blocks", "shared_blks_dirtied", "wal_records", "wal_fpi", "wal_bytes")
            },
        }
        for row in rows
    ]


async def measure_phase(
    url: str, admin: asyncpg.Connection, phase: Phase, statements: bool, waldump: list[str] | None
) -> dict[str, Any]:
    rng = random.Random(phase.name)
    await write_batches(url, phase, 10, rng)  # warm-up: caches, prepared statements, first versions
    await asyncio.sleep(1.0)  # the writer's backends report their counters as they exit
    await admin.execute("CHECKPOINT")
    if statements:
        await admin.execute("SELECT pg_stat_statements_reset()")
    before, lsn = await table_counters(admin), await admin.fetchval("SELECT pg_current_wal_lsn()::text")
    await write_batches(url, phase, phase.batches, rng)
    await asyncio.sleep(1.0)
    end = await admin.fetchval("SELECT pg_current_wal_lsn()::text")
    wal = await admin.fetchval("SELECT $1::text::pg_lsn - $2::text::pg_lsn", end, lsn)
    after = await table_counters(admin)
    tables = {
        name: {k: after[name][k] - before[name][k] for k in after[name]}
        | {
            "hot_ratio": round(
                (after[name]["n_tup_hot_upd"] - before[name]["n_tup_hot_upd"])
                / max(1, after[name]["n_tup_upd"] - before[name]["n_tup_upd"]),
                3,
            )
        }
        for name in TABLES
    }
    result: dict[str, Any] = {
        "batches": phase.batches,
        "batch_size": phase.size,
        "wal_bytes_per_batch": round(float(wal) / phase.batches),
        "tables": tables,
    }
    if statements:
        result["statements"] = await statement_costs(admin)
    if waldump:
        result["wal_records"] = wal_record_stats(waldump, str(lsn), str(end))
    result["explain"] = await explain_batches(admin, phase, rng)
    return result


def wal_record_stats(waldump: list[str], start: str, end: str) -> list[str]:
    """pg_waldump's per-record-type totals for the phase (it reads the server's pg_wal directory)."""
    totals = subprocess.run(
        [*waldump, "--stats=record", "-s", start, "-e", end],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in totals.stdout.splitlines() if line.strip() and not line.startswith("---")]


async def explain_batches(
    admin: asyncpg.Connection, phase: Phase, rng: random.Random, runs: int = 15
) -> dict[str, Any]:
    """The batch statement itself, as PostgresSuperlikes runs it, under EXPLAIN ANALYZE: its median
    execution time and the foreign-key checks it fires. (EXPLAIN's own buffer and WAL totals leave out
    the data-modifying CTEs and the triggers; pg_stat_statements counts them.)"""
    times: list[float] = []
    triggers: dict[str, int] = {}
    for _ in range(runs):
        now = int(time.time() * 1000)
        requests = phase.requests(rng)
        args = (
            [r.stream_id for r in requests],
            [r.sender_id for r in requests],
            [r.idempotency_key for r in requests],
            [new_object_id(now) for _ in requests],
            [now] * len(requests),
        )
        (explained,) = json.loads(await admin.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {SEND_BATCH_SQL}", *args))
        times.append(explained["Execution Time"])
        triggers = {trigger["Trigger Name"]: trigger["Calls"] for trigger in explained.get("Triggers", [])}
    return {"median_execution_ms": round(statistics.median(times), 3), "fk_checks_per_batch": triggers}


async def explain_top(admin: asyncpg.Connection, limit: int, runs: int = 200) -> dict[str, Any]:
    """ListTopSupporters' statement: how many ranking entries it reads, in which direction, whether it
    sorts them, the buffers it touches, and its median execution time."""
    sql = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {TOP_SQL}"
    times = []
    for _ in range(runs):
        (explained,) = json.loads(await admin.fetchval(sql, HOT_STREAM, limit))
        times.append(explained["Execution Time"])
    nodes = list(_plan_nodes(explained["Plan"]))
    ranking = next(node for node in nodes if node.get("Index Name") == "ix_stream_supporters_ranking")
    return {
        "median_execution_ms": round(statistics.median(times), 3),
        "ranking_entries_read": ranking["Actual Rows"] * ranking["Actual Loops"],  # loops: parallel workers
        "ranking_scan": ranking["Scan Direction"],
        "sorts": [node["Node Type"] for node in nodes if "Sort" in node["Node Type"]],
        "buffers": explained["Plan"]["Shared Hit Blocks"] + explained["Plan"]["Shared Read Blocks"],
        "plan": [
            row[0] for row in await admin.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {TOP_SQL}", HOT_STREAM, limit)
        ],
    }


def _plan_nodes(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def sqlite_top(path: Path, limit: int, runs: int = 300) -> dict[str, Any]:
    """The same on SQLite, on a connection of its own (no thread hand-off in the figure)."""
    sql = top_supporters_sql(lambda name: f":{name}")
    params = {"stream_id": HOT_STREAM, "limit": limit}
    with sqlite3.connect(path) as connection:
        plan = connection.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            connection.execute(sql, params).fetchall()
            times.append((time.perf_counter() - start) * 1000)
    return {
        "median_ms": round(statistics.median(times), 3),
        "min_ms": round(min(times), 3),
        "plan": [row[-1] for row in plan],
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"senders": SENDERS}
    url = await reset_postgres(args.postgres_url, args.postgres_admin_db)
    await seed(url)
    admin = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        statements = await has_statements(admin)
        results["postgres"] = {"top_10": await explain_top(admin, 10), "top_100": await explain_top(admin, 100)}
        for kind in ("hot", "spread"):
            for size in args.batch_sizes:
                phase = Phase(kind, size, max(1, args.superlikes // size))
                results["postgres"][phase.name] = await measure_phase(url, admin, phase, statements, args.waldump)
    finally:
        await admin.close()
    path = Path(args.sqlite_path)
    sqlite_url = reset_sqlite(path)
    await seed(sqlite_url)
    results["sqlite"] = {"top_10": sqlite_top(path, 10), "top_100": sqlite_top(path, 100)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/livechat_storage_costs")
    parser.add_argument("--postgres-admin-db", default="postgres")
    parser.add_argument("--sqlite-path", default=".local/bench/storage-costs.db")
    parser.add_argument("--superlikes", type=int, default=12_800, help="per measured phase")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[128, 16], help="the largest batch, and about what c64 makes"
    )
    parser.add_argument(
        "--waldump",
        type=shlex.split,
        help="pg_waldump and its -p (e.g. /usr/lib/postgresql/15/bin/pg_waldump -p /var/lib/.../pg_wal):"
        " per-record WAL totals per phase",
    )
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
