"""Superlikes written in batches (group commit), on real SQLite and PostgreSQL: a batch carries many
requests, and each one still gets exactly the outcome it would have had alone."""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
from collections.abc import Callable
from typing import TypeVar

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from server.adapters.audit import audit_database
from server.adapters.sqlite.superlikes import SqliteSuperlikes
from server.adapters.sqlite.worker import SqliteWorker
from server.adapters.storage import Storage
from server.domain import errors
from server.domain.superlike import StreamState, Superlike
from server.services.superlikes import SuperlikeService
from tests.support import (
    World,
    as_operator,
    balance_of,
    build_world,
    create_stream,
    create_user,
    migrated_storage,
    superlike_service,
    wait_until_a_postgres_lock_is_awaited,
)

T = TypeVar("T")


async def test_a_burst_through_one_server_keeps_every_requests_own_outcome(storage: Storage) -> None:
    world = await build_world(storage, coins=100, price=10)
    rich = [await create_user(storage, coins=100) for _ in range(8)]
    poor = await create_user(storage, coins=5)
    banned = await create_user(storage, coins=100)
    ended = await create_stream(storage, world.host_id, state=StreamState.ENDED)
    await as_operator(storage, lambda admin: admin.ban(world.stream_id, banned["id"]))
    superlikes = superlike_service(storage)  # one server: every request below shares its batcher

    stream = world.stream_id
    outcomes = await asyncio.gather(
        *(superlikes.send(stream, user["id"], None) for user in rich),
        *(superlikes.send(stream, world.viewer_id, "same-key") for _ in range(3)),
        *(superlikes.send(stream, rich[0]["id"], None) for _ in range(12)),  # 9 more affordable
        superlikes.send(stream, poor["id"], None),
        superlikes.send(stream, banned["id"], None),
        superlikes.send(ended["id"], rich[1]["id"], None),
        superlikes.send("f" * 24, rich[2]["id"], None),
        return_exceptions=True,
    )

    first_of_each_rich, same_key, rich0_more = outcomes[:8], outcomes[8:11], outcomes[11:23]
    # Every answer is its own request's: right sender, right stream, that sender's balance.
    assert [(o.sender.user_id, o.stream_id, o.price) for o in first_of_each_rich] == [
        (user["id"], stream, 10) for user in rich
    ]
    assert [o.sender_balance_after for o in first_of_each_rich[1:]] == [90] * 7
    assert len({outcome.superlike_id for outcome in same_key}) == 1  # charged once, replayed twice
    assert {(o.sender.user_id, o.sender_balance_after) for o in same_key} == {(world.viewer_id, 90)}
    charged = [o for o in rich0_more if isinstance(o, Superlike)]
    assert {o.sender.user_id for o in charged} == {rich[0]["id"]}
    # rich[0]'s 10 charges in some order: balances 90, 80, ... 0, each exactly once.
    assert sorted(o.sender_balance_after for o in [first_of_each_rich[0], *charged]) == list(range(0, 100, 10))
    assert sum(isinstance(outcome, errors.InsufficientBalance) for outcome in rich0_more) == 3
    assert [type(outcome) for outcome in outcomes[23:]] == [
        errors.InsufficientBalance,
        errors.SenderBanned,
        errors.StreamNotLive,
        errors.StreamNotFound,
    ]
    assert await balance_of(storage, world.viewer_id) == 90
    assert await balance_of(storage, rich[0]["id"]) == 0
    assert [await balance_of(storage, user["id"]) for user in rich[1:]] == [90] * 7
    assert (await balance_of(storage, poor["id"]), await balance_of(storage, banned["id"])) == (5, 100)
    assert await balance_of(storage, world.host_id) == 10 * (8 + 1 + 9)
    assert (await audit_database(storage)).problems == []


