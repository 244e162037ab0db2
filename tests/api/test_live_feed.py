"""StreamSuperlikes and StreamSuperlikeEvents through a real gRPC channel to the production-wired
server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.api import httpbody_pb2

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.app import RunningServer, start_server
from server.config import load_settings
from tests.api.conftest import Api, error_of
from tests.conftest import SigningKeys, server_env
from tests.support import claims_for, create_stream, create_user, migrated_storage, sign

UNKNOWN_STREAM = "64d15f9e2e6c8f4d5a1230ff"


async def _stream_with_viewers(api: Api, viewers: int) -> tuple[str, list[str], str]:
    host = await create_user(api.storage)
    stream = (await create_stream(api.storage, host["id"], price=10))["id"]
    senders = [(await create_user(api.storage, coins=1000))["id"] for _ in range(viewers)]
    return stream, senders, api.token_for(senders[0])


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _subscribe(api: Api, stream: str, token: str, after: str = "") -> grpc.aio.UnaryStreamCall:
    call = api.stub.StreamSuperlikes(
        chat_pb2.StreamSuperlikesRequest(stream_id=stream, after=after), metadata=_auth(token)
    )
    await asyncio.wait_for(call.initial_metadata(), 10)  # subscribed: everything from now on arrives
    return call


async def _take(call: grpc.aio.UnaryStreamCall, count: int) -> list[chat_pb2.StreamSuperlikesResponse]:
    return [await asyncio.wait_for(call.read(), 10) for _ in range(count)]


async def test_a_subscriber_receives_every_new_superlike_once_in_order(api: Api) -> None:
    stream, viewers, token = await _stream_with_viewers(api, 3)
    earlier = await api.send(stream, api.token_for(viewers[0]))  # before subscribing: not delivered
    call = await _subscribe(api, stream, token)
    sent = [await api.send(stream, api.token_for(viewer)) for viewer in viewers]

    events = await _take(call, 3)
    call.cancel()

    assert [event.superlike.superlike_id for event in events] == [response.superlike_id for response in sent]
    assert earlier.superlike_id not in {event.superlike.superlike_id for event in events}
    first, response = events[0].superlike, sent[0]
    assert (first.stream_id, first.sender_id, first.price, first.timestamp) == (
        response.stream_id,
        response.sender_id,
        10,
        response.timestamp,
    )
    assert first.sender_snapshot == response.sender_snapshot
    assert len({event.cursor for event in events}) == 3


async def test_resuming_after_a_cursor_replays_what_was_missed_then_continues_live(api: Api) -> None:
    stream, viewers, token = await _stream_with_viewers(api, 4)
    call = await _subscribe(api, stream, token)
    sent = [await api.send(stream, api.token_for(viewers[0]))]
    [first] = await _take(call, 1)
    call.cancel()
    # While away: two more.
    sent += [await api.send(stream, api.token_for(viewer)) for viewer in viewers[1:3]]

    resumed = await _subscribe(api, stream, token, after=first.cursor)
    sent.append(await api.send(stream, api.token_for(viewers[3])))
    events = await _take(resumed, 3)
    resumed.cancel()

    assert [event.superlike.superlike_id for event in [first, *events]] == [s.superlike_id for s in sent]


async def test_concurrent_senders_reach_two_subscribers_in_one_order(api: Api) -> None:
    stream, viewers, token = await _stream_with_viewers(api, 12)
    calls = [await _subscribe(api, stream, token) for _ in range(2)]
    sent = await asyncio.gather(*(api.send(stream, api.token_for(viewer)) for viewer in viewers))

    received = [[event.superlike.superlike_id for event in await _take(call, 12)] for call in calls]
    for call in calls:
        call.cancel()
    listed = await api.stub.ListSuperlikes(
        chat_pb2.ListSuperlikesRequest(stream_id=stream, page_size=20), metadata=_auth(token), timeout=10
    )

    history_order = [item.superlike_id for item in reversed(listed.superlikes)]
    assert received[0] == received[1] == history_order
    assert sorted(history_order) == sorted(response.superlike_id for response in sent)


@pytest.mark.parametrize(
    ("stream", "after", "expected"),
    [
        (
            "not-a-stream",
            "",
            (grpc.StatusCode.INVALID_ARGUMENT, "streamId must be a 24-character hex id", "INVALID_STREAM_ID"),
        ),
        (UNKNOWN_STREAM, "", (grpc.StatusCode.NOT_FOUND, "Live stream not found", "STREAM_NOT_FOUND")),
        (
            None,
            "forged",
            (
                grpc.StatusCode.INVALID_ARGUMENT,
                "after is not a cursor this feed sent for this stream",
                "INVALID_CURSOR",
            ),
        ),
    ],
)
async def test_a_refused_subscription_ends_before_any_event(
    api: Api, stream: str | None, after: str, expected: tuple[grpc.StatusCode, str, str]
) -> None:
    real_stream, _, token = await _stream_with_viewers(api, 1)
    call = api.stub.StreamSuperlikes(
        chat_pb2.StreamSuperlikesRequest(stream_id=stream or real_stream, after=after), metadata=_auth(token)
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await asyncio.wait_for(call.read(), 10)
    assert error_of(raised.value) == expected


async def test_a_cursor_of_another_stream_is_refused(api: Api) -> None:
    stream, viewers, token = await _stream_with_viewers(api, 1)
    other, _, _ = await _stream_with_viewers(api, 1)
    call = await _subscribe(api, stream, token)
    await api.send(stream, api.token_for(viewers[0]))
    [event] = await _take(call, 1)
    call.cancel()

    wrong = api.stub.StreamSuperlikes(
        chat_pb2.StreamSuperlikesRequest(stream_id=other, after=event.cursor), metadata=_auth(token)
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await asyncio.wait_for(wrong.read(), 10)
    assert error_of(raised.value)[2] == "INVALID_CURSOR"


async def test_a_subscription_without_a_token_is_refused(api: Api) -> None:
    stream, _, _ = await _stream_with_viewers(api, 1)
    call = api.stub.StreamSuperlikes(chat_pb2.StreamSuperlikesRequest(stream_id=stream))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await asyncio.wait_for(call.read(), 10)
    assert error_of(raised.value) == (grpc.StatusCode.UNAUTHENTICATED, "Authentication required", "UNAUTHENTICATED")


# --- StreamSuperlikeEvents: the Server-Sent Events stream, as Envoy's transcoder receives it -------


def _events(call_chunks: list[httpbody_pb2.HttpBody]) -> list[tuple[str, str, dict]]:
    """(id, event, data) of every event in the chunks' text."""
    text = b"".join(chunk.data for chunk in call_chunks).decode()
    parsed = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "event" in fields:
            parsed.append((fields["id"], fields["event"], json.loads(fields["data"])))
    return parsed


