"""envoy/render.py for the live feed: every replica in both upstream clusters, the feed's own
circuit-breaker budget, the overlay page's file, and an access log that never records a query."""

from __future__ import annotations

from devstack.stack import load_envoy_renderer

renderer = load_envoy_renderer()


def _clusters(config: dict) -> dict[str, dict]:
    return {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}


def _hcm(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def test_every_replica_serves_both_the_calls_and_the_feed() -> None:
    clusters = _clusters(renderer.render(upstream_host="10.0.0.7", upstream_port=6001, extra_upstream_ports=(6002,)))
    for name in ("livestream_chat", "livestream_chat_feed"):
        endpoints = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        addresses = [endpoint["endpoint"]["address"]["socket_address"] for endpoint in endpoints]
        assert addresses == [{"address": "10.0.0.7", "port_value": 6001}, {"address": "10.0.0.7", "port_value": 6002}]


def test_long_lived_feeds_have_a_budget_of_their_own() -> None:
    clusters = _clusters(renderer.render())
    calls = clusters["livestream_chat"]["circuit_breakers"]["thresholds"][0]["max_requests"]
    feeds = clusters["livestream_chat_feed"]["circuit_breakers"]["thresholds"][0]["max_requests"]
    assert (calls, feeds) == (1024, 100000)
    routes = {route["name"]: route for route in _hcm(renderer.render())["route_config"]["virtual_hosts"][0]["routes"]}
    assert {routes[name]["route"]["cluster"] for name in ("rest-live-feed", "grpc-live-feed")} == {
        "livestream_chat_feed"
    }
    assert routes["rest"]["route"]["cluster"] == "livestream_chat"
    assert routes["rest-live-feed"]["route"]["timeout"] == routes["grpc-live-feed"]["route"]["timeout"] == "0s"


def test_the_overlay_page_comes_from_the_given_file_and_leaves_envoy_unchanged() -> None:
    hcm = _hcm(renderer.render(overlay="/srv/envoy/overlay.html"))
    routes = {route["name"]: route for route in hcm["route_config"]["virtual_hosts"][0]["routes"]}
    assert routes["overlay"]["direct_response"] == {"status": 200, "body": {"filename": "/srv/envoy/overlay.html"}}
    first = hcm["local_reply_config"]["mappers"][0]
    assert first["body_format_override"]["text_format_source"]["inline_string"] == "%LOCAL_REPLY_BODY%"


def test_the_access_log_records_paths_without_their_query() -> None:
    fields = _hcm(renderer.render())["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert fields["path"] == "%PATH(NQ:ORIG_OR_PATH)%"
    # No other field takes a path or a header a credential could travel in.
    others = " ".join(value for name, value in fields.items() if name != "path")
    assert "PATH" not in others and "AUTHORIZATION" not in others.upper()


def test_feed_reconnects_are_retried_on_another_server_and_their_retries_are_not_capped_like_calls() -> None:
    config = renderer.render(extra_upstream_ports=(6002,))
    clusters = _clusters(config)
    assert clusters["livestream_chat_feed"]["circuit_breakers"]["thresholds"][0]["max_retries"] == 100000
    assert clusters["livestream_chat"]["circuit_breakers"]["thresholds"][0]["max_retries"] == 16
    routes = {route["name"]: route for route in _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]}
    for name in ("rest-live-feed", "grpc-live-feed"):
        assert routes[name]["route"]["retry_policy"] == {
            "retry_on": "connect-failure,refused-stream,reset,unavailable",
            "num_retries": 3,
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                    },
                }
            ],
            "host_selection_retry_max_attempts": 20,
        }
