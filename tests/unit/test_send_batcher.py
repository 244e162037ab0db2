"""The group-commit batcher: who shares a batch, who waits, and whose outcome is whose.

The tests synchronise on events, never on time: `submit` queues a request at once, and the runner
reports each batch it starts and holds it until the test releases it."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import pytest

from server.adapters.send_batcher import BatchResult, PendingSend, SendBatcher
from server.domain.errors import OutcomeUnknown, StorageUnavailable
from server.domain.send_outcome import Charged, Contended, SendOutcome
from server.domain.superlike import SenderSnapshot, Superlike, SuperlikeRequest

STREAM = "s" * 24


def request(sender: str, key: str | None = None) -> SuperlikeRequest:
    return SuperlikeRequest(stream_id=STREAM, sender_id=sender, idempotency_key=key)


def charged(pending: PendingSend) -> Charged:
    """An outcome that names its own request (its superlike id and sender)."""
    sender = SenderSnapshot(pending.request.sender_id, "u", "n", "s", "p.jpg")
    return Charged(Superlike(pending.superlike_id, STREAM, sender, 1, pending.created_at_ms, 0))


class RecordingRunner:
    """Records each batch it is given, answers each item with its own outcome (contended for ids
    ending in "c", an error for `fail_ids`), and holds batches until released."""

    def __init__(self, *, held: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.fail_ids: set[str] = set()
        self._released = 0 if held else math.inf  # batches allowed to finish, in order
        self._changed = asyncio.Condition()

    async def __call__(self, batch: Sequence[PendingSend]) -> BatchResult:
        number = len(self.batches)
        self.batches.append([pending.superlike_id for pending in batch])
        async with self._changed:
            self._changed.notify_all()
            await self._changed.wait_for(lambda: number < self._released)
        return [
            ValueError(pending.superlike_id)
            if pending.superlike_id in self.fail_ids
            else Contended()
            if pending.superlike_id.endswith("c")
            else charged(pending)
            for pending in batch
        ]

    async def started(self, count: int) -> None:
        """Returns once `count` batches have been handed to the runner."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.batches) >= count), 5)

    async def release(self, count: float = math.inf) -> None:
        """Lets the first `count` batches (all by default) finish."""
        async with self._changed:
            self._released = count
            self._changed.notify_all()


def superlike_id_of(outcome: SendOutcome) -> str:
    assert isinstance(outcome, Charged)
    return outcome.superlike.superlike_id


async def test_requests_of_one_turn_share_a_batch_and_each_gets_its_own_outcome() -> None:
    runner = RecordingRunner()
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=1)

    results = await asyncio.gather(
        batcher.send(request("a"), "1", 0), batcher.send(request("b"), "2c", 0), batcher.send(request("c"), "3", 0)
    )

    assert runner.batches == [["1", "2c", "3"]]
    assert superlike_id_of(results[0]) == "1"
    assert isinstance(results[1], Contended)
    assert superlike_id_of(results[2]) == "3"


async def test_a_second_request_of_the_same_sender_waits_for_the_next_batch() -> None:
    runner = RecordingRunner()
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=1)

    await asyncio.gather(
        batcher.send(request("a", "k"), "1", 0),
        batcher.send(request("a", "k"), "2", 0),
        batcher.send(request("b"), "3", 0),
    )

    assert runner.batches == [["1", "3"], ["2"]]


async def test_a_sender_with_a_request_being_written_waits_even_when_another_batch_could_start() -> None:
    runner = RecordingRunner(held=True)
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=2)

    first = batcher.submit(request("a", "k"), "1", 0)
    await runner.started(1)
    later = [batcher.submit(request("a", "k"), "2", 0), batcher.submit(request("b"), "3", 0)]
    await runner.started(2)
    assert runner.batches == [["1"], ["3"]]  # the second slot is used, but not for "a"
    await runner.release()
    await asyncio.gather(first, *later)

    assert runner.batches == [["1"], ["3"], ["2"]]


async def test_requests_arriving_while_a_batch_is_written_form_the_next_one() -> None:
    runner = RecordingRunner(held=True)
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=1)

    first = batcher.submit(request("a"), "1", 0)
    await runner.started(1)
    later = [batcher.submit(request(sender), f"{sender}1", 0) for sender in "bcd"]
    await runner.release(1)
    await runner.started(2)

    assert runner.batches == [["1"], ["b1", "c1", "d1"]]  # the only slot was busy: they waited together
    await runner.release()
    assert [superlike_id_of(outcome) for outcome in await asyncio.gather(first, *later)] == ["1", "b1", "c1", "d1"]


