"""The raw SQL API contract: every test runs on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

import botdb
from botdb import errors
from tests.helpers import MakeDB, in_use, pg_backend_running, wait_until

SCHEMA = """
CREATE TABLE guilds (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL DEFAULT '!',
    CHECK (length(prefix) BETWEEN 1 AND 5)
);
CREATE TABLE members (
    guild_id BIGINT NOT NULL REFERENCES guilds (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL,
    nick TEXT,
    xp INTEGER NOT NULL DEFAULT 0,
    joined_at TIMESTAMPTZ,
    PRIMARY KEY (guild_id, user_id)
);
"""


@pytest.fixture
async def db(make_db: MakeDB) -> botdb.Database:
    """This module's own schema (no built-in tables) in a pool of four."""
    database = await make_db(pool_max_size=4)
    await database.execute_script(SCHEMA)
    return database


class TestRawAPI:
    """asyncpg's API, with the same results on both backends."""

    async def test_execute_returns_the_server_status(self, db: botdb.Database) -> None:
        assert await db.execute("INSERT INTO guilds (id, name) VALUES ($1, $2)", 1, "a") == (
            "INSERT 0 1"
        )
        await db.execute("INSERT INTO guilds (id, name) VALUES ($1, $2)", 2, "b")
        assert await db.execute("UPDATE guilds SET name = name || $1", "!") == "UPDATE 2"
        assert await db.execute("DELETE FROM guilds WHERE id = $1", 99) == "DELETE 0"
        assert await db.execute("CREATE TABLE t (x INTEGER)") == "CREATE TABLE"

    async def test_fetch_fetchrow_fetchval(self, db: botdb.Database) -> None:
        await db.execute_many(
            "INSERT INTO guilds (id, name) VALUES ($1, $2)", [(1, "one"), (2, "two")]
        )
        rows = await db.fetch("SELECT id, name FROM guilds ORDER BY id")
        assert [(r["id"], r["name"]) for r in rows] == [(1, "one"), (2, "two")]
        assert (await db.fetchrow("SELECT name FROM guilds WHERE id = $1", 2))["name"] == "two"
        assert await db.fetchrow("SELECT name FROM guilds WHERE id = $1", 3) is None
        assert await db.fetchval("SELECT count(*) FROM guilds") == 2
        assert await db.fetchval("SELECT id, name FROM guilds WHERE id = 1", column=1) == "one"
        assert await db.fetchval("SELECT name FROM guilds WHERE id = 3") is None
        assert await db.fetch("SELECT * FROM guilds WHERE id > $1", 10) == []

    async def test_record_reads_like_asyncpg(self, db: botdb.Database) -> None:
        await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'one')")
        row = await db.fetchrow("SELECT id, name, prefix FROM guilds")
        assert isinstance(row, botdb.Record)
        assert row["name"] == row[1] == row.get("name") == "one"
        assert row.get("missing", "default") == "default"
        assert dict(row) == {"id": 1, "name": "one", "prefix": "!"}
        assert list(row) == [1, "one", "!"]
        assert list(row.keys()) == ["id", "name", "prefix"]
        assert len(row) == 3
        with pytest.raises(KeyError):
            row["missing"]

    async def test_execute_many_is_atomic(self, db: botdb.Database) -> None:
        with pytest.raises(errors.UniqueViolationError):
            await db.execute_many(
                "INSERT INTO guilds (id, name) VALUES ($1, $2)", [(1, "a"), (2, "b"), (1, "c")]
            )
        assert await db.fetchval("SELECT count(*) FROM guilds") == 0

    async def test_copy_records_to_table(self, db: botdb.Database) -> None:
        await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'g')")
        joined = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
        records = [(1, uid, f"n{uid}", uid * 10, joined) for uid in range(500)]
        status = await db.copy_records_to_table(
            "members", records=records, columns=["guild_id", "user_id", "nick", "xp", "joined_at"]
        )
        assert status == "COPY 500"
        assert await db.fetchval("SELECT sum(xp) FROM members") == sum(r[3] for r in records)
        await db.copy_records_to_table("guilds", records=[(2, "h", "?")])  # all columns
        assert await db.fetchval("SELECT prefix FROM guilds WHERE id = 2") == "?"

    async def test_copy_into_an_unknown_table_fails_and_changes_nothing(
        self, db: botdb.Database
    ) -> None:
        with pytest.raises(errors.UndefinedTableError):
            await db.copy_records_to_table("no_such_table", records=[(1,)], columns=["x"])

    async def test_execute_in_transaction_applies_all_or_nothing(self, db: botdb.Database) -> None:
        await db.execute_in_transaction(
            [
                ("INSERT INTO guilds (id, name) VALUES ($1, $2)", (1, "a")),
                ("UPDATE guilds SET name = $1 WHERE id = $2", ("b", 1)),
            ]
        )
        assert await db.fetchval("SELECT name FROM guilds WHERE id = 1") == "b"
        with pytest.raises(errors.NotNullViolationError):
            await db.execute_in_transaction(
                [
                    ("INSERT INTO guilds (id, name) VALUES ($1, $2)", (2, "c")),
                    ("INSERT INTO guilds (id, name) VALUES ($1, $2)", (3, None)),
                ]
            )
        assert await db.fetchval("SELECT count(*) FROM guilds") == 1

    async def test_transaction_commits_or_rolls_back(self, db: botdb.Database) -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO guilds (id, name) VALUES (1, 'kept')")
            assert await conn.fetchval("SELECT count(*) FROM guilds") == 1
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO guilds (id, name) VALUES (2, 'dropped')")
                raise RuntimeError("boom")
        assert [r["name"] for r in await db.fetch("SELECT name FROM guilds")] == ["kept"]

    async def test_nested_transaction_is_a_savepoint(self, db: botdb.Database) -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO guilds (id, name) VALUES (1, 'outer')")
            with pytest.raises(errors.UniqueViolationError):
                async with conn.transaction():
                    await conn.execute("INSERT INTO guilds (id, name) VALUES (2, 'inner')")
                    await conn.execute("INSERT INTO guilds (id, name) VALUES (2, 'dup')")
            await conn.execute("INSERT INTO guilds (id, name) VALUES (3, 'after')")
        assert await db.fetchval("SELECT count(*) FROM guilds") == 2

    async def test_connection_used_after_its_block_is_refused(self, db: botdb.Database) -> None:
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
        with pytest.raises(errors.InterfaceError):
            await conn.fetchval("SELECT 1")

    async def test_prepared_statement(self, db: botdb.Database) -> None:
        insert = db.prepare_statement("add_guild", "INSERT INTO guilds (id, name) VALUES ($1, $2)")
        by_id = db.prepare_statement("guild_by_id", "SELECT name FROM guilds WHERE id = $1")
        for gid in range(3):
            assert await insert.execute(gid, f"g{gid}") == "INSERT 0 1"
        assert await by_id.fetchval(2) == "g2"
        assert (await by_id.fetchrow(1))["name"] == "g1"
        assert [r["name"] for r in await by_id.fetch(0)] == ["g0"]

    async def test_execute_script_from_a_file(self, db: botdb.Database, tmp_path: Path) -> None:
        script = tmp_path / "seed.sql"
        script.write_text(
            "-- seed; with a semicolon in a comment\n"
            "INSERT INTO guilds (id, name) VALUES (1, 'a;b');\n"
            "INSERT INTO guilds (id, name) VALUES (2, 'c');\n"
        )
        await db.execute_script(script)
        assert await db.fetchval("SELECT name FROM guilds WHERE id = 1") == "a;b"

    async def test_failing_script_changes_nothing(self, db: botdb.Database) -> None:
        with pytest.raises(errors.UniqueViolationError):
            await db.execute_script(
                "INSERT INTO guilds (id, name) VALUES (1, 'a');"
                "INSERT INTO guilds (id, name) VALUES (1, 'again');"
            )
        assert await db.fetchval("SELECT count(*) FROM guilds") == 0


