"""The live feed through the real Envoy: Server-Sent Events over plain HTTP/1.1 (resume by
Last-Event-ID and ?after=, backlog, ?access_token= kept out of the logs, errors as the envelope),
grpcurl on StreamSuperlikes, and a stalled client that holds nobody up."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import Edge
from tests.e2e.credentials import bearer_header
from tests.e2e.http_client import assert_envelope, request, superlike_path
from tests.e2e.sse_client import EventStream, events_path
from tests.support import build_world, create_user

# The server tells each event stream its own reconnect delay, 1 s give or take 250 ms.
RECONNECT_DELAYS_MS = range(750, 1251)

pytestmark = pytest.mark.e2e

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
UNKNOWN_STREAM = "64d15f9e2e6c8f4d5a1230ff"


def send_rest(edge: Edge, stream_id: str, user_id: str) -> dict:
    response = request(
        edge.http_port,
        "POST",
        superlike_path(stream_id),
        headers={**bearer_header(edge.token_for(user_id)), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status == 200, response.body
    return response.json()


def history_items(edge: Edge, stream_id: str, token: str) -> list[list]:
    """ListSuperlikes over REST, oldest first, each item with its keys in the order rendered."""
    response = request(
        edge.http_port, "GET", f"/api/v1/live-stream/{stream_id}/chat/superlikes", headers=bearer_header(token)
    )
    assert response.status == 200, response.body
    page = dict(json.loads(response.body, object_pairs_hook=list))
    return list(reversed(page["superlikes"]))


async def _viewers(edge: Edge, count: int) -> tuple[str, list[str]]:
    world = await build_world(edge.storage, coins=1000)
    others = [(await create_user(edge.storage, coins=1000))["id"] for _ in range(count - 1)]
    return world.stream_id, [world.viewer_id, *others]


async def test_sse_delivers_each_superlike_as_the_history_renders_it_and_resumes_by_last_event_id(edge: Edge) -> None:
    stream, viewers = await _viewers(edge, 3)
    token = edge.token_for(viewers[0])
    with EventStream(edge.http_port, events_path(stream), bearer_header(token)) as feed:
        assert feed.status == 200
        assert feed.headers["content-type"] == "text/event-stream"
        # Headers and the retry field (a delay of its own for each stream) arrive before any superlike.
        assert feed.next().retry in RECONNECT_DELAYS_MS
        sent = [send_rest(edge, stream, viewer) for viewer in viewers]
        events = feed.superlikes(3)

    assert [event.json() for event in events] == history_items(edge, stream, token)
    assert [dict(event.json())["superlikeId"] for event in events] == [s["superlikeId"] for s in sent]

    # Reconnect as EventSource does, with the id of the first: the other two, once each, then live.
    resume = {**bearer_header(token), "Last-Event-ID": events[0].id}
    with EventStream(edge.http_port, events_path(stream), resume) as feed:
        assert feed.next().retry in RECONNECT_DELAYS_MS
        replayed = feed.superlikes(2)
        later = send_rest(edge, stream, viewers[0])
        [live] = feed.superlikes(1)
    assert [e.id for e in replayed] == [e.id for e in events[1:]]
    assert dict(live.json())["superlikeId"] == later["superlikeId"]


async def test_sse_with_access_token_after_and_backlog_and_the_token_is_never_logged(edge: Edge) -> None:
    stream, viewers = await _viewers(edge, 4)
    token = edge.token_for(viewers[0])
    sent = [send_rest(edge, stream, viewer) for viewer in viewers]

    with EventStream(edge.http_port, events_path(stream, f"backlog=2&access_token={token}")) as feed:
        assert feed.status == 200
        feed.next()
        backlog = feed.superlikes(2)
    with EventStream(edge.http_port, events_path(stream, f"after={backlog[0].id}&access_token={token}")) as feed:
        feed.next()
        [after] = feed.superlikes(1)
    # Only the route's own parameters pass: ?streamId= cannot pick another stream, it is refused.
    other, _ = await _viewers(edge, 1)
    with EventStream(edge.http_port, events_path(stream, f"backlog=1&streamId={other}"), bearer_header(token)) as feed:
        refused = type("R", (), {"status": feed.status, "headers": feed.headers, "body": feed.body()})
    assert_envelope(
        refused,
        400,  # type: ignore[arg-type]
        "Query parameters must be ones this route defines, each at most once, with valid values",
    )

    assert [dict(e.json())["superlikeId"] for e in backlog] == [s["superlikeId"] for s in sent[2:]]
    assert dict(after.json())["superlikeId"] == sent[3]["superlikeId"]
    logged = f'"path":"/api/v1/live-stream/{stream}/chat/superlikes/events"'  # the JSON access log
    for _ in range(50):  # Envoy writes the access log asynchronously, when each stream has ended
        if edge.stack.envoy_log.read_text().count(logged) >= 2:
            break
        await asyncio.sleep(0.1)
    logs = edge.stack.envoy_log.read_text() + edge.stack.server_log.read_text()
    assert token not in logs
    assert token.split(".")[2] not in logs  # not even the signature
    assert edge.stack.envoy_log.read_text().count(logged) >= 2  # logged, without the query


@pytest.mark.parametrize(
    ("query", "auth", "status", "message"),
    [
        ("", False, 401, "Authentication required"),
        ("access_token=not-a-jwt", False, 401, "Authentication required"),
        ("after=forged", True, 400, "after is not a cursor this feed sent for this stream"),
        ("backlog=101", True, 400, "backlog must be from 0 to 100"),
    ],
)
async def test_sse_refusals_before_the_first_event_are_the_envelope(
    edge: Edge, query: str, auth: bool, status: int, message: str
) -> None:
    stream, viewers = await _viewers(edge, 1)
    headers = bearer_header(edge.token_for(viewers[0])) if auth else {}
    with EventStream(edge.http_port, events_path(stream, query), headers) as feed:
        response = type("R", (), {"status": feed.status, "headers": feed.headers, "body": feed.body()})
    assert_envelope(response, status, message)  # type: ignore[arg-type]


async def test_sse_for_an_unknown_stream_is_404(edge: Edge) -> None:
    _, viewers = await _viewers(edge, 1)
    with EventStream(edge.http_port, events_path(UNKNOWN_STREAM), bearer_header(edge.token_for(viewers[0]))) as feed:
        response = type("R", (), {"status": feed.status, "headers": feed.headers, "body": feed.body()})
    assert_envelope(response, 404, "Live stream not found")  # type: ignore[arg-type]


async def test_grpcurl_follows_the_stream_through_envoy(edge: Edge) -> None:
    stream, viewers = await _viewers(edge, 2)
    token = edge.token_for(viewers[0])
    follower = subprocess.Popen(
        [
            GRPCURL,
            "-plaintext",
            "-max-time",
            "8",
            "-H",
            f"authorization: Bearer {token}",
            "-d",
            json.dumps({"stream_id": stream}),
            f"127.0.0.1:{edge.http_port}",
            "allmine.livestream.chat.v1.LiveStreamChat/StreamSuperlikes",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    await asyncio.sleep(2)  # grpcurl resolves the method by reflection, then subscribes
    sent = [send_rest(edge, stream, viewer) for viewer in viewers]
    stdout, stderr = follower.communicate(timeout=20)

    decoder, received, position = json.JSONDecoder(), [], 0
    while stdout[position:].strip():
        document, position = decoder.raw_decode(stdout, len(stdout) - len(stdout[position:].lstrip()))
        received.append(document)
    assert [item["superlike"]["superlike_id"] for item in received] == [s["superlikeId"] for s in sent]
    assert all(item["cursor"] for item in received)
    assert "DeadlineExceeded" in stderr  # ended by -max-time, not by the server


async def test_a_stalled_sse_client_holds_up_no_one(edge: Edge) -> None:
    stream, viewers = await _viewers(edge, 10)
    token = edge.token_for(viewers[0])
    # A client that connects and never reads, with the smallest receive buffer the kernel allows.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stalled.connect(("127.0.0.1", edge.http_port))
    stalled.sendall(
        f"GET {events_path(stream, 'backlog=0')} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    try:
        with EventStream(edge.http_port, events_path(stream), bearer_header(token)) as feed:
            feed.next()
            sent = await asyncio.gather(
                *(asyncio.to_thread(send_rest, edge, stream, viewer) for viewer in viewers for _ in range(5))
            )
            received = feed.superlikes(len(sent))
    finally:
        stalled.close()
    assert sorted(dict(e.json())["superlikeId"] for e in received) == sorted(s["superlikeId"] for s in sent)
    assert [e.json() for e in received] == history_items(edge, stream, token)[-len(sent) :]
