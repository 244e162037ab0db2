"""ListSuperlikes and ListTopSupporters through a real gRPC channel to the production-wired server."""

from __future__ import annotations

import grpc
import pytest

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from server.domain.superlike import StreamState
from tests.api.conftest import Api, error_of
from tests.support import create_stream, create_user

UNKNOWN_STREAM = "64d15f9e2e6c8f4d5a1230ff"


async def _stream_with_senders(api: Api, senders: int, price: int = 10) -> tuple[str, list[str], str]:
    host = await create_user(api.storage)
    stream = (await create_stream(api.storage, host["id"], price=price))["id"]
    viewers = [(await create_user(api.storage, coins=1000))["id"] for _ in range(senders)]
    return stream, viewers, api.token_for(viewers[0])


async def _list(api: Api, stream_id: str, token: str, page_size: int = 0, page_token: str = "") -> chat_pb2.ListSuperlikesResponse:
    return await api.stub.ListSuperlikes(
        chat_pb2.ListSuperlikesRequest(stream_id=stream_id, page_size=page_size, page_token=page_token),
        metadata=(("authorization", f"Bearer {token}"),),
        timeout=10,
    )


async def _top(api: Api, stream_id: str, token: str, limit: int = 0) -> chat_pb2.ListTopSupportersResponse:
    return await api.stub.ListTopSupporters(
        chat_pb2.ListTopSupportersRequest(stream_id=stream_id, limit=limit),
        metadata=(("authorization", f"Bearer {token}"),),
        timeout=10,
    )