class TestPlaceholders:
    """``$n`` placeholders behave the same on both backends."""

    async def test_ten_and_more_parameters(self, db: botdb.Database) -> None:
        args = list(range(1, 12))
        query = "SELECT " + ", ".join(f"${n}::int" for n in range(11, 0, -1))
        row = await db.fetchrow(query, *args)
        assert list(row) == list(reversed(args))

    async def test_dollar_inside_literals_identifiers_and_comments(
        self, db: botdb.Database
    ) -> None:
        value = await db.fetchval(
            """SELECT '$1 costs $2' || $1 AS "col$1" -- $2 is not a parameter
               /* neither is $3 */""",
            "!",
        )
        assert value == "$1 costs $2!"

    async def test_repeated_parameter(self, db: botdb.Database) -> None:
        assert await db.fetchval("SELECT $1::int + $1::int * $2::int", 2, 10) == 22


class TestPostgresIsms:
    """The PostgreSQL constructs bots use run on SQLite too, with the same results."""

    async def test_now_and_interval_arithmetic(self, db: botdb.Database) -> None:
        await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'g')")
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
        await db.execute(
            "INSERT INTO members (guild_id, user_id, joined_at) VALUES (1, 1, $1), (1, 2, NOW())",
            old,
        )
        recent = await db.fetch(
            "SELECT user_id FROM members WHERE joined_at > NOW() - INTERVAL '1 day'"
        )
        assert [r["user_id"] for r in recent] == [2]
        soon = await db.fetchval(
            "SELECT count(*) FROM members WHERE joined_at < NOW() + INTERVAL '2 hours'"
        )
        assert soon == 2

    async def test_ilike_is_case_insensitive_and_like_is_not(self, db: botdb.Database) -> None:
        await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'Python Hub')")
        assert await db.fetchval("SELECT count(*) FROM guilds WHERE name ILIKE $1", "python%") == 1
        assert await db.fetchval("SELECT count(*) FROM guilds WHERE name LIKE $1", "python%") == 0

    async def test_any_with_a_list(self, db: botdb.Database) -> None:
        await db.execute_many(
            "INSERT INTO guilds (id, name) VALUES ($1, $2)", [(i, f"g{i}") for i in range(5)]
        )
        rows = await db.fetch("SELECT id FROM guilds WHERE id = ANY($1) ORDER BY id", [1, 3, 9])
        assert [r["id"] for r in rows] == [1, 3]
        names = await db.fetchval(
            "SELECT count(*) FROM guilds WHERE name = ANY($1::text[])", ["g0", "g4"]
        )
        assert names == 2

    async def test_returning_and_on_conflict(self, db: botdb.Database) -> None:
        row = await db.fetchrow(
            "INSERT INTO guilds (id, name) VALUES ($1, $2) RETURNING id, name", 1, "first"
        )
        assert dict(row) == {"id": 1, "name": "first"}
        assert (
            await db.execute(
                "INSERT INTO guilds (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                1,
                "ignored",
            )
            == "INSERT 0 0"
        )
        upserted = await db.fetchval(
            "INSERT INTO guilds (id, name) VALUES ($1, $2) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING name",
            1,
            "second",
        )
        assert upserted == "second"

    async def test_boolean_literals(self, db: botdb.Database) -> None:
        assert await db.fetchval("SELECT CASE WHEN TRUE AND NOT FALSE THEN 1 ELSE 0 END") == 1