async def _write_another_servers_superlike(other_server: AsyncConnection, world: World, key: str) -> str:
    """Another server's superlike from the world's viewer, with `key`: its stream position, ledger
    entries, pending host credit, the viewer's first running total on the stream and the debit, in
    `other_server`'s transaction (not committed). Returns the superlike's id."""
    superlike_id = secrets.token_hex(12)
    position = (
        await other_server.execute(
            text(
                "UPDATE live_streams SET last_position = last_position + 1 WHERE id = :stream RETURNING last_position"
            ),
            {"stream": world.stream_id},
        )
    ).scalar_one()
    await other_server.execute(
        text("""
            INSERT INTO superlikes (id, stream_id, sender_id, sender_username, sender_name,
                                    sender_surname, sender_profile_photo, price,
                                    sender_balance_after, created_at_ms, idempotency_key, stream_position)
            SELECT :id, :stream, u.id, u.username, u.name, u.surname,
                   u.profile_photo, 10, 90, 1700000000000, :key, :position
            FROM users u WHERE u.id = :sender
        """),
        {"id": superlike_id, "stream": world.stream_id, "sender": world.viewer_id, "position": position, "key": key},
    )
    await other_server.execute(
        text("""
            INSERT INTO stream_supporters (stream_id, sender_id, coins, superlikes, reached_at_position)
            VALUES (:stream, :sender, 10, 1, :position)
        """),
        {"stream": world.stream_id, "sender": world.viewer_id, "position": position},
    )
    await other_server.execute(
        text("""
            INSERT INTO ledger_entries (user_id, amount, kind, superlike_id, created_at_ms)
            VALUES (:sender, -10, 'superlike_debit', :id, 1700000000000),
                   (:host, 10, 'superlike_credit', :id, 1700000000000)
        """),
        {"id": superlike_id, "sender": world.viewer_id, "host": world.host_id},
    )
    await other_server.execute(
        text("INSERT INTO pending_credits (user_id, amount, entries) VALUES (:host, 10, 1)"),
        {"host": world.host_id},
    )
    await other_server.execute(
        text("UPDATE wallets SET balance = balance - 10 WHERE user_id = :sender"), {"sender": world.viewer_id}
    )
    return superlike_id


async def test_a_key_committed_by_another_server_mid_batch_undoes_only_that_request(postgres_url: str) -> None:
    """Another server commits a superlike with a key this batch also carries, after the batch read
    and before it wrote: the unique index undoes the whole statement, and the batch is written again
    one request at a time. The contended request replays the other server's superlike; its
    neighbours are charged once."""
    async with migrated_storage(postgres_url) as storage:
        engine = storage.engine
        world = await build_world(storage, coins=100, price=10)
        neighbours = [await create_user(storage, coins=100) for _ in range(2)]
        other_server = await engine.connect()
        other_transaction = await other_server.begin()
        theirs = await _write_another_servers_superlike(other_server, world, "contended")
        superlikes = superlike_service(storage)
        batch = asyncio.gather(
            superlikes.send(world.stream_id, world.viewer_id, "contended"),
            *(superlikes.send(world.stream_id, user["id"], None) for user in neighbours),
        )
        await wait_until_a_postgres_lock_is_awaited(engine)  # the batch now waits on the other server's locks
        await other_transaction.commit()
        await other_server.close()
        contended, *charged = await asyncio.wait_for(batch, timeout=10)

        assert contended.superlike_id == theirs
        assert (contended.price, contended.sender_balance_after) == (10, 90)
        assert [superlike.sender_balance_after for superlike in charged] == [90, 90]
        assert await balance_of(storage, world.viewer_id) == 90
        assert [await balance_of(storage, user["id"]) for user in neighbours] == [90, 90]
        assert (await audit_database(storage)).problems == []


