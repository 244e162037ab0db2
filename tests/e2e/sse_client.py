"""A raw Server-Sent Events client for the e2e tests: one HTTP/1.1 GET, the status and headers as
sent, then the event stream parsed line by line as a browser's EventSource would (comments kept)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any


def events_path(stream_id: str, query: str = "") -> str:
    return f"/api/v1/live-stream/{stream_id}/chat/superlikes/events" + (f"?{query}" if query else "")


@dataclass
class Event:
    event: str = "message"
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data, object_pairs_hook=list)


class EventStream:
    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None, timeout_s: float = 15.0) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        self._connection.request("GET", path, headers=headers or {})
        self._response = self._connection.getresponse()
        self.status = self._response.status
        self.headers = {name.lower(): value for name, value in self._response.getheaders()}

    def body(self) -> bytes:
        """The whole body of a response that is not an event stream (an error envelope)."""
        return self._response.read()

    def next(self) -> Event | None:
        """The next dispatched block (an event, a comment or a retry field); None at the end."""
        block = Event()
        seen_any = False
        while True:
            line = self._response.readline()
            if not line:
                return block if seen_any else None
            text = line.decode().rstrip("\n")
            if text == "":
                if seen_any:
                    return block
                continue
            seen_any = True
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                block.comments.append(value)
            elif name == "event":
                block.event = value
            elif name == "id":
                block.id = value
            elif name == "data":
                block.data = f"{block.data}\n{value}" if block.data else value
            elif name == "retry":
                block.retry = int(value)

    def superlikes(self, count: int) -> list[Event]:
        """The next `count` superlike events, skipping comments."""
        events: list[Event] = []
        while len(events) < count:
            event = self.next()
            assert event is not None, f"the stream ended after {len(events)} of {count} superlikes"
            if event.event == "superlike":
                events.append(event)
            else:
                assert event.event == "message" and event.data == "", f"unexpected event {event}"
        return events

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
