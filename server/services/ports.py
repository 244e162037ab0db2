"""What the use cases need from storage. Adapters implement it; unit tests use an in-memory fake.
Its value types are the domain's (server/domain/send_outcome.py), so adapters depend on the domain
only."""

from __future__ import annotations

from typing import Protocol

from server.domain.send_outcome import SendOutcome
from server.domain.superlike import SuperlikeRequest


class SuperlikeWriter(Protocol):
    async def send(self, request: SuperlikeRequest, superlike_id: str, created_at_ms: int) -> SendOutcome:
        """Reads the rules' facts and, if the rules allow and the key is unused, debits the sender,
        records the host's credit and stores the superlike with its two ledger entries, atomically;
        says which happened. The balance check and the debit are one statement, so concurrent
        charges never overdraw. Raises StorageUnavailable when nothing was written (retry freely),
        OutcomeUnknown when the charge may have committed."""
        ...
