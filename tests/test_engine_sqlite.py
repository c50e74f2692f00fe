"""SQLite specifics: pragmas, file mode, BUSY handling, and an event loop that stays responsive."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import botdb
from botdb import errors
from tests.helpers import in_use, wait_until

LONG_QUERY = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 3000000) "
    "SELECT count(*) FROM c"
)


@pytest.fixture
async def db(sqlite_url: str) -> AsyncIterator[botdb.Database]:
    async with botdb.connect(sqlite_url, sqlite_busy_timeout=2.0) as database:
        await database.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT)")
        yield database


def _db_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


async def test_pragmas_are_set(db: botdb.Database) -> None:
    assert await db.fetchval("PRAGMA journal_mode") == "wal"
    assert await db.fetchval("PRAGMA foreign_keys") == 1
    assert await db.fetchval("PRAGMA synchronous") == 1  # NORMAL
    assert await db.fetchval("PRAGMA cache_size") == -64 * 1024
    assert await db.fetchval("PRAGMA temp_store") == 2  # MEMORY


async def test_new_database_file_is_private(sqlite_url: str) -> None:
    async with botdb.connect(sqlite_url) as database:
        await database.execute("CREATE TABLE t (x INTEGER)")
        await database.execute("INSERT INTO t VALUES (1)")
        path = _db_path(sqlite_url)
        for file in (path, Path(f"{path}-wal")):
            mode = stat.S_IMODE(os.stat(file).st_mode)
            assert mode == 0o600, f"{file.name} has mode {oct(mode)}"


async def test_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigurationError, match="does not exist"):
        await botdb.connect(f"sqlite:///{tmp_path}/missing/dir/bot.db")


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("this is not an SQLite database, just a text file\n" * 100)
    before = path.read_bytes()
    with pytest.raises(errors.BotDBError):
        async with botdb.connect(f"sqlite:///{path}") as database:
            await database.fetch("SELECT * FROM sqlite_master")
    assert path.read_bytes() == before


async def test_in_memory_database_is_shared_by_the_pool() -> None:
    async with botdb.connect("sqlite:///:memory:") as database:
        await database.execute("CREATE TABLE t (x INTEGER)")
        await database.execute("INSERT INTO t VALUES (1)")
        async with database.transaction() as conn:
            assert await conn.fetchval("SELECT count(*) FROM t") == 1
        assert await database.fetchval("SELECT count(*) FROM t") == 1


def _hold_write_lock(
    path: Path, locked: threading.Event, release: threading.Event, write: bool
) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    if write:
        other.execute("INSERT INTO events (body) VALUES ('from the other connection')")
    locked.set()
    release.wait(30)  # a bound, so that a failed test cannot hang the run
    other.execute("COMMIT")
    other.close()


@asynccontextmanager
async def write_lock_held_elsewhere(
    path: Path, *, write: bool = True
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Another connection (in a thread) holds the write lock until ``let_go()`` or the end;
    with ``write``, it has inserted a row into ``events`` that it commits then."""
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, locked, release, write))
    holder.start()

    async def let_go() -> None:
        release.set()
        await asyncio.to_thread(holder.join)

    try:
        await asyncio.to_thread(locked.wait, 30)
        yield let_go
    finally:
        await let_go()


# How long the event loop is held while SQLite works is measured by ``make bench`` ("loop
# lateness ..."); the tests below pin the behaviour: the work leaves the loop free.


async def test_write_waits_for_a_lock_held_by_another_connection(
    db: botdb.Database, sqlite_url: str
) -> None:
    """A write meeting another connection's lock waits for it (in a worker thread, the loop
    free meanwhile) and succeeds once the lock is released, without an error or a retry."""
    started = threading.Event()

    def trace(statement: str) -> None:
        if statement.startswith("INSERT"):
            started.set()

    async with write_lock_held_elsewhere(_db_path(sqlite_url)) as let_go, db.acquire() as conn:
        conn.driver_connection.set_trace_callback(trace)
        insert = asyncio.create_task(conn.execute("INSERT INTO events (body) VALUES ('mine')"))
        await asyncio.to_thread(started.wait, 30)  # the loop runs while the insert waits
        assert not insert.done(), "the insert finished while the other connection held the lock"
        await let_go()
        assert await insert == "INSERT 0 1"
        conn.driver_connection.set_trace_callback(None)
    assert await db.fetchval("SELECT count(*) FROM events") == 2
    assert db.stats()["retries"] == 0
    assert db.stats()["errors"] == 0


