"""The LiveStreamChat gRPC servicer: transport in, use case, transport out."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.api.caller import authenticated_subject, idempotency_key_of
from server.api.status_codes import status_of
from server.auth.tokens import TokenVerifier
from server.domain.clock import format_timestamp
from server.domain.errors import DomainError, Internal, StorageUnavailable
from server.domain.superlike import Superlike
from server.services.superlikes import SuperlikeService

log = logging.getLogger(__name__)


class LiveStreamChatServicer(chat_grpc.LiveStreamChatServicer):
    def __init__(
        self,
        superlikes: SuperlikeService,
        verifier: TokenVerifier,
        on_storage_unavailable: Callable[[], None] | None = None,
    ) -> None:
        self._superlikes = superlikes
        self._verifier = verifier
        self._on_storage_unavailable = on_storage_unavailable

    async def SendSuperlike(  # noqa: N802 (generated name)
        self, request: chat_pb2.SendSuperlikeRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.SendSuperlikeResponse:
        try:
            sender_id = await authenticated_subject(context, self._verifier)
            key = idempotency_key_of(request.request_id, context)
            superlike = await self._superlikes.send(request.stream_id, sender_id, key)
            return to_response(superlike)
        except DomainError as error:
            if isinstance(error, StorageUnavailable) and self._on_storage_unavailable is not None:
                self._on_storage_unavailable()
            await context.abort_with_status(status_of(error))
        except Exception:
            # The client learns nothing of the failure; the log gets everything.
            log.exception("SendSuperlike failed unexpectedly")
            await context.abort_with_status(status_of(Internal()))
        raise AssertionError("context.abort always raises")


def to_response(superlike: Superlike) -> chat_pb2.SendSuperlikeResponse:
    sender = superlike.sender
    return chat_pb2.SendSuperlikeResponse(
        stream_id=superlike.stream_id,
        sender_id=sender.user_id,
        sender_snapshot=chat_pb2.SenderSnapshot(
            id=sender.user_id,
            username=sender.username,
            name=sender.name,
            surname=sender.surname,
            profile_photo=sender.profile_photo,
        ),
        price=superlike.price,
        timestamp=format_timestamp(superlike.created_at_ms),
        superlike_id=superlike.superlike_id,
        sender_balance=superlike.sender_balance_after,
    )
