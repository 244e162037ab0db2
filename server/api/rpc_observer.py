"""One record per LiveStreamChat call: a gRPC server interceptor times each call and hands its record
(method, status code, outcome reason, caller, Envoy's request id) to the observers the composition
root wires (metrics, the RPC log line).

The servicer knows what the interceptor cannot see from outside: who the caller is once the token is
verified, and which refusal ended the call. It notes them on the current call's record
(note_caller, note_refusal), which lives in a context variable of the call's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2

log = logging.getLogger(__name__)

OBSERVED_SERVICE = "/" + chat_pb2.DESCRIPTOR.services_by_name["LiveStreamChat"].full_name + "/"
REQUEST_ID_METADATA = "x-request-id"
# A client-chosen id that is echoed into logs must not be able to forge log lines or flood them.
MAX_REQUEST_ID = 128


@dataclass
class RpcRecord:
    method: str
    request_id: str
    caller_id: str = ""
    code: str = "OK"
    reason: str = "OK"
    latency_seconds: float = 0.0


RpcObserverCallback = Callable[[RpcRecord], None]
_current: contextvars.ContextVar[RpcRecord | None] = contextvars.ContextVar("livechat_rpc", default=None)


def note_caller(subject: str) -> None:
    record = _current.get()
    if record is not None:
        record.caller_id = subject


def note_refusal(code: grpc.StatusCode, reason: str) -> None:
    record = _current.get()
    if record is not None:
        record.code, record.reason = code.name, reason


def _request_id(metadata: Sequence[tuple[str, Any]] | None) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_METADATA:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            return "".join(ch for ch in text[:MAX_REQUEST_ID] if ch.isprintable())
    return ""


class RpcObserver(grpc.aio.ServerInterceptor):
    def __init__(self, observers: Sequence[RpcObserverCallback]) -> None:
        self._observers = tuple(observers)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        path = handler_call_details.method
        if handler is None or not path.startswith(OBSERVED_SERVICE):
            return handler  # health checks and reflection stay out of the logs and metrics
        method = path[len(OBSERVED_SERVICE) :]
        request_id = _request_id(handler_call_details.invocation_metadata)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, request_id),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, method, request_id),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    @contextlib.contextmanager
    def _observing(self, method: str, request_id: str, context: grpc.aio.ServicerContext) -> Iterator[None]:
        """Times the call and reports its record however it ends (for a stream: when it closes)."""
        record = RpcRecord(method, request_id)
        _current.set(record)
        started = time.perf_counter()
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):
            # The client left (or the server is stopping): grpc.aio cancels the handler's task, or
            # closes a streaming handler's generator, before context.cancelled() says so.
            if record.code == "OK":
                record.code = record.reason = "CANCELLED"
            raise
        except BaseException:
            if record.code == "OK":  # ended without a noted refusal: a bug upstream
                record.code = record.reason = "CANCELLED" if context.cancelled() else "UNKNOWN"
            raise
        finally:
            record.latency_seconds = time.perf_counter() - started
            self._report(record)

    def _unary(self, behavior: Callable[..., Any], method: str, request_id: str) -> Callable[..., Any]:
        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with self._observing(method, request_id, context):
                return await behavior(request, context)

        return observed

    def _stream(self, behavior: Callable[..., Any], method: str, request_id: str) -> Callable[..., Any]:
        # grpc.aio runs a streaming handler as written: an async generator is iterated, a coroutine
        # (writing with context.write) awaited; the wrapper must be of the same kind.
        if inspect.isasyncgenfunction(behavior):

            async def observed_generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                with self._observing(method, request_id, context):
                    async for response in behavior(request, context):
                        yield response

            return observed_generator

        async def observed_writer(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with self._observing(method, request_id, context):
                return await behavior(request, context)

        return observed_writer

    def _report(self, record: RpcRecord) -> None:
        for observe in self._observers:
            try:
                observe(record)
            except Exception:  # an observer's fault must never change a caller's answer
                log.exception("RPC observer failed")
