"""What keeps the live feed's fan-out within the process's means (server/services/feed_budget.py,
feed_hub.py, feed_subscription.py): the chunk-write budget, its ticks, and how it shrinks while the
event loop runs late; one write per subscriber per tick holding everything new; catching up from
memory before storage, and storage catch-ups that never take the whole connection pool."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.services.feed_budget import FanoutBudget
from server.services.feed_hub import OFFER_SLICE, FeedHub
from tests.unit.feed_fakes import STREAM, FakeStreamStore, GatedBudget, idle, positions


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lone_subscriber_gets_every_batch_at_once() -> None:
    clock = FakeClock()
    budget = FanoutBudget(5000, burst_seconds=0.02, clock=clock)
    for _ in range(500):  # batches at 50 a second
        assert budget.book(1) == 0.0
        clock.now += 0.02
    for _ in range(100):  # or all at the same instant: 100 chunks fit the burst
        assert budget.book(1) == 0.0


def test_a_thousand_subscribers_get_one_tick_per_fifth_of_a_second_whatever_the_send_rate() -> None:
    clock = FakeClock()
    budget = FanoutBudget(5000, burst_seconds=0.02, clock=clock)
    assert budget.book(1000) == 0.0  # the first fan-out goes at once
    clock.now += 0.02  # the next batch, 20 ms later, waits until the first one is paid for
    assert budget.book(1000) == pytest.approx(0.2 - 0.02 - 0.02)
    clock.now += 0.16
    for _ in range(10):  # batches keep coming: every tick waits 0.2 s after the previous one
        assert budget.book(1000) == pytest.approx(0.2)
        clock.now += 0.2


def test_streams_share_the_budget_in_the_order_they_book() -> None:
    clock = FakeClock()
    budget = FanoutBudget(5000, burst_seconds=0.0, clock=clock)
    assert budget.book(1000) == 0.0  # stream A
    assert budget.book(1000) == pytest.approx(0.2)  # stream B, right after: after A's writes
    assert budget.book(10) == pytest.approx(0.4)  # a small stream waits its turn too
    clock.now += 0.4
    assert budget.book(1000) == pytest.approx(0.002)  # A again, behind the small stream's 10 writes


def test_a_quiet_spell_gives_back_the_whole_budget() -> None:
    clock = FakeClock()
    budget = FanoutBudget(5000, burst_seconds=0.02, clock=clock)
    budget.book(5000)
    clock.now += 1.0
    assert budget.book(100) == 0.0


def test_a_lone_late_probe_among_timely_ones_changes_nothing() -> None:
    budget = FanoutBudget(5000, floor=0.1)
    for _ in range(7):
        budget.observe_loop(0.001)
    budget.observe_loop(0.200)  # a garbage collection, a scheduling hiccup
    assert budget.rate == 5000


def test_while_the_event_loop_runs_late_the_budget_shrinks_to_its_floor_and_then_grows_back() -> None:
    budget = FanoutBudget(5000, floor=0.1)
    for _ in range(8):
        budget.observe_loop(0.001)
    for _ in range(3):
        budget.observe_loop(0.030)
    assert budget.rate == 5000  # three of the last eight probes late: not yet
    budget.observe_loop(0.030)
    assert budget.rate == pytest.approx(4000)  # half of them
    for _ in range(20):
        budget.observe_loop(0.030)
    assert budget.rate == pytest.approx(500)  # the floor
    for _ in range(4):
        budget.observe_loop(0.001)
    assert budget.rate == pytest.approx(500)  # still half late
    budget.observe_loop(0.001)
    assert budget.rate == pytest.approx(625)
    for _ in range(40):
        budget.observe_loop(0.001)
    assert budget.rate == 5000  # never above the configured rate


def test_a_shrunk_budget_spaces_ticks_further_apart() -> None:
    clock = FakeClock()
    budget = FanoutBudget(5000, floor=0.1, burst_seconds=0.0, clock=clock)
    for _ in range(3):
        budget.observe_loop(0.050)
    assert budget.rate == pytest.approx(2560)
    budget.book(1000)
    assert budget.book(1000) == pytest.approx(1000 / 2560)


async def test_the_budget_notices_a_busy_event_loop() -> None:
    budget = FanoutBudget(5000, floor=0.1)
    following = asyncio.create_task(budget.follow_loop())
    for _ in range(8):  # the loop is held 40 ms at a time, as a busy or starved process holds it
        await asyncio.sleep(0)
        time.sleep(0.04)
    following.cancel()
    assert budget.rate < 5000


def test_by_default_the_budget_is_fixed_however_late_the_loop_runs() -> None:
    budget = FanoutBudget(5000)
    for _ in range(10):
        budget.observe_loop(0.100)
    assert budget.rate == 5000 and not budget.adapts
    assert FanoutBudget(5000, floor=0.5).adapts


def test_a_budget_must_allow_some_writes() -> None:
    with pytest.raises(ValueError, match="chunks_per_second must be positive"):
        FanoutBudget(0)
    with pytest.raises(ValueError, match="floor must be above 0 and at most 1"):
        FanoutBudget(5000, floor=0)


async def test_batches_committed_while_a_fan_out_waits_for_its_turn_go_out_together_in_the_next() -> None:
    store, budget = FakeStreamStore(), GatedBudget()
    hub = FeedHub(store, budget=budget)  # type: ignore[arg-type]
    subscribers = [hub.subscribe(STREAM, 0, 0) for _ in range(3)]
    for subscriber in subscribers:
        assert positions(await subscriber.next_chunk(0.01)) == []
    assert store.reads == 0  # new subscribers "from now" read nothing: the hub is where they start

    hub.advanced(store.commit(1))
    await idle()
    assert store.reads == 1 and budget.bookings == [3]  # read at once; its writes wait for their turn
    for _ in range(4):  # four batches meanwhile
        hub.advanced(store.commit(1))
        await idle()
    assert store.reads == 1

    budget.grant()
    await idle()
    for subscriber in subscribers:
        assert positions(await subscriber.next_chunk(1)) == [1]
    assert store.reads == 2 and budget.bookings == [3, 3]  # the four, in one read, wait for their turn
    budget.grant()
    await idle()
    for subscriber in subscribers:
        assert positions(await subscriber.next_chunk(1)) == [2, 3, 4, 5]
    assert store.reads == 2
    await hub.close()


async def test_what_is_committed_while_a_tick_goes_out_waits_for_the_next_tick() -> None:
    store, budget = FakeStreamStore(), GatedBudget()
    hub = FeedHub(store, budget=budget)  # type: ignore[arg-type]
    subscriber = hub.subscribe(STREAM, 0, 0)
    await subscriber.next_chunk(0.01)

    def commit_during_the_tick() -> None:
        store.after_read = None
        hub.advanced(store.commit(1))

    store.after_read = commit_during_the_tick
    hub.advanced(store.commit(1))
    await idle()
    budget.grant()
    await idle()
    assert positions(await subscriber.next_chunk(1)) == [1]
    assert budget.bookings == [1, 1] and store.reads == 2  # the next tick read it and waits its turn
    assert positions(await subscriber.next_chunk(0.01)) == []

    budget.grant()
    await idle()
    assert positions(await subscriber.next_chunk(1)) == [2]
    await hub.close()


async def test_a_tick_reads_a_few_chunks_at_most_and_the_next_tick_goes_on_without_cutting_anyone() -> None:
    store, budget = FakeStreamStore(), GatedBudget()
    hub = FeedHub(store, budget=budget, read_limit=2, buffer_chunks=8)  # type: ignore[arg-type]
    subscriber = hub.subscribe(STREAM, 0, 0)
    await subscriber.next_chunk(0.01)

    hub.advanced(store.commit(12))
    await idle()
    for _ in range(4):
        budget.grant()
        await idle()
    # Four reads of two, each chunk written once in its turn; then the next tick reads and waits.
    assert budget.bookings == [1, 1, 1, 1, 1] and store.reads == 5
    delivered = []
    for _ in range(4):
        delivered += positions(await subscriber.next_chunk(1))
    assert delivered == [1, 2, 3, 4, 5, 6, 7, 8] and not subscriber.catching_up

    for _ in range(2):
        budget.grant()
        await idle()
    delivered = []
    for _ in range(2):
        delivered += positions(await subscriber.next_chunk(1))
    assert delivered == [9, 10, 11, 12] and not subscriber.catching_up
    await hub.close()


async def test_a_slow_subscriber_takes_everything_buffered_in_one_handover() -> None:
    store = FakeStreamStore()
    hub = FeedHub(store, read_limit=4)
    subscriber = hub.subscribe(STREAM, 0, 0)
    await subscriber.next_chunk(0.01)
    for count in (1, 2, 1, 3):
        hub.advanced(store.commit(count))
        await idle()

    assert positions(await subscriber.next_chunk(1)) == [1, 2, 3, 4]  # three chunks, within read_limit
    assert positions(await subscriber.next_chunk(1)) == [5, 6, 7]
    await hub.close()


async def test_a_subscriber_cut_from_the_live_path_catches_up_from_memory_without_reading_storage() -> None:
    store = FakeStreamStore()
    hub = FeedHub(store, buffer_chunks=2)
    stalled, reader = hub.subscribe(STREAM, 0, 0), hub.subscribe(STREAM, 0, 0)
    await stalled.next_chunk(0.01), await reader.next_chunk(0.01)
    for _ in range(5):
        hub.advanced(store.commit(1))
        await idle()
        await reader.next_chunk(1)
    assert stalled.catching_up
    reads = store.reads

    caught_up = []
    while len(caught_up) < 5:
        caught_up += positions(await stalled.next_chunk(1))
    assert caught_up == [1, 2, 3, 4, 5] and not stalled.catching_up
    assert store.reads == reads
    await hub.close()


async def test_positions_older_than_memory_come_from_storage_and_the_rest_from_the_hub() -> None:
    store = FakeStreamStore()
    hub = FeedHub(store, buffer_chunks=2, recent_superlikes=2)
    stalled, reader = hub.subscribe(STREAM, 0, 0), hub.subscribe(STREAM, 0, 0)
    await stalled.next_chunk(0.01), await reader.next_chunk(0.01)
    for _ in range(5):  # memory keeps 2 to 4 superlikes: after the fifth, 4 and 5
        hub.advanced(store.commit(1))
        await idle()
        await reader.next_chunk(1)
    reads = store.reads

    assert positions(await stalled.next_chunk(1)) == [1, 2]  # its buffer
    assert positions(await stalled.next_chunk(1)) == [3, 4, 5]  # storage: 3 is no longer in memory
    assert store.reads == reads + 1 and not stalled.catching_up
    await hub.close()


async def test_subscribers_catching_up_from_storage_read_a_few_at_a_time() -> None:
    store = FakeStreamStore()
    store.commit(3)
    hub = FeedHub(store, storage_catch_ups=2)
    # They start before what the hub remembers (it starts at 3), so each one reads storage.
    subscribers = [hub.subscribe(STREAM, 0, 3) for _ in range(6)]
    store.gate.clear()
    waiting = [asyncio.create_task(subscriber.next_chunk(1)) for subscriber in subscribers]
    await idle()
    assert store.in_flight == 2

    store.gate.set()
    assert [positions(chunk) for chunk in await asyncio.gather(*waiting)] == [[1, 2, 3]] * 6
    assert store.most_in_flight == 2
    await hub.close()


async def test_a_fan_out_larger_than_a_slice_reaches_every_subscriber_once_a_slice_per_turn() -> None:
    store, budget = FakeStreamStore(), GatedBudget()
    hub = FeedHub(store, budget=budget)  # type: ignore[arg-type]
    subscribers = [hub.subscribe(STREAM, 0, 0) for _ in range(60)]
    await asyncio.gather(*(subscriber.next_chunk(0.01) for subscriber in subscribers))
    assert not any(subscriber.catching_up for subscriber in subscribers)

    hub.advanced(store.commit(2))
    await idle()
    budget.grant()
    await idle()
    # One slice written, the next waiting for its turn: the fan-out is spread, not one burst.
    assert budget.bookings == [OFFER_SLICE, OFFER_SLICE]
    first = [positions(await subscriber.next_chunk(0.001)) for subscriber in subscribers]
    assert sorted(first) == [[]] * (60 - OFFER_SLICE) + [[1, 2]] * OFFER_SLICE
    budget.grant()
    budget.grant()
    await idle()
    for subscriber, got in zip(subscribers, first, strict=True):
        if not got:
            assert positions(await subscriber.next_chunk(1)) == [1, 2]
    assert budget.bookings == [OFFER_SLICE, OFFER_SLICE, 60 - 2 * OFFER_SLICE] and store.reads == 1
    await hub.close()
