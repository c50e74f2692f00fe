"""``Migrator``: botdb's Alembic, driven from code on the Database's own engine.

No ``alembic.ini`` is needed. The script directory is this package; its ``versions/`` holds the
built-in schema (branch ``botdb``), and each of the user's directories is one more version
location (branch ``app`` by default, which depends on the built-in branch). Both branches record
their heads in one version table, ``botdb_alembic_version``.

Every command runs on one connection of ``db.engine`` inside one transaction: a failing
upgrade leaves the database as it was, on PostgreSQL and on SQLite (botdb's SQLite connections
BEGIN explicitly, and SQLite's DDL is transactional). Writers take a lock first (a transaction
advisory lock on PostgreSQL, the write lock on SQLite), so shard processes that all migrate at
startup run one after the other, and the later ones find nothing left to do.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from alembic.autogenerate import RevisionContext, compare_metadata
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from botdb import errors
from botdb.migrations._connection import (
    foreign_key_check,
    free_pool_slot,
    lock,
    pragma,
    restore_foreign_keys,
)
from botdb.migrations._describe import describe_diff, index_where_diffs, server_default_diffs
from botdb.migrations._env import (
    BUILTIN_BRANCH,
    CONNECTION_KEY,
    OPTIONS_KEY,
    VERSION_TABLE,
    EnvOptions,
)
from botdb.migrations._errors import MigrationError
from botdb.migrations._graph import ancestors, describe_revision, oldest_first, tips

if TYPE_CHECKING:
    from botdb._protocols import EngineDatabase

__all__ = ["BUILTIN_VERSIONS", "SCRIPT_LOCATION", "MigrationError", "Migrator"]

T = TypeVar("T")

#: The Alembic script directory shipped with botdb (``env.py``, ``script.py.mako``).
SCRIPT_LOCATION = Path(__file__).resolve().parent
#: The revisions of the built-in schema.
BUILTIN_VERSIONS = SCRIPT_LOCATION / "versions"

_BRANCH_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_PASSTHROUGH = (errors.TransientError, errors.AuthenticationError, errors.InterfaceError)


class Migrator:
    """Alembic for botdb: the built-in schema's revisions plus the user's own.

    Args:
        db: a connected Database; every command runs on its engine.
        script_locations: the user's version directories (their revisions live there).
        metadata: the models to compare against; ``botdb.models.Base.metadata`` by default
            (import your models module first so that your tables are registered on it).
        branch: the branch label of the user's revisions.

    Example:
        >>> migrator = Migrator(db, script_locations=["migrations"])
        >>> await migrator.upgrade()          # every branch to its head
        >>> await migrator.revision("add gallery channels")   # after changing a model
    """

    def __init__(
        self,
        db: EngineDatabase,
        *,
        script_locations: Sequence[str | os.PathLike[str]] = (),
        metadata: MetaData | None = None,
        branch: str = "app",
    ) -> None:
        if not _BRANCH_RE.fullmatch(branch) or branch == BUILTIN_BRANCH:
            raise errors.ConfigurationError(
                f"invalid branch label {branch!r}: use letters, digits and underscores, "
                f"starting with a letter, and not {BUILTIN_BRANCH!r}"
            )
        if isinstance(script_locations, str | os.PathLike):
            script_locations = [script_locations]
        self.db = db
        self.branch = branch
        self.script_locations = tuple(_absolute(p) for p in script_locations)
        self._metadata = metadata

    @property
    def metadata(self) -> MetaData:
        """The metadata autogenerate compares against."""
        if self._metadata is None:
            import botdb.models

            return botdb.models.Base.metadata
        return self._metadata

    def _tables(self, scope: str) -> frozenset[str]:
        from botdb.models import is_builtin

        tables = self.metadata.tables.values()
        if scope == BUILTIN_BRANCH:
            return frozenset(t.name for t in tables if is_builtin(t))
        if scope == self.branch:
            return frozenset(t.name for t in tables if not is_builtin(t))
        return frozenset(t.name for t in tables)

    # -- reading ------------------------------------------------------------------------------

    async def current(self) -> list[str]:
        """The revisions the database is at: the latest applied one of each branch (empty for
        a new database). Comparable with :meth:`heads` once everything is applied."""
        stored = await self._run(_current_heads, write=False)
        if not stored:
            return []
        script = await self._load_script()
        return tips(script, ancestors(script, stored))

    async def heads(self) -> list[str]:
        """The latest revision of every branch."""
        script = await self._load_script()
        return sorted(script.get_heads())

    async def history(self) -> list[dict[str, Any]]:
        """Every revision, oldest first, with ``revision``, ``down_revision``, ``message``,
        ``branch_labels``, ``depends_on``, ``is_head`` and ``is_applied``."""
        script = await self._load_script()
        applied = ancestors(script, await self.current())
        return [describe_revision(rev, rev.revision in applied) for rev in oldest_first(script)]

    async def pending(self) -> list[str]:
        """The revisions ``upgrade()`` would apply, oldest first."""
        return [entry["revision"] for entry in await self.history() if not entry["is_applied"]]

    async def check(self) -> list[str]:
        """What differs between the models and the migrated database, one readable line per
        difference; empty when every model change has its migration.

        Raises:
            MigrationError: when the database is not at the latest revisions (upgrade first).
        """
        pending = await self.pending()
        if pending:
            raise MigrationError(
                f"the database is not up to date ({len(pending)} pending revision(s): "
                f"{', '.join(pending)}); upgrade it before checking"
            )
        options = EnvOptions(self.metadata, self._tables("all"))

        def compare(conn: Connection) -> list[str]:
            context = MigrationContext.configure(
                conn,
                opts={
                    "version_table": VERSION_TABLE,
                    "target_metadata": options.metadata,
                    "compare_type": True,
                    "include_name": options.include_name,
                    "include_object": options.include_object,
                },
            )
            diffs = compare_metadata(context, options.metadata)
            lines = [line for diff in diffs for line in describe_diff(diff)]
            scope = [t for t in options.metadata.sorted_tables if t.name in options.tables]
            return lines + index_where_diffs(conn, scope) + server_default_diffs(conn, scope)

        return await self._run(compare, write=False)

    # -- writing ------------------------------------------------------------------------------

    async def upgrade(self, revision: str = "head") -> list[str]:
        """Apply revisions up to ``revision`` and return the ones applied, in order.

        ``"head"`` (the default) and ``"heads"`` upgrade every branch; ``"botdb@head"`` or
        ``"app@head"`` one branch (and what it depends on); ``"+1"`` one step.

        Raises:
            MigrationError: unknown revision, or a revision failed (nothing was applied).
        """
        target = "heads" if revision == "head" else revision
        script = await self._load_script()

        def steps(rev: Any, context: MigrationContext) -> Any:
            return script._upgrade_revs(target, rev)

        return await self._migrate(script, steps, target, f"upgrade to {revision!r}")

    async def downgrade(self, revision: str) -> list[str]:
        """Revert revisions down to ``revision`` and return the ones reverted, in order.

        ``"base"`` reverts everything; ``"app@base"`` only the user's branch; ``"-1"`` one step.

        Raises:
            MigrationError: unknown revision, a downgrade past base, or a revision failed
                (nothing was reverted).
        """
        script = await self._load_script()

        def steps(rev: Any, context: MigrationContext) -> Any:
            return script._downgrade_revs(revision, rev)

        return await self._migrate(script, steps, revision, f"downgrade to {revision!r}")

    async def revision(
        self,
        message: str,
        *,
        autogenerate: bool = True,
        version_path: str | os.PathLike[str] | None = None,
    ) -> Path:
        """Write a new revision of the user's branch and return its path.

        With ``autogenerate`` the revision holds what differs between the user's tables (the
        metadata's tables not shipped by botdb) and the database, which must be up to date.
        The first revision starts the branch (label :attr:`branch`) and depends on botdb's
        head, so ``upgrade()`` always creates the built-in tables first.

        Args:
            message: what the revision does (also its file name's slug).
            autogenerate: fill the revision from the model changes (else an empty one).
            version_path: the directory to write to; the first ``script_locations`` entry by
                default. Created if missing.

        Raises:
            ConfigurationError: no directory to write to, or no user tables to autogenerate.
            MigrationError: the database is not up to date.
        """
        if version_path is None:
            if not self.script_locations:
                raise errors.ConfigurationError(
                    "no directory for your revisions: pass version_path or script_locations "
                    "(the CLI reads --version-path or BOTDB_MIGRATIONS_PATH)"
                )
            path = self.script_locations[0]
        else:
            path = _absolute(version_path)
        tables = self._tables(self.branch)
        if autogenerate and not tables:
            raise errors.ConfigurationError(
                "the metadata has no tables of your own: import your models module first"
            )
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        script = await self._load_script(extra=path)
        labelled = any(self.branch in rev.branch_labels for rev in script.walk_revisions())
        builtin_head = script.get_revision(f"{BUILTIN_BRANCH}@head")
        return await self._generate(
            script,
            message,
            autogenerate=autogenerate,
            version_path=path,
            options=EnvOptions(self.metadata, tables),
            head=f"{self.branch}@head" if labelled else "base",
            branch_label=None if labelled else self.branch,
            depends_on=None if builtin_head is None else builtin_head.revision,
        )

    async def _builtin_revision(self, message: str, *, rev_id: str) -> Path:
        """For botdb's maintainers: autogenerate the next revision of the built-in branch."""
        script = await self._load_script()
        head = script.get_revision(f"{BUILTIN_BRANCH}@head") if script.get_heads() else None
        return await self._generate(
            script,
            message,
            autogenerate=True,
            version_path=BUILTIN_VERSIONS,
            options=EnvOptions(self.metadata, self._tables(BUILTIN_BRANCH)),
            head=f"{BUILTIN_BRANCH}@head" if head is not None else "base",
            branch_label=None if head is not None else BUILTIN_BRANCH,
            depends_on=None,
            rev_id=rev_id,
        )

    # -- machinery ----------------------------------------------------------------------------

    def _config(self, conn: Connection, options: EnvOptions) -> Config:
        config = Config()
        config.attributes[CONNECTION_KEY] = conn
        config.attributes[OPTIONS_KEY] = options
        return config

    async def _load_script(self, extra: Path | None = None) -> ScriptDirectory:
        return await asyncio.to_thread(self._script_directory, extra)

    def _script_directory(self, extra: Path | None) -> ScriptDirectory:
        locations = [BUILTIN_VERSIONS, *self.script_locations]
        if extra is not None and extra not in locations:
            locations.append(extra)
        for location in locations:
            if not location.is_dir():
                raise errors.ConfigurationError(f"migrations directory not found: {location}")
        try:
            script = ScriptDirectory(
                str(SCRIPT_LOCATION),
                version_locations=[str(loc) for loc in locations],
                messaging_opts={"quiet": True},
            )
            script.get_heads()  # parses every revision file now, in this worker thread
        except (CommandError, RevisionError) as exc:
            raise MigrationError(f"the migration scripts are inconsistent: {exc}") from exc
        except Exception as exc:
            raise MigrationError(
                f"a migration script could not be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        return script

    async def _migrate(
        self,
        script: ScriptDirectory,
        steps: Callable[[Any, MigrationContext], Any],
        destination: str,
        what: str,
    ) -> list[str]:
        done: list[str] = []

        def record(*, step: MigrationInfo, **_: Any) -> None:
            done.append(step.up_revision_id or "")

        options = EnvOptions(self.metadata, frozenset(), on_version_apply=record)

        def work(conn: Connection) -> list[str]:
            config = self._config(conn, options)
            with EnvironmentContext(
                config, script, fn=steps, as_sql=False, destination_rev=destination
            ):
                script.run_env()
            return done

        return await self._run(work, write=True, what=what)

    async def _generate(
        self,
        script: ScriptDirectory,
        message: str,
        *,
        autogenerate: bool,
        version_path: Path,
        options: EnvOptions,
        head: str,
        branch_label: str | None,
        depends_on: str | None,
        rev_id: str | None = None,
    ) -> Path:
        def work(conn: Connection) -> Path:
            config = self._config(conn, options)
            context = RevisionContext(
                config,
                script,
                {
                    "message": message,
                    "autogenerate": autogenerate,
                    "sql": False,
                    "head": head,
                    "splice": False,
                    "branch_label": branch_label,
                    "version_path": str(version_path),
                    "rev_id": rev_id,
                    "depends_on": depends_on,
                },
            )

            def collect(rev: Any, migration: MigrationContext) -> list[Any]:
                if autogenerate:
                    context.run_autogenerate(rev, migration)
                else:
                    context.run_no_autogenerate(rev, migration)
                return []

            with EnvironmentContext(
                config,
                script,
                fn=collect,
                as_sql=False,
                template_args=context.template_args,
                revision_context=context,
            ):
                script.run_env()
            written: list[Script | None] = list(context.generate_scripts())
            if not written or written[0] is None:
                raise MigrationError("alembic wrote no revision file")
            return Path(written[0].path)

        return await self._run(work, write=False, what=f"revision {message!r}")

    async def _run(
        self, work: Callable[[Connection], T], *, write: bool, what: str = "migration"
    ) -> T:
        """Run ``work`` on one connection in one transaction; translate what it raises."""
        engine = self.db.engine
        await free_pool_slot(self.db)
        sqlite = engine.dialect.name == "sqlite"
        try:
            async with engine.connect() as conn:
                if sqlite and write:
                    # Batch mode rebuilds tables; with foreign keys on, dropping the old copy
                    # would cascade to the rows that reference it. Checked before COMMIT.
                    busy_ms = int(self.db.settings.sqlite_busy_timeout * 1000)
                    await pragma(conn, f"busy_timeout = {busy_ms}")
                    await pragma(conn, "foreign_keys = OFF")
                try:
                    async with conn.begin():
                        if write:
                            await lock(conn, sqlite)
                        result = await conn.run_sync(work)
                        if sqlite and write:
                            await foreign_key_check(conn)
                finally:
                    if sqlite and write:
                        await restore_foreign_keys(conn)
        except MigrationError:
            raise
        except _PASSTHROUGH:
            raise
        except errors.ConfigurationError:
            raise
        except (CommandError, RevisionError) as exc:
            raise MigrationError(f"{what} failed: {exc}; nothing was changed") from exc
        except Exception as exc:
            # Database errors arrive typed (the engine's handle_error boundary); whatever a
            # migration script itself raised becomes a MigrationError naming it.
            sqlstate = getattr(exc, "sqlstate", None)
            failure = MigrationError(
                f"{what} failed, nothing was changed: {type(exc).__name__}: {exc}",
                sqlstate=sqlstate if isinstance(sqlstate, str) else None,
            )
            raise failure from exc
        return result


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.fspath(path)))


def _current_heads(conn: Connection) -> tuple[str, ...]:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_heads()
