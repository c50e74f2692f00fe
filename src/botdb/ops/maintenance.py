"""Keeping a database fast and checking it: optimize, integrity, index and view maintenance.

SQLite: ``PRAGMA optimize``, ``ANALYZE``, ``VACUUM`` (or ``PRAGMA incremental_vacuum`` when
``auto_vacuum`` is INCREMENTAL), a WAL checkpoint, ``integrity_check`` and
``foreign_key_check``. PostgreSQL: ``VACUUM (ANALYZE)`` table by table (outside any
transaction), :func:`maintain_indexes` and :func:`refresh_materialized_views`.

Statements run on one held connection without botdb's statement timeout (a VACUUM of a big
table may take minutes); on PostgreSQL ``statement_timeout`` is lifted for the duration and
reset afterwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from botdb.errors import ArgumentError, BotDBError, UndefinedTableError
from botdb.ops._common import Progress, quote_ident

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase
    from botdb.engine.connection import Connection

__all__ = [
    "MESSAGE_TABLES",
    "analyze",
    "integrity",
    "maintain_indexes",
    "optimize",
    "refresh_materialized_views",
]

#: The tables a chat-event bulk load fills: what the recorder and the importers analyze after.
MESSAGE_TABLES = ("messages", "attachments", "mentions", "reactions", "reaction_counts")
#: SQLite: rows ANALYZE reads per index (``PRAGMA analysis_limit``). Sampled statistics tell
#: the planner the shape of the table as well as a full pass: measured on 1M messages with ten
#: indexes, ANALYZE took ~0.7 s in full and ~0.02 s sampled, and the hot reads planned alike.
SQLITE_ANALYSIS_LIMIT = 1000

_USER_NS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
)
_PG_TABLES = f"""SELECT n.nspname AS schema, c.relname AS name FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm') AND {_USER_NS} ORDER BY 1, 2"""
# Per btree index: its size, the table's tuple estimate and the summed average width of the
# indexed columns (pg_stats, filled by ANALYZE); expression columns count as 8 bytes.
_PG_INDEXES = f"""SELECT n.nspname AS schema, i.relname AS name, t.relname AS table_name,
    am.amname AS method, pg_relation_size(i.oid) AS size, i.relpages AS pages,
    t.reltuples AS tuples, x.indisvalid AS valid, COALESCE(s.idx_scan, 0) AS scans,
    (SELECT COALESCE(SUM(COALESCE(st.avg_width, 8)), 0) FROM unnest(x.indkey) AS k(attnum)
       LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
       LEFT JOIN pg_stats st ON st.schemaname = n.nspname AND st.tablename = t.relname
            AND st.attname = a.attname) AS key_width,
    current_setting('block_size')::int AS block_size
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = i.relnamespace
    JOIN pg_am am ON am.oid = i.relam
    LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.oid
    WHERE {_USER_NS} ORDER BY 1, 2"""
_MATVIEWS = f"""SELECT n.nspname AS schema, c.relname AS name, c.relispopulated AS populated,
    EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisunique
            AND x.indisvalid AND x.indpred IS NULL AND NOT (0 = ANY(x.indkey))) AS has_unique
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'm' AND {_USER_NS} ORDER BY 1, 2"""


# The GIN indexes of the given tables (all when NULL), with pending entries to merge. Of a
# partitioned table (partitioned messages) they are its partitions' indexes: the parent's
# index holds no entries and gin_clean_pending_list refuses it ("is not a GIN index").
_PG_GIN = f"""SELECT x.indexrelid::oid AS oid FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam
    JOIN pg_namespace n ON n.oid = i.relnamespace
    WHERE am.amname = 'gin' AND i.relkind = 'i' AND {_USER_NS}
    AND ($1::text[] IS NULL OR x.indrelid = ANY (
        SELECT to_regclass(quote_ident(t)) FROM unnest($1::text[]) AS t
        UNION ALL SELECT p.relid FROM unnest($1::text[]) AS t,
        pg_partition_tree(to_regclass(quote_ident(t))) AS p))"""


@asynccontextmanager
async def _maintenance_connection(db: OpsDatabase) -> AsyncIterator[Connection]:
    async with db.acquire() as conn:
        if db.backend == "sqlite":
            yield conn  # a held connection has no client-side deadline (timeout=None)
            return
        await conn.execute("SET statement_timeout = 0")
        try:
            yield conn
        finally:
            await conn.execute("RESET statement_timeout")


