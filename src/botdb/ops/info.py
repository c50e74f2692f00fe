"""What a database is and holds (what a bot's ``get_database_info`` / ``get_table_info``
admin command shows), and ``init``: create or connect, then bring the schema up to date."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from typing import TYPE_CHECKING, Any

from botdb.errors import BotDBError
from botdb.ops._common import quote_ident, sqlite_location

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase

__all__ = ["database_info", "init", "table_info"]

_SQLITE_PRAGMAS = (
    "journal_mode",
    "synchronous",
    "foreign_keys",
    "cache_size",
    "page_size",
    "page_count",
    "freelist_count",
    "auto_vacuum",
    "user_version",
)
_PG_SETTINGS = [
    "server_encoding",
    "TimeZone",
    "max_connections",
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "default_transaction_isolation",
    "autovacuum",
]
# User tables of PostgreSQL: ordinary and partitioned tables outside the system schemas (a
# partitioned table's size is its partitions').
_PG_TABLES = """
SELECT n.nspname AS schema, c.relname AS name, c.oid::bigint AS oid,
       CASE WHEN c.relkind = 'p' THEN (SELECT COALESCE(sum(pg_total_relation_size(t.relid)), 0)
            FROM pg_partition_tree(c.oid) t)::bigint
            ELSE pg_total_relation_size(c.oid) END AS size,
       GREATEST(c.reltuples, 0)::bigint AS estimate,
       COALESCE(array_agg(i.relname::text ORDER BY i.relname)
                FILTER (WHERE i.relname IS NOT NULL), '{}') AS indexes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index x ON x.indrelid = c.oid
