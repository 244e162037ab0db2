"""The SendSuperlike use case: validate, apply the rules, charge exactly once, answer."""

from __future__ import annotations

from collections.abc import Callable

from server.domain import errors
from server.domain.clock import now_ms
from server.domain.ids import new_object_id
from server.domain.superlike import (
    Superlike,
    SuperlikeRequest,
    check_superlike_allowed,
    parse_request,
)
from server.services.ports import PriorSuperlike, UnitOfWorkFactory


MAX_ATTEMPTS = 2


class SuperlikeService:
    def __init__(self, unit_of_work: UnitOfWorkFactory, clock: Callable[[], int] = now_ms) -> None:
        self._unit_of_work = unit_of_work
        self._clock = clock

    async def send(self, stream_id: str, sender_id: str, idempotency_key: str | None) -> Superlike:
        request = parse_request(stream_id, sender_id, idempotency_key)
        # A second pass happens only when a concurrent request with the same key committed between
        # our read and our write; that pass finds its superlike and replays it.
        for _ in range(MAX_ATTEMPTS):
            outcome = await self._attempt(request)
            if outcome is not None:
                return outcome
        raise RuntimeError(f"idempotency key still contended after {MAX_ATTEMPTS} attempts")

    async def _attempt(self, request: SuperlikeRequest) -> Superlike | None:
        async with self._unit_of_work() as uow:
            created_at_ms = self._clock()
            attempt = await uow.superlikes.send_if_allowed(request, new_object_id(created_at_ms), created_at_ms)
            if attempt.prior is not None:
                return _replay(attempt.prior, request)
            if attempt.superlike is not None:
                await uow.commit()
                return attempt.superlike
            if attempt.contended:
                return None
            # Nothing was charged: the rules say why, in the contract's order.
            check_superlike_allowed(request, attempt.context)
            # The rules allowed it as read, but a concurrent superlike spent the coins first. If that
            # was a request with our key, its outcome is ours.
            if request.idempotency_key is not None:
                prior = await uow.superlikes.find_by_key(request.sender_id, request.idempotency_key)
                if prior is not None:
                    return _replay(prior, request)
            raise errors.InsufficientBalance()


def _replay(prior: PriorSuperlike, request: SuperlikeRequest) -> Superlike:
    if prior.superlike.stream_id != request.stream_id:
        raise errors.IdempotencyKeyReused()
    return prior.superlike
