"""Property: whatever interleaving of superlikes, credits, bans and stream state changes runs, the
books balance, no wallet goes negative, and each idempotency key is charged at most once."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from server.adapters.audit import audit_database
from server.adapters.storage import Storage
from server.adapters.tables import SuperlikeRecord, Wallet
from server.domain import errors
from server.domain.superlike import StreamState
from tests.support import as_operator, create_stream, create_user, migrated_storage, superlike_service

USERS = 4
STREAMS = 2

superlike_op = st.tuples(
    st.just("superlike"),
    st.integers(0, USERS - 1),
    st.integers(0, STREAMS - 1),
    st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"])),
)
credit_op = st.tuples(st.just("credit"), st.integers(0, USERS - 1), st.integers(1, 30))
ban_op = st.tuples(st.sampled_from(["ban", "unban"]), st.integers(0, STREAMS - 1), st.integers(0, USERS - 1))
state_op = st.tuples(st.just("end"), st.integers(0, STREAMS - 1))
settle_op = st.tuples(st.just("settle"))
operations = st.lists(
    st.one_of(superlike_op, superlike_op, superlike_op, credit_op, ban_op, state_op, settle_op), min_size=1, max_size=40
)
# Operations run in concurrent batches: each batch is gathered, batches run one after another.
batch_sizes = st.lists(st.integers(1, 12), min_size=1, max_size=8)


async def _run(storage: Storage, ops: list[tuple], batches: list[int]) -> None:
    users = [await create_user(storage, coins=25) for _ in range(USERS)]
    hosts = [await create_user(storage, coins=0) for _ in range(STREAMS)]
    streams = [await create_stream(storage, host["id"], price=10) for host in hosts]
    service = superlike_service(storage)
    charged_keys: dict[tuple[str, str], set[str]] = {}

    async def apply(op: tuple) -> None:
        kind = op[0]
        if kind == "superlike":
            sender, stream = users[op[1]]["id"], streams[op[2]]["id"]
            key = f"{op[3]}-{sender}" if op[3] else None
            try:
                superlike = await service.send(stream, sender, key)
            except (errors.InsufficientBalance, errors.SenderBanned, errors.StreamNotLive, errors.IdempotencyKeyReused):
                return
            if key is not None:
                charged_keys.setdefault((sender, key), set()).add(superlike.superlike_id)
            return
        if kind == "settle":
            await storage.settle()
            return
        if kind == "credit":
            await as_operator(storage, lambda admin: admin.credit_coins(users[op[1]]["id"], op[2]))
        elif kind == "ban":
            await as_operator(storage, lambda admin: admin.ban(streams[op[1]]["id"], users[op[2]]["id"]))
        elif kind == "unban":
            await as_operator(storage, lambda admin: admin.unban(streams[op[1]]["id"], users[op[2]]["id"]))
        else:
            # Ending an ended stream, even one a concurrent operation has just ended, is no error.
            stream_id = streams[op[1]]["id"]
            ended = await as_operator(storage, lambda admin: admin.set_stream_state(stream_id, StreamState.ENDED))
            assert ended.stream.state is StreamState.ENDED

    position = 0
    for size in batches:
        await asyncio.gather(*(apply(op) for op in ops[position : position + size]))
        position += size
    await asyncio.gather(*(apply(op) for op in ops[position:]))

    assert all(len(ids) == 1 for ids in charged_keys.values())
    report = await audit_database(storage)
    async with storage.engine.connect() as connection:
        negative = (
            await connection.execute(select(func.count()).select_from(Wallet).where(Wallet.balance < 0))
        ).scalar_one()
        keyed = (
            await connection.execute(
                select(func.count())
                .select_from(SuperlikeRecord)
                .where(
                    SuperlikeRecord.sender_id.in_([u["id"] for u in users]),
                    SuperlikeRecord.idempotency_key.is_not(None),
                )
            )
        ).scalar_one()
    assert report.problems == []
    assert negative == 0
    assert keyed == len(charged_keys)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, batches=batch_sizes)
def test_invariants_hold_under_random_interleavings(database_url: str, ops: list[tuple], batches: list[int]) -> None:
    # Each example gets its own event loop and storage: asyncpg connections belong to one loop.
    async def migrate_and_run() -> None:
        async with migrated_storage(database_url, pool_size=12) as storage:
            await _run(storage, ops, batches)

    asyncio.run(migrate_and_run())
