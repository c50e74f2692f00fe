"""What is SQLite-specific: pragmas, the file's mode, inline reads, threads for the rest.

Why reads run inline: a hop to a worker thread (what aiosqlite does for every call) costs
~100 µs, while an indexed lookup in SQLite costs ~6 µs, so a thread per call caps the raw API
at a tenth of sqlite3's speed. botdb therefore runs a *read* on the event loop's own thread
under two guards that keep the loop responsive:

* a progress handler interrupts it once it has run for ``INLINE_BUDGET`` seconds; the read is
  then run again in a worker thread (an interrupted read changed nothing);
* the connection's busy timeout is 0 while leased, so a read that would wait for a lock fails
  at once with SQLITE_BUSY and is likewise moved to a worker thread, which waits there.

Writes, transactions' BEGIN/COMMIT, scripts and VACUUM always run in a worker thread (they may
wait for the write lock or fsync). The busy timeout is set for the duration of each threaded
call. Measured in ``make bench`` against sqlite3 and aiosqlite; the loop-latency test in
``tests/test_engine_sqlite.py`` shows a long query and a BUSY wait leave the loop responsive.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection

from botdb import _json_values
from botdb.engine.base import DriverConnection, TypedPool
from botdb.engine.record import SQLiteRecord, column_index
from botdb.engine.sql import (
    SQLiteQuery,
    status_tag,
    translate_for_sqlite,
    translate_script_for_sqlite,
)
from botdb.errors import (
    ArgumentError,
    ConfigurationError,
    DataError,
    InterfaceError,
    UndefinedTableError,
    aborted_transaction,
)

if TYPE_CHECKING:
    from botdb.config import Settings

__all__ = [
    "SQLiteConnection",
    "create_sqlite_engine",
    "prepare_sqlite_file",
    "reset_sqlite",
    "sqlite_pragmas",
]

T = TypeVar("T")

#: Longest a read may hold the event loop before it is moved to a worker thread (seconds).
INLINE_BUDGET = 0.002
#: SQLite virtual-machine steps between two calls of the progress handler (~0.2-1 ms).
PROGRESS_STEPS = 20_000
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)
_INTERRUPT = 9
# Values sqlite3 binds as they are. float is not among them: NaN must be refused (SQLite
# would store NULL), so a statement with a float argument takes the _plain_value path. An
# int beyond 64 bits or a str with a lone surrogate is left to sqlite3, whose OverflowError /
# UnicodeEncodeError the error boundary turns into DataError (no check on the happy path).
_NATIVE = (int, str, bytes, type(None))


def prepare_sqlite_file(path: str, *, create: bool = True) -> None:
    """Create a new database file readable by its owner only (0600), before SQLite opens it.

    With ``create=False`` a missing file is a ConfigurationError instead (a mistyped path must
    not turn into a new, empty, "healthy" database).
    """
    if path in ("", ":memory:"):
        return
    target = Path(path)
    if not create and not target.is_file():
        raise ConfigurationError(
            f"the SQLite database {path} does not exist (`botdb init` creates it)"
        )
    if not target.parent.is_dir():
        raise ConfigurationError(f"the directory for the SQLite database does not exist: {path}")
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigurationError(f"cannot create the SQLite database {path}: {exc}") from exc
    os.close(fd)


def create_sqlite_engine(settings: Settings, *, memory_name: str | None = None) -> AsyncEngine:
    """One SQLAlchemy AsyncEngine on aiosqlite, every connection set up with botdb's pragmas.

    An in-memory database is a named shared-cache database, so every pooled connection sees
    the same data (concurrent writers there meet SQLITE_LOCKED, which botdb retries).
    """
    url = settings.url
    if memory_name is not None:
        sa_url = f"sqlite+aiosqlite:///file:{memory_name}?mode=memory&cache=shared&uri=true"
    else:
        sa_url = url.sqlalchemy_url()
    engine = create_async_engine(
        sa_url,
        poolclass=TypedPool,
        pool_size=settings.pool_max_size,
        max_overflow=0,
        pool_timeout=settings.pool_acquire_timeout,
        connect_args={"check_same_thread": False, "cached_statements": 256},
    )

    pragmas = sqlite_pragmas(settings)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        raw: sqlite3.Connection = dbapi_connection.driver_connection._conn
        raw.isolation_level = None  # botdb and SQLAlchemy (below) emit BEGIN themselves
        if memory_name is None:
            raw.execute("PRAGMA journal_mode = WAL")
        for pragma in pragmas:
            raw.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


def sqlite_pragmas(settings: Settings) -> tuple[str, ...]:
    """The per-connection pragmas botdb sets on every SQLite connection it opens."""
    return (
        "synchronous = NORMAL",
        f"cache_size = -{settings.sqlite_cache_size_mb * 1024}",
        "foreign_keys = ON",
        f"busy_timeout = {int(settings.sqlite_busy_timeout * 1000)}",
        "temp_store = MEMORY",
        "case_sensitive_like = ON",
    )


# Per-connection pragmas a caller may change, at SQLite's defaults; botdb's own come after.
_DEFAULT_PRAGMAS = (
    "query_only = 0",
    "recursive_triggers = 0",
    "reverse_unordered_selects = 0",
    "automatic_index = 1",
    "ignore_check_constraints = 0",
    "defer_foreign_keys = 0",
    "cell_size_check = 0",
)


def reset_sqlite(raw: sqlite3.Connection, pragmas: Sequence[str]) -> None:
    """Undo what a caller may have left on a SQLite connection: temporary tables and views,
    attached databases, and per-connection pragmas (back to SQLite's and botdb's values)."""
    if raw.in_transaction:
        raw.execute("ROLLBACK")
    temp = raw.execute(
        "SELECT type, name FROM sqlite_temp_master WHERE type IN ('view', 'table') "
        "ORDER BY type = 'table'"
    ).fetchall()
    for kind, name in temp:
        raw.execute(f"DROP {kind.upper()} IF EXISTS temp.{_quote(name)}")
    for _seq, name, _file in raw.execute("PRAGMA database_list").fetchall():
        if name not in ("main", "temp"):
            raw.execute(f"DETACH DATABASE {_quote(name)}")
    for pragma in (*_DEFAULT_PRAGMAS, *pragmas):
        raw.execute(f"PRAGMA {pragma}")


class SQLiteConnection(DriverConnection):
    """A leased sqlite3 connection: reads inline under a time budget, the rest in threads."""

    backend = "sqlite"
    __slots__ = ("_abort", "_busy_ms", "_deadline", "_executor", "_pending", "_pragmas", "raw")

    def __init__(
        self,
        proxied: PoolProxiedConnection,
        executor: ThreadPoolExecutor,
        busy_ms: int,
        pragmas: Sequence[str] = (),
    ) -> None:
        super().__init__(proxied)
        driver: Any = proxied.driver_connection
        self.raw: sqlite3.Connection = driver._conn
        self._executor = executor
        self._busy_ms = busy_ms
        self._pragmas = pragmas
        self._abort = False
        self._deadline = float("inf")
        self._pending: Future[Any] | None = None
        self.raw.set_progress_handler(self._past_deadline, PROGRESS_STEPS)
        self.raw.execute("PRAGMA busy_timeout = 0")

    def _past_deadline(self) -> bool:
        # _abort: the awaiting task was cancelled. interrupt() alone is lost when it lands
        # before the worker thread has started the statement; this flag is not.
        return self._abort or time.perf_counter() > self._deadline

    @property
    def driver(self) -> sqlite3.Connection:
        return self.raw

    def is_closed(self) -> bool:
        try:
            self.raw.total_changes  # noqa: B018 - raises ProgrammingError once closed
        except sqlite3.ProgrammingError:
            return True
        return False

    def driver_in_transaction(self) -> bool:
        return self.raw.in_transaction

    def is_busy(self) -> bool:
        return self._pending is not None and not self._pending.done()

    async def when_idle(self) -> None:
        if self._pending is not None:
            # The interrupted statement's own error was the cancelled caller's to see.
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self._pending)

    async def detach(self) -> None:
        self.raw.set_progress_handler(None, 0)
        self.raw.execute(f"PRAGMA busy_timeout = {self._busy_ms}")

    # -- running ----------------------------------------------------------------------------

    async def _in_thread(self, timeout: float | None, work: Callable[..., T], *args: Any) -> T:
        """Run ``work`` in a worker thread with the busy timeout on, and a deadline if asked.

        If the awaiting task is cancelled, the statement is interrupted and the connection
        stays marked busy until the thread is done with it.
        """
        if self.is_busy():
            raise InterfaceError("another operation is in progress on this connection")
        self._abort = False
        future = self._executor.submit(self._threaded, timeout, work, *args)
        self._pending = future
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self._abort = True
            self.raw.interrupt()
            raise

    def _threaded(self, timeout: float | None, work: Callable[..., T], *args: Any) -> T:
        raw = self.raw
        self._deadline = time.perf_counter() + timeout if timeout else float("inf")
        raw.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        try:
            return work(*args)
        finally:
            self._deadline = float("inf")
            self._reset_busy_timeout()

    def _reset_busy_timeout(self) -> None:
        # An interrupt() aimed at the statement may land on this PRAGMA instead; it must not
        # leave the busy timeout on, or a later inline read could block the event loop.
        for _ in range(5):
            try:
                self.raw.execute("PRAGMA busy_timeout = 0")
            except sqlite3.OperationalError:
                continue
            return

    def _inline(self, work: Callable[..., T], *args: Any) -> T | None:
        """Run a read on the loop's thread; None when it must move to a thread instead."""
        if self.is_busy():
            raise InterfaceError("another operation is in progress on this connection")
        self._abort = False
        self._deadline = time.perf_counter() + INLINE_BUDGET
        try:
            return work(*args)
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in _BUSY_CODES or code == _INTERRUPT:
                return None
            raise
        finally:
            self._deadline = float("inf")

    async def _read(
        self, query: str, args: Sequence[Any], timeout: float | None, work: Callable[..., T]
    ) -> T:
        q = translate_for_sqlite(query)
        params = _bind(q, args)
        if q.returns_rows and q.kind in ("SELECT", "VALUES"):
            result = self._inline(work, q.sql, params)
            if result is not None:
                return result
        return await self._in_thread(timeout, work, q.sql, params)

    async def fetch(self, query: str, args: Sequence[Any], timeout: float | None) -> list[Any]:
        return await self._read(query, args, timeout, self._fetch_sync)

    async def fetchrow(self, query: str, args: Sequence[Any], timeout: float | None) -> Any:
        row = await self._read(query, args, timeout, self._fetchrow_sync)
        return row[0]

    async def fetchval(
        self, query: str, args: Sequence[Any], timeout: float | None, column: int = 0
    ) -> Any:
        row = (await self._read(query, args, timeout, self._fetchrow_sync))[0]
        return None if row is None else row[column]

    async def execute(self, query: str, args: Sequence[Any], timeout: float | None) -> str:
        q = translate_for_sqlite(query)
        params = _bind(q, args)
        rowcount = await self._in_thread(timeout, self._execute_sync, q, params)
        return status_tag(query, rowcount)

    async def describe(self, query: str, _args: Sequence[Any], timeout: float | None) -> None:
        q = translate_for_sqlite(query)
        # EXPLAIN compiles the statement (unknown tables and columns fail) without running it.
        self.raw.execute(f"EXPLAIN {q.sql}", [None] * q.param_count).close()

    async def executemany(
        self, query: str, args: Iterable[Sequence[Any]], timeout: float | None
    ) -> int | None:
        q = translate_for_sqlite(query)
        rows = [_bind(q, row) for row in args]
        count: int = await self._in_thread(timeout, self._executemany_sync, q.sql, rows)
        return count

    async def copy_records(
        self,
        table: str,
        records: Iterable[Sequence[Any]],
        timeout: float | None,
        columns: Sequence[str] | None = None,
        schema: str | None = None,
    ) -> str:
        rows = [_plain(row) for row in records]
        count = await self._in_thread(timeout, self._copy_sync, table, schema, columns, rows)
        return f"COPY {count}"

    async def executescript(self, script: str, _args: Sequence[Any], timeout: float | None) -> None:
        sql = translate_script_for_sqlite(script)
        await self._in_thread(timeout, self._script_sync, sql)

    async def _begin(self, *, isolation: str | None, readonly: bool) -> None:
        # IMMEDIATE takes the write lock up front, so a transaction never fails half-way when
        # it upgrades from reading to writing; SQLite transactions are serializable anyway.
        statement = "BEGIN" if readonly else "BEGIN IMMEDIATE"
        await self._in_thread(None, self.raw.execute, statement)

    async def _commit(self) -> None:
        if not self.raw.in_transaction:
            # SQLite rolled the whole transaction back itself (an interrupted write, a full
            # disk...): committing now would report as durable what is not there.
            self.in_transaction = False
            raise aborted_transaction()
        await self._in_thread(None, self.raw.execute, "COMMIT")
        self.in_transaction = False

    async def _rollback(self) -> None:
        if self.raw.in_transaction:
            await self._in_thread(None, self.raw.execute, "ROLLBACK")

    async def _reset(self) -> None:
        await self._in_thread(None, reset_sqlite, self.raw, self._pragmas)
        self.raw.set_progress_handler(self._past_deadline, PROGRESS_STEPS)

    # -- the synchronous parts (loop thread or worker thread) -------------------------------

    def _fetch_sync(self, sql: str, params: Sequence[Any]) -> list[SQLiteRecord]:
        cursor = self.raw.execute(sql, params)
        rows = cursor.fetchall()
        if not rows:
            return rows
        index = column_index(cursor.description)
        return [SQLiteRecord(row, index) for row in rows]

    def _fetchrow_sync(self, sql: str, params: Sequence[Any]) -> tuple[SQLiteRecord | None]:
        # Wrapped in a 1-tuple so that "no row" (None) differs from "moved to a thread".
        cursor = self.raw.execute(sql, params)
        row = cursor.fetchone()
        cursor.close()
        return (None if row is None else SQLiteRecord(row, column_index(cursor.description)),)

    def _execute_sync(self, q: SQLiteQuery, params: Sequence[Any]) -> int:
        cursor = self.raw.execute(q.sql, params)
        if q.returns_rows:
            count = len(cursor.fetchall())
            return count if q.kind == "SELECT" else max(cursor.rowcount, count)
        return cursor.rowcount

    def _executemany_sync(self, sql: str, rows: list[Sequence[Any]]) -> int:
        raw = self.raw
        if self.in_transaction:
            return raw.executemany(sql, rows).rowcount
        raw.execute("BEGIN IMMEDIATE")
        try:
            count = raw.executemany(sql, rows).rowcount
            raw.execute("COMMIT")
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        return count

    def _script_sync(self, sql: str) -> None:
        # sqlite3's executescript() commits any open transaction first, so botdb splits the
        # script (sqlite3.complete_statement knows quotes, comments and triggers) and runs the
        # statements one by one inside a transaction: a failing script changes nothing.
        raw = self.raw
        statements = _split_script(sql)
        if self.in_transaction:
            for statement in statements:
                raw.execute(statement)
            return
        raw.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                raw.execute(statement)
            raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise

    def _copy_sync(
        self,
        table: str,
        schema: str | None,
        columns: Sequence[str] | None,
        rows: list[Sequence[Any]],
    ) -> int:
        target = _quote(table) if schema is None else f"{_quote(schema)}.{_quote(table)}"
        names = list(columns) if columns is not None else self._table_columns(table, schema)
        placeholders = ", ".join("?" * len(names))
        sql = f"INSERT INTO {target} ({', '.join(map(_quote, names))}) VALUES ({placeholders})"
        return self._executemany_sync(sql, rows)

    def _table_columns(self, table: str, schema: str | None) -> list[str]:
        pragma = (
            f"PRAGMA {_quote(schema)}.table_info({_quote(table)})"
            if schema
            else (f"PRAGMA table_info({_quote(table)})")
        )
        names = [row[1] for row in self.raw.execute(pragma).fetchall()]
        if not names:
            raise UndefinedTableError(f'table "{table}" does not exist', table=table)
        return names


