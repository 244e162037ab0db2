"""envoy/render.py's fast twins: error_envelope.lua runs only on the requests it has work on.

A twin is a route of envoy.yaml with a narrower match and that filter disabled. The tests below model
Envoy's route matching (the parts of it the config uses) and what error_envelope.lua's request
function does, and check over a grid of requests that a twin only ever takes a request the Lua would
leave alone, and sends it where its route would have."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from devstack.stack import load_envoy_renderer
from server.api import status_codes
from server.api.rest_routes import rest_routes

renderer = load_envoy_renderer()

LUA = "envoy.filters.http.lua"
STREAM = "64d15f9e2e6c8f4d5a123000"
GRPC_CONTENT_TYPE = re.compile(r"application/grpc(\+.*)?")


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def rendered_routes() -> list[dict[str, Any]]:
    return _hcm(renderer.render())["route_config"]["virtual_hosts"][0]["routes"]


def is_twin(route: dict[str, Any]) -> bool:
    return route.get("typed_per_filter_config", {}).get(LUA, {}).get("disabled") is True


def test_every_route_to_the_server_has_its_fast_twins_right_before_it() -> None:
    assert [route["name"] for route in rendered_routes()] == [
        "illegal-header-name",
        "grpc-on-rest-path",
        "rest-live-feed (fast: GET /api/v1/live-stream/{stream_id}/chat/superlikes/events)",
        "rest-live-feed",
        "overlay",
        "openapi",
        "rest (fast: POST /api/v1/live-stream/{stream_id}/chat/superlike)",
        "rest (fast: GET /api/v1/live-stream/{stream_id}/chat/superlikes)",
        "rest (fast: GET /api/v1/live-stream/{stream_id}/chat/top-supporters)",
        "rest",
        "grpc-live-feed (fast)",
        "grpc-live-feed",
        "grpc-livestream-chat (fast)",
        "grpc-livestream-chat",
        "grpc-health (fast)",
        "grpc-health",
        "grpc-reflection-v1alpha (fast)",
        "grpc-reflection-v1alpha",
        "grpc-reflection-v1 (fast)",
        "grpc-reflection-v1",
        "not-found",
    ]
    # Only twins run without error_envelope.lua.
    assert all(is_twin(route) == ("(fast" in route["name"]) for route in rendered_routes())


def test_a_twin_is_its_route_with_a_narrower_match_and_without_error_envelope_lua() -> None:
    routes = rendered_routes()
    for index, twin in enumerate(routes):
        if not is_twin(twin):
            continue
        route = next(r for r in routes[index + 1 :] if not is_twin(r))
        assert twin["name"].startswith(route["name"] + " (fast")
        differs = {"name", "match", "typed_per_filter_config"}
        assert {k: v for k, v in twin.items() if k not in differs} == {
            k: v for k, v in route.items() if k not in differs
        }
        assert {k: v for k, v in twin["match"].items() if k != "headers"} == route["match"]
        assert twin["match"]["headers"]  # narrower: only header conditions are added
        assert twin["typed_per_filter_config"] == {
            **route.get("typed_per_filter_config", {}),
            LUA: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True},
        }


def test_the_rest_routes_to_the_server_drop_grpc_metadata_and_render_the_servers_errors() -> None:
    config = renderer.render()
    routes = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    rest = [r for r in routes if r["name"].startswith(("rest ", "rest-live-feed")) or r["name"] == "rest"]
    assert len(rest) == 6
    custom_response = next(f for f in _hcm(config)["http_filters"] if f["name"] == renderer.CUSTOM_RESPONSE_FILTER)
    assert custom_response["disabled"] is True  # nowhere else, above all not on gRPC answers
    for route in routes:
        per_filter = route.get("typed_per_filter_config", {})
        assert (renderer.CUSTOM_RESPONSE_FILTER in per_filter) == (route in rest)
        assert ("envoy.filters.http.header_mutation" in per_filter) == (route in rest)
    for route in rest:
        per_filter = route["typed_per_filter_config"]
        assert per_filter[renderer.CUSTOM_RESPONSE_FILTER]["custom_response_matcher"] == (
            renderer.upstream_error_matcher()
        )
        mutations = per_filter["envoy.filters.http.header_mutation"]["mutations"]
        assert [m["remove_on_match"]["key_matcher"] for m in mutations["request_mutations"]] == [
            {"prefix": "grpc-"},
            {"suffix": "-bin"},
        ]
        assert [m["remove_on_match"]["key_matcher"] for m in mutations["response_mutations"]] == [
            {"prefix": "grpc-"},
            {"prefix": "x-envoy-"},
        ]


def test_custom_response_can_read_every_text_of_the_table_from_grpc_message() -> None:
    # gRPC percent-encodes grpc-message outside printable ASCII and "%": the table's texts travel
    # verbatim, so custom_response's exact match on the header sees them as the server wrote them.
    matcher = renderer.upstream_error_matcher()
    by_text = matcher["matcher_list"]["matchers"][0]["on_match"]["matcher"]["matcher_tree"]
    assert by_text["input"]["typed_config"]["header_name"] == "grpc-message"
    texts = by_text["exact_match_map"]["map"]
    assert list(texts) == status_codes.client_messages()
    for text, answer in texts.items():
        assert re.fullmatch(r"[ -$&-~]+", text), text
        assert answer["action"]["typed_config"]["body"] == {"inline_string": text}


def test_header_names_that_are_not_metadata_keys_are_dropped_before_routing_and_the_request_refused() -> None:
    config = renderer.render()
    mutations = _hcm(config)["early_header_mutation_extensions"][0]["typed_config"]["mutations"]
    counted, dropped, marked = (
        next(i for i, m in enumerate(mutations) if "x-envoy-livechat-headers" in str(m)),
        next(i for i, m in enumerate(mutations) if "safe_regex" in str(m)),
        next(i for i, m in enumerate(mutations) if "x-envoy-livechat-illegal-header-name" in str(m)),
    )
    assert counted + 1 == dropped == marked - 1  # nothing else changes the headers in between
    illegal = re.compile(mutations[dropped]["remove_on_match"]["key_matcher"]["safe_regex"]["regex"])
    for name in ["x-foo!", "&q", "x-foo#", "x{y}", "a|b", "x~", "x*", "'", "`x", "x^y", "x-caf\xe9"]:
        assert illegal.fullmatch(name), name
    for name in [":path", ":authority", "authorization", "idempotency-key", "x-foo-bin", "x.y_z-0", "te"]:
        assert not illegal.fullmatch(name), name
    refusal = rendered_routes()[0]
    assert refusal["name"] == "illegal-header-name"
    assert refusal["match"] == {
        "prefix": "/",
        "headers": [{"name": "x-envoy-livechat-illegal-header-name", "string_match": {"exact": "true"}}],
    }
    assert refusal["direct_response"] == {"status": 400}
    assert refusal["metadata"]["filter_metadata"][LUA]["refuse_with"] == 400
    assert not is_twin(refusal)  # error_envelope.lua refuses it, for every kind of caller alike


# --- a model of Envoy's route choice and of error_envelope.lua's request function --------------------

Request = dict[str, str | None]  # ":method", ":path" (with the query), content-type, authorization, protocol


def _header_value(request: Request, name: str) -> str | None:
    return request["protocol"] if name == renderer.PROTOCOL_HEADER else request.get(name)


def _string_matches(string_match: dict[str, Any], value: str) -> bool:
    if "exact" in string_match:
        return value == string_match["exact"]
    if "prefix" in string_match:
        return value.startswith(string_match["prefix"])
    return re.fullmatch(string_match["safe_regex"]["regex"], value) is not None


def _takes(route: dict[str, Any], request: Request) -> bool:
    match, path = route["match"], str(request[":path"]).split("?")[0]
    if "prefix" in match and not path.startswith(match["prefix"]):
        return False
    if "path" in match and path != match["path"]:
        return False
    if "safe_regex" in match and not re.fullmatch(match["safe_regex"]["regex"], path):
        return False
    if "grpc" in match and not GRPC_CONTENT_TYPE.fullmatch(request["content-type"] or ""):
        return False
    for header in match.get("headers", []):
        value = _header_value(request, header["name"])
        if value is None and header.get("treat_missing_header_as_empty"):
            value = ""
        matched = value is not None and _string_matches(header["string_match"], value)
        if matched == bool(header.get("invert_match")):
            return False
    return True


def lua_leaves_alone(request: Request) -> bool:
    """error_envelope.lua's envoy_on_request would neither change nor refuse the request."""
    authorization, method = request["authorization"], request[":method"]
    if authorization is not None and not authorization.startswith("Bearer "):
        scheme = re.match(r"([A-Za-z]+) +", authorization)
        if scheme and scheme.group(1).lower() == "bearer":
            return False  # the scheme is rewritten to "Bearer "
    grpc_content_type = GRPC_CONTENT_TYPE.fullmatch(request["content-type"] or "") is not None
    if method == "POST" and grpc_content_type:
        return not str(request["protocol"]).startswith("HTTP/1")  # gRPC over HTTP/1.x is refused
    target = str(request[":path"])
    path = target.split("?")[0]
    if re.search(r"[%\x80-\xff]", path):
        return False  # percent-decoded and checked (refused if not UTF-8)
    for route in rest_routes():
        if re.fullmatch(route.path_regex("[^/]+"), path) and route.method != method:
            return False  # 405
    return "?" not in target and not grpc_content_type  # the query is kept, dropped or refused; 404


