"""Partitioned messages (PostgreSQL) and retention: ``db.partition_messages``,
``db.retention``, partitions made ahead by ``optimize``, the CLI commands."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import botdb
from botdb import errors
from botdb.cli import app
from botdb.migrations import Migrator
from botdb.models.snowflake import time_snowflake
from botdb.ops import partitions
from botdb.ops.transfer import transfer
from botdb.recorder import (
    AttachmentInfo,
    MentionInfo,
    MessageCreated,
    MessageDeleted,
    MessageEdited,
    ReactionAdded,
    ReactionCounted,
)
from tests.helpers import MakeDB

NOW = datetime.now(UTC)
G, C, U, V = 1000, 2000, 3000, 3001
FAMILY = [table for table, _ in partitions.PARTITIONED_TABLES]
KEYS = {
    "messages": "id, guild_id",
    "attachments": "id",
    "mentions": "message_id, guild_id, target_type, target_id",
    "reactions": "id",
    "reaction_counts": "message_id, guild_id, emoji_key",
}


def _at(days_ago: float, n: int = 0) -> tuple[int, datetime]:
    """A snowflake id and its time, ``days_ago`` before now (``n`` tells ids apart)."""
    moment = NOW - timedelta(days=days_ago)
    return time_snowflake(moment) + n, moment


def _message(days_ago: float, n: int, content: str) -> MessageCreated:
    mid, moment = _at(days_ago, n)
    return MessageCreated(
        id=mid,
        guild_id=G,
        channel_id=C,
        author_id=U if n % 2 else V,
        created_at=moment,
        content=content,
        attachments=(AttachmentInfo(position=0, filename=f"f{n}.png"),) if n % 3 == 0 else (),
        mentions=(MentionInfo("user", U),) if n % 4 == 0 else (),
    )


async def _populate(db: botdb.Database) -> list[MessageCreated]:
    """Messages 200 to 0 days old (a few months of partitions), with children."""
    created = [
        _message(days, n, f"word{n % 5} raid night {n}")
        for n, days in enumerate([200, 190, 150, 120, 95, 80, 60, 40, 20, 10, 5, 1])
    ]
    await db.recorder.record_many(created)
    await db.recorder.record_many(
        ReactionAdded(m.id, G, C, U, "👍", m.created_at + timedelta(seconds=1))
        for m in created[::2]
    )
    await db.recorder.record_many(ReactionCounted(m.id, G, C, "🔥", 3) for m in created[1::3])
    await db.recorder.flush()
    return created


async def _snapshot(db: botdb.Database) -> dict[str, Any]:
    await db.execute("REFRESH MATERIALIZED VIEW stats_message_hourly")
    tables = {
        table: [dict(r) for r in await db.fetch(f"SELECT * FROM {table} ORDER BY {KEYS[table]}")]
        for table in FAMILY
    }
    page = await db.messages.find_page(limit=5, filters={"guild_id": G}, order_by="-created_at")
    search = await db.messages.search("raid", guild_id=G, limit=50)
    return {
        "tables": tables,
        "page": [m.id for m in page.items],
        "search": sorted(hit.message.id for hit in search.items),
        "stats": await db.fetch("SELECT * FROM stats_message_hourly ORDER BY 1, 2, 3, 4"),
    }


@pytest.fixture
def backend() -> str:
    """PostgreSQL unless a test says otherwise (partitioning is PostgreSQL's)."""
    return "postgresql"


@pytest.fixture
async def pg_db(make_db: MakeDB, pg_url: str) -> botdb.Database:
    return await make_db(url=pg_url, create_tables=True, recorder_flush_interval=30.0)


async def test_conversion_keeps_data_and_the_recorder_keeps_working(pg_db: botdb.Database) -> None:
    db = pg_db
    created = await _populate(db)
    before = await _snapshot(db)
    report = await db.partition_messages(batch_size=5)
    assert report["converted"]
    assert report["rows"]["messages"] == len(created)
    assert (
        await db.fetchval("SELECT relkind::text FROM pg_class WHERE oid = 'messages'::regclass")
        == "p"
    )
    assert await _snapshot(db) == before
    # Every family table is partitioned the same way and has its DEFAULT partition.
    for table in FAMILY:
        parts = await db.fetch(partitions._PARTITIONS, table)
        assert f"{table}_default" in {p["name"] for p in parts}
        assert len(parts) == len(report["partitions"]) + 1
    # The GIN search index exists on each partition.
    gin = await db.fetchval(
        "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'messages_p%' "
        "AND indexdef LIKE '%USING gin%'"
    )
    assert gin == len(report["partitions"])
    # botdb info reports a partitioned table with its partitions' size.
    tables = {t["name"]: t for t in (await db.info())["tables"]}
    assert tables["messages"]["size_bytes"] > 0
    assert not [name for name in tables if name.startswith("messages_")]
    # A second call changes nothing.
    assert (await db.partition_messages())["converted"] is False

    # The recorder's ON CONFLICT paths on the partitioned tables: a replayed message, an edit
    # and a deletion of an old message, a new reaction on it, counts, a brand new message.
    old = created[0]
    fresh = _message(0, 99, "fresh raid")
    await db.recorder.record_many(
        [
            old,
            MessageEdited(
                old.id,
                G,
                C,
                NOW,
                content="edited raid",
                attachments=(AttachmentInfo(position=0, filename="new.png"),),
            ),
            ReactionAdded(old.id, G, C, V, "🎉", NOW),
            ReactionAdded(old.id, G, C, U, "👍", NOW),
            ReactionCounted(old.id, G, C, "🔥", 7),
            MessageDeleted(created[1].id, G, C, NOW),
            fresh,
        ]
    )
    await db.recorder.flush()
    row = await db.fetchrow("SELECT content, edited_at FROM messages WHERE id = $1", old.id)
    assert row["content"] == "edited raid"
    assert row["edited_at"] is not None
    assert (
        await db.fetchval("SELECT filename FROM attachments WHERE message_id = $1", old.id)
        == "new.png"
    )
    assert await db.fetchval("SELECT count(*) FROM reactions WHERE message_id = $1", old.id) == 2
    assert await db.fetchval("SELECT count FROM reaction_counts WHERE message_id = $1", old.id) == 7
    assert await db.fetchval("SELECT deleted FROM messages WHERE id = $1", created[1].id)
    hits = await db.messages.search("raid", guild_id=G, limit=50)
    assert fresh.id in {h.message.id for h in hits.items}
    page = await db.messages.find_page(limit=2, filters={"guild_id": G}, order_by="-created_at")
    assert [m.id for m in page.items] == [fresh.id, created[-1].id]
    # A hard delete cascades across the partitioned children.
    await db.execute("DELETE FROM messages WHERE id = $1 AND guild_id = $2", old.id, G)
    assert await db.fetchval("SELECT count(*) FROM reactions WHERE message_id = $1", old.id) == 0


async def test_retention_drops_old_partitions_and_keeps_the_rest(pg_db: botdb.Database) -> None:
    db = pg_db
    created = await _populate(db)
    await db.partition_messages()
    layout = await partitions.partitioning(db)
    assert layout is not None
    assert layout["by"] == "id"
    assert layout["interval"] == "month"
    # An id beyond every partition lands in DEFAULT and never fails.
    far, _ = _at(-3000, 1)
    await db.messages.create(id=far, guild_id=G, channel_id=C, content="future")
    assert await db.fetchval("SELECT count(*) FROM messages_default") == 1

    dry = await db.retention("90d", dry_run=True)
    assert dry["mode"] == "partitions"
    assert dry["dropped"]
    assert await db.fetchval("SELECT count(*) FROM messages") == len(created) + 1
    report = await db.retention("90d")
    assert report["dropped"] == dry["dropped"]
    bound = time_snowflake(NOW - timedelta(days=90))
    kept = [m.id for m in created if m.id >= bound]
    remaining = [r["id"] for r in await db.fetch("SELECT id FROM messages ORDER BY id")]
    # Whole partitions only: every message past the bound stays, plus those sharing the
    # bound's partition; nothing older than the oldest kept partition remains.
    assert set(kept) <= set(remaining)
    assert far in remaining
    oldest = min(
        p["from"]
        for p in (await partitions.partitioning(db))["partitions"]
        if p["from"] is not None
    )
    assert all(mid >= oldest for mid in remaining)
    assert len(remaining) < len(created) + 1
    for table in FAMILY:
        names = {p["name"] for p in await db.fetch(partitions._PARTITIONS, table)}
        assert not names & {n.replace("messages", table, 1) for n in report["dropped"]}
    assert (
        await db.fetchval(
            "SELECT count(*) FROM reactions r LEFT JOIN messages m ON m.id = r.message_id "
            "WHERE m.id IS NULL"
        )
        == 0
    )
    assert (await db.retention("90d"))["dropped"] == []
    # History imported after its partition went lands in DEFAULT; retention deletes it there.
    late, moment = _at(200, 7)
    await db.messages.create(id=late, guild_id=G, channel_id=C, created_at=moment)
    assert await db.fetchval("SELECT count(*) FROM messages_default WHERE id = $1", late) == 1
    again = await db.retention("90d")
    assert again["dropped"] == []
    assert again["deleted"] == 1
    assert await db.fetchval("SELECT count(*) FROM messages WHERE id = $1", far) == 1


async def test_optimize_makes_partitions_ahead(pg_db: botdb.Database) -> None:
    db = pg_db
    await _populate(db)
    await db.partition_messages(interval="week")
    later = NOW + timedelta(weeks=10)
    made = await partitions.ensure_partitions(db, ahead=2, now=later)
    assert len(made["created"]) == 3
    assert made["skipped"] == []
    assert (await partitions.ensure_partitions(db, ahead=2, now=later))["created"] == []
    report = await db.optimize()
    assert report["partitions"]["partitioned"] is True
    # A range whose rows already went to DEFAULT is skipped, not failed.
    mid, _ = _at(-7 * 30, 5)
    await db.messages.create(id=mid, guild_id=G, channel_id=C)
    skipped = await partitions.ensure_partitions(db, ahead=1, now=NOW + timedelta(weeks=30))
    assert len(skipped["skipped"]) == 1


async def test_the_conversion_reports_rows_copied_per_batch(pg_db: botdb.Database) -> None:
    db = pg_db
    created = await _populate(db)
    await db.analyze()
    calls: list[tuple[str, int, int | None]] = []
    report = await partitions.partition_messages(
        db, batch_size=5, progress=lambda *call: calls.append(call)
    )
    copies = [c for c in calls if c[0] == "copy messages"]
    # A first call at 0, one per batch of 5, each of the estimated (analyzed) 12 rows.
    assert copies == [("copy messages", n, len(created)) for n in (0, 5, 10, 12)]
    assert report["rows"]["messages"] == len(created)
    assert [c[0] for c in calls if c[1] == 0] == [*(f"copy {t}" for t in FAMILY), "swap"]


async def test_analyze_merges_the_pending_search_entries_of_every_partition(
    pg_db: botdb.Database,
) -> None:
    """``db.analyze`` (all tables or the message tables) on a partitioned database: the
    partitions' GIN indexes are cleaned, the partitioned parent index (which holds no entry)
    is left alone instead of failing."""
    db = pg_db
    await _populate(db)
    await db.partition_messages()
    gin = """SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_am am ON am.oid = i.relam WHERE am.amname = 'gin' AND i.relkind = 'i'
        AND x.indrelid IN (SELECT relid FROM pg_partition_tree('messages'))"""
    indexes = [row["relname"] for row in await db.fetch(gin)]
    assert len(indexes) > 5
    for turn, tables in enumerate((None, ["messages", "reactions"])):
        await db.recorder.record_many(
            _message(days, 100 + 10 * turn + n, f"later words {n}")
            for n, days in enumerate([150, 60, 3, 2, 1])
        )
        await db.recorder.flush()
        report = await db.analyze(tables)
        assert report["tables"] == tables
        for index in indexes:
            left = await db.fetchval("SELECT gin_clean_pending_list($1::regclass)", index)
            assert left == 0, index
    hits = await db.messages.search("later words", guild_id=G)
    assert len(hits.items) == 10


async def test_time_bounded_queries_prune_partitions(pg_db: botdb.Database) -> None:
    db = pg_db
    await _populate(db)
    await db.partition_messages()
    await db.execute("ANALYZE messages")
    layout = await partitions.partitioning(db)
    assert layout is not None
    since = time_snowflake(NOW - timedelta(days=7))
    plan = "\n".join(
        r[0]
        for r in await db.fetch(
            f"EXPLAIN SELECT * FROM messages WHERE guild_id = {G} AND id >= {since} "
            "ORDER BY id DESC LIMIT 10"
        )
    )
    scanned = {p["name"] for p in layout["partitions"] if re.search(rf"\b{p['name']}\b", plan)}
    # Only the ranges reaching past the bound (and DEFAULT, which may hold any id).
    wanted = {p["name"] for p in layout["partitions"] if p["to"] is None or p["to"] > since}
    assert scanned == wanted
    assert len(wanted) < len(layout["partitions"]) - 2


async def test_refusals_change_nothing(pg_db: botdb.Database) -> None:
    db = pg_db
    await db.execute("INSERT INTO guilds (id, platform) VALUES ($1, 'telegram')", 7)
    await db.execute("INSERT INTO channels (id, guild_id) VALUES ($1, $1)", 7)
    await db.messages.create(id=42, guild_id=7, channel_id=7)
    with pytest.raises(errors.PartitioningError, match="not Discord snowflakes"):
        await db.partition_messages()
    with pytest.raises(errors.PartitioningError, match="created_at"):
        await db.partition_messages(by="created_at")
    with pytest.raises(errors.ArgumentError, match="interval"):
        await db.partition_messages(interval="year")
    with pytest.raises(errors.ArgumentError, match="90d"):
        await db.retention("abc")
    with pytest.raises(errors.ArgumentError, match="positive"):
        await db.retention(timedelta(0))
    assert await partitions.partitioning(db) is None
    assert await db.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_new'") == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_retention_without_partitions_deletes_in_batches(db: botdb.Database) -> None:
    await db.execute("INSERT INTO guilds (id) VALUES ($1)", G)
    await db.execute("INSERT INTO channels (id, guild_id) VALUES ($1, $2)", C, G)
    rows = [
        {"id": n, "guild_id": G, "channel_id": C, "created_at": NOW - timedelta(days=n * 10)}
        for n in range(1, 16)
    ]
    await db.messages.create_many(rows)
    await db.execute(
        "INSERT INTO mentions (message_id, guild_id, target_type, target_id) "
        "VALUES ($1, $2, 'here', $2)",
        15,
        G,
    )
    dry = await db.retention("95d", dry_run=True)
    assert dry["mode"] == "delete"
    assert dry["deleted"] == 6
    assert await db.fetchval("SELECT count(*) FROM messages") == 15
    report = await partitions.retention(db, "95d", batch_size=4)
    assert report["deleted"] == 6
    assert [r["id"] for r in await db.fetch("SELECT id FROM messages ORDER BY id")] == list(
        range(1, 10)
    )
    assert await db.fetchval("SELECT count(*) FROM mentions") == 0


async def test_sqlite_refuses_partitioning(make_db: MakeDB, sqlite_url: str) -> None:
    db = await make_db(url=sqlite_url, create_tables=True)
    with pytest.raises(errors.PartitioningError, match="PostgreSQL's"):
        await db.partition_messages()
    assert (await partitions.ensure_partitions(db))["partitioned"] is False


def test_cli(pg_url: str, sqlite_url: str) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["retention", "--url", sqlite_url, "--older-than", "abc", "--json"])
    assert bad.exit_code != 0
    assert "90d" in bad.output
    done = runner.invoke(app, ["init", "--url", pg_url])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["partition", "messages", "--url", pg_url, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["converted"] is True
    done = runner.invoke(app, ["retention", "--url", pg_url, "--older-than", "30d", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["mode"] == "partitions"
    assert runner.invoke(app, ["init", "--url", sqlite_url]).exit_code == 0
    refused = runner.invoke(app, ["partition", "messages", "--url", sqlite_url])
    assert refused.exit_code != 0
    assert "PostgreSQL" in refused.output


async def test_writes_during_the_conversion_are_kept(pg_db: botdb.Database) -> None:
    """The copy runs while the bot writes: inserts, edits and deletes made during it (on rows
    already copied or not yet) all end up in the partitioned tables."""
    db = pg_db
    created = await _populate(db)
    stop = asyncio.Event()
    expected: dict[int, str | None] = {m.id: m.content for m in created}

    async def bot() -> None:
        n = 0
        while not stop.is_set() or n < 6:
            n += 1
            mid, moment = _at(0.5, 1000 + n)
            await db.execute(
                "INSERT INTO messages (id, guild_id, channel_id, content, created_at) "
                "VALUES ($1, $2, $3, $4, $5)",
                mid,
                G,
                C,
                f"live {n}",
                moment,
            )
            expected[mid] = f"live {n}"
            old = created[n % len(created)].id
            if expected.get(old) is not None:
                await db.execute("UPDATE messages SET content = $1 WHERE id = $2", f"e{n}", old)
                expected[old] = f"e{n}"
            if n % 5 == 0:
                victim = created[(n * 7) % len(created)].id
                await db.execute("DELETE FROM messages WHERE id = $1", victim)
                expected[victim] = None
            await asyncio.sleep(0)

    writer = asyncio.create_task(bot())
    try:
        await db.partition_messages(batch_size=2)
    finally:
        stop.set()
        await asyncio.wait_for(writer, timeout=60)
    stored = {r["id"]: r["content"] for r in await db.fetch("SELECT id, content FROM messages")}
    assert stored == {mid: content for mid, content in expected.items() if content is not None}
    orphans = await db.fetchval(
        "SELECT count(*) FROM attachments a LEFT JOIN messages m ON m.id = a.message_id "
        "WHERE m.id IS NULL"
    )
    assert orphans == 0


async def test_transfer_from_a_partitioned_database(
    pg_db: botdb.Database, make_db: MakeDB, sqlite_url: str
) -> None:
    """``botdb transfer`` reads partitioned tables through their parents, once."""
    db = pg_db
    created = await _populate(db)
    await db.partition_messages()
    report = await transfer(db, await make_db(url=sqlite_url, create_tables=False))
    rows = {table.name: table.target_rows for table in report.tables}
    assert rows["messages"] == len(created)
    assert not [t for t in rows if "_p2" in t or t.endswith("_default")]


async def test_a_failed_conversion_leaves_the_old_tables_as_they_were(
    pg_db: botdb.Database,
) -> None:
    db = pg_db
    created = await _populate(db)
    # A name the conversion needs is taken by a table of the bot's own: it fails midway.
    await db.execute("CREATE TABLE reactions_default (x int)")
    with pytest.raises(errors.BotDBError):
        await db.partition_messages()
    assert await partitions.partitioning(db) is None
    leftovers = await db.fetch(
        "SELECT relname FROM pg_class WHERE relname LIKE '%\\_new' OR relname LIKE '%\\_p2%'"
    )
    assert leftovers == []
    assert await db.fetchval("SELECT count(*) FROM pg_trigger WHERE tgname = 'botdb_mirror'") == 0
    mid, moment = _at(0, 500)
    await db.recorder.record(MessageCreated(mid, G, C, U, moment, "after"))
    await db.recorder.flush()
    assert await db.fetchval("SELECT count(*) FROM messages") == len(created) + 1
    # A table named like the conversion's own but not made by it is refused, never dropped.
    await db.execute("DROP TABLE reactions_default")
    await db.execute("CREATE TABLE messages_new (x int)")
    with pytest.raises(errors.PartitioningError, match="messages_new"):
        await db.partition_messages()
    assert await db.fetchval("SELECT to_regclass('messages_new')::text") == "messages_new"


async def test_migrations_see_no_difference_after_partitioning(make_db: MakeDB) -> None:
    """``botdb migrate check`` stays clean: the per-partition copies PostgreSQL makes of the
    children's foreign keys are not the model's."""
    db = await make_db()
    await db.migrate()
    await _populate(db)
    await db.partition_messages()
    assert await Migrator(db).check() == []


async def test_a_scheduler_job_keeps_partitions_ahead(pg_db: botdb.Database) -> None:
    db = pg_db
    await _populate(db)
    await partitions.partition_messages(db, interval="week", ahead=0)
    before = len((await partitions.partitioning(db))["partitions"])
    job = await partitions.schedule_upkeep(db, ahead=4, older_than="400d")
    again = await partitions.schedule_upkeep(db, ahead=4, older_than="400d")
    assert again.id == job.id
    assert job.kind == partitions.JOB_KIND
    assert await db.scheduler.run_until_idle() == 1
    after = (await partitions.partitioning(db))["partitions"]
    assert len(after) == before + 4
    with pytest.raises(errors.ArgumentError):
        await partitions.schedule_upkeep(db, older_than="soon")


async def test_backup_and_restore_of_a_partitioned_database(
    pg_db: botdb.Database, tmp_path: Path
) -> None:
    db = pg_db
    created = await _populate(db)
    await db.partition_messages()
    result = await db.backup(tmp_path)
    await db.execute("DELETE FROM messages")
    await db.restore(result.path, yes=True)
    assert await db.fetchval("SELECT count(*) FROM messages") == len(created)
    assert await partitions.partitioning(db) is not None


async def test_keyset_pages_on_partitions_are_prepared_once_and_reach_the_generic_plan(
    pg_db: botdb.Database,
) -> None:
    """A keyset page's statement keeps one text from page to page (the limit written in, the
    cursor bound), one connection prepares it once, and PostgreSQL moves to its generic plan
    after five runs: no planning over every partition per page. With ``LIMIT $n`` it never
    did (the generic plan's cost, blind to the limit, lost to every custom plan). Sequential
    pages after a busy moment stay on the most recently used connection (the pool hands
    connections out last-in-first-out), so that connection reaches the generic plan."""
    db = pg_db
    await _populate(db)
    await db.partition_messages()
    await db.analyze(botdb.ops.MESSAGE_TABLES)
    # A busy moment: four sessions at once leave four connections in the pool.
    barrier = asyncio.Barrier(4)

    async def hold(session: Any) -> None:
        await session.execute(sa.text("SELECT 1"))
        await barrier.wait()

    await asyncio.gather(*(db.run_in_session(hold) for _ in range(4)))
    for _ in range(8):
        first = await db.messages.find_page(
            limit=3, filters={"channel_id": C}, order_by="-created_at"
        )
        await db.messages.find_page(
            limit=3, filters={"channel_id": C}, order_by="-created_at", after=first.next_cursor
        )

    async def prepared(session: Any) -> list[Any]:
        query = "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        return list((await session.execute(sa.text(query))).all())

    rows = [
        row for row in await db.run_in_session(prepared) if row[0].startswith("SELECT messages.id")
    ]
    assert len(rows) == 2, rows  # the first page and the following ones: two texts, not 16
    for statement, generic, custom in rows:
        assert "LIMIT 4" in statement
        assert generic + custom == 8, statement
        assert generic >= 1, statement


async def test_retention_while_the_recorder_writes(pg_db: botdb.Database) -> None:
    """Retention drops old partitions while the recorder ingests new messages and reactions:
    every recorded message of the kept range is stored, no child row is left without its
    message, and the family's partitions of the dropped ranges are all gone."""
    db = pg_db
    created = await _populate(db)
    await db.partition_messages()
    stop = asyncio.Event()
    recorded: list[int] = []

    async def bot() -> None:
        n = 0
        while not stop.is_set() or n < 20:
            n += 1
            event = _message(0.5, 5000 + n, f"live {n}")
            await db.recorder.record(event)
            await db.recorder.record(
                ReactionAdded(event.id, G, C, U, "👍", event.created_at + timedelta(seconds=1))
            )
            if n % 5 == 0:
                await db.recorder.flush()
            recorded.append(event.id)
            await asyncio.sleep(0)

    writer = asyncio.create_task(bot())
    try:
        report = await db.retention("90d")
    finally:
        stop.set()
        # A failed write would raise here: nothing is lost silently.
        await asyncio.wait_for(writer, timeout=60)
    await db.recorder.flush()
    assert report["dropped"]
    stored = {r["id"] for r in await db.fetch("SELECT id FROM messages")}
    assert set(recorded) <= stored
    bound = time_snowflake(NOW - timedelta(days=90))
    assert {m.id for m in created if m.id >= bound} <= stored
    for table in FAMILY:
        names = {p["name"] for p in await db.fetch(partitions._PARTITIONS, table)}
        assert not names & {n.replace("messages", table, 1) for n in report["dropped"]}
    for child in ("attachments", "mentions", "reactions", "reaction_counts"):
        orphans = await db.fetchval(
            f"SELECT count(*) FROM {child} c LEFT JOIN messages m "
            "ON m.id = c.message_id AND m.guild_id = c.guild_id WHERE m.id IS NULL"
        )
        assert orphans == 0, child
    assert await db.fetchval(
        "SELECT count(*) FROM reactions WHERE message_id = ANY($1)", recorded
    ) == len(recorded)
