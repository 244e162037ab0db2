from __future__ import annotations

import pytest

from server.domain.errors import InvalidLimit, InvalidPageSize
from server.domain.history import (
    RankedSupporter,
    SupporterTotal,
    rank_supporters,
    resolve_page_size,
    resolve_supporters_limit,
)
from server.domain.superlike import SenderSnapshot


def sender(name: str) -> SenderSnapshot:
    return SenderSnapshot(f"{name:0>24}"[:24], name, name, name, "")


@pytest.mark.parametrize(("requested", "resolved"), [(0, 50), (1, 1), (20, 20), (200, 200), (201, 200), (10**6, 200)])
def test_page_size_defaults_to_50_and_is_capped_at_200(requested: int, resolved: int) -> None:
    assert resolve_page_size(requested) == resolved


def test_a_negative_page_size_is_refused() -> None:
    with pytest.raises(InvalidPageSize):
        resolve_page_size(-1)


@pytest.mark.parametrize(("requested", "resolved"), [(0, 10), (1, 1), (100, 100)])
def test_supporters_limit_defaults_to_10(requested: int, resolved: int) -> None:
    assert resolve_supporters_limit(requested) == resolved


@pytest.mark.parametrize("requested", [-1, 101, 10**6])
def test_supporters_limit_outside_1_to_100_is_refused(requested: int) -> None:
    with pytest.raises(InvalidLimit):
        resolve_supporters_limit(requested)


def test_supporters_rank_by_coins_then_by_who_reached_the_total_first() -> None:
    totals = [
        SupporterTotal(sender("late"), coins=30, superlikes=3, reached_at_position=9),
        SupporterTotal(sender("top"), coins=50, superlikes=1, reached_at_position=12),
        SupporterTotal(sender("early"), coins=30, superlikes=1, reached_at_position=4),
        SupporterTotal(sender("small"), coins=10, superlikes=1, reached_at_position=1),
    ]
    assert rank_supporters(totals, limit=3) == [
        RankedSupporter(1, sender("top"), 50, 1),
        RankedSupporter(2, sender("early"), 30, 1),
        RankedSupporter(3, sender("late"), 30, 3),
    ]


def test_no_supporters_rank_as_an_empty_list() -> None:
    assert rank_supporters([], limit=10) == []
