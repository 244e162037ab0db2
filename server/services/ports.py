"""What the use cases need from storage. Adapters implement these; unit tests use in-memory fakes."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Self

from server.domain.superlike import Superlike, SuperlikeContext, SuperlikeRequest


class ChargeRefused(enum.Enum):
    INSUFFICIENT_BALANCE = "insufficient_balance"
    IDEMPOTENCY_KEY_TAKEN = "idempotency_key_taken"
    # The stream ended, the sender was banned or the price changed after the rules were checked:
    # nothing was charged and the rules must be checked again.
    CONDITIONS_CHANGED = "conditions_changed"


@dataclass(frozen=True, slots=True)
class PriorSuperlike:
    """A superlike already recorded under the request's idempotency key."""

    superlike: Superlike


class SuperlikeRepository(Protocol):
    async def load_context(
        self, request: SuperlikeRequest
    ) -> tuple[SuperlikeContext, PriorSuperlike | None]:
        """The rules' inputs and, when the request has a key, the superlike already stored under it."""

    async def find_by_key(self, sender_id: str, key: str) -> PriorSuperlike | None: ...

    async def charge(self, superlike: Superlike, host_id: str, key: str | None) -> int | ChargeRefused:
        """Debits the sender, credits the host, stores the superlike and its two ledger entries.

        Returns the sender's balance after the debit, or why nothing was charged. Atomic with respect
        to concurrent charges of the same wallet: the balance check and the debit are one statement.
        Storage that cannot hold the rules' inputs stable until the write (no lock between the read
        and the write) re-checks them in the write and answers CONDITIONS_CHANGED.
        """


class UnitOfWork(Protocol):
    superlikes: SuperlikeRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None:
        """Rolls back unless `commit()` ran; connectivity failures become StorageUnavailable."""

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
