"""``Database``: the one object a bot holds. It composes the engine and the layers above it.

Example:
    >>> async with botdb.connect("sqlite:///bot.db") as db:
    ...     await db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
    ...     await db.execute("INSERT INTO notes (body) VALUES ($1)", "hello")
    ...     row = await db.fetchrow("SELECT * FROM notes WHERE id = $1", 1)
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import PoolProxiedConnection

from botdb import errors
from botdb._facade import DatabaseFacade
from botdb.cache import Cache
from botdb.config import Settings
from botdb.engine._translate import raise_translated, translate_error
from botdb.engine.base import DriverConnection, LeasePool
from botdb.engine.connection import Connection, QueryAPI, rollback_quietly
from botdb.engine.retry import RetryPolicy, may_retry
from botdb.engine.sql import is_read_only
from botdb.engine.stats import QueryStats

if TYPE_CHECKING:
    from botdb.services import ScopedConfig

__all__ = ["Database", "connect"]

T = TypeVar("T")
M = TypeVar("M")

_INVALIDATIONS = "botdb.invalidations"

_ISOLATION_LEVELS = ("read_committed", "repeatable_read", "serializable")


def connect(url: str | None = None, **options: Any) -> Database:
    """A Database for ``url`` (or the environment's), to use with ``async with`` or ``await``.

    Keyword options are :class:`~botdb.config.Settings` fields and win over the URL and the
    environment. ``await botdb.connect(...)`` connects and returns the Database;
    ``async with botdb.connect(...) as db`` also closes it at the end.
    """
    return Database(Settings.from_env(url=url, **options))


class Database(QueryAPI, DatabaseFacade):
    """The database a bot holds: raw SQL, transactions, sessions, health and statistics.

    Build it in ``main()`` (or the framework's startup hook), keep it on the bot object, and
    close it on shutdown. It owns one SQLAlchemy engine and pool.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self.backend = self.settings.backend
        self._stats = QueryStats(slow_query_ms=self.settings.slow_query_ms)
        self._retry = RetryPolicy(
            attempts=self.settings.retry_attempts,
            initial_delay=self.settings.retry_initial_delay,
            max_delay=self.settings.retry_max_delay,
            jitter=self.settings.retry_jitter,
        )
        self._engine: AsyncEngine | None = None
        self._leases: LeasePool | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._memory_keeper: sqlite3.Connection | None = None
        # SQLite times statements itself; PostgreSQL's server enforces command_timeout.
        self._timeout = self.settings.command_timeout if self.backend == "sqlite" else None
        self._cache: Cache | None = None
        self._repositories: dict[type[Any], Any] = {}
        self._scoped: dict[str, ScopedConfig] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> Self:
        """Open the pool and check that the database answers. Idempotent."""
        if self._leases is not None:
            return self
        if self.backend == "sqlite":
            engine, wrap = self._sqlite_engine()
        else:
            from botdb.engine.postgres import create_postgres_engine, wrap_postgres

            engine, wrap = create_postgres_engine(self.settings), wrap_postgres
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._leases = LeasePool(
            engine,
            wrap,
            recycle=self.settings.pool_recycle,
            max_inactive=self.settings.pool_max_inactive_lifetime,
            timeout=self.settings.pool_acquire_timeout,
        )
        try:
            await self._retry.call(self._open_first, retryable=_connect_retryable)
            self._cache = Cache(
                redis_url=self.settings.redis_url,
                prefix=self.settings.cache_prefix,
                max_size=max(1, self.settings.cache_max_size),
                ttl=self.settings.cache_ttl,
            )
            await self._cache.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def _open_first(self) -> None:
        assert self._leases is not None
        try:
            warm = [
                await self._leases.acquire() for _ in range(max(1, self.settings.pool_min_size))
            ]
        except Exception as exc:
            error = translate_error(exc)
            if isinstance(error, errors.ConfigurationError | errors.AuthenticationError):
                raise type(error)(f"{error} ({self.settings.url.masked()})") from exc
            if error is exc or isinstance(error, errors.TransientError):
                raise errors.ConnectionFailedError(
                    f"could not connect to {self.settings.url.masked()}: {exc}"
                ) from exc
            raise error from exc
        for conn in warm:
            self._leases.release(conn)

    def _sqlite_engine(
        self,
    ) -> tuple[AsyncEngine, Callable[[PoolProxiedConnection], Awaitable[DriverConnection]]]:
        from botdb.engine.sqlite import SQLiteConnection, create_sqlite_engine, prepare_sqlite_file

        url = self.settings.url
        memory_name = None
        if url.is_memory:
            memory_name = f"botdb-{uuid.uuid4().hex}"
            # Keeps the shared in-memory database alive while the pool recycles connections.
            self._memory_keeper = sqlite3.connect(
                f"file:{memory_name}?mode=memory&cache=shared", uri=True, check_same_thread=False
            )
        else:
            prepare_sqlite_file(url.path, create=self.settings.sqlite_create)
        executor = ThreadPoolExecutor(
            max_workers=self.settings.pool_max_size + 1, thread_name_prefix="botdb-sqlite"
        )
        self._executor = executor
        busy_ms = int(self.settings.sqlite_busy_timeout * 1000)

        async def wrap(proxied: PoolProxiedConnection) -> DriverConnection:
            return SQLiteConnection(proxied, executor, busy_ms)

        return create_sqlite_engine(self.settings, memory_name=memory_name), wrap

    async def close(self) -> None:
        """Hand every connection back and close the pool. Safe to call twice."""
        cache, self._cache = self._cache, None
        if cache is not None:
            await cache.close()
        leases, self._leases = self._leases, None
        if leases is not None:
            await leases.close()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self._memory_keeper is not None:
            self._memory_keeper.close()
            self._memory_keeper = None

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, Self]:
        return self.connect().__await__()

    def __repr__(self) -> str:
        state = "open" if self._leases is not None else "closed"
        return f"<Database {self.settings.url.masked()} {state}>"

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy AsyncEngine (for Alembic, the ORM, or SQLAlchemy Core)."""
        if self._engine is None:
            raise errors.InterfaceError("the database is not connected: await db.connect()")
        return self._engine

    @property
    def cache(self) -> Cache:
        """The two-level cache (in-process, plus Redis when ``redis_url`` is set)."""
        if self._cache is None:
            raise errors.InterfaceError("the database is not connected: await db.connect()")
        return self._cache

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return self.settings.url.masked()

    # -- the raw SQL API ----------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        query: str,
        args: Any,
        timeout: float | None,
        *extra: Any,
        retryable: bool = True,
    ) -> Any:
        leases = self._leases
        if leases is None:
            raise errors.InterfaceError("the database is not connected: await db.connect()")
        if timeout is None:
            timeout = self._timeout
        conn = leases.take_idle()
        if conn is None:
            try:
                conn = await leases.acquire()
            except Exception as exc:
                return await self._after_failure(
                    exc, method, query, args, timeout, extra, retryable
                )
        start = time.perf_counter()
        try:
            result = await getattr(conn, method)(query, args, timeout, *extra)
        except BaseException as exc:
            closed = conn.is_closed()
            leases.release(conn, discard=not isinstance(exc, Exception) or closed)
            if not isinstance(exc, Exception):
                raise
            return await self._after_failure(
                exc, method, query, args, timeout, extra, retryable, closed=closed
            )
        leases.release(conn)
        self._stats.record(query, time.perf_counter() - start)
        return result

    async def _after_failure(
        self,
        exc: Exception,
        method: str,
        query: str,
        args: Any,
        timeout: float | None,
        extra: tuple[Any, ...],
        retryable: bool,
        *,
        closed: bool = False,
    ) -> Any:
        self._stats.record_error()
        read_only = method in ("fetch", "fetchrow", "fetchval") and is_read_only(query)
        error = _statement_error(exc, read_only=read_only, closed=closed)
        if error is exc:
            raise exc
        if not (retryable and self._retry.attempts > 1 and may_retry(error, read_only=read_only)):
            raise error from exc
        self._stats.record_retry()
        await asyncio.sleep(self._retry.initial_delay)
        policy = RetryPolicy(
            attempts=self._retry.attempts - 1,
            initial_delay=self._retry.initial_delay * 2,
            max_delay=self._retry.max_delay,
            jitter=self._retry.jitter,
        )
        return await policy.call(
            partial(self._call_once, method, query, args, timeout, extra, read_only),
            retryable=partial(_statement_retryable, read_only=read_only),
            on_retry=self._stats.record_retry,
        )

    async def _call_once(
        self,
        method: str,
        query: str,
        args: Any,
        timeout: float | None,
        extra: tuple[Any, ...],
        read_only: bool,
    ) -> Any:
        assert self._leases is not None
        conn = None
        try:
            conn = await self._leases.acquire()
            start = time.perf_counter()
            result = await getattr(conn, method)(query, args, timeout, *extra)
        except BaseException as exc:
            closed = conn is not None and conn.is_closed()
            if conn is not None:
                self._leases.release(conn, discard=not isinstance(exc, Exception) or closed)
            if not isinstance(exc, Exception):
                raise
            self._stats.record_error()
            error = _statement_error(exc, read_only=read_only, closed=closed)
            if error is exc:
                raise
            raise error from exc
        self._leases.release(conn)
        self._stats.record(query, time.perf_counter() - start)
        return result

    # -- connections and transactions ---------------------------------------------------------

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Connection]:
        """Hold one connection for a block; statements run in autocommit mode.

        The connection goes back to the pool when the block ends, also on cancellation.
        """
        leases = self._require_leases()
        try:
            driver = await leases.acquire()
        except Exception as exc:
            raise_translated(exc)
        conn = Connection(driver, self._stats, self._timeout)
        try:
            yield conn
        finally:
            conn._released = True
            leases.release(driver, discard=driver.in_transaction)

    @asynccontextmanager
    async def transaction(
        self, *, isolation: str | None = None, readonly: bool = False
    ) -> AsyncIterator[Connection]:
        """A transaction: committed when the block ends, rolled back if it raises.

        Args:
            isolation: ``"read_committed"`` (PostgreSQL's default), ``"repeatable_read"`` or
                ``"serializable"``; SQLite transactions are always serializable.
            readonly: a read-only transaction (PostgreSQL); on SQLite it takes no write lock.
        """
        if isolation is not None and isolation not in _ISOLATION_LEVELS:
            raise errors.ConfigurationError(
                f"unknown isolation level {isolation!r}; use one of {', '.join(_ISOLATION_LEVELS)}"
            )
        leases = self._require_leases()
        batch = self.cache.batch()
        try:
            driver = await leases.acquire()
        except Exception as exc:
            raise_translated(exc)
        conn = Connection(driver, self._stats, self._timeout)
        conn.invalidations = batch
        try:
            await driver.begin(isolation=isolation, readonly=readonly)
        except BaseException as exc:
            leases.release(driver, discard=True)
            if isinstance(exc, Exception):
                raise_translated(exc)
            raise
        try:
            yield conn
        except BaseException:
            conn._released = True
            batch.discard()
            await self._rollback_and_release(driver)
            raise
        conn._released = True
        try:
            await driver.commit()
        except BaseException as exc:
            leases.release(driver, discard=True)
            if not isinstance(exc, Exception):
                raise
            error = translate_error(exc, closed=driver.is_closed())
            if isinstance(error, errors.ConnectionLostError):
                error.in_doubt = True  # the COMMIT may have reached the server
            if error is exc:
                raise
            raise error from exc
        leases.release(driver)
        await batch.commit()

    async def _rollback_and_release(self, driver: DriverConnection) -> None:
        """Roll back after the block failed; the block's error (or cancellation) stands."""
        leases = self._require_leases()
        try:
            clean = await rollback_quietly(driver)
        except BaseException:  # cancelled during ROLLBACK: the connection is not reusable
            leases.release(driver, discard=True)
            raise
        leases.release(driver, discard=not clean)

    async def run_in_transaction(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        isolation: str | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in a transaction, re-running all of it on a
        transient failure (deadlock, serialization failure, lost connection, SQLite BUSY).

        ``fn`` must have no effects outside the database, since it may run more than once. A
        failure while committing is not retried when the commit may have been applied.
        ``isolation`` is passed to :meth:`transaction`.

        Example:
            >>> async def transfer(conn, src, dst, amount):
            ...     sql = "UPDATE wallets SET coins = coins + $1 WHERE id = $2"
            ...     await conn.execute(sql, -amount, src)
            ...     await conn.execute(sql, amount, dst)
            >>> await db.run_in_transaction(transfer, alice, bob, 10)
        """

        async def attempt() -> T:
            async with self.transaction(isolation=isolation) as conn:
                return await fn(conn, *args, **kwargs)

        return await self._retry.call(
            attempt, retryable=_transaction_retryable, on_retry=self._stats.record_retry
        )

    async def execute_in_transaction(
        self,
        queries: Iterable[tuple[str, Sequence[Any]]],
        *,
        timeout: float | None = None,
    ) -> list[str]:
        """Run ``(query, args)`` pairs in one transaction (seed 000); all apply or none.

        Re-runs them all on a transient failure, like :meth:`run_in_transaction`. Returns
        each statement's status.
        """
        statements = list(queries)

        async def run(conn: Connection) -> list[str]:
            return [await conn.execute(query, *args, timeout=timeout) for query, args in statements]

        return await self.run_in_transaction(run)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """An ORM session (unit of work): committed at the end of the block, rolled back if
        it raises. One per task or per update; never share it between tasks.

        Cache invalidations registered with :meth:`invalidate` during the block are sent
        after the commit, and dropped on rollback.
        """
        if self._sessions is None:
            raise errors.InterfaceError("the database is not connected: await db.connect()")
        leases = self._require_leases()
        leases.sessions_open += 1
        try:
            await leases.yield_idle()
            batch = self.cache.batch()
            async with self._sessions() as session:
                session.info[_INVALIDATIONS] = batch
                try:
                    yield session
                    await session.commit()
                except BaseException as exc:
                    batch.discard()
                    await session.rollback()
                    if not isinstance(exc, Exception):
                        raise
                    raise_translated(exc)
                # Right after the COMMIT, before the session hands its connection back: the
                # other processes' window of stale reads is as short as it can be.
                await batch.commit()
        finally:
            leases.sessions_open -= 1

    async def invalidate(self, *keys: str, within: AsyncSession | Connection | None = None) -> None:
        """Drop cache keys in every process: after ``within``'s commit, or now without one.

        Pass the session or transaction connection the write happened in, so that the
        invalidation waits for the commit and is dropped on rollback.
        """
        batch = None
        if isinstance(within, AsyncSession):
            batch = within.info.get(_INVALIDATIONS)
        elif isinstance(within, Connection):
            batch = within.invalidations
        if batch is not None:
            batch.invalidate(*keys)
        else:
            await self.cache.invalidate(*keys)

    async def free_pool_slot(self) -> None:
        """Hand an idle raw-API connection back to the engine's pool if that pool is full.

        Call it before using :attr:`engine` directly (``db.session()`` does it itself).
        """
        await self._require_leases().yield_idle()

    def _require_leases(self) -> LeasePool:
        if self._leases is None:
            raise errors.InterfaceError("the database is not connected: await db.connect()")
        return self._leases

    # -- health and statistics ----------------------------------------------------------------

    async def health_check(self, *, degraded_after_ms: float = 500.0) -> dict[str, Any]:
        """The database's health in seed 001's shape.

        Returns a dict with ``status`` (``"healthy"``, ``"degraded"`` or ``"unhealthy"``),
        ``database_available``, ``backend``, ``url`` (password masked), ``latency_ms``,
        ``pool`` and ``errors`` (a list of messages, empty when healthy).
        """
        report: dict[str, Any] = {
            "status": "unhealthy",
            "database_available": False,
            "backend": self.backend,
            "url": self.url,
            "latency_ms": None,
            "pool": self.pool_stats(),
            "errors": [],
        }
        if self._leases is None:
            report["errors"].append("the database is not connected")
            return report
        start = time.perf_counter()
        try:
            await self._call_once("fetchval", "SELECT 1", (), 5.0, (), True)
        except errors.BotDBError as exc:
            report["errors"].append(f"{type(exc).__name__}: {exc}")
            return report
        latency = (time.perf_counter() - start) * 1000.0
        report.update(database_available=True, latency_ms=round(latency, 3), status="healthy")
        if latency > degraded_after_ms:
            report["status"] = "degraded"
            report["errors"].append(f"slow response: {latency:.0f} ms")
        return report

    async def check_connection_health(self) -> bool:
        """True when the database answers a trivial query now."""
        report = await self.health_check()
        return bool(report["database_available"])

    async def validate_connections(self) -> dict[str, int]:
        """Check every idle pooled connection with a trivial query; drop the broken ones.

        Returns the counts ``{"checked": n, "valid": n, "dropped": n}``.
        """
        leases = self._require_leases()
        idle = leases.drain_idle()
        valid = dropped = 0
        for position, driver in enumerate(idle):
            try:
                await driver.fetchval("SELECT 1", (), 5.0)
            except Exception:
                leases.release(driver, discard=True)
                dropped += 1
            except BaseException:  # cancelled: give every connection not checked yet back
                leases.release(driver, discard=True)
                for rest in idle[position + 1 :]:
                    leases.release(rest)
                raise
            else:
                leases.release(driver)
                valid += 1
        return {"checked": len(idle), "valid": valid, "dropped": dropped}

    def pool_stats(self) -> dict[str, Any]:
        """Pool size and use: SQLAlchemy's pool plus the raw API's leased connections."""
        if self._engine is None or self._leases is None:
            return {"open": False}
        pool: Any = self._engine.pool
        stats: dict[str, Any] = {"open": True, "max_size": self.settings.pool_max_size}
        if hasattr(pool, "checkedout"):
            stats.update(size=pool.size(), checked_out=pool.checkedout())
        stats.update(self._leases.stats())
        return stats

    def stats(self) -> dict[str, Any]:
        """Counts of queries, errors, retries and slow queries, latency percentiles, the pool."""
        snapshot = self._stats.snapshot()
        snapshot["pool"] = self.pool_stats()
        snapshot["backend"] = self.backend
        return snapshot


def _statement_error(exc: Exception, *, read_only: bool, closed: bool) -> BaseException:
    """The botdb error for a failed statement outside a transaction. A write whose connection
    dropped in flight may have been committed: it is marked in doubt, never retried."""
    error = translate_error(exc, closed=closed)
    if isinstance(error, errors.ConnectionLostError) and not read_only:
        error.in_doubt = True
    return error


def _connect_retryable(exc: BaseException) -> bool:
    return isinstance(exc, errors.ConnectionFailedError)


def _statement_retryable(exc: BaseException, *, read_only: bool) -> bool:
    return may_retry(exc, read_only=read_only)


def _transaction_retryable(exc: BaseException) -> bool:
    # Inside a transaction a lost connection rolls everything back, so the whole function
    # may run again - unless the loss hit the COMMIT itself (in_doubt).
    return may_retry(exc, read_only=True)
