"""Migration 0003 (superlike prices 1..1,000,000) on databases that already hold data, both backends."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.audit import audit_database
from server.adapters.storage import Storage, open_storage
from server.domain.streams import MAX_SUPERLIKE_PRICE, MIN_SUPERLIKE_PRICE
from tests.support import rows_of

HOST, VIEWER = "a" * 24, "b" * 24
FREE_STREAM, PRICED_STREAM = "c" * 24, "d" * 24


@pytest.fixture
def fresh_database_url(database_url: str, separate_database: Callable[[str], str]) -> str:
    # Sync: creating a PostgreSQL database runs its own event loop, outside the tests' one.
    return separate_database(database_url)


@pytest_asyncio.fixture
async def storage_at_0002(fresh_database_url: str) -> AsyncIterator[Storage]:
    """A fresh database at revision 0002 holding what 0002 allowed: a free stream with a superlike on
    it, a priced stream with a ban and a superlike, their ledger entries."""
    async with open_storage(fresh_database_url, pool_size=1) as storage:
        await storage.upgrade("0002")
        async with storage.engine.begin() as connection:
            for statement in _rows_allowed_by_0002():
                await connection.execute(text(statement))
        yield storage


def _rows_allowed_by_0002() -> list[str]:
    return [
        f"INSERT INTO users VALUES ('{HOST}', 'host{secrets.token_hex(3)}', 'H', 'H', '', 1)",
        f"INSERT INTO users VALUES ('{VIEWER}', 'viewer{secrets.token_hex(3)}', 'V', 'V', '', 1)",
        f"INSERT INTO wallets VALUES ('{HOST}', 0), ('{VIEWER}', 93)",
        f"INSERT INTO live_streams VALUES ('{FREE_STREAM}', '{HOST}', 'live', 0, 1),"
        f" ('{PRICED_STREAM}', '{HOST}', 'live', 7, 1)",
        f"INSERT INTO chat_bans VALUES ('{PRICED_STREAM}', '{VIEWER}', 1)",
        f"INSERT INTO superlikes VALUES ('{'e' * 24}', '{FREE_STREAM}', '{VIEWER}', 'v', 'V', 'V', '', 0, 100, 2, 'k1'),"
        f" ('{'f' * 24}', '{PRICED_STREAM}', '{VIEWER}', 'v', 'V', 'V', '', 7, 93, 3, 'k2')",
        "INSERT INTO ledger_entries (user_id, amount, kind, superlike_id, created_at_ms, applied) VALUES"
        f" ('{VIEWER}', 100, 'coin_credit', NULL, 1, true),"
        f" ('{VIEWER}', 0, 'superlike_debit', '{'e' * 24}', 2, true),"
        f" ('{HOST}', 0, 'superlike_credit', '{'e' * 24}', 2, true),"
        f" ('{VIEWER}', -7, 'superlike_debit', '{'f' * 24}', 3, true),"
        f" ('{HOST}', 7, 'superlike_credit', '{'f' * 24}', 3, false)",
    ]


async def _insert_stream(engine: AsyncEngine, stream_id: str, price: int) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(f"INSERT INTO live_streams VALUES ('{stream_id}', '{HOST}', 'scheduled', {price}, 1)")
        )


async def test_0003_keeps_every_row_and_prices_a_free_stream_at_one_coin(storage_at_0002: Storage) -> None:
    await storage_at_0002.upgrade("0003")
    assert await rows_of(storage_at_0002.engine, "SELECT id, state, superlike_price FROM live_streams ORDER BY id") == [
        (FREE_STREAM, "live", 1),
        (PRICED_STREAM, "live", 7),
    ]
    # Superlikes keep the price they were charged; bans, wallets and the ledger are untouched.
    assert await rows_of(storage_at_0002.engine, "SELECT stream_id, price FROM superlikes ORDER BY id") == [
        (FREE_STREAM, 0),
        (PRICED_STREAM, 7),
    ]
    assert await rows_of(storage_at_0002.engine, "SELECT stream_id, user_id FROM chat_bans") == [
        (PRICED_STREAM, VIEWER)
    ]
    assert await rows_of(storage_at_0002.engine, "SELECT user_id, balance FROM wallets ORDER BY user_id") == [
        (HOST, 0),
        (VIEWER, 93),
    ]
    assert len(await rows_of(storage_at_0002.engine, "SELECT id FROM ledger_entries")) == 5
    await storage_at_0002.upgrade()  # the audit checks what later revisions keep too (positions, totals)
    assert (await audit_database(storage_at_0002)).problems == []


async def test_after_0003_the_database_refuses_prices_outside_1_to_1_000_000(storage_at_0002: Storage) -> None:
    await storage_at_0002.upgrade("0003")
    for price in (MIN_SUPERLIKE_PRICE - 1, -5, MAX_SUPERLIKE_PRICE + 1):
        with pytest.raises(IntegrityError, match=r"(?i)check constraint"):
            await _insert_stream(storage_at_0002.engine, secrets.token_hex(12), price)
    await _insert_stream(storage_at_0002.engine, "1" * 24, MIN_SUPERLIKE_PRICE)
    await _insert_stream(storage_at_0002.engine, "2" * 24, MAX_SUPERLIKE_PRICE)
    rows = await rows_of(
        storage_at_0002.engine, "SELECT id, superlike_price FROM live_streams WHERE state = 'scheduled' ORDER BY id"
    )
    assert rows == [("1" * 24, 1), ("2" * 24, 1_000_000)]


async def test_0003_keeps_the_other_constraints_and_foreign_keys(storage_at_0002: Storage) -> None:
    await storage_at_0002.upgrade("0003")
    with pytest.raises(IntegrityError):  # state_known
        async with storage_at_0002.engine.begin() as connection:
            await connection.execute(text(f"INSERT INTO live_streams VALUES ('{'3' * 24}', '{HOST}', 'paused', 5, 1)"))
    with pytest.raises(IntegrityError):  # host must be a user
        async with storage_at_0002.engine.begin() as connection:
            await connection.execute(
                text(f"INSERT INTO live_streams VALUES ('{'4' * 24}', '{'9' * 24}', 'live', 5, 1)")
            )
    with pytest.raises(IntegrityError):  # a ban names an existing stream (the rebuilt table on SQLite)
        async with storage_at_0002.engine.begin() as connection:
            await connection.execute(text(f"INSERT INTO chat_bans VALUES ('{'5' * 24}', '{VIEWER}', 1)"))


async def test_0003_downgrades_to_the_old_constraint(storage_at_0002: Storage) -> None:
    await storage_at_0002.upgrade("0003")
    await storage_at_0002.downgrade("0002")
    await _insert_stream(storage_at_0002.engine, "6" * 24, 0)
    with pytest.raises(IntegrityError):
        await _insert_stream(storage_at_0002.engine, "7" * 24, -1)
    await storage_at_0002.upgrade("0003")
    assert await rows_of(
        storage_at_0002.engine, f"SELECT superlike_price FROM live_streams WHERE id = '{'6' * 24}'"
    ) == [(1,)]
