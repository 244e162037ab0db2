"""Every way a use case can refuse, one class per meaning.

Each error carries the human message a client sees and a stable machine-readable reason. The mapping
to transport status codes lives in exactly one place (server/api/status_codes.py).
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of all expected refusals. `message` is safe to show to a client."""

    reason: str = "UNKNOWN"
    message: str = "Request failed"
    # Other texts a raise site may pass for the same meaning; the edge lets only listed texts through.
    other_messages: tuple[str, ...] = ()

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"
    message = "Authentication required"


class InvalidStreamId(DomainError):
    reason = "INVALID_STREAM_ID"
    message = "streamId must be a 24-character hex id"


class InvalidIdempotencyKey(DomainError):
    reason = "INVALID_IDEMPOTENCY_KEY"
    message = "Idempotency key must be 1 to 255 printable ASCII characters"
    other_messages = (
        "requestId and the Idempotency-Key header must match when both are sent",
        "Only one Idempotency-Key may be sent",
    )


class InvalidPageSize(DomainError):
    reason = "INVALID_PAGE_SIZE"
    message = "pageSize must be a non-negative 32-bit integer"


class InvalidPageToken(DomainError):
    reason = "INVALID_PAGE_TOKEN"
    message = "pageToken is not a token this list returned for this stream"


class InvalidLimit(DomainError):
    reason = "INVALID_LIMIT"
    message = "limit must be an integer from 1 to 100"


class InvalidCursor(DomainError):
    reason = "INVALID_CURSOR"
    message = "after is not a cursor this feed sent for this stream"


class InvalidBacklog(DomainError):
    reason = "INVALID_BACKLOG"
    message = "backlog must be from 0 to 100"


class StreamNotFound(DomainError):
    reason = "STREAM_NOT_FOUND"
    message = "Live stream not found"


class SenderNotFound(DomainError):
    reason = "SENDER_NOT_FOUND"
    message = "Sender account not found"


class SenderIsHost(DomainError):
    reason = "SENDER_IS_HOST"
    message = "The host cannot send a superlike to their own live stream"


class SenderBanned(DomainError):
    reason = "SENDER_BANNED"
    message = "You are banned from this live stream's chat"


class StreamNotLive(DomainError):
    reason = "STREAM_NOT_LIVE"
    message = "Live stream is not live"


class InsufficientBalance(DomainError):
    reason = "INSUFFICIENT_BALANCE"
    message = "Insufficient coin balance for a superlike"


class IdempotencyKeyReused(DomainError):
    reason = "IDEMPOTENCY_KEY_REUSED"
    message = "Idempotency key was already used for a different request"


class StorageUnavailable(DomainError):
    """The database could not be reached before anything was written: nothing changed, retry freely."""

    reason = "STORAGE_UNAVAILABLE"
    message = "Service temporarily unavailable, please retry"


class OutcomeUnknown(StorageUnavailable):
    """The connection broke while the charge was being written: it may have committed. Only a retry
    with the same idempotency key is safe (it replays the charge if it happened)."""

    reason = "OUTCOME_UNKNOWN"
    message = (
        "Service temporarily unavailable; the superlike may have been sent. "
        "Retry with the same Idempotency-Key to get its outcome without a second charge"
    )


class FeedInterrupted(DomainError):
    """The live feed ended on the server's side (shutdown): reconnect, to any replica, with the last
    cursor; nothing is lost or repeated."""

    reason = "FEED_INTERRUPTED"
    message = "The live feed was interrupted; reconnect with the last event id"


class Internal(DomainError):
    """A fault on our side; the details stay in the server log."""

    reason = "INTERNAL"
    message = "Internal server error"


# Refusals the edge (Envoy) gives by itself, before a request reaches the service. They are part of
# the same table so that every text a client can see is stated here once; envoy/render.py renders
# Envoy's local replies and the Lua filter's allow-list from it.
class InvalidRequest(DomainError):
    reason = "INVALID_REQUEST"
    message = "Validation failed"


class InvalidQueryParameter(DomainError):
    """A REST query parameter the route does not define, given twice, or with a malformed value."""

    reason = "INVALID_QUERY_PARAMETER"
    message = "Query parameters must be ones this route defines, each at most once, with valid values"


class InvalidJsonBody(DomainError):
    reason = "INVALID_JSON_BODY"
    message = "Invalid JSON request body"


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"
    message = "Insufficient permissions"


class RouteNotFound(DomainError):
    reason = "NOT_FOUND"
    message = "Resource not found"


class UnknownMethod(DomainError):
    """A gRPC caller named a service or method the API does not have."""

    reason = "UNKNOWN_METHOD"
    message = "Unknown service or method"


class MethodNotAllowed(DomainError):
    reason = "METHOD_NOT_ALLOWED"
    message = "Method not allowed"


class RequestTimedOut(DomainError):
    reason = "DEADLINE_EXCEEDED"
    message = "Request timed out"


class RequestBodyTooLarge(DomainError):
    reason = "REQUEST_BODY_TOO_LARGE"
    message = "Request body too large"


class RequestHeadersTooLarge(DomainError):
    reason = "REQUEST_HEADERS_TOO_LARGE"
    message = "Request headers too large"


class RateLimited(DomainError):
    """The caller sent more superlikes than the edge's per-caller limit allows (Envoy's local rate
    limit); nothing was charged, and REST callers get Retry-After."""

    reason = "RATE_LIMITED"
    message = "Too many requests; retry shortly"


class ServiceUnavailable(DomainError):
    """The server is unreachable or unhealthy (the edge's answer; the server's own is StorageUnavailable)."""

    reason = "UNAVAILABLE"
    message = "Service temporarily unavailable"


class RequestRejected(DomainError):
    """Any other refusal of the edge's HTTP layer."""

    reason = "REQUEST_REJECTED"
    message = "Request could not be processed"


# Admin-side refusals (CLI); never reach the gRPC API.
class NoSuchStream(DomainError):
    """An admin command named a stream that does not exist (the API's refusal is StreamNotFound)."""

    reason = "STREAM_NOT_FOUND"
    message = "Stream not found"


class UserNotFound(DomainError):
    reason = "USER_NOT_FOUND"
    message = "User not found"


class InvalidAdminInput(DomainError):
    reason = "INVALID_ARGUMENT"
    message = "Invalid input"


class Conflict(DomainError):
    reason = "CONFLICT"
    message = "Resource already exists or cannot be changed in its current state"
