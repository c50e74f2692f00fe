"""The parts of :class:`botdb.Database` that hand work to the layers above the engine.

Services, repositories, migrations and operations each live in their own package; these are
the thin methods that make them reachable from the one object a bot holds (``db.users``,
``db.repo(Model)``, ``db.migrate()``, ``db.backup(...)``). Each imports its layer on first use,
so ``import botdb`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import MetaData

if TYPE_CHECKING:
    from botdb import models
    from botdb.config import Settings
    from botdb.database import Database
    from botdb.importers import ImportReport
    from botdb.ops import BackupResult, RestoreResult
    from botdb.repository import Repository
    from botdb.services import CaseService, GuildConfigService, ScopedConfig, UserService

__all__ = ["DatabaseFacade"]

M = TypeVar("M")


class DatabaseFacade:
    """Mixed into :class:`botdb.Database`; relies on its settings, engine and pool."""

    settings: Settings
    _repositories: dict[type[Any], Any]
    _scoped: dict[str, ScopedConfig]

    @property
    def _database(self) -> Database:
        return cast("Database", self)

    # -- services -----------------------------------------------------------------------------

    @cached_property
    def users(self) -> UserService:
        """Users (Discord and Telegram): cached, race-free ``get_or_create``."""
        from botdb.services import UserService

        return UserService(self._database)

    @cached_property
    def config(self) -> GuildConfigService:
        """Per-guild configuration: typed, validated, cached across shards."""
        from botdb.services import GuildConfigService

        return GuildConfigService(self._database)

    @cached_property
    def cases(self) -> CaseService:
        """Moderation cases with gapless per-guild case numbers."""
        from botdb.services import CaseService

        return CaseService(self._database)

    def scoped(self, namespace: str) -> ScopedConfig:
        """Red-DiscordBot-style scoped settings of ``namespace`` (one object per namespace,
        which holds its registered defaults)."""
        scoped = self._scoped.get(namespace)
        if scoped is None:
            from botdb.services import ScopedConfig

            scoped = self._scoped[namespace] = ScopedConfig(self._database, namespace)
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
    def messages(self) -> Repository[models.Message]:
        return self.repo(_model("Message"))

    @property
    def reactions(self) -> Repository[models.Reaction]:
        return self.repo(_model("Reaction"))

    @property
    def reminders(self) -> Repository[models.UserReminder]:
        return self.repo(_model("UserReminder"))

    @property
    def tracked_events(self) -> Repository[models.TrackedEvent]:
        return self.repo(_model("TrackedEvent"))

    def repo(self, model: type[M]) -> Repository[M]:
        """The repository of a model (built-in or your own), created once per Database."""
        repository = self._repositories.get(model)
        if repository is None:
            from botdb.repository import Repository

            secret = self.settings.cursor_secret
            repository = self._repositories[model] = Repository(
                self._database, model, cursor_secret=secret.encode() if secret else None
            )
        return cast("Repository[M]", repository)

    async def create_tables(self, metadata: MetaData | None = None) -> None:
        """Create every table of ``metadata`` (default: botdb's ``Base``) that is missing.

        For tests and prototypes; real deployments use :meth:`migrate`.
        """
        if metadata is None:
            from botdb.models import Base

            metadata = Base.metadata
        await self._database.free_pool_slot()
        async with self._database.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

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
        return await Migrator(self._database, script_locations=script_locations).upgrade(revision)

    # -- operations (botdb.ops, botdb.importers; the ``botdb`` command wraps the same calls) --

    async def info(self, *, tables: bool = True) -> dict[str, Any]:
        """Where the database is, its size, version, settings, tables and pending migrations."""
        from botdb import ops

        return await ops.database_info(self._database, tables=tables)

    async def backup(self, out_dir: str | Path, *, keep: int | None = None) -> BackupResult:
        """An online, consistent backup into ``out_dir`` (mode 0600, checksum manifest),
        keeping the newest ``keep`` backups of this database."""
        from botdb import ops

        return await ops.backup(self._database, Path(out_dir), keep=keep)

    async def restore(self, file: str | Path, *, yes: bool = False) -> RestoreResult:
        """Restore a backup made by :meth:`backup`: verified, then swapped in atomically.

        Raises:
            RestoreRefusedError: the database holds data and ``yes`` is False.
            BackupVerificationError: the file is corrupted or truncated; nothing changed.
        """
        from botdb import ops

        return await ops.restore(self._database, Path(file), yes=yes)

    async def optimize(self) -> dict[str, Any]:
        """ANALYZE, VACUUM, rebuild bloated indexes, refresh materialized views, then check."""
        from botdb import ops

        return await ops.optimize(self._database)

    async def integrity(self) -> dict[str, Any]:
        """Integrity and foreign-key checks (SQLite); invalid indexes and constraints (PG)."""
        from botdb import ops

        return await ops.integrity(self._database)

    async def maintain_indexes(self, *, dry_run: bool = False) -> dict[str, Any]:
        """Rebuild indexes whose estimated bloat is high (seed 000's ``maintain_indexes``)."""
        from botdb import ops

        return await ops.maintain_indexes(self._database, dry_run=dry_run)

    async def refresh_materialized_views(self) -> dict[str, Any]:
        """Refresh every materialized view (concurrently where a unique index allows it)."""
        from botdb import ops

        return await ops.refresh_materialized_views(self._database)

    async def import_json(self, path: str | Path, **options: Any) -> ImportReport:
        """Import a legacy JSON store, validated first and in one transaction; see
        :func:`botdb.importers.import_json` for the options (``format``, ``spec``,
        ``dry_run``, ``backup_dir``)."""
        from botdb.importers import import_json

        return await import_json(self._database, Path(path), **options)


def _model(name: str) -> Any:
    """A built-in model class, imported when first asked for (keeps ``import botdb`` light)."""
    from botdb import models

    return getattr(models, name)
