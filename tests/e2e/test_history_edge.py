"""ListSuperlikes and ListTopSupporters through the real Envoy to the real server: REST shapes byte
for byte, every refusal as the envelope, the query parameters a route defines and no others, and
both methods over gRPC through Envoy."""

from __future__ import annotations

import json
from urllib.parse import quote

import grpc
import pytest

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.domain.superlike import StreamState
from tests.e2e.conftest import Edge
from tests.e2e.http_client import Response, assert_envelope, request, superlike_path
from tests.support import build_world, create_stream, create_user

pytestmark = pytest.mark.e2e

UNKNOWN_STREAM = "64d15f9e2e6c8f4d5a1230ff"
QUERY_REFUSED = "Query parameters must be ones this route defines, each at most once, with valid values"
ITEM_KEYS = ["streamId", "senderId", "senderSnapshot", "price", "timestamp", "superlikeId"]
SNAPSHOT_KEYS = ["_id", "username", "name", "surname", "profilePhoto"]


def history_path(stream_id: str, query: str = "") -> str:
    return f"/api/v1/live-stream/{stream_id}/chat/superlikes" + (f"?{query}" if query else "")


def top_path(stream_id: str, query: str = "") -> str:
    return f"/api/v1/live-stream/{stream_id}/chat/top-supporters" + (f"?{query}" if query else "")


def get(edge: Edge, path: str, token: str | None) -> Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return request(edge.http_port, "GET", path, headers)


def send(edge: Edge, stream_id: str, user_id: str) -> dict:
    response = request(
        edge.http_port, "POST", superlike_path(stream_id), {"Authorization": f"Bearer {edge.token_for(user_id)}"}
    )
    assert response.status == 200, response.body
    return response.json()


async def _stream(edge: Edge, viewers: int) -> tuple[str, list[str]]:
    world = await build_world(edge.storage, coins=1000, price=10)
    others = [(await create_user(edge.storage, coins=1000))["id"] for _ in range(viewers - 1)]
    return world.stream_id, [world.viewer_id, *others]


async def test_history_pages_render_the_seed_shape_newest_first(edge: Edge) -> None:
    stream, (viewer, other) = await _stream(edge, 2)
    sent = [send(edge, stream, user) for user in (viewer, other, viewer)]
    token = edge.token_for(other)

    first = get(edge, history_path(stream, "pageSize=2"), token)
    assert first.status == 200 and first.headers["content-type"] == "application/json"
    page = json.loads(first.body, object_pairs_hook=list)
    assert [key for key, _ in page] == ["superlikes", "nextPageToken"]
    items = dict(page)["superlikes"]
    assert [[key for key, _ in item] for item in items] == [ITEM_KEYS, ITEM_KEYS]
    assert [[key for key, _ in dict(item)["senderSnapshot"]] for item in items] == [SNAPSHOT_KEYS] * 2
    expected_first = {key: sent[2][key] for key in ITEM_KEYS}  # the send answer minus the balance
    assert first.json()["superlikes"][0] == expected_first
    assert type(first.json()["superlikes"][0]["price"]) is int

    next_token = first.json()["nextPageToken"]
    assert next_token and quote(next_token, safe="") == next_token  # URL-safe as it stands
    last = get(edge, history_path(stream, f"pageSize=2&pageToken={next_token}"), token)
    assert last.json() == {"superlikes": [{key: sent[0][key] for key in ITEM_KEYS}], "nextPageToken": ""}


async def test_an_empty_stream_lists_exactly_an_empty_page_and_no_supporters(edge: Edge) -> None:
    world = await build_world(edge.storage)
    token = edge.token_for(world.viewer_id)
    assert get(edge, history_path(world.stream_id), token).body == b'{"superlikes":[],"nextPageToken":""}'
    assert get(edge, top_path(world.stream_id), token).body == b'{"supporters":[]}'


async def test_top_supporters_render_rank_profile_coins_and_count(edge: Edge) -> None:
    stream, (first, second) = await _stream(edge, 2)
    for user in (first, second, first):
        send(edge, stream, user)
    response = get(edge, top_path(stream, "limit=10"), edge.token_for(second))
    assert response.status == 200
    document = json.loads(response.body, object_pairs_hook=list)
    supporters = dict(document)["supporters"]
    assert [[key for key, _ in supporter] for supporter in supporters] == [
        ["rank", "senderSnapshot", "coins", "superlikes"]
    ] * 2
    assert [
        (s["rank"], s["senderSnapshot"]["_id"], s["coins"], s["superlikes"]) for s in response.json()["supporters"]
    ] == [
        (1, first, "20", 2),
        (2, second, "10", 1),
    ]


