"""SQLite specifics: pragmas, file mode, BUSY handling, and an event loop that stays responsive."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import botdb
from botdb import errors

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


class LoopWatch:
    """Measures how long the event loop is held while work runs, two ways.

    * ``longest_step``: asyncio's debug mode times every callback and task step the loop runs;
      a step that holds the loop longer than 5 ms is recorded. This is what "freezing the
      loop" means, and it is little affected by other processes on a busy machine.
    * ``max_gap``: the longest gap between ticks of a 1 ms ticker task, wall clock. On a
      loaded machine the OS adds its own delays here, so it is only compared with the
      duration of the work (a frozen loop shows a gap as long as the whole query).
    """

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.longest_step = 0.0
        self._task: asyncio.Task[None] | None = None
        self._handler = _SlowStepHandler(self)

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            last = now

    async def __aenter__(self) -> LoopWatch:
        # A full garbage collection (tens of ms after earlier tests filled the heap) is the
        # interpreter's pause, not botdb's: collect now and keep the collector off while
        # measuring.
        gc.collect()
        gc.disable()
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.005
        logging.getLogger("asyncio").addHandler(self._handler)
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0.01)
        self.max_gap = 0.0
        self.longest_step = 0.0
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task
        logging.getLogger("asyncio").removeHandler(self._handler)
        asyncio.get_running_loop().set_debug(False)
        gc.enable()

    def assert_responsive(self, work_seconds: float) -> None:
        assert self.longest_step < MAX_LOOP_STEP, (
            f"one loop step took {self.longest_step * 1000:.1f} ms"
        )
        assert self.max_gap < max(MAX_LOOP_STEP, work_seconds / 4), (
            f"the ticker waited {self.max_gap * 1000:.1f} ms during {work_seconds:.2f} s of work"
        )


class _SlowStepHandler(logging.Handler):
    """Collects asyncio debug mode's "Executing <step> took N seconds" records."""

    def __init__(self, watch: LoopWatch) -> None:
        super().__init__(logging.WARNING)
        self._watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Executing %s took %.3f seconds":
            self._watch.longest_step = max(self._watch.longest_step, float(record.args[1]))


# "A few milliseconds": the inline budget is 2 ms, plus the progress handler's granularity.
MAX_LOOP_STEP = 0.020


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


def _hold_write_lock(path: Path, seconds: float, locked: threading.Event) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO events (body) VALUES ('from the other connection')")
    locked.set()
    time.sleep(seconds)
    other.execute("COMMIT")
    other.close()


async def test_write_waits_for_a_lock_held_by_another_connection(
    db: botdb.Database, sqlite_url: str
) -> None:
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(_db_path(sqlite_url), 0.3, locked))
    holder.start()
    await asyncio.to_thread(locked.wait)
    async with LoopWatch() as watch:
        started = time.perf_counter()
        assert await db.execute("INSERT INTO events (body) VALUES ('mine')") == "INSERT 0 1"
        waited = time.perf_counter() - started
    holder.join()
    assert await db.fetchval("SELECT count(*) FROM events") == 2
    assert waited > 0.1, "the insert must have waited for the lock"
    watch.assert_responsive(waited)


async def test_busy_beyond_the_timeout_raises_database_busy(sqlite_url: str) -> None:
    async with botdb.connect(sqlite_url, sqlite_busy_timeout=0.05, retry_attempts=2) as database:
        await database.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT)")
        locked = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(_db_path(sqlite_url), 1.0, locked))
        holder.start()
        await asyncio.to_thread(locked.wait)
        with pytest.raises(errors.DatabaseBusyError):
            await database.execute("INSERT INTO events (body) VALUES ('mine')")
        assert database.stats()["retries"] == 1
        holder.join()
        assert await database.fetchval("SELECT count(*) FROM events WHERE body = 'mine'") == 0


async def test_reads_are_not_blocked_by_a_writer(db: botdb.Database, sqlite_url: str) -> None:
    await db.execute("INSERT INTO events (body) VALUES ('committed')")
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(_db_path(sqlite_url), 0.3, locked))
    holder.start()
    await asyncio.to_thread(locked.wait)
    started = time.perf_counter()
    assert await db.fetchval("SELECT count(*) FROM events") == 1  # WAL: the old snapshot
    assert time.perf_counter() - started < 0.1
    holder.join()


async def test_long_query_does_not_freeze_the_loop(db: botdb.Database) -> None:
    async with LoopWatch() as watch:
        started = time.perf_counter()
        assert await db.fetchval(LONG_QUERY) == 3_000_000
        elapsed = time.perf_counter() - started
    assert elapsed > 0.1, "the query must be long enough to show anything"
    watch.assert_responsive(elapsed)


async def test_vacuum_does_not_freeze_the_loop(db: botdb.Database) -> None:
    await db.execute_many(
        "INSERT INTO events (body) VALUES ($1)", [("x" * 200,) for _ in range(30_000)]
    )
    await db.execute("DELETE FROM events WHERE id % 2 = 0")
    async with LoopWatch() as watch:
        started = time.perf_counter()
        await db.execute("VACUUM")
    watch.assert_responsive(time.perf_counter() - started)


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
