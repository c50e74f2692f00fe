"""botdb.testing: isolated databases for bots' own tests."""

from __future__ import annotations

from pathlib import Path

import botdb
from botdb.testing import database_at, temporary_database
from tests.conftest import PG_ADMIN_DSN


async def test_in_memory_database_has_the_built_in_tables_and_is_isolated() -> None:
    async with temporary_database() as first, temporary_database() as second:
        await first.execute("INSERT INTO guilds (id, name) VALUES (1, 'only in first')")
        assert await first.fetchval("SELECT count(*) FROM guilds") == 1
        assert await second.fetchval("SELECT count(*) FROM guilds") == 0


async def test_postgres_database_is_created_and_dropped(pg_server_url: str) -> None:
    async with temporary_database(PG_ADMIN_DSN) as db:
        name = await db.fetchval("SELECT current_database()")
        assert name.startswith("botdb_test_")
        assert await db.fetchval("SELECT count(*) FROM guilds") == 0
    async with botdb.connect(PG_ADMIN_DSN) as admin:
        assert (
            await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) == 0
        )


async def test_database_at_connects_to_a_given_url_and_keeps_its_data(tmp_path: Path) -> None:
    """database_at(url) creates the tables on the database named, and closes it afterwards."""
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    async with database_at(url) as db:
        await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'kept')")
    assert db.pool_stats() == {"open": False}
    async with database_at(url, create_tables=False) as again:
        assert await again.fetchval("SELECT name FROM guilds WHERE id = 1") == "kept"


async def test_database_at_without_tables_creates_nothing(tmp_path: Path) -> None:
    async with database_at(f"sqlite:///{tmp_path / 'bot.db'}", create_tables=False) as db:
        assert await db.fetchval("SELECT count(*) FROM sqlite_master WHERE type = 'table'") == 0
