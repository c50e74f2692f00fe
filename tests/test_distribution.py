"""``botdb distribute`` (Citus): the one classification of botdb's tables, the keys it leaves,
and its refusals.

The tests without a backend parameter run in every test run (no Citus needed: the
classification, the transformed keys, the refusals on SQLite and on plain PostgreSQL). The
``[citus]`` tests run on a real cluster, only with ``BOTDB_TEST_CITUS=1`` (``make test-citus``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import botdb
from botdb import errors
from botdb.cli import app
from botdb.models import Base
from botdb.ops import distribution
from botdb.ops.distribution import ANCHOR, PLACEMENTS, placements, transformed_keys
from botdb.recorder import (
    ChannelInfo,
    MemberJoined,
    MessageCreated,
    MessageDeleted,
    MessageEdited,
    ReactionAdded,
)
from tests.helpers import MakeDB

CITUS_CONTRACT = True

_KEYS = """SELECT c.conrelid::regclass::text AS table, c.contype::text AS kind,
    ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)::text[]
          AS columns
    FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = 'public' AND c.contype IN ('p', 'u') AND NOT t.relispartition"""
_UNIQUE_INDEXES = """SELECT t.relname AS table, i.relname AS name,
    ARRAY(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(n, o)
          JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o)::text[]
          AS columns
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = 'public' AND x.indisunique AND t.relkind = 'r'"""
_TABLES = """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
    AND c.relname NOT IN ('citus_tables', 'citus_schemas')"""


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """PostgreSQL (the refusals), or the Citus cluster for the tests that ask for it."""
    return str(getattr(request, "param", "postgresql"))


def _metadata_keys() -> dict[str, list[tuple[str, list[str]]]]:
    """Each model table's primary key, unique constraints and unique indexes."""
    keys: dict[str, list[tuple[str, list[str]]]] = {}
    for table in Base.metadata.tables.values():
        found = [("p", [c.name for c in table.primary_key.columns])]
        for constraint in table.constraints:
            if isinstance(constraint, sa.UniqueConstraint):
                found.append(("u", [c.name for c in constraint.columns]))
        for index in table.indexes:
            if index.unique:
                found.append(("u", [c.name for c in index.columns]))
        keys[table.name] = found
    return keys


def test_every_model_table_is_placed() -> None:
    assert distribution.unclassified(set(Base.metadata.tables), PLACEMENTS) == []


def test_every_chat_scoped_table_is_distributed_by_guild_and_colocated() -> None:
    for name, table in Base.metadata.tables.items():
        placement = PLACEMENTS[name]
        if name == ANCHOR:
            assert (placement.kind, placement.column) == ("distributed", "id")
        elif "guild_id" in table.c and not table.c.guild_id.nullable and name.startswith("fsm"):
            assert placement.kind == "local", name  # aiogram's state, kept beside its locks
        elif "guild_id" in table.c and not table.c.guild_id.nullable:
            assert placement.kind == "distributed", name
            assert (placement.column, placement.colocate_with) == ("guild_id", ANCHOR), name
        elif "guild_id" in table.c:
            # NULL for direct messages: Citus refuses NULL distribution values.
            assert placement.column != "guild_id", name


def test_every_key_of_a_distributed_table_holds_its_distribution_column() -> None:
    """The keys as ``distribute`` leaves them (the model's keys, widened): each PRIMARY KEY,
    UNIQUE constraint and unique index of a distributed table includes its column."""
    after = transformed_keys(_metadata_keys(), PLACEMENTS)
    distributed = [n for n, p in PLACEMENTS.items() if p.kind == "distributed"]
    for name in distributed:
        if name not in after:
            continue
        column = PLACEMENTS[name].column
        assert after[name], name
        for kind, cols in after[name]:
            assert column in cols, (name, kind, cols)
        assert sum(1 for kind, _ in after[name] if kind == "p") == 1, name


