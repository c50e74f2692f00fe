"""Packaged Alembic migrations: the built-in branch, a user's branch, errors, CLI.

Every database test runs on SQLite and on the real PostgreSQL server (``db_url``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import botdb
from botdb import errors
from botdb.analytics._schema import SUMMARIES, sqlite_objects
from botdb.cli import app
from botdb.migrations import BUILTIN_BRANCH, VERSION_TABLE, MigrationError, Migrator
from botdb.models import NAMING_CONVENTION, builtin_tables
from botdb.models._search import SEARCH_TABLES, attach
from tests.helpers import MakeDB

BUILTIN = {table.name for table in builtin_tables()}
#: The stats' summary tables on SQLite (botdb_0004; materialized views on PostgreSQL): not
#: models, so left out of the table lists and compared by the schema snapshot instead.
SUMMARY_TABLES = set(sqlite_objects()["table"])
#: botdb's own revisions, oldest first.
REVISIONS = [
    "botdb_0001",
    "botdb_0002",
    "botdb_0003",
    "botdb_0004",
    "botdb_0005",
    "botdb_0007",
    "botdb_0008",
]
HEADS = REVISIONS[-1:]

FAILING_REVISION = '''
"""A revision that creates a table, then fails."""
import sqlalchemy as sa
from alembic import op

revision = "fail_0001"
down_revision = None
branch_labels = ("app",)
depends_on = "botdb_0002"


def upgrade() -> None:
    op.create_table("doomed", sa.Column("id", sa.Integer(), primary_key=True))
    op.execute("INSERT INTO no_such_table VALUES (1)")


def downgrade() -> None:
    op.drop_table("doomed")
'''

REBUILD_GUILDS = '''
"""Rebuild the guilds table in batch mode (copy, drop, rename on SQLite)."""
import sqlalchemy as sa
from alembic import op

revision = "rebuild_0001"
down_revision = None
branch_labels = ("app",)
depends_on = "botdb_0002"


def upgrade() -> None:
    with op.batch_alter_table("guilds", recreate="always") as batch:
        batch.alter_column("icon", existing_type=sa.String(255), type_=sa.String(512))


def downgrade() -> None:
    with op.batch_alter_table("guilds", recreate="always") as batch:
        batch.alter_column("icon", existing_type=sa.String(512), type_=sa.String(255))
'''

USER_MODELS = """
from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column
from botdb.models import Base


class GalleryChannel(Base):
    __tablename__ = "gallery_channels"
    channel_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(100))
