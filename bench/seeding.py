"""The benchmark's world: thousands of rich senders, many live streams with their own hosts, one hot
stream. Seeded with bulk INSERTs that keep the ledger invariants (every coin credit has its
`coin_credit` ledger entry), so `livechat admin audit` passes before and after the load."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from server.adapters.storage import open_storage
from server.adapters.tables import LedgerEntry, LiveStream, StreamSupporter, SuperlikeRecord, User, Wallet
from server.auth.local_keys import mint_token
from server.domain.clock import now_ms

SENDER_COINS = 10**9
SUPERLIKE_PRICE = 1
# Superlikes every sender sent before the benchmark. A service in production has a history, and the
# database plans its lookups from statistics about it: measured on empty tables, PostgreSQL planned
# the idempotency-key and foreign-key lookups on `superlikes` as scans of a table it believed empty,
# which stays that way until autovacuum's first ANALYZE - a start-up artefact, not the steady state.
HISTORY_PER_SENDER = 25


def _object_id(label: str) -> str:
    # Deterministic but spread over the id space: senders sort both below and above hosts, so both
    # lock orders of the charge are exercised.
    return hashlib.sha1(label.encode()).hexdigest()[:24]


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
            sender_ids=[_object_id(f"bench-sender-{i}") for i in range(senders)],
            host_ids=[_object_id(f"bench-host-{i}") for i in range(streams)],
            stream_ids=[_object_id(f"bench-stream-{i}") for i in range(streams)],
            hot_host_id=_object_id("bench-hot-host"),
            hot_stream_id=_object_id("bench-hot-stream"),
        )


def mint_tokens(private_key: Any, world: World, *, issuer: str, audience: str, ttl_seconds: int) -> list[str]:
    """One RS256 token per sender. The key is passed loaded (PyJWT accepts a key object): re-parsing
    the PEM for every token costs ~40 ms, which adds up over thousands of senders."""
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


async def seed(database_url: str, world: World) -> dict[str, Any]:
    async with open_storage(database_url, pool_size=1) as storage:
        await storage.upgrade()
        now = now_ms()
        hosts = [*world.host_ids, world.hot_host_id]
        users = [
            {
                "id": uid,
                "username": f"bench_s{i}",
                "name": "Bench",
                "surname": f"Sender{i}",
                "profile_photo": f"s{i}.jpg",
                "created_at_ms": now,
            }
            for i, uid in enumerate(world.sender_ids)
        ] + [
            {
                "id": uid,
                "username": f"bench_h{i}",
                "name": "Bench",
                "surname": f"Host{i}",
                "profile_photo": f"h{i}.jpg",
                "created_at_ms": now,
            }
            for i, uid in enumerate(hosts)
        ]
        credits = [
            {"user_id": uid, "amount": SENDER_COINS, "kind": "coin_credit", "superlike_id": None, "created_at_ms": now}
            for uid in world.sender_ids
        ]
        streams = [
            {"id": sid, "host_id": host, "state": "live", "superlike_price": SUPERLIKE_PRICE, "created_at_ms": now}
            for sid, host in zip([*world.stream_ids, world.hot_stream_id], hosts, strict=True)
        ]
        history, history_entries, earned = _history(world, users, now)
        supporters, last_positions = _standings(history)
        for stream in streams:
            stream["last_position"] = last_positions.get(stream["id"], 0)
        spent = HISTORY_PER_SENDER * SUPERLIKE_PRICE
        wallets = [{"user_id": uid, "balance": SENDER_COINS - spent} for uid in world.sender_ids] + [
            {"user_id": uid, "balance": earned.get(uid, 0)} for uid in hosts
        ]
        async with storage.engine.begin() as connection:
            await connection.execute(insert(User), users)
            await connection.execute(insert(Wallet), wallets)
            await connection.execute(insert(LedgerEntry), credits)
            await connection.execute(insert(LiveStream), streams)
            await connection.execute(insert(SuperlikeRecord), history)
            await connection.execute(insert(LedgerEntry), history_entries)
            await connection.execute(insert(StreamSupporter), supporters)
        await storage.refresh_statistics()
        return {
            "users": len(users),
            "senders": len(world.sender_ids),
            "streams": len(streams),
            "sender_coins": SENDER_COINS,
            "price": SUPERLIKE_PRICE,
            "history_superlikes": len(history),
        }


def _history(
    world: World, users: list[dict[str, Any]], now: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """HISTORY_PER_SENDER settled superlikes per sender on the spread streams, half of them with an
    idempotency key, each with its debit and credit ledger entries, settled (the audit's invariants
    hold); returns the superlikes, the ledger entries and each host's earnings."""
    superlikes: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    earned: dict[str, int] = {}
    positions: dict[str, int] = {}
    for i, sender in enumerate(world.sender_ids):
        profile = users[i]
        for j in range(HISTORY_PER_SENDER):
            stream = (i + j) % len(world.stream_ids)
            host = world.host_ids[stream]
            superlike_id = _object_id(f"bench-history-{i}-{j}")
            created_at_ms = now - (HISTORY_PER_SENDER - j) * 60_000
            positions[world.stream_ids[stream]] = position = positions.get(world.stream_ids[stream], 0) + 1
            superlikes.append(
                {
                    "id": superlike_id,
                    "stream_id": world.stream_ids[stream],
                    "sender_id": sender,
                    "sender_username": profile["username"],
                    "sender_name": profile["name"],
                    "sender_surname": profile["surname"],
                    "sender_profile_photo": profile["profile_photo"],
                    "price": SUPERLIKE_PRICE,
                    "sender_balance_after": SENDER_COINS - (j + 1) * SUPERLIKE_PRICE,
                    "created_at_ms": created_at_ms,
                    "idempotency_key": f"history-{j}" if j % 2 else None,
                    "stream_position": position,
                }
            )
            entries.append(
                {
                    "user_id": sender,
                    "amount": -SUPERLIKE_PRICE,
                    "kind": "superlike_debit",
                    "superlike_id": superlike_id,
                    "created_at_ms": created_at_ms,
                }
            )
            entries.append(
                {
                    "user_id": host,
                    "amount": SUPERLIKE_PRICE,
                    "kind": "superlike_credit",
                    "superlike_id": superlike_id,
                    "created_at_ms": created_at_ms,
                }
            )
            earned[host] = earned.get(host, 0) + SUPERLIKE_PRICE
    return superlikes, entries, earned


def _standings(history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The running totals and last positions the write path would have kept for `history`."""
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    last_positions: dict[str, int] = {}
    for superlike in history:
        key = (superlike["stream_id"], superlike["sender_id"])
        total = totals.setdefault(
            key, {"stream_id": key[0], "sender_id": key[1], "coins": 0, "superlikes": 0, "reached_at_position": 0}
        )
        total["coins"] += superlike["price"]
        total["superlikes"] += 1
        total["reached_at_position"] = max(total["reached_at_position"], superlike["stream_position"])
        last_positions[key[0]] = max(last_positions.get(key[0], 0), superlike["stream_position"])
    return list(totals.values()), last_positions


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

    def server_version(self) -> str:
        async def _version() -> str:
            async with open_storage(self._url, pool_size=1) as storage:
                return await storage.describe()

        return asyncio.run(_version())
