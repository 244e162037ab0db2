from __future__ import annotations

import pytest

from server.domain import errors
from server.domain.clock import format_timestamp
from server.domain.ids import is_object_id, new_object_id
from server.domain.streams import MAX_SUPERLIKE_PRICE, MIN_SUPERLIKE_PRICE
from server.domain.superlike import SenderSnapshot, StreamState, is_valid_idempotency_key
from server.services.superlikes import SuperlikeService
from tests.unit.fakes import FakeDatabase, FakeStream, FakeSuperlikes

HOST = "64d15f9e2e6c8f4d5a100001"
VIEWER = "64d15f9e2e6c8f4d5a123456"
STREAM = "64d15f9e2e6c8f4d5a123000"
OTHER_STREAM = "64d15f9e2e6c8f4d5a123001"
NOW_MS = 1_768_473_000_000  # 2026-01-15T10:30:00.000Z


def make_db(balance: int = 100, state: StreamState = StreamState.LIVE, price: int = 10) -> FakeDatabase:
    db = FakeDatabase()
    for user_id, username in ((HOST, "host"), (VIEWER, "johndoe")):
        db.users[user_id] = SenderSnapshot(user_id, username, "sample", "sample", "sample.jpg")
    db.balances = {HOST: 0, VIEWER: balance}
    db.streams[STREAM] = FakeStream(host_id=HOST, state=state, price=price)
    db.streams[OTHER_STREAM] = FakeStream(host_id=HOST, state=StreamState.LIVE, price=price)
    return db


def service(db: FakeDatabase) -> SuperlikeService:
    return SuperlikeService(FakeSuperlikes(db), clock=lambda: NOW_MS)


async def test_superlike_charges_the_sender_and_credits_the_host() -> None:
    db = make_db(balance=25)
    superlike = await service(db).send(STREAM, VIEWER, None)
    assert (superlike.stream_id, superlike.price, superlike.sender_balance_after) == (STREAM, 10, 15)
    assert superlike.sender == SenderSnapshot(VIEWER, "johndoe", "sample", "sample", "sample.jpg")
    assert superlike.created_at_ms == NOW_MS
    assert db.balances == {HOST: 10, VIEWER: 15}
    assert len(db.superlikes) == 1


async def test_uppercase_ids_are_normalised_to_lowercase() -> None:
    db = make_db()
    superlike = await service(db).send(STREAM.upper(), VIEWER.upper(), None)
    assert superlike.stream_id == STREAM
    assert superlike.sender.user_id == VIEWER


@pytest.mark.parametrize(
    ("stream_id", "sender_id", "error"),
    [
        ("string", VIEWER, errors.InvalidStreamId),
        ("", VIEWER, errors.InvalidStreamId),
        (STREAM + "0", VIEWER, errors.InvalidStreamId),
        ("g" * 24, VIEWER, errors.InvalidStreamId),
        ("64d15f9e2e6c8f4d5a999999", VIEWER, errors.StreamNotFound),
        (STREAM, "64d15f9e2e6c8f4d5a999999", errors.SenderNotFound),
        (STREAM, "not-an-object-id", errors.SenderNotFound),
        (STREAM, HOST, errors.SenderIsHost),
    ],
)
async def test_request_refusals(stream_id: str, sender_id: str, error: type[errors.DomainError]) -> None:
    db = make_db()
    with pytest.raises(error):
        await service(db).send(stream_id, sender_id, None)
    assert db.balances == {HOST: 0, VIEWER: 100}


async def test_banned_sender_is_refused_before_the_stream_state_is_considered() -> None:
    db = make_db(state=StreamState.ENDED)
    db.streams[STREAM].banned.add(VIEWER)
    with pytest.raises(errors.SenderBanned):
        await service(db).send(STREAM, VIEWER, None)


@pytest.mark.parametrize("state", [StreamState.SCHEDULED, StreamState.ENDED])
async def test_superlike_on_a_stream_that_is_not_live_is_refused(state: StreamState) -> None:
    with pytest.raises(errors.StreamNotLive):
        await service(make_db(state=state)).send(STREAM, VIEWER, None)


async def test_balance_one_coin_short_is_refused_and_exact_balance_succeeds() -> None:
    with pytest.raises(errors.InsufficientBalance):
        await service(make_db(balance=9)).send(STREAM, VIEWER, None)
    db = make_db(balance=10)
    assert (await service(db).send(STREAM, VIEWER, None)).sender_balance_after == 0