"""


@pytest.fixture
async def db(make_db: MakeDB) -> botdb.Database:
    """An empty database: the migrations create the tables."""
    return await make_db()


@pytest.fixture
def other_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A second empty database on the same backend (to compare two schemas side by side)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'other.db'}"
        return
    import asyncpg

    base = str(request.getfixturevalue("pg_server_url"))
    name = f"botdb_mig_{secrets.token_hex(5)}"
    admin = base.rpartition("/")[0] + "/postgres"

    async def admin_execute(sql: str) -> None:
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin_execute(f'CREATE DATABASE "{name}"'))
    yield base.rpartition("/")[0] + "/" + name
    asyncio.run(admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def builtin_metadata() -> sa.MetaData:
    """A copy of the built-in tables on a MetaData of its own (Base.metadata stays as it is)."""
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    for table in builtin_tables():
        table.to_metadata(metadata)
    attach(metadata.tables["messages"])  # a copied table leaves its DDL listeners behind
    return metadata


def with_gallery(metadata: sa.MetaData) -> sa.MetaData:
    """Add a user's table, referencing a built-in one, to ``metadata``."""
    sa.Table(
        "gallery_channels",
        metadata,
        sa.Column(
            "channel_id",
            sa.BigInteger(),
            sa.ForeignKey("channels.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("label", sa.String(100), nullable=False),
    )
    return metadata


async def table_names(db: botdb.Database) -> set[str]:
    """The tables, without the full-text index's own (FTS5 on SQLite)."""
    async with db.engine.connect() as conn:
        names = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    return names - SUMMARY_TABLES - SEARCH_TABLES


def _snapshot(conn: sa.Connection) -> dict[str, Any]:
    """Everything the schema says, in a form two databases can be compared by."""
    inspector = sa.inspect(conn)
    schema: dict[str, Any] = {}
    for name in sorted(inspector.get_table_names()):
        if name == VERSION_TABLE or name in SEARCH_TABLES:
            continue
        columns = [
            (
                c["name"],
                str(c["type"]),
                c["nullable"],
                c.get("default"),
                str((c.get("computed") or {}).get("sqltext")),
            )
            for c in inspector.get_columns(name)
        ]
        schema[name] = {
            "columns": columns,
            "pk": inspector.get_pk_constraint(name),
            "fks": sorted(
                (
                    fk["name"] or "",
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    str(fk.get("options")),
                )
                for fk in inspector.get_foreign_keys(name)
            ),
            "unique": sorted(
                (u["name"] or "", tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(name)
            ),
            "checks": sorted(
                (c["name"] or "", c["sqltext"]) for c in inspector.get_check_constraints(name)
            ),
        }
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    else:
        rows = conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        )
    schema["indexes"] = sorted(
        (str(n), str(d)) for n, d in rows if not str(n).startswith(VERSION_TABLE)
    )
    # The stats' summaries: materialized views on PostgreSQL, trigger-kept tables on SQLite
    # (their triggers listed here, the full-text index's left to "search" below).
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            " AND name NOT LIKE 'messages_fts%'"
        )
    else:
        rows = conn.exec_driver_sql(
            "SELECT matviewname, definition FROM pg_matviews WHERE schemaname = 'public'"
        )
    schema["views"] = sorted((str(n), str(d)) for n, d in rows)
    # The full-text index: on SQLite the FTS5 table and its triggers (on PostgreSQL a GIN
    # index, compared with the indexes above).
    schema["search"] = []
    if conn.dialect.name == "sqlite":
        schema["search"] = sorted(
            (str(t), str(n), str(d))
            for t, n, d in conn.exec_driver_sql(
                "SELECT type, name, sql FROM sqlite_master WHERE name LIKE 'messages_fts%'"
                " AND (type = 'trigger' OR (type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'))"
            )
        )
    return schema


async def snapshot(db: botdb.Database) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(_snapshot)


# --- the built-in branch ------------------------------------------------------------------


async def test_upgrade_downgrade_upgrade_leaves_the_full_schema(db: botdb.Database) -> None:
    """upgrade head -> downgrade base -> upgrade head ends with every built-in table."""
    migrator = Migrator(db)
    assert await migrator.current() == []
    assert await migrator.upgrade() == REVISIONS
    assert await table_names(db) == BUILTIN | {VERSION_TABLE}
    assert await migrator.current() == HEADS
    assert await migrator.downgrade("base") == REVISIONS[::-1]
    assert await table_names(db) == {VERSION_TABLE}
    assert await migrator.current() == []
    assert await migrator.upgrade("head") == REVISIONS
    assert await table_names(db) == BUILTIN | {VERSION_TABLE}
    assert await migrator.upgrade() == []  # nothing left to do
    assert await migrator.pending() == []


async def test_migrated_schema_equals_create_all(db: botdb.Database, other_url: str) -> None:
    """Columns, types, defaults, computed column, keys, CHECKs and partial indexes match."""
    await Migrator(db).upgrade()
    async with botdb.connect(other_url) as other:
        await other.create_tables(builtin_metadata())  # other modules' test models left out
        expected = await snapshot(other)
    migrated = await snapshot(db)
    assert set(migrated) - {"indexes", "views", "search"} - SUMMARY_TABLES == BUILTIN
    assert set(migrated) == set(expected)
    for table in set(migrated) - {"indexes", "views", "search"}:
        assert migrated[table] == expected[table], table
    assert migrated["indexes"] == expected["indexes"]
    # The stats' summaries: the same views (PostgreSQL) or triggers (SQLite) both ways.
    assert migrated["views"] == expected["views"]
    assert migrated["search"] == expected["search"]
    if db.backend == "postgresql":
        assert {name for name, _ in migrated["views"]} == set(SUMMARIES)
        assert "gin" in dict(migrated["indexes"])["ix_messages_content_search"]
    else:
        assert set(migrated) >= SUMMARY_TABLES
        assert {name for name, _ in migrated["views"]} == set(sqlite_objects()["trigger"])
        assert {n for _, n, _ in migrated["search"]} == {
            "messages_fts",
            "messages_fts_insert",
            "messages_fts_delete",
            "messages_fts_update",
        }
    reactions = {c[0]: c for c in migrated["reactions"]["columns"]}
    assert "COALESCE" in reactions["emoji_key"][4].upper()
    partial = dict(migrated["indexes"])["ix_messages_live_channel_id_created_at"]
    assert "WHERE" in partial.upper()


async def test_check_is_empty_when_models_and_migrations_agree(db: botdb.Database) -> None:
    # Compared with the built-in tables only: other test modules add their own models to
    # Base.metadata in this process. `botdb migrate check` in a fresh process covers the
    # default metadata (test_cli_in_real_subprocesses_with_a_user_project).
    migrator = Migrator(db, metadata=builtin_metadata())
    await migrator.upgrade()
    assert await migrator.check() == []


async def test_check_reports_a_model_change_that_has_no_migration(db: botdb.Database) -> None:
    """A column and an index added to a model, with no revision, are both reported."""
    await Migrator(db).upgrade()
    metadata = builtin_metadata()
    guilds = metadata.tables["guilds"]
    guilds.append_column(sa.Column("banner", sa.String(255), nullable=True))
    sa.Index("ix_guilds_name", guilds.c.name)
    differences = await Migrator(db, metadata=metadata).check()
    assert any("add column" in d and "guilds.banner" in d for d in differences), differences
    assert any("add index ix_guilds_name" in d for d in differences), differences


async def test_check_refuses_a_database_that_is_not_up_to_date(db: botdb.Database) -> None:
    migrator = Migrator(db)
    await migrator.upgrade("botdb_0001")
    with pytest.raises(MigrationError, match="not up to date"):
        await migrator.check()


async def test_history_lists_revisions_oldest_first_with_applied_flags(
    db: botdb.Database,
) -> None:
    migrator = Migrator(db)
    await migrator.upgrade("botdb_0001")
    history = await migrator.history()
    assert [(h["revision"], h["is_applied"]) for h in history] == [
        (revision, revision == "botdb_0001") for revision in REVISIONS
    ]
    assert history[0]["branch_labels"] == [BUILTIN_BRANCH]
    assert history[1]["down_revision"] == "botdb_0001"
    assert await migrator.pending() == REVISIONS[1:]
    assert await migrator.heads() == HEADS


async def test_data_migration_seeds_counters_and_downgrade_removes_only_those(
    db: botdb.Database,
) -> None:
    """botdb_0002 seeds missing case counters; its downgrade undoes exactly that."""
    migrator = Migrator(db)
    await migrator.upgrade("botdb_0001")
    await db.execute_many("INSERT INTO guilds (id) VALUES ($1)", [(1,), (2,), (3,), (4,)])
    case = (
        "INSERT INTO moderation_cases (guild_id, case_number, user_id, moderator_id, action)"
        " VALUES ($1, $2, 7, 8, 'warn')"
    )
    await db.execute_many(case, [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (4, 1)])
    await db.execute("INSERT INTO guild_case_counters VALUES (2, 2)")  # kept as it is
    await migrator.upgrade()
    counters = "SELECT guild_id, last_case_number FROM guild_case_counters ORDER BY guild_id"
    assert [tuple(r) for r in await db.fetch(counters)] == [(1, 3), (2, 2), (4, 1)]
    # Guild 4 hands out a case number before the downgrade: its counter now matters.
    await db.execute("UPDATE guild_case_counters SET last_case_number = 2 WHERE guild_id = 4")
    assert await migrator.downgrade("botdb_0001") == REVISIONS[:0:-1]
    assert [tuple(r) for r in await db.fetch(counters)] == [(2, 2), (4, 2)]
    assert await db.fetchval("SELECT count(*) FROM kv_store") == 0
    await migrator.upgrade()  # re-running is idempotent
    assert [tuple(r) for r in await db.fetch(counters)] == [(1, 3), (2, 2), (4, 2)]


# --- errors --------------------------------------------------------------------------------


async def test_downgrade_past_base_raises_and_changes_nothing(db: botdb.Database) -> None:
    migrator = Migrator(db)
    with pytest.raises(MigrationError):
        await migrator.downgrade("-1")
    assert await table_names(db) == set()
    await migrator.upgrade("botdb_0001")
    with pytest.raises(MigrationError):
        await migrator.downgrade("-2")
    assert await migrator.current() == ["botdb_0001"]
    later = {"reaction_counts", "fsm_states", "fsm_locks", "ptb_persistence"}  # made by later revisions
    assert await table_names(db) == BUILTIN - later | {VERSION_TABLE}


async def test_unknown_revision_raises_and_changes_nothing(db: botdb.Database) -> None:
    migrator = Migrator(db)
    with pytest.raises(MigrationError, match="nope"):
        await migrator.upgrade("nope")
    with pytest.raises(MigrationError):
        await migrator.downgrade("nope")
    assert await table_names(db) == set()


async def test_failing_migration_rolls_back_everything(db: botdb.Database, tmp_path: Path) -> None:
    """One transaction: the built-in tables created before the failure are gone too."""
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "fail_0001_doomed.py").write_text(FAILING_REVISION)
    migrator = Migrator(db, script_locations=[versions])
    with pytest.raises(MigrationError, match="nothing was changed") as caught:
        await migrator.upgrade()
    assert isinstance(caught.value.__cause__, errors.UndefinedTableError)
    assert await table_names(db) == set()
    assert await migrator.current() == []


