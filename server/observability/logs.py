"""Log output: plain text or one JSON object per line (LIVECHAT_LOG_FORMAT=json), with credentials
scrubbed from every line whatever logged it.

The RPC log line (api/rpc_observer.py) carries only the method, outcome, latency, Envoy's request id
and the caller's id; the scrubbing below is the second line of defence, for a library or a traceback
that would quote a header, a token or a URL with `?access_token=`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
# With several workers (`livechat serve --workers N`) they share one output: every line says which.
WORKER_TEXT_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s [worker %(worker)s] %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

# A JWT (three base64url parts, the first a JSON header: "eyJ"), a bearer credential, an
# access_token query value, a PEM block: whatever would let a reader act as someone.
_SECRETS = (
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"), "[token]"),
    (re.compile(r"(?i)(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [token]"),
    (re.compile(r"(?i)(access_token=)[^&\s\"']*"), r"\1[token]"),
    (re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.DOTALL), "[key material]"),
)

# Fields a record may carry (the worker index, the RPC line's `extra`) that belong in the JSON object.
RECORD_FIELDS = ("worker", "method", "code", "reason", "latency_ms", "request_id", "caller_id")


# Every match of _SECRETS contains one of these once casefolded (casefolding maps the characters that
# case-insensitive matching also takes for an ASCII letter, such as the long s and the Kelvin sign, to
# that letter): four substring tests clear almost every line for a tenth of four regex passes.
def _may_hold_secret(text: str) -> bool:
    folded = text.casefold()
    return "eyj" in folded or "bearer" in folded or "access_token=" in folded or "-----begin " in folded


def scrub(text: str) -> str:
    if not _may_hold_secret(text):
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class _SecondsOnceFormatter(logging.Formatter):
    """Renders the date and time of each second once: strftime was the dearest step of a line, and
    the RPC lines of a busy second share it. Only for date formats without sub-second fields (the
    milliseconds are added from record.msecs)."""

    _second: tuple[int, str | None] | None = None
    _rendered = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        if datefmt is None:
            return super().formatTime(record, datefmt)
        second = (int(record.created), datefmt)
        if second != self._second:
            self._rendered = super().formatTime(record, datefmt)
            self._second = second
        return self._rendered


class ScrubbingTextFormatter(_SecondsOnceFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(_SecondsOnceFormatter):
    """One JSON object per line: time (UTC, milliseconds), level, logger, message, the RPC fields
    when present, and the traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": self.formatTime(record, DATE_FORMAT) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in RECORD_FIELDS:
            if hasattr(record, name):
                document[name] = getattr(record, name)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(document, ensure_ascii=False))


class _WorkerTag(logging.Filter):
    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


def configure_logging(level: str, log_format: str = "text", worker: int | None = None) -> None:
    """The root logger's one handler (stderr), in `log_format`; times in UTC. `worker`: the index
    every line carries (a field of its own in JSON), for a worker among several."""
    # What no line shows is not gathered for each record either (logging's documented switches):
    # the caller's file, line and function (a walk up the stack), the thread, the process.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    text_format = TEXT_FORMAT if worker is None else WORKER_TEXT_FORMAT
    formatter: logging.Formatter = (
        JsonFormatter() if log_format == "json" else ScrubbingTextFormatter(text_format, DATE_FORMAT)
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    if worker is not None:
        handler.addFilter(_WorkerTag(worker))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level)))


_rpc_log = logging.getLogger("server.rpc")


def log_rpc(method: str, code: str, reason: str, latency_ms: float, request_id: str, caller_id: str) -> None:
    """The one INFO line per RPC. In JSON the fields are keys of their own; in text, key=value."""
    fields = {
        "method": method,
        "code": code,
        "reason": reason,
        "latency_ms": round(latency_ms, 3),
        "request_id": request_id,
        "caller_id": caller_id,
    }
    _rpc_log.info(
        "%s %s reason=%s latency_ms=%.3f request_id=%s caller_id=%s",
        method,
        code,
        reason,
        fields["latency_ms"],
        request_id or "-",
        caller_id or "-",
        extra=fields,
    )
