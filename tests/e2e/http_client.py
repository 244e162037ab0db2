"""A minimal HTTP client for the e2e tests: the raw status, headers and body bytes, nothing parsed away."""

from __future__ import annotations

import http.client
import json
import re
import socket
from dataclasses import dataclass
from typing import Any

ENVELOPE_KEYS = ["isSuccess", "statusCode", "data", "errors", "timestamp"]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def superlike_path(stream_id: str) -> str:
    return f"/api/v1/live-stream/{stream_id}/chat/superlike"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    base_port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Response:
    connection = http.client.HTTPConnection("127.0.0.1", base_port, timeout=20)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Response(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=response.read(),
        )
    finally:
        connection.close()


def assert_envelope(response: Response, status: int, message: str) -> None:
    """The contract's error envelope, exactly: status, content type, key order, JSON types, message."""
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/json"
    document = json.loads(response.body, object_pairs_hook=list)
    assert [key for key, _ in document] == ENVELOPE_KEYS
    envelope = dict(document)
    assert envelope["isSuccess"] is False
    assert type(envelope["statusCode"]) is int and envelope["statusCode"] == status
    assert envelope["data"] is None
    assert envelope["errors"] == [message]
    assert TIMESTAMP.fullmatch(envelope["timestamp"])
    assert not any(name.startswith(("grpc-", "x-envoy-")) for name in response.headers)


def raw_request(
    port: int, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> Response:
    """HTTP/1.1 with exactly these bytes (no client-side validation), for inputs http.client refuses."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *(n + b": " + v for n, v in headers)]
    lines.append(b"Content-Length: %d" % len(body))
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        try:
            sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # Envoy may answer (and close) before it has read everything; its answer is what counts
        response = http.client.HTTPResponse(sock, method=method.decode("latin-1"))
        response.begin()
        return Response(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=response.read(),
        )
