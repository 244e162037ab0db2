"""The live feed's fan-out (server/services/feed_hub.py, feed_subscription.py) against an in-memory
stream: order, exactly once, coalescing, slow subscribers, lost wake-ups, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from server.domain import errors
from server.services.feed_hub import FeedHub
from tests.unit.feed_fakes import STREAM, FakeStreamStore, idle, positions


async def _publish(hub: FeedHub, store: FakeStreamStore, count: int) -> None:
    """`count` superlikes committed, their wake-up published to the hub, and the fan-out run."""
    hub.advanced(store.commit(count))
    await idle()


async def test_one_committed_batch_reaches_every_subscriber_as_one_chunk_read_once() -> None:
    store = FakeStreamStore()
    hub = FeedHub(store)
    first, second = hub.subscribe(STREAM, 0, 0), hub.subscribe(STREAM, 0, 0)
    assert positions(await first.next_chunk(0.01)) == [] and positions(await second.next_chunk(0.01)) == []
    reads_before = store.reads

    await _publish(hub, store, 3)

    assert positions(await first.next_chunk(1)) == [1, 2, 3]
    assert positions(await second.next_chunk(1)) == [1, 2, 3]
    assert store.reads - reads_before == 1  # one read for both subscribers
    await hub.close()


async def test_a_stalled_subscriber_is_cut_from_the_live_path_and_catches_up_exactly_once() -> None:
    store = FakeStreamStore()
    hub = FeedHub(store, buffer_chunks=2)
    stalled, reader = hub.subscribe(STREAM, 0, 0), hub.subscribe(STREAM, 0, 0)
    await stalled.next_chunk(0.01), await reader.next_chunk(0.01)

    delivered = []
    for _ in range(5):
        await _publish(hub, store, 1)
        delivered += positions(await reader.next_chunk(1))

    assert delivered == [1, 2, 3, 4, 5]
    assert stalled.catching_up  # its buffer held two chunks, the third cut it loose
    caught_up = []
    while len(caught_up) < 5:
        caught_up += positions(await stalled.next_chunk(1))
    assert caught_up == [1, 2, 3, 4, 5]
    assert not stalled.catching_up  # back on the live path

    await _publish(hub, store, 1)
    assert positions(await stalled.next_chunk(1)) == [6]
    await hub.close()


async def test_a_lost_wake_up_is_made_good_by_the_next_one_and_by_resync() -> None:
    store = FakeStreamStore()
    hub = FeedHub(store)
    subscription = hub.subscribe(STREAM, 0, 0)
    await subscription.next_chunk(0.01)

    store.commit(2)  # committed elsewhere, its notification lost
    await _publish(hub, store, 1)
    assert positions(await subscription.next_chunk(1)) == [1, 2, 3]

    store.commit(1)  # lost again; the listener reconnects
    hub.resync()
    await idle()
    assert positions(await subscription.next_chunk(1)) == [4]
    await hub.close()


async def test_a_subscriber_joining_between_a_read_and_its_fan_out_gets_no_duplicate() -> None:
    store = FakeStreamStore()
    store.commit(2)
    hub = FeedHub(store)
    early = hub.subscribe(STREAM, 2, 2)
    await early.next_chunk(0.01)
    store.commit(2)
    # The late subscriber starts before what the hub remembers, so it reads storage: up to 4, before
    # the hub's own read of 3 and 4 is fanned out.
    late = hub.subscribe(STREAM, 0, 4)
    assert positions(await late.next_chunk(1)) == [1, 2, 3, 4]
    hub.advanced({STREAM: 4})
    await idle()
    await _publish(hub, store, 1)

    assert positions(await early.next_chunk(1)) == [3, 4, 5]
    assert positions(await late.next_chunk(1)) == [5]
    await hub.close()


async def test_a_subscriber_starting_after_a_position_replays_only_what_follows_it() -> None:
    store = FakeStreamStore()
    store.commit(4)
    hub = FeedHub(store, read_limit=2)
    subscription = hub.subscribe(STREAM, 1, 4)
    assert positions(await subscription.next_chunk(1)) == [2, 3]  # read_limit per read
    assert positions(await subscription.next_chunk(1)) == [4]
    await hub.close()


async def test_wake_ups_for_streams_nobody_follows_cost_nothing() -> None:
    store = FakeStreamStore()
    hub = FeedHub(store)
    hub.advanced({"64d15f9e2e6c8f4d5a1230ff": 7, **store.commit(1)})
    await idle()
    assert store.reads == 0
    await hub.close()


async def test_the_last_subscriber_leaving_stops_the_streams_reader() -> None:
    store = FakeStreamStore()
    hub = FeedHub(store)
    subscription = hub.subscribe(STREAM, 0, 0)
    subscription.close()
    await _publish(hub, store, 1)
    assert hub.subscriber_count(STREAM) == 0 and store.reads == 0
    await hub.close()


async def test_close_interrupts_waiting_subscribers_and_refuses_new_ones() -> None:
    store = FakeStreamStore()
    hub = FeedHub(store)
    subscription = hub.subscribe(STREAM, 0, 0)
    await subscription.next_chunk(0.01)
    waiting = asyncio.create_task(subscription.next_chunk(None))
    await idle()

    await hub.close()

    with pytest.raises(errors.FeedInterrupted):
        await waiting
    with pytest.raises(errors.FeedInterrupted):
        hub.subscribe(STREAM, 0, 0)


async def test_an_idle_subscription_returns_an_empty_chunk_after_its_timeout() -> None:
    store = FakeStreamStore()
    hub = FeedHub(store)
    subscription = hub.subscribe(STREAM, 0, 0)
    await subscription.next_chunk(0.01)
    assert list(await subscription.next_chunk(0.01)) == []
    await hub.close()
