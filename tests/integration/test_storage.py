"""Storage (opened as the server opens it) and the SendSuperlike use case on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters.admin_repository import AdminRepository
from server.adapters.audit import audit_database, audit_ledger
from server.adapters.postgres.settlement import PostgresSettlement
from server.adapters.storage import Storage, open_storage
from server.adapters.tables import Base, LedgerEntry, SuperlikeRecord, pending_credits
from server.domain import errors
from server.domain.accounts import Profile
from server.domain.superlike import StreamState
from server.services.superlikes import SuperlikeService
from tests.support import (
    as_operator,
    balance_of,
    build_world,
    create_stream,
    create_user,
    migrated_storage,
    superlike_service,
)

pytestmark = pytest.mark.usefixtures("engine")


def service(storage: Storage) -> SuperlikeService:
    """Each call is another server's writer: concurrent calls race in the database, not in one batch."""
    return superlike_service(storage)


async def superlike_count(engine: AsyncEngine, sender_id: str) -> int:
    async with engine.connect() as connection:
        return (
            await connection.execute(
                select(func.count()).select_from(SuperlikeRecord).where(SuperlikeRecord.sender_id == sender_id)
            )
        ).scalar_one()


async def assert_audit_passes(storage: Storage) -> None:
    assert (await audit_database(storage)).problems == []


async def test_migrations_create_exactly_the_declared_schema(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        diff = await connection.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert diff == []


async def test_superlike_moves_the_price_and_writes_one_superlike_and_two_ledger_entries(
    engine: AsyncEngine, storage: Storage
) -> None:
    world = await build_world(storage, coins=100, price=15)
    superlike = await service(storage).send(world.stream_id, world.viewer_id, None)
    assert (superlike.price, superlike.sender_balance_after) == (15, 85)
    assert await balance_of(storage, world.viewer_id) == 85
    assert await balance_of(storage, world.host_id) == 15
    async with engine.connect() as connection:
        entries = (
            await connection.execute(
                select(LedgerEntry.user_id, LedgerEntry.amount, LedgerEntry.kind)
                .where(LedgerEntry.superlike_id == superlike.superlike_id)
                .order_by(LedgerEntry.amount)
            )
        ).all()
        owed_to_host = (
            await connection.execute(
                select(pending_credits.c.amount, pending_credits.c.entries).where(
                    pending_credits.c.user_id == world.host_id
                )
            )
        ).all()
        stored = (
            (await connection.execute(select(SuperlikeRecord).where(SuperlikeRecord.id == superlike.superlike_id)))
            .mappings()
            .one()
        )
    assert [tuple(e) for e in entries] == [
        (world.viewer_id, -15, "superlike_debit"),
        (world.host_id, 15, "superlike_credit"),
    ]
    # The host's credit is owed until settlement: one pending row for the one superlike.
    assert [tuple(row) for row in owed_to_host] == [(15, 1)]
    assert (stored["sender_name"], stored["sender_profile_photo"], stored["price"]) == ("sample", "sample.jpg", 15)
    assert stored["created_at_ms"] == superlike.created_at_ms
    await assert_audit_passes(storage)


async def test_refused_superlike_changes_nothing(engine: AsyncEngine, storage: Storage) -> None:
    world = await build_world(storage, coins=5, price=10)
    with pytest.raises(errors.InsufficientBalance):
        await service(storage).send(world.stream_id, world.viewer_id, None)
    assert await balance_of(storage, world.viewer_id) == 5
    assert await balance_of(storage, world.host_id) == 0
    assert await superlike_count(engine, world.viewer_id) == 0


async def test_every_refusal_is_read_from_storage(storage: Storage) -> None:
    world = await build_world(storage, coins=100)
    superlikes = service(storage)
    with pytest.raises(errors.StreamNotFound):
        await superlikes.send("aaaaaaaaaaaaaaaaaaaaaaaa", world.viewer_id, None)
    with pytest.raises(errors.SenderNotFound):
        await superlikes.send(world.stream_id, "bbbbbbbbbbbbbbbbbbbbbbbb", None)
    with pytest.raises(errors.SenderIsHost):
        await superlikes.send(world.stream_id, world.host_id, None)
    await as_operator(storage, lambda admin: admin.ban(world.stream_id, world.viewer_id))
    with pytest.raises(errors.SenderBanned):
        await superlikes.send(world.stream_id, world.viewer_id, None)
    await as_operator(storage, lambda admin: admin.unban(world.stream_id, world.viewer_id))
    await as_operator(storage, lambda admin: admin.set_stream_state(world.stream_id, StreamState.ENDED))
    with pytest.raises(errors.StreamNotLive):
        await superlikes.send(world.stream_id, world.viewer_id, None)
    assert await balance_of(storage, world.viewer_id) == 100


async def test_idempotent_retry_is_charged_once_and_replays_the_same_receipt(storage: Storage) -> None:
    world = await build_world(storage, coins=100)
    first = await service(storage).send(world.stream_id, world.viewer_id, "retry-1")
    again = await service(storage).send(world.stream_id, world.viewer_id, "retry-1")
    assert again == first
    assert await balance_of(storage, world.viewer_id) == 90
    other = await create_stream(storage, world.host_id)
    with pytest.raises(errors.IdempotencyKeyReused):
        await service(storage).send(other["id"], world.viewer_id, "retry-1")
    # Keys are scoped per sender: another viewer may use the same key.
    second_viewer = await create_user(storage, coins=10)
    assert (await service(storage).send(world.stream_id, second_viewer["id"], "retry-1")).price == 10


async def test_fifty_concurrent_superlikes_from_a_sender_who_can_afford_twenty(
    engine: AsyncEngine, storage: Storage
) -> None:
    world = await build_world(storage, coins=200, price=10)
    outcomes = await asyncio.gather(
        *(service(storage).send(world.stream_id, world.viewer_id, None) for _ in range(50)),
        return_exceptions=True,
    )
    succeeded = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, errors.InsufficientBalance)]
    assert (len(succeeded), len(refused)) == (20, 30)
    assert sorted(s.sender_balance_after for s in succeeded) == list(range(0, 200, 10))
    assert await balance_of(storage, world.viewer_id) == 0
    assert await balance_of(storage, world.host_id) == 200
    assert await superlike_count(engine, world.viewer_id) == 20
    await assert_audit_passes(storage)