def test_invalid_branch_and_missing_directory_are_configuration_errors(tmp_path: Path) -> None:
    database = botdb.Database()
    with pytest.raises(errors.ConfigurationError, match="branch"):
        Migrator(database, branch="botdb")
    with pytest.raises(errors.ConfigurationError, match="branch"):
        Migrator(database, branch="no spaces")


async def test_missing_version_directory_is_a_configuration_error(
    db: botdb.Database, tmp_path: Path
) -> None:
    migrator = Migrator(db, script_locations=[tmp_path / "absent"])
    with pytest.raises(errors.ConfigurationError, match="not found"):
        await migrator.upgrade()
    assert await table_names(db) == set()


async def test_revision_needs_user_tables_and_a_directory(db: botdb.Database) -> None:
    migrator = Migrator(db, metadata=with_gallery(builtin_metadata()))
    with pytest.raises(errors.ConfigurationError, match="version_path"):
        await migrator.revision("x")
    with pytest.raises(errors.ConfigurationError, match="no tables of your own"):
        await Migrator(db, metadata=builtin_metadata()).revision("x", version_path="v")


# --- the user's branch ---------------------------------------------------------------------


async def test_user_revision_migrates_beside_builtins_and_downgrades_alone(
    db: botdb.Database, tmp_path: Path
) -> None:
    versions = tmp_path / "project" / "migrations"
    versions.mkdir(parents=True)
    metadata = with_gallery(builtin_metadata())
    migrator = Migrator(db, script_locations=[versions], metadata=metadata)
    await migrator.upgrade()
    path = await migrator.revision("add gallery channels")
    assert path.parent == versions
    source = path.read_text()
    assert "gallery_channels" in source
    assert "branch_labels" in source
    assert "('app',)" in source
    assert "depends_on" in source
    assert repr(HEADS[0]) in source
    assert "moderation_cases" not in source  # built-in tables are not the user's business
    user_rev = path.name.split("_")[0]
    assert await migrator.pending() == [user_rev]
    assert await migrator.upgrade() == [user_rev]
    assert "gallery_channels" in await table_names(db)
    assert await migrator.current() == sorted([*HEADS, user_rev])
    assert await migrator.check() == []
    applied = {h["revision"]: h["is_applied"] for h in await migrator.history()}
    assert applied == dict.fromkeys([*REVISIONS, user_rev], True)
    assert await migrator.downgrade("app@base") == [user_rev]
    assert await table_names(db) == BUILTIN | {VERSION_TABLE}
    assert await migrator.current() == HEADS
    # A fresh database gets both branches in dependency order.
    assert await migrator.downgrade("base") == REVISIONS[::-1]
    assert await migrator.upgrade() == [*REVISIONS, user_rev]