PATHS = [
    f"/api/v1/live-stream/{STREAM}/chat/superlike",
    f"/api/v1/live-stream/{STREAM}/chat/superlike/",
    f"/api/v1/live-stream/{STREAM}/chat/superlike?streamId=x",
    f"/api/v1/live-stream/{STREAM}/chat/superlike?",
    f"/api/v1/live-stream/{STREAM}/chat/superlikes",
    f"/api/v1/live-stream/{STREAM}/chat/superlikes?pageSize=5",
    f"/api/v1/live-stream/{STREAM}/chat/top-supporters",
    f"/api/v1/live-stream/{STREAM}/chat/superlikes/events",
    f"/api/v1/live-stream/{STREAM}/chat/superlikes/events/",
    f"/api/v1/live-stream/{STREAM}/chat/superlikes/events?access_token=a.b.c",
    "/api/v1/live-stream/caf%C3%A9/chat/superlike",
    "/api/v1/live-stream/caf\xe9/chat/superlike",
    "/api/v1/live-stream/a b/chat/superlike",
    "/api/v1/other",
    "/api/v1/openapi.json",
    "/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike",
    "/allmine.livestream.chat.v1.LiveStreamChat/StreamSuperlikeEvents",
    "/grpc.health.v1.Health/Check",
    "/",
]
METHODS = ["POST", "GET", "HEAD", "PATCH"]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/grpc",
    "application/grpc+proto",
    "application/grpc-web",
    "Application/Grpc",
]
AUTHORIZATIONS = [None, "Bearer t.o.k", "Bearer  t.o.k", "bearer t.o.k", "BEARER t.o.k", "Basic dXNlcg==", "t.o.k"]
PROTOCOLS = ["HTTP/1.1", "HTTP/2"]
GRID = [
    {":method": m, ":path": p, "content-type": c, "authorization": a, "protocol": v}
    for m, p, c, a, v in itertools.product(METHODS, PATHS, CONTENT_TYPES, AUTHORIZATIONS, PROTOCOLS)
]


