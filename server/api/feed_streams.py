"""The live feed's two server-streaming methods: StreamSuperlikes (gRPC messages) and
StreamSuperlikeEvents (Server-Sent Events in HttpBody chunks, for Envoy's transcoder).

Both validate everything before sending anything, so a refusal is an ordinary status (the usual
envelope over HTTP). After that a failure is the status in the trailers (gRPC), or an `event: error`
written before the stream ends (HTTP clients see no trailers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc
from google.api import httpbody_pb2

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from server.api import server_sent_events as sse
from server.api.caller import authenticated_subject, last_event_id_of
from server.api.history_messages import posted_superlike
from server.api.status_codes import HTTP_STATUS_OF_CODE, status_code_of
from server.auth.tokens import TokenVerifier
from server.domain.errors import DomainError, Internal
from server.services.feed import FeedService, cursor_of

log = logging.getLogger(__name__)

Refuse = Callable[[grpc.aio.ServicerContext, str, Exception], Awaitable[None]]


class FeedStreams:
    def __init__(
        self, feed: FeedService, verifier: TokenVerifier, refuse: Refuse, *, ping_seconds: float = 15.0
    ) -> None:
        self._feed = feed
        self._verifier = verifier
        self._refuse = refuse
        self._ping_seconds = ping_seconds
        self._renderer: sse.EventRenderer | None = None
        self._ping = httpbody_pb2.HttpBody(data=sse.PING)

    async def stream_superlikes(
        self, request: chat_pb2.StreamSuperlikesRequest, context: grpc.aio.ServicerContext
    ) -> None:
        try:
            await authenticated_subject(context, self._verifier)
            subscription = await self._feed.subscribe(request.stream_id, request.after)
        except Exception as error:
            await self._refuse(context, "StreamSuperlikes", error)
            return
        try:
            seal = await self._feed.cursor_seal()
            await context.send_initial_metadata(())
            while True:
                for superlike in await subscription.next_chunk():
                    await context.write(
                        chat_pb2.StreamSuperlikesResponse(
                            superlike=posted_superlike(superlike), cursor=cursor_of(seal, superlike)
                        )
                    )
        except Exception as error:
            await self._refuse(context, "StreamSuperlikes", error)
        finally:
            subscription.close()

    async def stream_superlike_events(
        self, request: chat_pb2.StreamSuperlikeEventsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        try:
            await authenticated_subject(context, self._verifier)
            # An EventSource reconnecting sends the last id it saw: newer than the URL's `after`.
            cursor = last_event_id_of(context) or request.after
            subscription = await self._feed.subscribe(request.stream_id, cursor, request.backlog)
            renderer = await self._event_renderer()
        except Exception as error:
            await self._refuse(context, "StreamSuperlikeEvents", error)
            return
        try:
            # Response headers leave with the first message: send one now, not at the first superlike.
            opening = sse.opening(sse.spread_retry_ms())
            await context.write(httpbody_pb2.HttpBody(content_type=sse.CONTENT_TYPE, data=opening))
            while True:
                chunk = await subscription.next_chunk(self._ping_seconds)
                await context.write(renderer.body(chunk) if chunk else self._ping)
        except asyncio.CancelledError:
            raise  # the client went away
        except Exception as error:
            await self._end_with_error_event(context, error)
        finally:
            subscription.close()

    async def _event_renderer(self) -> sse.EventRenderer:
        if self._renderer is None:
            self._renderer = sse.EventRenderer(await self._feed.cursor_seal())
        return self._renderer

    async def _end_with_error_event(self, context: grpc.aio.ServicerContext, error: Exception) -> None:
        if not isinstance(error, DomainError):
            log.error("StreamSuperlikeEvents failed unexpectedly", exc_info=error)
            error = Internal()
        # The status the transcoder would have given it before the first chunk.
        status, message = HTTP_STATUS_OF_CODE[status_code_of(error)], error.message
        try:
            await context.write(httpbody_pb2.HttpBody(data=sse.error_event(status, message)))
        except Exception:  # noqa: BLE001 (the client may be gone already; nothing left to tell it)
            log.debug("could not write the error event", exc_info=True)