async def test_concurrent_requests_with_one_key_charge_once(engine: AsyncEngine, storage: Storage) -> None:
    world = await build_world(storage, coins=100)
    outcomes = await asyncio.gather(
        *(service(storage).send(world.stream_id, world.viewer_id, "same-key") for _ in range(20))
    )
    assert len({o.superlike_id for o in outcomes}) == 1
    assert await balance_of(storage, world.viewer_id) == 90
    assert await superlike_count(engine, world.viewer_id) == 1


async def test_two_hosts_superliking_each_other_concurrently_do_not_deadlock(storage: Storage) -> None:
    alice = await create_user(storage, coins=1000)
    bob = await create_user(storage, coins=1000)
    alice_stream = await create_stream(storage, alice["id"])
    bob_stream = await create_stream(storage, bob["id"])
    sends = [service(storage).send(bob_stream["id"], alice["id"], None) for _ in range(15)]
    sends += [service(storage).send(alice_stream["id"], bob["id"], None) for _ in range(15)]
    await asyncio.wait_for(asyncio.gather(*sends), timeout=30)
    assert await balance_of(storage, alice["id"]) == 1000
    assert await balance_of(storage, bob["id"]) == 1000


async def test_stream_state_changes_follow_the_lifecycle(storage: Storage) -> None:
    host = await create_user(storage)
    stream = await create_stream(storage, host["id"], state=StreamState.SCHEDULED)

    async def move(target: StreamState) -> StreamState:
        return (await as_operator(storage, lambda admin: admin.set_stream_state(stream["id"], target))).stream.state

    assert await move(StreamState.LIVE) == "live"
    assert await move(StreamState.ENDED) == "ended"
    assert await move(StreamState.ENDED) == "ended"
    with pytest.raises(errors.Conflict):
        await move(StreamState.LIVE)


