"""The REST routes of LiveStreamChat as its proto's google.api.http annotations define them, for the
edge (envoy/render.py hands them to error_envelope.lua): which path and method each has, and which
query parameters it takes (the request fields neither in the path nor in the body, by JSON name)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import FieldDescriptor

from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2

_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_]*)(=[^}]*)?\}")
_LUA_MAGIC = re.compile(r"([%^$().\[\]*+\-?])")
_QUERY_TYPES = {FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_STRING: "string"}


@dataclass(frozen=True)
class RestRoute:
    method: str  # GET, POST, ...
    template: str  # /api/v1/live-stream/{stream_id}/chat/superlikes
    lua_pattern: str  # the template as an anchored Lua pattern, a trailing slash allowed
    query_parameters: dict[str, str]  # JSON name -> "int32" | "string"

    def path_regex(self, segment: str) -> str:
        """The template as a regex for Envoy's route matchers (RE2, whole path), each variable one
        `segment`, a trailing slash allowed."""
        literals = _VARIABLE.split(self.template)[::3]
        return segment.join(re.escape(literal) for literal in literals) + "/?"

    def example_path(self) -> str:
        return _VARIABLE.sub("x", self.template)


def rest_routes() -> list[RestRoute]:
    service = chat_pb2.DESCRIPTOR.services_by_name["LiveStreamChat"]
    routes = []
    for method in service.methods:
        rule: http_pb2.HttpRule = method.GetOptions().Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        if verb is None or verb == "custom":
            continue
        template = getattr(rule, verb)
        in_path = {match.group(1) for match in _VARIABLE.finditer(template)}
        query: dict[str, str] = {}
        if rule.body != "*":
            for field in method.input_type.fields:
                if field.name in in_path or field.name == rule.body:
                    continue
                if field.type not in _QUERY_TYPES or field.is_repeated:
                    raise ValueError(
                        f"{method.full_name}: query parameter {field.name} has a type the edge cannot check"
                    )
                query[field.json_name] = _QUERY_TYPES[field.type]
        routes.append(RestRoute(verb.upper(), template, _lua_pattern(template), query))
    return routes


def _lua_pattern(template: str) -> str:
    parts = _VARIABLE.split(template)
    # split() yields literal, name, suffix, literal, name, suffix, ..., literal.
    literals = parts[::3]
    return "^" + "[^/]+".join(_LUA_MAGIC.sub(r"%\1", literal) for literal in literals) + "/?$"
