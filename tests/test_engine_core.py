"""The engine's promises against the real servers: connections handed on clean, a COMMIT cut
off by a lost connection resolved from PostgreSQL, every error typed while backends are killed,
prepared statements as asyncpg's API has them."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

import botdb
from botdb import errors
from tests.helpers import wait_until

#: The raw API's contract also runs through pgbouncer in transaction mode (see conftest).
PGBOUNCER_CONTRACT = True
CITUS_CONTRACT = True


@pytest.fixture
async def one_conn_db(db_url: str) -> AsyncIterator[botdb.Database]:
    """A database whose pool holds one connection: the next caller surely gets the same one."""
    async with botdb.connect(db_url, pool_max_size=1, pool_min_size=1) as db:
        yield db


# -- connections are handed on clean ---------------------------------------------------------


async def _backend_id(db: botdb.Database) -> Any:
    if db.backend == "postgresql":
        return await db.fetchval("SELECT pg_backend_pid()")
    async with db.acquire() as conn:
        return id(conn.driver_connection)


class TestResetOnRelease:
    """What one caller does to its session never reaches the next caller."""

    async def test_a_setting_is_not_seen_by_the_next_caller(
        self, one_conn_db: botdb.Database
    ) -> None:
        db = one_conn_db
        if db.backend == "postgresql":
            pid = await _backend_id(db)
            await db.execute("SET statement_timeout = '1ms'")
            assert await db.fetchval("SHOW statement_timeout") == "0"
            assert await _backend_id(db) == pid  # reset, not reconnected
        else:
            await db.execute("PRAGMA foreign_keys = OFF")
            assert await db.fetchval("PRAGMA foreign_keys") == 1
            await db.execute("PRAGMA query_only = ON")
            await db.execute("CREATE TABLE t (id INTEGER)")  # would fail while query_only

    async def test_a_setting_made_in_a_block_is_reset_when_it_ends(
        self, one_conn_db: botdb.Database
    ) -> None:
        db = one_conn_db
        if db.backend == "postgresql":
            async with db.acquire() as conn:
                await conn.execute("SET search_path = pg_catalog")
            assert await db.fetchval("SHOW search_path") == '"$user", public'
        else:
            async with db.acquire() as conn:
                await conn.execute("PRAGMA case_sensitive_like = OFF")
            assert await db.fetchval("SELECT 'a' LIKE 'A'") == 0

    async def test_a_temporary_table_is_not_seen_by_the_next_caller(
        self, one_conn_db: botdb.Database
    ) -> None:
        db = one_conn_db
        await db.execute("CREATE TEMPORARY TABLE scratch (id INTEGER)")
        with pytest.raises(errors.UndefinedTableError):
            await db.fetchval("SELECT count(*) FROM scratch")

    async def test_a_temporary_table_made_through_the_orm_is_dropped(
        self, one_conn_db: botdb.Database
    ) -> None:
        db = one_conn_db
        async with db.session() as session:
            await session.execute(text("CREATE TEMPORARY TABLE scratch (id INTEGER)"))
        with pytest.raises(errors.UndefinedTableError):
            async with db.session() as session:
                await session.execute(text("SELECT count(*) FROM scratch"))

    async def test_a_driver_connection_touched_by_the_caller_is_reset(
        self, one_conn_db: botdb.Database
    ) -> None:
        db = one_conn_db
        async with db.acquire() as conn:
            raw = conn.driver_connection
            if db.backend == "postgresql":
                await raw.execute("CREATE TEMP TABLE scratch (id int)")
            else:
                raw.execute("CREATE TEMP TABLE scratch (id int)")
        with pytest.raises(errors.UndefinedTableError):
            await db.fetchval("SELECT count(*) FROM scratch")


@pytest.mark.postgres
class TestResetOnReleasePostgres:
    """Advisory locks and listeners, which only PostgreSQL has."""

    async def test_an_advisory_lock_is_released_for_the_next_caller(self, pg_url: str) -> None:
        async with botdb.connect(pg_url, pool_max_size=1) as db:
            assert await db.fetchval("SELECT pg_advisory_lock(42) IS NOT NULL")
            other = await asyncpg.connect(pg_url)
            try:
                # Another session can take it: the pooled connection no longer holds it.
                assert await other.fetchval("SELECT pg_try_advisory_lock(42)") is True
            finally:
                await other.close()
            held = await db.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            assert held == 0

    async def test_a_listen_is_not_carried_to_the_next_caller(self, pg_url: str) -> None:
        async with botdb.connect(pg_url, pool_max_size=1) as db:
            await db.execute("LISTEN botdb_test_channel")
            assert await db.fetch("SELECT pg_listening_channels()") == []

    async def test_an_open_cursor_is_closed_for_the_next_caller(self, pg_url: str) -> None:
        async with botdb.connect(pg_url, pool_max_size=1) as db:
            await db.execute("DECLARE held CURSOR WITH HOLD FOR SELECT 1")
            assert await db.fetchval("SELECT count(*) FROM pg_cursors WHERE name = 'held'") == 0

    async def test_a_plain_statement_costs_no_reset(self, pg_url: str) -> None:
        async with botdb.connect(pg_url, pool_max_size=1) as db:
            await db.fetchval("SELECT 1")
            before = db.stats()["queries"]
            for _ in range(5):
                await db.fetchrow("SELECT $1::int", 1)
            assert db.stats()["queries"] - before == 5
            assert db.pool_stats()["leased_idle"] == 1


# -- a COMMIT cut off by a lost connection ---------------------------------------------------


class CommitCutter:
    """A TCP proxy in front of PostgreSQL that breaks the first COMMIT it sees.

    ``after_server=True``: the COMMIT reaches the server (which commits), then the client's
    connection is closed before the answer comes back. ``after_server=False``: the COMMIT is
    dropped and both sides closed (the server rolls the transaction back).
    """

    def __init__(
        self, target_port: int, *, after_server: bool, refuse_after_cut: bool = False
    ) -> None:
        self.target_port = target_port
        self.after_server = after_server
        self.refuse_after_cut = refuse_after_cut
        self.armed = False
        self.cut = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut.is_set() and self.refuse_after_cut:
            writer.close()  # the server is "away": nobody can ask it anything
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        down = asyncio.ensure_future(self._pipe(up_reader, writer, upstream=False))
        self._tasks.add(down)
        try:
            await self._pipe(reader, up_writer, upstream=True, peer=writer, down=down)
        finally:
            up_writer.close()
            writer.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
        peer: asyncio.StreamWriter | None = None,
        down: asyncio.Task[None] | None = None,
    ) -> None:
        while data := await reader.read(65536):
            if upstream and self.armed and not self.cut.is_set() and _is_commit(data):
                self.cut.set()
                assert peer is not None
                assert down is not None
                if self.after_server:
                    down.cancel()  # the answer never reaches the client
                    # The server reads the COMMIT before it sees the connection close, so it
                    # commits; the client only sees its connection drop.
                    writer.write(data)
                    await writer.drain()
                peer.close()
                return
            writer.write(data)
            await writer.drain()
        writer.close()  # one side closed: close the other too


def _is_commit(data: bytes) -> bool:
    # A simple-protocol Query message: asyncpg sends "COMMIT", its Transaction "COMMIT;".
    return b"COMMIT\x00" in data or b"COMMIT;\x00" in data


@pytest.mark.postgres
class TestCommitResolution:
    """PostgreSQL says whether a transaction whose COMMIT was cut off committed."""

    async def _setup(self, pg_url: str) -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("CREATE TABLE wallets (id int PRIMARY KEY, coins bigint)")
            await conn.execute("INSERT INTO wallets VALUES (1, 100), (2, 100)")
        finally:
            await conn.close()

    def _via(self, pg_url: str, port: int) -> str:
        return pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")

    async def _coins(self, pg_url: str) -> list[int]:
        conn = await asyncpg.connect(pg_url)
        try:
            return [r["coins"] for r in await conn.fetch("SELECT coins FROM wallets ORDER BY id")]
        finally:
            await conn.close()

    async def test_a_committed_transaction_returns_normally(self, pg_url: str) -> None:
        await self._setup(pg_url)
        cutter = CommitCutter(5432, after_server=True)
        async with cutter as port, botdb.connect(self._via(pg_url, port)) as db:
            cutter.armed = True
            async with db.transaction() as conn:
                await conn.execute("UPDATE wallets SET coins = coins - 10 WHERE id = 1")
                await conn.execute("UPDATE wallets SET coins = coins + 10 WHERE id = 2")
            assert cutter.cut.is_set()
        assert await self._coins(pg_url) == [90, 110]

    async def test_an_aborted_transaction_is_run_again(self, pg_url: str) -> None:
        await self._setup(pg_url)
        cutter = CommitCutter(5432, after_server=False)
        runs = 0

        async def transfer(conn: botdb.Connection) -> None:
            nonlocal runs
            runs += 1
            await conn.execute("UPDATE wallets SET coins = coins - 10 WHERE id = 1")
            await conn.execute("UPDATE wallets SET coins = coins + 10 WHERE id = 2")

        async with cutter as port, botdb.connect(self._via(pg_url, port)) as db:
            cutter.armed = True
            await db.run_in_transaction(transfer)
            assert cutter.cut.is_set()
            assert db.stats()["retries"] == 1
        assert runs == 2
        assert await self._coins(pg_url) == [90, 110]

    async def test_an_aborted_transaction_block_raises_a_retryable_error(self, pg_url: str) -> None:
        await self._setup(pg_url)
        cutter = CommitCutter(5432, after_server=False)
        async with cutter as port, botdb.connect(self._via(pg_url, port)) as db:
            cutter.armed = True
            with pytest.raises(errors.ConnectionLostError) as caught:
                async with db.transaction() as conn:
                    await conn.execute("UPDATE wallets SET coins = 0 WHERE id = 1")
            assert caught.value.in_doubt is False
        assert await self._coins(pg_url) == [100, 100]

    async def test_a_commit_the_server_cannot_answer_for_is_in_doubt(self, pg_url: str) -> None:
        await self._setup(pg_url)
        cutter = CommitCutter(5432, after_server=True, refuse_after_cut=True)
        runs = 0

        async def transfer(conn: botdb.Connection) -> None:
            nonlocal runs
            runs += 1
            await conn.execute("UPDATE wallets SET coins = coins - 10 WHERE id = 1")

        async with (
            cutter as port,
            botdb.connect(
                self._via(pg_url, port), retry_attempts=2, retry_initial_delay=0.01
            ) as db,
        ):
            cutter.armed = True
            with pytest.raises(errors.ConnectionLostError) as caught:
                await db.run_in_transaction(transfer)
        assert caught.value.in_doubt is True
        assert runs == 1  # never re-run: it may have committed (here it did)
        assert await self._coins(pg_url) == [90, 100]

    async def test_without_the_check_a_lost_commit_is_in_doubt(self, pg_url: str) -> None:
        await self._setup(pg_url)
        cutter = CommitCutter(5432, after_server=True)
        async with (
            cutter as port,
            botdb.connect(self._via(pg_url, port), resolve_lost_commits=False) as db,
        ):
            cutter.armed = True
            with pytest.raises(errors.ConnectionLostError) as caught:
                async with db.transaction() as conn:
                    await conn.execute("UPDATE wallets SET coins = 1 WHERE id = 1")
        assert caught.value.in_doubt is True
        assert await self._coins(pg_url) == [1, 100]

    async def test_a_committed_session_returns_normally(self, pg_url: str) -> None:
        await self._setup(pg_url)
        cutter = CommitCutter(5432, after_server=True)
        async with cutter as port, botdb.connect(self._via(pg_url, port)) as db:
            cutter.armed = True
            async with db.session() as session:
                await session.execute(text("UPDATE wallets SET coins = 7 WHERE id = 1"))
            assert cutter.cut.is_set()
        assert await self._coins(pg_url) == [7, 100]

    async def test_an_aborted_session_is_rerun_by_run_in_session(self, pg_url: str) -> None:
        await self._setup(pg_url)
        cutter = CommitCutter(5432, after_server=False)

        async def bump(session: Any) -> None:
            await session.execute(text("UPDATE wallets SET coins = coins + 1 WHERE id = 1"))

        async with cutter as port, botdb.connect(self._via(pg_url, port)) as db:
            cutter.armed = True
            await db.run_in_session(bump)
            assert cutter.cut.is_set()
        assert await self._coins(pg_url) == [101, 100]


# -- every error typed while backends are killed ---------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
async def test_nothing_lost_or_doubled_while_backends_are_killed(pg_url: str) -> None:
    """Backends are terminated every 20-80 ms while 8 tasks move coins (run_in_transaction,
    pausing between the two statements), run transaction() blocks, repository upserts and
    scoped increments. Every error is a BotDBError; the ledger balances; every transfer the
    API acknowledged is applied exactly once and no failed one is; none is in doubt."""

    rounds = 40
    async with botdb.connect(
        pg_url, retry_attempts=25, retry_initial_delay=0.005, retry_max_delay=0.05
    ) as db:
        await db.create_tables()
        await db.execute("CREATE TABLE wallets (id int PRIMARY KEY, coins bigint NOT NULL)")
        await db.execute("CREATE TABLE ledger (id uuid PRIMARY KEY)")
        await db.execute("INSERT INTO wallets VALUES (1, 1000000), (2, 1000000)")
        await db.guilds.create(id=1, name="g")
        counter = db.scoped("fault")
        counter.register_member(points=0)
        failures: list[BaseException] = []
        acknowledged: set[str] = set()
        failed_ids: set[str] = set()
        counts: Counter[str] = Counter()

        async def transfer(conn: botdb.Connection, tid: str) -> None:
            await conn.execute("UPDATE wallets SET coins = coins - 1 WHERE id = 1")
            await asyncio.sleep(0.005)
            await conn.execute("UPDATE wallets SET coins = coins + 1 WHERE id = 2")
            await conn.execute("INSERT INTO ledger VALUES ($1::uuid)", tid)

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            for i in range(rounds):
                tid = str(uuid.uuid4())
                kind = ("run", "block", "upsert", "increment")[(seed + i) % 4]
                try:
                    if kind == "run":
                        await db.run_in_transaction(transfer, tid)
                        acknowledged.add(tid)
                    elif kind == "block":
                        async with db.transaction() as conn:
                            await transfer(conn, tid)
                        acknowledged.add(tid)
                    elif kind == "upsert":
                        await db.guilds.upsert({"id": 1, "name": f"g{rng.random()}"})
                    else:
                        await counter.member(1, seed + 1).increment("points")
                    counts[kind] += 1
                except Exception as exc:
                    failures.append(exc)
                    if kind in ("run", "block"):
                        failed_ids.add(tid)

        stop = asyncio.Event()

        async def killer() -> None:
            rng = random.Random(7)
            admin = await asyncpg.connect(pg_url)
            try:
                while not stop.is_set():
                    await asyncio.sleep(rng.uniform(0.02, 0.08))
                    await admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
            finally:
                await admin.close()

        kill_task = asyncio.ensure_future(killer())
        try:
            await asyncio.gather(*(worker(seed) for seed in range(8)))
        finally:
            stop.set()
            await kill_task

        assert [f for f in failures if not isinstance(f, errors.BotDBError)] == []
        assert [f for f in failures if getattr(f, "in_doubt", False)] == []
        coins = await db.fetch("SELECT coins FROM wallets ORDER BY id")
        assert coins[0]["coins"] + coins[1]["coins"] == 2_000_000
        applied = {str(r["id"]) for r in await db.fetch("SELECT id FROM ledger")}
        assert applied == acknowledged
        assert not applied & failed_ids
        assert 1_000_000 - coins[0]["coins"] == len(applied)
        assert counts["run"] + counts["block"] == len(acknowledged)
        assert db.stats()["retries"] > 0


# -- prepared statements ---------------------------------------------------------------------


class TestPreparedStatements:
    async def test_prepare_statement_is_awaitable_as_documented(self, db_url: str) -> None:
        async with botdb.connect(db_url) as db:
            # Not "users": on the citus backend the database holds botdb's schema already.
            await db.execute("CREATE TABLE people (id BIGINT PRIMARY KEY, name TEXT)")
            await db.execute("INSERT INTO people VALUES (1, 'ana')")
            stmt = await db.prepare_statement("get_user", "SELECT * FROM people WHERE id = $1")
            row = await stmt.fetchrow(1)
            assert row["name"] == "ana"
            assert await stmt.fetchval(2) is None
            assert stmt.name == "get_user"

    async def test_prepare_like_asyncpg(self, db_url: str) -> None:
        async with botdb.connect(db_url) as db:
            stmt = await db.prepare("SELECT $1::int + 1")
            assert await stmt.fetchval(41) == 42

    async def test_a_bad_statement_fails_when_prepared(self, db_url: str) -> None:
        async with botdb.connect(db_url) as db:
            with pytest.raises(errors.UndefinedTableError):
                await db.prepare("SELECT * FROM no_such_table WHERE id = $1")

    async def test_prepare_on_a_transaction_connection(self, db_url: str) -> None:
        async with botdb.connect(db_url) as db, db.transaction() as conn:
            stmt = await conn.prepare("SELECT $1::int * 2")
            assert await stmt.fetchval(21) == 42


async def test_repository_retries_are_counted(sqlite_url: str) -> None:
    """A repository write that met SQLite BUSY is retried by the Database's retry runner, and
    the retry shows in db.stats()."""
    async with botdb.connect(
        sqlite_url, sqlite_busy_timeout=0.01, retry_attempts=50, retry_initial_delay=0.01
    ) as db:
        await db.create_tables()
        path = sqlite_url.removeprefix("sqlite:///")
        locked, release = threading.Event(), threading.Event()

        def hold() -> None:
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(30)
            other.execute("ROLLBACK")
            other.close()

        holder = threading.Thread(target=hold)
        holder.start()
        await asyncio.to_thread(locked.wait, 30)
        write = asyncio.ensure_future(db.guilds.create(id=5, name="busy"))
        try:
            await wait_until(lambda: db.stats()["retries"] >= 1, timeout=30, what="a retry")
        finally:
            release.set()
            await asyncio.to_thread(holder.join)
        guild = await write
        assert guild.id == 5
        assert db.stats()["retries"] >= 1


class TestOrmBoundary:
    """SQLAlchemy users get botdb's typed errors too, through the engine's handle_error."""

    async def test_core_on_db_engine_raises_typed_errors(self, db_url: str) -> None:
        async with botdb.connect(db_url) as db:
            await db.free_pool_slot()
            async with db.engine.connect() as conn:
                with pytest.raises(errors.UndefinedTableError):
                    await conn.execute(text("SELECT * FROM no_such_table"))

    async def test_a_session_raises_typed_integrity_errors(self, db_url: str) -> None:
        async with botdb.connect(db_url) as db:
            await db.execute("CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
            with pytest.raises(errors.UniqueViolationError) as caught:
                async with db.session() as session:
                    await session.execute(text("INSERT INTO names VALUES (1, 'a')"))
                    await session.execute(text("INSERT INTO names VALUES (2, 'a')"))
            assert caught.value.__cause__ is not None
            assert await db.fetchval("SELECT count(*) FROM names") == 0
