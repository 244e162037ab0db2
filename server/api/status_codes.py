"""The one table from errors to gRPC status codes, the rich status every error carries, and the answers
the edge (Envoy) gives by itself.

The code is chosen so that the standard gRPC->HTTP mapping (used by Envoy's transcoder) yields the
contract's HTTP status: ABORTED and ALREADY_EXISTS -> 409, INVALID_ARGUMENT -> 400, and so on.
envoy/render.py reads EDGE_ERRORS, STATUS_CODES and client_messages() to render Envoy's local replies
(with the same google.rpc.Status for gRPC callers) and the Lua filter's allow-list of texts.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.domain import errors

ERROR_DOMAIN = "livestream.allmine.app"

STATUS_CODES: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.InvalidStreamId: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidIdempotencyKey: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidPageSize: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidPageToken: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidLimit: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidCursor: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidBacklog: grpc.StatusCode.INVALID_ARGUMENT,
    errors.StreamNotFound: grpc.StatusCode.NOT_FOUND,
    errors.SenderNotFound: grpc.StatusCode.NOT_FOUND,
    errors.SenderIsHost: grpc.StatusCode.PERMISSION_DENIED,
    errors.SenderBanned: grpc.StatusCode.PERMISSION_DENIED,
    errors.StreamNotLive: grpc.StatusCode.ABORTED,
    errors.InsufficientBalance: grpc.StatusCode.ABORTED,
    errors.IdempotencyKeyReused: grpc.StatusCode.ABORTED,
    errors.StorageUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.OutcomeUnknown: grpc.StatusCode.UNAVAILABLE,
    errors.FeedInterrupted: grpc.StatusCode.UNAVAILABLE,
    errors.Internal: grpc.StatusCode.INTERNAL,
    # The edge's own refusals (gRPC callers get these codes from Envoy).
    errors.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidJsonBody: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidQueryParameter: grpc.StatusCode.INVALID_ARGUMENT,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.RouteNotFound: grpc.StatusCode.NOT_FOUND,
    errors.UnknownMethod: grpc.StatusCode.UNIMPLEMENTED,
    errors.MethodNotAllowed: grpc.StatusCode.UNIMPLEMENTED,
    errors.RequestTimedOut: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.RequestBodyTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.RequestHeadersTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ServiceUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.RequestRejected: grpc.StatusCode.INVALID_ARGUMENT,
}

# The standard gRPC -> HTTP mapping, as Envoy's transcoder applies it to the server's statuses.
HTTP_STATUS_OF_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


@dataclass(frozen=True)
class EdgeError:
    """What Envoy answers when one of its own filters refuses a request with one of `envoy_statuses`:
    REST callers get `http_status` and `rest`'s message in the envelope, gRPC callers `grpc`'s status."""

    envoy_statuses: tuple[int, ...]
    http_status: int
    rest: type[errors.DomainError]
    grpc: type[errors.DomainError]


EDGE_ERRORS: tuple[EdgeError, ...] = (
    EdgeError((400,), 400, errors.InvalidRequest, errors.InvalidRequest),
    EdgeError((401,), 401, errors.Unauthenticated, errors.Unauthenticated),
    EdgeError((403,), 403, errors.PermissionDenied, errors.PermissionDenied),
    EdgeError((404,), 404, errors.RouteNotFound, errors.UnknownMethod),
    EdgeError((405,), 405, errors.MethodNotAllowed, errors.MethodNotAllowed),
    EdgeError((408,), 408, errors.RequestTimedOut, errors.RequestTimedOut),
    EdgeError((413,), 413, errors.RequestBodyTooLarge, errors.RequestBodyTooLarge),
    EdgeError((429,), 429, errors.RateLimited, errors.RateLimited),
    EdgeError((431,), 431, errors.RequestHeadersTooLarge, errors.RequestHeadersTooLarge),
    # Upstream unreachable, reset, overloaded or unhealthy: one answer, "retry later".
    EdgeError((502, 503), 503, errors.ServiceUnavailable, errors.ServiceUnavailable),
    EdgeError((504,), 504, errors.RequestTimedOut, errors.RequestTimedOut),
)
# Refusals error_envelope.lua decides itself (it names the reason in the request's dynamic metadata,
# and the local reply renders that reason's text).
EDGE_LUA_REFUSALS: tuple[type[errors.DomainError], ...] = (errors.InvalidQueryParameter,)
# The transcoder could not turn a REST body into the request message (a 400 of its own).
EDGE_INVALID_BODY = errors.InvalidJsonBody
# Any other 4xx of the edge, and anything else it produces (a fault on our side, shown as 500).
EDGE_OTHER_CLIENT_ERROR = errors.RequestRejected
EDGE_OTHER_ERROR = EdgeError((), 500, errors.Internal, errors.Internal)


def status_code_of(error: errors.DomainError | type[errors.DomainError]) -> grpc.StatusCode:
    # Admin-only errors never reach the API; if one did, it is a bug and reads as INTERNAL.
    kind = error if isinstance(error, type) else type(error)
    return STATUS_CODES.get(kind, grpc.StatusCode.INTERNAL)


def status_proto(code: grpc.StatusCode, message: str, reason: str) -> status_pb2.Status:
    """google.rpc.Status with one ErrorInfo: what grpc-status-details-bin carries on every error."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    return status_pb2.Status(code=code.value[0], message=message, details=[info])


def status_of(error: errors.DomainError) -> grpc.Status:
    """The rich status for `context.abort_with_status`."""
    return rpc_status.to_status(status_proto(status_code_of(error), error.message, error.reason))


def client_messages() -> list[str]:
    """Every text the API may show a client, in table order (the edge lets no other text through)."""
    messages: list[str] = []
    for kind in STATUS_CODES:
        for message in (kind.message, *kind.other_messages):
            if message not in messages:
                messages.append(message)
    return messages
