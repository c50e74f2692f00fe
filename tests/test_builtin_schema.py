"""The suite's reuse of the built-in schema between tests (tests/builtin_schema.py): a reset
schema is indistinguishable from a fresh one, and any change to it is noticed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import botdb
from tests import builtin_schema

pytestmark = pytest.mark.postgres

# What a test could observe of a schema besides its catalog and rows.
STATE = """
SELECT c.relname, c.relkind, pg_relation_size(c.oid) AS size, c.relpages, c.reltuples,
       c.relispopulated,
       (SELECT count(*) FROM pg_statistic s WHERE s.starelid = c.oid) AS column_stats,
       pg_stat_get_live_tuples(c.oid) AS live, pg_stat_get_dead_tuples(c.oid) AS dead,
       pg_stat_get_last_analyze_time(c.oid) AS analyzed,
       (SELECT last_value FROM pg_sequences q
         WHERE q.schemaname = 'public' AND q.sequencename = c.relname) AS sequence_value
  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
  ORDER BY c.relname
"""


@pytest.fixture
async def conn(pg_url: str) -> AsyncIterator[Any]:
    import asyncpg

    await builtin_schema.make_builtin_schema(pg_url)
    connection = await asyncpg.connect(pg_url)
    try:
        yield connection
    finally:
        await connection.close()


async def state(conn: Any) -> list[dict[str, Any]]:
    await conn.execute("SELECT pg_stat_force_next_flush()")
    return [dict(row) for row in await conn.fetch(STATE)]


async def test_reset_data_gives_back_the_state_of_a_fresh_create_tables(
    pg_url: str, conn: Any
) -> None:
    fresh_schema = await builtin_schema.capture(conn)
    fresh_catalog = fresh_schema.fingerprint
    fresh = await state(conn)
    async with botdb.connect(pg_url) as db:
        await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'one'), (2, 'two')")
        await db.execute("INSERT INTO channels (id, guild_id, name) VALUES (10, 1, 'c')")
        await db.execute("INSERT INTO users (id, username) VALUES (100, 'u')")
        await db.execute(
            "INSERT INTO messages (id, guild_id, channel_id, author_id, created_at) "
            "VALUES (5, 1, 10, 100, now())"
        )
        await db.execute("INSERT INTO join_leave_logs (guild_id, user_id, event) "
                         "VALUES (1, 100, 'join')")  # fmt: skip
        await db.execute("DELETE FROM guilds WHERE id = 2")
        await db.stats.refresh()
        await db.execute("ANALYZE")
    assert await state(conn) != fresh  # the writes above are visible to the comparison

    assert await builtin_schema.fingerprint(conn) == fresh_catalog
    await builtin_schema.reset_data(conn, fresh_schema)

    assert await builtin_schema.fingerprint(conn) == fresh_catalog
    assert await state(conn) == fresh


async def test_a_second_fresh_schema_has_the_same_fingerprint(pg_url: str, conn: Any) -> None:
    first = await builtin_schema.capture(conn)
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    await builtin_schema.make_builtin_schema(pg_url)
    assert await builtin_schema.capture(conn) == first


@pytest.mark.parametrize(
    "change",
    [
        "ALTER TABLE guilds ADD COLUMN extra INTEGER",
        "ALTER TABLE guilds ALTER COLUMN name SET DEFAULT 'x'",
        "CREATE INDEX extra ON guilds (name)",
        "CREATE TABLE extra (id INTEGER)",
        "CREATE SEQUENCE extra",
        "CREATE FUNCTION extra() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
        "COMMENT ON TABLE guilds IS 'changed'",
        "REFRESH MATERIALIZED VIEW stats_message_hourly WITH NO DATA",
        "ALTER TABLE guilds DISABLE TRIGGER ALL",
        "DROP MATERIALIZED VIEW stats_member_hourly",
    ],
)
async def test_a_changed_schema_has_another_fingerprint(conn: Any, change: str) -> None:
    before = await builtin_schema.fingerprint(conn)
    await conn.execute(change)
    assert await builtin_schema.fingerprint(conn) != before
