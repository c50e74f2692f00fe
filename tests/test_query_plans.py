"""Every hot read on the message-family tables plans as an index range, never a full sort.

The statements are the ones botdb really sends (captured while ``find_page`` / ``search``
run), explained by the database they run on, after loading enough rows and ``analyze`` for
the planner to choose honestly. SQLite: no ``SCAN <table>`` (a full pass, by table or by
index) and no ``USE TEMP B-TREE`` (a sort). PostgreSQL (``EXPLAIN (FORMAT JSON)``): no
``Seq Scan`` on those tables and no ``Sort`` node. Ranked search is the one sort allowed: it
sorts the index's matches (FTS5 / a GIN bitmap), never the table.

How long a page takes as the table grows is measured by ``make bench`` (bench/cases_scale.py).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event

import botdb
from botdb.models import Channel, Guild, Thread, User
from botdb.models.snowflake import time_snowflake
from botdb.ops.maintenance import MESSAGE_TABLES
from botdb.repository import KeysetPage
from botdb.repository._messages import PG_SEARCH_SETTINGS

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BIG, SMALL = 1, 2  # guilds
CHANNELS = (10, 11, 12, 13)
AUTHORS = tuple(range(100, 120))
THREAD = 500
MESSAGES = 30_000
FAMILY = ("messages", "reactions", "mentions", "attachments", "reaction_counts")

_SQLITE_SCAN = re.compile(r"\bSCAN (" + "|".join(FAMILY) + r")\b")
# A family table or one of its partitions (botdb.ops.partitions names them so).
_PG_FAMILY = re.compile(r"^(" + "|".join(FAMILY) + r")(_p\d{8}|_default)?$")


def _when(i: int, backend: str, step: dt.timedelta = dt.timedelta(seconds=7)) -> Any:
    at = T0 + step * i
    # What botdb's UTCDateTime stores on SQLite (text, UTC, no offset).
    return at.strftime("%Y-%m-%d %H:%M:%S.%f") if backend == "sqlite" else at


async def _load(db: botdb.Database, *, snowflakes: bool = False) -> None:
    """A big guild (most rows, four channels, twenty authors, one thread) and a small one.

    ``snowflakes``: message ids are Discord snowflakes of their ``created_at``, ten minutes
    apart (seven months of them), as partitioning by id needs; else ids 1, 2, 3 …, 7 s apart.
    """
    step = dt.timedelta(minutes=10) if snowflakes else dt.timedelta(seconds=7)
    await db.repo(Guild).create_many([{"id": BIG}, {"id": SMALL}])
    await db.repo(Channel).create_many(
        [{"id": c, "guild_id": BIG} for c in CHANNELS] + [{"id": 20, "guild_id": SMALL}]
    )
    await db.repo(Thread).create(id=THREAD, guild_id=BIG, parent_id=CHANNELS[0])
    await db.repo(User).create_many([{"id": a} for a in AUTHORS])
    words = ("raid", "loot", "boss", "привет", "music", "vote", "meme", "tonight")
    messages = []
    for i in range(1, MESSAGES + 1):
        small = i % 50 == 0
        messages.append(
            (
                time_snowflake(T0 + step * i) if snowflakes else i,
                SMALL if small else BIG,
                20 if small else CHANNELS[i % len(CHANNELS)],
                THREAD if not small and i % 10 == 1 else None,
                AUTHORS[i % len(AUTHORS)],
                f"{words[i % 8]} {words[(i // 8) % 8]} message {i}"
                + (" needle" if i % 1000 == 1 else ""),
                _when(i, db.backend, step),
                i % 97 == 0,
            )
        )
    columns = ", ".join(
        ("id", "guild_id", "channel_id", "thread_id", "author_id", "content", "created_at")
    )
    async with db.transaction() as conn:
        await conn.execute_many(
            f"INSERT INTO messages ({columns}, deleted) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            messages,
        )
        await conn.execute_many(
            "INSERT INTO reactions (message_id, guild_id, channel_id, user_id, emoji_name, "
            "created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (m[0], m[1], m[2], AUTHORS[(i * 7) % 20], "👍", m[6])
                for i, m in list(enumerate(messages, start=1))[::3]
            ],
        )
        await conn.execute_many(
            "INSERT INTO attachments (message_id, guild_id, position, filename) "
            "VALUES ($1, $2, 0, 'a.png')",
            [(m[0], m[1]) for m in messages[::5]],
        )
        await conn.execute_many(
            "INSERT INTO mentions (message_id, guild_id, target_type, target_id) "
            "VALUES ($1, $2, 'user', $3)",
            [
                (m[0], m[1], AUTHORS[(i * 3) % 20])
                for i, m in list(enumerate(messages, start=1))[::2]
            ],
        )
    await db.analyze(MESSAGE_TABLES)


Explained = tuple[str, list[Any]]


async def _explain(db: botdb.Database, call: Callable[[], Awaitable[object]]) -> list[Explained]:
    """Run ``call`` and explain each statement it sent (with the very parameters it sent)."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        # The reads of the tables here (not the engine's own bookkeeping queries).
        reads = statement.lstrip().upper().startswith(("SELECT", "WITH"))
        if reads and any(f"FROM {table}" in statement for table in FAMILY):
            sent.append((statement, parameters))

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert sent, "nothing was sent"
    prefix = "EXPLAIN QUERY PLAN " if db.backend == "sqlite" else "EXPLAIN (FORMAT JSON) "
    plans: list[Explained] = []
    async with db.engine.connect() as conn:
        for statement, parameters in sent:
            result = await conn.exec_driver_sql(prefix + statement, parameters)
            rows = result.all()
            if db.backend == "sqlite":
                plans.append((statement, [str(row[3]) for row in rows]))
            else:
                document = rows[0][0]
                plans.append(
                    (statement, json.loads(document) if isinstance(document, str) else document)
                )
    return plans


