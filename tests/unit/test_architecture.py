"""Dependencies point inward (STYLE.md): checked by walking every import of the server package.

Each layer lists what it may import besides the standard library: the domain nothing else; services
the domain; adapters the domain and their database libraries (never the services: the write port's
value types live in the domain); only the api package touches gRPC and the generated code."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "server"

# package -> the non-standard-library modules its files may import (prefixes)
ALLOWED = {
    "domain": ("server.domain",),
    "services": ("server.domain", "server.services"),
    "adapters": ("server.domain", "server.adapters", "sqlalchemy", "alembic", "asyncpg"),
    "auth": ("server.domain", "server.auth", "jwt", "cryptography"),
    "api": ("server.domain", "server.services", "server.auth", "server.api", "grpc", "grpc_health", "grpc_status",
            "google", "allmine"),
}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    if name.split(".")[0] in sys.stdlib_module_names:
        return True
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layer_imports_point_inward(package: str) -> None:
    violations = [
        f"{path.relative_to(SERVER.parent)} imports {name}"
        for path in sorted((SERVER / package).rglob("*.py"))
        for name in _imports(path)
        if not _allowed(name, ALLOWED[package])
    ]
    assert violations == []


def test_only_the_api_package_and_the_composition_root_touch_grpc() -> None:
    offenders = []
    for path in sorted(SERVER.rglob("*.py")):
        rel = path.relative_to(SERVER)
        if rel.parts[0] in {"api"} or rel.name == "app.py":
            continue
        if any(name == "grpc" or name.startswith(("grpc.", "grpc_", "allmine")) for name in _imports(path)):
            offenders.append(str(rel))
    assert offenders == []


# Where the backend is chosen (storage.py) and where each backend lives: the only code that may know
# which database it is on.
BACKEND_AWARE = ("adapters/storage.py", "adapters/postgres/", "adapters/sqlite/")


def _outside_the_backends() -> list[tuple[str, Path]]:
    return [
        (str(path.relative_to(SERVER)), path)
        for path in sorted(SERVER.rglob("*.py"))
        if not str(path.relative_to(SERVER)).startswith(BACKEND_AWARE)
    ]


def test_only_storage_opening_picks_the_backend() -> None:
    """The database backend is chosen in server/adapters/storage.py; code elsewhere reaches a
    backend's package only through it."""
    offenders = [
        rel
        for rel, path in _outside_the_backends()
        if any(name.startswith(("server.adapters.postgres", "server.adapters.sqlite")) for name in _imports(path))
    ]
    assert offenders == []


def test_no_server_module_is_over_300_lines() -> None:
    lines = {str(path.relative_to(SERVER)): len(path.read_text().splitlines()) for path in SERVER.rglob("*.py")}
    assert {name: n for name, n in lines.items() if n > 300} == {}
