"""Raw SQL API cases: botdb's execute/fetch/COPY against asyncpg, sqlite3 and aiosqlite."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from _base import Case, Pair, require

import botdb

LOOKUPS = 6000
ROWS = 20_000
KEYS = 1000


def _message_rows(n: int, offset: int = 0) -> list[tuple[Any, ...]]:
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return [
        (offset + i, 1, 2, 3, f"message number {i}", now, None, False, False, None)
        for i in range(n)
    ]


MESSAGES_DDL = """
CREATE TABLE bench_messages (
    id BIGINT PRIMARY KEY, guild_id BIGINT, channel_id BIGINT, author_id BIGINT, content TEXT,
    created_at TIMESTAMPTZ, edited_at TIMESTAMPTZ, deleted BOOLEAN, is_bot BOOLEAN,
    reply_to BIGINT
)"""
RESET_MESSAGES = "DROP TABLE IF EXISTS bench_messages; " + MESSAGES_DDL
MESSAGE_COLUMNS = [
    "id", "guild_id", "channel_id", "author_id", "content", "created_at", "edited_at",
    "deleted", "is_bot", "reply_to",
]  # fmt: skip
KV_DDL = "CREATE TABLE bench_kv (id BIGINT PRIMARY KEY, name TEXT NOT NULL, value INTEGER NOT NULL)"
KV_ROWS = [(i, f"name-{i}", i * 7) for i in range(KEYS)]


# -- PostgreSQL ------------------------------------------------------------------------------


@asynccontextmanager
async def _pg_clients(env: dict[str, Any]) -> AsyncIterator[tuple[Any, botdb.Database]]:
    """A raw asyncpg connection and a botdb Database on the run's PostgreSQL database."""
    import asyncpg

    url = require(env, "pg_url")
    raw = await asyncpg.connect(url)
    db = await botdb.connect(url, pool_max_size=8)
    try:
        yield raw, db
    finally:
        await db.close()
        await raw.close()


@asynccontextmanager
async def pg_fetchrow_sequential(env: dict[str, Any]) -> AsyncIterator[Pair]:
    async with _pg_clients(env) as (raw, db):
        await raw.execute("DROP TABLE IF EXISTS bench_kv; " + KV_DDL)
        await raw.executemany("INSERT INTO bench_kv VALUES ($1, $2, $3)", KV_ROWS)
        query = "SELECT id, name, value FROM bench_kv WHERE id = $1"

        async def baseline() -> int:
            for i in range(LOOKUPS):
                await raw.fetchrow(query, i % KEYS)
            return LOOKUPS

        async def subject() -> int:
            for i in range(LOOKUPS):
                await db.fetchrow(query, i % KEYS)
            return LOOKUPS

        yield baseline, subject


async def _no_reset(_conn: Any) -> None:
    """asyncpg's pool runs a reset query on every release; botdb resets only a connection
    whose statements may have left session state, so the fair baseline skips it too."""


@asynccontextmanager
async def pg_fetchrow_concurrent(env: dict[str, Any], *, reset: bool = True) -> AsyncIterator[Pair]:
    import asyncpg

    url = require(env, "pg_url")
    pool = await asyncpg.create_pool(
        url, min_size=8, max_size=8, **({} if reset else {"reset": _no_reset})
    )
    await pool.execute("DROP TABLE IF EXISTS bench_kv; " + KV_DDL)
    await pool.executemany("INSERT INTO bench_kv VALUES ($1, $2, $3)", KV_ROWS)
    query = "SELECT id, name, value FROM bench_kv WHERE id = $1"
    db = await botdb.connect(url, pool_min_size=8, pool_max_size=8)
    per_task = LOOKUPS // 8

    async def run(fetchrow: Callable[..., Awaitable[Any]]) -> int:
        async def worker(start: int) -> None:
            for i in range(per_task):
                await fetchrow(query, (start + i) % KEYS)

        await asyncio.gather(*(worker(t * per_task) for t in range(8)))
        return per_task * 8

    async def baseline() -> int:
        return await run(pool.fetchrow)

    async def subject() -> int:
        return await run(db.fetchrow)

    try:
        yield baseline, subject
    finally:
        await db.close()
        await pool.close()


