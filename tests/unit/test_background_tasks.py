"""Stopping the server's background tasks: every one ends, even one whose cancellation was lost."""

import asyncio

from server.app import _cancel_and_wait


async def test_a_task_that_lost_its_cancellation_is_cancelled_again() -> None:
    # What Python 3.11's asyncio.wait_for does when the cancellation arrives as its inner future
    # completes: it returns the result and the loop around it goes on.
    swallowed = []

    async def loop_that_loses_one_cancellation() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

    async def plain_loop() -> None:
        while True:
            await asyncio.sleep(3600)

    tasks = [asyncio.create_task(loop_that_loses_one_cancellation()), asyncio.create_task(plain_loop())]
    await asyncio.sleep(0)

    await asyncio.wait_for(_cancel_and_wait(tasks), timeout=10)

    assert swallowed == [True]
    assert all(task.cancelled() for task in tasks)


async def test_tasks_that_ended_by_themselves_are_collected(caplog) -> None:
    async def fails() -> None:
        raise RuntimeError("lost the database")

    async def returns() -> None:
        return None

    tasks = [asyncio.create_task(fails(), name="settlement"), asyncio.create_task(returns())]
    await asyncio.sleep(0)

    await _cancel_and_wait(tasks)

    assert [r.getMessage() for r in caplog.records] == [
        "background task settlement ended with RuntimeError('lost the database')"
    ]