def test_a_twin_takes_only_requests_the_lua_leaves_alone_and_sends_them_where_its_route_would() -> None:
    routes = rendered_routes()
    template = [route for route in routes if not is_twin(route)]
    taken = 0
    for request in GRID:
        chosen = next(route for route in routes if _takes(route, request))
        if not is_twin(chosen):
            assert chosen is next(route for route in template if _takes(route, request))
            continue
        taken += 1
        assert lua_leaves_alone(request), (chosen["name"], request)
        without_twins = next(route for route in template if _takes(route, request))
        assert chosen["name"].startswith(without_twins["name"] + " (fast"), (chosen["name"], request)
    assert taken > 100  # not a vacuous check


@pytest.mark.parametrize(
    ("method", "path", "content_type", "authorization", "protocol", "route"),
    [
        ("POST", "superlike", "application/json", "Bearer t", "HTTP/1.1", "rest (fast: POST"),
        ("POST", "superlike", None, None, "HTTP/1.1", "rest (fast: POST"),
        ("POST", "superlike", "text/plain", "Bearer t", "HTTP/2", "rest (fast: POST"),
        ("GET", "superlikes", None, "Bearer t", "HTTP/1.1", "rest (fast: GET"),
        ("GET", "superlikes/events", None, "Bearer t", "HTTP/1.1", "rest-live-feed (fast: GET"),
        (
            "POST",
            "/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike",
            "application/grpc",
            "Bearer t",
            "HTTP/2",
            "grpc-livestream-chat (fast)",
        ),
        ("POST", "/grpc.health.v1.Health/Check", "application/grpc", None, "HTTP/2", "grpc-health (fast)"),
        # The Lua has work on these.
        ("POST", "superlike", "application/json", "bearer t", "HTTP/1.1", "rest"),
        ("POST", "superlike?streamId=x", None, "Bearer t", "HTTP/1.1", "rest"),
        ("GET", "superlikes/events?access_token=a.b.c", None, None, "HTTP/1.1", "rest-live-feed"),
        ("GET", "superlike", None, "Bearer t", "HTTP/1.1", "rest"),
        (
            "POST",
            "/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike",
            "application/grpc",
            "Bearer t",
            "HTTP/1.1",
            "grpc-livestream-chat",
        ),
        (
            "POST",
            "/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike",
            "application/grpc",
            "bearer t",
            "HTTP/2",
            "grpc-livestream-chat",
        ),
        (
            "PATCH",
            "/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike",
            "application/grpc",
            "Bearer t",
            "HTTP/2",
            "grpc-livestream-chat",
        ),
    ],
)
def test_the_usual_requests_take_a_twin_and_the_others_keep_the_lua(
    method: str, path: str, content_type: str | None, authorization: str | None, protocol: str, route: str
) -> None:
    target = path if path.startswith("/") else f"/api/v1/live-stream/{STREAM}/chat/{path}"
    request = {
        ":method": method,
        ":path": target,
        "content-type": content_type,
        "authorization": authorization,
        "protocol": protocol,
    }
    chosen = next(r for r in rendered_routes() if _takes(r, request))
    assert chosen["name"] == route or chosen["name"].startswith(route + " ")
    assert is_twin(chosen) == ("(fast" in route)
