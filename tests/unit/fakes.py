"""In-memory storage with the same contract as the SQL adapters, for unit tests of the rules."""

from __future__ import annotations

import dataclasses
from typing import Self

from server.domain.superlike import (
    SenderSnapshot,
    StreamState,
    Superlike,
    SuperlikeContext,
    SuperlikeRequest,
)
from server.services.ports import ChargeRefused, PriorSuperlike


@dataclasses.dataclass
class FakeStream:
    host_id: str
    state: StreamState
    price: int
    banned: set[str] = dataclasses.field(default_factory=set)


class FakeDatabase:
    def __init__(self) -> None:
        self.users: dict[str, SenderSnapshot] = {}
        self.balances: dict[str, int] = {}
        self.streams: dict[str, FakeStream] = {}
        self.superlikes: list[tuple[Superlike, str | None]] = []
        # Simulates a concurrent request committing between our read and our write.
        self.commit_before_charge: tuple[Superlike, str] | None = None
        # Simulates an operator ending the stream between our read and our write.
        self.end_stream_before_charge: str | None = None


class FakeSuperlikeRepository:
    def __init__(self, db: FakeDatabase, staged: list) -> None:
        self._db = db
        self._staged = staged

    def _prior(self, sender_id: str, key: str | None) -> PriorSuperlike | None:
        for superlike, stored_key in self._db.superlikes:
            if key is not None and stored_key == key and superlike.sender.user_id == sender_id:
                return PriorSuperlike(superlike)
        return None

    async def load_context(self, request: SuperlikeRequest) -> tuple[SuperlikeContext, PriorSuperlike | None]:
        stream = self._db.streams.get(request.stream_id)
        return (
            SuperlikeContext(
                stream_host_id=stream.host_id if stream else None,
                stream_state=stream.state if stream else None,
                stream_price=stream.price if stream else None,
                sender=self._db.users.get(request.sender_id),
                sender_balance=self._db.balances.get(request.sender_id),
                sender_banned=bool(stream and request.sender_id in stream.banned),
            ),
            self._prior(request.sender_id, request.idempotency_key),
        )

    async def find_by_key(self, sender_id: str, key: str) -> PriorSuperlike | None:
        return self._prior(sender_id, key)

    async def charge(self, superlike: Superlike, host_id: str, key: str | None) -> int | ChargeRefused:
        if self._db.end_stream_before_charge is not None:
            self._db.streams[self._db.end_stream_before_charge].state = StreamState.ENDED
            self._db.end_stream_before_charge = None
        if self._db.streams[superlike.stream_id].state is not StreamState.LIVE:
            return ChargeRefused.CONDITIONS_CHANGED
        if self._db.commit_before_charge is not None:
            other, other_key = self._db.commit_before_charge
            self._db.commit_before_charge = None
            self._db.balances[other.sender.user_id] -= other.price
            self._db.superlikes.append((other, other_key))
        sender_id = superlike.sender.user_id
        if self._db.balances[sender_id] < superlike.price:
            return ChargeRefused.INSUFFICIENT_BALANCE
        if key is not None and self._prior(sender_id, key) is not None:
            return ChargeRefused.IDEMPOTENCY_KEY_TAKEN
        balance = self._db.balances[sender_id] - superlike.price
        self._staged.append(("debit", sender_id, superlike.price))
        self._staged.append(("credit", host_id, superlike.price))
        self._staged.append(("superlike", dataclasses.replace(superlike, sender_balance_after=balance), key))
        return balance


class FakeUnitOfWork:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self._staged: list = []
        self.superlikes = FakeSuperlikeRepository(db, self._staged)
        self.committed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._staged.clear()

    async def commit(self) -> None:
        for entry in self._staged:
            if entry[0] == "debit":
                self._db.balances[entry[1]] -= entry[2]
            elif entry[0] == "credit":
                self._db.balances[entry[1]] += entry[2]
            else:
                self._db.superlikes.append((entry[1], entry[2]))
        self._staged.clear()
        self.committed = True

    async def rollback(self) -> None:
        self._staged.clear()
