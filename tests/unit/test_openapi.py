"""gen/openapi.json as external apps read it: routes, parameters and schemas from the proto's HTTP
annotations, as the edge renders them, and the error envelope for every status the edge answers."""

from __future__ import annotations

import json
from pathlib import Path

from server.api.openapi import build_openapi

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = json.loads((ROOT / "gen" / "openapi.json").read_text())
SCHEMAS = DOCUMENT["components"]["schemas"]


def test_the_document_is_what_the_descriptor_set_builds() -> None:
    assert build_openapi((ROOT / "gen" / "livestream_chat.pb").read_bytes(), DOCUMENT["info"]["version"]) == DOCUMENT


def test_every_rest_route_with_its_parameters_by_json_name() -> None:
    operations = {
        (verb, path): [
            (p["name"], p["in"], p["required"], p["schema"].get("format", p["schema"]["type"]))
            for p in op["parameters"]
        ]
        for path, ops in DOCUMENT["paths"].items()
        for verb, op in ops.items()
    }
    assert operations == {
        ("post", "/api/v1/live-stream/{streamId}/chat/superlike"): [
            ("streamId", "path", True, "string"),
            ("Idempotency-Key", "header", False, "string"),
        ],
        ("get", "/api/v1/live-stream/{streamId}/chat/superlikes"): [
            ("streamId", "path", True, "string"),
            ("pageSize", "query", False, "int32"),
            ("pageToken", "query", False, "string"),
        ],
        ("get", "/api/v1/live-stream/{streamId}/chat/superlikes/events"): [
            ("streamId", "path", True, "string"),
            ("after", "query", False, "string"),
            ("backlog", "query", False, "int32"),
            ("Last-Event-ID", "header", False, "string"),
        ],
        ("get", "/api/v1/live-stream/{streamId}/chat/top-supporters"): [
            ("streamId", "path", True, "string"),
            ("limit", "query", False, "int32"),
        ],
    }
    send = DOCUMENT["paths"]["/api/v1/live-stream/{streamId}/chat/superlike"]["post"]
    assert send["requestBody"] == {
        "required": False,
        "content": {
            "application/json": {"schema": {"type": "object", "properties": {"requestId": {"type": "string"}}}}
        },
    }


def test_success_schemas_are_the_transcoders_json() -> None:
    send = SCHEMAS["SendSuperlikeResponse"]
    assert send["required"] == [
        "streamId",
        "senderId",
        "senderSnapshot",
        "price",
        "timestamp",
        "superlikeId",
        "senderBalance",
    ]
    assert send["properties"]["senderBalance"] == {"type": "string", "pattern": "^-?[0-9]+$", "format": "int64"}
    assert send["properties"]["price"] == {"type": "integer", "format": "int32"}
    assert SCHEMAS["SenderSnapshot"]["required"] == ["_id", "username", "name", "surname", "profilePhoto"]
    assert SCHEMAS["TopSupporter"]["properties"]["coins"]["type"] == "string"
    assert SCHEMAS["ListSuperlikesResponse"]["properties"]["superlikes"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Superlike"},
    }


def test_every_status_the_edge_answers_has_the_envelope_and_bearer_auth_is_required() -> None:
    statuses = ["200", "400", "401", "403", "404", "405", "408", "409", "413", "429", "431", "500", "503", "504"]
    for ops in DOCUMENT["paths"].values():
        for operation in ops.values():
            assert list(operation["responses"]) == statuses
            refused = operation["responses"]["409"]["content"]["application/json"]["schema"]
            assert refused == {
                "allOf": [
                    {"$ref": "#/components/schemas/ErrorEnvelope"},
                    {"properties": {"statusCode": {"const": 409}}},
                ]
            }
    assert (
        "INSUFFICIENT_BALANCE: Insufficient coin balance for a superlike"
        in (
            DOCUMENT["paths"]["/api/v1/live-stream/{streamId}/chat/superlike"]["post"]["responses"]["409"][
                "description"
            ]
        )
    )
    assert SCHEMAS["ErrorEnvelope"]["required"] == ["isSuccess", "statusCode", "data", "errors", "timestamp"]
    assert DOCUMENT["security"] == [{"bearerAuth": []}]
    assert DOCUMENT["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def test_the_event_stream_is_text_event_stream_and_takes_its_token_from_the_query_too() -> None:
    events = DOCUMENT["paths"]["/api/v1/live-stream/{streamId}/chat/superlikes/events"]["get"]
    assert list(events["responses"]["200"]["content"]) == ["text/event-stream"]
    assert events["security"] == [{"bearerAuth": []}, {"accessTokenQuery": []}]
    assert DOCUMENT["components"]["securitySchemes"]["accessTokenQuery"] == {
        "type": "apiKey",
        "in": "query",
        "name": "access_token",
    }
