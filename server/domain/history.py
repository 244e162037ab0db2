"""Reading a stream's superlikes back: page sizes, supporter limits and the supporters' ranking."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from server.domain import errors
from server.domain.superlike import SenderSnapshot

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
DEFAULT_SUPPORTERS_LIMIT = 10
MAX_SUPPORTERS_LIMIT = 100


def resolve_page_size(requested: int) -> int:
    """AIP-158: unset (0) means the default, too large is capped, negative is the caller's error."""
    if requested < 0:
        raise errors.InvalidPageSize()
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def resolve_supporters_limit(requested: int) -> int:
    if requested == 0:
        return DEFAULT_SUPPORTERS_LIMIT
    if not 1 <= requested <= MAX_SUPPORTERS_LIMIT:
        raise errors.InvalidLimit()
    return requested


@dataclass(frozen=True, slots=True)
class SupporterTotal:
    """One sender's running total on one stream, as the write path keeps it.

    `reached_at_position` is the stream position of the superlike that brought the sender to this
    total: of two senders with equal totals, the one who got there first ranks higher.
    """

    sender: SenderSnapshot
    coins: int
    superlikes: int
    reached_at_position: int


@dataclass(frozen=True, slots=True)
class RankedSupporter:
    rank: int
    sender: SenderSnapshot
    coins: int
    superlikes: int


def supporter_order_key(total: SupporterTotal) -> tuple[int, int]:
    """More coins first; on equal coins, whoever reached the total first. Storage sorts the same way."""
    return (-total.coins, total.reached_at_position)


def rank_supporters(totals: Iterable[SupporterTotal], limit: int) -> list[RankedSupporter]:
    """Ranks 1..n without gaps: positions are unique, so two supporters never share a rank."""
    ordered = sorted(totals, key=supporter_order_key)[:limit]
    return [
        RankedSupporter(rank=index, sender=total.sender, coins=total.coins, superlikes=total.superlikes)
        for index, total in enumerate(ordered, start=1)
    ]


@dataclass(frozen=True, slots=True)
class PostedSuperlike:
    """A superlike as a stream's history and live feed show it: what was paid, by whom, when, and
    its place in the stream's order. It never carries a balance."""

    superlike_id: str
    stream_id: str
    sender: SenderSnapshot
    price: int
    created_at_ms: int
    position: int


@dataclass(frozen=True, slots=True)
class HistoryPage:
    superlikes: list[PostedSuperlike]
    has_more: bool


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """Superlikes a feed subscriber has not seen yet, oldest first, and the stream's last position
    when they were read (a subscriber starting "from now" starts after it)."""

    superlikes: list[PostedSuperlike]
    last_position: int
