"""The stream lifecycle, the price range and the coin bounds (server/domain/streams.py, accounts.py)."""

from __future__ import annotations

import pytest

from server.domain import errors
from server.domain.accounts import check_coin_credit
from server.domain.streams import Stream, check_superlike_price, needs_transition, states_that_can_become
from server.domain.superlike import StreamState

SCHEDULED, LIVE, ENDED = StreamState.SCHEDULED, StreamState.LIVE, StreamState.ENDED
STREAM_ID = "64d15f9e2e6c8f4d5a123000"


def stream_in(state: StreamState) -> Stream:
    return Stream(stream_id=STREAM_ID, host_id="64d15f9e2e6c8f4d5a1230ff", state=state, superlike_price=10)


@pytest.mark.parametrize(
    ("current", "target", "moves"),
    [
        (SCHEDULED, LIVE, True),
        (SCHEDULED, ENDED, True),
        (LIVE, ENDED, True),
        (SCHEDULED, SCHEDULED, False),
        (LIVE, LIVE, False),
        (ENDED, ENDED, False),
    ],
)
def test_allowed_and_repeated_state_changes(current: StreamState, target: StreamState, moves: bool) -> None:
    assert needs_transition(stream_in(current), target) is moves


@pytest.mark.parametrize(
    ("current", "target", "message"),
    [
        (ENDED, LIVE, f"stream {STREAM_ID} has ended; an ended stream cannot become live"),
        (ENDED, SCHEDULED, f"stream {STREAM_ID} has ended; an ended stream cannot become scheduled"),
        (LIVE, SCHEDULED, f"stream {STREAM_ID} is live; a stream cannot go back to scheduled"),
    ],
)
def test_forbidden_state_changes_are_conflicts_that_say_why(
    current: StreamState, target: StreamState, message: str
) -> None:
    with pytest.raises(errors.Conflict) as refused:
        needs_transition(stream_in(current), target)
    assert (refused.value.reason, refused.value.message) == ("CONFLICT", message)


def test_the_states_each_target_is_reached_from() -> None:
    assert {target: states_that_can_become(target) for target in StreamState} == {
        SCHEDULED: frozenset(),
        LIVE: frozenset({SCHEDULED}),
        ENDED: frozenset({SCHEDULED, LIVE}),
    }


@pytest.mark.parametrize("price", [1, 2, 10, 999_999, 1_000_000])
def test_prices_from_1_to_1_000_000_coins_are_accepted(price: int) -> None:
    assert check_superlike_price(price) == price


@pytest.mark.parametrize("price", [-1, 0, 1_000_001, 10**12])
def test_other_prices_are_invalid_arguments(price: int) -> None:
    with pytest.raises(errors.InvalidAdminInput) as refused:
        check_superlike_price(price)
    assert (refused.value.reason, refused.value.message) == (
        "INVALID_ARGUMENT",
        f"price must be a whole number of coins from 1 to 1,000,000, got {price}",
    )


def test_coin_grants_are_1_to_a_billion_and_a_new_user_may_start_with_none() -> None:
    assert [check_coin_credit(c) for c in (1, 1_000_000_000)] == [1, 1_000_000_000]
    assert check_coin_credit(0, allow_zero=True) == 0
    for coins, allow_zero, low in ((0, False, 1), (-1, True, 0), (1_000_000_001, False, 1)):
        with pytest.raises(errors.InvalidAdminInput) as refused:
            check_coin_credit(coins, allow_zero=allow_zero)
        assert refused.value.message == f"coins must be a whole number from {low} to 1,000,000,000, got {coins}"
