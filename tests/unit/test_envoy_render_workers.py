"""envoy/render.py for the server's workers and the token check the server relies on: each worker's
Unix socket in both upstream clusters, least-request balancing, a dead worker ejected, the verified
`sub` passed in the one header the server reads (never a client's copy), and a jwt_authn at least as
strict as the server's TokenPolicy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devstack.stack import ROOT, binary, load_envoy_renderer
from server.api.caller import EDGE_VERIFIED_SUBJECT_METADATA
from server.auth.tokens import TokenPolicy
from server.config import load_settings
from server.workers.sockets import worker_socket_path

renderer = load_envoy_renderer()


def _clusters(config: dict) -> dict[str, dict]:
    return {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}


def _hcm(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def _provider(config: dict) -> dict:
    jwt = next(f for f in _hcm(config)["http_filters"] if f["name"] == "envoy.filters.http.jwt_authn")
    return jwt["typed_config"]["providers"]["allmine"]


def _endpoints(cluster: dict) -> list[dict]:
    return [entry["endpoint"]["address"] for entry in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]


def test_each_workers_socket_is_an_endpoint_of_both_clusters() -> None:
    config = renderer.render(upstream_socket_dir="/run/livechat", upstream_workers=3)
    for name in ("livestream_chat", "livestream_chat_feed"):
        cluster = _clusters(config)[name]
        assert _endpoints(cluster) == [
            {"pipe": {"path": str(worker_socket_path("/run/livechat", i))}} for i in range(3)
        ]
        assert _endpoints(cluster)[2] == {"pipe": {"path": "/run/livechat/worker-2.sock"}}
        assert cluster["type"] == "STATIC" and "dns_lookup_family" not in cluster
        assert cluster["lb_policy"] == "LEAST_REQUEST"
        assert cluster["health_checks"][0]["grpc_health_check"] == {}  # each endpoint checked on its own


def test_replicas_on_tcp_stay_beside_the_sockets() -> None:
    config = renderer.render(
        upstream_host="127.0.0.1", upstream_socket_dir="/run/livechat", extra_upstream_ports=(6002,)
    )
    assert _endpoints(_clusters(config)["livestream_chat"]) == [
        {"pipe": {"path": "/run/livechat/worker-0.sock"}},
        {"socket_address": {"address": "127.0.0.1", "port_value": 6002}},
    ]


def test_without_a_socket_directory_the_server_is_reached_over_tcp_as_before() -> None:
    cluster = _clusters(renderer.render(upstream_host="server", upstream_port=50051))["livestream_chat"]
    assert cluster["type"] == "STRICT_DNS"
    assert _endpoints(cluster) == [{"socket_address": {"address": "server", "port_value": 50051}}]


def test_a_dead_worker_is_ejected_for_envoys_own_failures_only() -> None:
    detection = _clusters(renderer.render(upstream_socket_dir="/run/livechat"))["livestream_chat"]["outlier_detection"]
    assert detection["split_external_local_origin_errors"] is True
    assert (detection["consecutive_local_origin_failure"], detection["enforcing_consecutive_local_origin_failure"]) == (
        1,
        100,
    )
    # The server's own answers (UNAVAILABLE while the database is down) eject nobody.
    for enforcing in (
        "enforcing_consecutive_5xx",
        "enforcing_consecutive_gateway_failure",
        "enforcing_success_rate",
        "enforcing_local_origin_success_rate",
        "enforcing_failure_percentage",
        "enforcing_failure_percentage_local_origin",
    ):
        assert detection[enforcing] == 0, enforcing


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"upstream_socket_dir": "run/livechat"}, "--upstream-socket-dir must be an absolute path"),
        ({"upstream_socket_dir": "/" + "d" * 100}, "is longer than the 107 bytes of a Unix socket path"),
        ({"upstream_workers": 2}, "--upstream-workers needs --upstream-socket-dir"),
        ({"upstream_socket_dir": "/run/livechat", "upstream_workers": 0}, "--upstream-workers must be 1-64"),
        (
            {"upstream_socket_dir": "/run/livechat", "upstream_host": "server", "extra_upstream_ports": (6002,)},
            "replicas need an IP",
        ),
        ({"clock_skew_seconds": 301}, "--clock-skew-seconds must be 0-300"),
    ],
)
def test_unusable_worker_and_token_parameters_are_refused(params: dict, message: str) -> None:
    with pytest.raises(renderer.RenderError, match=message):
        renderer.render(**params)


def test_the_verified_subject_travels_in_the_header_the_server_reads_and_no_client_can_set() -> None:
    config = renderer.render()
    assert _provider(config)["claim_to_headers"] == [
        {"header_name": EDGE_VERIFIED_SUBJECT_METADATA, "claim_name": "sub"}
    ]
    # Removed before routing and before every filter, on every route (those without jwt_authn too).
    (strip,) = _hcm(config)["early_header_mutation_extensions"]
    # First, before the edge's other early mutations (forgeable headers, header names; envoy.yaml).
    assert strip["typed_config"]["mutations"][0] == {"remove": EDGE_VERIFIED_SUBJECT_METADATA}
    assert _provider(config)["forward"] is True  # the server reads the token's claims itself


def test_jwt_authn_is_at_least_as_strict_as_the_servers_token_policy() -> None:
    settings = load_settings({})
    server = TokenPolicy(issuer="https://auth.allmine.app", audience="livestream.allmine.app")
    provider = _provider(renderer.render(issuer=server.issuer, audience=server.audience))
    assert (provider["issuer"], provider["audiences"]) == (server.issuer, [server.audience])
    assert provider["require_expiration"] is True
    # A non-empty `sub` (a token without one has "" here, which does not match).
    assert provider["subjects"] == {"safe_regex": {"regex": "[!-~]+"}}
    assert provider["clock_skew_seconds"] == settings.jwt_leeway_seconds == server.leeway_seconds == 30
    assert _provider(renderer.render(clock_skew_seconds=5))["clock_skew_seconds"] == 5
    # 0 would mean jwt_authn's default, 60 s: the strictest it can be told is one second.
    assert _provider(renderer.render(clock_skew_seconds=0))["clock_skew_seconds"] == 1


def test_a_remote_key_set_is_kept_no_longer_than_the_server_keeps_its_own() -> None:
    provider = _provider(renderer.render(jwks_url="https://auth.example.com/.well-known/jwks.json"))
    assert provider["remote_jwks"]["cache_duration"] == "300s"


def test_envoy_accepts_a_config_rendered_for_workers(tmp_path: Path) -> None:
    out = tmp_path / "envoy.yaml"
    args = ["--out", str(out), "--upstream-socket-dir", str(tmp_path / "sockets"), "--upstream-workers", "2"]
    assert renderer.main([*args, "--clock-skew-seconds", "10"]) == 0
    done = subprocess.run(
        [binary("envoy"), "--mode", "validate", "-c", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
