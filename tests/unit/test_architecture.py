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
    "api": (
        "server.domain",
        "server.services",
        "server.auth",
        "server.api",
        "grpc",
        "grpc_health",
        "grpc_status",
        "google",
        "allmine",
    ),
    # Metrics and logs, wired by the composition root: they see the api layer only through the RPC
    # record its observer hands over, and storage only through the hooks Storage offers.
    "observability": (
        "server.domain",
        "server.observability",
        "server.api.rpc_observer",
        "server.adapters.storage_base",
        "server.config",
        "prometheus_client",
    ),
    # Processes, sockets and listeners: the standard library and the settings. Never grpc (the
    # supervisor forks; a worker's grpc server is built by the composition root and handed in).
    "workers": ("server.config", "server.workers"),
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


# How code asks which database it is on: the dialect of an engine or connection, the backend or driver
# of a URL, a helper named after a backend, a backend's name or URL scheme compared, passed, looked up
# or matched. (A URL as a value, such as the default DATABASE_URL, asks nothing.)
ASKING_ATTRIBUTES = {"dialect", "get_backend_name", "get_dialect", "drivername", "get_driver_name"}
BACKEND_NAMES = {"sqlite", "postgres", "postgresql", "asyncpg", "aiosqlite", "pysqlite"}
BACKEND_URL_PREFIXES = ("sqlite:", "sqlite+", "postgres:", "postgresql:", "postgresql+")


def _names_a_backend(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return False
    value = node.value.lower()
    return value in BACKEND_NAMES or value.startswith(BACKEND_URL_PREFIXES)


def _questions(tree: ast.AST) -> list[ast.AST]:
    """The parts of the code that compare, pass, look up or match values."""
    parts: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare | ast.match_case):
            parts.append(node)
        elif isinstance(node, ast.Call):
            parts += [*node.args, *(keyword.value for keyword in node.keywords)]
        elif isinstance(node, ast.Dict):
            parts += [key for key in node.keys if key is not None]
        elif isinstance(node, ast.Subscript):
            parts.append(node.slice)
    return parts


def _asks_which_database(tree: ast.AST) -> list[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ASKING_ATTRIBUTES:
            found.add((node.lineno, f".{node.attr}"))
        name = node.id if isinstance(node, ast.Name) else getattr(node, "name", None)
        if isinstance(name, str) and any(backend in name.lower() for backend in ("sqlite", "postgres")):
            found.add((node.lineno, name))
    # A column type's variant for one database declares the schema; it asks nothing at run time.
    variants = {
        id(argument)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "with_variant"
        for argument in node.args
    }
    for part in _questions(tree):
        for node in ast.walk(part):
            if _names_a_backend(node) and id(node) not in variants:
                found.add((node.lineno, repr(node.value)))  # type: ignore[attr-defined]
    return [f"line {line}: {what}" for line, what in sorted(found)]


def test_no_module_outside_storage_opening_asks_which_database_it_is_on() -> None:
    """What differs between the databases lives behind Storage (postgres/, sqlite/); everything else
    works the same on both, and asks storage.py the few questions about the database as a whole."""
    offenders = {
        rel: found
        for rel, path in _outside_the_backends()
        if (found := _asks_which_database(ast.parse(path.read_text())))
    }
    assert offenders == {}


def test_the_check_finds_each_way_of_asking() -> None:
    source = """
sqlite = connection.dialect.name == "sqlite"
backend = make_url(url).get_backend_name()
if url.startswith(("sqlite:///", "postgresql://")): pass
def is_sqlite(engine): ...
ENGINES = {"postgresql": make_engine}
DEFAULT_URL = "sqlite:///.local/livechat.db"
column = Column("id", BigInteger().with_variant(Integer(), "sqlite"))
"""
    assert _asks_which_database(ast.parse(source)) == [
        "line 2: 'sqlite'",
        "line 2: .dialect",
        "line 2: sqlite",
        "line 3: .get_backend_name",
        "line 4: 'postgresql://'",
        "line 4: 'sqlite:///'",
        "line 5: is_sqlite",
        "line 6: 'postgresql'",
    ]


def test_no_server_module_is_over_300_lines() -> None:
    lines = {str(path.relative_to(SERVER)): len(path.read_text().splitlines()) for path in SERVER.rglob("*.py")}
    assert {name: n for name, n in lines.items() if n > 300} == {}