async def test_second_user_revision_continues_the_branch(
    db: botdb.Database, tmp_path: Path
) -> None:
    versions = tmp_path / "migrations"
    versions.mkdir()
    metadata = with_gallery(builtin_metadata())
    migrator = Migrator(db, script_locations=[versions], metadata=metadata)
    await migrator.upgrade()
    first = await migrator.revision("gallery")
    await migrator.upgrade()
    metadata.tables["gallery_channels"].append_column(sa.Column("emoji", sa.String(64)))
    second = await migrator.revision("gallery emoji")
    first_rev, second_rev = first.name.split("_")[0], second.name.split("_")[0]
    parents = {h["revision"]: h["down_revision"] for h in await migrator.history()}
    assert parents[second_rev] == first_rev
    with pytest.raises(MigrationError, match="not up to date"):
        await migrator.check()
    assert await migrator.upgrade() == [second_rev]
    assert await migrator.check() == []
    assert len(await migrator.heads()) == 2


async def test_concurrent_upgrades_apply_each_revision_once(make_db: MakeDB) -> None:
    """Shard processes migrating at startup: one applies, the others find nothing to do."""
    first, second = await make_db(), await make_db()
    results = await asyncio.gather(Migrator(first).upgrade(), Migrator(second).upgrade())
    assert sorted(results, key=len) == [[], REVISIONS]
    assert await Migrator(first).current() == HEADS


