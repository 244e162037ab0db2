"""The operator's use cases behind `livechat admin`: users, coins, streams, bans, idempotency keys.

The rules come from the domain (stream lifecycle, price range, coin bounds); storage only reads and
writes. Each call runs inside the caller's transaction, so a refused or failed command changes
nothing. The calls are synchronous: the transaction runs them where storage runs its writes
(Storage.write_transaction), which on SQLite is a thread of its own, not the event loop.
"""

from __future__ import annotations

from typing import Protocol

from server.domain import errors
from server.domain.accounts import Profile, UserAccount, check_coin_credit, check_profile
from server.domain.clock import now_ms
from server.domain.ids import is_object_id, new_object_id, normalize_object_id
from server.domain.streams import (
    ChatBanStatus,
    Stream,
    StreamStateChange,
    check_superlike_price,
    needs_transition,
    states_that_can_become,
)
from server.domain.superlike import StreamState

HOUR_MS = 3_600_000
# Purging "older than ten years" is the longest cutoff that means anything.
MAX_PURGE_AGE_HOURS = 24 * 365 * 10


class AdminStorage(Protocol):
    """What the admin use cases need from storage, inside one transaction."""

    def find_user(self, user_id: str) -> UserAccount | None: ...

    def find_user_id_by_username(self, username: str) -> str | None: ...

    def insert_user(self, user_id: str, profile: Profile, created_at_ms: int) -> bool:
        """Creates the user with an empty wallet; False when the id or the username is taken."""

    def credit(self, user_id: str, coins: int, created_at_ms: int) -> bool:
        """Adds coins to the wallet with their ledger entry; False when the user has no wallet."""

    def find_stream(self, stream_id: str) -> Stream | None: ...

    def insert_stream(self, stream: Stream, created_at_ms: int) -> bool:
        """False when the stream id is taken."""

    def update_stream_state(self, stream_id: str, state: StreamState, from_states: frozenset[StreamState]) -> bool:
        """Moves the stream to `state` only if it is still in one of `from_states`."""

    def add_ban(self, stream_id: str, user_id: str, created_at_ms: int) -> None:
        """Idempotent: an existing ban stays as it is."""

    def remove_ban(self, stream_id: str, user_id: str) -> None: ...

    def clear_idempotency_keys(self, created_before_ms: int) -> int:
        """Frees the keys of superlikes created before the cutoff; returns how many."""


def _object_id(value: str, what: str) -> str:
    if not is_object_id(value):
        raise errors.InvalidAdminInput(f"{what} must be a 24-character hex id, got {value!r}")
    return normalize_object_id(value)


class AdminService:
    def __init__(self, storage: AdminStorage) -> None:
        self._storage = storage

    def create_user(self, profile: Profile, coins: int = 0, user_id: str | None = None) -> UserAccount:
        check_profile(profile)
        check_coin_credit(coins, allow_zero=True)
        now = now_ms()
        user_id = _object_id(user_id, "user id") if user_id else new_object_id(now)
        if not self._storage.insert_user(user_id, profile, now):
            raise self._user_conflict(user_id, profile.username)
        if coins:
            self._storage.credit(user_id, coins, now)
        return self.get_user(user_id)

    def _user_conflict(self, user_id: str, username: str) -> errors.Conflict:
        # Name what is in the way: the existing user's id, never the id this call would have used.
        if self._storage.find_user(user_id) is not None:
            return errors.Conflict(f"user {user_id} already exists")
        existing = self._storage.find_user_id_by_username(username)
        if existing is not None:
            return errors.Conflict(f"username {username!r} is taken by user {existing}")
        return errors.Conflict(f"user {user_id} or username {username!r} was created concurrently; retry")

    def get_user(self, user_id: str) -> UserAccount:
        return self._existing_user(_object_id(user_id, "user id"))

    def _existing_user(self, user_id: str, role: str = "user") -> UserAccount:
        account = self._storage.find_user(user_id)
        if account is None:
            raise errors.UserNotFound(f"{role} {user_id} not found")
        return account

    def credit_coins(self, user_id: str, coins: int) -> UserAccount:
        user_id = _object_id(user_id, "user id")
        check_coin_credit(coins)
        if not self._storage.credit(user_id, coins, now_ms()):
            raise errors.UserNotFound(f"user {user_id} not found")
        return self.get_user(user_id)

    def create_stream(self, host_id: str, price: int, state: StreamState, stream_id: str | None = None) -> Stream:
        host_id = _object_id(host_id, "host id")
        check_superlike_price(price)
        self._existing_user(host_id, role="host")
        now = now_ms()
        stream_id = _object_id(stream_id, "stream id") if stream_id else new_object_id(now)
        stream = Stream(stream_id=stream_id, host_id=host_id, state=state, superlike_price=price)
        if not self._storage.insert_stream(stream, now):
            raise errors.Conflict(f"stream {stream_id} already exists")
        return stream

    def get_stream(self, stream_id: str) -> Stream:
        stream_id = _object_id(stream_id, "stream id")
        stream = self._storage.find_stream(stream_id)
        if stream is None:
            raise errors.NoSuchStream(f"stream {stream_id} not found")
        return stream

    def set_stream_state(self, stream_id: str, target: StreamState) -> StreamStateChange:
        stream = self.get_stream(stream_id)
        if not needs_transition(stream, target):
            return StreamStateChange(stream=stream, previous_state=stream.state)
        # Conditional on the states the rule allows: a concurrent end-stream is never undone by a start.
        moved = self._storage.update_stream_state(stream.stream_id, target, states_that_can_become(target))
        if moved:
            return StreamStateChange(stream=self.get_stream(stream.stream_id), previous_state=stream.state)
        now = self.get_stream(stream.stream_id)
        if now.state is target:
            # Another operator made the same move first: the stream is where this command wants it,
            # and this command changed nothing, as when it runs on a stream already there.
            return StreamStateChange(stream=now, previous_state=now.state)
        raise errors.Conflict(f"stream {stream.stream_id} changed state concurrently; retry")

    def ban(self, stream_id: str, user_id: str) -> ChatBanStatus:
        stream, user = self.get_stream(stream_id), self.get_user(user_id)
        self._storage.add_ban(stream.stream_id, user.user_id, now_ms())
        return ChatBanStatus(stream_id=stream.stream_id, user_id=user.user_id, banned=True)

    def unban(self, stream_id: str, user_id: str) -> ChatBanStatus:
        stream, user = self.get_stream(stream_id), self.get_user(user_id)
        self._storage.remove_ban(stream.stream_id, user.user_id)
        return ChatBanStatus(stream_id=stream.stream_id, user_id=user.user_id, banned=False)

    def purge_idempotency_keys(self, older_than_hours: int, retention_hours: int) -> int:
        """Frees keys older than `older_than_hours`, never younger than the promised retention."""
        if not retention_hours <= older_than_hours <= MAX_PURGE_AGE_HOURS:
            raise errors.InvalidAdminInput(
                f"--older-than-hours must be from {retention_hours} (idempotency keys are kept at least "
                f"LIVECHAT_IDEMPOTENCY_RETENTION_HOURS={retention_hours} hours) to {MAX_PURGE_AGE_HOURS}, "
                f"got {older_than_hours}"
            )
        return self._storage.clear_idempotency_keys(now_ms() - older_than_hours * HOUR_MS)
