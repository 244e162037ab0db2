"""Logs as operators search them, from the real processes behind the real Envoy: the server's JSON
line per call and Envoy's JSON access log line per request share Envoy's request id, and no token,
key material or access_token query value appears in either log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2
from allmine.livestream.chat.v1 import live_stream_chat_pb2_grpc as chat_grpc
from devstack.stack import Stack
from server.adapters.storage import Storage
from tests.conftest import SigningKeys
from tests.e2e.conftest import running_stack, stack_config
from tests.e2e.credentials import bearer_metadata, edge_token
from tests.e2e.http_client import request, superlike_path
from tests.support import build_world

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def json_stack(
    edge_storage: Storage, edge_database_url: str, signing_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    # `edge_storage` has migrated the database; this stack's server shares it with the edge's.
    config = stack_config(tmp_path_factory.mktemp("json-logs"), edge_database_url, signing_keys)
    config.extra_server_env["LIVECHAT_LOG_FORMAT"] = "json"
    with running_stack(config) as stack:
        yield stack


def _json_lines(path: Path) -> list[dict]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _wait_for(read: Callable[[], list[dict]], count: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = read()
        if len(found) >= count:
            return found
        time.sleep(0.1)
    return read()


async def test_each_call_logs_one_json_line_per_process_with_one_request_id_and_no_credentials(
    json_stack: Stack, edge_storage: Storage, signing_keys: SigningKeys
) -> None:
    world = await build_world(edge_storage, coins=100, price=10)
    token = edge_token(signing_keys, world.viewer_id)
    port = json_stack.config.http_port
    history = f"/api/v1/live-stream/{world.stream_id}/chat/superlikes"
    missing_stream_events = "/api/v1/live-stream/64d15f9e2e6c8f4d5a1230ee/chat/superlikes/events"

    def calls() -> list[int]:
        statuses = [
            request(port, "POST", superlike_path(world.stream_id), {"Authorization": f"Bearer {token}"}).status,
            request(port, "GET", f"{history}?access_token={token}", {"Authorization": f"Bearer {token}"}).status,
            request(port, "GET", history, {"Authorization": f"Bearer {token[:-4]}AAAA"}).status,
            # EventSource's way in: the token in the query (Envoy moves it into Authorization).
            request(port, "GET", f"{missing_stream_events}?access_token={token}&backlog=0").status,
        ]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            chat_grpc.LiveStreamChatStub(channel).SendSuperlike(
                chat_pb2.SendSuperlikeRequest(stream_id=world.stream_id), metadata=bearer_metadata(token), timeout=10
            )
        return statuses

    assert await asyncio.to_thread(calls) == [200, 400, 401, 404]

    def server_calls() -> list[dict]:
        return [line for line in _json_lines(json_stack.server_log) if line.get("logger") == "server.rpc"]

    rpc = _wait_for(server_calls, 3)
    assert [(line["method"], line["code"], line["reason"], line["caller_id"]) for line in rpc] == [
        ("SendSuperlike", "OK", "OK", world.viewer_id),
        ("StreamSuperlikeEvents", "NOT_FOUND", "STREAM_NOT_FOUND", world.viewer_id),
        ("SendSuperlike", "OK", "OK", world.viewer_id),
    ]
    access = _wait_for(lambda: [line for line in _json_lines(json_stack.envoy_log) if "request_id" in line], 5)
    assert [(line["method"], line["status"], line["caller_id"]) for line in access] == [
        ("POST", 200, world.viewer_id),
        ("GET", 400, None),
        ("GET", 401, None),  # no verified caller
        ("GET", 404, world.viewer_id),
        ("POST", 200, world.viewer_id),
    ]
    assert access[0]["path"] == superlike_path(world.stream_id)
    assert access[1]["path"] == history  # query strings are never logged
    assert access[3]["path"] == missing_stream_events
    # The server's lines carry the id Envoy gave the request (a client's own x-request-id is replaced).
    assert [line["request_id"] for line in rpc] == [access[i]["request_id"] for i in (0, 3, 4)]
    assert all(line["request_id"] for line in access)

    signature, payload = token.split(".")[2], token.split(".")[1]
    for log in (json_stack.server_log, json_stack.envoy_log):
        text = log.read_text()
        assert signature[:16] not in text and payload[:16] not in text
        assert "PRIVATE KEY" not in text
