"""The SendSuperlike use case: validate, charge exactly once through the one write call, answer."""

from __future__ import annotations

from collections.abc import Callable

from server.domain import errors
from server.domain.clock import now_ms
from server.domain.ids import new_object_id
from server.domain.send_outcome import Charged, Contended, Refused, Replayed
from server.domain.superlike import Superlike, SuperlikeRequest, parse_request
from server.services.ports import SuperlikeWriter

# A second attempt happens only when a concurrent writer changed what the first one read (see
# Contended); it reads again and replays, refuses or charges on what it finds.
MAX_ATTEMPTS = 2


class SuperlikeService:
    def __init__(self, superlikes: SuperlikeWriter, clock: Callable[[], int] = now_ms) -> None:
        self._superlikes = superlikes
        self._clock = clock

    async def send(self, stream_id: str, sender_id: str, idempotency_key: str | None) -> Superlike:
        request = parse_request(stream_id, sender_id, idempotency_key)
        for _ in range(MAX_ATTEMPTS):
            created_at_ms = self._clock()
            outcome = await self._superlikes.send(request, new_object_id(created_at_ms), created_at_ms)
            match outcome:
                case Charged(superlike):
                    return superlike
                case Replayed(prior):
                    return _replay(prior, request)
                case Refused():
                    raise outcome.error()
                case Contended():
                    continue
        raise RuntimeError(f"superlike still contended after {MAX_ATTEMPTS} attempts")


def _replay(prior: Superlike, request: SuperlikeRequest) -> Superlike:
    if prior.stream_id != request.stream_id:
        raise errors.IdempotencyKeyReused()
    return prior
