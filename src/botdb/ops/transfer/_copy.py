"""Copying: per table, a reader paging through the source and a writer doing bulk writes
with its progress row."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Column
from sqlalchemy.engine import Dialect

from botdb import errors
from botdb.ops.transfer._digest import _digest_rows
from botdb.ops.transfer._types import (
    _MODULUS,
    STATE_TABLE,
    ProgressCallback,
    TableTransfer,
    TransferReport,
    _q,
    _TablePlan,
)
from botdb.ops.transfer._values import _convert, _decoders, _encoder, _is_json

if TYPE_CHECKING:
    from botdb._protocols import OpsDatabase


def _select(db: OpsDatabase, table: str, columns: Sequence[Column[Any]]) -> str:
    postgres = db.backend == "postgresql"
    exprs = ", ".join(
        f"{_q(c.name)}::text" if postgres and _is_json(c) else _q(c.name) for c in columns
    )
    return f"SELECT {exprs} FROM {_q(table)}"


async def _batches(
    db: OpsDatabase,
    table: str,
    columns: list[Column[Any]],
    key: list[Column[Any]],
    batch_size: int,
    after: list[Any] | None,
) -> AsyncGenerator[list[Any], None]:
    """The table's raw rows in primary-key order, ``batch_size`` at a time (keyset
    pagination on the key's raw values: never OFFSET, no snapshot held between batches).

    Read through the driver (asyncpg; sqlite3 in a worker thread): decode with
    :func:`_decoder`. A table without a primary key is streamed instead, with a server-side
    cursor in one read transaction (PostgreSQL) or one SQLite cursor.
    """
    base = _select(db, table, columns)
    postgres = db.backend == "postgresql"
    async with db.acquire() as conn:
        driver = conn.driver_connection
        if not key:
            if postgres:
                async with driver.transaction(readonly=True):
                    cursor = await driver.cursor(base)
                    while page := await cursor.fetch(batch_size):
                        yield page
                return
            cursor = await asyncio.to_thread(driver.execute, base)
            try:
                while page := await asyncio.to_thread(cursor.fetchmany, batch_size):
                    yield page
            finally:
                cursor.close()
            return
        names = ", ".join(_q(c.name) for c in key)
        marks = ", ".join(f"${i}" if postgres else "?" for i in range(1, len(key) + 1))
        first = f"{base} ORDER BY {names} LIMIT {batch_size}"
        later = f"{base} WHERE ({names}) > ({marks}) ORDER BY {names} LIMIT {batch_size}"
        key_at = [columns.index(c) for c in key]
        while True:
            sql, args = (first, ()) if after is None else (later, tuple(after))
            if postgres:
                rows = await driver.fetch(sql, *args)
            else:
                rows = await asyncio.to_thread(_sqlite_fetch, driver, sql, args)
            if not rows:
                return
            yield rows
            if len(rows) < batch_size:
                return
            after = [rows[-1][i] for i in key_at]


def _sqlite_fetch(driver: Any, sql: str, args: tuple[Any, ...]) -> list[Any]:
    return list(driver.execute(sql, args).fetchall())


def _key_to_text(values: list[Any]) -> str:
    def tag(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return {"$datetime": value.isoformat()}
        return value

    return orjson.dumps([tag(v) for v in values], default=str).decode()


def _key_from_text(raw: str | None) -> list[Any] | None:
    if raw is None:
        return None
    values = orjson.loads(raw)
    return [dt.datetime.fromisoformat(v["$datetime"]) if isinstance(v, dict) else v for v in values]


async def _copy_all(
    source: OpsDatabase,
    target: OpsDatabase,
    plans: list[_TablePlan],
    state: dict[str, Any],
    fingerprint: str,
    batch_size: int,
    queue_depth: int,
    progress: ProgressCallback | None,
    report: TransferReport,
) -> None:
    upsert = (
        f"INSERT INTO {STATE_TABLE} (table_name, last_key, rows_copied, done, source_fingerprint)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (table_name) DO UPDATE SET"
        " last_key = excluded.last_key, rows_copied = excluded.rows_copied,"
        " done = excluded.done"
    )
    entries = {entry.name: entry for entry in report.tables}
    async with target.acquire() as conn:
        checks_off = await _foreign_keys(conn, target.backend, enabled=False, report=report)
        try:
            for plan in plans:
                name = plan.table.name
                entry = entries[name]
                row = state.get(name)
                done = row["rows_copied"] if row is not None else 0
                entry.resumed_at = done
                if row is not None and row["done"]:
                    if progress is not None:
                        progress(name, done, plan.total)
                    continue
                after = _key_from_text(row["last_key"]) if row is not None else None
                if not plan.key and done:  # streamed in one transaction: never half-done
                    await conn.execute(f"DELETE FROM {_q(name)}")
                    done = entry.resumed_at = 0
                copier = _TableCopy(plan, target.engine.dialect, upsert, fingerprint, entry)
                await copier.run(conn, source, batch_size, queue_depth, after, done, progress)
        finally:
            if checks_off:
                await _foreign_keys(conn, target.backend, enabled=True, report=report)
        if target.backend == "sqlite":
            broken = await conn.fetch("PRAGMA foreign_key_check")
            if broken:
                raise errors.ForeignKeyViolationError(
                    f"{len(broken)} copied row(s) reference missing rows, e.g. in "
                    f"{broken[0][0]}; the source is inconsistent"
                )
        else:
            await _reset_sequences(conn, plans)


class _TableCopy:
    """One table's copy: a reader task and this writer, a bounded queue between them.

    The reader pages through the source (keyset order), converts each value to what the
    target column holds, and adds each row's digest to the source checksum as it goes (the
    verification's source side, computed in the same pass). The writer turns the rows into
    the target driver's values and writes each batch with the target's bulk path (COPY on
    PostgreSQL, one prepared ``executemany`` on SQLite) in one transaction with its progress
    row. At most ``queue_depth`` batches wait: memory is ``batch_size * (queue_depth + 2)``
    rows, whatever the table's size.
    """

    def __init__(
        self,
        plan: _TablePlan,
        dialect: Dialect,
        upsert: str,
        fingerprint: str,
        entry: TableTransfer,
    ) -> None:
        self.plan = plan
        self.bind = [_encoder(c, dialect) for c in plan.columns]
        self.upsert = upsert
        self.fingerprint = fingerprint
        self.entry = entry
        self.count = 0
        self.digest = 0

    async def _read(
        self,
        source: OpsDatabase,
        batch_size: int,
        after: list[Any] | None,
        queue: asyncio.Queue[tuple[list[Any], str | None] | None],
    ) -> None:
        plan = self.plan
        key_at = [plan.source_columns.index(c) for c in plan.source_key]
        convert = _decoders(source, plan.source_columns, plan.convert)
        active = any(f is not None for f in convert)
        batches = _batches(
            source, plan.table.name, plan.source_columns, plan.source_key, batch_size, after
        )
        async with aclosing(batches) as pages:
            async for page in pages:
                last = _key_to_text([page[-1][i] for i in key_at]) if key_at else None
                try:
                    rows: list[Any] = _convert(page, convert) if active else list(page)
                except (ValueError, TypeError) as exc:  # e.g. a malformed datetime text
                    raise errors.DataError(
                        f"{plan.table.name}: a stored value cannot be read as its column's "
                        f"type ({type(exc).__name__}: {exc}); nothing of this batch was copied"
                    ) from exc
                self.digest += _digest_rows(rows)
                self.count += len(rows)
                await queue.put((rows, last))
        await queue.put(None)

    async def run(
        self,
        conn: Any,
        source: OpsDatabase,
        batch_size: int,
        queue_depth: int,
        after: list[Any] | None,
        done: int,
        progress: ProgressCallback | None,
    ) -> int:
        """Copy the table's remaining rows; returns the rows copied in all runs."""
        plan, entry = self.plan, self.entry
        name = plan.table.name
        names = [c.name for c in plan.columns]
        queue: asyncio.Queue[tuple[list[Any], str | None] | None] = asyncio.Queue(queue_depth)
        reader = asyncio.create_task(self._read(source, batch_size, after, queue))
        try:
            # A table without a key is streamed in one transaction: all or nothing.
            whole = conn.transaction() if not plan.key else contextlib.nullcontext()
            async with whole:
                while (item := await _next(queue, reader)) is not None:
                    rows, last = item
                    records = _convert(rows, self.bind)
                    if plan.key:
                        async with conn.transaction():
                            await conn.copy_records_to_table(name, records=records, columns=names)
                            await conn.execute(
                                self.upsert, name, last, done + len(rows), 0, self.fingerprint
                            )
                    else:
                        await conn.copy_records_to_table(name, records=records, columns=names)
                    done += len(rows)
                    entry.copied += len(rows)
                    if progress is not None:
                        progress(name, done, plan.total)
                await conn.execute(self.upsert, name, None, done, 1, self.fingerprint)
            await reader
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
        if not plan.key and progress is not None and not entry.copied:
            progress(name, done, plan.total)
        if entry.resumed_at == 0:  # read whole in this pass: the source side is known
            entry.source_rows = self.count
            entry.source_checksum = f"{self.digest % _MODULUS:064x}"
        return done


