"""The LiveStreamChat gRPC servicer: transport in, use case, transport out."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.api import history_messages
from server.api.caller import authenticated_subject, idempotency_key_of
from server.api.feed_streams import FeedStreams
from server.api.rpc_observer import finish_call, note_refusal
from server.api.status_codes import status_code_of, status_of
from server.auth.tokens import TokenVerifier
from server.domain.clock import format_timestamp
from server.domain.errors import DomainError, Internal, StorageUnavailable
from server.domain.superlike import Superlike
from server.services.feed import FeedService
from server.services.history import HistoryService
from server.services.superlikes import SuperlikeService

log = logging.getLogger(__name__)

Response = TypeVar("Response")
UnaryMethod = Callable[["LiveStreamChatServicer", Any, grpc.aio.ServicerContext], Awaitable[Response]]


def _refusing_on_error(method: UnaryMethod[Response]) -> UnaryMethod[Response]:
    """A unary method whose every failure ends the call through LiveStreamChatServicer._refuse."""

    @functools.wraps(method)
    async def refusing(self: LiveStreamChatServicer, request: Any, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await method(self, request, context)
        except Exception as error:
            await self._refuse(context, method.__name__, error)
        raise AssertionError("context.abort always raises")

    return refusing


class LiveStreamChatServicer(chat_grpc.LiveStreamChatServicer):
    def __init__(
        self,
        superlikes: SuperlikeService,
        history: HistoryService,
        verifier: TokenVerifier,
        on_storage_unavailable: Callable[[], None] | None = None,
        *,
        feed: FeedService,
        feed_ping_seconds: float = 15.0,
    ) -> None:
        self._superlikes = superlikes
        self._history = history
        self._verifier = verifier
        self._on_storage_unavailable = on_storage_unavailable
        self._feed = FeedStreams(feed, verifier, self._refuse, ping_seconds=feed_ping_seconds)

    @_refusing_on_error
    async def SendSuperlike(  # noqa: N802 (generated name)
        self, request: chat_pb2.SendSuperlikeRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.SendSuperlikeResponse:
        sender_id = await authenticated_subject(context, self._verifier)
        key = idempotency_key_of(request.request_id, context)
        superlike = await self._superlikes.send(request.stream_id, sender_id, key)
        return to_response(superlike)

    @_refusing_on_error
    async def ListSuperlikes(  # noqa: N802 (generated name)
        self, request: chat_pb2.ListSuperlikesRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ListSuperlikesResponse:
        await authenticated_subject(context, self._verifier)  # any signed-in user may read
        page, next_token = await self._history.list_superlikes(request.stream_id, request.page_size, request.page_token)
        return chat_pb2.ListSuperlikesResponse(
            superlikes=[history_messages.posted_superlike(superlike) for superlike in page.superlikes],
            next_page_token=next_token,
        )

    @_refusing_on_error
    async def ListTopSupporters(  # noqa: N802 (generated name)
        self, request: chat_pb2.ListTopSupportersRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ListTopSupportersResponse:
        await authenticated_subject(context, self._verifier)
        supporters = await self._history.top_supporters(request.stream_id, request.limit)
        return chat_pb2.ListTopSupportersResponse(
            supporters=[history_messages.top_supporter(supporter) for supporter in supporters]
        )

    async def StreamSuperlikes(  # noqa: N802 (generated name)
        self, request: chat_pb2.StreamSuperlikesRequest, context: grpc.aio.ServicerContext
    ) -> None:
        await self._feed.stream_superlikes(request, context)

    async def StreamSuperlikeEvents(  # noqa: N802 (generated name)
        self, request: chat_pb2.StreamSuperlikeEventsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        await self._feed.stream_superlike_events(request, context)

    async def _refuse(self, context: grpc.aio.ServicerContext, method: str, error: Exception) -> None:
        """Ends the call with the error's status; raises (context.abort does)."""
        if isinstance(error, DomainError):
            note_refusal(status_code_of(error), error.reason)
            if isinstance(error, StorageUnavailable) and self._on_storage_unavailable is not None:
                self._on_storage_unavailable()
            finish_call()  # the call's line is written before the caller has the status
            await context.abort_with_status(status_of(error))
        # The client learns nothing of the failure; the log gets everything.
        log.error("%s failed unexpectedly", method, exc_info=error)
        note_refusal(grpc.StatusCode.INTERNAL, Internal.reason)
        finish_call()
        await context.abort_with_status(status_of(Internal()))


def to_response(superlike: Superlike) -> chat_pb2.SendSuperlikeResponse:
    sender = superlike.sender
    return chat_pb2.SendSuperlikeResponse(
        stream_id=superlike.stream_id,
        sender_id=sender.user_id,
        sender_snapshot=history_messages.sender_snapshot(sender),
        price=superlike.price,
        timestamp=format_timestamp(superlike.created_at_ms),
        superlike_id=superlike.superlike_id,
        sender_balance=superlike.sender_balance_after,
    )
