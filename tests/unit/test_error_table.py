"""Every text the API can show a client is in the one error table, so the edge can let exactly those
texts through (and no text of a proxy, library or driver)."""

from __future__ import annotations

import ast
from pathlib import Path

from server.api import status_codes
from server.domain import errors

SERVER = Path(__file__).resolve().parents[2] / "server"
API_ERRORS = {kind.__name__: kind for kind in status_codes.STATUS_CODES}


def raise_site_messages() -> list[tuple[str, str, str]]:
    """(file, error class, text) for every `ErrorClass("text")` of an API error in the server."""
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        tree = ast.parse(path.read_text())
        # A module's own class of the same name (domain/history.py's InvalidPageSize, a ValueError
        # carrying the value) is not the table's error.
        own_classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if isinstance(node.func, ast.Name) and name in own_classes and path.name != "errors.py":
                continue
            if name in API_ERRORS:
                argument = node.args[0]
                text = argument.value if isinstance(argument, ast.Constant) else ast.unparse(argument)
                found.append((str(path.relative_to(SERVER.parent)), name, text))
    return found


def test_every_text_an_api_error_is_raised_with_is_in_the_table() -> None:
    sites = raise_site_messages()
    assert sites, "the scan finds the raise sites"
    for where, name, text in sites:
        kind = API_ERRORS[name]
        assert text in (kind.message, *kind.other_messages), f"{where}: {name}({text!r}) is not in the table"


def test_every_answer_of_the_api_and_the_edge_has_a_distinct_reason() -> None:
    edge = {e.rest for e in status_codes.EDGE_ERRORS} | {e.grpc for e in status_codes.EDGE_ERRORS}
    assert edge <= set(status_codes.STATUS_CODES)
    reasons = [kind.reason for kind in status_codes.STATUS_CODES]
    assert len(reasons) == len(set(reasons))


def test_the_servers_rich_status_is_built_with_grpcio_status() -> None:
    status = status_codes.status_of(errors.InsufficientBalance())
    assert status.code.name == "ABORTED" and status.details == "Insufficient coin balance for a superlike"
    ((key, value),) = status.trailing_metadata
    proto = status_codes.status_proto(status.code, status.details, "INSUFFICIENT_BALANCE")
    assert (key, value) == ("grpc-status-details-bin", proto.SerializeToString())
