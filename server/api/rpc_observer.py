"""One record per LiveStreamChat call: each method of the servicer is wrapped, where the composition
root registers it, so that every call is timed and its record (method, status code, outcome reason,
caller, Envoy's request id) handed to the observers it wires (metrics, the RPC log line).

Wrapped at registration rather than seen through a gRPC server interceptor: grpc.aio runs an
interceptor as one more coroutine per call, and an interceptor that wants the call's request id in
its record must also build a new method handler for every call (its id is in the call's metadata).

The servicer knows what the wrapper cannot see from outside: who the caller is once the token is
verified, and which refusal ended the call. It notes them on the current call's record
(note_caller, note_refusal), which lives in a context variable of the call's task.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import grpc

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2

log = logging.getLogger(__name__)

# Every LiveStreamChat method is observed; health checks and reflection stay out of the logs and metrics.
OBSERVED_METHODS = tuple(chat_pb2.DESCRIPTOR.services_by_name["LiveStreamChat"].methods_by_name)
REQUEST_ID_METADATA = "x-request-id"
# A client-chosen id that is echoed into logs must not be able to forge log lines or flood them.
MAX_REQUEST_ID = 128


@dataclass(slots=True)
class RpcRecord:
    method: str
    request_id: str
    # The call's metadata as grpc.aio gave it once: every context.invocation_metadata() builds it
    # anew from the C core, and a call reads several headers (call_metadata below). It holds the
    # caller's credentials: never in a repr.
    metadata: tuple[Any, ...] = field(default=(), repr=False)
    # The call it belongs to: a task started inside a call inherits its record (context variables
    # are copied), and must not read that call's headers as another's.
    context: Any = field(default=None, repr=False)
    caller_id: str = ""
    code: str = "OK"
    reason: str = "OK"
    latency_seconds: float = 0.0
    # Ends the record (times it, hands it to the observers) once: when the call ends, or earlier
    # through finish_call. None once done.
    finish: Callable[[RpcRecord], None] | None = field(default=None, repr=False)


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


def finish_call() -> None:
    """Ends the current call's record now. For a refusal: grpc.aio sends an abort's status before
    the handler unwinds, so a record ended on the way out would be logged after the caller already
    has the answer."""
    record = _current.get()
    if record is not None:
        finish_call_of(record)


def finish_call_of(record: RpcRecord) -> None:
    """Ends `record` unless finish_call already did."""
    if record.finish is not None:
        finish, record.finish = record.finish, None
        finish(record)


def call_metadata(context: grpc.aio.ServicerContext) -> Sequence[tuple[str, Any]]:
    """The current call's invocation metadata, read from grpc once per observed call."""
    record = _current.get()
    if record is not None and record.context is context:
        return record.metadata
    return context.invocation_metadata() or ()


def _request_id(metadata: Sequence[tuple[str, Any]] | None) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_METADATA:
            text = (value.decode("latin-1") if isinstance(value, bytes) else str(value))[:MAX_REQUEST_ID]
            return text if text.isprintable() else "".join(ch for ch in text if ch.isprintable())
    return ""


def _note_unfinished(record: RpcRecord, error: BaseException, context: grpc.aio.ServicerContext) -> None:
    """A call that ended by an exception without a noted refusal."""
    if record.code != "OK":
        return
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        # The client left (or the server is stopping): grpc.aio cancels the handler's task, or
        # closes a streaming handler's generator, before context.cancelled() says so.
        record.code = record.reason = "CANCELLED"
    else:  # a bug upstream
        record.code = record.reason = "CANCELLED" if context.cancelled() else "UNKNOWN"


class RpcObserver:
    def __init__(self, observers: Sequence[RpcObserverCallback]) -> None:
        self._observers = tuple(observers)

    def observe(self, servicer: object, methods: Iterable[str]) -> SimpleNamespace:
        """The servicer's `methods`, each reporting one record per call, as attributes of an object
        that stands in for the servicer where its methods are registered."""
        return SimpleNamespace(**{method: self._observed(getattr(servicer, method), method) for method in methods})

    def _observed(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        # grpc.aio runs a handler as written: an async generator is iterated, a coroutine (a unary
        # method, or a streaming one writing with context.write) awaited; the wrapper must be of the
        # same kind. A stream's record is taken when it closes.
        if inspect.isasyncgenfunction(behavior):

            async def observed_generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                record = self._begin(method, context)
                try:
                    async for response in behavior(request, context):
                        yield response
                except BaseException as error:
                    _note_unfinished(record, error, context)
                    raise
                finally:
                    finish_call_of(record)

            return observed_generator

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            record = self._begin(method, context)
            try:
                return await behavior(request, context)
            except BaseException as error:
                _note_unfinished(record, error, context)
                raise
            finally:
                finish_call_of(record)

        return observed

    def _begin(self, method: str, context: grpc.aio.ServicerContext) -> RpcRecord:
        metadata = context.invocation_metadata() or ()
        record = RpcRecord(method, _request_id(metadata), metadata, context)
        started = time.perf_counter()
        record.finish = lambda ended: self._end(ended, started)
        _current.set(record)
        return record

    def _end(self, record: RpcRecord, started: float) -> None:
        record.latency_seconds = time.perf_counter() - started
        for observe in self._observers:
            try:
                observe(record)
            except Exception:  # an observer's fault must never change a caller's answer
                log.exception("RPC observer failed")
