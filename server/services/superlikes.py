"""The SendSuperlike use case: validate, apply the rules, charge exactly once, answer."""

from __future__ import annotations

import dataclasses
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
from server.services.ports import ChargeRefused, PriorSuperlike, UnitOfWorkFactory


MAX_ATTEMPTS = 3


class SuperlikeService:
    def __init__(self, unit_of_work: UnitOfWorkFactory, clock: Callable[[], int] = now_ms) -> None:
        self._unit_of_work = unit_of_work
        self._clock = clock

    async def send(self, stream_id: str, sender_id: str, idempotency_key: str | None) -> Superlike:
        request = parse_request(stream_id, sender_id, idempotency_key)
        # Another pass happens only when something changed between our read and our write: a
        # concurrent request with the same key committed (the next pass replays it), or the stream or
        # ban changed (the next pass reports why). Each cause resolves in one pass.
        for _ in range(MAX_ATTEMPTS):
            outcome = await self._attempt(request)
            if outcome is not None:
                return outcome
        raise RuntimeError(f"superlike still contended after {MAX_ATTEMPTS} attempts")

    async def _attempt(self, request: SuperlikeRequest) -> Superlike | None:
        async with self._unit_of_work() as uow:
            context, prior = await uow.superlikes.load_context(request)
            if prior is not None:
                return _replay(prior, request)
            price = check_superlike_allowed(request, context)
            assert context.sender is not None and context.stream_host_id is not None
            created_at_ms = self._clock()
            draft = Superlike(
                superlike_id=new_object_id(created_at_ms),
                stream_id=request.stream_id,
                sender=context.sender,
                price=price,
                created_at_ms=created_at_ms,
                sender_balance_after=0,  # known after the debit
            )
            charged = await uow.superlikes.charge(draft, context.stream_host_id, request.idempotency_key)
            if charged is ChargeRefused.IDEMPOTENCY_KEY_TAKEN or charged is ChargeRefused.CONDITIONS_CHANGED:
                await uow.rollback()
                return None
            if charged is ChargeRefused.INSUFFICIENT_BALANCE:
                if request.idempotency_key is not None:
                    # A concurrent request with our key may have spent the coins: answer with its
                    # outcome rather than a refusal the client never caused.
                    prior = await uow.superlikes.find_by_key(request.sender_id, request.idempotency_key)
                    if prior is not None:
                        return _replay(prior, request)
                raise errors.InsufficientBalance()
            await uow.commit()
            return dataclasses.replace(draft, sender_balance_after=charged)


def _replay(prior: PriorSuperlike, request: SuperlikeRequest) -> Superlike:
    if prior.superlike.stream_id != request.stream_id:
        raise errors.IdempotencyKeyReused()
    return prior.superlike
