"""``Database``: the one object a bot holds, where the layers are put together.

It owns an :class:`~botdb.engine.core.EngineCore` (pool, raw SQL, transactions, sessions,
retries) and a :class:`~botdb.cache.Cache`, hands the cache's invalidations to the engine as a
commit hook, and reaches the layers above the engine (services, repositories, migrations,
operations) through thin methods that import each layer on first use, so ``import botdb``
stays light.

Example:
    >>> async with botdb.connect("sqlite:///bot.db") as db:
    ...     await db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
    ...     await db.execute("INSERT INTO notes (body) VALUES ($1)", "hello")
    ...     row = await db.fetchrow("SELECT * FROM notes WHERE id = $1", 1)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import Token
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from botdb import errors
from botdb.cache import Cache, InvalidationBatch
from botdb.config import Settings
from botdb.engine.connection import Connection, QueryAPI
from botdb.engine.core import HOOK, EngineCore
from botdb.engine.replicas import force_primary, reset_primary

if TYPE_CHECKING:
    from datetime import timedelta

    from botdb import models
    from botdb.analytics import Stats
    from botdb.analytics.report import ReportFile
    from botdb.importers import ChatImportReport, ImportReport
    from botdb.ops import BackupResult, RestoreResult
    from botdb.recorder import Recorder
    from botdb.repository import MessageRepository, Repository
    from botdb.scheduler import Scheduler
    from botdb.services import CaseService, GuildConfigService, ScopedConfig, UserService
    from botdb.services.reminders import ReminderService

__all__ = ["Database", "PrimaryView", "connect"]

_log = logging.getLogger("botdb.recorder")

T = TypeVar("T")
M = TypeVar("M")


def connect(url: str | None = None, **options: Any) -> Database:
    """A Database for ``url`` (or the environment's), to use with ``async with`` or ``await``.

    Keyword options are :class:`~botdb.config.Settings` fields and win over the URL and the
    environment. ``await botdb.connect(...)`` connects and returns the Database;
    ``async with botdb.connect(...) as db`` also closes it at the end.
    """
    return Database(Settings.from_env(url=url, **options))


class Database(QueryAPI):
    """The database a bot holds: raw SQL, transactions, sessions, the cache, the services,
    repositories, migrations and operations.

    Build it in ``main()`` (or the framework's startup hook), keep it on the bot object, and
    close it on shutdown. It owns one SQLAlchemy engine and pool.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self.backend = self.settings.backend
        self._core = EngineCore(self.settings, hook_factory=self._invalidation_batch)
        self._cache: Cache | None = None
        self._repositories: dict[type[Any], Any] = {}
        self._scoped: dict[str, ScopedConfig] = {}
        self._stats: Stats | None = None
        self._recorder: Recorder | None = None
        self._scheduler: Scheduler | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> Self:
        """Open the pool and check that the database answers. Idempotent."""
        if self._core.is_open:
            return self
        await self._core.connect()
        try:
            self._cache = Cache(
                redis_url=self.settings.redis_url,
                prefix=self.settings.cache_prefix,
                max_size=max(1, self.settings.cache_max_size),
                ttl=self.settings.cache_ttl,
            )
            await self._cache.start()
            settings = self.settings
            if (
                settings.cache_via_database
                and not settings.url.is_memory
                and not settings.pgbouncer
            ):
                await self._cache.listen_to_database(
                    self.backend,
                    self._core.dedicated_connection,
                    execute=self.execute,
                    poll_interval=settings.cache_poll_interval,
                )
            await self._replay_recorder_spool()
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Flush the recorder, hand every connection back and close the pool. Safe to call
        twice."""
        if self._stats is not None:
            await self._stats.stop_refresher()
        if self._scheduler is not None:
            await self._scheduler.stop()
        recorder, self._recorder = self._recorder, None
        try:
            if recorder is not None:
                await recorder.close()
        finally:
            cache, self._cache = self._cache, None
            if cache is not None:
                await cache.close()
            await self._core.close()

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
        state = "open" if self._core.is_open else "closed"
        return f"<Database {self.settings.url.masked()} {state}>"

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy AsyncEngine (for Alembic, the ORM, or SQLAlchemy Core).

        Call :meth:`free_pool_slot` before checking a connection out of it yourself.
        """
        return self._core.engine

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

    def _invalidation_batch(self) -> InvalidationBatch:
        return self.cache.batch()

    # -- the raw SQL API (QueryAPI's methods run here) ----------------------------------------

    def _call(
        self,
        method: str,
        query: str,
        args: Any,
        timeout: float | None,
        *extra: Any,
        retryable: bool = True,
    ) -> Awaitable[Any]:
        # A plain function returning the engine's coroutine: no extra frame per statement.
        return self._core.call(method, query, args, timeout, *extra, retryable=retryable)

    def acquire(self) -> AbstractAsyncContextManager[Connection]:
        """Hold one connection for a block; statements run in autocommit mode.

        The connection goes back to the pool when the block ends, also on cancellation, and
        whatever the block changed on it (settings, temporary tables, locks, listeners) is
        reset before anyone else gets it.
        """
        return self._core.acquire()

    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False
    ) -> AbstractAsyncContextManager[Connection]:
        """A transaction: committed when the block ends, rolled back if it raises.

        Args:
            isolation: ``"read_committed"`` (PostgreSQL's default), ``"repeatable_read"`` or
                ``"serializable"``; SQLite transactions are always serializable.
            readonly: a read-only transaction (PostgreSQL); on SQLite it takes no write lock.

        If the connection drops during the COMMIT, PostgreSQL is asked whether the
        transaction committed: the block then ends normally, or raises a retryable
        :class:`~botdb.errors.ConnectionLostError`; ``in_doubt`` is set only when the
        server cannot tell.
        """
        return self._core.transaction(isolation=isolation, readonly=readonly)

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
        COMMIT cut off by a lost connection is resolved from the server (see
        :meth:`transaction`): it is run again only when it certainly did not commit.

        Example:
            >>> async def transfer(conn, src, dst, amount):
            ...     sql = "UPDATE wallets SET coins = coins + $1 WHERE id = $2"
            ...     await conn.execute(sql, -amount, src)
            ...     await conn.execute(sql, amount, dst)
            >>> await db.run_in_transaction(transfer, alice, bob, 10)
        """
        return await self._core.run_in_transaction(fn, *args, isolation=isolation, **kwargs)

    async def execute_in_transaction(
        self,
        queries: Iterable[tuple[str, Sequence[Any]]],
        *,
        timeout: float | None = None,
    ) -> list[str]:
        """Run ``(query, args)`` pairs in one transaction; all apply or none.

        Re-runs them all on a transient failure, like :meth:`run_in_transaction`. Returns
        each statement's status.
        """
        return await self._core.execute_in_transaction(queries, timeout=timeout)

    def session(self, *, readonly: bool = False) -> AbstractAsyncContextManager[AsyncSession]:
        """An ORM session (unit of work): committed at the end of the block, rolled back if
        it raises. One per task or per update; never share it between tasks.

        Errors are botdb's typed errors, as on the raw API. Cache invalidations registered
        with :meth:`invalidate` during the block are sent after the commit, and dropped on
        rollback; a COMMIT cut off by a lost connection is resolved as in :meth:`transaction`.

        Args:
            readonly: a session that only reads. With ``replica_urls`` it runs on a replica
                when a raw read would (not within ``replica_read_your_writes`` of the
                task's last write, not inside :attr:`primary`); a replica that is down is
                replaced by the primary before the block starts. A statement that writes or
                locks, or a change to one of its objects at the end of the block, raises
                :class:`~botdb.errors.ReadOnlyError` before anything is sent.

        Example:
            >>> async with db.session(readonly=True) as session:
            ...     guilds = (await session.scalars(select(Guild).limit(10))).all()
        """
        return self._core.session(readonly=readonly)

    async def run_in_session(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, readonly: bool = False
    ) -> T:
        """Run ``work(session)`` in one :meth:`session`, all of it again after a transient
        failure that rolled it back. ``work`` must have no effects outside the database.

        With ``readonly=True`` the session is read-only and may run on a replica; if the
        replica fails at any point, ``work`` runs again on the primary (the repositories'
        and services' reads run this way)."""
        return await self._core.run_in_session(work, readonly=readonly)

    async def invalidate(self, *keys: str, within: AsyncSession | Connection | None = None) -> None:
        """Drop cache keys in every process: after ``within``'s commit, or now without one.

        Pass the session or transaction connection the write happened in, so that the
        invalidation waits for the commit and is dropped on rollback.
        """
        hook: Any = None
        if isinstance(within, AsyncSession):
            hook = within.info.get(HOOK)
        elif isinstance(within, Connection):
            hook = within.hook
        if isinstance(hook, InvalidationBatch):
            hook.invalidate(*keys)
        else:
            await self.cache.invalidate(*keys)

    async def free_pool_slot(self) -> None:
        """Hand an idle raw-API connection back to the engine's pool if that pool is full.

        Call it before using :attr:`engine` directly (``db.session()`` does it itself).
        """
        await self._core.free_pool_slot()

    # -- health and statistics ----------------------------------------------------------------

    async def health_check(self, *, degraded_after_ms: float = 500.0) -> dict[str, Any]:
        """The database's health: ``status`` (``"healthy"``, ``"degraded"`` or
        ``"unhealthy"``), ``database_available``, ``backend``, ``url`` (password masked),
        ``latency_ms``, ``pool`` and ``errors`` (a list of messages, empty when healthy)."""
        from botdb.ops.health import health_check

        report = await health_check(self._core, degraded_after_ms=degraded_after_ms)
        replicas = self._core.replicas
        if replicas is not None:
            # Each replica: {"url", "status": "ok"/"lagging"/"down", "lag_s", "error"}. One
            # that is not ok costs nothing but load on the primary: the database is degraded.
            report["replicas"] = states = await replicas.health()
            for state in states:
                if state["status"] != "ok":
                    report["errors"].append(f"replica {state['url']} {state['status']}")
                    if report["status"] == "healthy":
                        report["status"] = "degraded"
        return report

    async def check_connection_health(self) -> bool:
        """True when the database answers a trivial query now."""
        report = await self.health_check()
        return bool(report["database_available"])

    async def validate_connections(self) -> dict[str, int]:
        """Check every idle pooled connection with a trivial query; drop the broken ones.

        Returns the counts ``{"checked": n, "valid": n, "dropped": n}``.
        """
        return await self._core.validate_connections()

    def pool_stats(self) -> dict[str, Any]:
        """Pool size and use: SQLAlchemy's pool plus the raw API's leased connections."""
        return self._core.pool_stats()

    @property
    def stats(self) -> Stats:
        """Activity statistics (``await db.stats.daily(guild_id)``, ``top_members``,
        ``heatmap``...; see :mod:`botdb.analytics`); calling it, ``db.stats()``, returns the
        engine's counts of queries, errors, retries and slow queries, latency percentiles
        and the pool.
        """
        if self._stats is None:
            from botdb.analytics import Stats

            self._stats = Stats(self, self._engine_stats)
        return self._stats

    def _engine_stats(self) -> dict[str, Any]:
        snapshot = self._core.stats.snapshot()
        snapshot["pool"] = self.pool_stats()
        snapshot["backend"] = self.backend
        if self._core.replicas is not None:
            snapshot["reads"] = self._core.replicas.stats()
        return snapshot

    @property
    def primary(self) -> PrimaryView:
        """This database with every read on the primary (``replica_urls``).

        ``await db.primary.fetchrow(...)`` reads one statement from the primary;
        ``async with db.primary:`` (or ``with``) sends every read of the current task there
        for the block, read-only sessions and the repositories' and services' reads
        included. Without replicas it is
        the same as ``db``.
        """
        return PrimaryView(self)

    # -- services -----------------------------------------------------------------------------

    @cached_property
    def users(self) -> UserService:
        """Users (Discord and Telegram): cached, race-free ``get_or_create``."""
        from botdb.services import UserService

        return UserService(self)

    @cached_property
    def config(self) -> GuildConfigService:
        """Per-guild configuration: typed, validated, cached across shards."""
        from botdb.services import GuildConfigService

        return GuildConfigService(self)

    @cached_property
    def cases(self) -> CaseService:
        """Moderation cases with gapless per-guild case numbers."""
        from botdb.services import CaseService

        return CaseService(self)

    @property
    def recorder(self) -> Recorder:
        """The event recorder (:class:`~botdb.recorder.Recorder`): batched writes of chat
        events, configured by the ``recorder_*`` settings. Flushed by :meth:`close`."""
        if self._recorder is None:
            from botdb.recorder import Recorder

            self._recorder = Recorder(self, self._recorder_options())
        return self._recorder

    @property
    def scheduler(self) -> Scheduler:
        """Durable jobs (:class:`~botdb.scheduler.Scheduler`): schedule one-shot and
        recurring jobs, register handlers per kind, run them with ``await
        db.scheduler.start()``. Stopped by :meth:`close`."""
        if self._scheduler is None:
            from botdb.scheduler import Scheduler

            self._scheduler = Scheduler(
                self, self._core.dedicated_connection, in_memory=self.settings.url.is_memory
            )
        return self._scheduler

    def _recorder_options(self) -> Any:
        from botdb.recorder import RecorderOptions, default_spool_path

        settings = self.settings
        url = settings.url
        spool = settings.recorder_spool_path or default_spool_path(
            url.masked(),
            None if url.is_memory or url.backend != "sqlite" else url.path,
            memory_owner=id(self) if url.is_memory else None,
        )
        return RecorderOptions(
            batch_size=settings.recorder_batch_size,
            flush_interval=settings.recorder_flush_interval,
            max_buffer=settings.recorder_max_buffer,
            when_full=settings.recorder_when_full,
            spool_path=spool,
            platform=settings.recorder_platform,
            retry_initial_delay=settings.retry_initial_delay,
            retry_max_delay=settings.retry_max_delay,
            retry_jitter=settings.retry_jitter,
        )

    async def _replay_recorder_spool(self) -> None:
        """Start the recorder when its spool holds events a previous run left there."""
        from botdb.recorder._spool import peek_backlog

        if self.settings.url.is_memory:
            return  # nothing of a previous process to replay into a new in-memory database
        if self._recorder is None and peek_backlog(self._recorder_options().spool_path):
            try:
                await self.recorder.start()
            except errors.ConfigurationError as exc:
                # Another process holds that spool (and replays it): connecting still works;
                # recording in this process raises the same error until it has its own.
                _log.warning("recorder spool not replayed: %s", exc)

    def scoped(self, namespace: str) -> ScopedConfig:
        """Red-DiscordBot-style scoped settings of ``namespace`` (one object per namespace,
        which holds its registered defaults)."""
        scoped = self._scoped.get(namespace)
        if scoped is None:
            from botdb.services import ScopedConfig

            scoped = self._scoped[namespace] = ScopedConfig(self, namespace)
        return scoped

    # -- models, repositories and migrations --------------------------------------------------

    @property
    def guilds(self) -> Repository[models.Guild]:
        return self.repo(_model("Guild"))

    @property
    def guild_configs(self) -> Repository[models.GuildConfig]:
        return self.repo(_model("GuildConfig"))

    @property
    def members(self) -> Repository[models.Member]:
        return self.repo(_model("Member"))

    @property
    def channels(self) -> Repository[models.Channel]:
        return self.repo(_model("Channel"))

    @property
    def threads(self) -> Repository[models.Thread]:
        return self.repo(_model("Thread"))

    @property
    def roles(self) -> Repository[models.Role]:
        return self.repo(_model("Role"))

    @property
    def messages(self) -> MessageRepository:
        """The messages' repository, with full-text :meth:`~MessageRepository.search`."""
        return cast("MessageRepository", self.repo(_model("Message")))

    @property
    def reactions(self) -> Repository[models.Reaction]:
        return self.repo(_model("Reaction"))

    @cached_property
    def reminders(self) -> ReminderService:
        """Tracked events and personal reminders on :attr:`scheduler` (see
        :mod:`botdb.services.reminders`); ``db.reminders.repo`` is the ``user_reminders``
        repository."""
        from botdb.services.reminders import ReminderService

        return ReminderService(self)

    @property
    def tracked_events(self) -> Repository[models.TrackedEvent]:
        return self.repo(_model("TrackedEvent"))

    def repo(self, model: type[M]) -> Repository[M]:
        """The repository of a model (built-in or your own), created once per Database."""
        repository = self._repositories.get(model)
        if repository is None:
            from botdb.repository import Repository

            secret = self.settings.cursor_secret
            key = secret.encode() if secret else None
            if model is _model("Message"):
                from botdb.repository import MessageRepository

                repository = MessageRepository(self, cursor_secret=key)
            else:
                repository = Repository(self, model, cursor_secret=key)
            self._repositories[model] = repository
        return cast("Repository[M]", repository)

    async def create_tables(self, metadata: MetaData | None = None) -> None:
        """Create every table of ``metadata`` (default: botdb's ``Base``) that is missing,
        and the stats' summary objects when the message tables are among them.

        For tests and prototypes; real deployments use :meth:`migrate`.
        """
        from botdb.analytics import _schema

        if metadata is None:
            from botdb.models import Base

            metadata = Base.metadata
        await self.free_pool_slot()
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            # The stats' summary views (PostgreSQL) or trigger-kept tables (SQLite).
            await conn.run_sync(_schema.install, metadata)

    async def migrate(
        self, revision: str = "head", *, script_locations: Sequence[str | Path] | None = None
    ) -> list[str]:
        """Upgrade the schema (built-in tables and your own migrations) to ``revision``.

        ``script_locations`` are your migration directories (default: the setting
        ``migrations_path``). Returns the revisions applied. See ``docs/migrations.md``.
        """
        from botdb.migrations import Migrator

        if script_locations is None:
            script_locations = self.settings.migration_locations()
        return await Migrator(self, script_locations=script_locations).upgrade(revision)

    # -- operations (botdb.ops, botdb.importers; the ``botdb`` command wraps the same calls) --

    async def info(self, *, tables: bool = True) -> dict[str, Any]:
        """Where the database is, its size, version, settings, tables and pending migrations."""
        from botdb import ops

        return await ops.database_info(self, tables=tables)

    async def backup(self, out_dir: str | Path, *, keep: int | None = None) -> BackupResult:
        """An online, consistent backup into ``out_dir`` (mode 0600, checksum manifest),
        keeping the newest ``keep`` backups of this database."""
        from botdb import ops

        return await ops.backup(self, Path(out_dir), keep=keep)

    async def restore(self, file: str | Path, *, yes: bool = False) -> RestoreResult:
        """Restore a backup made by :meth:`backup`: verified, then swapped in atomically.

        Raises:
            RestoreRefusedError: the database holds data and ``yes`` is False.
            BackupVerificationError: the file is corrupted or truncated; nothing changed.
        """
        from botdb import ops

        return await ops.restore(self, Path(file), yes=yes)

    async def optimize(self) -> dict[str, Any]:
        """ANALYZE, VACUUM, rebuild bloated indexes, refresh materialized views, then check."""
        from botdb import ops

        return await ops.optimize(self)

    async def partition_messages(
        self, *, by: str = "id", interval: str = "month", ahead: int = 3, batch_size: int = 10_000
    ) -> dict[str, Any]:
        """PostgreSQL: make the message family range-partitioned by snowflake id, moving the
        data online in batches; see :func:`botdb.ops.partition_messages`.

        Raises:
            PartitioningError: SQLite, ``by="created_at"``, or ids that are not snowflakes.
        """
        from botdb.ops import partitions

        return await partitions.partition_messages(
            self, by=by, interval=interval, ahead=ahead, batch_size=batch_size
        )

    async def distribute(
        self, *, dry_run: bool = False, tables: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Citus: distribute the schema by guild (chat-scoped tables sharded by ``guild_id``
        and colocated, global ones as reference tables), idempotently; see
        :func:`botdb.ops.distribution.distribute` and ``docs/growing.md``.

        Raises:
            DistributionError: SQLite, not a Citus coordinator with workers, migrations
                pending, partitioned messages, or a table or key Citus cannot take.
        """
        from botdb.ops import distribution

        return await distribution.distribute(self, dry_run=dry_run, tables=tables)

    async def retention(
        self, older_than: timedelta | str, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Remove messages older than ``older_than`` (``"90d"`` or a timedelta): whole
        partitions dropped when partitioned, else batched deletes; see
        :func:`botdb.ops.retention`."""
        from botdb.ops import partitions

        return await partitions.retention(self, older_than, dry_run=dry_run)

    async def analyze(self, tables: Iterable[str] | None = None) -> dict[str, Any]:
        """Refresh the planner's statistics of ``tables`` (default: all), e.g. after a bulk
        load; see :func:`botdb.ops.analyze`."""
        from botdb import ops

        return await ops.analyze(self, tables)

    async def integrity(self) -> dict[str, Any]:
        """Integrity and foreign-key checks (SQLite); invalid indexes and constraints (PG)."""
        from botdb import ops

        return await ops.integrity(self)

    async def maintain_indexes(self, *, dry_run: bool = False) -> dict[str, Any]:
        """Rebuild indexes whose estimated bloat is high (``dry_run`` only reports them)."""
        from botdb import ops

        return await ops.maintain_indexes(self, dry_run=dry_run)

    async def refresh_materialized_views(self) -> dict[str, Any]:
        """Refresh every materialized view (concurrently where a unique index allows it)."""
        from botdb import ops

        return await ops.refresh_materialized_views(self)

    async def import_json(self, path: str | Path, **options: Any) -> ImportReport:
        """Import a legacy JSON store, validated first and in one transaction; see
        :func:`botdb.importers.import_json` for the options (``format``, ``spec``,
        ``dry_run``, ``backup_dir``)."""
        from botdb.importers import import_json

        return await import_json(self, Path(path), **options)

    async def import_discord(self, *paths: str | Path, **options: Any) -> ChatImportReport:
        """Import DiscordChatExporter JSON exports in one transaction; see
        :func:`botdb.importers.import_discord` for the options (``batch_size``,
        ``progress``, ``naive_tz``)."""
        from botdb.importers import import_discord

        return await import_discord(self, *paths, **options)

    async def write_report(self, path: str | Path, guild_id: int, **options: Any) -> ReportFile:
        """Write a guild's activity report, one self-contained HTML page; see
        :func:`botdb.analytics.report.write_report` for the options (``since``, ``until``,
        ``days``, ``tz``, ``limit``, ``refresh``). Needs the ``report`` extra (plotly)."""
        from botdb.analytics.report import write_report

        return await write_report(self, path, guild_id, **options)

    async def import_telegram(self, path: str | Path, **options: Any) -> ChatImportReport:
        """Import a Telegram Desktop JSON export in one transaction; see
        :func:`botdb.importers.import_telegram` for the options."""
        from botdb.importers import import_telegram

        return await import_telegram(self, path, **options)


class PrimaryView(QueryAPI):
    """:attr:`Database.primary`: the raw API, and a block, whose reads go to the primary."""

    __slots__ = ("_db", "_tokens")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._tokens: list[Token[bool]] = []

    def _call(
        self,
        method: str,
        query: str,
        args: Any,
        timeout: float | None,
        *extra: Any,
        retryable: bool = True,
    ) -> Awaitable[Any]:
        return self._forced(method, query, args, timeout, *extra, retryable=retryable)

    async def _forced(
        self,
        method: str,
        query: str,
        args: Any,
        timeout: float | None,
        *extra: Any,
        retryable: bool = True,
    ) -> Any:
        token = force_primary()
        try:
            return await self._db._core.call(
                method, query, args, timeout, *extra, retryable=retryable
            )
        finally:
            reset_primary(token)

    def __enter__(self) -> Database:
        self._tokens.append(force_primary())
        return self._db

    def __exit__(self, *exc: object) -> None:
        reset_primary(self._tokens.pop())

    async def __aenter__(self) -> Database:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()

    def __repr__(self) -> str:
        return f"<primary of {self._db!r}>"


def _model(name: str) -> Any:
    """A built-in model class, imported when first asked for (keeps ``import botdb`` light)."""
    from botdb import models

    return getattr(models, name)