async def test_ended_and_scheduled_streams_stay_readable(edge: Edge) -> None:
    host = await create_user(edge.storage)
    token = edge.token_for(host["id"])
    for state in (StreamState.ENDED, StreamState.SCHEDULED):
        stream = (await create_stream(edge.storage, host["id"], state=state))["id"]
        assert get(edge, history_path(stream), token).status == 200
        assert get(edge, top_path(stream), token).status == 200


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        (history_path(UNKNOWN_STREAM), 404, "Live stream not found"),
        (top_path(UNKNOWN_STREAM), 404, "Live stream not found"),
        (history_path("not-an-id"), 400, "streamId must be a 24-character hex id"),
        (top_path("not-an-id"), 400, "streamId must be a 24-character hex id"),
        (history_path(UNKNOWN_STREAM, "pageSize=-1"), 400, "pageSize must be a non-negative 32-bit integer"),
        (top_path(UNKNOWN_STREAM, "limit=0"), 404, "Live stream not found"),
        (top_path(UNKNOWN_STREAM, "limit=101"), 400, "limit must be an integer from 1 to 100"),
        (
            history_path(UNKNOWN_STREAM, "pageToken=AQFk0V-eLmyPTVoSMAAAAAAAAAAwOXKqtrzIALhkTaeWng"),
            400,
            "pageToken is not a token this list returned for this stream",
        ),
        (history_path(UNKNOWN_STREAM, "pageToken=%00%ff"), 400, QUERY_REFUSED),
        (history_path(UNKNOWN_STREAM, "streamId=64d15f9e2e6c8f4d5a123000"), 400, QUERY_REFUSED),
        (history_path(UNKNOWN_STREAM, "stream_id=64d15f9e2e6c8f4d5a123000"), 400, QUERY_REFUSED),
        (history_path(UNKNOWN_STREAM, "page_size=2"), 400, QUERY_REFUSED),
        (history_path(UNKNOWN_STREAM, "pageSize=1&pageSize=2"), 400, QUERY_REFUSED),
        (history_path(UNKNOWN_STREAM, "pageSize=ten"), 400, QUERY_REFUSED),
        (history_path(UNKNOWN_STREAM, "pageSize=2147483648"), 400, QUERY_REFUSED),
        (history_path(UNKNOWN_STREAM, "pageSize"), 400, QUERY_REFUSED),
        (top_path(UNKNOWN_STREAM, "pageSize=2"), 400, QUERY_REFUSED),
    ],
)
async def test_every_refusal_is_the_envelope(edge: Edge, path: str, status: int, message: str) -> None:
    world = await build_world(edge.storage)
    assert_envelope(get(edge, path, edge.token_for(world.viewer_id)), status, message)


async def test_the_query_never_picks_another_stream(edge: Edge) -> None:
    stream, (viewer,) = await _stream(edge, 1)
    other, (other_viewer,) = await _stream(edge, 1)
    send(edge, other, other_viewer)
    token = edge.token_for(viewer)
    assert get(edge, history_path(stream, "pageSize=5"), token).json() == {"superlikes": [], "nextPageToken": ""}
    assert_envelope(get(edge, history_path(stream, f"pageSize=5&streamId={other}"), token), 400, QUERY_REFUSED)


async def test_a_page_token_of_another_stream_is_refused(edge: Edge) -> None:
    stream, (viewer, _) = await _stream(edge, 2)
    other, (third, fourth) = await _stream(edge, 2)
    for user in (third, fourth):
        send(edge, other, user)
    token = edge.token_for(viewer)
    foreign = get(edge, history_path(other, "pageSize=1"), token).json()["nextPageToken"]
    assert_envelope(
        get(edge, history_path(stream, f"pageToken={foreign}"), token),
        400,
        "pageToken is not a token this list returned for this stream",
    )


async def test_reading_needs_a_token_and_the_right_method(edge: Edge) -> None:
    world = await build_world(edge.storage)
    assert_envelope(get(edge, history_path(world.stream_id), None), 401, "Authentication required")
    assert_envelope(get(edge, top_path(world.stream_id), None), 401, "Authentication required")
    token = edge.token_for(world.viewer_id)
    response = request(edge.http_port, "POST", history_path(world.stream_id), {"Authorization": f"Bearer {token}"})
    assert_envelope(response, 405, "Method not allowed")
    assert response.headers["allow"] == "GET"
    response = request(edge.http_port, "DELETE", superlike_path(world.stream_id), {"Authorization": f"Bearer {token}"})
    assert_envelope(response, 405, "Method not allowed")
    assert response.headers["allow"] == "POST"


async def test_both_methods_over_grpc_through_envoy(edge: Edge) -> None:
    stream, (viewer, other) = await _stream(edge, 2)
    sent = [send(edge, stream, user) for user in (viewer, other)]
    metadata = (("authorization", f"Bearer {edge.token_for(viewer)}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.http_port}") as channel:
        stub = chat_grpc.LiveStreamChatStub(channel)
        listed = await stub.ListSuperlikes(
            chat_pb2.ListSuperlikesRequest(stream_id=stream), metadata=metadata, timeout=10
        )
        top = await stub.ListTopSupporters(
            chat_pb2.ListTopSupportersRequest(stream_id=stream), metadata=metadata, timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListSuperlikes(
                chat_pb2.ListSuperlikesRequest(stream_id=stream, page_size=-1), metadata=metadata, timeout=10
            )
    assert [item.superlike_id for item in listed.superlikes] == [sent[1]["superlikeId"], sent[0]["superlikeId"]]
    assert listed.next_page_token == ""
    assert [(s.rank, s.sender_snapshot.id, s.coins, s.superlikes) for s in top.supporters] == [
        (1, viewer, 10, 1),
        (2, other, 10, 1),
    ]
    assert (refused.value.code(), refused.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "pageSize must be a non-negative 32-bit integer",
    )
