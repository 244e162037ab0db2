"""Which failures mean "the database cannot serve right now" (503, retry) and which are bugs (500)."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest
from sqlalchemy import exc

from server.adapters.postgres import failures as postgres
from server.adapters.sqlite import failures as sqlite
from server.auth.jwks import JwksUnavailable, check_jwks_source


def _wrapped_sqlite(message: str) -> exc.OperationalError:
    return exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (_wrapped_sqlite("database is locked"), True),
        (_wrapped_sqlite("unable to open database file"), True),
        (_wrapped_sqlite("no such table: users"), False),
        (_wrapped_sqlite('near "SELEC": syntax error'), False),
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("no such column: x"), False),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (ValueError("a bug"), False),
    ],
)
def test_only_sqlite_connectivity_failures_count_as_unavailable(error: BaseException, unavailable: bool) -> None:
    assert sqlite.is_unavailable(error) is unavailable


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"), True),
        (asyncpg.InterfaceError("cannot perform operation: connection is closed"), True),
        (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), False),
        (asyncpg.exceptions.UndefinedTableError('relation "users" does not exist'), False),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (ValueError("a bug"), False),
    ],
)
def test_only_postgres_connectivity_failures_count_as_unavailable(error: BaseException, unavailable: bool) -> None:
    assert postgres.is_unavailable(error) is unavailable


def test_a_statement_refused_on_a_closed_connection_was_never_sent() -> None:
    closed = asyncpg.InterfaceError("cannot perform operation: connection is closed")
    lost = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    assert postgres.failed_before_sending(closed) is True
    assert postgres.failed_before_sending(lost) is False


@pytest.mark.parametrize(
    "source", ["https://auth.example.com/jwks.json", "http://127.0.0.1:8000/jwks.json", "http://localhost/jwks"]
)
def test_jwks_over_https_or_loopback_http_is_accepted(source: str) -> None:
    check_jwks_source(source)


def test_jwks_over_plain_http_to_another_host_is_refused() -> None:
    with pytest.raises(JwksUnavailable, match="must use https"):
        check_jwks_source("http://auth.example.com/jwks.json")
