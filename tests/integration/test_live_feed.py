"""The live feed on real SQLite and PostgreSQL: the batch writers' wake-ups, the hub reading by
position, replay and live in one order under concurrent writers; on PostgreSQL, wake-ups across
server processes (one NOTIFY per committed batch, LISTEN per process) and after a lost listener."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from server.adapters.storage import Storage, open_storage
from server.adapters.stream_advances import FEED_CHANNEL
from server.services.feed_hub import FeedHub
from server.services.feed_subscription import Subscription
from tests.conftest import POSTGRES_ADMIN_URL
from tests.support import build_world, create_user, superlike_service


@contextlib.asynccontextmanager
async def feed_of(storage: Storage) -> AsyncIterator[FeedHub]:
    """A hub wired to `storage` as the server wires it (server/app.py)."""
    hub = FeedHub(storage.history)
    unsubscribe = storage.advances.subscribe(hub.advanced)
    watching = asyncio.create_task(storage.watch_advances(hub.resync))
    try:
        yield hub
    finally:
        unsubscribe()
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await hub.close()


async def subscribe_from_now(hub: FeedHub, storage: Storage, stream_id: str) -> Subscription:
    head = await storage.history.after(stream_id, 2**63 - 1, 0)
    assert head is not None
    return hub.subscribe(stream_id, head.last_position, head.last_position)


async def take(subscription: Subscription, count: int, timeout_s: float = 10.0) -> list[str]:
    ids: list[str] = []
    async with asyncio.timeout(timeout_s):
        while len(ids) < count:
            ids += [superlike.superlike_id for superlike in await subscription.next_chunk()]
    return ids


async def test_live_and_replay_show_concurrent_writers_superlikes_in_one_order(storage: Storage) -> None:
    world = await build_world(storage)
    senders = [await create_user(storage, coins=100) for _ in range(24)]
    one, other = superlike_service(storage), superlike_service(storage)  # two writers: two servers' batches
    async with feed_of(storage) as hub:
        live = await subscribe_from_now(hub, storage, world.stream_id)
        sent = await asyncio.gather(
            *(
                (one if index % 2 else other).send(world.stream_id, sender["id"], None)
                for index, sender in enumerate(senders)
            )
        )
        live_order = await take(live, 24)
        replay = hub.subscribe(world.stream_id, 0, 24)
        replay_order = await take(replay, 24)

    assert live_order == replay_order
    assert sorted(live_order) == sorted(superlike.superlike_id for superlike in sent)
    batch = await storage.history.after(world.stream_id, 0, 100)
    assert batch is not None
    assert [superlike.position for superlike in batch.superlikes] == list(range(1, 25))
    assert [superlike.superlike_id for superlike in batch.superlikes] == live_order


@pytest.mark.postgres
async def test_a_superlike_sent_through_one_process_reaches_the_other_process_feed(postgres_url: str) -> None:
    async with open_storage(postgres_url) as writer_process, open_storage(postgres_url) as reader_process:
        world = await build_world(writer_process)
        async with feed_of(reader_process) as hub:
            subscription = await subscribe_from_now(hub, reader_process, world.stream_id)
            sent = await superlike_service(writer_process).send(world.stream_id, world.viewer_id, None)
            assert await take(subscription, 1) == [sent.superlike_id]


@pytest.mark.postgres
async def test_one_committed_batch_sends_one_notification_naming_its_streams_last_positions(
    postgres_url: str,
) -> None:
    async with open_storage(postgres_url) as storage:
        world = await build_world(storage)
        senders = [await create_user(storage, coins=100) for _ in range(5)]
        listener = await asyncpg.connect(postgres_url)
        payloads: list[str] = []
        await listener.add_listener(FEED_CHANNEL, lambda _c, _p, _ch, payload: payloads.append(payload))
        try:
            service = superlike_service(storage)
            # Sent in one event-loop turn: one batch, one statement.
            await asyncio.gather(*(service.send(world.stream_id, sender["id"], None) for sender in senders))
            await service.send(world.stream_id, world.viewer_id, None)
            refused = await asyncio.gather(service.send("f" * 24, world.viewer_id, None), return_exceptions=True)
            await asyncio.sleep(0.3)  # notifications arrive asynchronously; none more may come
        finally:
            await listener.close()
    assert len(refused) == 1
    assert payloads == [f"{world.stream_id}:5", f"{world.stream_id}:6"]  # nothing for a batch that charged nothing


@pytest.mark.postgres
async def test_a_dropped_listener_reconnects_and_rereads_what_it_missed(postgres_url: str) -> None:
    async with open_storage(postgres_url) as writer_process, open_storage(postgres_url) as reader_process:
        world = await build_world(writer_process)
        second = await create_user(writer_process, coins=100)
        async with feed_of(reader_process) as hub:
            subscription = await subscribe_from_now(hub, reader_process, world.stream_id)
            writer = superlike_service(writer_process)
            first = await writer.send(world.stream_id, world.viewer_id, None)
            assert await take(subscription, 1) == [first.superlike_id]

            admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
            try:
                database = postgres_url.rpartition("/")[2]
                terminated = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'livechat-feed' AND datname = $1",
                    database,
                )
                # Committed while no listener of that process is connected: its NOTIFY is lost.
                missed = await writer.send(world.stream_id, second["id"], None)
            finally:
                await admin.close()
            assert terminated == 1
            assert await take(subscription, 1) == [missed.superlike_id]