async def test_busy_beyond_the_timeout_raises_database_busy(sqlite_url: str) -> None:
    async with botdb.connect(sqlite_url, sqlite_busy_timeout=0.05, retry_attempts=2) as database:
        await database.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT)")
        async with write_lock_held_elsewhere(_db_path(sqlite_url)):
            with pytest.raises(errors.DatabaseBusyError):
                await database.execute("INSERT INTO events (body) VALUES ('mine')")
            assert database.stats()["retries"] == 1
        assert await database.fetchval("SELECT count(*) FROM events WHERE body = 'mine'") == 0


async def test_reads_are_not_blocked_by_a_writer(db: botdb.Database, sqlite_url: str) -> None:
    """WAL: a read returns the last committed snapshot while another connection writes (a
    blocked read would wait out the busy timeout and fail: the lock is held until after)."""
    await db.execute("INSERT INTO events (body) VALUES ('committed')")
    async with write_lock_held_elsewhere(_db_path(sqlite_url)):
        assert await db.fetchval("SELECT count(*) FROM events") == 1  # WAL: the old snapshot
        assert db.stats()["retries"] == 0


async def test_long_query_does_not_freeze_the_loop(db: botdb.Database) -> None:
    """A read past the inline budget moves to a worker thread: the loop runs other tasks
    before it finishes (were it run inline to the end, it would be done after its first step)."""
    query = asyncio.create_task(db.fetchval(LONG_QUERY))
    await asyncio.sleep(0)  # one loop turn: the query's first step has run, then this one
    assert not query.done(), "the query held the loop until it finished"
    assert await query == 3_000_000


async def test_vacuum_does_not_freeze_the_loop(db: botdb.Database) -> None:
    """VACUUM runs in a worker thread: the loop runs other tasks before it finishes."""
    await db.execute_many(
        "INSERT INTO events (body) VALUES ($1)", [("x" * 200,) for _ in range(30_000)]
    )
    await db.execute("DELETE FROM events WHERE id % 2 = 0")
    vacuum = asyncio.create_task(db.execute("VACUUM"))
    await asyncio.sleep(0)  # one loop turn: VACUUM's first step has run, then this one
    assert not vacuum.done(), "VACUUM held the loop until it finished"
    await vacuum


async def test_unsupported_postgres_construct_names_it(db: botdb.Database) -> None:
    with pytest.raises(errors.UnsupportedSQLError, match="DISTINCT ON"):
        await db.fetch("SELECT DISTINCT ON (body) id FROM events")


async def test_datetime_arguments_are_stored_in_utc(db: botdb.Database) -> None:
    import datetime as dt

    await db.execute("CREATE TABLE stamps (at TIMESTAMPTZ)")
    local = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    await db.execute("INSERT INTO stamps VALUES ($1)", local)
    assert await db.fetchval("SELECT at FROM stamps") == "2024-01-01 10:00:00.000000"


async def test_sqlite_create_false_refuses_a_missing_file_and_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(errors.ConfigurationError, match="does not exist"):
        await botdb.connect(f"sqlite:///{path}", sqlite_create=False)
    assert not path.exists()


# -- cancellation, timeouts and transactions left open ---------------------------------------

# Runs until interrupted (about a minute otherwise).
ENDLESS_QUERY = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000000) "
    "SELECT count(*) FROM c"
)
ENDLESS_WRITE = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000000) "
    "INSERT INTO t (id) SELECT n FROM c"
)