async def analyze(db: OpsDatabase, tables: Iterable[str] | None = None) -> dict[str, Any]:
    """Refresh the query planner's statistics of ``tables`` (default: every table).

    Call it after a bulk load (an import, a backlog replay): a planner that still believes a
    table empty may pick a plan that reads the whole table for one page. PostgreSQL: ``ANALYZE``
    (a sample of 30k rows per table by default), then the pending entries of the tables' GIN
    indexes are merged (``gin_clean_pending_list``), which a search would otherwise read in
    full. SQLite: ``ANALYZE`` reading at most :data:`SQLITE_ANALYSIS_LIMIT` rows per index,
    then ``PRAGMA optimize``. Cheap enough to run after every large batch; it changes no data.

    Args:
        db: a connected Database.
        tables: table names, e.g. :data:`MESSAGE_TABLES`.

    Returns:
        ``{"backend", "tables": [...] (None for all), "took"}``.

    Raises:
        ArgumentError: ``tables`` is a string or holds something other than names.
        UndefinedTableError: a table does not exist (nothing was analyzed).

    Example:
        >>> from botdb.ops.maintenance import MESSAGE_TABLES, analyze
        >>> await analyze(db, MESSAGE_TABLES)
    """
    started = time.perf_counter()
    names: list[str] | None = None
    if tables is not None:
        if isinstance(tables, str | bytes):
            raise ArgumentError("tables must be a list of table names, not one string")
        names = list(tables)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ArgumentError(f"a table name must be a non-empty str, got {name!r}")
    async with _maintenance_connection(db) as conn:
        if names is not None:
            exists = (
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1"
                if db.backend == "sqlite"
                else "SELECT to_regclass(quote_ident($1))"
            )
            missing = [n for n in names if await conn.fetchval(exists, n) is None]
            if missing:
                raise UndefinedTableError(f"cannot analyze: no table {', '.join(missing)}")
        statements = ["ANALYZE"] if names is None else [f"ANALYZE {quote_ident(n)}" for n in names]
        if db.backend == "sqlite":
            await conn.fetch(f"PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}")
            try:
                for statement in statements:
                    await conn.execute(statement)
            finally:
                await conn.fetch("PRAGMA analysis_limit = 0")
            await conn.fetch("PRAGMA optimize")
        else:
            for statement in statements:
                await conn.execute(statement)
            # Rows written since the last VACUUM wait in a GIN index's pending list, which every
            # search reads through in full: measured after loading 1M messages, a one-word
            # search spent 2.4 ms in the index instead of 0.02 ms until the list was merged.
            for row in await conn.fetch(_PG_GIN, names):
                await conn.fetchval("SELECT gin_clean_pending_list($1::oid::regclass)", row["oid"])
    return {"backend": db.backend, "tables": names, "took": round(time.perf_counter() - started, 4)}


def _name(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


async def integrity(db: OpsDatabase) -> dict[str, Any]:
    """Check the database without changing it.

    Returns:
        SQLite: ``{"ok", "integrity_check": [...], "foreign_key_violations": [...]}``
        (``integrity_check`` is ``["ok"]`` when sound). PostgreSQL: ``{"ok",
        "invalid_indexes": [...], "unvalidated_constraints": [...], "amcheck": ...}``;
        ``invalid_indexes`` are left by a failed ``CREATE INDEX CONCURRENTLY``;
        ``unvalidated_constraints`` (``NOT VALID``) are reported but do not make ``ok``
        False; ``amcheck`` runs ``bt_index_check`` only when that extension is installed
        (None otherwise). ``ok`` is False when any problem was found.
    """
    async with _maintenance_connection(db) as conn:
        if db.backend == "sqlite":
            return await _sqlite_integrity(conn)
        return await _pg_integrity(conn)


async def _sqlite_integrity(conn: Connection) -> dict[str, Any]:
    checks = [r[0] for r in await conn.fetch("PRAGMA integrity_check")]
    violations = [
        {"table": r[0], "rowid": r[1], "parent": r[2], "fkid": r[3]}
        for r in await conn.fetch("PRAGMA foreign_key_check")
    ]
    return {
        "ok": checks == ["ok"] and not violations,
        "backend": "sqlite",
        "integrity_check": checks,
        "foreign_key_violations": violations,
    }


async def _pg_integrity(conn: Connection) -> dict[str, Any]:
    invalid = [
        {"schema": r["schema"], "index": r["name"], "table": r["table_name"]}
        for r in await conn.fetch(
            "SELECT n.nspname AS schema, i.relname AS name, t.relname AS table_name "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_class t ON t.oid = x.indrelid "
            "JOIN pg_namespace n ON n.oid = i.relnamespace "
            f"WHERE (NOT x.indisvalid OR NOT x.indisready) AND {_USER_NS} ORDER BY 1, 2"
        )
    ]
    unvalidated = [
        {"table": r["table_name"], "constraint": r["conname"], "type": r["contype"]}
        for r in await conn.fetch(
            "SELECT c.conrelid::regclass::text AS table_name, c.conname, c.contype::text "
            "AS contype FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            f"WHERE NOT c.convalidated AND {_USER_NS} ORDER BY 1, 2"
        )
    ]
    amcheck: list[dict[str, str]] | None = None
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'amcheck')"):
        amcheck = []
        for r in await conn.fetch(_PG_INDEXES):
            if r["method"] != "btree" or not r["valid"]:
                continue
            try:
                await conn.execute(
                    "SELECT bt_index_check($1::regclass)", _name(r["schema"], r["name"])
                )
            except BotDBError as exc:  # each corrupt index is a finding, not a failure
                amcheck.append({"index": r["name"], "error": str(exc)})
    return {
        "ok": not invalid and not amcheck,
        "backend": "postgresql",
        "invalid_indexes": invalid,
        "unvalidated_constraints": unvalidated,
        "amcheck": amcheck,
    }


