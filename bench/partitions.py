"""Partitioned messages, before and after: keyset page, search, recorder ingest, retention.

Generates ``--rows`` messages (one a reaction per ten) spread over ``--months`` months of
snowflake ids in a private PostgreSQL database, measures the hot reads, a recorder ingest and
removing the oldest month (batched DELETE), then converts with ``db.partition_messages()``,
measures the same reads and ingest again and removes the next month by dropping its
partitions. Figures are medians; the machine is shared and noisy.

    python bench/partitions.py [--rows 1000000] [--months 12] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
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


async def _generate(db: botdb.Database, rows: int, months: int, now: datetime) -> None:
    start = now - timedelta(days=30 * months)
    low, high = time_snowflake(start), time_snowflake(now - timedelta(days=1))
    words = "ARRAY[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
    await db.execute("INSERT INTO guilds (id) VALUES ($1)", G)
    await db.execute("INSERT INTO channels (id, guild_id) VALUES ($1, $2)", C, G)
    await db.execute("INSERT INTO users (id) SELECT $1 + g FROM generate_series(0, 99) g", U)
    step = (high - low) // rows
    for first in range(0, rows, 200_000):
        last = min(rows, first + 200_000)
        await db.execute(
            "INSERT INTO messages (id, guild_id, channel_id, author_id, content, created_at) "
            f"SELECT {low} + g::bigint * {step}, {G}, {C}, {U} + g % 100, "
            f"({words})[1 + g % 12] || ' ' || ({words})[1 + (g / 12) % 12] || ' m' || g, "
            f"timestamptz '2015-01-01 00:00:00+00' + "
            f"((({low} + g::bigint * {step}) >> 22) * interval '1 millisecond') "
            f"FROM generate_series({first}, {last - 1}) g"
        )
    await db.execute(
        "INSERT INTO reactions (message_id, guild_id, channel_id, user_id, emoji_name) "
        f"SELECT id, guild_id, channel_id, {U} + (id % 100), '👍' FROM messages "
        "WHERE id % 10 = 0"
    )
    await db.execute("ANALYZE")


async def _measure(db: botdb.Database, now: datetime, tag: str) -> dict[str, float]:
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
    figures["search_ms"] = await _median(search, 30)
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    name = f"botdb_bench_partitions_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    now = datetime.now(UTC)
    report: dict[str, Any] = {"rows": args.rows, "months": args.months}
    try:
        async with botdb.connect(url) as db:
            await db.create_tables()
            began = time.perf_counter()
            await _generate(db, args.rows, args.months, now)
            report["generate_s"] = round(time.perf_counter() - began, 1)
            report["before"] = await _measure(db, now, "before")
            oldest = await db.fetchval("SELECT min(created_at) FROM messages")
            age = now - (oldest + timedelta(days=31))
            began = time.perf_counter()
            deleted = await partitions.retention(db, age, batch_size=10_000, now=now)
            report["retention_delete"] = {
                "rows": deleted["deleted"],
                "took_s": round(time.perf_counter() - began, 3),
            }
            began = time.perf_counter()
            converted = await db.partition_messages()
            report["convert_s"] = round(time.perf_counter() - began, 1)
            report["partitions"] = len(converted["partitions"])
            await db.execute("ANALYZE")
            report["after"] = await _measure(db, now, "after")
            count = await db.fetchval("SELECT count(*) FROM messages")
            began = time.perf_counter()
            dropped = await partitions.retention(db, age - timedelta(days=31), now=now)
            report["retention_drop"] = {
                "partitions": len(dropped["dropped"]),
                "rows": count - await db.fetchval("SELECT count(*) FROM messages"),
                "took_s": round(time.perf_counter() - began, 4),
            }
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        for key, value in report.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    asyncio.run(main())
