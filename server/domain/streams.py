"""Live streams as operators manage them: the state lifecycle, the price range, chat bans.

A stream is created scheduled (or directly live or ended), goes live once and ends once; an ended
stream never comes back. Asking for the state a stream is already in is not an error: the answer
says nothing changed, so scripts can repeat a command safely.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.domain import errors
from server.domain.superlike import StreamState

# A superlike costs at least one coin (a free one would be a like), and no single superlike can move
# more than a million coins, whatever an operator types. The database holds the same bounds as a
# CHECK constraint (migration 0003).
MIN_SUPERLIKE_PRICE = 1
MAX_SUPERLIKE_PRICE = 1_000_000

# target state -> the states a stream may be in to move there
_REACHABLE_FROM: dict[StreamState, frozenset[StreamState]] = {
    StreamState.SCHEDULED: frozenset(),
    StreamState.LIVE: frozenset({StreamState.SCHEDULED}),
    StreamState.ENDED: frozenset({StreamState.SCHEDULED, StreamState.LIVE}),
}


@dataclass(frozen=True, slots=True)
class Stream:
    stream_id: str
    host_id: str
    state: StreamState
    superlike_price: int


@dataclass(frozen=True, slots=True)
class StreamStateChange:
    """The stream after a state command, and whether the command changed anything."""

    stream: Stream
    previous_state: StreamState

    @property
    def changed(self) -> bool:
        return self.stream.state is not self.previous_state


@dataclass(frozen=True, slots=True)
class ChatBanStatus:
    stream_id: str
    user_id: str
    banned: bool


def states_that_can_become(target: StreamState) -> frozenset[StreamState]:
    """The states from which `target` is one allowed step away (what a conditional update matches)."""
    return _REACHABLE_FROM[target]


def needs_transition(stream: Stream, target: StreamState) -> bool:
    """True when the stream must move to `target`; False when it is already there.

    Raises Conflict for a move the lifecycle forbids, naming the stream, its state and why.
    """
    if stream.state is target:
        return False
    if stream.state in _REACHABLE_FROM[target]:
        return True
    if stream.state is StreamState.ENDED:
        raise errors.Conflict(f"stream {stream.stream_id} has ended; an ended stream cannot become {target.value}")
    raise errors.Conflict(
        f"stream {stream.stream_id} is {stream.state.value}; a stream cannot go back to {target.value}"
    )


def check_superlike_price(price: int) -> int:
    if not MIN_SUPERLIKE_PRICE <= price <= MAX_SUPERLIKE_PRICE:
        raise errors.InvalidAdminInput(
            f"price must be a whole number of coins from {MIN_SUPERLIKE_PRICE} to {MAX_SUPERLIKE_PRICE:,}, got {price}"
        )
    return price
