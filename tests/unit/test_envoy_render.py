"""envoy/render.py: the edge's generated parts come from the one error table, and the config it renders
is one Envoy accepts."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.rpc import error_details_pb2, status_pb2

from devstack.stack import ROOT, load_envoy_renderer
from server.api import status_codes
from server.domain import errors

renderer = load_envoy_renderer()
ENVOY = str(Path(sys.executable).parent / "envoy")


def mappers() -> list[dict]:
    config = renderer.render()
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["local_reply_config"]["mappers"]


def grpc_headers(mapper: dict) -> dict[str, str]:
    return {h["header"]["key"]: h["header"]["value"] for h in mapper.get("headers_to_add", [])}


def test_every_grpc_local_reply_carries_the_servers_status_for_its_error() -> None:
    grpc_mappers = [m for m in mappers() if "grpc-status" in grpc_headers(m)]
    expected = [
        errors.Unauthenticated,  # first: jwt_authn's 401 and its 403 for another audience
        *(edge.grpc for edge in status_codes.EDGE_ERRORS if edge.envoy_statuses != (401,)),
        errors.RequestRejected,
        errors.Internal,
    ]
    assert [m["body"]["inline_string"] for m in grpc_mappers] == [error.message for error in expected]
    for mapper, error in zip(grpc_mappers, expected, strict=True):
        headers = grpc_headers(mapper)
        status = status_pb2.Status.FromString(base64.b64decode(headers["grpc-status-details-bin"]))
        info = error_details_pb2.ErrorInfo()
        assert len(status.details) == 1 and status.details[0].Unpack(info)
        code = status_codes.status_code_of(error).value[0]
        assert (int(headers["grpc-status"]), status.code, status.message) == (code, code, error.message)
        assert (info.domain, info.reason) == ("livestream.allmine.app", error.reason)
    unauthenticated = grpc_headers(grpc_mappers[0])
    assert unauthenticated["grpc-status"] == "16" and unauthenticated["www-authenticate"] == "Bearer"


QUERY_REFUSED = "Query parameters must be ones this route defines, each at most once, with valid values"


def test_every_rest_local_reply_text_is_from_the_table() -> None:
    # The OpenAPI document's and the overlay page's mappers pass them through: no error text.
    openapi, overlay, upstream_error, *answers = mappers()
    assert (openapi, overlay) == (renderer.OPENAPI_MAPPER, renderer.OVERLAY_PAGE_MAPPER)
    # The server's errors, rendered by custom_response: their text is kept as it chose it (from the
    # table, see the custom_response tests), and no header is added (that answer skips the filters
    # that drop x-envoy-* headers).
    assert upstream_error == renderer.UPSTREAM_ERROR_MAPPER
    assert set(upstream_error) == {"filter"}
    rest = [m for m in answers if "grpc-status" not in grpc_headers(m)]
    texts = [m["body"]["inline_string"] for m in rest]
    assert texts == [
        QUERY_REFUSED,
        "Invalid JSON request body",
        "Authentication required",
        "Validation failed",
        "Insufficient permissions",
        "Resource not found",
        "Method not allowed",
        "Request timed out",
        "Request body too large",
        "Too many requests; retry shortly",
        "Request headers too large",
        "Service temporarily unavailable",
        "Request timed out",
        "Request could not be processed",
        "Internal server error",
    ]
    assert set(texts) <= set(status_codes.client_messages())
    assert [m.get("status_code") for m in rest] == [
        400,
        None,
        401,
        400,
        403,
        404,
        405,
        408,
        413,
        429,
        431,
        503,
        504,
        None,
        500,
    ]


def test_every_route_hands_the_lua_filter_the_table() -> None:
    config = renderer.render()
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    for route in routes:
        table = route["metadata"]["filter_metadata"]["envoy.filters.http.lua"]
        assert table["messages"] == status_codes.client_messages()
        assert table["default_messages"]["404"] == "Resource not found"
        assert table["default_messages"]["4xx"] == "Request could not be processed"
        assert table["http_status_of_grpc"]["10"] == 409
    assert "requestId and the Idempotency-Key header must match when both are sent" in status_codes.client_messages()


def test_the_lua_filter_and_the_template_state_no_error_text() -> None:
    lua = (ROOT / "envoy" / "error_envelope.lua").read_text()
    template = (ROOT / "envoy" / "envoy.yaml").read_text()
    for message in status_codes.client_messages():
        assert f'"{message}"' not in lua
        assert f"inline_string: {message}" not in template


@pytest.mark.parametrize("url", ["http://auth.example.com/jwks.json", "ftp://auth.example.com/jwks", "https:///x"])
def test_a_jwks_url_that_is_not_https_is_refused(url: str) -> None:
    with pytest.raises(renderer.RenderError, match="JWKS URL"):
        renderer.render(jwks_url=url)


def test_loopback_http_jwks_is_allowed() -> None:
    config = renderer.render(jwks_url="http://127.0.0.1:8000/jwks.json")
    assert "transport_socket" not in config["static_resources"]["clusters"][-1]


def test_the_upstream_keepalive_interval_is_configurable() -> None:
    config = renderer.render(upstream_keepalive_seconds=1.5)
    cluster = config["static_resources"]["clusters"][0]
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"]["interval"] == "1.5s"
    with pytest.raises(renderer.RenderError, match="upstream-keepalive-seconds"):
        renderer.render(upstream_keepalive_seconds=0)


@pytest.mark.parametrize("source", ["template", "rendered"])
def test_envoy_accepts_the_template_and_the_rendered_config(source: str, tmp_path: Path) -> None:
    path = ROOT / "envoy" / "envoy.yaml"
    if source == "rendered":
        path = renderer.write(renderer.render(), tmp_path / "envoy.yaml")
    checked = subprocess.run(
        [ENVOY, "--mode", "validate", "-c", str(path), "--base-id", str(abs(hash(source)) % 50000 + 10000)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert re.search(r"configuration '.*' OK", checked.stdout + checked.stderr)


def test_the_lua_filter_gets_each_rest_route_with_its_own_query_parameters() -> None:
    config = renderer.render()
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    table = hcm["route_config"]["virtual_hosts"][0]["routes"][0]["metadata"]["filter_metadata"][
        "envoy.filters.http.lua"
    ]
    assert table["rest_routes"][:3] == [
        {"method": "POST", "pattern": "^/api/v1/live%-stream/[^/]+/chat/superlike/?$", "query": {}},
        {
            "method": "GET",
            "pattern": "^/api/v1/live%-stream/[^/]+/chat/superlikes/?$",
            "query": {"pageSize": "int32", "pageToken": "string"},
        },
        {
            "method": "GET",
            "pattern": "^/api/v1/live%-stream/[^/]+/chat/top%-supporters/?$",
            "query": {"limit": "int32"},
        },
    ]


def test_a_lua_refusal_renders_its_own_text_only_when_the_lua_named_it() -> None:
    (mapper,) = [m for m in mappers() if "metadata_filter" in m["filter"]]
    assert mapper["filter"]["metadata_filter"]["match_if_key_not_found"] is False
    assert mapper["filter"]["metadata_filter"]["matcher"]["value"] == {
        "string_match": {"exact": "INVALID_QUERY_PARAMETER"}
    }
    assert (mapper["status_code"], mapper["body"]["inline_string"]) == (400, QUERY_REFUSED)


def _filter(config: dict, name: str) -> dict:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f for f in hcm["http_filters"] if f["name"] == name)["typed_config"]


def test_the_send_rate_limit_defaults_to_a_humans_pace_per_caller_and_is_enforced() -> None:
    limit = _filter(renderer.render(), "envoy.filters.http.local_ratelimit")
    everyone = {"numerator": 100, "denominator": "HUNDRED"}
    assert limit["filter_enabled"]["default_value"] == everyone  # both default to 0 % when unset
    assert limit["filter_enforced"]["default_value"] == everyone
    assert limit["descriptors"] == [
        {
            "entries": [{"key": "method", "value": "SendSuperlike"}, {"key": "caller"}],
            "token_bucket": {"max_tokens": 20, "tokens_per_fill": 5, "fill_interval": "1s"},
        }
    ]
    # Far above the default of 20, which would evict and refill other callers' buckets.
    assert limit["max_dynamic_descriptors"] == 100_000
    assert limit["always_consume_default_token_bucket"] is False
    assert limit["rate_limited_as_resource_exhausted"] is True
    actions = limit["rate_limits"][0]["actions"]
    assert actions[0]["header_value_match"]["headers"][0]["string_match"] == {
        "exact": "/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike"
    }
    assert actions[1]["metadata"]["metadata_key"] == {
        "key": "envoy.filters.http.jwt_authn",
        "path": [{"key": "jwt_payload"}, {"key": "sub"}],
    }
    assert limit["response_headers_to_add"][0]["header"] == {"key": "retry-after", "value": "1"}
    provider = _filter(renderer.render(), "envoy.filters.http.jwt_authn")["providers"]["allmine"]
    assert provider["payload_in_metadata"] == "jwt_payload"


def test_the_send_rate_limit_is_configurable_and_retry_after_follows_the_refill() -> None:
    config = renderer.render(send_burst=3, send_per_second=0.5, rate_limited_callers=500)
    limit = _filter(config, "envoy.filters.http.local_ratelimit")
    assert limit["descriptors"][0]["token_bucket"] == {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "2s"}
    assert (limit["max_dynamic_descriptors"], limit["response_headers_to_add"][0]["header"]["value"]) == (500, "2")
    with pytest.raises(renderer.RenderError, match="--send-burst must be 1-100000, got 0"):
        renderer.render(send_burst=0)


def test_the_openapi_document_is_served_without_a_token() -> None:
    config = renderer.render(openapi="/etc/envoy/openapi.json")
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    route = next(r for r in hcm["route_config"]["virtual_hosts"][0]["routes"] if r["name"] == "openapi")
    assert route["match"]["path"] == "/api/v1/openapi.json"
    assert route["direct_response"]["body"] == {"filename": "/etc/envoy/openapi.json"}
    assert route["typed_per_filter_config"]["envoy.filters.http.jwt_authn"]["disabled"] is True