async def test_event_stream_opens_at_once_then_sends_the_backlog_in_one_chunk(api: Api) -> None:
    stream, viewers, token = await _stream_with_viewers(api, 3)
    sent = [await api.send(stream, api.token_for(viewer)) for viewer in viewers]
    call = api.stub.StreamSuperlikeEvents(
        chat_pb2.StreamSuperlikeEventsRequest(stream_id=stream, backlog=2), metadata=_auth(token)
    )
    opening = await asyncio.wait_for(call.read(), 10)
    backlog = await asyncio.wait_for(call.read(), 10)
    call.cancel()

    assert opening.content_type == "text/event-stream"
    retry = re.fullmatch(rb"retry: (\d+)\n\n", opening.data)
    assert retry is not None and int(retry[1]) in range(750, 1251)  # each stream a delay of its own
    events = _events([backlog])
    assert [(event, data["superlikeId"]) for _, event, data in events] == [
        ("superlike", sent[1].superlike_id),
        ("superlike", sent[2].superlike_id),
    ]
    assert events[1][2] == {
        "streamId": stream,
        "senderId": viewers[2],
        "senderSnapshot": {
            "_id": viewers[2],
            "username": sent[2].sender_snapshot.username,
            "name": sent[2].sender_snapshot.name,
            "surname": sent[2].sender_snapshot.surname,
            "profilePhoto": sent[2].sender_snapshot.profile_photo,
        },
        "price": 10,
        "timestamp": sent[2].timestamp,
        "superlikeId": sent[2].superlike_id,
    }


async def test_last_event_id_wins_over_after_and_backlog(api: Api) -> None:
    stream, viewers, token = await _stream_with_viewers(api, 3)
    call = api.stub.StreamSuperlikeEvents(
        chat_pb2.StreamSuperlikeEventsRequest(stream_id=stream, backlog=0), metadata=_auth(token)
    )
    await asyncio.wait_for(call.read(), 10)
    sent = [await api.send(stream, api.token_for(viewer)) for viewer in viewers]
    seen: list[tuple[str, str, dict]] = []
    while len(seen) < 3:
        seen += _events([await asyncio.wait_for(call.read(), 10)])
    call.cancel()
    first_id = seen[0][0]

    resumed = api.stub.StreamSuperlikeEvents(
        chat_pb2.StreamSuperlikeEventsRequest(stream_id=stream, after=seen[2][0], backlog=3),
        metadata=(*_auth(token), ("last-event-id", first_id)),
    )
    await asyncio.wait_for(resumed.read(), 10)
    replay: list[tuple[str, str, dict]] = []
    while len(replay) < 2:
        replay += _events([await asyncio.wait_for(resumed.read(), 10)])
    resumed.cancel()

    assert [data["superlikeId"] for _, _, data in replay] == [s.superlike_id for s in sent[1:]]
    assert [event_id for event_id, _, _ in replay] == [event_id for event_id, _, _ in seen[1:]]


