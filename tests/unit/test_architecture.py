"""Dependencies point inward (STYLE.md): checked by walking every import of the server package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "server"

# package -> prefixes it must not import
FORBIDDEN = {
    "domain": ("server.", "sqlalchemy", "grpc", "allmine", "google", "jwt", "alembic"),
    "services": ("server.adapters", "server.api", "server.auth", "server.app", "sqlalchemy", "grpc", "allmine"),
    "adapters": ("server.api", "server.auth", "server.app", "server.services.superlikes", "grpc", "allmine"),
    "auth": ("server.api", "server.adapters", "server.services", "server.app", "grpc", "allmine", "sqlalchemy"),
    "api": ("server.adapters", "server.app", "sqlalchemy"),
}
ALLOWED_INSIDE_DOMAIN = ("server.domain",)


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_point_inward(package: str) -> None:
    violations = []
    for path in sorted((SERVER / package).rglob("*.py")):
        for name in _imports(path):
            if package == "domain" and name.startswith(ALLOWED_INSIDE_DOMAIN):
                continue
            if name.startswith(FORBIDDEN[package]):
                violations.append(f"{path.relative_to(SERVER.parent)} imports {name}")
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
