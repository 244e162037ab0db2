"""What the use cases need from storage. Adapters implement it; unit tests use an in-memory fake.
Its value types are the domain's (server/domain/send_outcome.py), so adapters depend on the domain
only."""

from __future__ import annotations

from typing import Protocol

from server.domain.history import FeedBatch, HistoryPage, SupporterTotal
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


class SuperlikeReader(Protocol):
    """Reads a stream's superlikes back by their per-stream positions. Each method returns None when
    the stream does not exist, and raises StorageUnavailable when the database cannot answer."""

    async def page(self, stream_id: str, before: int, limit: int) -> HistoryPage | None:
        """Superlikes with positions below `before`, newest first, at most `limit`."""
        ...

    async def after(self, stream_id: str, after: int, limit: int) -> FeedBatch | None:
        """Superlikes with positions above `after`, oldest first, at most `limit`."""
        ...

    async def top_supporters(self, stream_id: str, limit: int) -> list[SupporterTotal] | None:
        """The stream's running totals, highest first, ties to the lower reached-at position."""
        ...

    async def position_key(self) -> bytes:
        """The key that seals page tokens and feed cursors, the same for every replica."""
        ...
