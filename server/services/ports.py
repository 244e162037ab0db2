"""What the use cases need from storage. Adapters implement these; unit tests use in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Self

from server.domain.superlike import Superlike, SuperlikeContext, SuperlikeRequest


@dataclass(frozen=True, slots=True)
class PriorSuperlike:
    """A superlike already recorded under the request's idempotency key."""

    superlike: Superlike


@dataclass(frozen=True, slots=True)
class SendAttempt:
    """What one attempt to charge found and did.

    - `prior`: a superlike is already stored under the request's key; nothing was charged.
    - `superlike`: the new superlike, charged and stored atomically.
    - `contended`: a concurrent request with the same key won the race; nothing was charged and the
      next attempt will find its superlike as `prior`.
    - none of these: the rules refused, judged on `context` (the caller explains which rule), or the
      balance was spent by a concurrent superlike between the read and the debit.
    """

    context: SuperlikeContext
    prior: PriorSuperlike | None = None
    superlike: Superlike | None = None
    contended: bool = False


class SuperlikeRepository(Protocol):
    async def send_if_allowed(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> SendAttempt:
        """Reads the rules' inputs and, if the rules allow and the key is unused, debits the sender,
        records the host's credit and stores the superlike with its two ledger entries, atomically.
        The balance check and the debit are one statement, so concurrent charges never overdraw."""

    async def find_by_key(self, sender_id: str, key: str) -> PriorSuperlike | None: ...


class UnitOfWork(Protocol):
    superlikes: SuperlikeRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None:
        """Releases storage; connectivity failures become StorageUnavailable."""

    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
