"""Object ids: 24 hex characters, as the Allmine platform's other services use (MongoDB ObjectId)."""

from __future__ import annotations

import os
import re

_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")


def is_object_id(value: str) -> bool:
    return _OBJECT_ID.fullmatch(value) is not None


def normalize_object_id(value: str) -> str:
    """Ids compare case-insensitively on the wire; storage keeps them lowercase."""
    return value.lower()


def new_object_id(now_ms: int) -> str:
    """ObjectId layout: 4-byte big-endian seconds, then 8 random bytes (uniqueness without a counter)."""
    return f"{now_ms // 1000:08x}" + os.urandom(8).hex()
