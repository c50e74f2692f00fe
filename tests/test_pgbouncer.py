"""What pgbouncer's transaction pooling changes, shown through a private pgbouncer in front of
the test server (the ``pgbouncer_url`` fixture): two Databases (as two bot processes would)
share pgbouncer's server connections, concurrently, with raw statements, prepared statements,
ORM sessions, transactions and COPY, and nothing collides; the cache does not LISTEN.

The contract suites themselves run through pgbouncer as the ``"pgbouncer"`` backend (see
``PGBOUNCER_CONTRACT`` in conftest).
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

import botdb


@pytest.fixture
async def two(pgbouncer_url: str) -> list[botdb.Database]:
    dbs = [
        # 15 tasks per Database share 8 pool slots, and behind them pgbouncer's server
        # connections, which the whole run's pgbouncer tests share: on a loaded machine a
        # slot can wait longer than the default acquire timeout.
        await botdb.connect(
            pgbouncer_url,
            pgbouncer=True,
            pool_max_size=8,
            pool_min_size=1,
            pool_acquire_timeout=60.0,
        )
        for _ in range(2)
    ]
    yield dbs  # type: ignore[misc]
    for db in dbs:
        await db.close()


async def test_two_clients_share_server_connections_without_collisions(
    two: list[botdb.Database],
) -> None:
    first, second = two
    await first.execute("CREATE TABLE pb (id bigint PRIMARY KEY, owner int, body text)")

    async def work(db: botdb.Database, owner: int, n: int) -> None:
        base = owner * 1_000_000 + n * 1000
        # Parameterised statements (unnamed prepared statements, one Sync each).
        await db.execute("INSERT INTO pb VALUES ($1, $2, $3)", base, owner, "raw")
        assert await db.fetchval("SELECT body FROM pb WHERE id = $1", base) == "raw"
        # A prepared statement (checked once, then run).
        statement = await db.prepare_statement(f"s{owner}_{n}", "SELECT count(*) FROM pb")
        assert await statement.fetchval() >= 1
        # A transaction keeps its server connection to the end.
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO pb VALUES ($1, $2, 'tx')", base + 1, owner)
            assert await conn.fetchval("SELECT body FROM pb WHERE id = $1", base + 1) == "tx"
        # The ORM (SQLAlchemy prepares its statements by name).
        async with db.session() as session:
            found = await session.scalar(
                text("SELECT count(*) FROM pb WHERE owner = :o"), {"o": owner}
            )
            assert found is not None
            assert found >= 2
        # COPY.
        rows = [(base + 2 + i, owner, "copy") for i in range(5)]
        assert await db.copy_records_to_table("pb", records=rows) == "COPY 5"

    await asyncio.gather(*(work(db, owner, n) for owner, db in enumerate(two) for n in range(15)))
    assert await second.fetchval("SELECT count(*) FROM pb") == 2 * 15 * 7
    # The cache cannot LISTEN through pgbouncer: it is not started (TTL and Redis remain).
    assert first.cache._listener is None


async def test_the_cache_does_not_listen_behind_pgbouncer(pgbouncer_url: str) -> None:
    async with botdb.connect(pgbouncer_url, pgbouncer=True) as db:
        assert db.cache._listener is None
        assert db.settings.pgbouncer is True


_OTHER_PROCESS = """
import asyncio, sys
import botdb
from sqlalchemy import text

async def main():
    async with botdb.connect(sys.argv[1], pgbouncer=True, pool_max_size=2) as db:
        for _ in range(60):
            async with db.session() as session:
                await session.execute(text("SELECT count(*) FROM pb2 WHERE id > :n"), {"n": 0})
            await (await db.prepare_statement("p", "SELECT count(*) FROM pb2")).fetchval()

asyncio.run(main())
"""


async def test_two_processes_share_server_connections_without_name_collisions(
    pgbouncer_url: str,
) -> None:
    """Named prepared statements (asyncpg's per-process counter) would collide between two
    processes on one pgbouncer server connection: with the caches off none are named, for
    the raw API, ``prepare_statement`` and the ORM alike."""
    import sys

    async with botdb.connect(pgbouncer_url, pgbouncer=True, pool_max_size=2) as db:
        await db.execute("CREATE TABLE pb2 (id int PRIMARY KEY)")
        other = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _OTHER_PROCESS, pgbouncer_url, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(60):
            async with db.session() as session:
                await session.execute(text("SELECT count(*) FROM pb2 WHERE id > :n"), {"n": 0})
            await (await db.prepare_statement("p", "SELECT count(*) FROM pb2")).fetchval()
        _, stderr = await other.communicate()
        assert other.returncode == 0, stderr.decode()[-2000:]
