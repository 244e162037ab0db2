"""Bulk loading of the benchmark's world: PostgreSQL COPY (asyncpg's copy_records_to_table), SQLite
executemany, each in one transaction on a connection of its own, the way both databases' manuals
say to populate a database: the loaded tables' indexes and foreign keys are set aside for the load
and rebuilt after it from their own definitions, and every foreign key is checked once, over the
whole table, instead of once per row.

Row-by-row INSERTs through the server's storage (a pool with the server's command timeout) failed
with asyncpg's TimeoutError at 40,000 senders. Measured on the shared 2-core machine (load ~4) for
100,000 senders and 1,000,000 history superlikes (4.2 million rows): PostgreSQL COPY with the
indexes and foreign keys in place 161 s, set aside and rebuilt 34 s; SQLite executemany with foreign
keys on 59-64 s, checked afterwards 40 s.

The schema after the load is the schema before it: the definitions are read from the database's
own catalog, recreated under their own names, and compared before the transaction commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from sqlalchemy.engine import make_url

from bench.seeding import LOADED_TABLES, Chunk


class SchemaChanged(RuntimeError):
    """The rebuilt indexes or constraints differ from the ones the migrations created."""


def method(database_url: str) -> str:
    if _is_sqlite(database_url):
        return "SQLite executemany in one transaction, indexes rebuilt and foreign keys checked after the load"
    return "PostgreSQL COPY (asyncpg copy_records_to_table) in one transaction, keys and indexes rebuilt after it"


async def load(database_url: str, chunks: Iterable[Chunk]) -> dict[str, int]:
    """Writes every chunk in order, all or nothing; returns the rows written per table."""
    if _is_sqlite(database_url):
        return _load_sqlite(database_url, chunks)
    return await _load_postgres(database_url, chunks)


def _is_sqlite(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "sqlite"


# ------------------------------------------------------------------------------------- PostgreSQL

# Foreign keys of, or pointing at, the loaded tables (a primary key cannot go while one points at it).
_FOREIGN_KEYS = """
SELECT conrelid::regclass::text AS table_name, conname AS name, pg_get_constraintdef(oid) AS definition
FROM pg_constraint
WHERE contype = 'f' AND (conrelid::regclass::text = ANY($1::text[]) OR confrelid::regclass::text = ANY($1::text[]))
ORDER BY 1, 2
"""
_KEYS = """
SELECT conrelid::regclass::text AS table_name, conname AS name, pg_get_constraintdef(oid) AS definition
FROM pg_constraint
WHERE contype IN ('p', 'u') AND conrelid::regclass::text = ANY($1::text[])
ORDER BY 1, 2
"""
# Plain indexes: the ones no constraint owns.
_INDEXES = """
SELECT tablename AS table_name, indexname AS name, indexdef AS definition
FROM pg_indexes i
WHERE schemaname = current_schema() AND tablename = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = format('%I.%I', i.schemaname, i.indexname)::regclass)
ORDER BY 1, 2
"""


async def _load_postgres(database_url: str, chunks: Iterable[Chunk]) -> dict[str, int]:
    import asyncpg

    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=10)
    written: dict[str, int] = {}
    tables = list(LOADED_TABLES)
    try:
        async with connection.transaction():
            # Index builds sort in memory instead of on disk.
            await connection.execute("SET LOCAL maintenance_work_mem = '256MB'")
            foreign_keys = await connection.fetch(_FOREIGN_KEYS, tables)
            keys = await connection.fetch(_KEYS, tables)
            indexes = await connection.fetch(_INDEXES, tables)
            for row in [*foreign_keys, *keys]:
                await connection.execute(f"ALTER TABLE {row['table_name']} DROP CONSTRAINT {_quote(row['name'])}")
            for row in indexes:
                await connection.execute(f"DROP INDEX {_quote(row['name'])}")
            for table, columns, rows in chunks:
                await connection.copy_records_to_table(table, records=rows, columns=list(columns))
                written[table] = written.get(table, 0) + len(rows)
            # Keys first (foreign keys need the referenced key), then indexes; adding a foreign key
            # checks every existing row.
            for row in keys:
                await connection.execute(
                    f"ALTER TABLE {row['table_name']} ADD CONSTRAINT {_quote(row['name'])} {row['definition']}"
                )
            for row in indexes:
                await connection.execute(row["definition"])
            for row in foreign_keys:
                await connection.execute(
                    f"ALTER TABLE {row['table_name']} ADD CONSTRAINT {_quote(row['name'])} {row['definition']}"
                )
            for query, before in ((_FOREIGN_KEYS, foreign_keys), (_KEYS, keys), (_INDEXES, indexes)):
                after = await connection.fetch(query, tables)
                if [tuple(r) for r in after] != [tuple(r) for r in before]:
                    raise SchemaChanged(f"rebuilt {after} differ from the migrated {before}")
    finally:
        await connection.close()
    return written


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ----------------------------------------------------------------------------------------- SQLite

_SQLITE_INDEXES = (
    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({}) ORDER BY name"
)


def _load_sqlite(database_url: str, chunks: Iterable[Chunk]) -> dict[str, int]:
    path = make_url(database_url).database
    if not path:
        raise ValueError(f"not a SQLite database file: {database_url}")
    # isolation_level=None: the BEGIN/COMMIT below are the only transaction.
    connection = sqlite3.connect(path, isolation_level=None)
    written: dict[str, int] = {}
    tables = ", ".join(f"'{t}'" for t in LOADED_TABLES)
    try:
        # Checked once after the load (foreign_key_check), not per row; the pragma is a no-op inside
        # a transaction, so it is set before it.
        connection.execute("PRAGMA foreign_keys=OFF")
        # Durability of a seed rebuilt on every run is not worth an fsync per page (the server's own
        # connections keep synchronous=FULL), and the transaction's pages stay in memory until the
        # commit instead of spilling to the WAL mid-load (~1 GB for 1,000,000 superlikes).
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-2000000")
        connection.execute("BEGIN IMMEDIATE")
        try:
            # Indexes declared with CREATE INDEX; the primary and unique keys stay (SQLite keeps
            # them in the table's own definition).
            indexes = connection.execute(_SQLITE_INDEXES.format(tables)).fetchall()
            for name, _ in indexes:
                connection.execute(f"DROP INDEX {_quote(name)}")
            for table, columns, rows in chunks:
                placeholders = ", ".join("?" for _ in columns)
                connection.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)
                written[table] = written.get(table, 0) + len(rows)
            for _, sql in indexes:
                connection.execute(sql)
            dangling = connection.execute("PRAGMA foreign_key_check").fetchmany(5)
            if dangling:
                raise SchemaChanged(f"rows without their referenced row (table, rowid, parent, fk): {dangling}")
            rebuilt = connection.execute(_SQLITE_INDEXES.format(tables)).fetchall()
            if rebuilt != indexes:
                raise SchemaChanged(f"rebuilt indexes {rebuilt} differ from the migrated {indexes}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    finally:
        connection.close()
    return written
