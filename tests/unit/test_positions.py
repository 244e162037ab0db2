from __future__ import annotations

import pytest

from server.domain.positions import InvalidPosition, PositionKind, PositionSeal

STREAM = "64d15f9e2e6c8f4d5a123000"
OTHER_STREAM = "64d15f9e2e6c8f4d5a123001"
KEY = bytes(range(32))


def test_a_sealed_page_token_opens_to_its_position() -> None:
    seal = PositionSeal(KEY)
    token = seal.seal(PositionKind.PAGE_TOKEN, STREAM, 123_456)
    assert seal.open(PositionKind.PAGE_TOKEN, STREAM, token) == 123_456


def test_tokens_are_url_safe_fixed_length_and_opaque() -> None:
    token = PositionSeal(KEY).seal(PositionKind.FEED_CURSOR, STREAM, 7)
    assert len(token) == 46
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert STREAM not in token


def test_an_upper_case_stream_id_opens_the_token_of_the_same_stream() -> None:
    seal = PositionSeal(KEY)
    token = seal.seal(PositionKind.PAGE_TOKEN, STREAM, 5)
    assert seal.open(PositionKind.PAGE_TOKEN, STREAM.upper(), token) == 5


def test_a_token_of_another_stream_is_refused() -> None:
    seal = PositionSeal(KEY)
    token = seal.seal(PositionKind.PAGE_TOKEN, STREAM, 5)
    with pytest.raises(InvalidPosition, match="another stream"):
        seal.open(PositionKind.PAGE_TOKEN, OTHER_STREAM, token)


def test_a_feed_cursor_is_not_a_page_token() -> None:
    seal = PositionSeal(KEY)
    cursor = seal.seal(PositionKind.FEED_CURSOR, STREAM, 5)
    with pytest.raises(InvalidPosition, match="another use"):
        seal.open(PositionKind.PAGE_TOKEN, STREAM, cursor)


def test_a_token_sealed_with_another_key_is_refused() -> None:
    token = PositionSeal(b"x" * 32).seal(PositionKind.PAGE_TOKEN, STREAM, 5)
    with pytest.raises(InvalidPosition, match="not sealed by this service"):
        PositionSeal(KEY).open(PositionKind.PAGE_TOKEN, STREAM, token)


def test_every_single_character_change_is_detected() -> None:
    seal = PositionSeal(KEY)
    token = seal.seal(PositionKind.PAGE_TOKEN, STREAM, 99)
    for index in range(len(token)):
        replacement = "A" if token[index] != "A" else "B"
        tampered = token[:index] + replacement + token[index + 1 :]
        with pytest.raises(InvalidPosition):
            seal.open(PositionKind.PAGE_TOKEN, STREAM, tampered)


@pytest.mark.parametrize(
    "token",
    ["", "a", "AQFk0V-eLmyPTVoSMAAAAAAAAAAwOXKqtrzIALhkTaeWn", "=" * 46, "é" * 46, "A" * 10_000, "+/" * 23],
)
def test_truncated_padded_foreign_or_huge_values_are_refused(token: str) -> None:
    with pytest.raises(InvalidPosition):
        PositionSeal(KEY).open(PositionKind.PAGE_TOKEN, STREAM, token)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PositionSeal(b"short")
