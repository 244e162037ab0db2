"""docker-compose.yml cannot run here (no Docker engine), so its wiring is checked statically: every
file it mounts or builds exists, every variable it sets is one the server reads, and the Envoy config
it renders points at the server service's port with the mounted descriptor and Lua paths."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from devstack.stack import load_envoy_renderer
from server.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
VARIABLE = re.compile(r"\$\{([A-Z_]+)(?::\?[^}]*)?\}")
DUMMY = {
    "LIVECHAT_JWKS_URL": "https://auth.example.com/.well-known/jwks.json",
    "LIVECHAT_JWT_ISSUER": "https://auth.example.com",
    "LIVECHAT_JWT_AUDIENCE": "livestream.allmine.app",
    "POSTGRES_PASSWORD": "secret",
}


def substitute(value: str) -> str:
    return VARIABLE.sub(lambda match: DUMMY[match.group(1)], value)


def server_variables_read() -> set[str]:
    source = (ROOT / "server" / "config.py").read_text()
    return set(re.findall(r'"((?:LIVECHAT|DATABASE)_[A-Z0-9_]+)"', source))


def test_every_variable_compose_references_is_documented_in_its_header() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    header = text.split("services:")[0]
    for name in set(VARIABLE.findall(text)):
        assert name in header and name in DUMMY


def test_built_images_and_mounted_files_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \./?\S*$", dockerfile, flags=re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
    for name, service in SERVICES.items():
        if "build" in service:
            assert service["build"] == "."
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), f"{name} mounts missing {source}"


def test_server_environment_is_what_the_server_reads_and_is_valid() -> None:
    environment = {k: substitute(str(v)) for k, v in SERVICES["server"]["environment"].items()}
    database_url = substitute(COMPOSE["x-database-url"])
    environment["DATABASE_URL"] = database_url
    assert set(environment) <= server_variables_read()
    settings = load_settings(environment)
    settings.require_auth()
    assert settings.grpc_host == "0.0.0.0"
    assert settings.database_url == "postgresql://livechat:secret@postgres:5432/livechat"
    assert SERVICES["migrate"]["environment"]["DATABASE_URL"] == COMPOSE["x-database-url"]
    assert f"{settings.grpc_port}" in SERVICES["server"]["expose"]


def test_rendered_envoy_config_matches_the_services_and_mounts() -> None:
    renderer = load_envoy_renderer()
    args = [substitute(str(a)) for a in SERVICES["envoy-config"]["command"][2:]]
    assert args[:2] == ["--out", "/rendered/envoy.yaml"]
    flags = dict(zip(args[2::2], args[3::2], strict=False))
    config = renderer.render(
        listen_address=flags["--listen-address"],
        listen_port=int(flags["--listen-port"]),
        admin_port=int(flags["--admin-port"]),
        upstream_host=flags["--upstream-host"],
        upstream_port=int(flags["--upstream-port"]),
        descriptor=flags["--descriptor"],
        lua=flags["--lua"],
        issuer=flags["--issuer"],
        audience=flags["--audience"],
        jwks_url=flags["--jwks-url"],
    )
    text = yaml.safe_dump(config)
    server_port = SERVICES["server"]["environment"]["LIVECHAT_GRPC_PORT"]
    assert flags["--upstream-host"] == "server" and flags["--upstream-port"] == server_port
    published = SERVICES["envoy"]["ports"][0].split(":")
    assert published[1] == flags["--listen-port"]
    mounts = {v.split(":")[1] for v in SERVICES["envoy"]["volumes"]}
    assert {flags["--descriptor"], flags["--lua"]} <= mounts
    assert flags["--descriptor"] in text and flags["--lua"] in text
    assert "https://auth.example.com/.well-known/jwks.json" in text
    assert SERVICES["envoy"]["command"][2] == "/rendered/envoy.yaml"
    assert SERVICES["envoy"]["image"].startswith("envoyproxy/envoy:v1.40")