async def test_in_memory_sqlite_migrates_on_its_single_connection() -> None:
    async with botdb.connect("sqlite:///:memory:") as database:
        await database.fetchval("SELECT 1")  # the raw API holds the only pooled connection
        assert await Migrator(database).upgrade() == REVISIONS
        assert await database.fetchval("SELECT count(*) FROM guilds") == 0


async def test_batch_rebuild_on_sqlite_keeps_rows_that_reference_the_table(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Foreign keys are off while batch mode drops the old copy, so nothing cascades."""
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "rebuild_0001_guilds.py").write_text(REBUILD_GUILDS)
    async with botdb.connect(sqlite_url) as database:
        migrator = Migrator(database, script_locations=[versions])
        await migrator.upgrade("botdb@head")
        await database.execute("INSERT INTO guilds (id) VALUES (1)")
        await database.execute("INSERT INTO channels (id, guild_id) VALUES (10, 1)")
        assert await migrator.upgrade() == ["rebuild_0001"]
        assert await database.fetchval("SELECT count(*) FROM channels") == 1
        assert await database.fetchval("PRAGMA foreign_keys") == 1
        await migrator.downgrade("app@base")
        assert await database.fetchval("SELECT count(*) FROM channels") == 1


# --- CLI -----------------------------------------------------------------------------------


def test_cli_upgrade_current_history_check_downgrade(db_url: str) -> None:
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, ["migrate", *args, "--url", db_url])

    result = invoke("current", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "current": [],
        "heads": HEADS,
        "pending": REVISIONS,
        "up_to_date": False,
    }
    result = invoke("upgrade", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["applied"] == REVISIONS
    result = invoke("history", "--json")
    assert [h["is_applied"] for h in json.loads(result.stdout)] == [True] * len(REVISIONS)
    assert invoke("history").exit_code == 0
    result = invoke("check", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True, "differences": []}
    result = invoke("downgrade", "base", "--json")
    assert json.loads(result.stdout)["current"] == []
    past_base = invoke("downgrade", "-1")
    assert past_base.exit_code == 1
    assert "MigrationError" in past_base.output
    assert invoke("upgrade", "nope").exit_code == 1
    assert json.loads(invoke("current", "--json").stdout)["current"] == []


def test_cli_in_real_subprocesses_with_a_user_project(sqlite_url: str, tmp_path: Path) -> None:
    """A project with its own models module: check fails (exit 4), revision, upgrade, ok."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "migrations").mkdir()
    (project / "mybot_models.py").write_text(textwrap.dedent(USER_MODELS))
    env = {**os.environ, "BOTDB_MIGRATIONS_PATH": str(project / "migrations")}

    def botdb_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "botdb", "migrate", *args, "--url", sqlite_url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=project,
            env=env,
        )

    assert botdb_cli("upgrade").returncode == 0
    drift = botdb_cli("check", "--models", "mybot_models", "--json")
    assert drift.returncode == 4, drift.stderr
    assert json.loads(drift.stdout)["differences"] == ["add table gallery_channels"]
    made = botdb_cli("revision", "-m", "gallery", "--models", "mybot_models", "--json")
    assert made.returncode == 0, made.stderr
    assert Path(json.loads(made.stdout)["path"]).parent == project / "migrations"
    assert botdb_cli("upgrade").returncode == 0
    assert botdb_cli("check", "--models", "mybot_models").returncode == 0
    current = botdb_cli("current", "--json")
    assert current.returncode == 0, current.stderr
    data = json.loads(current.stdout)
    assert data["up_to_date"] is True
    assert len(data["current"]) == 2
    assert HEADS[0] in data["current"]
    missing = botdb_cli("check", "--models", "no_such_module")
    assert missing.returncode == 1
    assert "no_such_module" in missing.stderr


