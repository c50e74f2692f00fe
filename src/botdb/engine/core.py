"""``EngineCore``: the pool, the raw SQL API with retries, transactions and ORM sessions.

It owns one SQLAlchemy engine and its pool, the raw API's lease pool (see
:mod:`botdb.engine.base`), the statistics and the one :class:`~botdb.engine.retry.Retrier`.
It knows nothing of models, the cache or services: what must happen around a COMMIT (the
cache's invalidations) is a :class:`~botdb.engine.connection.CommitHook` made by the
``hook_factory`` the Database passes in.

A COMMIT cut off by a lost connection (PostgreSQL): before COMMIT is sent, a transaction that
wrote asks for its id (``pg_current_xact_id_if_assigned()``, one round trip); when the link
then drops during the COMMIT, a fresh connection asks ``pg_xact_status(id)``. Committed: the
caller is told it succeeded. Aborted: a retryable :class:`~botdb.errors.ConnectionLostError`
(``run_in_transaction`` runs the function again). Only when the server cannot say is the
error raised with ``in_doubt=True``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from functools import partial
from typing import Any, Final, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import PoolProxiedConnection

from botdb import errors
from botdb.config import Settings
from botdb.engine._translate import translate_error
from botdb.engine.base import DriverConnection, LeasePool
from botdb.engine.connection import CommitHook, Connection, RunStatement, rollback_quietly
from botdb.engine.events import READ_ONLY, WROTE, install_events
from botdb.engine.replicas import ReplicaSet, note_write
from botdb.engine.retry import Retrier, RetryPolicy, may_retry, whole_unit_retryable
from botdb.engine.sql import is_read_only, translate_for_sqlite
from botdb.engine.stats import QueryStats

__all__ = ["HOOK", "EngineCore"]

T = TypeVar("T")

#: Key of a session's :class:`CommitHook` in ``session.info``.
HOOK: Final = "botdb.commit_hook"
ISOLATION_LEVELS: Final = ("read_committed", "repeatable_read", "serializable")
_READS = frozenset(("fetch", "fetchrow", "fetchval", "describe"))
_XID_SQL = "SELECT pg_current_xact_id_if_assigned()::text::bigint"
_STATUS_SQL = "SELECT pg_xact_status($1::text::xid8)"
# How long a transaction may still show "in progress" after its connection died (the server
# aborts it once it notices): the waits between status checks, in seconds.
_STATUS_WAITS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8)


class _NoHook:
    """The hook of a transaction nobody attached anything to."""

    async def before_commit(self, run: RunStatement) -> None:
        return None

    async def after_commit(self) -> None:
        return None

    def discard(self) -> None:
        return None


_NO_HOOK: Final = _NoHook()


class EngineCore:
    """The engine behind :class:`botdb.Database` (see the module docstring)."""

    def __init__(
        self, settings: Settings, *, hook_factory: Callable[[], CommitHook] | None = None
    ) -> None:
        self.settings = settings
        self.backend = settings.backend
        self.stats = QueryStats(slow_query_ms=settings.slow_query_ms)
        self.retrier = Retrier(
            RetryPolicy(
                attempts=settings.retry_attempts,
                initial_delay=settings.retry_initial_delay,
                max_delay=settings.retry_max_delay,
                jitter=settings.retry_jitter,
            ),
            on_retry=self.stats.record_retry,
        )
        self._hook_factory = hook_factory
        self._engine: AsyncEngine | None = None
        self.leases: LeasePool | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        #: Read-only sessions: every statement checked before it is sent (see ``events``).
        self._read_sessions: async_sessionmaker[AsyncSession] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._memory_keeper: sqlite3.Connection | None = None
        # SQLite times statements itself; PostgreSQL's server enforces command_timeout.
        self._timeout = settings.command_timeout if self.backend == "sqlite" else None
        self._postgres = self.backend == "postgresql"
        #: Ask a writing transaction's id before COMMIT (see the module docstring).
        self._commit_check = self._postgres and settings.resolve_lost_commits
        #: The read replicas (``replica_urls``); None without any.
        self.replicas: ReplicaSet | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the pool and check that the database answers. Idempotent."""
        if self.leases is not None:
            return
        reset: Callable[[Any], Any]
        if self.backend == "sqlite":
            engine, wrap, reset = self._sqlite_engine()
        else:
            from botdb.engine.postgres import RESET_SQL, create_postgres_engine, wrap_postgres

            engine, wrap = create_postgres_engine(self.settings), wrap_postgres

            def reset(driver: Any) -> Any:
                return driver.execute(RESET_SQL)

        install_events(engine, reset=reset)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        read_options: dict[str, Any] = {READ_ONLY: True}
        if self._postgres:
            read_options["postgresql_readonly"] = True  # BEGIN READ ONLY: the server refuses too
        self._read_sessions = async_sessionmaker(
            engine.execution_options(**read_options), expire_on_commit=False
        )
        self.leases = LeasePool(
            engine,
            wrap,
            recycle=self.settings.pool_recycle,
            max_inactive=self.settings.pool_max_inactive_lifetime,
            timeout=self.settings.pool_acquire_timeout,
        )
        tries = 0

        async def open_first() -> None:
            nonlocal tries
            tries += 1
            await self._open_first()

        try:
            await self.retrier.run(open_first, retryable=_connect_retryable)
        except errors.ConnectionFailedError as exc:
            await self.close()
            # Say how often it was tried: the retries themselves are only logged.
            where = f"could not connect to {self.settings.url.masked()}"
            reason = str(exc).removeprefix(f"{where}: ")
            plural = "s" if tries != 1 else ""
            raise errors.ConnectionFailedError(
                f"{where} after {tries} attempt{plural}: {reason}"
            ) from (exc.__cause__ or exc)
        except BaseException:
            await self.close()
            raise
        if self.settings.replica_urls:
            self.replicas = ReplicaSet(self.settings, self)
            await self.replicas.start()

    async def _open_first(self) -> None:
        leases = self.require_leases()
        try:
            warm = [await leases.acquire() for _ in range(max(1, self.settings.pool_min_size))]
        except (errors.ConfigurationError, errors.AuthenticationError) as exc:
            raise type(exc)(f"{exc} ({self.settings.url.masked()})") from exc
        except errors.TransientError as exc:
            raise errors.ConnectionFailedError(
                f"could not connect to {self.settings.url.masked()}: {exc}"
            ) from exc
        except errors.BotDBError:
            raise
        except Exception as exc:
            raise errors.ConnectionFailedError(
                f"could not connect to {self.settings.url.masked()}: {exc}"
            ) from exc
        for conn in warm:
            leases.release(conn)

    def _sqlite_engine(
        self,
    ) -> tuple[
        AsyncEngine,
        Callable[[PoolProxiedConnection], Awaitable[DriverConnection]],
        Callable[[Any], None],
    ]:
        from botdb.engine.sqlite import (
            SQLiteConnection,
            create_sqlite_engine,
            prepare_sqlite_file,
            reset_sqlite,
            sqlite_pragmas,
        )

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
        pragmas = sqlite_pragmas(self.settings)

        async def wrap(proxied: PoolProxiedConnection) -> DriverConnection:
            return SQLiteConnection(proxied, executor, busy_ms, pragmas)

        engine = create_sqlite_engine(self.settings, memory_name=memory_name)
        return engine, wrap, partial(reset_sqlite, pragmas=pragmas)

    async def close(self) -> None:
        """Hand every connection back and close the pool. Safe to call twice."""
        replicas, self.replicas = self.replicas, None
        if replicas is not None:
            await replicas.close()
        leases, self.leases = self.leases, None
        if leases is not None:
            await leases.close()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._sessions = self._read_sessions = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self._memory_keeper is not None:
            self._memory_keeper.close()
            self._memory_keeper = None

    @property
    def is_open(self) -> bool:
        return self.leases is not None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise errors.InterfaceError("the database is not connected: await db.connect()")
        return self._engine

    def require_leases(self) -> LeasePool:
        if self.leases is None:
            raise errors.InterfaceError("the database is not connected: await db.connect()")
        return self.leases

    def _new_hook(self) -> CommitHook:
        return self._hook_factory() if self._hook_factory is not None else _NO_HOOK

    # -- one statement ------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        query: str,
        args: Any,
        timeout: float | None,
        *extra: Any,
        retryable: bool = True,
    ) -> Any:
        """Run one statement on a leased connection, retried when that is safe."""
        leases = self.leases
        if leases is None:
            raise errors.InterfaceError("the database is not connected: await db.connect()")
        replicas = self.replicas
        if replicas is not None:
            if method in _READS:
                replica = replicas.pick(query)
                if replica is not None:
                    try:
                        return await replica.core.call(method, query, args, timeout, *extra)
                    except errors.BotDBError as exc:
                        replicas.failed(replica, exc)  # the primary answers instead
            else:
                note_write()
        if timeout is None:
            timeout = self._timeout
        conn = leases.take_idle()
        try:
            if conn is None:
                conn = await leases.acquire()
            start = time.perf_counter()
            result = await conn.run(method, query, args, timeout, *extra)
        except BaseException as exc:
            read_only = self._failed(leases, conn, exc, method, query)
            if not retryable or not isinstance(exc, errors.BotDBError):
                raise
            return await self.retrier.after(
                exc,
                partial(self._call_once, method, query, args, timeout, extra, read_only),
                retryable=partial(may_retry, read_only=read_only),
            )
        leases.release(conn)
        self.stats.record(query, time.perf_counter() - start)
        return result

    async def _call_once(
        self,
        method: str,
        query: str,
        args: Any,
        timeout: float | None,
        extra: tuple[Any, ...],
        read_only: bool,
    ) -> Any:
        leases = self.require_leases()
        conn = None
        try:
            conn = await leases.acquire()
            start = time.perf_counter()
            result = await conn.run(method, query, args, timeout, *extra)
        except BaseException as exc:
            self._failed(leases, conn, exc, method, query)
            raise
        leases.release(conn)
        self.stats.record(query, time.perf_counter() - start)
        return result

    def _failed(
        self,
        leases: LeasePool,
        conn: DriverConnection | None,
        exc: BaseException,
        method: str,
        query: str,
    ) -> bool:
        """After a statement failed: give its connection back (closed if the task was
        cancelled), count a botdb error, and say whether the statement only read. A write whose
        connection dropped in flight may have been committed: it is marked in doubt (and
        never retried)."""
        if conn is not None:
            leases.release(conn, discard=not isinstance(exc, Exception))
        read_only = method in _READS and is_read_only(query)
        if isinstance(exc, errors.BotDBError):
            self.stats.record_error()
            if isinstance(exc, errors.ConnectionLostError) and not read_only:
                exc.in_doubt = True
        return read_only

    async def ping(self, timeout: float) -> float:
        """Run ``SELECT 1`` once (no retry); returns the round trip in milliseconds."""
        start = time.perf_counter()
        await self._call_once("fetchval", "SELECT 1", (), timeout, (), True)
        return (time.perf_counter() - start) * 1000.0

    # -- connections and transactions ---------------------------------------------------------

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Connection]:
        """Hold one connection for a block; it goes back to the pool clean, also on cancel."""
        leases = self.require_leases()
        driver = await leases.acquire()
        conn = Connection(driver, self.stats, self._timeout)
        try:
            yield conn
        finally:
            conn._released = True
            leases.release(driver, discard=driver.in_transaction)

    @asynccontextmanager
    async def transaction(
        self, *, isolation: str | None = None, readonly: bool = False
    ) -> AsyncIterator[Connection]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        if isolation is not None and isolation not in ISOLATION_LEVELS:
            raise errors.ConfigurationError(
                f"unknown isolation level {isolation!r}; use one of {', '.join(ISOLATION_LEVELS)}"
            )
        leases = self.require_leases()
        if self.replicas is not None and not readonly:
            note_write()
        driver = await leases.acquire()
        conn = Connection(driver, self.stats, self._timeout)
        hook = conn.hook = self._new_hook()
        try:
            await driver.begin(isolation=isolation, readonly=readonly)
        except BaseException:
            leases.release(driver, discard=True)
            raise
        try:
            yield conn
            conn._released = True
            await hook.before_commit(partial(_run_execute, driver))
            xid = None
            if self._commit_check and driver.wrote:
                xid = await driver.run("fetchval", _XID_SQL, (), None)
        except BaseException:
            conn._released = True
            hook.discard()
            await self._rollback_and_release(driver)
            raise
        try:
            await driver.commit()
        except BaseException as exc:
            leases.release(driver, discard=True)
            await self._commit_failed(exc, xid, hook)
        else:
            leases.release(driver)
        if self.replicas is not None and not readonly:
            note_write()  # the read-your-writes window starts at the COMMIT
        await hook.after_commit()

    async def _rollback_and_release(self, driver: DriverConnection) -> None:
        """Roll back after the block failed; the block's error (or cancellation) stands."""
        leases = self.require_leases()
        try:
            clean = await rollback_quietly(driver)
        except BaseException:  # cancelled during ROLLBACK: the connection is not reusable
            leases.release(driver, discard=True)
            raise
        leases.release(driver, discard=not clean)

    async def _commit_failed(self, exc: BaseException, xid: int | None, hook: CommitHook) -> None:
        """The COMMIT raised ``exc``: return if the transaction committed all the same (a lost
        connection the server answers for), else drop the hook's work and raise."""
        try:
            if not isinstance(exc, errors.ConnectionLostError):
                raise exc
            await self._resolve_commit(exc, xid)
        except BaseException:
            hook.discard()
            raise

    async def _resolve_commit(self, error: errors.ConnectionLostError, xid: int | None) -> None:
        """Return if the transaction whose COMMIT was cut off committed; raise otherwise.

        ``xid`` None on PostgreSQL means the transaction wrote nothing: there was nothing to
        lose. Elsewhere (SQLite) the outcome cannot be asked for: in doubt.
        """
        if not self._commit_check:
            error.in_doubt = True
            raise error
        if xid is None:
            return
        for wait in _STATUS_WAITS:
            if wait:
                await asyncio.sleep(wait)
            try:
                status = await self.retrier.run(
                    partial(self._call_once, "fetchval", _STATUS_SQL, (str(xid),), 5.0, (), True),
                    retryable=partial(may_retry, read_only=True),
                )
            except errors.BotDBError:
                break
            if status == "committed":
                return
            if status == "aborted":
                error.in_doubt = False  # nothing was applied: safe to run again
                raise error
            if status != "in progress":
                break
        error.in_doubt = True
        raise error

    async def run_in_transaction(
        self, fn: Callable[..., Awaitable[T]], *args: Any, isolation: str | None = None, **kw: Any
    ) -> T:
        """Run ``fn(conn, *args, **kw)`` in a transaction, all of it again after a transient
        failure that rolled it back."""

        async def attempt() -> T:
            async with self.transaction(isolation=isolation) as conn:
                return await fn(conn, *args, **kw)

        return await self.retrier.run(attempt, retryable=whole_unit_retryable)

    async def execute_in_transaction(
        self, queries: Iterable[tuple[str, Sequence[Any]]], *, timeout: float | None = None
    ) -> list[str]:
        statements = list(queries)

        async def run(conn: Connection) -> list[str]:
            return [await conn.execute(query, *args, timeout=timeout) for query, args in statements]

        return await self.run_in_transaction(run)

    # -- ORM sessions -------------------------------------------------------------------------

    @asynccontextmanager
    async def session(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        """An ORM session (one transaction), committed at the end, rolled back on error.

        A COMMIT cut off by a lost connection is resolved like :meth:`transaction`'s.
        ``readonly``: see :meth:`read_session`.
        """
        if readonly:
            async with self.read_session() as session:
                yield session
            return
        if self._sessions is None:
            raise errors.InterfaceError("the database is not connected: await db.connect()")
        leases = self.require_leases()
        if self.replicas is not None:
            note_write()
        leases.sessions_open += 1
        try:
            await leases.yield_idle()
            hook = self._new_hook()
            async with self._sessions() as session:
                session.info[HOOK] = hook
                try:
                    yield session
                    xid = await self._prepare_commit(session, hook)
                except BaseException:
                    hook.discard()
                    with suppress(Exception):  # the block's own error stands
                        await session.rollback()
                    raise
                try:
                    await session.commit()
                except BaseException as exc:
                    await self._commit_failed(exc, xid, hook)
                if self.replicas is not None:
                    note_write()
                # Right after the COMMIT, before the session hands its connection back: the
                # other processes' window of stale reads is as short as it can be.
                await hook.after_commit()
        finally:
            leases.sessions_open -= 1

    async def _prepare_commit(self, session: AsyncSession, hook: CommitHook) -> int | None:
        """Flush, learn the transaction's id (PostgreSQL) and run the hook's statements."""
        await session.flush()
        if not session.in_transaction():
            return None
        connection = await session.connection()
        postgres = self._postgres

        def run(query: str, args: Sequence[Any]) -> Awaitable[Any]:
            sql = query if postgres else translate_for_sqlite(query).sql
            return connection.exec_driver_sql(sql, tuple(args))

        await hook.before_commit(run)
        if not self._commit_check or not connection.info.get(WROTE):
            return None  # nothing written: a lost COMMIT loses nothing
        xid = (await connection.exec_driver_sql(_XID_SQL)).scalar()
        return None if xid is None else int(xid)

    async def run_in_session(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, readonly: bool = False
    ) -> T:
        """Run ``work(session)`` as one unit of work, all of it again after a transient
        failure that rolled it back (never after an in-doubt COMMIT).

        ``readonly``: in a read-only session, on a replica when the routing allows; if the
        replica fails, ``work`` runs again on the primary (see :meth:`read_session`).
        """
        if readonly:
            replicas = self.replicas
            replica = None if replicas is None else replicas.pick(None)
            if replica is not None:
                assert replicas is not None
                try:
                    async with replica.core.local_read_session() as session:
                        return await work(session)
                except errors.ReadOnlyError:
                    raise  # refused before it was sent: the primary would refuse it too
                except errors.BotDBError as exc:
                    replicas.failed(replica, exc)  # the primary answers instead

        async def attempt() -> T:
            opened = self.local_read_session() if readonly else self.session()
            async with opened as session:
                return await work(session)

        return await self.retrier.run(attempt, retryable=whole_unit_retryable)

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """A read-only ORM session: on a replica when the routing allows (as a raw read
        would), else on the primary. Its connection is opened before the block starts, so a
        replica that is down or refuses is replaced by the primary before the block runs; a
        replica that fails later, during the block, raises (``run_in_session(work,
        readonly=True)`` runs the work again on the primary instead).

        A statement that writes or locks (an ORM flush included) raises
        :class:`~botdb.errors.ReadOnlyError` before it is sent. It does not open the
        read-your-writes window.
        """
        async with AsyncExitStack() as stack:
            replicas = self.replicas
            replica = None if replicas is None else replicas.pick(None)
            session: AsyncSession | None = None
            if replica is not None:
                assert replicas is not None
                try:
                    session = await stack.enter_async_context(replica.core.local_read_session())
                except errors.BotDBError as exc:
                    replicas.failed(replica, exc)
            if session is None:
                session = await stack.enter_async_context(self.local_read_session())
            yield session

    @asynccontextmanager
    async def local_read_session(self) -> AsyncIterator[AsyncSession]:
        """A read-only session on this engine itself (no routing), its connection open."""
        if self._read_sessions is None:
            raise errors.InterfaceError("the database is not connected: await db.connect()")
        leases = self.require_leases()
        leases.sessions_open += 1
        try:
            await leases.yield_idle()
            async with self._read_sessions() as session:
                try:
                    await session.connection()
                    yield session
                    # COMMIT, not ROLLBACK: it flushes, so changes made to the session's
                    # objects are refused (ReadOnlyError) rather than silently dropped.
                    await session.commit()
                except BaseException:
                    with suppress(Exception):  # the block's own error stands
                        await session.rollback()
                    raise
        finally:
            leases.sessions_open -= 1

    # -- the pool -----------------------------------------------------------------------------

    async def dedicated_connection(self) -> Any:
        """A driver connection of its own, outside the pool and never handed to anyone else
        (the cache listens on one): an asyncpg ``Connection`` or a ``sqlite3.Connection``.
        The caller closes it. Connection errors are botdb's."""
        settings = self.settings
        try:
            if self.backend == "sqlite":
                return await asyncio.to_thread(
                    sqlite3.connect,
                    settings.url.path,
                    timeout=settings.sqlite_busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            import asyncpg

            return await asyncpg.connect(
                settings.url.asyncpg_dsn(),
                ssl=settings.ssl_context(),
                # Told apart from the pool's connections in pg_stat_activity.
                server_settings={"application_name": f"{settings.application_name[:48]} listener"},
                timeout=settings.pool_acquire_timeout,
            )
        except Exception as exc:
            error = translate_error(exc)
            if error is exc:
                raise
            raise error from exc

    async def free_pool_slot(self) -> None:
        await self.require_leases().yield_idle()

    async def validate_connections(self) -> dict[str, int]:
        leases = self.require_leases()
        idle = leases.drain_idle()
        valid = dropped = 0
        for position, driver in enumerate(idle):
            try:
                await driver.run("fetchval", "SELECT 1", (), 5.0)
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
        if self._engine is None or self.leases is None:
            return {"open": False}
        pool: Any = self._engine.pool
        stats: dict[str, Any] = {"open": True, "max_size": self.settings.pool_max_size}
        if hasattr(pool, "checkedout"):
            stats.update(size=pool.size(), checked_out=pool.checkedout())
        stats.update(self.leases.stats())
        return stats


def _run_execute(driver: DriverConnection, query: str, args: Sequence[Any]) -> Awaitable[Any]:
    return driver.run("execute", query, args, None)


def _connect_retryable(exc: BaseException) -> bool:
    return isinstance(exc, errors.ConnectionFailedError)