@asynccontextmanager
async def pg_execute_many(env: dict[str, Any]) -> AsyncIterator[Pair]:
    async with _pg_clients(env) as (raw, db):
        rows = _message_rows(ROWS)
        query = f"INSERT INTO bench_messages VALUES ({', '.join(f'${i}' for i in range(1, 11))})"

        async def baseline() -> int:
            await raw.execute(RESET_MESSAGES)
            async with raw.transaction():
                await raw.executemany(query, rows)
            return ROWS

        async def subject() -> int:
            await raw.execute(RESET_MESSAGES)
            await db.execute_many(query, rows)
            return ROWS

        yield baseline, subject


@asynccontextmanager
async def pg_copy(env: dict[str, Any]) -> AsyncIterator[Pair]:
    async with _pg_clients(env) as (raw, db):
        rows = _message_rows(ROWS * 5)

        async def baseline() -> int:
            await raw.execute(RESET_MESSAGES)
            await raw.copy_records_to_table("bench_messages", records=rows, columns=MESSAGE_COLUMNS)
            return len(rows)

        async def subject() -> int:
            await raw.execute(RESET_MESSAGES)
            await db.copy_records_to_table("bench_messages", records=rows, columns=MESSAGE_COLUMNS)
            return len(rows)

        yield baseline, subject


# -- SQLite ----------------------------------------------------------------------------------


def _sqlite_file(env: dict[str, Any], name: str) -> str:
    path = env["tmp"] / name
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("DROP TABLE IF EXISTS bench_kv")
    conn.execute(KV_DDL)
    conn.executemany("INSERT INTO bench_kv VALUES (?, ?, ?)", KV_ROWS)
    conn.close()
    return str(path)


@asynccontextmanager
async def sqlite_fetchrow(env: dict[str, Any]) -> AsyncIterator[Pair]:
    path = _sqlite_file(env, "fetchrow.db")
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA synchronous = NORMAL")
    db = await botdb.connect(f"sqlite:///{path}")

    async def baseline() -> int:
        cursor_query = "SELECT id, name, value FROM bench_kv WHERE id = ?"
        for i in range(LOOKUPS * 5):
            raw.execute(cursor_query, (i % KEYS,)).fetchone()
        return LOOKUPS * 5

    async def subject() -> int:
        query = "SELECT id, name, value FROM bench_kv WHERE id = $1"
        for i in range(LOOKUPS * 5):
            await db.fetchrow(query, i % KEYS)
        return LOOKUPS * 5

    try:
        yield baseline, subject
    finally:
        await db.close()
        raw.close()


@asynccontextmanager
async def aiosqlite_fetchrow(env: dict[str, Any]) -> AsyncIterator[Pair]:
    """Reference: what aiosqlite alone reaches against the same sync sqlite3 baseline."""
    import aiosqlite

    path = _sqlite_file(env, "aiosqlite.db")
    raw = sqlite3.connect(path)
    conn = await aiosqlite.connect(path)
    query = "SELECT id, name, value FROM bench_kv WHERE id = ?"

    async def baseline() -> int:
        for i in range(LOOKUPS):
            raw.execute(query, (i % KEYS,)).fetchone()
        return LOOKUPS

    async def subject() -> int:
        for i in range(LOOKUPS):
            async with conn.execute(query, (i % KEYS,)) as cursor:
                await cursor.fetchone()
        return LOOKUPS

    try:
        yield baseline, subject
    finally:
        await conn.close()
        raw.close()


@asynccontextmanager
async def sqlite_execute_many(env: dict[str, Any]) -> AsyncIterator[Pair]:
    path = env["tmp"] / "many.db"
    db = await botdb.connect(f"sqlite:///{path}")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA synchronous = NORMAL")
    rows = _message_rows(ROWS)

    def reset() -> None:
        raw.execute("DROP TABLE IF EXISTS bench_messages")
        raw.execute(MESSAGES_DDL)

    async def baseline() -> int:
        reset()
        # sqlite3 cannot bind an aware datetime itself: a bot formats it, as botdb does.
        raw_rows = [(*r[:5], r[5].isoformat(" ", "microseconds")[:26], *r[6:]) for r in rows]
        raw.execute("BEGIN")
        raw.executemany(f"INSERT INTO bench_messages VALUES ({', '.join('?' * 10)})", raw_rows)
        raw.execute("COMMIT")
        return ROWS

    async def subject() -> int:
        reset()
        query = f"INSERT INTO bench_messages VALUES ({', '.join(f'${i}' for i in range(1, 11))})"
        await db.execute_many(query, rows)
        return ROWS

    try:
        yield baseline, subject
    finally:
        await db.close()
        raw.close()