class TestErrors:
    """Every error class, mapped from a real violation by the server on both backends."""

    async def test_unique_violation_names_the_table(self, db: botdb.Database) -> None:
        await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'a')")
        with pytest.raises(errors.UniqueViolationError) as info:
            await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'b')")
        assert info.value.table == "guilds"
        assert isinstance(info.value.__cause__, Exception)
        assert isinstance(info.value, errors.IntegrityError)

    async def test_foreign_key_violation(self, db: botdb.Database) -> None:
        with pytest.raises(errors.ForeignKeyViolationError):
            await db.execute("INSERT INTO members (guild_id, user_id) VALUES (404, 1)")

    async def test_not_null_violation_names_the_column(self, db: botdb.Database) -> None:
        with pytest.raises(errors.NotNullViolationError) as info:
            await db.execute("INSERT INTO guilds (id, name) VALUES (1, NULL)")
        assert info.value.column == "name"

    async def test_check_violation(self, db: botdb.Database) -> None:
        with pytest.raises(errors.CheckViolationError):
            await db.execute("INSERT INTO guilds (id, name, prefix) VALUES (1, 'a', '')")

    async def test_syntax_error(self, db: botdb.Database) -> None:
        with pytest.raises(errors.SQLSyntaxError):
            await db.execute("SELEC 1")

    async def test_unknown_table_and_column(self, db: botdb.Database) -> None:
        with pytest.raises(errors.UndefinedTableError, match="nowhere"):
            await db.fetch("SELECT * FROM nowhere")
        with pytest.raises(errors.UndefinedColumnError, match="no_such_column"):
            await db.fetch("SELECT no_such_column FROM guilds")

    async def test_wrong_argument_count(self, db: botdb.Database) -> None:
        with pytest.raises(errors.ArgumentError, match="2 arguments"):
            await db.execute("INSERT INTO guilds (id, name) VALUES ($1, $2)", 1)

    async def test_wrong_argument_type(self, db: botdb.Database) -> None:
        """An argument of a type no column takes is an ArgumentError ("wrong number or type of
        query arguments"), on both backends."""
        with pytest.raises(errors.ArgumentError):
            await db.execute("INSERT INTO guilds (id, name) VALUES ($1, $2)", 1, object())
        assert await db.fetchval("SELECT count(*) FROM guilds") == 0

    async def test_statement_timeout(self, db: botdb.Database) -> None:
        slow = (
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 50000000) "
            "SELECT count(*) FROM c"
        )
        with pytest.raises(errors.QueryTimeoutError):
            await db.fetchval(slow, timeout=0.2)
        assert await db.fetchval("SELECT 1") == 1  # the pool is fine afterwards

    async def test_integrity_errors_are_not_retried(self, db: botdb.Database) -> None:
        await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'a')")
        with pytest.raises(errors.UniqueViolationError):
            await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'a')")
        assert db.stats()["retries"] == 0


