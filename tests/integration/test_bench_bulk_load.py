"""The benchmark's bulk load (bench/bulk_load.py) on both databases: the world arrives whole, the
money audit passes on it, and the schema after the load is the migrated one.

Sync tests: separate_database creates its databases with asyncio.run, outside the test event loop."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import inspect

from bench import bulk_load, seeding
from server.adapters.audit import audit_database
from server.adapters.storage import open_storage


async def audit(url: str):
    async with open_storage(url, pool_size=1) as storage:
        return await audit_database(storage)


async def migrate(url: str) -> None:
    async with open_storage(url, pool_size=1) as storage:
        await storage.upgrade()


async def schema_shape(url: str) -> dict[str, tuple]:
    """Every loaded table's keys, foreign keys and indexes as the database describes them."""

    def describe(connection) -> dict[str, tuple]:
        inspector = inspect(connection)
        text = lambda items: sorted(json.dumps(item, default=str, sort_keys=True) for item in items)  # noqa: E731
        return {
            table: (
                inspector.get_pk_constraint(table),
                text(inspector.get_unique_constraints(table)),
                text(inspector.get_foreign_keys(table)),
                text(inspector.get_indexes(table)),
            )
            for table in [*seeding.LOADED_TABLES, "chat_bans"]
        }

    async with open_storage(url, pool_size=1) as storage, storage.engine.connect() as connection:
        return await connection.run_sync(describe)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_bulk_loaded_world_passes_the_audit_with_every_row_in_place(kind, separate_database, monkeypatch):
    monkeypatch.setattr(seeding, "SENDERS_PER_SLICE", 7)  # several slices of history
    url = separate_database(kind)
    asyncio.run(migrate(url))
    migrated = asyncio.run(schema_shape(url))
    world = seeding.World.build(senders=20, streams=3)
    info = asyncio.run(seeding.seed(url, world, history_per_sender=4))
    assert info["rows"] == {
        "users": 24,
        "wallets": 24,
        "ledger_entries": 20 + 2 * 80,
        "live_streams": 4,
        "superlikes": 80,
        "stream_supporters": 60,  # 4 superlikes over 3 streams: one stream twice per sender
    }
    report = asyncio.run(audit(url))
    assert (report.ok, report.superlikes, report.problems) == (True, 80, [])
    assert asyncio.run(schema_shape(url)) == migrated


@pytest.mark.parametrize(
    ("kind", "refusal"),
    [
        ("sqlite", "rows without their referenced row"),
        pytest.param("postgresql", "fk_wallets_user_id_users", marks=pytest.mark.postgres),
    ],
)
def test_a_row_that_breaks_a_foreign_key_fails_the_load_and_leaves_the_schema_whole(kind, refusal, separate_database):
    url = separate_database(kind)
    asyncio.run(migrate(url))
    migrated = asyncio.run(schema_shape(url))
    orphan = [("wallets", seeding.WALLET_COLUMNS, [("000000000000000000000000", 1)])]
    with pytest.raises(Exception, match=refusal):
        asyncio.run(bulk_load.load(url, orphan))
    assert asyncio.run(schema_shape(url)) == migrated
