"""ListSuperlikes and ListTopSupporters through a real gRPC channel to the production-wired server,
with pytest-grpc's fixtures (tests/api/conftest.py runs the production server behind grpc_stub)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from server.domain.superlike import StreamState
from tests.api.conftest import Seeds, bearer, error_of
from tests.support import create_stream, create_user

UNKNOWN_STREAM = "64d15f9e2e6c8f4d5a1230ff"


Stub = chat_grpc.LiveStreamChatStub


async def _stream_with_senders(seeds: Seeds, senders: int, price: int = 10) -> tuple[str, list[str], str]:
    host = await create_user(seeds.storage)
    stream = (await create_stream(seeds.storage, host["id"], price=price))["id"]
    viewers = [(await create_user(seeds.storage, coins=1000))["id"] for _ in range(senders)]
    return stream, viewers, seeds.token_for(viewers[0])


def _send(stub: Stub, stream_id: str, token: str) -> chat_pb2.SendSuperlikeResponse:
    return stub.SendSuperlike(chat_pb2.SendSuperlikeRequest(stream_id=stream_id), metadata=bearer(token), timeout=10)


def _list(
    stub: Stub, stream_id: str, token: str, page_size: int = 0, page_token: str = ""
) -> chat_pb2.ListSuperlikesResponse:
    request = chat_pb2.ListSuperlikesRequest(stream_id=stream_id, page_size=page_size, page_token=page_token)
    return stub.ListSuperlikes(request, metadata=bearer(token), timeout=10)


def _top(stub: Stub, stream_id: str, token: str, limit: int = 0) -> chat_pb2.ListTopSupportersResponse:
    request = chat_pb2.ListTopSupportersRequest(stream_id=stream_id, limit=limit)
    return stub.ListTopSupporters(request, metadata=bearer(token), timeout=10)


def _refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return error_of(raised.value)


async def test_history_pages_newest_first_until_an_empty_next_token(grpc_stub: Stub, seeds: Seeds) -> None:
    stream, viewers, token = await _stream_with_senders(seeds, 3)
    sent = [_send(grpc_stub, stream, seeds.token_for(viewers[i % 3])) for i in range(5)]

    first = _list(grpc_stub, stream, token, page_size=2)
    second = _list(grpc_stub, stream, token, page_size=2, page_token=first.next_page_token)
    last = _list(grpc_stub, stream, token, page_size=2, page_token=second.next_page_token)

    listed = [*first.superlikes, *second.superlikes, *last.superlikes]
    assert [item.superlike_id for item in listed] == [response.superlike_id for response in reversed(sent)]
    assert (len(first.superlikes), len(second.superlikes), len(last.superlikes)) == (2, 2, 1)
    assert first.next_page_token and second.next_page_token and last.next_page_token == ""
    newest, response = listed[0], sent[-1]
    assert (newest.stream_id, newest.sender_id, newest.price, newest.timestamp) == (
        response.stream_id,
        response.sender_id,
        10,
        response.timestamp,
    )
    assert newest.sender_snapshot == response.sender_snapshot


async def test_an_exactly_full_last_page_is_followed_by_an_empty_one(grpc_stub: Stub, seeds: Seeds) -> None:
    stream, viewers, token = await _stream_with_senders(seeds, 2)
    for viewer in viewers:
        _send(grpc_stub, stream, seeds.token_for(viewer))
    page = _list(grpc_stub, stream, token, page_size=2)
    assert len(page.superlikes) == 2 and page.next_page_token == ""


async def test_a_stream_without_superlikes_lists_nothing(grpc_stub: Stub, seeds: Seeds) -> None:
    stream, _, token = await _stream_with_senders(seeds, 1)
    assert _list(grpc_stub, stream, token) == chat_pb2.ListSuperlikesResponse()
    assert _top(grpc_stub, stream, token) == chat_pb2.ListTopSupportersResponse()


async def test_superlikes_sent_while_paging_neither_repeat_nor_vanish(grpc_stub: Stub, seeds: Seeds) -> None:
    stream, viewers, token = await _stream_with_senders(seeds, 4)
    older = [_send(grpc_stub, stream, seeds.token_for(viewer)) for viewer in viewers[:3]]
    first = _list(grpc_stub, stream, token, page_size=1)
    newer = _send(grpc_stub, stream, seeds.token_for(viewers[3]))
    rest = _list(grpc_stub, stream, token, page_size=10, page_token=first.next_page_token)
    assert [item.superlike_id for item in [*first.superlikes, *rest.superlikes]] == [
        response.superlike_id for response in reversed(older)
    ]
    assert _list(grpc_stub, stream, token, page_size=1).superlikes[0].superlike_id == newer.superlike_id


async def test_ended_and_scheduled_streams_stay_readable(grpc_stub: Stub, seeds: Seeds) -> None:
    host = await create_user(seeds.storage)
    token = seeds.token_for(host["id"])
    for state in (StreamState.ENDED, StreamState.SCHEDULED):
        stream = (await create_stream(seeds.storage, host["id"], state=state))["id"]
        assert _list(grpc_stub, stream, token) == chat_pb2.ListSuperlikesResponse()


async def test_top_supporters_rank_by_coins_then_by_who_got_there_first(grpc_stub: Stub, seeds: Seeds) -> None:
    stream, (early, late, small), token = await _stream_with_senders(seeds, 3)
    for viewer in (early, late, early, small, late):
        _send(grpc_stub, stream, seeds.token_for(viewer))
    top = _top(grpc_stub, stream, token)
    assert [(s.rank, s.sender_snapshot.id, s.coins, s.superlikes) for s in top.supporters] == [
        (1, early, 20, 2),
        (2, late, 20, 2),
        (3, small, 10, 1),
    ]
    assert [s.sender_snapshot.id for s in _top(grpc_stub, stream, token, limit=1).supporters] == [early]


async def test_a_page_token_of_another_stream_is_invalid(grpc_stub: Stub, seeds: Seeds) -> None:
    stream, _, token = await _stream_with_senders(seeds, 2)
    other, other_viewers, _ = await _stream_with_senders(seeds, 2)
    for viewer in other_viewers:
        _send(grpc_stub, other, seeds.token_for(viewer))
    foreign = _list(grpc_stub, other, token, page_size=1).next_page_token
    assert _refusal(lambda: _list(grpc_stub, stream, token, page_token=foreign)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "pageToken is not a token this list returned for this stream",
        "INVALID_PAGE_TOKEN",
    )
    tampered = foreign[:-2] + ("AA" if foreign[-2:] != "AA" else "BB")
    assert _refusal(lambda: _list(grpc_stub, other, token, page_token=tampered))[2] == "INVALID_PAGE_TOKEN"


@pytest.mark.parametrize(
    ("page_size", "limit", "expected"),
    [
        (
            -1,
            None,
            (grpc.StatusCode.INVALID_ARGUMENT, "pageSize must be a non-negative 32-bit integer", "INVALID_PAGE_SIZE"),
        ),
        (None, -1, (grpc.StatusCode.INVALID_ARGUMENT, "limit must be an integer from 1 to 100", "INVALID_LIMIT")),
        (None, 101, (grpc.StatusCode.INVALID_ARGUMENT, "limit must be an integer from 1 to 100", "INVALID_LIMIT")),
    ],
)
async def test_out_of_range_sizes_are_invalid_arguments(
    grpc_stub: Stub, seeds: Seeds, page_size: int | None, limit: int | None, expected: tuple[grpc.StatusCode, str, str]
) -> None:
    stream, _, token = await _stream_with_senders(seeds, 1)
    if page_size is not None:
        assert _refusal(lambda: _list(grpc_stub, stream, token, page_size=page_size)) == expected
    else:
        assert _refusal(lambda: _top(grpc_stub, stream, token, limit or 0)) == expected


async def test_unknown_and_malformed_streams_and_missing_tokens_are_refused(grpc_stub: Stub, seeds: Seeds) -> None:
    _, _, token = await _stream_with_senders(seeds, 1)
    for method in (_list, _top):
        assert _refusal(lambda method=method: method(grpc_stub, UNKNOWN_STREAM, token)) == (
            grpc.StatusCode.NOT_FOUND,
            "Live stream not found",
            "STREAM_NOT_FOUND",
        )
        assert _refusal(lambda method=method: method(grpc_stub, "nope", token)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "streamId must be a 24-character hex id",
            "INVALID_STREAM_ID",
        )
    unsigned = chat_pb2.ListSuperlikesRequest(stream_id=UNKNOWN_STREAM)
    assert _refusal(lambda: grpc_stub.ListSuperlikes(unsigned, timeout=10)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "Authentication required",
        "UNAUTHENTICATED",
    )
