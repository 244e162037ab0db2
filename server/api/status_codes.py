"""The one table from domain errors to gRPC status codes, and the rich status every error carries.

The code is chosen so that the standard gRPC->HTTP mapping (used by Envoy's transcoder) yields the
contract's HTTP status: ABORTED and ALREADY_EXISTS -> 409, INVALID_ARGUMENT -> 400, and so on.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from server.domain import errors

ERROR_DOMAIN = "livestream.allmine.app"
INTERNAL_MESSAGE = "Internal server error"
INTERNAL_REASON = "INTERNAL"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

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
}


def status_code_of(error: errors.DomainError) -> grpc.StatusCode:
    # Admin-only errors never reach the API; if one did, it is a bug and reads as INTERNAL.
    return STATUS_CODES.get(type(error), grpc.StatusCode.INTERNAL)


def rich_status(code: grpc.StatusCode, message: str, reason: str) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying google.rpc.Status with an ErrorInfo, as grpc-status-details-bin."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    status = status_pb2.Status(code=code.value[0], message=message, details=[info])
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)