def _pg_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found.extend(_pg_nodes(child))
    return found


def _problems(
    backend: str, plan: list[Any], *, ranked: bool = False, empty: frozenset[str] = frozenset()
) -> list[str]:
    """What in one plan reads a whole table or sorts it (``ranked``: a sort of matches;
    ``empty``: relations without a page, whose Seq Scan reads nothing)."""
    problems = []
    if backend == "sqlite":
        for detail in plan:
            if _SQLITE_SCAN.search(detail):
                problems.append(detail)
            if "TEMP B-TREE" in detail and not ranked:
                problems.append(detail)
        return problems
    for node in _pg_nodes(plan[0]["Plan"]):
        kind = node["Node Type"]
        relation = node.get("Relation Name", "")
        if kind == "Seq Scan" and _PG_FAMILY.match(relation) and relation not in empty:
            problems.append(f"Seq Scan on {node['Relation Name']}")
        if "Sort" in kind and not ranked:
            problems.append(f"{kind} by {node.get('Sort Key')}")
    return problems


async def _pages(db: botdb.Database, repo: Any, **options: Any) -> None:
    """The first page and the one after it (a keyset comparison in the WHERE)."""
    first: KeysetPage[Any] = await repo.find_page(limit=50, **options)
    assert len(first.items) == 50, options
    assert first.next_cursor is not None, options
    await repo.find_page(after=first.next_cursor, limit=50, **options)


#: (what, repository name, find_page options) of every hot keyset read.
PAGES: list[tuple[str, str, dict[str, Any]]] = [
    (f"messages by {what} {order}", "messages", {"filters": filters, "order_by": order})
    for what, filters in (
        ("guild", {"guild_id": BIG}),
        ("channel", {"channel_id": CHANNELS[1]}),
        ("guild+channel", {"guild_id": BIG, "channel_id": CHANNELS[1]}),
        ("author", {"author_id": AUTHORS[3]}),
        ("thread", {"thread_id": THREAD, "guild_id": BIG}),
    )
    for order in ("id", "-id", "created_at", "-created_at")
] + [
    (
        "messages by guild, deleted too",
        "messages",
        {"filters": {"guild_id": BIG}, "include_deleted": True},
    ),
    (
        "messages by channel, deleted too, newest first",
        "messages",
        {
            "filters": {"channel_id": CHANNELS[2]},
            "order_by": "-created_at",
            "include_deleted": True,
        },
    ),
    ("reactions by user", "reactions", {"filters": {"user_id": AUTHORS[5]}}),
    (
        "reactions by user newest first",
        "reactions",
        {"filters": {"user_id": AUTHORS[5]}, "order_by": "-created_at"},
    ),
    ("reactions by guild", "reactions", {"filters": {"guild_id": BIG}}),
    ("mentions of a user", "mentions", {"filters": {"target_id": AUTHORS[7]}}),
]


