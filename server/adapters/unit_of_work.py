"""One unit of work per use case.

Both databases write a superlike atomically inside the repository call (in a batch with other
requests, each with its own outcome), so there is nothing left to commit here. The unit of work turns
connectivity failures into StorageUnavailable ("nothing was stored, retry"); a failure while a write
was in flight is the repository's to report (OutcomeUnknown).
"""

from __future__ import annotations

import logging
from typing import Self

from server.adapters.database import is_unavailable
from server.adapters.superlike_repository import PostgresSuperlikeRepository, SqliteSuperlikeRepository
from server.domain.errors import StorageUnavailable

log = logging.getLogger(__name__)


class SqlUnitOfWork:
    def __init__(self, superlikes: PostgresSuperlikeRepository | SqliteSuperlikeRepository) -> None:
        # The repository is shared by every unit of work: it owns the batching of writes.
        self.superlikes = superlikes

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: object, error: BaseException | None, tb: object) -> None:
        if error is not None and not isinstance(error, StorageUnavailable) and is_unavailable(error):
            log.warning("database unavailable: %s", error)
            raise StorageUnavailable() from error

    async def commit(self) -> None:
        """Nothing to do: the repository's write is already atomic and durable."""
