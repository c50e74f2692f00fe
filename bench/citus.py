"""Citus against one PostgreSQL: the same reads and ingest on both (indicative figures).

Makes a private database on the single PostgreSQL server and one on the Citus cluster (made on
the coordinator and each worker, the nodes registered, migrated and ``db.distribute()``d), fills
both with ``--rows`` messages over ``--guilds`` guilds, and measures on each: a primary-key
read of a message, two keyset pages of a channel (newest first), a guild's search, and a
recorder ingest of 5 000 messages over 5 guilds (twice: the first one in a session pays for
Citus's connections to the workers). Figures are medians; the machine is shared and noisy, and
the "cluster" is three PostgreSQL servers on the same two cores, so it shows the cost of the
extra hop, not the gain of more machines.

    python bench/citus.py [--rows 200000] [--guilds 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

import botdb
from botdb.models.snowflake import time_snowflake
from botdb.recorder import MessageCreated

PG_ADMIN_DSN = os.environ.get("BOTDB_BENCH_PG_DSN", "postgresql://root@127.0.0.1:5432/postgres")
CITUS_URL = os.environ.get("BOTDB_BENCH_CITUS_URL", "postgresql://root@127.0.0.1:9700/citus")
G, C, U = 1000, 2000, 3000
WORDS = "ARRAY['raid', 'boss', 'loot', 'night', 'guild', 'event', 'dragon', 'sword']"


def _at(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def _median(fn: Callable[[], Awaitable[Any]], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - began)
    return round(statistics.median(times) * 1000, 3)


async def _citus_nodes() -> list[str]:
    admin = await asyncpg.connect(CITUS_URL)
    try:
        workers = await admin.fetch("SELECT * FROM citus_get_active_worker_nodes()")
    finally:
        await admin.close()
    base = urlsplit(CITUS_URL)
    return [CITUS_URL] + [
        urlunsplit(base._replace(netloc=f"{base.username or 'root'}@{w[0]}:{w[1]}"))
        for w in workers
    ]


async def _create(name: str, citus: bool) -> str:
    nodes = await _citus_nodes() if citus else [PG_ADMIN_DSN]
    for node in nodes:
        conn = await asyncpg.connect(node)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        if citus:
            conn = await asyncpg.connect(_at(node, name))
            try:
                await conn.execute("CREATE EXTENSION citus")
            finally:
                await conn.close()
    url = _at(nodes[0], name)
    if citus:
        coordinator = urlsplit(CITUS_URL)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "SELECT citus_set_coordinator_host($1, $2)", coordinator.hostname, coordinator.port
            )
            for node in nodes[1:]:
                part = urlsplit(node)
                await conn.execute("SELECT citus_add_node($1, $2)", part.hostname, part.port)
        finally:
            await conn.close()
    return url


async def _drop(name: str, citus: bool) -> None:
    for node in await _citus_nodes() if citus else [PG_ADMIN_DSN]:
        conn = await asyncpg.connect(node)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def _generate(db: botdb.Database, rows: int, guilds: int, now: datetime) -> None:
    low = time_snowflake(now - timedelta(days=180))
    step = (time_snowflake(now - timedelta(days=1)) - low) // rows
    await db.execute(
        "INSERT INTO guilds (id) SELECT $1 + g FROM generate_series(0, $2 - 1) g", G, guilds
    )
    await db.execute(
        "INSERT INTO channels (id, guild_id) "
        "SELECT $1 + g, $2 + g FROM generate_series(0, $3 - 1) g",
        C,
        G,
        guilds,
    )
    await db.execute("INSERT INTO users (id) SELECT $1 + g FROM generate_series(0, 99) g", U)
    for first in range(0, rows, 100_000):
        last = min(rows, first + 100_000)
        await db.execute(
            "INSERT INTO messages (id, guild_id, channel_id, author_id, content, created_at) "
            f"SELECT {low} + g::bigint * {step}, {G} + g % {guilds}, {C} + g % {guilds}, "
            f"{U} + g % 100, ({WORDS})[1 + g % 8] || ' ' || ({WORDS})[1 + (g / 8) % 8], "
            f"timestamptz '2015-01-01 00:00:00+00' + "
            f"((({low} + g::bigint * {step}) >> 22) * interval '1 millisecond') "
            f"FROM generate_series({first}, {last - 1}) g"
        )
    await db.execute("ANALYZE")


async def _measure(db: botdb.Database, now: datetime) -> dict[str, float]:
    figures: dict[str, float] = {}
    some = await db.fetchrow("SELECT id, guild_id FROM messages WHERE guild_id = $1 LIMIT 1", G)

    async def by_key() -> None:
        await db.fetchrow(
            "SELECT * FROM messages WHERE id = $1 AND guild_id = $2", some["id"], some["guild_id"]
        )

    async def page() -> None:
        where = {"guild_id": G, "channel_id": C}
        result = await db.messages.find_page(limit=50, filters=where, order_by="-created_at")
        await db.messages.find_page(
            limit=50, filters=where, order_by="-created_at", after=result.next_cursor
        )

    async def search() -> None:
        await db.messages.search("dragon loot", guild_id=G, limit=20)

    figures["message_by_key_ms"] = await _median(by_key, 300)
    figures["keyset_2_pages_ms"] = await _median(page, 30)
    figures["search_ms"] = await _median(search, 30)
    # Twice: on Citus the first statements of a session open its connections to the workers.
    for run, tag in enumerate(("first", "second")):
        base = time_snowflake(now) + (run + 1) * 10_000_000
        events = [
            MessageCreated(
                id=base + n,
                guild_id=G + n % 5,
                channel_id=C + n % 5,
                author_id=U,
                created_at=now,
                content=f"new {n}",
            )
            for n in range(5000)
        ]
        began = time.perf_counter()
        await db.recorder.record_many(events)
        await db.recorder.flush()
        figures[f"ingest_5000_{tag}_s"] = round(time.perf_counter() - began, 3)
    return figures


async def _run(citus: bool, rows: int, guilds: int, now: datetime) -> dict[str, Any]:
    name = f"botdb_bench_citus_{secrets.token_hex(4)}"
    url = await _create(name, citus)
    report: dict[str, Any] = {}
    # The recorder spills to its spool when 5 000 events exceed its buffer: a temporary one.
    spool = tempfile.TemporaryDirectory(prefix="botdb-bench-")
    try:
        path = str(Path(spool.name) / "recorder.spool")
        async with botdb.connect(url, recorder_spool_path=path) as db:
            await db.migrate()
            if citus:
                began = time.perf_counter()
                await db.distribute()
                report["distribute_empty_s"] = round(time.perf_counter() - began, 1)
            began = time.perf_counter()
            await _generate(db, rows, guilds, now)
            report["generate_s"] = round(time.perf_counter() - began, 1)
            report |= await _measure(db, now)
    finally:
        await _drop(name, citus)
        spool.cleanup()
    return report


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--guilds", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    now = datetime.now(UTC)
    report: dict[str, Any] = {"rows": args.rows, "guilds": args.guilds}
    report["postgresql"] = await _run(False, args.rows, args.guilds, now)
    report["citus"] = await _run(True, args.rows, args.guilds, now)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        for key, value in report.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    asyncio.run(main())