async def test_purge_frees_keys_older_than_the_cutoff_only(engine: AsyncEngine, storage: Storage) -> None:
    world = await build_world(storage, coins=100)
    old = await service(storage).send(world.stream_id, world.viewer_id, "old-key")
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE superlikes SET created_at_ms = created_at_ms - 90000000 WHERE id = :id"),
            {"id": old.superlike_id},
        )
    await service(storage).send(world.stream_id, world.viewer_id, "new-key")
    cutoff = old.created_at_ms - 86_400_000 + 1
    purged = await storage.write_transaction(
        lambda connection: AdminRepository(connection).clear_idempotency_keys(cutoff)
    )
    assert purged >= 1
    # The purged key is free again (a new charge); the recent one still replays.
    assert (await service(storage).send(world.stream_id, world.viewer_id, "old-key")).superlike_id != old.superlike_id
    assert await balance_of(storage, world.viewer_id) == 70
    await service(storage).send(world.stream_id, world.viewer_id, "new-key")
    assert await balance_of(storage, world.viewer_id) == 70


async def test_admin_refuses_bad_input_with_clear_errors(storage: Storage) -> None:
    profile = Profile(username="neg", name="n", surname="s", profile_photo="")
    with pytest.raises(errors.InvalidAdminInput, match="coins must be a whole number from 0 to 1,000,000,000, got -1"):
        await as_operator(storage, lambda admin: admin.create_user(profile, coins=-1))
    with pytest.raises(errors.InvalidAdminInput, match="user id must be a 24-character hex id"):
        await as_operator(storage, lambda admin: admin.credit_coins("nope", 5))
    with pytest.raises(errors.UserNotFound):
        await as_operator(storage, lambda admin: admin.credit_coins("cccccccccccccccccccccccc", 5))


async def test_audit_reports_a_tampered_balance(engine: AsyncEngine, storage: Storage) -> None:
    world = await build_world(storage, coins=50)
    problems = await _audit_after_tampering(
        engine, "UPDATE wallets SET balance = balance + 1 WHERE user_id = :id", id=world.viewer_id
    )
    # `in`, not `==`: the database-wide "balances sum to ..." line also appears, with totals that
    # depend on what earlier tests in the session left behind.
    assert f"wallet {world.viewer_id}: balance 51 with 0 pending, but its ledger entries sum to 50" in problems


async def test_unreachable_database_is_reported_as_storage_unavailable() -> None:
    async with open_storage("postgresql://postgres@127.0.0.1:1/none", connect_timeout_s=1) as unreachable:
        with pytest.raises(errors.StorageUnavailable):
            await SuperlikeService(unreachable.superlikes).send(
                "64d15f9e2e6c8f4d5a123000", "64d15f9e2e6c8f4d5a123456", None
            )
        assert await unreachable.reachable() is False


async def test_host_credits_stay_pending_until_settled_and_the_books_balance_throughout(
    engine: AsyncEngine, storage: Storage
) -> None:
    world = await build_world(storage, coins=100, price=10)
    for _ in range(3):
        await service(storage).send(world.stream_id, world.viewer_id, None)
    host = await as_operator(storage, lambda admin: admin.get_user(world.host_id))
    report = await audit_database(storage)
    assert (host.balance, host.pending_credits) == (30, 30)
    assert report.problems == [] and report.pending_credits >= 30
    await storage.settle()
    host = await as_operator(storage, lambda admin: admin.get_user(world.host_id))
    async with engine.begin() as connection:
        settled_wallet = (
            await connection.execute(text("SELECT balance FROM wallets WHERE user_id = :id"), {"id": world.host_id})
        ).scalar_one()
    assert (host.balance, host.pending_credits, settled_wallet) == (30, 0, 30)
    await assert_audit_passes(storage)


async def test_concurrent_settlements_apply_each_credit_once(engine: AsyncEngine, storage: Storage) -> None:
    world = await build_world(storage, coins=1000, price=7)
    sends = [service(storage).send(world.stream_id, world.viewer_id, None) for _ in range(40)]
    settles = [storage.settle() for _ in range(10)]
    await asyncio.gather(*sends, *settles)
    await storage.settle()
    async with engine.begin() as connection:
        wallet = (
            await connection.execute(text("SELECT balance FROM wallets WHERE user_id = :id"), {"id": world.host_id})
        ).scalar_one()
    assert wallet == 280
    await assert_audit_passes(storage)


@pytest.fixture
def own_postgres_url(postgres_url: str, separate_database: Callable[[str], str]) -> str:
    # Sync: creating a PostgreSQL database runs its own event loop, outside the tests' one.
    return separate_database(postgres_url)


