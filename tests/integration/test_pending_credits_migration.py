"""Migration 0005 (pending host credits as a queue, keyless superlikes out of the key indexes, the
ranking index in reading order) on databases that already hold data, both backends, up and down."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from sqlalchemy import text

from server.adapters.audit import audit_database
from server.adapters.storage import Storage, open_storage
from tests.support import as_operator, rows_of, superlike_service

HOST, FIRST, SECOND = "a" * 24, "b" * 24, "c" * 24
STREAM = "d" * 24
SUPERLIKES = ("e" * 24, "f" * 24, "0" * 24)


@pytest.fixture
def fresh_database_url(database_url: str, separate_database: Callable[[str], str]) -> str:
    return separate_database(database_url)


@pytest_asyncio.fixture
async def storage_at_0004(fresh_database_url: str) -> AsyncIterator[Storage]:
    """A database at 0004: three superlikes of 10 coins on one stream (two from FIRST, one with a key
    and one without, and one from SECOND), whose host has been credited the first and is owed the
    other two (their credit entries not applied yet)."""
    async with open_storage(fresh_database_url, pool_size=1) as storage:
        await storage.upgrade("0004")
        async with storage.engine.begin() as connection:
            for statement in _rows_at_0004():
                await connection.execute(text(statement))
        yield storage


def _rows_at_0004() -> list[str]:
    first, second, third = SUPERLIKES
    return [
        "INSERT INTO users VALUES"
        f" ('{HOST}', 'host{secrets.token_hex(3)}', 'H', 'H', '', 1),"
        f" ('{FIRST}', 'first{secrets.token_hex(3)}', 'F', 'F', '', 1),"
        f" ('{SECOND}', 'second{secrets.token_hex(3)}', 'S', 'S', '', 1)",
        f"INSERT INTO wallets VALUES ('{HOST}', 10), ('{FIRST}', 80), ('{SECOND}', 90)",
        f"INSERT INTO live_streams VALUES ('{STREAM}', '{HOST}', 'live', 10, 1, 3)",
        "INSERT INTO superlikes VALUES"
        f" ('{first}', '{STREAM}', '{FIRST}', 'f', 'F', 'F', '', 10, 90, 2, 'k1', 1),"
        f" ('{second}', '{STREAM}', '{FIRST}', 'f', 'F', 'F', '', 10, 80, 3, NULL, 2),"
        f" ('{third}', '{STREAM}', '{SECOND}', 's', 'S', 'S', '', 10, 90, 4, 'k3', 3)",
        f"INSERT INTO stream_supporters VALUES ('{STREAM}', '{FIRST}', 20, 2, 2), ('{STREAM}', '{SECOND}', 10, 1, 3)",
        "INSERT INTO ledger_entries (user_id, amount, kind, superlike_id, created_at_ms, applied) VALUES"
        f" ('{FIRST}', 100, 'coin_credit', NULL, 1, true),"
        f" ('{SECOND}', 100, 'coin_credit', NULL, 1, true),"
        f" ('{FIRST}', -10, 'superlike_debit', '{first}', 2, true),"
        f" ('{HOST}', 10, 'superlike_credit', '{first}', 2, true),"
        f" ('{FIRST}', -10, 'superlike_debit', '{second}', 3, true),"
        f" ('{HOST}', 10, 'superlike_credit', '{second}', 3, false),"
        f" ('{SECOND}', -10, 'superlike_debit', '{third}', 4, true),"
        f" ('{HOST}', 10, 'superlike_credit', '{third}', 4, false)",
    ]


async def test_0005_queues_what_each_host_is_owed_and_keeps_every_entry(storage_at_0004: Storage) -> None:
    storage = storage_at_0004
    await storage.upgrade("0005")
    engine = storage.engine
    assert await rows_of(engine, "SELECT user_id, amount, entries FROM pending_credits") == [(HOST, 20, 2)]
    assert await rows_of(engine, "SELECT user_id, balance FROM wallets ORDER BY user_id") == [
        (HOST, 10),
        (FIRST, 80),
        (SECOND, 90),
    ]
    assert await rows_of(
        engine, "SELECT user_id, amount, kind, superlike_id FROM ledger_entries ORDER BY created_at_ms, amount"
    ) == [
        (FIRST, 100, "coin_credit", None),
        (SECOND, 100, "coin_credit", None),
        (FIRST, -10, "superlike_debit", SUPERLIKES[0]),
        (HOST, 10, "superlike_credit", SUPERLIKES[0]),
        (FIRST, -10, "superlike_debit", SUPERLIKES[1]),
        (HOST, 10, "superlike_credit", SUPERLIKES[1]),
        (SECOND, -10, "superlike_debit", SUPERLIKES[2]),
        (HOST, 10, "superlike_credit", SUPERLIKES[2]),
    ]
    assert (await audit_database(storage)).problems == []
    if engine.dialect.name == "postgresql":  # room on every wallets page for HOT balance updates
        assert await rows_of(engine, "SELECT reloptions FROM pg_class WHERE relname = 'wallets'") == [
            (["fillfactor=85"],)
        ]
    host = await as_operator(storage, lambda admin: admin.get_user(HOST))
    assert (host.balance, host.pending_credits) == (30, 20)

    # A key stored before the upgrade still replays; a superlike without one is charged.
    again = await superlike_service(storage).send(STREAM, FIRST, "k1")
    assert (again.superlike_id, again.sender_balance_after) == (SUPERLIKES[0], 90)
    fresh = await superlike_service(storage).send(STREAM, SECOND, None)
    assert fresh.sender_balance_after == 80
    assert await storage.settle() == 3
    assert await rows_of(engine, "SELECT balance FROM wallets WHERE user_id = '" + HOST + "'") == [(40,)]
    assert await rows_of(engine, "SELECT COUNT(*) FROM pending_credits") == [(0,)]
    assert (await audit_database(storage)).problems == []


async def test_0005_down_settles_what_is_owed_and_up_again_keeps_the_books(storage_at_0004: Storage) -> None:
    storage = storage_at_0004
    await storage.upgrade("0005")
    await superlike_service(storage).send(STREAM, SECOND, None)  # owed: 20 from before, 10 now
    await storage.downgrade("0004")
    engine = storage.engine
    # Which entries were pending is not kept, so going down settles them: every entry is applied.
    assert await rows_of(engine, "SELECT user_id, balance FROM wallets ORDER BY user_id") == [
        (HOST, 40),
        (FIRST, 80),
        (SECOND, 80),
    ]
    assert await rows_of(engine, "SELECT COUNT(*), SUM(CASE WHEN applied THEN 1 ELSE 0 END) FROM ledger_entries") == [
        (10, 10)
    ]
    if engine.dialect.name == "postgresql":
        assert await rows_of(engine, "SELECT reloptions FROM pg_class WHERE relname = 'wallets'") == [(None,)]
    await storage.upgrade()
    assert await rows_of(engine, "SELECT COUNT(*) FROM pending_credits") == [(0,)]
    assert (await audit_database(storage)).problems == []
    # The superlike written at 0005 keeps its place in the ranking read back after the round trip.
    totals = await storage.history.top_supporters(STREAM, 10)
    assert [(total.sender.user_id, total.coins, total.reached_at_position) for total in totals or []] == [
        (FIRST, 20, 2),
        (SECOND, 20, 4),
    ]