async def test_a_migrated_database_has_only_placed_tables_and_distributable_keys(
    make_db: MakeDB, pg_url: str
) -> None:
    db = await make_db(url=pg_url)
    await db.migrate()
    tables = {r["relname"] for r in await db.fetch(_TABLES)}
    assert distribution.unclassified(tables, PLACEMENTS) == []
    keys: dict[str, list[tuple[str, list[str]]]] = {}
    for row in await db.fetch(_KEYS):
        keys.setdefault(row["table"], []).append((row["kind"], list(row["columns"])))
    after = transformed_keys(keys, PLACEMENTS)
    for name, placement in PLACEMENTS.items():
        if placement.kind == "distributed" and name in after:
            assert all(placement.column in cols for _, cols in after[name]), name


def test_a_key_that_cannot_take_the_column_is_refused() -> None:
    keys = {"members": [("p", ["guild_id", "user_id"]), ("u", ["user_id"])]}
    with pytest.raises(errors.DistributionError, match=r"members.*\(user_id\).*guild_id"):
        transformed_keys(keys, PLACEMENTS)
    widened = transformed_keys({"roles": [("p", ["id"]), ("u", ["id", "guild_id"])]}, PLACEMENTS)
    assert widened == {"roles": [("p", ["id", "guild_id"])]}


def test_placements_of_the_bots_own_tables() -> None:
    own = placements({"quests": "distributed:guild_id", "items": "reference", "log": "local"})
    assert own["quests"].describe() == "distributed by guild_id"
    assert own["quests"].colocate_with == ANCHOR
    assert (own["items"].kind, own["log"].kind) == ("reference", "local")
    for bad in ("sharded", "distributed:", "reference:id", "distributed:Guild-Id"):
        with pytest.raises(errors.DistributionError, match="placement"):
            placements({"quests": bad})


async def test_an_unplaced_model_table_is_refused(make_db: MakeDB, pg_url: str) -> None:
    db = await make_db(url=pg_url)
    metadata = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    sa.Table("quests", metadata, sa.Column("id", sa.BigInteger, primary_key=True))
    with pytest.raises(errors.DistributionError, match="no placement for quests"):
        await distribution.distribute(db, metadata=metadata)


async def _schema(db: botdb.Database) -> list[Any]:
    return sorted(tuple(r) for r in await db.fetch(_KEYS))


async def test_sqlite_is_refused(make_db: MakeDB, sqlite_url: str) -> None:
    db = await make_db(url=sqlite_url, create_tables=True)
    with pytest.raises(errors.DistributionError, match="SQLite"):
        await db.distribute()


async def test_plain_postgresql_is_refused_and_nothing_changes(
    make_db: MakeDB, pg_url: str
) -> None:
    db = await make_db(url=pg_url)
    with pytest.raises(errors.DistributionError, match="migration head"):
        await db.distribute()
    await db.migrate()
    before = await _schema(db)
    with pytest.raises(errors.DistributionError, match="not a Citus coordinator"):
        await db.distribute()
    with pytest.raises(errors.DistributionError, match="not a Citus coordinator"):
        await db.distribute(dry_run=True)
    assert await _schema(db) == before


def test_cli_refusals_exit_non_zero(pg_url: str, sqlite_url: str) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--url", sqlite_url]).exit_code == 0
    refused = runner.invoke(app, ["distribute", "--url", sqlite_url])
    assert refused.exit_code == 1
    assert "SQLite" in refused.output
    assert runner.invoke(app, ["init", "--url", pg_url]).exit_code == 0
    refused = runner.invoke(app, ["distribute", "--url", pg_url, "--json"])
    assert refused.exit_code == 1
    document = json.loads(refused.stdout)
    assert document["error"] == "DistributionError"
    assert "Citus coordinator" in document["message"]
    refused = runner.invoke(app, ["distribute", "--url", pg_url, "--table", "quests=sharded"])
    assert refused.exit_code == 1
    assert "placement" in refused.output


# -- on a Citus cluster (BOTDB_TEST_CITUS=1) ----------------------------------------------