def _split_script(sql: str) -> list[str]:
    statements: list[str] = []
    buffer = ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer)
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        statements.append(buffer[:-1])  # incomplete: SQLite reports the error
    return statements


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _bind(q: SQLiteQuery, args: Sequence[Any]) -> Sequence[Any]:
    """Check the argument count and convert values sqlite3 cannot bind by itself."""
    if len(args) != q.param_count:
        raise ArgumentError(
            f"the query expects {q.param_count} argument{'s' * (q.param_count != 1)}, "
            f"{len(args)} {'was' if len(args) == 1 else 'were'} passed"
        )
    if q.json_params:
        args = list(args)
        for position in q.json_params:
            value = args[position]
            if not isinstance(value, list | tuple | set | frozenset):
                raise ArgumentError(f"argument ${position + 1} of = ANY() must be a list")
            items = [_plain_value(v) for v in value]
            args[position] = _json_values.dumps(items, f"argument ${position + 1}").decode()
        return _plain(args)
    for value in args:
        if not isinstance(value, _NATIVE):
            return _plain(args)
    return args


def _plain(row: Sequence[Any]) -> Sequence[Any]:
    for value in row:
        if not isinstance(value, _NATIVE):
            return [_plain_value(v) for v in row]
    return row


def _plain_value(value: Any) -> Any:
    """Python values as SQLite stores them (the format SQLAlchemy uses for the same types)."""
    if isinstance(value, _NATIVE):
        return value
    if isinstance(value, float):
        if value != value:
            raise DataError(
                "NaN cannot be stored in SQLite (it would become NULL): "
                "pass None, or store it as text"
            )
        return value
    if isinstance(value, dt.datetime):
        # The format SQLAlchemy stores on SQLite: "YYYY-MM-DD HH:MM:SS.ffffff", here in UTC.
        if value.tzinfo is not None and value.utcoffset():
            value = value.astimezone(dt.UTC)
        return value.isoformat(" ", "microseconds")[:26]
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dict | list | tuple):
        return _json_values.dumps(value, "a JSON argument").decode()
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    raise ArgumentError(f"cannot pass a value of type {type(value).__name__} to SQLite")
