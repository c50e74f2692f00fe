"""How rows reach a table, on each backend: the one place the batch writer sends SQL from.

PostgreSQL: rows go as ``unnest`` arrays inside one ``INSERT … SELECT`` (one round trip);
from :data:`COPY_MIN_ROWS` on, by ``COPY`` into a temporary staging table first, then one
``INSERT … SELECT`` from it. SQLite: one prepared ``INSERT`` run over every row
(``executemany``), with values sqlite3 binds as they are. Both count what they wrote.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from botdb._json_values import dumps
from botdb.engine.connection import Connection

__all__ = ["COPY_MIN_ROWS", "RowWriter", "WriteCounts", "is_postgres", "json_text"]

#: From this many rows on, PostgreSQL gets them by COPY into a staging table; below it, as
#: ``unnest`` arrays in the statement. Measured with plain messages on the benchmark machine
#: (rows/s, arrays vs COPY staging): 20 rows 13k vs 2k, 200 rows 40k vs 15k, 2,000 rows 48k
#: vs 39k, 5,000 and 10,000 rows ~45k both. The staging table costs a CREATE (once per
#: transaction), a TRUNCATE and the pooled connection's reset (temporary tables); COPY's
#: binary rows catch up only for large batches (imports).
COPY_MIN_ROWS = 5000


class WriteCounts(dict[str, int]):
    """Rows written per table (inserted or updated; an upsert that changed nothing may count).

    Counts of several calls add up with ``+=``; ``total`` is their sum.
    """

    @property
    def total(self) -> int:
        return sum(self.values())

    def __iadd__(self, other: dict[str, int]) -> WriteCounts:
        for table, count in other.items():
            self[table] = self.get(table, 0) + count
        return self

    def add(self, table: str, count: int) -> None:
        if count:
            self[table] = self.get(table, 0) + count


def is_postgres(conn: Connection) -> bool:
    """Whether ``conn`` is a PostgreSQL connection."""
    return conn.backend == "postgresql"


_PG_TYPES = {
    "id": "bigint",
    "guild_id": "bigint",
    "channel_id": "bigint",
    "thread_id": "bigint",
    "author_id": "bigint",
    "user_id": "bigint",
    "message_id": "bigint",
    "parent_id": "bigint",
    "reply_to_id": "bigint",
    "emoji_id": "bigint",
    "role_id": "bigint",
    "target_id": "bigint",
    "size": "bigint",
    "position": "smallint",
    "attachment_count": "smallint",
    "width": "integer",
    "height": "integer",
    "count": "integer",
    "duration_ms": "integer",
    "created_at": "timestamptz",
    "edited_at": "timestamptz",
    "deleted_at": "timestamptz",
    "removed_at": "timestamptz",
    "joined_at": "timestamptz",
    "left_at": "timestamptz",
    "occurred_at": "timestamptz",
    "started_at": "timestamptz",
    "deleted": "boolean",
    "is_bot": "boolean",
    "pinned": "boolean",
    "partial": "boolean",
    "animated": "boolean",
    "is_active": "boolean",
    "success": "boolean",
    "extra": "jsonb",
    "args": "jsonb",
}


def _pg_type(column: str) -> str:
    return _PG_TYPES.get(column, "text")


class RowWriter:
    """Sends rows for one batch on one connection, counting rows written per table."""

    def __init__(self, conn: Connection, postgres: bool, counts: WriteCounts) -> None:
        self.conn = conn
        self.postgres = postgres
        self.counts = counts
        #: The database's "now" (on SQLite in the text format every timestamp column holds).
        # On PostgreSQL the proposed row's own default (``utcnow()``, the transaction's time):
        # Citus refuses a non-IMMUTABLE function such as CURRENT_TIMESTAMP in DO UPDATE SET.
        self.now = "excluded.updated_at" if postgres else "strftime('%Y-%m-%d %H:%M:%f000', 'now')"

    async def upsert(
        self,
        table: str,
        columns: Sequence[str],
        rows: list[Any],
        conflict: str,
        *,
        returning: str | None = None,
    ) -> list[Any]:
        """``INSERT INTO table (columns) <rows> <conflict>``; counts what was written."""
        if not rows:
            return []
        names = ", ".join(columns)
        tail = f" {conflict}" + (f" RETURNING {returning}" if returning else "")
        if not self.postgres:
            rows = _sqlite_rows(rows, columns)
            placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
            sql = f"INSERT INTO {table} ({names}) VALUES ({placeholders}){tail}"
            self.counts.add(table, await self._sqlite_many(sql, rows))
            return []
        json_at = [i for i, c in enumerate(columns) if _pg_type(c) == "jsonb"]
        if json_at:
            rows = [_pg_json(row, json_at) for row in rows]
        selected = ", ".join(f"{c}::jsonb" if _pg_type(c) == "jsonb" else c for c in columns)
        if len(rows) >= COPY_MIN_ROWS:
            # One staging table per table and column set for the whole transaction: an import
            # calls this thousands of times in one transaction, and a CREATE/DROP per call
            # would hold ~25 lock-table entries per call until the commit (the server's lock
            # table fills at a few thousand). Emptied by TRUNCATE (same lock, no dead rows);
            # dropped at commit; made again if a rolled-back savepoint took it.
            stage = f"botdb_stage_{table}_{zlib.crc32(names.encode()):08x}"
            definition = ", ".join(
                f"{c} {'text' if _pg_type(c) == 'jsonb' else _pg_type(c)}" for c in columns
            )
            await self.conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({definition}) ON COMMIT DROP"
            )
            await self.conn.copy_records_to_table(stage, records=rows, columns=columns)
            sql = f"INSERT INTO {table} ({names}) SELECT {selected} FROM {stage}{tail}"
            result = await self._run(table, sql, (), returning)
            await self.conn.execute(f"TRUNCATE {stage}")
            return result
        arrays = ", ".join(
            f"${i}::{'text' if _pg_type(c) == 'jsonb' else _pg_type(c)}[]"
            for i, c in enumerate(columns, 1)
        )
        sql = (
            f"INSERT INTO {table} ({names}) SELECT {selected} "
            f"FROM unnest({arrays}) AS s({names}){tail}"
        )
        return await self._run(
            table, sql, [list(col) for col in zip(*rows, strict=True)], returning
        )

    async def _run(
        self, table: str, sql: str, args: Sequence[Any], returning: str | None
    ) -> list[Any]:
        if returning:
            found = await self.conn.fetch(sql, *args)
            self.counts.add(table, len(found))
            return found
        status = await self.conn.execute(sql, *args)
        self.counts.add(table, int(status.rsplit(" ", 1)[-1]))
        return []

    async def execute_many(self, table: str, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """An UPDATE or DELETE per row; counts the rows it changed (SQLite) or was given."""
        if not rows:
            return
        if self.postgres:
            await self.conn.execute_many(sql, rows)
            self.counts.add(table, len(rows))
            return
        self.counts.add(table, await self._sqlite_many(sql, rows))

    async def _sqlite_many(self, sql: str, rows: list[Any]) -> int:
        """The rows the statement itself changed (sqlite3's rowcount: what triggers write, the
        full-text index and the stats' summaries, is not counted, unlike ``total_changes()``)."""
        count = await self.conn.execute_many(sql, rows)
        return count or 0


# -- values for the drivers -------------------------------------------------------------------


def json_text(value: Any) -> str | None:
    return None if value is None else dumps(value, "extra").decode()


def _pg_json(row: Sequence[Any], positions: list[int]) -> Sequence[Any]:
    """``row`` with its JSON values as text (asyncpg sends ``jsonb`` as text; the SQL casts)."""
    if all(row[i] is None or isinstance(row[i], str) for i in positions):
        return row
    values = list(row)
    for i in positions:
        if values[i] is not None and not isinstance(values[i], str):
            values[i] = json_text(values[i])
    return values


def _sqlite_text(value: Any) -> Any:
    """A datetime or JSON value as the text SQLite stores (SQLAlchemy's format, in UTC)."""
    if isinstance(value, datetime):
        if value.utcoffset():
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, dict):
        return dumps(value, "extra").decode()
    return value


def _sqlite_rows(rows: list[Any], columns: Sequence[str]) -> list[Any]:
    """Rows with only values sqlite3 binds as they are: the engine then passes them through
    without looking at each value again (that per-value conversion cost ~10 µs a message).
    Lists are converted in place (no copy: an object per row costs in garbage collection)."""
    converted = [i for i, c in enumerate(columns) if _pg_type(c) in ("timestamptz", "jsonb")]
    if not converted:
        return rows
    out = []
    for row in rows:
        values = row if type(row) is list else list(row)
        for i in converted:
            value = values[i]
            if value is not None:
                values[i] = _sqlite_text(value)
        out.append(values)
    return out