@pytest.mark.parametrize("backend", ["citus"], indirect=True)
async def test_citus_every_unique_key_of_a_distributed_table_holds_its_column(
    db: botdb.Database,
) -> None:
    """Read from the catalog of the distributed database: every PRIMARY KEY, UNIQUE
    constraint and unique index of a distributed table includes its distribution column."""
    columns = {
        r["name"]: r["column"]
        for r in await db.fetch(
            "SELECT logicalrelid::regclass::text AS name, "
            "column_to_column_name(logicalrelid, partkey) AS column "
            "FROM pg_dist_partition WHERE partmethod = 'h'"
        )
    }
    expected = {n for n, p in PLACEMENTS.items() if p.kind == "distributed"}
    assert set(columns) == expected
    for name, placement in PLACEMENTS.items():
        if placement.kind == "distributed":
            assert columns[name] == placement.column
    seen = 0
    for row in [*await db.fetch(_KEYS), *await db.fetch(_UNIQUE_INDEXES)]:
        if row["table"] in columns:
            assert columns[row["table"]] in row["columns"], tuple(row)
            seen += 1
    assert seen >= len(columns)
    groups = await db.fetch(
        "SELECT logicalrelid::regclass::text AS name, colocationid FROM pg_dist_partition "
        "WHERE partmethod = 'h'"
    )
    anchor = next(r["colocationid"] for r in groups if r["name"] == ANCHOR)
    for row in groups:
        placement = PLACEMENTS[row["name"]]
        assert (row["colocationid"] == anchor) == (
            placement.colocate_with == ANCHOR or (row["name"] == ANCHOR)
        ), row["name"]


@pytest.mark.parametrize("backend", ["citus"], indirect=True)
async def test_citus_a_key_without_guild_id_is_refused_with_a_typed_error(
    db: botdb.Database,
) -> None:
    with pytest.raises(errors.NotSupportedError):
        await db.execute("ALTER TABLE members ADD CONSTRAINT members_user_uniq UNIQUE (user_id)")
    with pytest.raises(errors.NotSupportedError):
        await db.execute("CREATE UNIQUE INDEX members_user_idx ON members (user_id)")
    count = await db.fetchval(
        "SELECT count(*) FROM pg_constraint WHERE conname = 'members_user_uniq'"
    )
    assert count == 0


@pytest.mark.parametrize("backend", ["citus"], indirect=True)
async def test_citus_distribute_again_does_nothing(
    db: botdb.Database, citus_server_url: str
) -> None:
    report = await db.distribute()
    assert report["distributed"] is False
    assert report["tables"]["messages"] == "distributed by guild_id"
    assert report["tables"]["users"] == "reference"
    assert report["tables"]["scheduled_jobs"] == "local"
    placed = await distribution.distribution(db)
    assert placed is not None
    assert placed["guilds"] == "distributed by id"
    assert placed["command_history"] == "distributed by user_id"
    runner = CliRunner()
    arguments = ["distribute", "--url", citus_server_url, "--json"]
    done = await asyncio.to_thread(runner.invoke, app, arguments)  # the CLI runs its own loop
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["distributed"] is False