LEFT JOIN pg_class i ON i.oid = x.indexrelid
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
GROUP BY n.nspname, c.relname, c.oid
ORDER BY n.nspname, c.relname
"""


def pg_table_key(schema: str, name: str) -> str:
    """How a PostgreSQL table is named in reports: ``name`` in ``public``, else ``schema.name``."""
    return name if schema == "public" else f"{schema}.{name}"


async def table_info(db: OpsDatabase, *, exact: bool = True) -> list[dict[str, Any]]:
    """Every user table with its row count, size in bytes (with indexes) and index names.

    Args:
        db: a connected Database.
        exact: count rows with ``count(*)``; False uses PostgreSQL's planner estimate
            (``reltuples``), which is instant on 10M-row tables (SQLite always counts).

    Returns:
        ``[{"name", "rows", "size_bytes", "indexes"}, ...]`` sorted by name; PostgreSQL
        entries also carry ``"schema"`` (names outside ``public`` are ``schema.table``).
    """
    if db.backend == "sqlite":
        return await _sqlite_tables(db)
    tables: list[dict[str, Any]] = []
    for row in await db.fetch(_PG_TABLES):
        target = f"{quote_ident(row['schema'])}.{quote_ident(row['name'])}"
        rows = await db.fetchval(f"SELECT count(*) FROM {target}") if exact else row["estimate"]
        tables.append(
            {
                "name": pg_table_key(row["schema"], row["name"]),
                "schema": row["schema"],
                "rows": int(rows),
                "size_bytes": int(row["size"]),
                "indexes": list(row["indexes"]),
            }
        )
    return tables


async def _sqlite_tables(db: OpsDatabase) -> list[dict[str, Any]]:
    names = [
        r["name"]
        for r in await db.fetch(
            # botdb_invalidations: the cache's short-lived log (botdb.cache._sqlite_log).
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'botdb_invalidations' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        )
    ]
    indexes: dict[str, list[str]] = {name: [] for name in names}
    for r in await db.fetch(
        "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' ORDER BY name"
    ):
        indexes.setdefault(r["tbl_name"], []).append(r["name"])
    sizes: dict[str, int] = {}
    try:
        for r in await db.fetch("SELECT name, SUM(pgsize) AS size FROM dbstat GROUP BY name"):
            sizes[r["name"]] = int(r["size"])
    except BotDBError:  # dbstat is a compile-time option of SQLite; sizes become None
        sizes = {}
    tables = []
    for name in names:
        count = await db.fetchval(f"SELECT count(*) FROM {quote_ident(name)}")
        size = None
        if sizes:
            size = sizes.get(name, 0) + sum(sizes.get(i, 0) for i in indexes[name])
        tables.append(
            {"name": name, "rows": int(count), "size_bytes": size, "indexes": indexes[name]}
        )
    return tables


async def database_info(
    db: OpsDatabase, *, tables: bool = True, exact: bool = True
) -> dict[str, Any]:
    """Where the database is, its size, version, settings, tables and pending migrations.

    Returns:
        A dict: ``backend``, ``url`` (password masked), ``path`` (SQLite) or ``database``
        (PostgreSQL), ``size_bytes``, ``sqlite_version`` / ``server_version``, ``pragmas``
        (SQLite) or ``settings`` (PostgreSQL), ``tables`` (see :func:`table_info`; omitted
        when ``tables=False``), ``table_count``, and ``migrations``: ``{"pending": [...]}``,
        or None with ``migrations_error`` saying why they could not be read.
    """
    info: dict[str, Any] = {"backend": db.backend, "url": db.url}
    url = db.settings.url
    if db.backend == "sqlite":
        info["path"] = sqlite_location(db)
        info["sqlite_version"] = sqlite3.sqlite_version
        pragmas = {name: await db.fetchval(f"PRAGMA {name}") for name in _SQLITE_PRAGMAS}
        info["pragmas"] = pragmas
        info["size_bytes"] = int(pragmas["page_count"]) * int(pragmas["page_size"])
        if not url.is_memory:
            info["file_bytes"] = await asyncio.to_thread(_file_bytes, url.path)
    else:
        info["database"] = url.database
        info["server_version"] = await db.fetchval("SHOW server_version")
        info["size_bytes"] = int(await db.fetchval("SELECT pg_database_size(current_database())"))
        rows = await db.fetch(
            "SELECT name, current_setting(name) AS value FROM pg_settings "
            "WHERE name = ANY($1::text[]) ORDER BY name",
            _PG_SETTINGS,
        )
        info["settings"] = {r["name"]: r["value"] for r in rows}
    listed = await table_info(db, exact=exact)
    info["table_count"] = len(listed)
    if tables:
        info["tables"] = listed
    info.update(await _migrations(db))
    return info


def _file_bytes(path: str) -> int:
    """The database file plus its WAL, on disk."""
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.stat(path + suffix).st_size
        except FileNotFoundError:
            continue
    return total


async def _migrations(db: OpsDatabase) -> dict[str, Any]:
    try:
        from botdb.migrations import Migrator  # type: ignore[attr-defined,unused-ignore]
    except ImportError as exc:
        return {"migrations": None, "migrations_error": f"botdb.migrations is unavailable: {exc}"}
    try:
        pending = await Migrator(db).pending()
    except Exception as exc:  # reported, not raised: info must print even so
        return {"migrations": None, "migrations_error": f"{type(exc).__name__}: {exc}"}
    return {"migrations": {"pending": [str(p) for p in pending]}}


async def init(db: OpsDatabase) -> dict[str, Any]:
    """Create or connect to the database and bring its schema up to date.

    Runs :meth:`Database.migrate`; when the migrations package is not available yet it
    falls back to :meth:`Database.create_tables` and says so in ``schema``/``note``.

    Returns:
        ``{"backend", "url", "location", "schema": "migrated" | "create_tables", "note",
        "tables"}``; ``location`` is the SQLite file's absolute path or ``host/database``.
    """
    await db.connect()
    note = ""
    try:
        await db.migrate()
        schema = "migrated"
    except ImportError as exc:
        await db.create_tables()
        schema = "create_tables"
        note = f"migrations unavailable ({exc}); created the built-in tables directly"
    url = db.settings.url
    if db.backend == "sqlite":
        location = sqlite_location(db)
    else:
        location = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"
    count = len(await table_info(db, exact=False))
    return {
        "backend": db.backend,
        "url": db.url,
        "location": location,
        "schema": schema,
        "note": note,
        "tables": count,
    }
