"""In-memory storage with the same contract as the SQL adapters, for unit tests of the rules."""

from __future__ import annotations

import dataclasses
from typing import Self

from server.domain.errors import DomainError
from server.domain.superlike import (
    SenderSnapshot,
    StreamState,
    Superlike,
    SuperlikeContext,
    SuperlikeRequest,
    check_superlike_allowed,
)
from server.services.ports import PriorSuperlike, SendAttempt


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


class FakeSuperlikeRepository:
    def __init__(self, db: FakeDatabase, staged: list) -> None:
        self._db = db
        self._staged = staged

    def _prior(self, sender_id: str, key: str | None) -> PriorSuperlike | None:
        for superlike, stored_key in self._db.superlikes:
            if key is not None and stored_key == key and superlike.sender.user_id == sender_id:
                return PriorSuperlike(superlike)
        return None

    def _context(self, request: SuperlikeRequest) -> SuperlikeContext:
        stream = self._db.streams.get(request.stream_id)
        return SuperlikeContext(
            stream_host_id=stream.host_id if stream else None,
            stream_state=stream.state if stream else None,
            stream_price=stream.price if stream else None,
            sender=self._db.users.get(request.sender_id),
            sender_balance=self._db.balances.get(request.sender_id),
            sender_banned=bool(stream and request.sender_id in stream.banned),
        )

    async def send_if_allowed(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> SendAttempt:
        context = self._context(request)
        prior = self._prior(request.sender_id, request.idempotency_key)
        if prior is not None:
            return SendAttempt(context=context, prior=prior)
        try:
            price = check_superlike_allowed(request, context)
        except DomainError:
            return SendAttempt(context=context)
        if self._db.commit_before_charge is not None:
            other, other_key = self._db.commit_before_charge
            self._db.commit_before_charge = None
            self._db.balances[other.sender.user_id] -= other.price
            self._db.superlikes.append((other, other_key))
        if self._db.balances[request.sender_id] < price:
            return SendAttempt(context=context)
        if self._prior(request.sender_id, request.idempotency_key) is not None:
            return SendAttempt(context=context, contended=True)
        assert context.sender is not None and context.stream_host_id is not None
        superlike = Superlike(
            superlike_id, request.stream_id, context.sender, price, created_at_ms,
            self._db.balances[request.sender_id] - price,
        )
        self._staged.append(("debit", request.sender_id, price))
        self._staged.append(("credit", context.stream_host_id, price))
        self._staged.append(("superlike", superlike, request.idempotency_key))
        return SendAttempt(context=context, superlike=superlike)

    async def find_by_key(self, sender_id: str, key: str) -> PriorSuperlike | None:
        return self._prior(sender_id, key)


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