@asynccontextmanager
async def pg_fetchrow_concurrent_no_reset(env: dict[str, Any]) -> AsyncIterator[Pair]:
    async with pg_fetchrow_concurrent(env, reset=False) as pair:
        yield pair


TRANSACTIONS = 1_000


@asynccontextmanager
async def pg_transaction(env: dict[str, Any]) -> AsyncIterator[Pair]:
    """A two-statement transfer in a transaction: asyncpg's ``transaction()`` against
    botdb's, which also asks for the transaction's id before COMMIT (so that a COMMIT cut off
    by a lost connection can be resolved from the server)."""
    async with _pg_clients(env) as (raw, db):
        await raw.execute(
            "DROP TABLE IF EXISTS bench_wallets; "
            "CREATE TABLE bench_wallets (id int PRIMARY KEY, coins bigint NOT NULL); "
            "INSERT INTO bench_wallets VALUES (1, 0), (2, 0)"
        )
        sql = "UPDATE bench_wallets SET coins = coins + $1 WHERE id = $2"

        async def baseline() -> int:
            for _ in range(TRANSACTIONS):
                async with raw.transaction():
                    await raw.execute(sql, -1, 1)
                    await raw.execute(sql, 1, 2)
            return TRANSACTIONS

        async def subject() -> int:
            for _ in range(TRANSACTIONS):
                async with db.transaction() as conn:
                    await conn.execute(sql, -1, 1)
                    await conn.execute(sql, 1, 2)
            return TRANSACTIONS

        yield baseline, subject


@asynccontextmanager
async def pg_transaction_commit_check(env: dict[str, Any]) -> AsyncIterator[Pair]:
    """The cost of the commit check alone: the same botdb transaction without and with the
    transaction-id round trip (the baseline hides its writes from the check)."""
    async with _pg_clients(env) as (raw, db):
        await raw.execute(
            "DROP TABLE IF EXISTS bench_wallets; "
            "CREATE TABLE bench_wallets (id int PRIMARY KEY, coins bigint NOT NULL); "
            "INSERT INTO bench_wallets VALUES (1, 0), (2, 0)"
        )
        sql = "UPDATE bench_wallets SET coins = coins + $1 WHERE id = $2"

        async def run(check: bool) -> int:
            for _ in range(TRANSACTIONS):
                async with db.transaction() as conn:
                    await conn.execute(sql, -1, 1)
                    await conn.execute(sql, 1, 2)
                    conn._driver.wrote = check  # white-box: what decides the id round trip
            return TRANSACTIONS

        async def baseline() -> int:
            return await run(False)

        async def subject() -> int:
            return await run(True)

        yield baseline, subject


CASES: list[Case] = [
    Case("pg fetchrow by PK, sequential", "asyncpg connection", 0.9, pg_fetchrow_sequential),
    Case("pg fetchrow by PK, 8 tasks", "asyncpg pool of 8", 0.9, pg_fetchrow_concurrent),
    Case(
        "pg fetchrow by PK, 8 tasks",
        "asyncpg pool of 8 without its reset",
        0.9,
        pg_fetchrow_concurrent_no_reset,
    ),
    Case("pg transaction, 2 UPDATEs", "asyncpg transaction()", None, pg_transaction),
    Case(
        "pg transaction, commit check",
        "same, without the check",
        None,
        pg_transaction_commit_check,
    ),
    Case("pg execute_many", "asyncpg executemany", None, pg_execute_many),
    Case("pg copy_records_to_table", "asyncpg COPY", 0.95, pg_copy),
    Case("sqlite fetchrow by PK", "sqlite3 (sync)", 0.4, sqlite_fetchrow),
    Case("aiosqlite fetchone (reference)", "sqlite3 (sync)", None, aiosqlite_fetchrow),
    Case("sqlite execute_many", "sqlite3 executemany", None, sqlite_execute_many),
]
