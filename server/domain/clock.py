"""Time as the service stores and shows it: integer UTC milliseconds, rendered with exactly 3 digits."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_timestamp(epoch_ms: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ`, the contract's format (protobuf Timestamp JSON may drop digits)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_second_prefix(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=64)
def _second_prefix(epoch_seconds: int) -> str:
    # strftime is the costliest step of rendering a superlike; consecutive superlikes share a second.
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
