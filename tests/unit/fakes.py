"""In-memory storage with the same contract as the SQL adapters (the write port,
server/services/ports.py), for unit tests of the use case."""

from __future__ import annotations

import dataclasses

from server.domain.send_outcome import Charged, Contended, Refused, Replayed, SendOutcome, not_charged
from server.domain.superlike import SenderSnapshot, StreamState, Superlike, SuperlikeRequest
from server.domain.superlike_rules import SuperlikeFacts, refusal


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
        # Simulates another server committing this superlike (and its key) between our read and our
        # write.
        self.commit_before_charge: tuple[Superlike, str | None] | None = None


class FakeSuperlikes:
    """The write port: reads the facts, applies the rules, charges, as the SQL adapters do."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def send(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> SendOutcome:
        facts = self._facts(request)
        prior = self._prior(request)
        if prior is not None:
            return Replayed(prior)
        if refusal(facts) is not None:
            return Refused(facts)
        self._let_another_server_commit()
        assert facts.stream_price is not None and facts.sender is not None and facts.stream_host_id is not None
        if self._db.balances[request.sender_id] < facts.stream_price:
            # The coins were spent in between: a fresh read tells whether by our own key.
            prior = self._prior(request)
            return Replayed(prior) if prior is not None else not_charged(self._facts(request))
        if self._prior(request) is not None:
            return Contended()  # the unique index on the key refuses the write
        self._db.balances[request.sender_id] -= facts.stream_price
        self._db.balances[facts.stream_host_id] += facts.stream_price
        superlike = Superlike(
            superlike_id,
            request.stream_id,
            facts.sender,
            facts.stream_price,
            created_at_ms,
            self._db.balances[request.sender_id],
        )
        self._db.superlikes.append((superlike, request.idempotency_key))
        return Charged(superlike)

    def _facts(self, request: SuperlikeRequest) -> SuperlikeFacts:
        stream = self._db.streams.get(request.stream_id)
        return SuperlikeFacts(
            stream_host_id=stream.host_id if stream else None,
            stream_state=stream.state if stream else None,
            stream_price=stream.price if stream else None,
            sender=self._db.users.get(request.sender_id),
            sender_balance=self._db.balances.get(request.sender_id),
            sender_banned=bool(stream and request.sender_id in stream.banned),
        )

    def _prior(self, request: SuperlikeRequest) -> Superlike | None:
        for superlike, stored_key in self._db.superlikes:
            if (
                request.idempotency_key is not None
                and stored_key == request.idempotency_key
                and superlike.sender.user_id == request.sender_id
            ):
                return superlike
        return None

    def _let_another_server_commit(self) -> None:
        if self._db.commit_before_charge is not None:
            other, other_key = self._db.commit_before_charge
            self._db.commit_before_charge = None
            self._db.balances[other.sender.user_id] -= other.price
            self._db.superlikes.append((other, other_key))
