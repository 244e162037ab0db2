"""The OpenAPI 3.1 document of the REST edge, built from the descriptor set Envoy transcodes with and
the one error table: what external apps generate their clients from (gen/openapi.json, `make gen`).

Everything is derived, nothing restated: the paths, verbs, parameters and bodies from each method's
google.api.http annotation; the success schemas from the response messages, as Envoy's transcoder
prints them (JSON names such as `_id`, every field present, 64-bit integers as strings); the error
envelope for every HTTP status the edge can answer, with the reasons and texts behind each.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from server.api.status_codes import (
    EDGE_ERRORS,
    EDGE_INVALID_BODY,
    EDGE_LUA_REFUSALS,
    EDGE_OTHER_CLIENT_ERROR,
    EDGE_OTHER_ERROR,
    HTTP_STATUS_OF_CODE,
    STATUS_CODES,
)
from server.domain import errors

SERVICE = "allmine.livestream.chat.v1.LiveStreamChat"
# A server-streamed HttpBody is the live feed as Server-Sent Events, which EventSource opens without
# headers: the edge also takes its token as ?access_token= (envoy/error_envelope.lua).
HTTP_BODY = "google.api.HttpBody"
_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_]*)(=[^}]*)?\}")
T = descriptor_pb2.FieldDescriptorProto
_SCALARS: dict[int, dict[str, Any]] = {
    T.TYPE_STRING: {"type": "string"},
    T.TYPE_BOOL: {"type": "boolean"},
    T.TYPE_INT32: {"type": "integer", "format": "int32"},
    T.TYPE_SINT32: {"type": "integer", "format": "int32"},
    T.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    # proto3 JSON: 64-bit integers are strings (JavaScript numbers would lose digits).
    T.TYPE_INT64: {"type": "string", "pattern": "^-?[0-9]+$", "format": "int64"},
    T.TYPE_SINT64: {"type": "string", "pattern": "^-?[0-9]+$", "format": "int64"},
    T.TYPE_UINT64: {"type": "string", "pattern": "^[0-9]+$"},
    T.TYPE_DOUBLE: {"type": "number"},
    T.TYPE_FLOAT: {"type": "number"},
}
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
# The client went away (499) gets no answer; every other status comes with the envelope.
_UNANSWERED = {499}


def build_openapi(descriptor_set: bytes, version: str) -> dict[str, Any]:
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file
    messages = _messages_by_name(files)
    service, package = _service(files)
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for method in service.method:
        rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        if verb is None or verb == "custom":
            continue
        request = messages[method.input_type.lstrip(".")]
        template = getattr(rule, verb)
        path, in_path = _openapi_path(template, request)
        output = method.output_type.lstrip(".")
        event_stream = output == HTTP_BODY and method.server_streaming
        operation: dict[str, Any] = {
            "operationId": method.name,
            "summary": f"{method.name} (gRPC {package}.{service.name}/{method.name})",
            "parameters": _parameters(request, in_path, rule.body),
            "responses": {
                "200": _EVENT_STREAM if event_stream else _success(output, messages, schemas),
                **_error_responses(),
            },
        }
        if event_stream:
            operation["parameters"].append(_LAST_EVENT_ID_HEADER)
            operation["security"] = [{"bearerAuth": []}, {"accessTokenQuery": []}]
        if rule.body:
            operation["requestBody"] = _request_body(request, in_path, rule.body, messages, schemas)
        if method.name == "SendSuperlike":
            operation["parameters"].append(_IDEMPOTENCY_KEY_HEADER)
        paths.setdefault(path, {})[verb] = operation
    schemas["ErrorEnvelope"] = _ERROR_ENVELOPE
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Allmine live-stream chat: superlikes",
            "version": version,
            "description": "REST edge of allmine.livestream.chat.v1.LiveStreamChat (Envoy transcoding to gRPC). "
            "Every error is the envelope {isSuccess, statusCode, data, errors, timestamp} with the HTTP status "
            "equal to statusCode.",
        },
        "security": [{"bearerAuth": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                # Only where an operation lists it (the event stream).
                "accessTokenQuery": {"type": "apiKey", "in": "query", "name": "access_token"},
            },
            "schemas": dict(sorted(schemas.items())),
        },
    }


def _messages_by_name(files: Any) -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        found[name] = message
        for nested in message.nested_type:
            walk(name, nested)

    for file in files:
        for message in file.message_type:
            walk(file.package, message)
    return found


def _service(files: Any) -> tuple[descriptor_pb2.ServiceDescriptorProto, str]:
    for file in files:
        for service in file.service:
            if f"{file.package}.{service.name}" == SERVICE:
                return service, file.package
    raise ValueError(f"{SERVICE} is not in the descriptor set")


def _field(message: descriptor_pb2.DescriptorProto, name: str) -> descriptor_pb2.FieldDescriptorProto:
    return next(field for field in message.field if field.name == name)


def _openapi_path(template: str, request: descriptor_pb2.DescriptorProto) -> tuple[str, set[str]]:
    """`/a/{stream_id}/b` -> `/a/{streamId}/b` (parameters by JSON name, as clients know them)."""
    in_path = {match.group(1) for match in _VARIABLE.finditer(template)}
    path = _VARIABLE.sub(lambda match: "{" + _field(request, match.group(1)).json_name + "}", template)
    return path, in_path


def _parameters(request: descriptor_pb2.DescriptorProto, in_path: set[str], body: str) -> list[dict[str, Any]]:
    parameters = [
        {"name": field.json_name, "in": "path", "required": True, "schema": _SCALARS[field.type]}
        for field in request.field
        if field.name in in_path
    ]
    if body != "*":  # the fields neither in the path nor in the body are the query string
        parameters += [
            {"name": field.json_name, "in": "query", "required": False, "schema": _SCALARS[field.type]}
            for field in request.field
            if field.name not in in_path and field.name != body
        ]
    return parameters


def _request_body(
    request: descriptor_pb2.DescriptorProto,
    in_path: set[str],
    body: str,
    messages: dict[str, descriptor_pb2.DescriptorProto],
    schemas: dict[str, Any],
) -> dict[str, Any]:
    fields = [field for field in request.field if field.name not in in_path]
    if body != "*":
        fields = [_field(request, body)]
    properties = {field.json_name: _field_schema(field, messages, schemas) for field in fields}
    # Optional: an empty POST is a request with every field at its default.
    return {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object", "properties": properties}}},
    }


def _success(name: str, messages: dict[str, descriptor_pb2.DescriptorProto], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": "Success: the response message as JSON",
        "content": {"application/json": {"schema": _message_ref(name, messages, schemas)}},
    }


def _message_ref(
    name: str, messages: dict[str, descriptor_pb2.DescriptorProto], schemas: dict[str, Any]
) -> dict[str, str]:
    message = messages[name]
    if message.name not in schemas:
        schemas[message.name] = {}  # placeholder first: a message may refer to itself
        properties = {field.json_name: _field_schema(field, messages, schemas) for field in message.field}
        # The transcoder prints every field, defaults included (always_print_primitive_fields).
        schemas[message.name] = {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }
    return {"$ref": f"#/components/schemas/{message.name}"}


def _field_schema(
    field: descriptor_pb2.FieldDescriptorProto,
    messages: dict[str, descriptor_pb2.DescriptorProto],
    schemas: dict[str, Any],
) -> dict[str, Any]:
    if field.type == T.TYPE_MESSAGE:
        item: dict[str, Any] = _message_ref(field.type_name.lstrip("."), messages, schemas)
    elif field.type in _SCALARS:
        item = dict(_SCALARS[field.type])
    else:
        raise ValueError(f"field {field.name}: type {field.type} has no JSON schema here yet")
    if field.label == T.LABEL_REPEATED:
        return {"type": "array", "items": item}
    return item


_IDEMPOTENCY_KEY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Charged at most once per key (1 to 255 printable ASCII characters); equal to requestId when both are sent",
    "schema": {"type": "string"},
}

_EVENT_STREAM = {
    "description": "Server-Sent Events, open while the client listens: `retry:` first, then `id:` (the "
    "cursor), `event: superlike` and `data:` (a Superlike as JSON) per superlike, `: ping` when idle, "
    "`event: error` with the envelope as data when the stream ends on a failure",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}

_LAST_EVENT_ID_HEADER = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "The last event id received (EventSource sends it when it reconnects); resumes after it",
    "schema": {"type": "string"},
}

_ERROR_ENVELOPE = {
    "type": "object",
    "properties": {
        "isSuccess": {"const": False},
        "statusCode": {"type": "integer"},
        "data": {"type": "null"},
        "errors": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "timestamp": {"type": "string", "pattern": TIMESTAMP_PATTERN},
    },
    "required": ["isSuccess", "statusCode", "data", "errors", "timestamp"],
    "additionalProperties": False,
}


def _reasons_by_status() -> dict[int, list[type[errors.DomainError]]]:
    """Every HTTP status the edge can answer, with the errors behind it: the server's (through the
    transcoder's gRPC->HTTP mapping) and Envoy's own."""
    by_status: dict[int, list[type[errors.DomainError]]] = defaultdict(list)

    def add(status: int, kind: type[errors.DomainError]) -> None:
        if status not in _UNANSWERED and kind not in by_status[status]:
            by_status[status].append(kind)

    edge_only = {
        *(edge.rest for edge in EDGE_ERRORS),
        *(edge.grpc for edge in EDGE_ERRORS),
        *EDGE_LUA_REFUSALS,
        EDGE_INVALID_BODY,
        EDGE_OTHER_CLIENT_ERROR,
        EDGE_OTHER_ERROR.rest,
        EDGE_OTHER_ERROR.grpc,
    } - {errors.Unauthenticated, errors.Internal}  # raised by the server too
    for kind, code in STATUS_CODES.items():
        if kind not in edge_only:  # the server's: HTTP status from the transcoder's mapping
            add(HTTP_STATUS_OF_CODE[code], kind)
    for edge in EDGE_ERRORS:
        add(edge.http_status, edge.rest)
    for kind in (*EDGE_LUA_REFUSALS, EDGE_INVALID_BODY, EDGE_OTHER_CLIENT_ERROR):
        add(400, kind)
    add(EDGE_OTHER_ERROR.http_status, EDGE_OTHER_ERROR.rest)
    return by_status


def _error_responses() -> dict[str, Any]:
    responses = {}
    for status, kinds in sorted(_reasons_by_status().items()):
        texts = "; ".join(f"{kind.reason}: {' / '.join((kind.message, *kind.other_messages))}" for kind in kinds)
        responses[str(status)] = {
            "description": f"The error envelope. {texts}",
            "content": {
                "application/json": {
                    "schema": {
                        "allOf": [
                            {"$ref": "#/components/schemas/ErrorEnvelope"},
                            {"properties": {"statusCode": {"const": status}}},
                        ]
                    }
                }
            },
        }
    return responses
