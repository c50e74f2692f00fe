"""What is PostgreSQL-specific: the asyncpg engine options, COPY, SSL and pgbouncer mode.

Statements run straight on the asyncpg connection, so rows are asyncpg's own ``Record`` and
server-side prepared statements are cached by asyncpg per connection (turned off in pgbouncer
mode, where a prepared statement may land on another server connection).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection

from botdb.engine.base import DriverConnection, TypedPool
from botdb.engine.record import Record
from botdb.errors import MissingDependencyError, aborted_transaction

if TYPE_CHECKING:
    from botdb.config import Settings

__all__ = ["RESET_SQL", "PostgresConnection", "create_postgres_engine", "wrap_postgres"]

#: What a pooled connection runs before its next caller gets it, after a statement that may
#: have left session state (see ``needs_reset``): one round trip, ~0.1 ms on loopback. It is
#: what ``DISCARD ALL`` does without ``DEALLOCATE ALL``, which would drop asyncpg's cached
#: prepared statements (and cost a re-prepare of every statement afterwards). Plain
#: statements skip it: resetting after every ``fetchrow`` (what asyncpg's own pool does on
#: each release) would double the cost of a primary-key lookup, measured in ``make bench``.
RESET_SQL = (
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)

_ISOLATION = {
    "read_committed": "READ COMMITTED",
    "repeatable_read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}


def create_postgres_engine(settings: Settings) -> AsyncEngine:
    """One SQLAlchemy AsyncEngine (and pool) on asyncpg, configured from ``settings``."""
    try:
        import asyncpg
    except ImportError as exc:
        raise MissingDependencyError("asyncpg", "postgres") from exc
    Record.register(asyncpg.Record)

    server_settings = {"application_name": settings.application_name}
    connect_args: dict[str, Any] = {
        "timeout": settings.pool_acquire_timeout,
        "server_settings": server_settings,
    }
    if settings.command_timeout is not None:
        if settings.pgbouncer:
            # pgbouncer rejects unknown startup parameters: asyncpg times statements itself.
            connect_args["command_timeout"] = settings.command_timeout
        else:
            # The server enforces the default timeout: asyncpg's client-side timer costs a task
            # per statement (~20% of a primary-key lookup, measured in ``make bench``).
            server_settings["statement_timeout"] = str(int(settings.command_timeout * 1000))
    ssl = settings.ssl_context()
    if ssl is not None:
        connect_args["ssl"] = ssl
    if settings.pgbouncer:
        # Transaction pooling: the next statement may run on another server connection, so no
        # named server-side prepared statements may outlive one statement.
        # With the cache off asyncpg prepares unnamed statements (also for ``prepare()``):
        # parsed, bound and run before one Sync, so never outliving one server connection.
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_cache_size"] = 0
    return create_async_engine(
        settings.url.sqlalchemy_url(),
        poolclass=TypedPool,
        pool_size=settings.pool_max_size,
        max_overflow=0,
        pool_timeout=settings.pool_acquire_timeout,
        pool_recycle=settings.pool_recycle if settings.pool_recycle > 0 else -1,
        pool_pre_ping=settings.pool_pre_ping,
        # Most recently used first: an idle stretch's work stays on the connections that
        # have its statements prepared, and PostgreSQL plans a prepared statement generically
        # only after five runs on one connection. First-in-first-out spread 30 sequential
        # keyset pages over 5 pooled connections, so few of them ever reached the generic
        # plan (planning over 14 partitions of messages, 4-5 ms, on most pages).
        pool_use_lifo=True,
        connect_args=connect_args,
    )


async def wrap_postgres(proxied: PoolProxiedConnection) -> DriverConnection:
    return PostgresConnection(proxied)


class PostgresConnection(DriverConnection):
    """A leased asyncpg connection."""

    backend = "postgresql"
    __slots__ = ("driver",)

    def __init__(self, proxied: PoolProxiedConnection) -> None:
        super().__init__(proxied)
        self.driver: Any = proxied.driver_connection

    def is_closed(self) -> bool:
        return bool(self.driver.is_closed())

    def driver_in_transaction(self) -> bool:
        return bool(self.driver.is_in_transaction())

    async def _commit(self) -> None:
        status = await self.driver.execute("COMMIT")
        self.in_transaction = False
        if status == "ROLLBACK":
            # PostgreSQL answers COMMIT of a transaction an earlier error aborted with a
            # ROLLBACK, silently: a caller who caught that error must not believe it committed.
            raise aborted_transaction()

    # The statement methods return asyncpg's own coroutines rather than awaiting them in a
    # coroutine of their own: one frame less on the hot path.
    def execute(self, query: str, args: Sequence[Any], timeout: float | None) -> Any:
        return self.driver.execute(query, *args, timeout=timeout)

    def fetch(self, query: str, args: Sequence[Any], timeout: float | None) -> Any:
        return self.driver.fetch(query, *args, timeout=timeout)

    def fetchrow(self, query: str, args: Sequence[Any], timeout: float | None) -> Any:
        return self.driver.fetchrow(query, *args, timeout=timeout)

    def fetchval(
        self, query: str, args: Sequence[Any], timeout: float | None, column: int = 0
    ) -> Any:
        return self.driver.fetchval(query, *args, column=column, timeout=timeout)

    async def describe(self, query: str, _args: Sequence[Any], timeout: float | None) -> None:
        await self.driver.prepare(query, timeout=timeout)

    async def executemany(
        self, query: str, args: Iterable[Sequence[Any]], timeout: float | None
    ) -> int | None:
        await self.driver.executemany(query, args, timeout=timeout)
        return None

    async def copy_records(
        self,
        table: str,
        records: Iterable[Sequence[Any]],
        timeout: float | None,
        columns: Sequence[str] | None = None,
        schema: str | None = None,
    ) -> str:
        return str(
            await self.driver.copy_records_to_table(
                table,
                records=records,
                columns=list(columns) if columns is not None else None,
                schema_name=schema,
                timeout=timeout,
            )
        )

    async def executescript(self, script: str, _args: Sequence[Any], timeout: float | None) -> None:
        # The simple query protocol runs several statements; one transaction keeps it atomic.
        if self.in_transaction:
            await self.driver.execute(script, timeout=timeout)
            return
        async with self.driver.transaction():
            await self.driver.execute(script, timeout=timeout)

    async def _begin(self, *, isolation: str | None, readonly: bool) -> None:
        statement = "BEGIN"
        if isolation is not None:
            statement += f" ISOLATION LEVEL {_ISOLATION[isolation]}"
        if readonly:
            statement += " READ ONLY"
        await self.driver.execute(statement)

    async def _reset(self) -> None:
        if self.touched:
            # The caller had asyncpg's connection itself: asyncpg's own reset also drops the
            # listeners it registered client-side.
            await self.driver.reset()
        await self.driver.execute(RESET_SQL)