@pytest.mark.parametrize("backend", ["citus"], indirect=True)
async def test_citus_a_coordinator_without_workers_is_refused(
    db: botdb.Database, citus_server_url: str
) -> None:
    from tests.conftest import CITUS_URL, _with_database

    name = "botdb_test_noworkers"
    admin = await asyncpg.connect(CITUS_URL, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(CITUS_URL, name)
    try:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            await conn.execute("CREATE EXTENSION citus")
        finally:
            await conn.close()
        async with botdb.connect(url) as lone:
            await lone.migrate()
            with pytest.raises(errors.DistributionError, match="no active worker"):
                await lone.distribute()
            assert await distribution.distribution(lone) == {}
    finally:
        admin = await asyncpg.connect(CITUS_URL, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.mark.parametrize("backend", ["citus"], indirect=True)
async def test_citus_botdbs_chat_scoped_statements_are_single_shard(
    db: botdb.Database, citus_server_url: str, tmp_path: Path
) -> None:
    """botdb's own statements for chat-scoped tables each touch one shard: run through a role
    whose sessions have ``citus.multi_task_query_log_level = error`` (Citus then fails any
    statement spread over several shards), the recorder, the cases and config services, the
    repositories and the raw API work on two guilds; the checks read with the ordinary role."""
    # The paging bookkeeping table made by the ordinary role: the strict one then owns
    # nothing and can simply be dropped.
    await db.messages.find_page(limit=1, filters={"guild_id": 1})
    role = f"botdb_router_{secrets.token_hex(4)}"
    database = urlsplit(citus_server_url).path.lstrip("/")
    await db.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    await db.execute(
        f'ALTER ROLE "{role}" IN DATABASE "{database}" '
        "SET citus.multi_task_query_log_level = 'error'"
    )
    server = urlsplit(citus_server_url)
    strict_url = urlunsplit(server._replace(netloc=f"{role}@{server.hostname}:{server.port}"))
    guilds = (1_150_000_000_000_000_001, 1_150_000_000_000_000_002)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        async with botdb.connect(strict_url, recorder_spool_path=str(tmp_path / "spool")) as strict:
            assert await strict.fetchval("SHOW citus.multi_task_query_log_level") == "error"
            with pytest.raises(errors.BotDBError, match=r"multi-shard|multi-task|shards"):
                await strict.fetchval("SELECT count(*) FROM messages")
            events: list[Any] = []
            for n, guild in enumerate(guilds):
                channel = 2_000 + n
                events.append(ChannelInfo(channel, guild, name="general", type="text"))
                events.append(MemberJoined(guild, 3_000, at))
                for m in range(1, 6):
                    events.append(MessageCreated(m * 10 + n, guild, channel, 3_000, at, f"hi {m}"))
                events.append(ReactionAdded(10 + n, guild, channel, 3_001, "👍", at))
                events.append(MessageEdited(20 + n, guild, channel, at, content="edited"))
                events.append(MessageDeleted(30 + n, guild, channel, at))
            await strict.recorder.record_many(events)
            await strict.recorder.flush()
            # Again: every message is stored now, so the batch takes the merging path.
            await strict.recorder.record_many(events)
            await strict.recorder.flush()
            for guild in guilds:
                case = await strict.cases.create(guild, 3_000, 3_001, "warn", reason="spam")
                assert (await strict.cases.get(guild, case.case_number)).reason == "spam"
                assert len(await strict.cases.list_for_guild(guild)) == 1
                await strict.cases.close(guild, case.case_number)
                await strict.config.set(guild, prefix="?")
                assert (await strict.config.get(guild)).prefix == "?"
                page = await strict.messages.find_page(
                    limit=3, filters={"guild_id": guild}, order_by="-created_at"
                )
                assert len(page.items) == 3
                assert await strict.members.get_by_id((guild, 3_000)) is not None
                row = await strict.fetchrow(
                    "SELECT content FROM messages WHERE id = $1 AND guild_id = $2",
                    20 + guilds.index(guild),
                    guild,
                )
                assert row["content"] == "edited"
    finally:
        await db.execute(f'DROP ROLE "{role}"')
    assert await db.fetchval("SELECT count(*) FROM messages") == 10
    assert await db.fetchval("SELECT count(*) FROM reactions") == 2
    assert await db.fetchval("SELECT count(*) FROM moderation_cases") == 2


@pytest.mark.parametrize("backend", ["citus"], indirect=True)
async def test_citus_the_tables_left_on_the_coordinator_keep_working(db: botdb.Database) -> None:
    """The scheduler claims with FOR UPDATE SKIP LOCKED on ``scheduled_jobs``, scoped settings
    live in ``kv_store``: both local tables on the coordinator, beside distributed ones."""
    ran: list[str] = []

    async def greet(job: Any) -> None:
        ran.append(job.key)

    db.scheduler.add_handler("greet", greet)
    for n in range(5):
        await db.scheduler.schedule("greet", delay=0, key=f"g{n}")
    assert await db.scheduler.run_until_idle(concurrency=2) == 5
    assert sorted(ran) == [f"g{n}" for n in range(5)]
    scoped = db.scoped("economy")
    scoped.register_member(balance=0)
    await scoped.member(1, 2).set("balance", 5)
    assert await scoped.member(1, 2).get("balance") == 5
    placed = await distribution.distribution(db)
    assert placed is not None
    assert "scheduled_jobs" not in placed  # an ordinary table, outside Citus's metadata
    assert placed["user_reminders"] == "local"  # Citus-local: keeps its key to users
