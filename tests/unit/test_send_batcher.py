"""The group-commit batcher: who shares a batch, who waits, and whose outcome is whose."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from server.adapters.send_batcher import BatchResult, PendingSend, SendBatcher
from server.domain.errors import OutcomeUnknown, StorageUnavailable
from server.domain.superlike import SuperlikeContext, SuperlikeRequest
from server.services.ports import SendAttempt

CONTEXT = SuperlikeContext(None, None, None, None, None, False)


def request(sender: str, key: str | None = None) -> SuperlikeRequest:
    return SuperlikeRequest(stream_id="s" * 24, sender_id=sender, idempotency_key=key)


class RecordingRunner:
    """Answers each item with an attempt tagged by its superlike id; optionally holds a batch open."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_ids: set[str] = set()

    async def __call__(self, batch: Sequence[PendingSend]) -> BatchResult:
        self.batches.append([pending.superlike_id for pending in batch])
        await self.release.wait()
        return [
            ValueError(pending.superlike_id) if pending.superlike_id in self.fail_ids
            else SendAttempt(context=CONTEXT, contended=pending.superlike_id.endswith("c"))
            for pending in batch
        ]


async def test_requests_of_one_turn_share_a_batch_and_each_gets_its_own_outcome() -> None:
    runner = RecordingRunner()
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=1)

    results = await asyncio.gather(
        batcher.send(request("a"), "1", 0), batcher.send(request("b"), "2c", 0), batcher.send(request("c"), "3", 0)
    )

    assert runner.batches == [["1", "2c", "3"]]
    assert [result.contended for result in results] == [False, True, False]


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
    runner = RecordingRunner()
    runner.release.clear()
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=2)

    first = asyncio.ensure_future(batcher.send(request("a", "k"), "1", 0))
    await asyncio.sleep(0.01)
    later = [
        asyncio.ensure_future(batcher.send(request("a", "k"), "2", 0)),
        asyncio.ensure_future(batcher.send(request("b"), "3", 0)),
    ]
    await asyncio.sleep(0.01)
    assert runner.batches == [["1"], ["3"]]  # the second slot is used, but not for "a"
    runner.release.set()
    await asyncio.gather(first, *later)

    assert runner.batches == [["1"], ["3"], ["2"]]


async def test_requests_arriving_while_a_batch_is_written_form_the_next_one() -> None:
    runner = RecordingRunner()
    runner.release.clear()
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=1)

    first = asyncio.ensure_future(batcher.send(request("a"), "1", 0))
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(batcher.send(request(sender), sender, 0)) for sender in "bcd"]
    await asyncio.sleep(0.01)
    assert runner.batches == [["1"]]  # the only slot is busy: the others wait together
    runner.release.set()
    await asyncio.gather(first, *later)

    assert runner.batches == [["1"], ["b", "c", "d"]]


async def test_batches_are_capped_and_in_flight_batches_are_bounded() -> None:
    runner = RecordingRunner()
    runner.release.clear()
    batcher = SendBatcher(runner, max_batch=2, max_in_flight=2)

    sends = [asyncio.ensure_future(batcher.send(request(str(n)), str(n), 0)) for n in range(5)]
    await asyncio.sleep(0.01)
    assert runner.batches == [["0", "1"], ["2", "3"]]
    runner.release.set()
    await asyncio.gather(*sends)

    assert runner.batches == [["0", "1"], ["2", "3"], ["4"]]


async def test_one_items_error_reaches_only_its_caller() -> None:
    runner = RecordingRunner()
    runner.fail_ids = {"2"}
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=1)

    results = await asyncio.gather(
        batcher.send(request("a"), "1", 0), batcher.send(request("b"), "2", 0), return_exceptions=True
    )

    assert isinstance(results[0], SendAttempt)
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
    runner = RecordingRunner()
    runner.release.clear()
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=1)

    first = asyncio.ensure_future(batcher.send(request("a"), "1", 0))
    await asyncio.sleep(0.01)
    abandoned = asyncio.ensure_future(batcher.send(request("b"), "2", 0))
    kept = asyncio.ensure_future(batcher.send(request("c"), "3", 0))
    await asyncio.sleep(0.01)
    abandoned.cancel()
    runner.release.set()
    await asyncio.gather(first, kept)

    assert runner.batches == [["1"], ["3"]]
    with pytest.raises(asyncio.CancelledError):
        await abandoned


async def test_a_caller_that_gives_up_mid_write_does_not_stop_the_batch() -> None:
    runner = RecordingRunner()
    runner.release.clear()
    batcher = SendBatcher(runner, max_batch=10, max_in_flight=1)

    impatient = asyncio.ensure_future(batcher.send(request("a"), "1", 0))
    patient = asyncio.ensure_future(batcher.send(request("b"), "2", 0))
    await asyncio.sleep(0.01)
    impatient.cancel()
    runner.release.set()

    assert isinstance(await patient, SendAttempt)
    assert runner.batches == [["1", "2"]]


async def test_close_waits_for_queued_and_in_flight_requests() -> None:
    runner = RecordingRunner()
    runner.release.clear()
    batcher = SendBatcher(runner, max_batch=1, max_in_flight=1)

    sends = [asyncio.ensure_future(batcher.send(request(sender), sender, 0)) for sender in "ab"]
    await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(batcher.close(5))
    await asyncio.sleep(0.01)
    assert not closing.done()
    runner.release.set()
    await closing

    assert all(send.done() and not send.cancelled() for send in sends)
    assert runner.batches == [["a"], ["b"]]


async def test_after_close_new_requests_are_refused_as_storage_unavailable() -> None:
    batcher = SendBatcher(RecordingRunner(), max_batch=10, max_in_flight=1)
    await batcher.close(1)

    with pytest.raises(StorageUnavailable):
        await batcher.send(request("a"), "1", 0)


async def test_close_abandons_a_write_that_outlives_its_timeout_as_outcome_unknown() -> None:
    runner = RecordingRunner()
    runner.release.clear()  # the database never answers
    batcher = SendBatcher(runner, max_batch=1, max_in_flight=1)

    written = asyncio.ensure_future(batcher.send(request("a"), "1", 0))
    queued = asyncio.ensure_future(batcher.send(request("b"), "2", 0))
    await asyncio.sleep(0.01)
    await batcher.close(0.05)

    with pytest.raises(OutcomeUnknown):
        await written  # it was sent: it may have committed
    with pytest.raises(StorageUnavailable):
        await queued  # never sent


async def test_a_runner_that_answers_too_few_leaves_no_caller_waiting() -> None:
    async def short(batch: Sequence[PendingSend]) -> BatchResult:
        return [SendAttempt(context=CONTEXT)]

    batcher = SendBatcher(short, max_batch=10, max_in_flight=1)

    results = await asyncio.wait_for(
        asyncio.gather(batcher.send(request("a"), "1", 0), batcher.send(request("b"), "2", 0), return_exceptions=True),
        timeout=1,
    )

    assert [type(result) for result in results] == [SendAttempt, OutcomeUnknown]
