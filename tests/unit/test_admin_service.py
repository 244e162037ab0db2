"""AdminService's own decisions, on a fake storage: what it asks storage to match, and conflicts."""

from __future__ import annotations

import dataclasses

import pytest

from server.domain import errors
from server.domain.streams import Stream, StreamStateChange
from server.domain.superlike import StreamState
from server.services.admin import AdminService

STREAM = Stream(stream_id="a" * 24, host_id="b" * 24, state=StreamState.SCHEDULED, superlike_price=10)


class RacedStorage:
    """A stream another operator moves to `moved_to` between our read and our conditional update."""

    def __init__(self, moved_to: StreamState) -> None:
        self.stream = STREAM
        self.moved_to = moved_to
        self.updates: list[tuple[str, StreamState, frozenset[StreamState]]] = []

    def find_stream(self, stream_id: str) -> Stream | None:
        return self.stream if stream_id == STREAM.stream_id else None

    def update_stream_state(self, stream_id: str, state: StreamState, from_states: frozenset[StreamState]) -> bool:
        self.updates.append((stream_id, state, from_states))
        self.stream = dataclasses.replace(self.stream, state=self.moved_to)
        return False


def test_a_state_change_matches_only_the_states_the_lifecycle_allows_and_reports_a_race() -> None:
    storage = RacedStorage(moved_to=StreamState.ENDED)
    with pytest.raises(errors.Conflict) as refused:
        AdminService(storage).set_stream_state("A" * 24, StreamState.LIVE)  # type: ignore[arg-type]
    assert refused.value.message == f"stream {'a' * 24} changed state concurrently; retry"
    assert storage.updates == [("a" * 24, StreamState.LIVE, frozenset({StreamState.SCHEDULED}))]


def test_losing_a_race_to_the_same_move_is_no_change_not_a_conflict() -> None:
    storage = RacedStorage(moved_to=StreamState.ENDED)
    change = AdminService(storage).set_stream_state("a" * 24, StreamState.ENDED)  # type: ignore[arg-type]
    ended = dataclasses.replace(STREAM, state=StreamState.ENDED)
    assert change == StreamStateChange(stream=ended, previous_state=StreamState.ENDED)
    assert change.changed is False
    assert storage.updates == [("a" * 24, StreamState.ENDED, frozenset({StreamState.SCHEDULED, StreamState.LIVE}))]
