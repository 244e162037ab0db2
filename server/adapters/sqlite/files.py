"""SQLite keeps a database in a file (and, in WAL mode, two companions): where it is, and removing it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

# What WAL mode (engine.py) keeps beside the database file while it is in use.
_COMPANIONS = ("-wal", "-shm")


def database_file(url: str) -> Path | None:
    """The file a sqlite:// URL names; None for an in-memory database."""
    database = make_url(url).database
    if database in (None, "", ":memory:"):
        return None
    return Path(database)


def delete_database(path: Path) -> None:
    for leftover in (path, *(path.with_name(path.name + suffix) for suffix in _COMPANIONS)):
        leftover.unlink(missing_ok=True)