async def test_batches_are_capped_and_in_flight_batches_are_bounded() -> None:
    runner = RecordingRunner(held=True)
    batcher = SendBatcher(runner, max_batch=2, max_in_flight=2)

    sends = [batcher.submit(request(str(n)), str(n), 0) for n in range(5)]
    await runner.started(2)
    assert runner.batches == [["0", "1"], ["2", "3"]]
    await runner.release()
    await asyncio.gather(*sends)

    assert runner.batches == [["0", "1"], ["2", "3"], ["4"]]


async def test_one_items_error_reaches_only_its_caller() -> None:
    runner = RecordingRunner()
    runner.fail_ids = {"2"}
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=1)

    results = await asyncio.gather(
        batcher.send(request("a"), "1", 0), batcher.send(request("b"), "2", 0), return_exceptions=True
    )

    assert superlike_id_of(results[0]) == "1"
    assert isinstance(results[1], ValueError) and str(results[1]) == "2"


async def test_a_failed_batch_fails_every_caller_in_it() -> None:
    async def broken(batch: Sequence[PendingSend]) -> BatchResult:
        raise OutcomeUnknown()

    batcher = SendBatcher(broken, max_batch=10, max_in_flight=1)

    results = await asyncio.gather(
        batcher.send(request("a"), "1", 0), batcher.send(request("b"), "2", 0), return_exceptions=True
    )

    assert [type(result) for result in results] == [OutcomeUnknown, OutcomeUnknown]
    assert results[0] is not results[1]  # each caller raises its own exception object


async def test_a_caller_that_gives_up_before_its_batch_is_never_sent() -> None:
    runner = RecordingRunner(held=True)
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=1)

    first = batcher.submit(request("a"), "1", 0)
    await runner.started(1)
    abandoned = batcher.submit(request("b"), "2", 0)
    kept = batcher.submit(request("c"), "3", 0)
    abandoned.cancel()  # what cancelling a caller awaiting send() does to its request
    await runner.release()
    await asyncio.gather(first, kept)

    assert runner.batches == [["1"], ["3"]]
    with pytest.raises(asyncio.CancelledError):
        await abandoned


async def test_a_caller_that_gives_up_mid_write_does_not_stop_the_batch() -> None:
    runner = RecordingRunner(held=True)
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=1)

    impatient = asyncio.ensure_future(batcher.send(request("a"), "1", 0))
    patient = asyncio.ensure_future(batcher.send(request("b"), "2", 0))
    await runner.started(1)
    impatient.cancel()
    await runner.release()

    assert superlike_id_of(await patient) == "2"
    assert runner.batches == [["1", "2"]]
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_close_waits_for_queued_and_in_flight_requests() -> None:
    runner = RecordingRunner(held=True)
    batcher = SendBatcher(runner, max_batch=1, max_in_flight=1)

    sends = [batcher.submit(request(sender), sender, 0) for sender in "ab"]
    await runner.started(1)
    closing = asyncio.ensure_future(batcher.close(5))
    await runner.release(1)
    await runner.started(2)  # "b" was queued before close: it is still written
    assert not closing.done()
    await runner.release()
    await closing

    assert [superlike_id_of(send.result()) for send in sends] == ["a", "b"]
    assert runner.batches == [["a"], ["b"]]


async def test_after_close_new_requests_are_refused_as_storage_unavailable() -> None:
    batcher = SendBatcher(RecordingRunner(), max_batch=10, max_in_flight=1)
    await batcher.close(1)

    with pytest.raises(StorageUnavailable):
        await batcher.send(request("a"), "1", 0)


async def test_close_abandons_a_write_that_outlives_its_timeout_as_outcome_unknown() -> None:
    runner = RecordingRunner(held=True)  # the database never answers
    batcher = SendBatcher(runner, max_batch=1, max_in_flight=1)

    written = batcher.submit(request("a"), "1", 0)
    queued = batcher.submit(request("b"), "2", 0)
    await runner.started(1)
    await batcher.close(0.05)

    with pytest.raises(OutcomeUnknown):
        await written  # it was sent: it may have committed
    with pytest.raises(StorageUnavailable):
        await queued  # never sent


async def test_a_runner_that_answers_too_few_leaves_no_caller_waiting() -> None:
    async def short(batch: Sequence[PendingSend]) -> BatchResult:
        return [charged(batch[0])]

    batcher = SendBatcher(short, max_batch=10, max_in_flight=1)

    results = await asyncio.wait_for(
        asyncio.gather(batcher.send(request("a"), "1", 0), batcher.send(request("b"), "2", 0), return_exceptions=True),
        timeout=1,
    )

    assert superlike_id_of(results[0]) == "1"
    assert isinstance(results[1], OutcomeUnknown)