async def test_every_hot_read_plans_an_index_range(db: botdb.Database) -> None:
    """find_page with each common filter and order (first and next page), and search."""
    await _load(db)
    assert await _hot_read_failures(db) == {}


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_every_hot_read_on_partitioned_messages_plans_index_ranges_per_partition(
    db: botdb.Database,
) -> None:
    """After ``partition_messages`` (eight monthly partitions with rows, four empty ones and
    DEFAULT): the same reads, each a merge or an ordered append of per-partition index
    ranges, never a partition read whole or sorted, and search on each partition's GIN index.
    The recorder's keyed lookups likewise."""
    await _load(db, snowflakes=True)
    report = await db.partition_messages()
    assert report["converted"]
    assert len(report["partitions"]) > 8
    await db.analyze(MESSAGE_TABLES)
    # The current month's partition, those ahead and DEFAULT hold no row: the planner rightly
    # reads their zero pages rather than an index.
    empty = frozenset(
        row["relname"]
        for row in await db.fetch(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relpages = 0 "
            "AND relname ~ '_(p[0-9]{8}|default)$'"
        )
    )
    assert {"messages_default", "reactions_default"} <= empty
    failures = await _hot_read_failures(db, empty)
    for what, sql, args in RECORDER:
        if "IN ($1" not in sql:
            document = await db.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
            plan = json.loads(document) if isinstance(document, str) else document
            if problems := _problems(db.backend, plan, empty=empty):
                failures[what] = problems
    assert failures == {}


async def _hot_read_failures(
    db: botdb.Database, empty: frozenset[str] = frozenset()
) -> dict[str, list[str]]:
    from botdb.models import Mention, Reaction

    repos = {"messages": db.messages, "reactions": db.repo(Reaction), "mentions": db.repo(Mention)}
    failures: dict[str, list[str]] = {}
    for what, name, options in PAGES:
        read = functools.partial(_pages, db, repos[name], **options)
        for statement, plan in await _explain(db, read):
            if problems := _problems(db.backend, plan, empty=empty):
                failures[what] = [*problems, statement]

    async def search() -> None:
        page = await db.messages.search("raid tonight", guild_id=BIG, limit=20)
        assert page.next_cursor is not None
        await db.messages.search("raid tonight", guild_id=BIG, limit=20, cursor=page.next_cursor)
        needles = await db.messages.search("needle", channel_id=CHANNELS[1])
        assert needles.items

    for statement, plan in await _explain(db, search):
        if problems := _problems(db.backend, plan, ranked=True, empty=empty):
            failures["search"] = [*problems, statement]
        text = json.dumps(plan)
        # A partition's copy of the GIN index is named by PostgreSQL after its expression.
        index = "messages_fts" if db.backend == "sqlite" else "_content_search|_to_tsvector_idx"
        if not re.search(index, text):
            failures["search uses the full-text index"] = [text, statement]
    return failures


async def test_the_check_sees_a_full_sort(db: botdb.Database) -> None:
    """The plan check itself: ordering a guild by a column no index has is reported."""
    await _load(db)
    plans = await _explain(
        db, lambda: db.messages.find_page(filters={"guild_id": BIG}, order_by="-attachment_count")
    )
    assert any(_problems(db.backend, plan) for _, plan in plans)


async def test_pages_with_a_pinned_key_column_return_every_row_once_in_order(
    db: botdb.Database,
) -> None:
    """Leaving the filter-pinned guild_id out of the order changes no page."""
    await db.repo(Guild).create_many([{"id": BIG}, {"id": SMALL}])
    await db.repo(Channel).create_many([{"id": 10, "guild_id": BIG}, {"id": 20, "guild_id": SMALL}])
    # The same message ids in both guilds (Telegram ids are per chat), created out of order.
    rows = [
        {
            "id": i,
            "guild_id": g,
            "channel_id": c,
            "created_at": T0 + dt.timedelta(minutes=(i * 7) % 23),
        }
        for g, c in ((BIG, 10), (SMALL, 20))
        for i in range(1, 24)
    ]
    await db.messages.create_many(rows)
    for order, key in (
        ("id", lambda m: m.id),
        ("-created_at", lambda m: (-m.created_at.timestamp(), -m.id)),
    ):
        seen = []
        cursor = None
        while True:
            page = await db.messages.find_page(
                after=cursor, limit=4, filters={"guild_id": SMALL}, order_by=order
            )
            seen.extend(page.items)
            if (cursor := page.next_cursor) is None:
                break
        assert [m.guild_id for m in seen] == [SMALL] * 23
        assert [m.id for m in seen] == [m.id for m in sorted(seen, key=key)]
        assert sorted(m.id for m in seen) == list(range(1, 24))