@pytest.mark.parametrize(
    ("request_fields", "metadata", "expected"),
    [
        ({"backlog": 101}, (), (grpc.StatusCode.INVALID_ARGUMENT, "backlog must be from 0 to 100", "INVALID_BACKLOG")),
        ({"backlog": -1}, (), (grpc.StatusCode.INVALID_ARGUMENT, "backlog must be from 0 to 100", "INVALID_BACKLOG")),
        (
            {},
            (("last-event-id", "x" * 500),),
            (
                grpc.StatusCode.INVALID_ARGUMENT,
                "after is not a cursor this feed sent for this stream",
                "INVALID_CURSOR",
            ),
        ),
    ],
)
async def test_a_refused_event_stream_sends_nothing_but_its_status(
    api: Api, request_fields: dict, metadata: tuple[tuple[str, str], ...], expected: tuple[grpc.StatusCode, str, str]
) -> None:
    stream, _, token = await _stream_with_viewers(api, 1)
    call = api.stub.StreamSuperlikeEvents(
        chat_pb2.StreamSuperlikeEventsRequest(stream_id=stream, **request_fields), metadata=(*_auth(token), *metadata)
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await asyncio.wait_for(call.read(), 10)
    assert error_of(raised.value) == expected


# --- A server of its own (SQLite): pings and shutdown ---------------------------------------------


@dataclass
class OwnServer:
    running: RunningServer
    stub: chat_grpc.LiveStreamChatStub
    stream: str
    token: str
    stopped: bool = False


@contextlib.asynccontextmanager
async def _own_server(tmp_path: Path, signing_keys: SigningKeys, **env: str) -> AsyncIterator[OwnServer]:
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    async with migrated_storage(url) as storage:
        host = await create_user(storage)
        viewer = await create_user(storage, coins=100)
        stream = (await create_stream(storage, host["id"], price=10))["id"]
        running = await start_server(load_settings({**server_env(url, signing_keys.jwks_path), **env}))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        token = sign(claims_for(viewer["id"]), signing_keys.rsa_private)
        own = OwnServer(running, chat_grpc.LiveStreamChatStub(channel), stream, token)
        try:
            yield own
        finally:
            await channel.close()
            if not own.stopped:
                await running.stop(1)


async def test_an_idle_event_stream_gets_a_ping_comment(tmp_path: Path, signing_keys: SigningKeys) -> None:
    async with _own_server(tmp_path, signing_keys, LIVECHAT_FEED_PING_SECONDS="0.2") as own:
        call = own.stub.StreamSuperlikeEvents(
            chat_pb2.StreamSuperlikeEventsRequest(stream_id=own.stream), metadata=_auth(own.token)
        )
        await asyncio.wait_for(call.read(), 10)
        ping = await asyncio.wait_for(call.read(), 5)
        call.cancel()
        assert ping.data == b": ping\n\n"


async def test_shutdown_ends_both_kinds_of_stream_so_clients_reconnect(
    tmp_path: Path, signing_keys: SigningKeys
) -> None:
    async with _own_server(tmp_path, signing_keys) as own:
        stream, token = own.stream, own.token
        grpc_call = own.stub.StreamSuperlikes(chat_pb2.StreamSuperlikesRequest(stream_id=stream), metadata=_auth(token))
        await asyncio.wait_for(grpc_call.initial_metadata(), 10)
        sse_call = own.stub.StreamSuperlikeEvents(
            chat_pb2.StreamSuperlikeEventsRequest(stream_id=stream), metadata=_auth(token)
        )
        await asyncio.wait_for(sse_call.read(), 10)

        own.stopped = True
        stopping = asyncio.create_task(own.running.stop(5))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await asyncio.wait_for(grpc_call.read(), 5)
        error_chunk = await asyncio.wait_for(sse_call.read(), 5)
        end = await asyncio.wait_for(sse_call.read(), 5)
        await asyncio.wait_for(stopping, 5)

        assert error_of(raised.value) == (
            grpc.StatusCode.UNAVAILABLE,
            "The live feed was interrupted; reconnect with the last event id",
            "FEED_INTERRUPTED",
        )
        head, _, data = error_chunk.data.decode().partition("data: ")
        assert head == "event: error\n"
        envelope = json.loads(data)
        assert {key: envelope[key] for key in ("isSuccess", "statusCode", "data", "errors")} == {
            "isSuccess": False,
            "statusCode": 503,
            "data": None,
            "errors": ["The live feed was interrupted; reconnect with the last event id"],
        }
        assert end is grpc.aio.EOF
