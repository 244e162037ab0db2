"""Who is calling and with which idempotency key, read from gRPC metadata.

Only the bearer token identifies the caller. Headers such as x-user-id are ignored however they
arrive: anything a client can type is not an identity.

One header is read, and only on calls that arrive over the server's Unix socket, which only Envoy can
connect to (server/workers/sockets.py): the `sub` Envoy's jwt_authn passes on after it has verified
the token itself (EDGE_VERIFIED_SUBJECT_METADATA). Envoy drops any copy a client sends before
jwt_authn runs (envoy/render.py). With it, the server checks its own claim policy on the token but
not its signature again (server/auth/vouched.py); every other call, TCP callers always, has its token
verified in full, as does a socket call without the header (a route where Envoy verified nothing).
"""

from __future__ import annotations

import re

import grpc

from server.api.rpc_observer import call_metadata, note_caller
from server.auth.tokens import TokenVerifier
from server.domain.errors import InvalidCursor, InvalidIdempotencyKey, Unauthenticated

IDEMPOTENCY_KEY_METADATA = "idempotency-key"
# envoy/render.py sets Envoy's jwt_authn claim_to_headers (and the strip before it) from this name.
EDGE_VERIFIED_SUBJECT_METADATA = "x-livechat-verified-sub"


def _metadata_values(context: grpc.aio.ServicerContext, name: str) -> list[str]:
    values = []
    for key, value in call_metadata(context):
        if key == name:
            values.append(value.decode("latin-1") if isinstance(value, bytes) else value)
    return values


# `Authorization: <scheme> <token68>` (RFC 9110 §11.4). The scheme is case-insensitive; optional
# whitespace around the value and between the two parts is HTTP's SP / HTAB only, so nothing else
# (a non-breaking space decoded from latin-1, a line break) can slip into or around a token.
_BEARER = re.compile(r"[ \t]*bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*", re.IGNORECASE | re.ASCII)


def bearer_token(authorization: str) -> str:
    """The token of a `Bearer` authorization value; Unauthenticated for any other scheme or shape."""
    match = _BEARER.fullmatch(authorization)
    if match is None:
        raise Unauthenticated()
    return match.group(1)


def _arrived_over_unix_socket(context: grpc.aio.ServicerContext) -> bool:
    # grpc names a Unix-socket peer "unix:<path>" (Envoy's client end has no path); TCP peers are
    # "ipv4:..." or "ipv6:...".
    return context.peer().startswith("unix:")


async def authenticated_subject(context: grpc.aio.ServicerContext, verifier: TokenVerifier) -> str:
    headers = _metadata_values(context, "authorization")
    if len(headers) != 1:
        raise Unauthenticated()
    token = bearer_token(headers[0])
    vouched = _metadata_values(context, EDGE_VERIFIED_SUBJECT_METADATA) if _arrived_over_unix_socket(context) else []
    if len(vouched) > 1:
        raise Unauthenticated()
    subject = await (verifier.subject_vouched_for(token, vouched[0]) if vouched else verifier.subject_of(token))
    note_caller(subject)
    return subject


def idempotency_key_of(request_id: str, context: grpc.aio.ServicerContext) -> str | None:
    """The key from the request field or the `idempotency-key` metadata (the HTTP header through Envoy).

    Two different keys on one request are ambiguous, and guessing wrong could charge twice.
    """
    from_metadata = _metadata_values(context, IDEMPOTENCY_KEY_METADATA)
    if len(from_metadata) > 1:
        raise InvalidIdempotencyKey("Only one Idempotency-Key may be sent")
    header_key = from_metadata[0] if from_metadata else None
    if request_id and header_key is not None and header_key != request_id:
        raise InvalidIdempotencyKey("requestId and the Idempotency-Key header must match when both are sent")
    if request_id:
        return request_id
    return header_key


LAST_EVENT_ID_METADATA = "last-event-id"


def last_event_id_of(context: grpc.aio.ServicerContext) -> str:
    """The `Last-Event-ID` an EventSource sends when it reconnects; "" when none was sent."""
    values = _metadata_values(context, LAST_EVENT_ID_METADATA)
    if len(values) > 1:
        raise InvalidCursor()
    return values[0].strip() if values else ""