class TestLifecycleAndObservability:
    async def test_cancelled_query_returns_its_connection(self, db: botdb.Database) -> None:
        slow = (
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 50000000) "
            "SELECT count(*) FROM c"
        )
        task = asyncio.create_task(db.fetchval(slow))
        await wait_until(lambda: in_use(db) == 1)  # the query holds its connection
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(10):  # more than the pool holds: leaked connections would block
            assert await db.fetchval("SELECT 2") == 2

    async def test_slow_query_is_logged_without_parameters(
        self, make_db: MakeDB, caplog: pytest.LogCaptureFixture
    ) -> None:
        database = await make_db(slow_query_ms=0)
        with caplog.at_level(logging.WARNING, logger="botdb.query"):
            await database.fetchval("SELECT $1::text", "secret-value")
        messages = [r.getMessage() for r in caplog.records if r.name == "botdb.query"]
        assert any("slow query" in m and "SELECT $1::text" in m for m in messages)
        assert not any("secret-value" in m for m in messages)

    async def test_stats_count_queries_errors_and_latency(self, db: botdb.Database) -> None:
        before = db.stats()["queries"]
        for _ in range(5):
            await db.fetchval("SELECT 1")
        with pytest.raises(errors.SQLSyntaxError):
            await db.execute("SELEC")
        stats = db.stats()
        assert stats["queries"] - before == 5
        assert stats["errors"] >= 1
        assert stats["latency_ms"]["p50"] is not None
        assert stats["pool"]["open"] is True

    async def test_health_check_has_the_seed_shape(self, db: botdb.Database) -> None:
        health = await db.health_check()
        assert health["status"] == "healthy"
        assert health["database_available"] is True
        assert health["backend"] == db.backend
        assert health["latency_ms"] >= 0
        assert health["errors"] == []
        assert "pool" in health
        assert await db.check_connection_health() is True
        checked = await db.validate_connections()
        assert checked["valid"] == checked["checked"] >= 1

    async def test_health_check_of_a_closed_database_is_unhealthy(self, db_url: str) -> None:
        database = botdb.connect(db_url)
        health = await database.health_check()
        assert health["status"] == "unhealthy"
        assert health["database_available"] is False

    async def test_await_connect_returns_a_connected_database(self, db_url: str) -> None:
        database = await botdb.connect(db_url)
        try:
            assert await database.fetchval("SELECT 41 + 1") == 42
        finally:
            await database.close()
        with pytest.raises(errors.InterfaceError):
            await database.fetchval("SELECT 1")


# -- the pool's hand-offs: waiters, timeouts, closing -----------------------------------------

# Runs until interrupted (minutes otherwise): a slow statement that cannot end on its own
# before an acquire timeout does.
ENDLESS_SQLITE = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000000) "
    "SELECT count(*) FROM c"
)


@pytest.fixture
async def small_db(make_db: MakeDB) -> botdb.Database:
    """Two connections in all, a short acquire timeout: pool exhaustion shows at once."""
    database = await make_db(pool_max_size=2, pool_min_size=1, pool_acquire_timeout=2.0)
    await database.execute("CREATE TABLE t (id INTEGER)")
    return database