async def _size(db: OpsDatabase, conn: Connection) -> int:
    if db.backend == "sqlite":
        pages = int(await conn.fetchval("PRAGMA page_count"))
        return pages * int(await conn.fetchval("PRAGMA page_size"))
    return int(await conn.fetchval("SELECT pg_database_size(current_database())"))


async def optimize(
    db: OpsDatabase,
    *,
    reindex_bloat_ratio: float = 2.0,
    reindex_min_bytes: int = 1 << 20,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Analyze, vacuum, maintain indexes and views, then check integrity.

    Args:
        db: a connected Database.
        reindex_bloat_ratio: PostgreSQL: rebuild btree indexes whose size is more than this
            many times the estimated packed size (see :func:`maintain_indexes`).
        reindex_min_bytes: PostgreSQL: leave smaller indexes alone.
        progress: ``progress(phase, done, total)``.

    Returns:
        ``{"backend", "size_before", "size_after", "steps": [...], "took", "integrity": {...}}``
        plus, on PostgreSQL, ``"partitions"`` (the message partitions made ahead, see
        :func:`botdb.ops.partitions.ensure_partitions`), ``"indexes"`` and
        ``"materialized_views"``.
    """
    started = time.perf_counter()
    report: dict[str, Any] = {"backend": db.backend, "steps": []}
    async with _maintenance_connection(db) as conn:
        report["size_before"] = await _size(db, conn)
        if db.backend == "sqlite":
            await _sqlite_optimize(conn, report, progress)
        else:
            await _pg_vacuum(conn, report, progress)
    if db.backend == "postgresql":
        from botdb.ops.partitions import ensure_partitions

        report["partitions"] = await ensure_partitions(db)
        report["indexes"] = await maintain_indexes(
            db, bloat_ratio=reindex_bloat_ratio, min_bytes=reindex_min_bytes
        )
        report["materialized_views"] = await refresh_materialized_views(db)
    if progress is not None:
        progress("integrity", 0, None)
    report["integrity"] = await integrity(db)
    async with _maintenance_connection(db) as conn:
        report["size_after"] = await _size(db, conn)
    report["took"] = round(time.perf_counter() - started, 3)
    return report


async def _sqlite_optimize(
    conn: Connection, report: dict[str, Any], progress: Progress | None
) -> None:
    incremental = int(await conn.fetchval("PRAGMA auto_vacuum")) == 2
    steps = ["PRAGMA optimize", "ANALYZE"]
    steps.append("PRAGMA incremental_vacuum" if incremental else "VACUUM")
    steps.append("PRAGMA wal_checkpoint(TRUNCATE)")
    for number, statement in enumerate(steps):
        if progress is not None:
            progress(statement, number, len(steps))
        began = time.perf_counter()
        if statement.startswith("PRAGMA"):
            await conn.fetch(statement)
        else:
            await conn.execute(statement)
        report["steps"].append(
            {"statement": statement, "took": round(time.perf_counter() - began, 4)}
        )
    if progress is not None:
        progress("done", len(steps), len(steps))


async def _pg_vacuum(conn: Connection, report: dict[str, Any], progress: Progress | None) -> None:
    tables = await conn.fetch(_PG_TABLES)
    for number, row in enumerate(tables):
        statement = f"VACUUM (ANALYZE) {_name(row['schema'], row['name'])}"
        if progress is not None:
            progress(f"vacuum {row['name']}", number, len(tables))
        began = time.perf_counter()
        await conn.execute(statement)
        report["steps"].append(
            {"statement": statement, "took": round(time.perf_counter() - began, 4)}
        )
    if progress is not None:
        progress("vacuum", len(tables), len(tables))


def _estimated_pages(tuples: float, key_width: float, block_size: int) -> int:
    """Pages a freshly built btree needs: tuples x (8-byte header + aligned key + 4-byte line
    pointer), at the default 90% leaf fill factor, plus the metapage."""
    per_tuple = 8 + math.ceil(key_width / 8) * 8 + 4
    usable = (block_size - 24 - 16) * 0.9
    return max(1, math.ceil(tuples * per_tuple / usable)) + 1


async def maintain_indexes(
    db: OpsDatabase,
    *,
    bloat_ratio: float = 2.0,
    min_bytes: int = 1 << 20,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Rebuild bloated btree indexes (busy message tables bloat them); report unused ones.

    The bloat figure is a heuristic, not a measurement (pgstattuple is not assumed): an
    index's pages divided by the pages a freshly built btree would need, estimated from the
    table's ``reltuples`` and the indexed columns' ``avg_width`` in ``pg_stats`` (both kept
    by ANALYZE; run it first, as :func:`optimize` does). Indexes of never-analyzed tables are
    skipped. Rebuilds use ``REINDEX INDEX CONCURRENTLY`` (writes continue meanwhile).
    SQLite rebuilds its indexes during ``VACUUM``; there this returns an empty report.

    Args:
        db: a connected Database.
        bloat_ratio: rebuild when actual pages / estimated pages exceeds this.
        min_bytes: leave indexes smaller than this alone.
        dry_run: report the candidates without rebuilding.

    Returns:
        ``{"threshold", "reindexed": [{"index", "table", "ratio", "size_before",
        "size_after"}], "unused": [index names with zero scans], "checked": n}``.
    """
    report: dict[str, Any] = {"threshold": bloat_ratio, "reindexed": [], "unused": [], "checked": 0}
    if db.backend == "sqlite":
        report["note"] = "SQLite rebuilds indexes during VACUUM"
        return report
    async with _maintenance_connection(db) as conn:
        for row in await conn.fetch(_PG_INDEXES):
            if row["scans"] == 0:
                report["unused"].append(row["name"])
            if row["method"] != "btree" or not row["valid"] or row["tuples"] < 0:
                continue
            report["checked"] += 1
            estimate = _estimated_pages(row["tuples"], row["key_width"], row["block_size"])
            ratio = row["pages"] / estimate
            if ratio <= bloat_ratio or row["size"] < min_bytes:
                continue
            entry = {
                "index": row["name"],
                "table": row["table_name"],
                "ratio": round(ratio, 2),
                "size_before": int(row["size"]),
            }
            if not dry_run:
                name = _name(row["schema"], row["name"])
                await conn.execute(f"REINDEX INDEX CONCURRENTLY {name}")
                entry["size_after"] = int(
                    await conn.fetchval("SELECT pg_relation_size($1::regclass)", name)
                )
            report["reindexed"].append(entry)
    return report


async def refresh_materialized_views(db: OpsDatabase) -> dict[str, Any]:
    """Refresh materialized views: ``CONCURRENTLY`` (readers never blocked) when the view has
    a unique index and is populated; a view without a unique index is skipped and listed,
    since a plain refresh locks out its readers. Nothing to do on SQLite.

    Returns:
        ``{"refreshed": [...], "skipped": [{"view", "reason"}]}``.
    """
    report: dict[str, Any] = {"refreshed": [], "skipped": []}
    if db.backend == "sqlite":
        return report
    async with _maintenance_connection(db) as conn:
        for row in await conn.fetch(_MATVIEWS):
            name = _name(row["schema"], row["name"])
            if not row["has_unique"]:
                report["skipped"].append(
                    {"view": row["name"], "reason": "no unique index: cannot refresh concurrently"}
                )
                continue
            concurrently = "CONCURRENTLY " if row["populated"] else ""
            await conn.execute(f"REFRESH MATERIALIZED VIEW {concurrently}{name}")
            report["refreshed"].append(row["name"])
    return report