async def test_a_sender_without_coins_is_refused_even_at_the_lowest_price() -> None:
    # No stream is free (prices are 1 to 1,000,000 coins): an empty wallet can send nothing.
    db = make_db(balance=0, price=MIN_SUPERLIKE_PRICE)
    with pytest.raises(errors.InsufficientBalance):
        await service(db).send(STREAM, VIEWER, None)
    assert db.balances == {HOST: 0, VIEWER: 0}


async def test_the_highest_price_is_charged_in_full() -> None:
    db = make_db(balance=MAX_SUPERLIKE_PRICE, price=MAX_SUPERLIKE_PRICE)
    superlike = await service(db).send(STREAM, VIEWER, None)
    assert (superlike.price, superlike.sender_balance_after) == (1_000_000, 0)


async def test_retry_with_the_same_key_replays_the_first_superlike_without_charging() -> None:
    db = make_db()
    first = await service(db).send(STREAM, VIEWER, "key-1")
    second = await service(db).send(STREAM, VIEWER, "key-1")
    assert second == first
    assert db.balances[VIEWER] == 90
    assert len(db.superlikes) == 1


async def test_same_key_for_another_stream_is_refused_as_reused() -> None:
    db = make_db()
    await service(db).send(STREAM, VIEWER, "key-1")
    with pytest.raises(errors.IdempotencyKeyReused):
        await service(db).send(OTHER_STREAM, VIEWER, "key-1")
    assert db.balances[VIEWER] == 90


async def test_replay_survives_the_sender_running_out_of_coins() -> None:
    db = make_db(balance=10)
    first = await service(db).send(STREAM, VIEWER, "key-1")
    assert await service(db).send(STREAM, VIEWER, "key-1") == first


async def test_concurrent_request_with_our_key_that_spent_the_coins_is_replayed() -> None:
    db = make_db(balance=10)
    rival = await service(make_db(balance=10)).send(STREAM, VIEWER, "key-1")
    db.commit_before_charge = (rival, "key-1")
    assert await service(db).send(STREAM, VIEWER, "key-1") == rival
    assert db.balances[VIEWER] == 0


async def test_concurrent_request_with_our_key_that_left_coins_is_replayed_after_retry() -> None:
    db = make_db(balance=100)
    rival = await service(make_db(balance=100)).send(STREAM, VIEWER, "key-1")
    db.commit_before_charge = (rival, "key-1")
    assert await service(db).send(STREAM, VIEWER, "key-1") == rival
    assert db.balances[VIEWER] == 90
    assert len(db.superlikes) == 1


async def test_coins_spent_by_another_server_between_read_and_charge_refuse_as_insufficient() -> None:
    db = make_db(balance=10)
    rival = await service(make_db(balance=10)).send(STREAM, VIEWER, None)
    db.commit_before_charge = (rival, None)
    with pytest.raises(errors.InsufficientBalance):
        await service(db).send(STREAM, VIEWER, "key-2")
    assert (db.balances[VIEWER], len(db.superlikes)) == (0, 1)


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("a", True),
        ("x" * 255, True),
        ("Key with spaces~!", True),
        ("", False),
        ("x" * 256, False),
        ("tab\there", False),
        ("é", False),
        ("new\nline", False),
        ("del\x7f", False),
        ("nbsp\u00a0", False),
    ],
)
def test_idempotency_key_format(key: str, valid: bool) -> None:
    assert is_valid_idempotency_key(key) is valid


def test_a_one_character_key_is_valid_exactly_from_space_to_tilde() -> None:
    valid = [code for code in range(0x110000) if is_valid_idempotency_key(chr(code))]
    assert valid == list(range(ord(" "), ord("~") + 1))


async def test_invalid_idempotency_key_is_refused_before_storage() -> None:
    with pytest.raises(errors.InvalidIdempotencyKey):
        await service(make_db()).send(STREAM, VIEWER, "x" * 256)


@pytest.mark.parametrize(
    ("epoch_ms", "text"),
    [
        (1_768_473_000_000, "2026-01-15T10:30:00.000Z"),
        (1_768_473_000_007, "2026-01-15T10:30:00.007Z"),
        (1_768_473_059_999, "2026-01-15T10:30:59.999Z"),
        (0, "1970-01-01T00:00:00.000Z"),
    ],
)
def test_timestamps_always_have_three_fraction_digits(epoch_ms: int, text: str) -> None:
    assert format_timestamp(epoch_ms) == text


def test_new_ids_are_object_ids_carrying_their_creation_second() -> None:
    object_id = new_object_id(NOW_MS)
    assert is_object_id(object_id)
    assert int(object_id[:8], 16) == NOW_MS // 1000
    assert new_object_id(NOW_MS) != object_id