async def test_a_running_total_another_server_starts_mid_batch_is_added_to(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another server commits the viewer's first superlike on the stream (and with it the viewer's
    running total) while this batch, holding another superlike of the viewer, waits for the viewer's
    wallet. The batch's snapshot predates that total; its INSERT meets it and adds to it (ON
    CONFLICT): one total of both superlikes, never a refused batch or a lost one."""
    caplog.set_level(logging.INFO, logger="server.adapters.postgres.superlikes")
    async with migrated_storage(postgres_url) as storage:
        engine = storage.engine
        world = await build_world(storage, coins=100, price=10)
        neighbour = await create_user(storage, coins=100)
        other_server = await engine.connect()
        other_transaction = await other_server.begin()
        await _write_another_servers_superlike(other_server, world, "theirs")
        superlikes = superlike_service(storage)
        batch = asyncio.gather(
            superlikes.send(world.stream_id, world.viewer_id, "mine"),
            superlikes.send(world.stream_id, neighbour["id"], None),
        )
        await wait_until_a_postgres_lock_is_awaited(engine)
        await other_transaction.commit()
        await other_server.close()
        mine, neighbours = await asyncio.wait_for(batch, timeout=10)

        assert (mine.sender_balance_after, neighbours.sender_balance_after) == (80, 90)
        async with engine.connect() as connection:
            totals = (
                await connection.execute(
                    text(
                        "SELECT sender_id, coins, superlikes, reached_at_position FROM stream_supporters"
                        " WHERE stream_id = :stream ORDER BY reached_at_position"
                    ),
                    {"stream": world.stream_id},
                )
            ).all()
        # Positions: the other server's superlike 1, then the batch's in its order, 2 and 3.
        assert [tuple(row) for row in totals] == [(world.viewer_id, 20, 2, 2), (neighbour["id"], 10, 1, 3)]
        assert "superlike batch refused" not in caplog.text  # written by the one statement, not again
        assert (await audit_database(storage)).problems == []


async def test_a_wallet_locked_elsewhere_delays_only_its_own_request(postgres_url: str) -> None:
    """A session holds one sender's wallet row locked. The batch gives up after lock_timeout and is
    written one request at a time: the neighbours are charged, the locked sender's request is refused
    as STORAGE_UNAVAILABLE (nothing charged), instead of the whole server waiting on that lock."""
    async with migrated_storage(postgres_url) as storage:
        engine = storage.engine
        world = await build_world(storage, coins=100, price=10)
        neighbours = [await create_user(storage, coins=100) for _ in range(2)]
        async with engine.connect() as holder:
            await holder.begin()
            await holder.execute(
                text("SELECT balance FROM wallets WHERE user_id = :id FOR UPDATE"), {"id": world.viewer_id}
            )
            superlikes = superlike_service(storage)
            locked, *charged = await asyncio.wait_for(
                asyncio.gather(
                    superlikes.send(world.stream_id, world.viewer_id, None),
                    *(superlikes.send(world.stream_id, user["id"], None) for user in neighbours),
                    return_exceptions=True,
                ),
                timeout=20,
            )
            await holder.rollback()

        assert isinstance(locked, errors.StorageUnavailable)
        assert [(o.sender.user_id, o.sender_balance_after) for o in charged] == [(u["id"], 90) for u in neighbours]
        assert await balance_of(storage, world.viewer_id) == 100
        assert (await audit_database(storage)).problems == []


async def test_a_request_that_fails_inside_a_sqlite_batch_leaves_its_neighbours_positions_and_totals_whole(
    sqlite_url: str, separate_database
) -> None:
    """One request's failure undoes the whole SQLite transaction; written again one by one, only it
    fails, and its neighbours' positions and running totals are what they would have been alone."""
    url = separate_database(sqlite_url)
    async with migrated_storage(url) as storage:
        world = await build_world(storage, coins=100, price=10)
        others = [await create_user(storage, coins=100) for _ in range(3)]
        first = await superlike_service(storage).send(world.stream_id, others[0]["id"], None)
        async with storage.engine.begin() as connection:
            # A fault in the database itself (not a rule): the viewer's superlikes cannot be stored.
            await connection.execute(
                text(
                    "CREATE TRIGGER refuse_viewer BEFORE INSERT ON superlikes "
                    f"WHEN NEW.sender_id = '{world.viewer_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        superlikes = superlike_service(storage)
        outcomes = await asyncio.gather(
            superlikes.send(world.stream_id, others[0]["id"], None),
            superlikes.send(world.stream_id, world.viewer_id, None),
            superlikes.send(world.stream_id, others[1]["id"], None),
            superlikes.send(world.stream_id, others[2]["id"], None),
            return_exceptions=True,
        )
        assert isinstance(first, Superlike)
        assert [type(outcome).__name__ for outcome in outcomes] == [
            "Superlike",
            "IntegrityError",
            "Superlike",
            "Superlike",
        ]
        async with storage.engine.connect() as connection:
            positions = (
                await connection.execute(
                    text(
                        "SELECT sender_id, stream_position FROM superlikes WHERE stream_id = :s ORDER BY stream_position"
                    ),
                    {"s": world.stream_id},
                )
            ).all()
            last = (
                await connection.execute(
                    text("SELECT last_position FROM live_streams WHERE id = :s"), {"s": world.stream_id}
                )
            ).scalar_one()
            totals = (
                await connection.execute(
                    text(
                        "SELECT sender_id, coins, superlikes, reached_at_position FROM stream_supporters WHERE stream_id = :s"
                    ),
                    {"s": world.stream_id},
                )
            ).all()
        senders = [user["id"] for user in others]
        # The batch kept its order when written again: positions 2, 3, 4 after the first superlike.
        assert [tuple(row) for row in positions] == [(senders[0], 1), (senders[0], 2), (senders[1], 3), (senders[2], 4)]
        assert last == 4
        assert sorted(tuple(row) for row in totals) == sorted(
            [(senders[0], 20, 2, 2), (senders[1], 10, 1, 3), (senders[2], 10, 1, 4)]
        )
        assert await balance_of(storage, world.viewer_id) == 100
        assert (await audit_database(storage)).problems == []


async def test_a_postgres_writer_keeps_its_connection_while_requests_wait_and_returns_it_when_none_do(
    postgres_url: str,
) -> None:
    """Under load each batch goes out on the connection the previous one used (no check-out and
    check-in per batch); once nothing waits the connection is back in the pool, so a quiet server
    holds none."""
    async with migrated_storage(postgres_url) as storage:
        world = await build_world(storage, coins=1000, price=10)
        senders = [await create_user(storage, coins=1000) for _ in range(3)]
        in_use_when_batches_start: list[int] = []
        writer = storage.new_superlike_writer()
        writer.observe_batches(lambda size: in_use_when_batches_start.append(storage.pool_in_use()))
        # Every sender sends twice at once: a sender's second request waits for a batch after its
        # first one's, so the first batch ends with requests waiting and the second one follows it.
        outcomes = await asyncio.gather(
            *(SuperlikeService(writer).send(world.stream_id, sender["id"], None) for sender in senders for _ in "12")
        )

        assert sorted(outcome.sender_balance_after for outcome in outcomes) == [980, 980, 980, 990, 990, 990]
        # The first batch checked a connection out; the second went out on it, kept.
        assert in_use_when_batches_start == [0, 1]
        assert storage.pool_in_use() == 0


class _LockedByAnotherProcessFromWrite:
    """The SQLite thread (worker.py) of a server whose database file another process locks for writing
    just before the server's `nth` transaction: that one, and any after it, waits out the busy timeout
    and finds the database locked. Counts the transactions the server attempts."""

    def __init__(self, worker: SqliteWorker, path: str, nth: int) -> None:
        self._worker = worker
        self._path = path
        self._nth = nth
        self._holder: sqlite3.Connection | None = None
        self.writes = 0

    async def write(self, work: Callable[[Connection], T]) -> T:
        self.writes += 1
        if self.writes == self._nth:
            self._holder = sqlite3.connect(self._path, isolation_level=None)
            self._holder.execute("BEGIN IMMEDIATE")
        return await self._worker.write(work)

    def release(self) -> None:
        if self._holder is not None:
            self._holder.rollback()
            self._holder.close()


async def test_a_sqlite_database_locked_while_a_batch_is_written_one_by_one_stops_the_rest(
    sqlite_url: str, separate_database
) -> None:
    """A batch fails for one request's own fault and is written one by one; then another process
    holds the database locked past the busy timeout. The request that found it locked and the ones
    not tried yet are STORAGE_UNAVAILABLE, as on PostgreSQL: the SQLite thread waits out the timeout
    once, not once per remaining request (up to 127 x 5 s)."""
    url = separate_database(sqlite_url)
    async with migrated_storage(url) as storage:
        world = await build_world(storage, coins=100, price=10)
        others = [await create_user(storage, coins=100) for _ in range(3)]
        async with storage.engine.begin() as connection:
            await connection.execute(
                text(
                    "CREATE TRIGGER refuse_viewer BEFORE INSERT ON superlikes "
                    f"WHEN NEW.sender_id = '{world.viewer_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        # Transactions: 1 the batch (undone by the viewer's request), 2 others[0] alone, 3 the viewer
        # alone; the lock is taken before the 4th, others[1] alone.
        worker = SqliteWorker(url, connect_timeout_s=0.2)
        locked = _LockedByAnotherProcessFromWrite(worker, make_url(url).database or "", nth=4)
        try:
            superlikes = SuperlikeService(SqliteSuperlikes(locked))
            outcomes = await asyncio.gather(
                superlikes.send(world.stream_id, others[0]["id"], None),
                superlikes.send(world.stream_id, world.viewer_id, None),
                superlikes.send(world.stream_id, others[1]["id"], None),
                superlikes.send(world.stream_id, others[2]["id"], None),
                return_exceptions=True,
            )
        finally:
            locked.release()
            await worker.close()

        assert [type(outcome).__name__ for outcome in outcomes] == [
            "Superlike",
            "IntegrityError",
            "StorageUnavailable",
            "StorageUnavailable",
        ]
        assert locked.writes == 4  # others[2] was never tried
        assert [await balance_of(storage, user["id"]) for user in others] == [90, 100, 100]
        assert await balance_of(storage, world.viewer_id) == 100
        assert (await audit_database(storage)).problems == []
