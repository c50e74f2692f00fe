"""What the layers below :class:`botdb.Database` need of it, as small Protocols.

Services, repositories, migrations, importers and operations are handed the Database a bot
holds, but none of them imports ``Database`` (not even for typing): ``Database`` is where
those layers are put together, so they sit below it. Each layer types against the Protocol
here that lists what it really uses, and ``Database`` satisfies every one of them
structurally (mypy checks it wherever the front door hands itself down, and
``tests/test_public_api.py`` checks the names).

* :class:`EngineDatabase`: ``botdb.migrations`` and ``botdb.importers``;
* :class:`RepositoryDatabase`: ``botdb.repository``;
* :class:`ServiceDatabase`: ``botdb.services``;
* :class:`OpsDatabase`: ``botdb.ops`` (info, backup/restore, maintenance, transfer);
* :class:`RecorderDatabase`: ``botdb.recorder``;
* :class:`AnalyticsDatabase`: ``botdb.analytics`` (the stats);
* :class:`SchedulerDatabase`: ``botdb.scheduler``;
* :class:`RemindersDatabase`: the reminders service (``botdb.services.reminders``).

Only names of lower layers appear here (settings, the engine's connection, the cache), so
importing this module never imports the front door.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from botdb.cache import Cache
    from botdb.config import Settings
    from botdb.engine.connection import Connection
    from botdb.repository import Repository
    from botdb.scheduler import Scheduler

T = TypeVar("T")
M = TypeVar("M")

__all__ = [
    "AnalyticsDatabase",
    "ConfiguredDatabase",
    "EngineDatabase",
    "OpsDatabase",
    "RawSQLDatabase",
    "RecorderDatabase",
    "RemindersDatabase",
    "RepositoryDatabase",
    "SchedulerDatabase",
    "ServiceDatabase",
]


class ConfiguredDatabase(Protocol):
    """A database's settings and backend (``"sqlite"`` or ``"postgresql"``)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def backend(self) -> str: ...


class RawSQLDatabase(Protocol):
    """The raw SQL API with ``$1`` placeholders (see :class:`botdb.Connection`)."""

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...

    async def fetchval(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...


class EngineDatabase(ConfiguredDatabase, Protocol):
    """The SQLAlchemy engine, for code that runs its own connection on it (migrations,
    importers). Call :meth:`free_pool_slot` before ``engine.connect()``."""

    @property
    def engine(self) -> AsyncEngine: ...

    async def free_pool_slot(self) -> None: ...


class RepositoryDatabase(ConfiguredDatabase, Protocol):
    """What a :class:`~botdb.repository.Repository` runs on: ORM sessions (one unit of work
    each; read-only ones for its reads, which may run on a replica), the engine's dialect and
    the raw API's ``fetchrow`` for the fast path."""

    @property
    def engine(self) -> AsyncEngine: ...

    def session(self, *, readonly: bool = False) -> AbstractAsyncContextManager[AsyncSession]: ...

    async def run_in_session(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, readonly: bool = False
    ) -> T: ...

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any: ...


class ServiceDatabase(ConfiguredDatabase, Protocol):
    """What the services (users, guild config, scoped settings, cases) run on: sessions, raw
    reads, and the cache with invalidations sent after the session's commit."""

    @property
    def cache(self) -> Cache: ...

    def session(self, *, readonly: bool = False) -> AbstractAsyncContextManager[AsyncSession]: ...

    async def run_in_session(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, readonly: bool = False
    ) -> T: ...

    async def invalidate(self, *keys: str, within: AsyncSession | None = None) -> None: ...

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...


class OpsDatabase(EngineDatabase, RawSQLDatabase, Protocol):
    """What the operations (info, backup/restore, maintenance, transfer) need: the raw API,
    held connections and transactions, the engine, the lifecycle (a PostgreSQL restore closes
    the pool for the swap and opens it again), the schema and the cache (cleared once the
    data under it was replaced)."""

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        ...

    @property
    def cache(self) -> Cache: ...

    def acquire(self) -> AbstractAsyncContextManager[Connection]: ...

    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False
    ) -> AbstractAsyncContextManager[Connection]: ...

    async def connect(self) -> object: ...

    async def close(self) -> None: ...

    async def migrate(self) -> list[str]: ...

    async def create_tables(self) -> None: ...


class RecorderDatabase(ConfiguredDatabase, Protocol):
    """What the recorder writes its batches through: a transaction per batch."""

    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False
    ) -> AbstractAsyncContextManager[Connection]: ...


class AnalyticsDatabase(ConfiguredDatabase, RawSQLDatabase, Protocol):
    """What the stats (``botdb.analytics``) read with: the backend and the raw SQL API."""


class SchedulerDatabase(ConfiguredDatabase, RawSQLDatabase, Protocol):
    """What ``db.scheduler`` runs on: the raw SQL API, and a transaction for a batch of
    settled jobs (or for the caller's ``within=``)."""

    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False
    ) -> AbstractAsyncContextManager[Connection]: ...


class RemindersDatabase(ConfiguredDatabase, RawSQLDatabase, Protocol):
    """What the reminders service runs on: the raw SQL API and transactions (a row and its
    job are written in one, through the scheduler's ``within=``), the scheduler, and the
    repositories it hands out."""

    @property
    def scheduler(self) -> Scheduler: ...

    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False
    ) -> AbstractAsyncContextManager[Connection]: ...

    async def run_in_transaction(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        isolation: str | None = None,
        **kwargs: Any,
    ) -> T: ...

    def repo(self, model: type[M]) -> Repository[M]: ...
