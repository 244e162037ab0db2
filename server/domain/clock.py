"""Time as the service stores and shows it: integer UTC milliseconds, rendered with exactly 3 digits."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_timestamp(epoch_ms: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ`, the contract's format (protobuf Timestamp JSON may drop digits)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"