async def test_settling_on_postgresql_vacuums_the_queue_every_so_many_rows(own_postgres_url: str) -> None:
    """Settling deletes the queue's rows; without a VACUUM their space is never reused and every later
    settlement reads past them. The settlement vacuums the queue itself after deleting enough rows.
    (A database of its own: the counts are of this test's credits only.)"""
    async with migrated_storage(own_postgres_url) as storage:
        settlement = PostgresSettlement(storage.engine, vacuum_after_rows=3)
        world = await build_world(storage, coins=100, price=10)
        hosts = [world.host_id, *[(await create_user(storage))["id"] for _ in range(2)]]
        streams = [world.stream_id, *[(await create_stream(storage, host))["id"] for host in hosts[1:]]]

        async def vacuums() -> int:
            async with storage.engine.connect() as connection:
                return (
                    await connection.execute(
                        text("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'pending_credits'")
                    )
                ).scalar_one()

        before = await vacuums()
        await service(storage).send(streams[0], world.viewer_id, None)
        assert (await settlement.settle(), await vacuums()) == (1, before)  # one row deleted so far
        for stream in streams[1:]:  # a batch each: a row each, three in all
            await service(storage).send(stream, world.viewer_id, None)
        assert (await settlement.settle(), await vacuums()) == (2, before + 1)
        assert [await balance_of(storage, host) for host in hosts] == [10, 10, 10]
        await assert_audit_passes(storage)


async def test_audit_reports_a_superlike_whose_credit_went_to_the_wrong_user(
    engine: AsyncEngine, storage: Storage
) -> None:
    world = await build_world(storage, coins=50)
    superlike = await service(storage).send(world.stream_id, world.viewer_id, None)
    problems = await _audit_after_tampering(
        engine,
        "UPDATE ledger_entries SET user_id = :other WHERE superlike_id = :id AND kind = 'superlike_credit'",
        other=world.viewer_id,
        id=superlike.superlike_id,
    )
    assert f"superlike {superlike.superlike_id}: ledger entries do not match its price, sender and host" in problems


async def test_storage_transactions_commit_on_return_and_roll_back_on_error(storage: Storage) -> None:
    world = await build_world(storage, coins=40)
    balance = text("SELECT balance FROM wallets WHERE user_id = :id")
    tamper = text("UPDATE wallets SET balance = balance + 5 WHERE user_id = :id")

    def tamper_then_fail(connection: Connection) -> None:
        connection.execute(tamper, {"id": world.viewer_id})
        raise ValueError("undone")

    with pytest.raises(ValueError, match="undone"):
        await storage.write_transaction(tamper_then_fail)
    assert await storage.read_snapshot(lambda c: c.execute(balance, {"id": world.viewer_id}).scalar_one()) == 40
    assert await storage.write_transaction(lambda c: c.execute(balance, {"id": world.viewer_id}).scalar_one()) == 40
    await storage.check_schema()  # at head: nothing raised
    assert await storage.reachable() is True


async def _audit_after_tampering(engine: AsyncEngine, tamper: str, **params: str) -> list[str]:
    """The audit's problems once `tamper` has run, inside a transaction that is then rolled back."""
    async with engine.connect() as connection:
        async with connection.begin() as transaction:
            await connection.execute(text(tamper), params)
            report = await connection.run_sync(audit_ledger)
            await transaction.rollback()
    return report.problems


async def test_audit_reports_a_running_total_that_differs_from_the_superlikes(
    engine: AsyncEngine, storage: Storage
) -> None:
    world = await build_world(storage, coins=50)
    await service(storage).send(world.stream_id, world.viewer_id, None)
    problems = await _audit_after_tampering(
        engine, "UPDATE stream_supporters SET coins = coins + 1 WHERE stream_id = :s", s=world.stream_id
    )
    assert problems == [
        f"supporter {world.viewer_id} on stream {world.stream_id}: running total does not match the superlikes"
    ]


async def test_audit_reports_a_stream_whose_positions_have_a_gap(engine: AsyncEngine, storage: Storage) -> None:
    world = await build_world(storage, coins=50)
    await service(storage).send(world.stream_id, world.viewer_id, None)
    problems = await _audit_after_tampering(
        engine, "UPDATE live_streams SET last_position = last_position + 1 WHERE id = :s", s=world.stream_id
    )
    assert problems == [f"stream {world.stream_id}: superlike positions are not exactly 1..last_position"]
