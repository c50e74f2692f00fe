"""``make demo``: botdb's main job on the embedded SQLite default, step by step.

Creates ``demo-data/bot.db`` (anew each run), then shows the raw SQL API with asyncpg-style
``$1`` placeholders and PostgreSQL-isms, transactions with retries, the health check and
the statistics. The same code runs on PostgreSQL: pass a URL as the first argument.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import sys
from pathlib import Path

from rich.console import Console
from rich.pretty import Pretty
from rich.table import Table

import botdb

console = Console()
GUILD = 1_150_000_000_000_000_001  # a Discord snowflake: 64-bit ids everywhere

SCHEMA = """
CREATE TABLE IF NOT EXISTS guilds (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL DEFAULT '!'
);
CREATE TABLE IF NOT EXISTS wallets (
    guild_id BIGINT NOT NULL REFERENCES guilds (id),
    user_id BIGINT NOT NULL,
    coins INTEGER NOT NULL DEFAULT 0 CHECK (coins >= 0),
    PRIMARY KEY (guild_id, user_id)
);
CREATE TABLE IF NOT EXISTS messages (
    id BIGINT PRIMARY KEY,
    guild_id BIGINT NOT NULL,
    channel_id BIGINT NOT NULL,
    author_id BIGINT NOT NULL,
    content TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
"""


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


async def transfer(conn: botdb.Connection, guild: int, src: int, dst: int, amount: int) -> None:
    """Move coins between two wallets: both updates or neither (seed 002's example)."""
    await conn.execute(
        "UPDATE wallets SET coins = coins - $1 WHERE guild_id = $2 AND user_id = $3",
        amount,
        guild,
        src,
    )
    await conn.execute(
        "UPDATE wallets SET coins = coins + $1 WHERE guild_id = $2 AND user_id = $3",
        amount,
        guild,
        dst,
    )


def fresh_sqlite_file(url: str) -> None:
    """The demo starts from an empty database file each run."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


async def main(url: str) -> None:
    async with botdb.connect(url) as db:
        step(f"Connected: {db!r}")
        await db.execute_script(SCHEMA)
        console.print("schema created with [bold]execute_script[/] (atomic)")

        step("Raw SQL, asyncpg style")
        status = await db.execute(
            "INSERT INTO guilds (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            GUILD,
            "Python Hub",
        )
        console.print(f"execute -> {status!r}")
        await db.execute_many(
            "INSERT INTO wallets (guild_id, user_id, coins) VALUES ($1, $2, $3)",
            [(GUILD, uid, 100) for uid in range(1, 6)],
        )
        row = await db.fetchrow("SELECT id, name, prefix FROM guilds WHERE id = $1", GUILD)
        console.print("fetchrow ->", dict(row))

        step("Bulk insert of 50,000 messages with copy_records_to_table")
        now = dt.datetime.now(dt.UTC)
        rows = [
            (
                i,
                GUILD,
                random.randrange(10),
                random.randrange(1, 6),
                f"hello #{i}",
                now - dt.timedelta(minutes=i),
            )
            for i in range(50_000)
        ]
        started = asyncio.get_running_loop().time()
        status = await db.copy_records_to_table(
            "messages",
            records=rows,
            columns=["id", "guild_id", "channel_id", "author_id", "content", "created_at"],
        )
        elapsed = asyncio.get_running_loop().time() - started
        console.print(f"{status} in {elapsed * 1000:.0f} ms ({len(rows) / elapsed:,.0f} rows/s)")

        step("PostgreSQL-isms that run on SQLite too")
        table = Table("query", "result")
        queries = [
            (
                "messages in the last day",
                "SELECT count(*) FROM messages WHERE created_at > NOW() - INTERVAL '1 day'",
                (),
            ),
            (
                "guild names ILIKE 'python%'",
                "SELECT count(*) FROM guilds WHERE name ILIKE $1",
                ("python%",),
            ),
            (
                "messages by authors = ANY([1, 2])",
                "SELECT count(*) FROM messages WHERE author_id = ANY($1)",
                ([1, 2],),
            ),
        ]
        for label, query, args in queries:
            table.add_row(label, str(await db.fetchval(query, *args)))
        console.print(table)

        step("Transactions: all or nothing, re-run on transient failures")
        await db.run_in_transaction(transfer, GUILD, 1, 2, 30)
        try:
            await db.run_in_transaction(transfer, GUILD, 3, 4, 1000)
        except botdb.CheckViolationError as exc:
            console.print(f"overdraft refused: [red]{type(exc).__name__}[/], nothing changed")
        coins = await db.fetch(
            "SELECT user_id, coins FROM wallets WHERE guild_id = $1 ORDER BY user_id",
            GUILD,
        )
        console.print({r["user_id"]: r["coins"] for r in coins})

        step("Typed errors")
        for query in ("SELECT * FROM no_such_table", "SELEC 1"):
            try:
                await db.fetch(query)
            except botdb.QueryError as exc:
                console.print(f"{query!r} -> [red]{type(exc).__name__}[/]: {exc}")

        step("Health check (seed 001 shape)")
        console.print(Pretty(await db.health_check()))

        step("Statistics")
        console.print(Pretty(db.stats()))


if __name__ == "__main__":
    database_url = sys.argv[1] if len(sys.argv) > 1 else "sqlite:///demo-data/bot.db"
    fresh_sqlite_file(database_url)
    asyncio.run(main(database_url))
