"""The live feed as Server-Sent Events (the text/event-stream format), chunk by chunk.

Rendered once however many subscribers receive it: each superlike (its cursor sealed and its JSON
written once, a small cache by superlike), and each chunk's HttpBody message (a small cache by the
stream's positions it spans: a stream's superlikes never change, so the same span is the same bytes),
which every subscriber of that tick is then written as it is.
"""

from __future__ import annotations

import functools
import json
import random
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from google.api import httpbody_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from server.api.history_messages import posted_superlike
from server.domain.clock import format_timestamp, now_ms
from server.domain.history import PostedSuperlike
from server.domain.positions import PositionSeal
from server.services.feed import cursor_of

CONTENT_TYPE = "text/event-stream"
# What an EventSource waits before reconnecting after the stream ends (ms), give or take
# RETRY_SPREAD_MS: each stream is told its own delay, so the subscribers of a replica that went away
# do not all reach the next one in the same instant.
RETRY_MS = 1000
RETRY_SPREAD_MS = 250
PING = b": ping\n\n"

_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def message_json(message: Message) -> dict[str, Any]:
    """A message as Envoy's transcoder prints it with the edge's options: every field in field
    order under its json_name, defaults included, 64-bit integers as strings. (MessageToDict
    appends unset fields after the set ones, so its key order differs.) Covers the scalar and
    nested-message fields the feed's messages have."""
    rendered: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            value = message_json(value)
        elif field.type in _INT64_TYPES:
            value = str(value)
        rendered[field.json_name] = value
    return rendered


def opening(retry_ms: int) -> bytes:
    """The first message of every event stream: it carries the response headers, and the delay."""
    return f"retry: {retry_ms}\n\n".encode()


def spread_retry_ms() -> int:
    return RETRY_MS + random.randint(-RETRY_SPREAD_MS, RETRY_SPREAD_MS)


class EventRenderer:
    def __init__(self, seal: PositionSeal, cache_size: int = 4096, bodies_cached: int = 64) -> None:
        self._seal = seal
        self._event = functools.lru_cache(maxsize=cache_size)(self._render)
        self._bodies: OrderedDict[tuple[str, int, int], httpbody_pb2.HttpBody] = OrderedDict()
        self._bodies_cached = bodies_cached

    def chunk(self, superlikes: Sequence[PostedSuperlike]) -> bytes:
        """One chunk holding every superlike given, in order."""
        return b"".join(self._event(superlike) for superlike in superlikes)

    def body(self, superlikes: Sequence[PostedSuperlike]) -> httpbody_pb2.HttpBody:
        """The message holding these superlikes' events: consecutive superlikes of one stream, as a
        subscription hands them over (feed_subscription.py), so their first and last positions name
        them. Built once per tick, then written to every subscriber as it is."""
        key = (superlikes[0].stream_id, superlikes[0].position, superlikes[-1].position)
        body = self._bodies.get(key)
        if body is None:
            body = self._bodies[key] = httpbody_pb2.HttpBody(data=self.chunk(superlikes))
            if len(self._bodies) > self._bodies_cached:
                self._bodies.popitem(last=False)
        return body

    def _render(self, superlike: PostedSuperlike) -> bytes:
        data = json.dumps(message_json(posted_superlike(superlike)), separators=(",", ":"), ensure_ascii=False)
        cursor = cursor_of(self._seal, superlike)
        return f"id: {cursor}\nevent: superlike\ndata: {data}\n\n".encode()


def error_event(status: int, message: str) -> bytes:
    """After the first chunk the HTTP status is sent: an error travels as an event holding the
    public error envelope, and the stream then ends."""
    envelope = {
        "isSuccess": False,
        "statusCode": status,
        "data": None,
        "errors": [message],
        "timestamp": format_timestamp(now_ms()),
    }
    return f"event: error\ndata: {json.dumps(envelope, separators=(',', ':'))}\n\n".encode()