async def _refusal(call) -> tuple[grpc.StatusCode, str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return error_of(raised.value)


async def test_history_pages_newest_first_until_an_empty_next_token(api: Api) -> None:
    stream, viewers, token = await _stream_with_senders(api, 3)
    sent = [await api.send(stream, api.token_for(viewers[i % 3])) for i in range(5)]

    first = await _list(api, stream, token, page_size=2)
    second = await _list(api, stream, token, page_size=2, page_token=first.next_page_token)
    last = await _list(api, stream, token, page_size=2, page_token=second.next_page_token)

    listed = [*first.superlikes, *second.superlikes, *last.superlikes]
    assert [item.superlike_id for item in listed] == [response.superlike_id for response in reversed(sent)]
    assert (len(first.superlikes), len(second.superlikes), len(last.superlikes)) == (2, 2, 1)
    assert first.next_page_token and second.next_page_token and last.next_page_token == ""
    newest, response = listed[0], sent[-1]
    assert (newest.stream_id, newest.sender_id, newest.price, newest.timestamp) == (
        response.stream_id, response.sender_id, 10, response.timestamp,
    )
    assert newest.sender_snapshot == response.sender_snapshot


async def test_an_exactly_full_last_page_is_followed_by_an_empty_one(api: Api) -> None:
    stream, viewers, token = await _stream_with_senders(api, 2)
    for viewer in viewers:
        await api.send(stream, api.token_for(viewer))
    page = await _list(api, stream, token, page_size=2)
    assert len(page.superlikes) == 2 and page.next_page_token == ""


async def test_a_stream_without_superlikes_lists_nothing(api: Api) -> None:
    stream, _, token = await _stream_with_senders(api, 1)
    assert await _list(api, stream, token) == chat_pb2.ListSuperlikesResponse()
    assert await _top(api, stream, token) == chat_pb2.ListTopSupportersResponse()


async def test_superlikes_sent_while_paging_neither_repeat_nor_vanish(api: Api) -> None:
    stream, viewers, token = await _stream_with_senders(api, 4)
    older = [await api.send(stream, api.token_for(viewer)) for viewer in viewers[:3]]
    first = await _list(api, stream, token, page_size=1)
    newer = await api.send(stream, api.token_for(viewers[3]))
    rest = await _list(api, stream, token, page_size=10, page_token=first.next_page_token)
    assert [item.superlike_id for item in [*first.superlikes, *rest.superlikes]] == [
        response.superlike_id for response in reversed(older)
    ]
    assert (await _list(api, stream, token, page_size=1)).superlikes[0].superlike_id == newer.superlike_id


async def test_ended_and_scheduled_streams_stay_readable(api: Api) -> None:
    host = await create_user(api.storage)
    token = api.token_for(host["id"])
    for state in (StreamState.ENDED, StreamState.SCHEDULED):
        stream = (await create_stream(api.storage, host["id"], state=state))["id"]
        assert await _list(api, stream, token) == chat_pb2.ListSuperlikesResponse()


async def test_top_supporters_rank_by_coins_then_by_who_got_there_first(api: Api) -> None:
    stream, (early, late, small), token = await _stream_with_senders(api, 3)
    for viewer in (early, late, early, small, late):
        await api.send(stream, api.token_for(viewer))
    top = await _top(api, stream, token)
    assert [(s.rank, s.sender_snapshot.id, s.coins, s.superlikes) for s in top.supporters] == [
        (1, early, 20, 2), (2, late, 20, 2), (3, small, 10, 1),
    ]
    assert [s.sender_snapshot.id for s in (await _top(api, stream, token, limit=1)).supporters] == [early]


async def test_a_page_token_of_another_stream_is_invalid(api: Api) -> None:
    stream, viewers, token = await _stream_with_senders(api, 2)
    other, other_viewers, _ = await _stream_with_senders(api, 2)
    for viewer in other_viewers:
        await api.send(other, api.token_for(viewer))
    foreign = (await _list(api, other, token, page_size=1)).next_page_token
    assert await _refusal(_list(api, stream, token, page_token=foreign)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "pageToken is not a token this list returned for this stream", "INVALID_PAGE_TOKEN",
    )
    tampered = foreign[:-2] + ("AA" if foreign[-2:] != "AA" else "BB")
    assert (await _refusal(_list(api, other, token, page_token=tampered)))[2] == "INVALID_PAGE_TOKEN"


@pytest.mark.parametrize(
    ("page_size", "limit", "expected"),
    [
        (-1, None, (grpc.StatusCode.INVALID_ARGUMENT, "pageSize must be a non-negative 32-bit integer", "INVALID_PAGE_SIZE")),
        (None, -1, (grpc.StatusCode.INVALID_ARGUMENT, "limit must be an integer from 1 to 100", "INVALID_LIMIT")),
        (None, 101, (grpc.StatusCode.INVALID_ARGUMENT, "limit must be an integer from 1 to 100", "INVALID_LIMIT")),
    ],
)
async def test_out_of_range_sizes_are_invalid_arguments(
    api: Api, page_size: int | None, limit: int | None, expected: tuple[grpc.StatusCode, str, str]
) -> None:
    stream, _, token = await _stream_with_senders(api, 1)
    call = _list(api, stream, token, page_size=page_size) if page_size is not None else _top(api, stream, token, limit or 0)
    assert await _refusal(call) == expected


async def test_unknown_and_malformed_streams_and_missing_tokens_are_refused(api: Api) -> None:
    _, _, token = await _stream_with_senders(api, 1)
    for call in (_list(api, UNKNOWN_STREAM, token), _top(api, UNKNOWN_STREAM, token)):
        assert await _refusal(call) == (grpc.StatusCode.NOT_FOUND, "Live stream not found", "STREAM_NOT_FOUND")
    for call in (_list(api, "nope", token), _top(api, "nope", token)):
        assert await _refusal(call) == (
            grpc.StatusCode.INVALID_ARGUMENT, "streamId must be a 24-character hex id", "INVALID_STREAM_ID",
        )
    unsigned = api.stub.ListSuperlikes(chat_pb2.ListSuperlikesRequest(stream_id=UNKNOWN_STREAM), timeout=10)
    assert await _refusal(unsigned) == (grpc.StatusCode.UNAUTHENTICATED, "Authentication required", "UNAUTHENTICATED")
