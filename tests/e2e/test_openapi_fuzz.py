"""Schemathesis drives every operation of gen/openapi.json through the real Envoy and server: valid
and invalid requests (schema-conforming and schema-violating), with a valid token, an invalid one or
none, on a stream that exists or any other id. Every answer must conform to the document: no 5xx,
a documented status, the documented content type, and a body matching the status's schema (the
success message as the transcoder prints it, or the envelope).

Seeded and bounded: Hypothesis runs derandomized with a fixed number of examples, so each run sends
the same requests and takes the same few seconds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import Edge
from tests.e2e.http_client import request
from tests.support import World, build_world

pytestmark = pytest.mark.e2e

DOCUMENT = Path(__file__).resolve().parents[2] / "gen" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(str(DOCUMENT))
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_MODE = 40


@pytest_asyncio.fixture(scope="module")
async def fuzz_world(edge: Edge) -> World:
    # One stream for the module: the superlikes the POST operation sends are the history the GET
    # operations then list. Price 1 and a large wallet keep the valid token's superlikes succeeding.
    return await build_world(edge.storage, coins=1_000_000, price=1)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
async def test_every_answer_conforms_to_the_openapi_document(  # type: ignore[no-untyped-def]
    edge: Edge, fuzz_world: World, operation, mode: GenerationMode
) -> None:
    world = fuzz_world
    streaming = "text/event-stream" in operation.definition.raw["responses"]["200"]["content"]
    tokens = {"valid": edge.token_for(world.viewer_id), "invalid": "not-a-jwt", "missing": None}
    base_url = edge.stack.http_url

    @given(
        case=operation.as_strategy(generation_mode=mode),
        token=st.sampled_from(["valid", "valid", "invalid", "missing"]),
        real=st.booleans(),
    )
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case, token: str, real: bool) -> None:  # type: ignore[no-untyped-def]
        if streaming and token == "valid":
            real = False  # a live feed that is allowed to open never ends: any other id answers at once
        if real and "streamId" in (case.path_parameters or {}):
            case.path_parameters["streamId"] = world.stream_id
        headers = {} if tokens[token] is None else {"Authorization": f"Bearer {tokens[token]}"}
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=20)

    await asyncio.to_thread(run)


def test_envoy_serves_the_document_to_anyone(edge: Edge) -> None:
    response = request(edge.http_port, "GET", "/api/v1/openapi.json")
    assert (response.status, response.headers["content-type"]) == (200, "application/json")
    assert response.body == DOCUMENT.read_bytes()
    # Only GET: other methods are refused like on any route (the envelope, no document).
    assert request(edge.http_port, "POST", "/api/v1/openapi.json").status in (404, 405)
