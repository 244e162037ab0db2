"""The live feed's Server-Sent Events rendering (server/api/server_sent_events.py): each chunk's
message is built once for all the subscribers of a tick, and each stream gets its own reconnect delay."""

from __future__ import annotations

from server.api import server_sent_events as sse
from server.domain.history import PostedSuperlike
from server.domain.positions import PositionSeal
from tests.unit.feed_fakes import SENDER, STREAM

SEAL = PositionSeal(b"k" * 32)


def _superlikes(first: int, last: int) -> list[PostedSuperlike]:
    return [
        PostedSuperlike(f"{position:024x}", STREAM, SENDER, 10, 1_700_000_000_000, position)
        for position in range(first, last + 1)
    ]


def test_a_chunk_is_one_message_built_once_for_every_subscriber_given_its_span() -> None:
    renderer = sse.EventRenderer(SEAL)
    body = renderer.body(_superlikes(3, 5))

    assert body.data == renderer.chunk(_superlikes(3, 5))
    assert body.data.count(b"event: superlike\n") == 3 and body.content_type == ""
    assert renderer.body(_superlikes(3, 5)) is body  # another subscriber of the same tick
    assert renderer.body(_superlikes(3, 4)) is not body  # a slower one that took less


def test_only_the_last_few_chunks_stay_built() -> None:
    renderer = sse.EventRenderer(SEAL, bodies_cached=2)
    first = renderer.body(_superlikes(1, 1))
    renderer.body(_superlikes(2, 2))
    assert renderer.body(_superlikes(1, 1)) is first
    renderer.body(_superlikes(3, 3))
    renderer.body(_superlikes(4, 4))

    rebuilt = renderer.body(_superlikes(1, 1))
    assert rebuilt is not first and rebuilt == first


def test_each_stream_is_told_a_reconnect_delay_of_its_own_around_one_second() -> None:
    delays = {sse.spread_retry_ms() for _ in range(500)}
    assert min(delays) >= 750 and max(delays) <= 1250 and len(delays) > 100
    assert sse.opening(1042) == b"retry: 1042\n\n"
