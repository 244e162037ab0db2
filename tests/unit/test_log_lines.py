"""The log formatters' shortcuts change no line: the secret scrubbing's pre-check skips only text the
four patterns would leave alone, and the date rendered once per second still shows each line's
own second and milliseconds."""

from __future__ import annotations

import json
import logging
import time

import pytest

from server.observability.logs import _SECRETS, DATE_FORMAT, TEXT_FORMAT, JsonFormatter, ScrubbingTextFormatter, scrub

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def _four_passes(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


@pytest.mark.parametrize(
    "text",
    [
        "SendSuperlike OK reason=OK latency_ms=12.345 request_id=4f1c8d2e-8c7e caller_id=5f1c8d2e8c7e4f739a593c3c",
        f"request_id=req {JWT}",
        "authorization: Bearer abc.def-ghi",
        "authorization: BEARER\tabc",
        "GET /feed?access_token=abc&x=1",
        "GET /feed?ACCESS_TOKEN=abc",
        "GET /feed?acce\u017f\u017f_token=abc",  # long s: case-insensitive matching takes it for an s
        "GET /feed?access_to\u212aen=abc",  # Kelvin sign: taken for a k
        "key: -----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----",
        "bearer",
        "eyJ",
    ],
)
def test_scrub_changes_exactly_what_the_four_patterns_change(text: str) -> None:
    assert scrub(text) == _four_passes(text)


def _record(created: float) -> logging.LogRecord:
    record = logging.LogRecord("server.rpc", logging.INFO, "", 0, "line", None, None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    return record


def test_text_lines_in_one_second_share_its_date_and_keep_their_own_milliseconds() -> None:
    formatter = ScrubbingTextFormatter(TEXT_FORMAT, DATE_FORMAT)
    formatter.converter = time.gmtime
    lines = [formatter.format(_record(at)) for at in (1_700_000_000.125, 1_700_000_000.75, 1_700_000_001.0625)]
    assert lines == [
        "2023-11-14T22:13:20.125 INFO server.rpc: line",
        "2023-11-14T22:13:20.750 INFO server.rpc: line",
        "2023-11-14T22:13:21.062 INFO server.rpc: line",
    ]


def test_json_lines_in_one_second_share_its_date_and_keep_their_own_milliseconds() -> None:
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    times = [json.loads(formatter.format(_record(at)))["time"] for at in (1_700_000_000.125, 1_700_000_001.5)]
    assert times == ["2023-11-14T22:13:20.125Z", "2023-11-14T22:13:21.500Z"]
