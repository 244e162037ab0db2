"""The read side on both databases: positions in commit order under concurrent writers, pages that
neither repeat nor skip while superlikes arrive, running totals equal to the superlikes, and the
migration that numbers and totals a database that already holds superlikes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from server.adapters import schema
from server.adapters.history_sql import top_supporters_sql
from server.adapters.storage import open_storage
from server.adapters.storage_base import Storage
from server.services.history import HistoryService
from tests.support import create_stream, create_user, migrated_storage, superlike_service

POSITIONS_REVISION = "0004"


async def _senders(storage: Storage, count: int, coins: int = 1000) -> list[str]:
    return [(await create_user(storage, coins=coins))["id"] for _ in range(count)]


async def test_concurrent_writers_give_a_stream_gapless_positions_in_commit_order(storage: Storage) -> None:
    host = await create_user(storage)
    stream = (await create_stream(storage, host["id"]))["id"]
    senders = await _senders(storage, 40)
    servers = [superlike_service(storage) for _ in range(3)]  # three writers, as three servers
    sent = await asyncio.gather(*(servers[i % 3].send(stream, sender, None) for i, sender in enumerate(senders * 2)))
    async with storage.engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT stream_position, id FROM superlikes WHERE stream_id = :s ORDER BY stream_position"),
                {"s": stream},
            )
        ).all()
        last = (
            await connection.execute(text("SELECT last_position FROM live_streams WHERE id = :s"), {"s": stream})
        ).scalar_one()
    assert [position for position, _ in rows] == list(range(1, len(sent) + 1))
    assert last == len(sent)
    assert {superlike_id for _, superlike_id in rows} == {superlike.superlike_id for superlike in sent}


async def test_paging_while_superlikes_arrive_lists_each_older_one_exactly_once(storage: Storage) -> None:
    host = await create_user(storage)
    stream = (await create_stream(storage, host["id"]))["id"]
    senders = await _senders(storage, 30)
    writer = superlike_service(storage)
    before = [await writer.send(stream, sender, None) for sender in senders[:20]]
    history = HistoryService(storage.history)

    listed: list[str] = []
    page, token = await history.list_superlikes(stream, 3, "")
    listed += [item.superlike_id for item in page.superlikes]
    arriving = asyncio.gather(*(writer.send(stream, sender, None) for sender in senders[20:]))
    while token:
        page, token = await history.list_superlikes(stream, 3, token)
        listed += [item.superlike_id for item in page.superlikes]
    after = await arriving

    assert listed == [superlike.superlike_id for superlike in reversed(before)]
    newest, _ = await history.list_superlikes(stream, 200, "")
    assert len(newest.superlikes) == 30
    assert {item.superlike_id for item in newest.superlikes[:10]} == {superlike.superlike_id for superlike in after}


async def test_running_totals_equal_the_stream_superlikes_of_each_sender(storage: Storage) -> None:
    host = await create_user(storage)
    streams = [(await create_stream(storage, host["id"], price=price))["id"] for price in (10, 25)]
    senders = await _senders(storage, 6)
    writer = superlike_service(storage)
    await asyncio.gather(*(writer.send(streams[i % 2], sender, None) for i, sender in enumerate(senders)))
    await asyncio.gather(*(writer.send(streams[0], sender, None) for sender in senders[:4]))
    async with storage.engine.connect() as connection:
        totals = (
            await connection.execute(
                text(
                    "SELECT stream_id, sender_id, coins, superlikes FROM stream_supporters"
                    " WHERE stream_id IN (:a, :b) ORDER BY stream_id, sender_id"
                ),
                {"a": streams[0], "b": streams[1]},
            )
        ).all()
        derived = (
            await connection.execute(
                text(
                    "SELECT stream_id, sender_id, CAST(SUM(price) AS BIGINT), COUNT(*) FROM superlikes"
                    " WHERE stream_id IN (:a, :b) GROUP BY stream_id, sender_id ORDER BY stream_id, sender_id"
                ),
                {"a": streams[0], "b": streams[1]},
            )
        ).all()
    assert [tuple(row) for row in totals] == [tuple(row) for row in derived]
    # Stream 0: senders 0, 2, 4 and, with their second superlikes, 1 and 3; stream 1: senders 1, 3, 5.
    assert len(totals) == 8


@pytest.fixture
def empty_database_url(database_url: str, separate_database: Callable[[str], str]) -> str:
    return separate_database(database_url)


def _revision_before_positions() -> str:
    script = ScriptDirectory.from_config(schema.alembic_config())
    down = script.get_revision(POSITIONS_REVISION).down_revision
    assert isinstance(down, str)
    return down


async def test_the_migration_numbers_and_totals_superlikes_already_stored(empty_database_url: str) -> None:
    async with open_storage(empty_database_url) as storage:
        await storage.upgrade(_revision_before_positions())
        async with storage.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO users (id, username, name, surname, profile_photo, created_at_ms) VALUES"
                    " ('aaaaaaaaaaaaaaaaaaaaaaaa', 'host', 'H', 'H', '', 0),"
                    " ('bbbbbbbbbbbbbbbbbbbbbbbb', 'ann', 'A', 'A', '', 0),"
                    " ('cccccccccccccccccccccccc', 'cid', 'C', 'C', '', 0)"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO live_streams (id, host_id, state, superlike_price, created_at_ms) VALUES"
                    " ('dddddddddddddddddddddddd', 'aaaaaaaaaaaaaaaaaaaaaaaa', 'live', 10, 0),"
                    " ('eeeeeeeeeeeeeeeeeeeeeeee', 'aaaaaaaaaaaaaaaaaaaaaaaa', 'live', 10, 0)"
                )
            )
            # Out of id order and with a tie on time: numbered by (created_at_ms, id).
            for superlike_id, stream, sender, price, at in (
                ("000000000000000000000003", "dddddddddddddddddddddddd", "bbbbbbbbbbbbbbbbbbbbbbbb", 10, 2000),
                ("000000000000000000000001", "dddddddddddddddddddddddd", "cccccccccccccccccccccccc", 30, 1000),
                ("000000000000000000000002", "dddddddddddddddddddddddd", "bbbbbbbbbbbbbbbbbbbbbbbb", 20, 1000),
                ("000000000000000000000004", "eeeeeeeeeeeeeeeeeeeeeeee", "cccccccccccccccccccccccc", 10, 500),
            ):
                await connection.execute(
                    text(
                        "INSERT INTO superlikes (id, stream_id, sender_id, sender_username, sender_name,"
                        " sender_surname, sender_profile_photo, price, sender_balance_after, created_at_ms)"
                        " VALUES (:id, :stream, :sender, 'x', 'x', 'x', '', :price, 0, :at)"
                    ),
                    {"id": superlike_id, "stream": stream, "sender": sender, "price": price, "at": at},
                )
        await storage.upgrade()
        async with storage.engine.connect() as connection:
            positions = (await connection.execute(text("SELECT id, stream_position FROM superlikes ORDER BY id"))).all()
            last = (await connection.execute(text("SELECT id, last_position FROM live_streams ORDER BY id"))).all()
            totals = (
                await connection.execute(
                    text(
                        "SELECT stream_id, sender_id, coins, superlikes, reached_at_position"
                        " FROM stream_supporters ORDER BY stream_id, sender_id"
                    )
                )
            ).all()
        assert [tuple(row) for row in positions] == [
            ("000000000000000000000001", 1),
            ("000000000000000000000002", 2),
            ("000000000000000000000003", 3),
            ("000000000000000000000004", 1),
        ]
        assert [tuple(row) for row in last] == [("dddddddddddddddddddddddd", 3), ("eeeeeeeeeeeeeeeeeeeeeeee", 1)]
        assert [tuple(row) for row in totals] == [
            ("dddddddddddddddddddddddd", "bbbbbbbbbbbbbbbbbbbbbbbb", 30, 2, 3),
            ("dddddddddddddddddddddddd", "cccccccccccccccccccccccc", 30, 1, 1),
            ("eeeeeeeeeeeeeeeeeeeeeeee", "cccccccccccccccccccccccc", 10, 1, 1),
        ]
        page, _ = await HistoryService(storage.history).list_superlikes("dddddddddddddddddddddddd", 0, "")
        assert [item.superlike_id for item in page.superlikes] == [
            "000000000000000000000003",
            "000000000000000000000002",
            "000000000000000000000001",
        ]


async def _plan_of_top_supporters(storage: Storage, stream_id: str, limit: int) -> tuple[list[str], str]:
    """ListTopSupporters' statement as each database plans it: (the plan's lines, the database)."""
    database = storage.engine.dialect.name
    async with storage.engine.connect() as connection:
        if database == "sqlite":
            sql = top_supporters_sql(lambda name: f":{name}")
            rows = await connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {sql}", {"stream_id": stream_id, "limit": limit}
            )
            return [row[-1] for row in rows], database
        await connection.exec_driver_sql("ANALYZE stream_supporters")
        sql = top_supporters_sql({"stream_id": "$1::varchar(24)", "limit": "$2::int"}.__getitem__)
        raw = (await connection.get_raw_connection()).driver_connection
        return [row[0] for row in await raw.fetch(f"EXPLAIN (COSTS OFF) {sql}", stream_id, limit)], database


async def test_top_supporters_are_the_ranking_index_first_entries_with_no_sort_of_the_ranking(
    empty_database_url: str,
) -> None:
    """However many supporters are tied at the cut-off (here 300 on one superlike each, behind two
    bigger ones), the top N are read as the first N entries of the ranking index: no sort over the
    stream's supporters, so the cost does not grow with them. (A database of its own: the totals are
    written without their superlikes, which the money audit of other tests would report.)"""
    async with migrated_storage(empty_database_url) as storage:
        await _assert_top_supporters_read_in_index_order(storage)


async def _assert_top_supporters_read_in_index_order(storage: Storage) -> None:
    host = await create_user(storage)
    stream = (await create_stream(storage, host["id"]))["id"]
    prefix = secrets.token_hex(10)
    senders = [f"{prefix}{i:04x}" for i in range(302)]
    async with storage.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO users (id, username, name, surname, profile_photo, created_at_ms)"
                " VALUES (:id, :id, 'N', 'S', '', 0)"
            ),
            [{"id": sender} for sender in senders],
        )
        await connection.execute(
            text(
                "INSERT INTO stream_supporters (stream_id, sender_id, coins, superlikes, reached_at_position)"
                " VALUES (:stream, :sender, :coins, :superlikes, :position)"
            ),
            [
                {"stream": stream, "sender": sender, "coins": 10 * n, "superlikes": n, "position": position}
                for position, (sender, n) in enumerate(zip(senders, [3, 2] + [1] * 300, strict=True), start=1)
            ],
        )

    top = await HistoryService(storage.history).top_supporters(stream, 4)
    assert [(supporter.sender.user_id, supporter.coins) for supporter in top] == [
        (senders[0], 30),
        (senders[1], 20),
        (senders[2], 10),  # of the tied, whoever got there first
        (senders[3], 10),
    ]
    plan, database = await _plan_of_top_supporters(storage, stream, 4)
    if database == "sqlite":
        assert "SEARCH t USING INDEX ix_stream_supporters_ranking (stream_id=?)" in plan
        # Only the final order of the (at most `limit`) rows read, never the ranking's own.
        assert [line for line in plan if "TEMP B-TREE" in line] == ["USE TEMP B-TREE FOR ORDER BY"]
    else:
        assert any("Index Scan using ix_stream_supporters_ranking" in line for line in plan), plan
        assert not any("Backward" in line or "Incremental Sort" in line for line in plan), plan
        below_the_limit = plan[next(i for i, line in enumerate(plan) if "->  Limit" in line) :]
        assert not any("Sort" in line for line in below_the_limit), plan
