"""The benchmark's world: many rich senders, many live streams with their own hosts, one hot stream,
and a history of settled superlikes. Bulk loaded (bench/bulk_load.py: PostgreSQL COPY, SQLite
executemany in one transaction) with the ledger invariants kept (every coin credit has its
`coin_credit` ledger entry, every history superlike its settled debit and credit), so
`livechat admin audit` passes before and after the load.

The rows are generated a slice of senders at a time, so a world of 100,000 senders and millions of
history rows never sits in memory at once; everything a later row depends on (each stream's
positions, each host's earnings) is worked out before the first row is written."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from server.adapters.storage import open_storage
from server.auth.local_keys import mint_token
from server.domain.clock import now_ms

SENDER_COINS = 10**9
SUPERLIKE_PRICE = 1
# Superlikes every sender sent before the benchmark. A service in production has a history, and the
# database plans its lookups from statistics about it: measured on empty tables, PostgreSQL planned
# the idempotency-key and foreign-key lookups on `superlikes` as scans of a table it believed empty,
# which stays that way until autovacuum's first ANALYZE - a start-up artefact, not the steady state.
HISTORY_PER_SENDER = 25
# Senders whose rows are generated and written together (memory stays flat whatever the world's size).
SENDERS_PER_SLICE = 5_000


def object_id(label: str) -> str:
    # Deterministic but spread over the id space: senders sort both below and above hosts, so both
    # lock orders of the charge are exercised.
    return hashlib.sha1(label.encode()).hexdigest()[:24]


_object_id = object_id  # the name other bench modules used


def sender_profile(index: int) -> dict[str, str]:
    return {
        "username": f"bench_s{index}",
        "name": "Bench",
        "surname": f"Sender{index}",
        "profile_photo": f"s{index}.jpg",
    }


@dataclass(frozen=True)
class World:
    sender_ids: list[str]
    host_ids: list[str]
    stream_ids: list[str]  # spread streams; hot_stream_id is separate
    hot_host_id: str
    hot_stream_id: str

    @classmethod
    def build(cls, senders: int, streams: int) -> World:
        return cls(
            sender_ids=[object_id(f"bench-sender-{i}") for i in range(senders)],
            host_ids=[object_id(f"bench-host-{i}") for i in range(streams)],
            stream_ids=[object_id(f"bench-stream-{i}") for i in range(streams)],
            hot_host_id=object_id("bench-hot-host"),
            hot_stream_id=object_id("bench-hot-stream"),
        )


def mint_tokens(private_key: Any, world: World, *, issuer: str, audience: str, ttl_seconds: int) -> list[str]:
    """One RS256 token per sender, in this process (bench/tokens.py caches and parallelises this for
    large worlds). The key is passed loaded (PyJWT accepts a key object): re-parsing the PEM for every
    token costs ~40 ms, which adds up over thousands of senders."""
    return [
        mint_token(private_key, subject=sender, issuer=issuer, audience=audience, ttl_seconds=ttl_seconds)
        for sender in world.sender_ids
    ]


def reset_sqlite(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


async def reset_postgres(url: str, admin_db: str) -> str:
    """Drops and recreates the benchmark database named in `url` (never the admin database)."""
    import asyncpg

    parsed = make_url(url)
    name = parsed.database
    if not name or name == admin_db:
        raise ValueError(f"the benchmark database must be its own database, got {name!r}")
    admin = parsed.set(drivername="postgresql", database=admin_db)
    connection = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=5)
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        await connection.execute(f"CREATE DATABASE {quoted}")
    finally:
        await connection.close()
    return url


# ----------------------------------------------------------------------------------------- the rows


# Every table the world is loaded into, parents before children.
LOADED_TABLES = ("users", "wallets", "live_streams", "superlikes", "ledger_entries", "stream_supporters")
USER_COLUMNS = ("id", "username", "name", "surname", "profile_photo", "created_at_ms")
WALLET_COLUMNS = ("user_id", "balance")
STREAM_COLUMNS = ("id", "host_id", "state", "superlike_price", "created_at_ms", "last_position")
LEDGER_COLUMNS = ("user_id", "amount", "kind", "superlike_id", "created_at_ms")
SUPERLIKE_COLUMNS = (
    "id",
    "stream_id",
    "sender_id",
    "sender_username",
    "sender_name",
    "sender_surname",
    "sender_profile_photo",
    "price",
    "sender_balance_after",
    "created_at_ms",
    "idempotency_key",
    "stream_position",
)
SUPPORTER_COLUMNS = ("stream_id", "sender_id", "coins", "superlikes", "reached_at_position")


def history_counts(senders: int, streams: int, per_sender: int) -> list[int]:
    """Superlikes each spread stream gets: sender i sends its j-th to stream (i + j) % streams."""
    full_rounds, rest = divmod(per_sender, streams)
    counts = [senders * full_rounds] * streams
    # The remaining `rest` go to streams i .. i+rest-1 (mod streams): a difference array over them.
    delta = [0] * (streams + 1)
    for i in range(senders if rest else 0):
        start = i % streams
        end = start + rest
        delta[start] += 1
        if end <= streams:
            delta[end] -= 1
        else:
            delta[streams] -= 1
            delta[0] += 1
            delta[end - streams] -= 1
    running = 0
    for s in range(streams):
        running += delta[s]
        counts[s] += running
    return counts


Chunk = tuple[str, tuple[str, ...], list[tuple[Any, ...]]]  # (table, columns, rows)


def world_rows(world: World, now: int, per_sender: int) -> Iterator[Chunk]:
    """The whole world as chunks of rows, in the order foreign keys need: users, wallets, coin
    credits, streams, then the history a slice of senders at a time."""
    hosts = [*world.host_ids, world.hot_host_id]
    counts = history_counts(len(world.sender_ids), len(world.stream_ids), per_sender)
    spent = per_sender * SUPERLIKE_PRICE
    users = [(uid, *sender_profile(i).values(), now) for i, uid in enumerate(world.sender_ids)] + [
        (uid, f"bench_h{i}", "Bench", f"Host{i}", f"h{i}.jpg", now) for i, uid in enumerate(hosts)
    ]
    yield "users", USER_COLUMNS, users
    wallets = [(uid, SENDER_COINS - spent) for uid in world.sender_ids]
    wallets += [(uid, counts[s] * SUPERLIKE_PRICE) for s, uid in enumerate(world.host_ids)]
    wallets.append((world.hot_host_id, 0))
    yield "wallets", WALLET_COLUMNS, wallets
    yield (
        "ledger_entries",
        LEDGER_COLUMNS,
        [(uid, SENDER_COINS, "coin_credit", None, now) for uid in world.sender_ids],
    )
    streams = [
        (sid, host, "live", SUPERLIKE_PRICE, now, counts[s])
        for s, (sid, host) in enumerate(zip(world.stream_ids, world.host_ids, strict=True))
    ]
    streams.append((world.hot_stream_id, world.hot_host_id, "live", SUPERLIKE_PRICE, now, 0))
    yield "live_streams", STREAM_COLUMNS, streams
    yield from HistorySlices(world, now, per_sender).chunks()


class HistorySlices:
    """The settled history, `per_sender` superlikes per sender on the spread streams (half of them
    with an idempotency key), each with its settled debit and credit, and the running totals the
    write path keeps (stream_supporters), generated SENDERS_PER_SLICE senders at a time."""

    def __init__(self, world: World, now: int, per_sender: int) -> None:
        self.world, self.now, self.per_sender = world, now, per_sender
        self._positions = [0] * len(world.stream_ids)

    def chunks(self) -> Iterator[Chunk]:
        senders = len(self.world.sender_ids)
        for first in range(0, senders if self.per_sender else 0, SENDERS_PER_SLICE):
            superlikes, entries, supporters = self._slice(range(first, min(senders, first + SENDERS_PER_SLICE)))
            yield "superlikes", SUPERLIKE_COLUMNS, superlikes
            yield "ledger_entries", LEDGER_COLUMNS, entries
            yield "stream_supporters", SUPPORTER_COLUMNS, supporters

    def _slice(self, indexes: range) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        world, per_sender, price = self.world, self.per_sender, SUPERLIKE_PRICE
        streams = len(world.stream_ids)
        superlikes: list[tuple[Any, ...]] = []
        entries: list[tuple[Any, ...]] = []
        supporters: list[tuple[Any, ...]] = []
        for i in indexes:
            sender = world.sender_ids[i]
            p = sender_profile(i)
            totals: dict[int, list[int]] = {}  # stream index -> [coins, superlikes, last position]
            for j in range(per_sender):
                s = (i + j) % streams
                self._positions[s] += 1
                position = self._positions[s]
                superlike_id = object_id(f"bench-history-{i}-{j}")
                created_at_ms = self.now - (per_sender - j) * 60_000
                superlikes.append(
                    (
                        superlike_id,
                        world.stream_ids[s],
                        sender,
                        p["username"],
                        p["name"],
                        p["surname"],
                        p["profile_photo"],
                        price,
                        SENDER_COINS - (j + 1) * price,
                        created_at_ms,
                        f"history-{j}" if j % 2 else None,
                        position,
                    )
                )
                entries.append((sender, -price, "superlike_debit", superlike_id, created_at_ms))
                entries.append((world.host_ids[s], price, "superlike_credit", superlike_id, created_at_ms))
                total = totals.setdefault(s, [0, 0, 0])
                total[0] += price
                total[1] += 1
                total[2] = position
            for s, (coins, count, reached) in totals.items():
                supporters.append((world.stream_ids[s], sender, coins, count, reached))
        return superlikes, entries, supporters


# -------------------------------------------------------------------------------------- the loading


async def seed(database_url: str, world: World, *, history_per_sender: int = HISTORY_PER_SENDER) -> dict[str, Any]:
    """Migrates the database, bulk loads the world and refreshes the planner's statistics; returns
    what was loaded and how long each step took."""
    from bench import bulk_load

    started = time.monotonic()
    async with open_storage(database_url, pool_size=1) as storage:
        await storage.upgrade()
    migrated = time.monotonic()
    tables = world_rows(world, now_ms(), history_per_sender)
    rows = await bulk_load.load(database_url, tables)
    loaded = time.monotonic()
    async with open_storage(database_url, pool_size=1) as storage:
        await storage.refresh_statistics()
    finished = time.monotonic()
    return {
        "users": len(world.sender_ids) + len(world.host_ids) + 1,
        "senders": len(world.sender_ids),
        "streams": len(world.stream_ids) + 1,
        "sender_coins": SENDER_COINS,
        "price": SUPERLIKE_PRICE,
        "history_per_sender": history_per_sender,
        "history_superlikes": len(world.sender_ids) * history_per_sender,
        "rows": rows,
        "method": bulk_load.method(database_url),
        "seconds": {
            "migrate": round(migrated - started, 2),
            "load": round(loaded - migrated, 2),
            "statistics": round(finished - loaded, 2),
            "total": round(finished - started, 2),
        },
    }


_COUNT = text("SELECT count(*) FROM superlikes")


class SuperlikeCounter:
    """`SELECT count(*) FROM superlikes` between runs: what the server really wrote."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url

    def count(self) -> int:
        async def _count() -> int:
            # A read snapshot: it never takes SQLite's write lock from the server under test.
            async with open_storage(self._url, pool_size=1) as storage:
                return int(await storage.read_snapshot(lambda connection: connection.execute(_COUNT).scalar_one()))

        return asyncio.run(_count())

    def count_with_key_prefix(self, prefix: str) -> int:
        """Superlikes whose idempotency key starts with `prefix` (one REST run's, see superlike.lua)."""
        query = text("SELECT count(*) FROM superlikes WHERE substr(idempotency_key, 1, :n) = :prefix")

        async def _count() -> int:
            async with open_storage(self._url, pool_size=1) as storage:
                return int(
                    await storage.read_snapshot(
                        lambda connection: connection.execute(query, {"n": len(prefix), "prefix": prefix}).scalar_one()
                    )
                )

        return asyncio.run(_count())

    def server_version(self) -> str:
        async def _version() -> str:
            async with open_storage(self._url, pool_size=1) as storage:
                return await storage.describe()

        return asyncio.run(_version())
