"""Edge variants: copies of the rendered Envoy config with some of its parts left out, to measure
what each costs (`bench/run.py --edge-variants full,no-lua,no-jwt,no-access-log`).

The config is the one envoy/render.py renders for the bench's stack; a variant only removes things
from it, so everything else (listeners, routes, transcoder, clusters, local replies) stays exactly
as rendered. Filters are found by their type, not their name, so a variant keeps working when the
edge's filter chain is rearranged (e.g. the Lua filter split or attached per route): every filter of
that type goes, with the per-route settings that name it. A variant that finds nothing to remove
fails: a silent no-op variant would measure the full config under another name.

    full            the rendered config as it is
    no-lua          without the Lua filter(s) (error_envelope.lua): no header stripping, no envelope
                    for errors; successes are transcoded as before
    no-jwt          without jwt_authn: the server still verifies every token; the per-caller rate
                    limit keys on the verified `sub`, so it no longer limits anyone either
    no-ratelimit    without the per-caller local rate limit
    no-access-log   without the access logs
Variants combine with "+": `no-lua+no-jwt`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
FILTER_TYPES = {
    "lua": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
    "jwt": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
    "ratelimit": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
}
FULL = "full"


class UnknownVariant(ValueError):
    pass


def names() -> list[str]:
    return [FULL, *(f"no-{part}" for part in FILTER_TYPES), "no-access-log"]


def check(variant: str) -> None:
    """Raises UnknownVariant unless `variant` is full or a "+"-joined list of known removals."""
    if variant == FULL:
        return
    known = set(names()) - {FULL}
    unknown = [part for part in variant.split("+") if part not in known]
    if unknown or not variant:
        raise UnknownVariant(f"edge variant {variant!r}: unknown {unknown}; choose from {names()} (join with +)")


def apply(config: dict[str, Any], variant: str) -> tuple[dict[str, Any], list[str]]:
    """A copy of the rendered config without the variant's parts, and what was removed."""
    check(variant)
    if variant == FULL:
        return config, []
    result = copy.deepcopy(config)
    removed: list[str] = []
    for part in variant.split("+"):
        what = part.removeprefix("no-")
        found = _drop_access_logs(result) if what == "access-log" else _drop_filters(result, FILTER_TYPES[what])
        if not found:
            raise UnknownVariant(f"edge variant {variant!r}: the rendered config has no {what} to remove")
        removed += found
    return result, removed


def _connection_managers(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for listener in config.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                typed = network_filter.get("typed_config", {})
                if typed.get("@type") == HCM_TYPE:
                    yield typed


def _drop_filters(config: dict[str, Any], filter_type: str) -> list[str]:
    removed: list[str] = []
    for manager in _connection_managers(config):
        kept = []
        for http_filter in manager.get("http_filters", []):
            if http_filter.get("typed_config", {}).get("@type") == filter_type:
                removed.append(f"http filter {http_filter.get('name')}")
            else:
                kept.append(http_filter)
        manager["http_filters"] = kept
        gone = {entry.split(" ", 2)[2] for entry in removed}
        _drop_route_settings(manager.get("route_config", {}), gone)
    return removed


def _drop_per_filter_config(node: dict[str, Any], filter_names: set[str]) -> None:
    per_filter = node.get("typed_per_filter_config")
    if isinstance(per_filter, dict):
        for name in filter_names & per_filter.keys():
            del per_filter[name]
        if not per_filter:
            del node["typed_per_filter_config"]


def _drop_route_settings(route_config: dict[str, Any], filter_names: set[str]) -> None:
    """Drops the filters' settings from every virtual host and route (where per-filter settings live)."""
    for host in route_config.get("virtual_hosts", []):
        _drop_per_filter_config(host, filter_names)
        for route in host.get("routes", []):
            _drop_per_filter_config(route, filter_names)


def _drop_access_logs(config: dict[str, Any]) -> list[str]:
    removed: list[str] = []
    for listener in config.get("static_resources", {}).get("listeners", []):
        if listener.pop("access_log", None):
            removed.append(f"listener {listener.get('name')} access_log")
    for manager in _connection_managers(config):
        logs = manager.pop("access_log", None)
        if logs:
            removed += [f"access log {log.get('name')}" for log in logs]
    return removed
