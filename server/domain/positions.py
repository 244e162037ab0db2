"""Opaque, tamper-evident positions in a stream's superlike order: page tokens and feed cursors.

Every superlike has a per-stream position (1, 2, 3, ... in commit order), assigned inside the write
that charges it. History pages and the live feed both walk that order, so a position is all a client
needs to continue. Clients get it sealed:

    base64url( version | kind | stream id (12 bytes) | position (8 bytes) | HMAC-SHA256[:12] )

- `kind` keeps a page token from being replayed as a feed cursor and the other way round;
- the stream id binds the position to its stream: a token from stream A is refused on stream B;
- the MAC (keyed by a secret every replica shares) makes a forged or truncated value fail cleanly
  instead of reading from an arbitrary place. Positions never expire: the order they point into is
  append-only.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass

from server.domain.ids import is_object_id

_VERSION = 1
_BODY = struct.Struct(">BB12sQ")  # version, kind, stream id, position
_MAC_BYTES = 12
_SEALED_BYTES = _BODY.size + _MAC_BYTES
MIN_KEY_BYTES = 32


class PositionKind(enum.IntEnum):
    PAGE_TOKEN = 1  # ListSuperlikes: continue with positions below this one
    FEED_CURSOR = 2  # StreamSuperlikes: continue with positions above this one


class InvalidPosition(ValueError):
    """The value is not a position this service sealed for this stream and use."""


@dataclass(frozen=True, slots=True)
class StreamPosition:
    stream_id: str
    position: int


class PositionSeal:
    """Seals and opens positions with one key (all replicas of a deployment must share it)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"position key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def seal(self, kind: PositionKind, stream_id: str, position: int) -> str:
        if not is_object_id(stream_id) or not 0 <= position < 2**63:
            raise ValueError("cannot seal an invalid stream position")
        body = _BODY.pack(_VERSION, kind, bytes.fromhex(stream_id), position)
        sealed = body + self._mac(body)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def open(self, kind: PositionKind, stream_id: str, token: str) -> int:
        """The position inside `token`, or InvalidPosition when it was not sealed for this stream and kind."""
        sealed = _decode(token)
        body, mac = sealed[: _BODY.size], sealed[_BODY.size :]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidPosition("not sealed by this service")
        version, sealed_kind, stream_bytes, position = _BODY.unpack(body)
        if version != _VERSION or sealed_kind != kind:
            raise InvalidPosition("sealed for another use")
        if stream_bytes.hex() != stream_id.lower():
            raise InvalidPosition("sealed for another stream")
        if position >= 2**63:
            raise InvalidPosition("position out of range")
        return position

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]


def _decode(token: str) -> bytes:
    expected_chars = (4 * _SEALED_BYTES + 2) // 3
    # Length first: a huge token costs nothing to refuse.
    if len(token) != expected_chars or not token.isascii():
        raise InvalidPosition("wrong length")
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidPosition("not base64url") from None
    if len(sealed) != _SEALED_BYTES or base64.urlsafe_b64encode(sealed).rstrip(b"=").decode() != token:
        # Re-encoding must give the same text: no alternative spellings of one token.
        raise InvalidPosition("not canonical")
    return sealed
