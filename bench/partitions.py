"""Partitioned messages, before and after: keyset page, search, recorder ingest, retention.

Generates ``--rows`` messages (one a reaction per ten) spread over ``--months`` months of
snowflake ids in a private PostgreSQL database, measures the hot reads, a recorder ingest and
removing the oldest month (batched DELETE), then converts with ``db.partition_messages()``,
measures the same reads and ingest again and removes the next month by dropping its
partitions. Figures are medians; the machine is shared and noisy.

    python bench/partitions.py [--rows 1000000] [--months 12] [--batch-size 10000]
        [--search-runs 30] [--keep] [--database NAME] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

import botdb
from botdb.models.snowflake import time_snowflake
from botdb.ops import partitions
from botdb.recorder import MessageCreated

PG_ADMIN_DSN = os.environ.get("BOTDB_BENCH_PG_DSN", "postgresql://root@127.0.0.1:5432/postgres")
G, C, U = 1000, 2000, 3000
WORDS = [
    "raid",
    "boss",
    "loot",
    "night",
    "guild",
    "event",
    "party",
    "quest",
    "dragon",
    "sword",
    "shield",
    "potion",
]


async def _median(fn: Callable[[], Awaitable[Any]], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - began)
    return round(statistics.median(times) * 1000, 3)


async def _generate(url: str, rows: int, months: int, now: datetime) -> None:
    """Fill ``messages`` (and a reaction per ten) with ``rows`` generated messages.

    The secondary indexes of ``messages`` (the GIN search index among them) are dropped
    first and built again once the rows are in: at 10M rows, inserting into ten indexes row
    by row took most of the generation (a 200 000-row batch went from 12 s to 24 s as the
    indexes grew), while one sorted build per index is a single pass. Only the bench does
    this; the indexes built are the model's own definitions, read back from the catalog.
    """
    start = now - timedelta(days=30 * months)
    low, high = time_snowflake(start), time_snowflake(now - timedelta(days=1))
    words = "ARRAY[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute("INSERT INTO guilds (id) VALUES ($1)", G)
        await conn.execute("INSERT INTO channels (id, guild_id) VALUES ($1, $2)", C, G)
        await conn.execute("INSERT INTO users (id) SELECT $1 + g FROM generate_series(0, 99) g", U)
        indexes = await conn.fetch(
            "SELECT i.relname AS name, pg_get_indexdef(i.oid) AS definition "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = 'messages'::regclass AND NOT x.indisprimary"
        )
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["name"]}"')
        step = (high - low) // rows
        for first in range(0, rows, 1_000_000):
            last = min(rows, first + 1_000_000)
            await conn.execute(
                "INSERT INTO messages (id, guild_id, channel_id, author_id, content, created_at) "
                f"SELECT {low} + g::bigint * {step}, {G}, {C}, {U} + g % 100, "
                f"({words})[1 + g % 12] || ' ' || ({words})[1 + (g / 12) % 12] || ' m' || g, "
                f"timestamptz '2015-01-01 00:00:00+00' + "
                f"((({low} + g::bigint * {step}) >> 22) * interval '1 millisecond') "
                f"FROM generate_series({first}, {last - 1}) g"
            )
            _note(f"generated {last:,} of {rows:,} messages")
        for index in indexes:
            await conn.execute(index["definition"])
        _note(f"built {len(indexes)} indexes")
        await conn.execute(
            "INSERT INTO reactions (message_id, guild_id, channel_id, user_id, emoji_name) "
            f"SELECT id, guild_id, channel_id, {U} + (id % 100), '👍' FROM messages "
            # The g of the generation: ``id % 10`` would depend on the step's last digit.
            f"WHERE (id - {low}) / {step} % 10 = 0"
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def _vacuum(url: str) -> None:
    # As after the generation: the visibility maps set, so that both sides read alike.
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def _note(message: str) -> None:
    # Phases of a 10M run take minutes: say where it is (stderr, so --json stays clean).
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def _measure(
    db: botdb.Database, now: datetime, tag: str, search_runs: int
) -> dict[str, float]:
    figures: dict[str, float] = {}

    async def page() -> None:
        result = await db.messages.find_page(
            limit=50, filters={"channel_id": C}, order_by="-created_at"
        )
        await db.messages.find_page(
            limit=50, filters={"channel_id": C}, order_by="-created_at", after=result.next_cursor
        )

    async def search() -> None:
        await db.messages.search("dragon loot", guild_id=G, limit=20)

    async def recent() -> None:
        since = time_snowflake(now - timedelta(days=7))
        await db.fetch(
            "SELECT * FROM messages WHERE guild_id = $1 AND id >= $2 ORDER BY id DESC LIMIT 50",
            G,
            since,
        )

    figures["keyset_2_pages_ms"] = await _median(page, 30)
    figures["search_ms"] = await _median(search, search_runs)
    figures["recent_by_id_ms"] = await _median(recent, 30)
    base = time_snowflake(now) + (1 if tag == "before" else 2) * 10_000_000
    events = [
        MessageCreated(
            id=base + n, guild_id=G, channel_id=C, author_id=U, created_at=now, content=f"new {n}"
        )
        for n in range(5000)
    ]
    began = time.perf_counter()
    await db.recorder.record_many(events)
    await db.recorder.flush()
    figures["ingest_5000_s"] = round(time.perf_counter() - began, 3)
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument(
        "--batch-size", type=int, default=10_000, help="rows per batch of the online move"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the database (to EXPLAIN by hand); prints it"
    )
    parser.add_argument(
        "--search-runs", type=int, default=30, help="searches per median (seconds each at 10M)"
    )
    parser.add_argument(
        "--database", help="go on with a database kept (--keep) after its generation"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    name = args.database or f"botdb_bench_partitions_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    if args.database is None:
        await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    now = datetime.now(UTC)
    report: dict[str, Any] = {"rows": args.rows, "months": args.months}
    try:
        async with botdb.connect(url) as db:
            if args.database is None:
                await db.create_tables()
                began = time.perf_counter()
                await _generate(url, args.rows, args.months, now)
                report["generate_s"] = round(time.perf_counter() - began, 1)
            else:
                report["rows"] = await db.fetchval("SELECT count(*) FROM messages")
            _note("measuring the unpartitioned table")
            report["before"] = await _measure(db, now, "before", args.search_runs)
            _note("retention by batched DELETE")
            oldest = await db.fetchval("SELECT min(created_at) FROM messages")
            age = now - (oldest + timedelta(days=31))
            began = time.perf_counter()
            deleted = await partitions.retention(db, age, batch_size=10_000, now=now)
            report["retention_delete"] = {
                "rows": deleted["deleted"],
                "took_s": round(time.perf_counter() - began, 3),
            }
            _note("online move")
            began = time.perf_counter()
            converted = await partitions.partition_messages(
                db,
                batch_size=args.batch_size,
                progress=lambda phase, done, total: _note(f"move: {phase} ({done}/{total})"),
            )
            took = time.perf_counter() - began
            moved = sum(converted["rows"].values())
            report["convert"] = {
                "batch_size": args.batch_size,
                "rows": converted["rows"],
                "took_s": round(took, 1),
                "rows_per_s": round(moved / took),
            }
            report["partitions"] = len(converted["partitions"])
            await _vacuum(url)
            _note("measuring the partitioned table")
            report["after"] = await _measure(db, now, "after", args.search_runs)
            _note("retention by dropping partitions")
            count = await db.fetchval("SELECT count(*) FROM messages")
            began = time.perf_counter()
            dropped = await partitions.retention(db, age - timedelta(days=31), now=now)
            report["retention_drop"] = {
                "partitions": len(dropped["dropped"]),
                "rows": count - await db.fetchval("SELECT count(*) FROM messages"),
                "took_s": round(time.perf_counter() - began, 4),
            }
    finally:
        if args.keep:
            _note(f"kept database {name}")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        for key, value in report.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    asyncio.run(main())
