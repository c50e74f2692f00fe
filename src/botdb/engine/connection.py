"""The raw SQL API in asyncpg's style, shared by :class:`Database` and :class:`Connection`.

``QueryAPI`` defines the public methods once; :class:`botdb.Database` runs each statement on a
leased connection with retries, :class:`Connection` runs it on the one connection it holds
(inside ``db.acquire()`` or ``db.transaction()``), never retrying a statement alone.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

from botdb.engine.base import DriverConnection
from botdb.errors import InterfaceError, aborted_transaction

if TYPE_CHECKING:
    from botdb.engine.stats import QueryStats

__all__ = ["CommitHook", "Connection", "PreparedStatement", "QueryAPI", "rollback_quietly"]

#: Runs one ``$n`` statement inside the transaction being committed.
RunStatement = Callable[[str, Sequence[Any]], Awaitable[Any]]


class CommitHook(Protocol):
    """What the layers above attach to a transaction (the cache's invalidations): the engine
    calls ``before_commit`` inside the transaction, ``after_commit`` once it is durable, and
    ``discard`` when it rolled back. The engine knows nothing else of it."""

    async def before_commit(self, run: RunStatement) -> None: ...

    async def after_commit(self) -> None: ...

    def discard(self) -> None: ...


class QueryAPI(abc.ABC):
    """``execute``/``fetch``/``fetchrow``/``fetchval`` and friends, with ``$1`` placeholders."""

    __slots__ = ()

    @abc.abstractmethod
    def _call(
        self,
        method: str,
        query: str,
        args: Any,
        timeout: float | None,
        *extra: Any,
        retryable: bool = True,
    ) -> Any: ...

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        """Run a statement and return its status, e.g. ``"INSERT 0 1"`` or ``"UPDATE 3"``.

        Example:
            >>> await db.execute("UPDATE users SET xp = xp + $1 WHERE id = $2", 10, user_id)
            'UPDATE 1'
        """
        return str(await self._call("execute", query, args, timeout))

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:
        """Run a query and return every row as a :class:`~botdb.Record`."""
        result: list[Any] = await self._call("fetch", query, args, timeout)
        return result

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        """Run a query and return its first row, or None when there is none."""
        return await self._call("fetchrow", query, args, timeout)

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        """Run a query and return one value of its first row (None when there is no row)."""
        return await self._call("fetchval", query, args, timeout, column)

    async def execute_many(
        self, query: str, args: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> int | None:
        """Run one statement for each argument tuple, atomically (all rows or none).

        Returns the rows the statement itself changed, summed over the tuples, where the
        driver counts them (SQLite; rows written by triggers are not included), else None
        (PostgreSQL: asyncpg's ``executemany`` reports no count).
        """
        rows = args if isinstance(args, list | tuple) else list(args)
        count: int | None = await self._call("executemany", query, rows, timeout)
        return count

    async def executemany(
        self, query: str, args: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        """asyncpg's name for :meth:`execute_many`."""
        await self.execute_many(query, args, timeout=timeout)

    async def copy_records_to_table(
        self,
        table_name: str,
        *,
        records: Iterable[Sequence[Any]],
        columns: Sequence[str] | None = None,
        schema_name: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Bulk-insert rows: COPY on PostgreSQL, one batched insert on SQLite. Atomic.

        Returns ``"COPY n"``. A generator is consumed once, so it is not retried; pass a list
        to have a transient failure retried.
        """
        retryable = isinstance(records, list | tuple)
        return str(
            await self._call(
                "copy_records",
                table_name,
                records,
                timeout,
                columns,
                schema_name,
                retryable=retryable,
            )
        )

    async def execute_script(self, script: str | Path, *, timeout: float | None = None) -> None:
        """Run several statements (no parameters) atomically; a ``Path`` is read as a file."""
        if isinstance(script, Path):
            script = await asyncio.to_thread(script.read_text, encoding="utf-8")
        await self._call("executescript", script, (), timeout, retryable=False)

    def prepare_statement(self, name: str, query: str) -> PreparedStatement:
        """A reusable statement with ``fetch``/``fetchrow``/``fetchval``/``execute``.

        Awaiting it checks the statement against the database once (a syntax error or an
        unknown table raises here, typed); after that each server connection prepares it the
        first time it runs it (asyncpg's statement cache, SQLite's) and reuses it. ``name``
        labels it in logs.

        Example:
            >>> sql = "SELECT * FROM users WHERE id = $1"
            >>> get_user = await db.prepare_statement("get_user", sql)
            >>> row = await get_user.fetchrow(42)
        """
        return PreparedStatement(self, name, query)

    def prepare(self, query: str) -> PreparedStatement:
        """asyncpg's ``await conn.prepare(query)``: :meth:`prepare_statement` without a name."""
        return PreparedStatement(self, None, query)


class PreparedStatement:
    """A statement bound to a Database or a Connection (see ``prepare_statement``).

    Use it awaited (``stmt = await db.prepare(...)``, which checks it once) or as it is.
    """

    __slots__ = ("_api", "name", "query")

    def __init__(self, api: QueryAPI, name: str | None, query: str) -> None:
        self._api = api
        self.name = name
        self.query = query

    def __await__(self) -> Generator[Any, None, Self]:
        return self._checked().__await__()

    async def _checked(self) -> Self:
        await self._api._call("describe", self.query, (), None, retryable=True)
        return self

    async def executemany(
        self, args: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        await self._api.execute_many(self.query, args, timeout=timeout)

    async def execute(self, *args: Any, timeout: float | None = None) -> str:
        return await self._api.execute(self.query, *args, timeout=timeout)

    async def fetch(self, *args: Any, timeout: float | None = None) -> list[Any]:
        return await self._api.fetch(self.query, *args, timeout=timeout)

    async def fetchrow(self, *args: Any, timeout: float | None = None) -> Any:
        return await self._api.fetchrow(self.query, *args, timeout=timeout)

    async def fetchval(self, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        return await self._api.fetchval(self.query, *args, column=column, timeout=timeout)

    def __repr__(self) -> str:
        return f"<PreparedStatement {self.name!r}>"


class Connection(QueryAPI):
    """One connection held for a block: ``async with db.acquire() as conn`` or a transaction.

    Statements are not retried one by one here; use :meth:`botdb.Database.run_in_transaction`
    to re-run a whole transaction after a transient failure.
    """

    __slots__ = ("_busy", "_driver", "_released", "_stats", "_timeout", "hook")

    def __init__(
        self, driver: DriverConnection, stats: QueryStats, timeout: float | None = None
    ) -> None:
        self._driver = driver
        self._stats = stats
        self._timeout = timeout
        self._released = False
        self._busy = False
        #: What runs around this transaction's COMMIT (the cache's invalidations), if any.
        self.hook: CommitHook | None = None

    @property
    def in_transaction(self) -> bool:
        return self._driver.in_transaction

    @property
    def backend(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        return self._driver.backend

    @property
    def driver_connection(self) -> Any:
        """The asyncpg ``Connection`` or ``sqlite3.Connection`` underneath, for what botdb
        does not wrap. Do not close it or keep it past the block; whatever you change on it is
        reset before the connection goes back to the pool."""
        self._driver.touched = True
        return self._driver.driver

    async def _call(
        self,
        method: str,
        query: str,
        args: Any,
        timeout: float | None,
        *extra: Any,
        retryable: bool = True,
    ) -> Any:
        driver = self._driver
        if self._released:
            raise InterfaceError("this connection was used after its block ended")
        if self._busy:
            raise InterfaceError(
                "another operation is in progress on this connection: one task at a time"
            )
        if driver.in_transaction and not driver.driver_in_transaction():
            # SQLite rolled the transaction back itself after an error (PostgreSQL refuses
            # further statements the same way): running on would autocommit piecemeal.
            raise aborted_transaction()
        if timeout is None:
            timeout = self._timeout
        self._busy = True
        start = time.perf_counter()
        try:
            result = await driver.run(method, query, args, timeout, *extra)
        except Exception:
            self._stats.record_error()
            raise
        finally:
            self._busy = False
        self._stats.record(query, time.perf_counter() - start)
        return result

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A transaction on this connection, or a savepoint inside the current one."""
        driver = self._driver
        if not driver.in_transaction:
            await driver.begin()
            try:
                yield self
            except BaseException:
                await rollback_quietly(driver)
                raise
            await driver.commit()
            return
        driver.savepoints += 1
        name = f"botdb_sp_{driver.savepoints}"
        await self.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            # A failure to roll back to the savepoint must not hide the block's own error;
            # the outer transaction then rolls back as a whole.
            with contextlib.suppress(Exception):
                await self.execute(f"ROLLBACK TO SAVEPOINT {name}")
                await self.execute(f"RELEASE SAVEPOINT {name}")
            raise
        finally:
            driver.savepoints -= 1
        await self.execute(f"RELEASE SAVEPOINT {name}")


async def rollback_quietly(driver: DriverConnection) -> bool:
    """Roll back after a block failed, never replacing the block's own error.

    Returns False when the connection could not be rolled back (closed, still busy with a
    cancelled statement, or the ROLLBACK failed); it stays marked as in a transaction, so the
    pool closes it instead of reusing it.
    """
    if driver.is_busy() or driver.is_closed():
        return False
    try:
        await driver.rollback()
    except Exception:
        driver.in_transaction = True
        return False
    return True
