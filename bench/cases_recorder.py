"""Recorder cases: chat events ingested by ``db.recorder`` beside the raw drivers and the ORM.

* against raw asyncpg ``COPY`` (PostgreSQL) and raw sqlite3 ``executemany`` in one transaction
  (SQLite) of the same message rows into the same built-in ``messages`` table: target >= 0.5x;
* against what the seeds do, one ORM ``session.add`` + ``commit`` per message: target >= 100x.

The recorder side is ``record_many`` of ``EVENTS`` plain messages then ``flush()`` (everything
committed), with the default settings but a batch size of ``BATCH``. Events and raw rows are
built before the clock starts. The peak memory of one recorder run (``tracemalloc``, events
excluded) is shown beside the baseline's name.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from _base import Case, Pair, require
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

import botdb
from botdb.models import Message
from botdb.recorder import MessageCreated

EVENTS = 20_000
ORM_EVENTS = 300
BATCH = 5000
#: Calls each side gets: warm-up, the traced run, and the rounds (run.py's default is 7).
CALLS = 12
#: The guild, channel and author of every message these cases write (removed afterwards).
GUILD, CHANNEL, AUTHOR = 7_000_000_001, 7_000_000_002, 7_000_000_003
FIRST_ID = 10**15
COLUMNS = [
    "id", "guild_id", "channel_id", "author_id", "content", "created_at", "edited_at",
    "deleted", "is_bot", "reply_to_id",
]  # fmt: skip
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _row(mid: int) -> tuple[Any, ...]:
    return (
        mid,
        GUILD,
        CHANNEL,
        AUTHOR,
        f"message number {mid}",
        T0 + dt.timedelta(milliseconds=mid % 10**9),
        None,
        False,
        False,
        None,
    )


def _event(mid: int) -> MessageCreated:
    return MessageCreated(
        id=mid,
        guild_id=GUILD,
        channel_id=CHANNEL,
        author_id=AUTHOR,
        created_at=T0 + dt.timedelta(milliseconds=mid % 10**9),
        content=f"message number {mid}",
    )


class _Prebuilt:
    """``CALLS`` lists of ``size`` items with fresh ids, built before anything is timed (past
    ``CALLS``, e.g. with ``--rounds 10``, a list is built inside the timed call)."""

    def __init__(self, ids: itertools.count[int], size: int, make: Callable[[int], Any]):
        self._ids, self._size, self._make = ids, size, make
        self._lists = [self._build() for _ in range(CALLS)]

    def _build(self) -> list[Any]:
        return [self._make(next(self._ids)) for _ in range(self._size)]

    def next(self) -> list[Any]:
        return self._lists.pop() if self._lists else self._build()


@asynccontextmanager
async def _recorder_db(url: str, **options: Any) -> AsyncIterator[botdb.Database]:
    db = await botdb.connect(
        url, recorder_batch_size=BATCH, recorder_max_buffer=10 * EVENTS, **options
    )
    try:
        await db.create_tables()
        async with db.transaction() as conn:
            # The message's guild, channel and author, as a raw COPY needs them to exist.
            await botdb.recorder.write_events(conn, [_event(FIRST_ID - 1)])
        yield db
    finally:
        await db.execute("DELETE FROM messages WHERE guild_id = $1", GUILD)
        await db.close()


def _subject(db: botdb.Database, ids: itertools.count[int]) -> tuple[Any, dict[str, float]]:
    """The recorder side, and the dict its traced run fills with ``peak_mb``."""
    events = _Prebuilt(ids, EVENTS, _event)
    memory: dict[str, float] = {}

    async def subject() -> int:
        batch = events.next()
        trace = not memory
        if trace:
            tracemalloc.start()
        await db.recorder.record_many(batch)
        await db.recorder.flush()
        if trace:
            memory["peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
        return len(batch)

    return subject, memory


async def _traced(subject: Any, memory: dict[str, float]) -> str:
    await subject()  # warm-up of the recorder: the task, prepared statements
    await subject()  # the traced run (slower: tracemalloc on)
    return f"peak {memory['peak_mb']:.1f} MB / {EVENTS:,} events"


@asynccontextmanager
async def pg_ingest(env: dict[str, Any]) -> AsyncIterator[Pair]:
    import asyncpg

    url = require(env, "pg_url")
    ids = itertools.count(FIRST_ID)
    async with _recorder_db(url, recorder_spool_path=env["tmp"] / "pg-recorder.spool") as db:
        raw = await asyncpg.connect(url)
        rows = _Prebuilt(ids, EVENTS, _row)

        async def baseline() -> int:
            batch = rows.next()
            await raw.copy_records_to_table("messages", records=batch, columns=COLUMNS)
            return len(batch)

        subject, memory = _subject(db, ids)
        note = await _traced(subject, memory)
        subject.note = note  # type: ignore[attr-defined]  # shown by run.py
        try:
            yield baseline, subject
        finally:
            await raw.close()


@asynccontextmanager
async def sqlite_ingest(env: dict[str, Any]) -> AsyncIterator[Pair]:
    path = env["tmp"] / "recorder.db"
    ids = itertools.count(FIRST_ID)
    async with _recorder_db(f"sqlite:///{path}") as db:
        raw = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
            raw.execute(f"PRAGMA {pragma}")
        sql = f"INSERT INTO messages ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 10)})"

        def text_row(mid: int) -> tuple[Any, ...]:
            row = _row(mid)
            created = row[5].replace(tzinfo=None).isoformat(" ", "microseconds")
            return (*row[:5], created, *row[6:])

        rows = _Prebuilt(ids, EVENTS, text_row)

        async def baseline() -> int:
            batch = rows.next()
            raw.execute("BEGIN")
            raw.executemany(sql, batch)
            raw.execute("COMMIT")
            return len(batch)

        subject, memory = _subject(db, ids)
        subject.note = await _traced(subject, memory)  # type: ignore[attr-defined]
        try:
            yield baseline, subject
        finally:
            raw.close()


@asynccontextmanager
async def _vs_orm(url: str, sa_url: str, **options: Any) -> AsyncIterator[Pair]:
    ids = itertools.count(FIRST_ID + 10**9)
    async with _recorder_db(url, **options) as db:
        engine = create_async_engine(sa_url)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        rows = _Prebuilt(ids, ORM_EVENTS, lambda mid: dict(zip(COLUMNS, _row(mid), strict=True)))

        async def baseline() -> int:
            batch = rows.next()
            for values in batch:  # what the seeds do: one commit per message
                async with sessions() as session:
                    session.add(Message(**values))
                    await session.commit()
            return len(batch)

        subject, memory = _subject(db, ids)
        subject.note = await _traced(subject, memory)  # type: ignore[attr-defined]
        try:
            yield baseline, subject
        finally:
            await engine.dispose()


def pg_vs_orm(env: dict[str, Any]) -> Any:
    url: str = require(env, "pg_url")
    return _vs_orm(
        url,
        url.replace("postgresql://", "postgresql+asyncpg://", 1),
        recorder_spool_path=env["tmp"] / "pg-orm-recorder.spool",
    )


def sqlite_vs_orm(env: dict[str, Any]) -> Any:
    path = env["tmp"] / "recorder-orm.db"
    return _vs_orm(f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}")


CASES: list[Case] = [
    Case("pg recorder ingest", "asyncpg COPY into messages", 0.5, pg_ingest),
    Case("sqlite recorder ingest", "sqlite3 executemany into messages", 0.5, sqlite_ingest),
    Case("pg recorder vs ORM", "session.add + commit per message", 100.0, pg_vs_orm),
    Case("sqlite recorder vs ORM", "session.add + commit per message", 100.0, sqlite_vs_orm),
]
