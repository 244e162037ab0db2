"""bench/edge_variants.py: copies of the rendered Envoy config without a filter or the access log,
everything else as rendered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import edge_variants
from devstack.stack import ROOT, load_envoy_renderer

renderer = load_envoy_renderer()
ENVOY = str(Path(sys.executable).parent / "envoy")


def manager(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def filter_names(config: dict) -> list[str]:
    return [f["name"] for f in manager(config)["http_filters"]]


def per_route_filters(config: dict) -> set[str]:
    routes = manager(config)["route_config"]["virtual_hosts"][0]["routes"]
    return {name for route in routes for name in route.get("typed_per_filter_config", {})}


def test_full_is_the_rendered_config_itself():
    rendered = renderer.render()
    assert edge_variants.apply(rendered, "full") == (rendered, [])


def test_no_jwt_drops_the_filter_and_the_routes_settings_for_it_and_nothing_else():
    rendered = renderer.render()
    variant, removed = edge_variants.apply(rendered, "no-jwt")
    assert removed == ["http filter envoy.filters.http.jwt_authn"]
    assert filter_names(variant) == [n for n in filter_names(rendered) if n != "envoy.filters.http.jwt_authn"]
    assert "envoy.filters.http.jwt_authn" in per_route_filters(rendered)
    assert "envoy.filters.http.jwt_authn" not in per_route_filters(variant)
    assert manager(variant)["local_reply_config"] == manager(rendered)["local_reply_config"]
    assert "envoy.filters.http.jwt_authn" in filter_names(rendered)  # the rendered document is left as it was


def test_variants_combine_and_the_access_log_goes_with_no_access_log():
    variant, removed = edge_variants.apply(renderer.render(), "no-lua+no-access-log")
    assert removed == ["http filter envoy.filters.http.lua", "access log envoy.access_loggers.stdout"]
    assert "envoy.filters.http.lua" not in filter_names(variant)
    assert "access_log" not in manager(variant)


def test_a_variant_that_finds_nothing_to_remove_fails_instead_of_measuring_the_full_config():
    without_lua, _ = edge_variants.apply(renderer.render(), "no-lua")
    with pytest.raises(edge_variants.UnknownVariant, match="no lua to remove"):
        edge_variants.apply(without_lua, "no-lua")
    with pytest.raises(edge_variants.UnknownVariant, match="unknown"):
        edge_variants.check("no-router")


@pytest.mark.parametrize("variant", [name for name in edge_variants.names() if name != "full"])
def test_envoy_accepts_every_variant_of_the_rendered_config(variant, tmp_path):
    config, _ = edge_variants.apply(renderer.render(), variant)
    path = renderer.write(config, tmp_path / "envoy.yaml")
    checked = subprocess.run(
        [ENVOY, "--mode", "validate", "-c", str(path), "--base-id", str(abs(hash(variant)) % 50000 + 10000)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
