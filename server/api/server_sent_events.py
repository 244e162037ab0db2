"""The live feed as Server-Sent Events (the text/event-stream format), chunk by chunk.

Each superlike is rendered once however many subscribers receive it (a small cache by superlike id):
its cursor is sealed and its JSON written once, then the same bytes go to every subscriber.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from server.api.history_messages import posted_superlike
from server.domain.clock import format_timestamp, now_ms
from server.domain.history import PostedSuperlike
from server.domain.positions import PositionSeal
from server.services.feed import cursor_of

CONTENT_TYPE = "text/event-stream"
# What an EventSource waits before reconnecting after the stream ends (ms).
RETRY_MS = 1000
OPENING = f"retry: {RETRY_MS}\n\n".encode()
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


class EventRenderer:
    def __init__(self, seal: PositionSeal, cache_size: int = 4096) -> None:
        self._seal = seal
        self._event = functools.lru_cache(maxsize=cache_size)(self._render)

    def chunk(self, superlikes: list[PostedSuperlike] | tuple[PostedSuperlike, ...]) -> bytes:
        """One chunk holding every superlike given, in order."""
        return b"".join(self._event(superlike) for superlike in superlikes)

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