# -- check() sees every kind of model change ----------------------------------------------


async def test_check_reports_a_changed_server_default(db: botdb.Database) -> None:
    """A server default changed in a model, with no revision, is reported by check()."""
    await Migrator(db).upgrade()
    metadata = builtin_metadata()
    column = metadata.tables["guild_configs"].c.settings
    column.server_default = sa.DefaultClause(sa.text("'{\"a\": 1}'"))
    differences = await Migrator(db, metadata=metadata).check()
    assert any("guild_configs.settings" in d for d in differences), differences


async def test_check_reports_a_changed_nullable(db: botdb.Database) -> None:
    """A column made NOT NULL in a model, with no revision, is reported by check()."""
    await Migrator(db).upgrade()
    metadata = builtin_metadata()
    metadata.tables["guild_configs"].c.prefix.nullable = False
    differences = await Migrator(db, metadata=metadata).check()
    assert any("guild_configs.prefix" in d for d in differences), differences


async def test_check_reports_a_changed_partial_index_where(db: botdb.Database) -> None:
    """A partial index whose WHERE changed in a model, with no revision, is reported."""
    await Migrator(db).upgrade()
    metadata = builtin_metadata()
    (index,) = (
        ix
        for ix in metadata.tables["messages"].indexes
        if ix.name == "ix_messages_live_channel_id_created_at"
    )
    index.dialect_options[db.backend]["where"] = sa.column("deleted") == sa.true()
    differences = await Migrator(db, metadata=metadata).check()
    assert differences == [
        "modify index where ix_messages_live_channel_id_created_at on messages: "
        + (
            "'deleted=false' -> 'deleted=true'"
            if db.backend == "postgresql"
            else "'deleted=0' -> 'deleted=1'"
        )
    ], differences


async def test_check_reads_common_server_defaults_as_equal(db: botdb.Database) -> None:
    """Defaults like '', a quote, 0, now(), false and '[]' migrate and check as unchanged."""
    await Migrator(db).upgrade()
    metadata = builtin_metadata()
    table = sa.Table(
        f"review_defaults_{secrets.token_hex(3)}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a", sa.Integer, server_default="0", nullable=False),
        sa.Column("b", sa.Integer, server_default=sa.text("0")),
        sa.Column("c", sa.String(20), server_default="hello"),
        sa.Column("d", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("e", sa.Boolean, server_default=sa.false()),
        sa.Column("f", sa.String(20), server_default=""),
        sa.Column("g", sa.Float, server_default="1.5"),
        sa.Column("h", sa.String(20), server_default="it's"),
        sa.Column("i", sa.JSON, server_default=sa.text("'[]'")),
    )
    async with db.engine.begin() as conn:
        await conn.run_sync(table.create)
    assert await Migrator(db, metadata=metadata).check() == []
    table.c.c.server_default = sa.DefaultClause("bye")
    assert await Migrator(db, metadata=metadata).check() == [
        f"modify server default {table.name}.c: 'hello' -> 'bye'"
    ]
