"""Operators' commands racing each other on PostgreSQL, where two admin transactions really run at once
(on SQLite they queue on storage's one writer thread)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from server.domain.superlike import StreamState
from tests.support import as_operator, build_world, migrated_storage, wait_until_a_postgres_lock_is_awaited


async def test_an_end_stream_that_loses_the_race_to_another_end_stream_reports_no_change(postgres_url: str) -> None:
    async with migrated_storage(postgres_url) as storage:
        world = await build_world(storage)
        async with storage.engine.connect() as other_operator:
            # Another end-stream has moved the row and not committed yet: ours reads the stream live,
            # then its conditional update waits for the row.
            transaction = await other_operator.begin()
            await other_operator.execute(
                text("UPDATE live_streams SET state = 'ended' WHERE id = :id"), {"id": world.stream_id}
            )
            ours = asyncio.create_task(
                as_operator(storage, lambda admin: admin.set_stream_state(world.stream_id, StreamState.ENDED))
            )
            await wait_until_a_postgres_lock_is_awaited(storage.engine)
            await transaction.commit()
        change = await ours
    assert (change.stream.state, change.previous_state, change.changed) == (StreamState.ENDED, StreamState.ENDED, False)