async def test_a_cancelled_sqlite_statement_gives_its_connection_back(sqlite_url: str) -> None:
    """After a slow read is cancelled, its connection serves the next statement."""
    async with botdb.connect(
        sqlite_url, pool_max_size=1, pool_min_size=1, pool_acquire_timeout=1.0
    ) as db:
        slow = asyncio.create_task(db.fetchval(ENDLESS_QUERY))
        await wait_until(lambda: in_use(db) == 1)  # past the inline budget, in a worker thread
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert await db.fetchval("SELECT 1") == 1


async def test_a_timed_out_sqlite_transaction_raises_timeout_error(sqlite_url: str) -> None:
    """asyncio.timeout around a transaction whose statement is still running raises
    TimeoutError; nothing of it is committed once the statement has finished."""
    release, finished = threading.Event(), threading.Event()

    def slow(value: int) -> int:  # runs in the worker thread; an interrupt cannot stop it
        release.wait(30)
        finished.set()
        return value

    async with botdb.connect(sqlite_url) as db:
        await db.execute("CREATE TABLE t (id INTEGER)")
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2), db.transaction() as tx:
                    tx.driver_connection.create_function("slow", 1, slow)
                    await tx.execute("INSERT INTO t (id) SELECT slow(1)")
        finally:
            release.set()  # the statement outlived the timeout; now let it finish
        await asyncio.to_thread(finished.wait, 30)
        await wait_until(lambda: in_use(db) == 0)  # the connection went back (or was dropped)
        assert await db.fetchval("SELECT count(*) FROM t") == 0


async def test_cancel_during_begin_does_not_pool_a_connection_holding_the_write_lock(
    sqlite_url: str,
) -> None:
    """After a transaction cancelled in BEGIN, another process can still write."""
    async with botdb.connect(sqlite_url, pool_max_size=1, sqlite_busy_timeout=5.0) as db:
        await db.execute("CREATE TABLE t (id INTEGER)")
        began = threading.Event()

        def trace(statement: str) -> None:
            if statement.startswith("BEGIN"):
                began.set()

        async def transact() -> None:
            async with db.acquire() as conn:
                conn.driver_connection.set_trace_callback(trace)
                async with conn.transaction():
                    await conn.execute("INSERT INTO t (id) VALUES (1)")

        async with write_lock_held_elsewhere(_db_path(sqlite_url), write=False) as let_go:
            task = asyncio.create_task(transact())
            await asyncio.to_thread(began.wait, 30)  # BEGIN IMMEDIATE waits for the lock
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await let_go()
        await wait_until(lambda: in_use(db) == 0)  # the cancelled BEGIN is done with
        other = sqlite3.connect(_db_path(sqlite_url), timeout=0.5, isolation_level=None)
        try:
            other.execute("INSERT INTO t (id) VALUES (2)")  # must not be locked out
        finally:
            other.close()


async def test_a_statement_timeout_inside_a_sqlite_transaction_keeps_it_atomic(
    sqlite_url: str,
) -> None:
    """A write that times out inside a transaction aborts the whole transaction: the next
    statement is refused, the block raises, and nothing of the transaction is committed."""
    async with botdb.connect(sqlite_url) as db:
        await db.execute("CREATE TABLE t (id INTEGER)")
        with pytest.raises(errors.DatabaseError, match="aborted") as info:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t (id) VALUES (1)")
                with pytest.raises(errors.QueryTimeoutError):
                    await tx.execute(ENDLESS_WRITE, timeout=0.2)
                await tx.execute("INSERT INTO t (id) VALUES (2)")
        assert type(info.value) is errors.DatabaseError
        assert await db.fetchval("SELECT count(*) FROM t") == 0


async def test_command_timeout_applies_on_an_acquired_sqlite_connection(sqlite_url: str) -> None:
    """command_timeout bounds a statement run through db.acquire(), as it does through db."""
    async with botdb.connect(sqlite_url, command_timeout=0.2) as db, db.acquire() as conn:
        with pytest.raises(errors.QueryTimeoutError):
            await conn.fetchval(ENDLESS_QUERY)