async def _next(
    queue: asyncio.Queue[tuple[list[Any], str | None] | None], reader: asyncio.Task[None]
) -> tuple[list[Any], str | None] | None:
    """The next batch, or the reader's error as soon as it fails (never a hang)."""
    getter = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        getter.cancel()
        raise
    if getter.done():
        return getter.result()
    getter.cancel()
    reader.result()  # raises the reader's error
    return await queue.get()  # the reader finished: its last items are queued


async def _foreign_keys(conn: Any, backend: str, *, enabled: bool, report: TransferReport) -> bool:
    if backend == "sqlite":
        await conn.execute(f"PRAGMA foreign_keys = {'ON' if enabled else 'OFF'}")
        return True
    try:
        await conn.execute(
            "RESET session_replication_role"
            if enabled
            else "SET session_replication_role = replica"
        )
    except errors.QueryError:
        report.notes.append("no privilege to defer foreign-key checks: copied in key order")
        return False
    return True


async def _reset_sequences(conn: Any, plans: list[_TablePlan]) -> None:
    for plan in plans:
        if len(plan.key) != 1 or not _is_integer(plan.key[0]):
            continue
        table, column = plan.table.name, plan.key[0].name
        sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, $2)", _q(table), column)
        if sequence is not None:
            await conn.fetchval(
                f"SELECT setval($1::text::regclass, COALESCE(MAX({_q(column)}), 1),"
                f" MAX({_q(column)}) IS NOT NULL) FROM {_q(table)}",
                sequence,
            )


def _is_integer(column: Column[Any]) -> bool:
    try:
        return column.type.python_type is int
    except NotImplementedError:
        return False