#: The recorder's reads and keyed writes on these tables (botdb.recorder._writer), in the shape
#: it sends them: each must find its rows through a key, never by reading the table.
RECORDER: list[tuple[str, str, tuple[Any, ...]]] = [
    (
        "stored messages (SQLite)",
        "SELECT id, guild_id, content FROM messages WHERE id IN ($1, $2, $3)",
        (5, 6, 7),
    ),
    (
        "stored messages (PostgreSQL)",
        "SELECT id, guild_id, content FROM messages WHERE (id, guild_id) IN "
        "(SELECT * FROM unnest($1::bigint[], $2::bigint[])) FOR UPDATE",
        ([5, 6, 7], [BIG, BIG, BIG]),
    ),
    (
        "message update",
        "UPDATE messages SET content = $1 WHERE id = $2 AND guild_id = $3",
        ("x", 5, BIG),
    ),
    (
        "attachments replaced",
        "DELETE FROM attachments WHERE message_id = $1 AND guild_id = $2 AND position >= $3",
        (5, BIG, 0),
    ),
    ("mentions replaced", "DELETE FROM mentions WHERE message_id = $1 AND guild_id = $2", (5, BIG)),
    (
        "reactions cleared",
        "UPDATE reactions SET removed_at = $1 WHERE message_id = $2 AND guild_id = $3 "
        "AND removed_at IS NULL AND created_at <= $1",
        (T0, 6, BIG),
    ),
    (
        "one emoji cleared",
        "UPDATE reactions SET removed_at = $1 WHERE message_id = $2 AND guild_id = $3 "
        "AND emoji_key = $4 AND removed_at IS NULL AND created_at <= $1",
        (T0, 6, BIG, "👍"),
    ),
]


async def test_the_recorders_lookups_go_through_keys(db: botdb.Database) -> None:
    await _load(db)
    failures = {}
    for what, sql, args in RECORDER:
        if db.backend == "sqlite":
            if "unnest" in sql:
                continue
            plan: list[Any] = [
                str(r[3]) for r in await db.fetch("EXPLAIN QUERY PLAN " + sql, *args)
            ]
        else:
            if "IN ($1" in sql:
                continue
            document = await db.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
            plan = json.loads(document) if isinstance(document, str) else document
        if problems := _problems(db.backend, plan):
            failures[what] = problems
    assert failures == {}


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_search_with_many_matches_keeps_its_bitmap_of_pages_exact(
    db: botdb.Database,
) -> None:
    """PostgreSQL: a search gathers its matches in a bitmap of heap pages; past work_mem the
    bitmap turns lossy and every row of a lossy page is parsed again (134 s against 7 s on
    10M messages). The search's own settings keep it exact. Scaled down here: the server's
    work_mem is stood in for by 64 kB, against 200k messages with a match on every page."""
    await db.repo(Guild).create(id=BIG)
    await db.repo(Channel).create(id=10, guild_id=BIG)
    await db.execute(
        "INSERT INTO messages (id, guild_id, channel_id, content) "
        "SELECT g, $1, 10, CASE WHEN g % 40 = 0 THEN 'raid loot ' ELSE 'music vote ' END || g "
        "FROM generate_series(1, 200000) AS g",
        BIG,
    )
    await db.analyze(["messages"])
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "FROM messages" in statement:
            sent.append((statement, parameters))

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        page = await db.messages.search("raid loot", guild_id=BIG, limit=20)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(page.items) == 20
    [(statement, parameters)] = sent

    async def lossy_pages(settings: tuple[str, ...]) -> int:
        async with db.engine.connect() as conn, conn.begin():
            await conn.exec_driver_sql("SET LOCAL work_mem = '64kB'")
            await conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
            for setting in settings:
                await conn.exec_driver_sql(setting)
            result = await conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
            )
            document = result.scalar_one()
        plan = json.loads(document) if isinstance(document, str) else document
        scans = [n for n in _pg_nodes(plan[0]["Plan"]) if n["Node Type"] == "Bitmap Heap Scan"]
        assert scans, plan
        return sum(int(n.get("Lossy Heap Blocks", 0)) for n in scans)

    assert await lossy_pages(()) > 0  # the test's scale reaches the cliff
    assert await lossy_pages(PG_SEARCH_SETTINGS) == 0
