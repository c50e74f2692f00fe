"""What every backend provides, and the lease pool the raw SQL API draws connections from.

SQLAlchemy's pool is the only pool. A statement through the raw API needs a driver connection
for a few microseconds, and SQLAlchemy's checkout/checkin costs ~30 µs (more with pre-ping and
reset-on-return): too much beside a 80 µs PostgreSQL round trip or a 6 µs SQLite lookup. So the
raw API *leases* connections from SQLAlchemy's pool and keeps them between statements in a
free list, where taking one costs a list pop. Leased connections still count against the pool
size; :meth:`LeasePool.yield_idle` hands idle ones back when an ORM session needs a place.
Measured in ``make bench`` (raw API vs the raw driver), which is why this is hand-written.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ClassVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from botdb.engine._translate import translate_error
from botdb.engine.sql import RESETS, WRITES, statement_traits
from botdb.errors import (
    ConnectionFailedError,
    ConnectionLostError,
    InterfaceError,
    QueryTimeoutError,
)

__all__ = ["DriverConnection", "LeasePool", "TypedPool"]


class DriverConnection(abc.ABC):
    """One leased driver connection, wrapped with the backend's way of running statements.

    This is the raw API's one error boundary: :meth:`run`, :meth:`begin`, :meth:`commit` and
    :meth:`rollback` raise botdb errors only (the subclasses' ``_``-methods raise the driver's
    own). A connection that met a connection or protocol error is marked ``broken`` and the
    pool never hands it out again; one that ran a statement which may leave session state
    behind (``SET``, temporary tables, ``LISTEN``, advisory locks…) is marked ``dirty`` and is
    reset before the next caller gets it.
    """

    #: ``"postgresql"`` or ``"sqlite"``.
    backend: ClassVar[str]

    __slots__ = (
        "born",
        "broken",
        "dirty",
        "idle_since",
        "in_transaction",
        "proxied",
        "savepoints",
        "touched",
        "wrote",
    )

    def __init__(self, proxied: PoolProxiedConnection) -> None:
        self.proxied = proxied
        self.born = self.idle_since = time.monotonic()
        self.in_transaction = False
        self.savepoints = 0
        self.broken = False
        self.dirty = False
        #: The caller reached the driver connection itself: anything may have been done to it.
        self.touched = False
        #: A statement that may write ran since the transaction began (see ``begin``).
        self.wrote = False

    # -- the boundary -------------------------------------------------------------------------

    async def run(
        self, method: str, query: str, args: Sequence[Any], timeout: float | None, *extra: Any
    ) -> Any:
        """Run one statement method (``fetchrow``, ``execute``…); botdb errors only."""
        traits = statement_traits(query)
        if traits:
            if traits & RESETS:
                self.dirty = True
            if traits & WRITES:
                self.wrote = True
        try:
            return await getattr(self, method)(query, args, timeout, *extra)
        except Exception as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: BaseException) -> BaseException:
        """The botdb error for ``exc``; marks the connection broken when it cannot be reused.

        Anything the translator does not know, and every connection error, means the
        connection's state is unknown: it is closed rather than handed to the next caller.
        """
        error = translate_error(exc, closed=self.is_closed())
        if error is exc or isinstance(error, ConnectionLostError | ConnectionFailedError):
            self.broken = True
        return error

    async def begin(self, *, isolation: str | None = None, readonly: bool = False) -> None:
        self.in_transaction = True  # set first: a cancelled BEGIN must not be pooled as clean
        self.wrote = False
        try:
            await self._begin(isolation=isolation, readonly=readonly)
        except Exception as exc:
            raise self.translate(exc) from exc

    async def commit(self) -> None:
        """COMMIT; raises DatabaseError (25P02) if the database had rolled it back already."""
        try:
            await self._commit()
        except Exception as exc:
            raise self.translate(exc) from exc

    async def rollback(self) -> None:
        self.in_transaction = False
        try:
            await self._rollback()
        except Exception as exc:
            raise self.translate(exc) from exc

    async def reset(self) -> None:
        """Undo session state (settings, temporary tables, locks, listeners, cursors)."""
        try:
            await self._reset()
        except Exception as exc:
            raise self.translate(exc) from exc
        self.dirty = self.touched = False

    # -- what each backend provides -----------------------------------------------------------

    @abc.abstractmethod
    def is_closed(self) -> bool: ...

    @abc.abstractmethod
    def driver_in_transaction(self) -> bool:
        """What the driver says: a transaction is open (botdb's or one a raw BEGIN opened)."""

    @property
    @abc.abstractmethod
    def driver(self) -> Any:
        """The driver's own connection (asyncpg ``Connection`` or ``sqlite3.Connection``)."""

    def is_busy(self) -> bool:
        """True while work started on this connection is still running (a cancelled call)."""
        return False

    async def when_idle(self) -> None:  # noqa: B027 - optional hook, PostgreSQL has nothing to wait for
        """Wait for work still running on the connection (see :meth:`is_busy`)."""

    @abc.abstractmethod
    async def execute(self, query: str, args: Sequence[Any], timeout: float | None) -> str: ...

    @abc.abstractmethod
    async def fetch(self, query: str, args: Sequence[Any], timeout: float | None) -> list[Any]: ...

    @abc.abstractmethod
    async def fetchrow(self, query: str, args: Sequence[Any], timeout: float | None) -> Any: ...

    @abc.abstractmethod
    async def fetchval(
        self, query: str, args: Sequence[Any], timeout: float | None, column: int = 0
    ) -> Any: ...

    @abc.abstractmethod
    async def describe(self, query: str, _args: Sequence[Any], timeout: float | None) -> None:
        """Check a statement (prepare it without running it)."""

    @abc.abstractmethod
    async def executemany(
        self, query: str, args: Iterable[Sequence[Any]], timeout: float | None
    ) -> int | None: ...

    @abc.abstractmethod
    async def copy_records(
        self,
        table: str,
        records: Iterable[Sequence[Any]],
        timeout: float | None,
        columns: Sequence[str] | None = None,
        schema: str | None = None,
    ) -> str: ...

    @abc.abstractmethod
    async def executescript(
        self, script: str, _args: Sequence[Any], timeout: float | None
    ) -> None: ...

    @abc.abstractmethod
    async def _begin(self, *, isolation: str | None, readonly: bool) -> None: ...

    @abc.abstractmethod
    async def _commit(self) -> None: ...

    async def _rollback(self) -> None:
        await self.execute("ROLLBACK", (), None)

    @abc.abstractmethod
    async def _reset(self) -> None: ...

    async def detach(self) -> None:  # noqa: B027 - optional hook
        """Undo lease-only settings before the connection goes back to SQLAlchemy's pool."""


class TypedPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's pool, whose checkout timeout is botdb's :class:`QueryTimeoutError`.

    A full pool raises SQLAlchemy's own ``TimeoutError`` before any connection exists, so
    the ORM's error boundary (the engine's ``handle_error`` event) never sees it: an ORM
    session, a repository or ``db.engine.connect()`` would hand it to the bot untranslated.
    The pool is the one place every checkout passes; it asks the one translator.
    """

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except sa_exc.TimeoutError as exc:
            raise translate_error(exc) from exc


class LeasePool:
    """A free list of driver connections leased from SQLAlchemy's pool (see module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        wrap: Callable[[PoolProxiedConnection], Awaitable[DriverConnection]],
        *,
        recycle: float,
        max_inactive: float,
        timeout: float,
    ) -> None:
        self._engine = engine
        self._wrap = wrap
        self._recycle = recycle if recycle > 0 else float("inf")
        self._max_inactive = max_inactive if max_inactive > 0 else float("inf")
        self._timeout = timeout
        self._idle: list[DriverConnection] = []
        self._waiters: deque[asyncio.Future[DriverConnection | None]] = deque()
        self._leased = 0
        #: ORM sessions open now (see :meth:`yield_idle`); Database.session() counts them.
        self.sessions_open = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def acquire(self) -> DriverConnection:
        """Take an idle leased connection, lease a new one, or wait for one to be released.

        Waits at most ``timeout`` seconds when every connection of the pool is in use.
        """
        while True:
            conn = self.take_idle()
            if conn is not None:
                return conn
            if self._closed:
                raise InterfaceError("the database is closed")
            if self._leased == 0 or not self._pool_full():
                return await self._lease()
            # Every connection is in use and some are ours: wait for one of ours to come back
            # (SQLAlchemy's pool never sees a released lease, so waiting there would hang).
            handed = await self._wait_for_release()
            if handed is not None:
                return handed

    def take_idle(self) -> DriverConnection | None:
        """The newest idle connection fit for use, or None. Unfit ones are handed back."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            now = time.monotonic()
            if (
                conn.is_closed()
                or now - conn.idle_since > self._max_inactive
                or now - conn.born > self._recycle
            ):
                self._spawn(self._give_back(conn, invalidate=True))
                continue
            return conn
        return None

    def release(self, conn: DriverConnection, *, discard: bool = False) -> None:
        """Hand a connection to a waiter or the free list, or back to SQLAlchemy if unfit.

        Synchronous on the fast path, so it also runs while a task is being cancelled. A
        connection that is broken, or has a transaction open (a raw ``BEGIN`` never
        committed, a cancelled ``BEGIN``), is closed rather than reused; a dirty one is reset
        first (see :class:`DriverConnection`).
        """
        if conn.is_busy():
            self._spawn(self._release_when_idle(conn, discard))
            return
        if (
            discard
            or conn.broken
            or self._closed
            or conn.is_closed()
            or conn.driver_in_transaction()
        ):
            unclean = discard or conn.broken or conn.in_transaction or conn.driver_in_transaction()
            self._spawn(self._give_back(conn, invalidate=unclean))
            return
        if conn.dirty or conn.touched:
            self._spawn(self._reset_then_release(conn))
            return
        conn.in_transaction = False
        conn.idle_since = time.monotonic()
        if not self._wake(conn):
            self._idle.append(conn)

    async def _reset_then_release(self, conn: DriverConnection) -> None:
        try:
            await conn.reset()
        except Exception:
            conn.broken = True
        self.release(conn)

    async def yield_idle(self) -> None:
        """Hand one idle connection back to SQLAlchemy's pool if an ORM session needs it.

        Sessions that are open count as needing a connection, even before they check one out.
        """
        pool: Any = self._engine.pool
        if not self._idle or not hasattr(pool, "checkedout"):
            return
        capacity = pool.size() + max(pool._max_overflow, 0)
        if pool.checkedout() + self.sessions_open >= capacity:
            await self._give_back(self._idle.pop(0), invalidate=False)

    def drain_idle(self) -> list[DriverConnection]:
        """Take every idle connection off the free list (the caller releases each one)."""
        idle, self._idle = self._idle, []
        return idle

    async def close(self) -> None:
        """Hand every connection back and wait for pending hand-backs."""
        self._closed = True
        self._wake_all()  # waiters see the closed pool and raise InterfaceError
        while self._idle:
            await self._give_back(self._idle.pop(), invalidate=False)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def stats(self) -> dict[str, int]:
        return {
            "leased": self._leased,
            "leased_idle": len(self._idle),
            "waiting": len(self._waiters),
        }

    async def _lease(self) -> DriverConnection:
        self._leased += 1
        try:
            proxied = await self._engine.raw_connection()
        except BaseException as exc:
            self._leased -= 1
            self._wake(None)
            error = translate_error(exc)
            if error is exc:
                raise
            raise error from exc
        try:
            return await self._wrap(proxied)
        except BaseException:
            self._leased -= 1
            self._spawn(greenlet_spawn(proxied.invalidate))
            self._wake(None)
            raise

    async def _wait_for_release(self) -> DriverConnection | None:
        waiter: asyncio.Future[DriverConnection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._timeout):
                return await waiter
        except BaseException as exc:
            # A connection may have been handed over in the very turn the wait ended (timeout
            # or cancellation): pass it on rather than lose it.
            if waiter.done() and not waiter.cancelled():
                handed = waiter.result()
                if handed is not None:
                    self.release(handed)
                else:
                    self._wake(None)
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise QueryTimeoutError(
                    f"no database connection became free within {self._timeout:g} s "
                    "(raise pool_max_size or pool_acquire_timeout)"
                ) from None
            raise

    def _wake(self, conn: DriverConnection | None) -> bool:
        """Hand ``conn`` (or a nudge to try again) to the first waiter; False if none waits."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _wake_all(self) -> None:
        while self._wake(None):
            pass

    def _pool_full(self) -> bool:
        pool: Any = self._engine.pool
        if not hasattr(pool, "checkedout"):
            return False
        return bool(pool.checkedout() >= pool.size() + max(pool._max_overflow, 0))

    async def _release_when_idle(self, conn: DriverConnection, discard: bool) -> None:
        await conn.when_idle()
        self.release(conn, discard=discard or conn.in_transaction)

    async def _give_back(self, conn: DriverConnection, *, invalidate: bool) -> None:
        proxied = conn.proxied
        try:
            if invalidate or conn.is_closed():
                await greenlet_spawn(proxied.invalidate)
                return
            try:
                if conn.dirty or conn.touched:
                    await conn.reset()
                await conn.detach()
            except Exception:
                await greenlet_spawn(proxied.invalidate)
                return
            await greenlet_spawn(proxied.close)
        finally:
            self._leased -= 1
            self._wake(None)  # the slot is free now: a waiter may lease in its place

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