async def _outside_count(url: str, table: str) -> int:
    """Rows of ``table`` as a connection outside botdb's pool sees them (committed data)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(Path(url.removeprefix("sqlite:///"))) as outside:
            count = int(outside.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        outside.close()
        return count
    import asyncpg

    outside_pg = await asyncpg.connect(url)
    try:
        return int(await outside_pg.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await outside_pg.close()


async def test_a_bare_begin_through_the_raw_api_leaves_no_transaction_open(
    small_db: botdb.Database, db_url: str
) -> None:
    """db.execute("BEGIN") is accepted, and the next write is committed at once: a pooled
    connection never keeps a transaction open for the next caller."""
    assert await small_db.execute("BEGIN") == "BEGIN"
    await small_db.execute("INSERT INTO t (id) VALUES (1)")
    assert await _outside_count(db_url, "t") == 1


async def test_a_waiter_gets_the_slot_a_discarded_connection_frees(
    small_db: botdb.Database, backend: str, db_url: str
) -> None:
    """When a cancelled statement's connection is dropped, a queued caller gets its slot
    (before its 2 s acquire timeout: the statement itself would run for minutes)."""
    slow_sql = ENDLESS_SQLITE if backend == "sqlite" else "SELECT pg_sleep(600)"
    async with small_db.acquire():  # holds the first connection
        slow = asyncio.create_task(small_db.fetchval(slow_sql))  # holds the second
        if backend == "postgresql":
            await pg_backend_running(db_url, "pg_sleep(600)")
        await wait_until(lambda: in_use(small_db) == 2)
        waiter = asyncio.create_task(small_db.fetchval("SELECT 1"))
        await wait_until(lambda: small_db.pool_stats()["waiting"] == 1)
        slow.cancel()  # its connection is discarded (a cancelled statement)
        assert await waiter == 1
        with pytest.raises(asyncio.CancelledError):
            await slow


async def test_an_acquire_timeout_racing_a_release_loses_no_connection(sqlite_url: str) -> None:
    """A connection handed to a waiter whose timeout fires in the same loop turn is not lost.

    White-box: the race needs the lease pool's own acquire/release, timed to one loop turn;
    what it pins is read from the public ``pool_stats()``.
    """
    async with botdb.connect(
        sqlite_url, pool_max_size=1, pool_min_size=1, pool_acquire_timeout=0.2
    ) as db:
        leases = db._core.leases
        assert leases is not None
        held = await leases.acquire()
        try:
            waiter = asyncio.create_task(leases.acquire())
            await asyncio.sleep(0)  # the waiter is queued; its deadline is now + 0.2 s
            loop = asyncio.get_running_loop()
            loop.call_at(loop.time() + 0.05, leases.release, held)  # due before the deadline
            time.sleep(0.3)  # noqa: ASYNC251 - both timers fall due in one loop turn, on purpose
            try:
                handed = await waiter
            except errors.QueryTimeoutError:
                handed = None
            if handed is not None:
                leases.release(handed)
            stats = db.pool_stats()
            assert stats["leased"] == stats["leased_idle"], stats  # every lease accounted for
        finally:
            if in_use(db):  # leaked by the bug: hand it back for a clean teardown
                leases.release(held)


async def test_closing_the_database_fails_waiters_with_interface_error(sqlite_url: str) -> None:
    """A caller queued for a connection when the database closes gets InterfaceError."""
    db = await botdb.connect(sqlite_url, pool_max_size=1, pool_min_size=1)
    holder_in = asyncio.Event()
    holder_out = asyncio.Event()

    async def hold() -> None:
        async with db.acquire():
            holder_in.set()
            await holder_out.wait()

    holder = asyncio.create_task(hold())
    await holder_in.wait()
    waiter = asyncio.create_task(db.fetchval("SELECT 1"))
    await wait_until(lambda: db.pool_stats()["waiting"] == 1)
    await db.close()
    holder_out.set()
    await holder
    with pytest.raises(errors.InterfaceError):
        await waiter


async def test_two_sessions_fit_in_a_pool_of_two_with_idle_leases(sqlite_url: str) -> None:
    """Two sessions open at once in a pool of two, even when the raw API left idle leases."""
    async with botdb.connect(
        sqlite_url, pool_max_size=2, pool_min_size=2, pool_acquire_timeout=1.0
    ) as db:
        assert db.pool_stats()["leased_idle"] == 2
        async with db.session() as first, db.session() as second:
            assert (await first.execute(text("SELECT 1"))).scalar() == 1
            assert (await second.execute(text("SELECT 2"))).scalar() == 2


async def test_a_full_pool_in_a_session_is_a_query_timeout_error(make_db: MakeDB) -> None:
    """A session that waits past pool_acquire_timeout for a connection raises the raw API's
    QueryTimeoutError (not SQLAlchemy's TimeoutError), and the pool works once one is free."""
    db = await make_db(pool_max_size=1, pool_min_size=1, pool_acquire_timeout=0.2)
    async with db.acquire() as held:  # the pool's only connection
        assert await held.fetchval("SELECT 1") == 1
        with pytest.raises(errors.QueryTimeoutError, match="no database connection became free"):
            async with db.session() as session:
                await session.execute(text("SELECT 1"))
        with pytest.raises(errors.QueryTimeoutError):
            async with db.session(readonly=True):
                pass
        with pytest.raises(errors.QueryTimeoutError):
            await db.run_in_session(lambda s: s.execute(text("SELECT 1")), readonly=True)
    async with db.session() as session:
        assert (await session.execute(text("SELECT 2"))).scalar() == 2


class TestReadOnlySessions:
    """``db.session(readonly=True)``: reads run; a write or a locking read raises
    ReadOnlyError before anything is sent, and nothing changes."""

    async def test_reads_run(self, db: botdb.Database) -> None:
        await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'a')")
        async with db.session(readonly=True) as session:
            assert (await session.execute(text("SELECT count(*) FROM guilds"))).scalar() == 1

        async def names(session: AsyncSession) -> list[str]:
            result = await session.execute(text("SELECT name FROM guilds"))
            return [row[0] for row in result]

        assert await db.run_in_session(names, readonly=True) == ["a"]

    @pytest.mark.parametrize(
        "statement",
        [
            "INSERT INTO guilds (id, name) VALUES (2, 'b')",
            "UPDATE guilds SET name = 'z'",
            "DELETE FROM guilds",
            "CREATE TABLE t (x INTEGER)",
            "WITH gone AS (DELETE FROM guilds RETURNING id) SELECT count(*) FROM gone",
        ],
    )
    async def test_writes_are_refused(self, db: botdb.Database, statement: str) -> None:
        await db.execute("INSERT INTO guilds (id, name) VALUES (1, 'a')")
        with pytest.raises(errors.ReadOnlyError, match="read-only session"):
            async with db.session(readonly=True) as session:
                await session.execute(text(statement))

        async def write(session: AsyncSession) -> None:
            await session.execute(text(statement))

        with pytest.raises(errors.ReadOnlyError):
            await db.run_in_session(write, readonly=True)
        assert await db.fetch("SELECT id, name FROM guilds") == [(1, "a")]

    async def test_a_changed_object_is_refused_at_the_end(self, db: botdb.Database) -> None:
        from botdb.models import Base, Guild

        await db.create_tables(Base.metadata)
        with pytest.raises(errors.ReadOnlyError):
            async with db.session(readonly=True) as session:
                session.add(Guild(id=5, platform="discord"))
        assert await db.repo(Guild).count() == 0

    @pytest.mark.parametrize("backend", ["postgresql", "pgbouncer"])  # SQLite: no FOR UPDATE
    async def test_locking_reads_are_refused(self, db: botdb.Database) -> None:
        with pytest.raises(errors.ReadOnlyError):
            async with db.session(readonly=True) as session:
                await session.execute(text("SELECT id FROM guilds FOR UPDATE"))

    @pytest.mark.parametrize("backend", ["postgresql", "pgbouncer"])
    async def test_postgresql_refuses_a_write_the_check_cannot_see(self, make_db: MakeDB) -> None:
        """A function that writes, called by a SELECT: the transaction is READ ONLY, so the
        server refuses it (SQLSTATE 25006), typed as the same error."""
        db = await make_db(pool_max_size=1, pool_min_size=1)  # one connection for both sessions
        await db.execute_script(SCHEMA)
        await db.execute(
            "CREATE FUNCTION add_guild() RETURNS int LANGUAGE sql AS "
            "$$ INSERT INTO guilds (id, name) VALUES (7, 'x') RETURNING 1 $$"
        )
        # A session takes the raw API's idle connection only once its reset is done.
        await wait_until(lambda: db.pool_stats()["leased_idle"] == 1)
        with pytest.raises(errors.ReadOnlyError) as caught:
            async with db.session(readonly=True) as session:
                await session.execute(text("SELECT add_guild()"))
        assert caught.value.sqlstate == "25006"
        assert await db.fetchval("SELECT count(*) FROM guilds") == 0
        # A read-write session still writes (READ ONLY is not left on a pooled connection).
        async with db.session() as session:
            assert (await session.execute(text("SELECT add_guild()"))).scalar() == 1
