"""Scale cases: the same read on a guild of 10k messages and on a guild of 1M, side by side.

The "baseline" is the read on the 10k-message database, "botdb" the same read on the 1M one;
the ratio is the 1M rate over the 10k rate, and the target 0.5 means "at most 2x slower with
100x the rows" (O(log n) per page). Each database holds one guild; its statistics are
refreshed with ``db.analyze`` after the bulk load, as an import or a replay would.

* keyset first page: ``db.messages.find_page(filters={"guild_id": g}, limit=50)``;
* keyset deep page: the same, resuming 90% of the way through the guild;
* search: ``db.messages.search("needle", guild_id=g)``, a word in 100 messages of each
  database (the cost of a ranked search follows the matches, not the table);
* search, common word (shown, no target): a word in 1% of the messages, so 100 matches at
  10k and 10,000 at 1M: ranking scores every match, and this row shows what that costs.

The databases are built once per backend and shared by its cases (~1-2 minutes each).
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from _base import Case, Pair, require

import botdb
from botdb.ops.maintenance import MESSAGE_TABLES

SMALL, LARGE = 10_000, 1_000_000
GUILD = 7
CHANNELS = tuple(range(100, 110))
AUTHORS = tuple(range(1000, 1100))
#: Messages holding the rare word, in either database.
NEEDLES = 100
BATCH = 50_000
PAGES = 200
SEARCHES = 100
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_WORDS = [
    "raid",
    "tonight",
    "loot",
    "boss",
    "music",
    "vote",
    "meme",
    "привет",
    "мир",
    "party",
    "game",
    "stream",
    "patch",
    "bug",
    "fix",
    "welcome",
    "thanks",
    "lol",
    "gg",
    "wp",
    "rank",
    "queue",
    "drop",
    "build",
    "guide",
    "event",
]

#: (backend, size) -> an open Database, shared by the cases of one run.
_OPEN: dict[tuple[str, int], botdb.Database] = {}
#: (admin URL, name) of the PostgreSQL databases made here.
_CREATED: list[tuple[str, str]] = []


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _drop_created() -> None:
    async def drop() -> None:
        for url, name in _CREATED:
            # The run's own database is gone by now: the server's maintenance database.
            admin = url.rsplit("/", 1)[0] + "/postgres"
            await _admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    asyncio.run(drop())


def _rows(size: int, sqlite: bool) -> list[tuple[Any, ...]]:
    rnd = random.Random(size)
    every = size // NEEDLES
    rows = []
    for i in range(1, size + 1):
        words = [rnd.choice(_WORDS) for _ in range(rnd.randint(3, 12))]
        if i % every == 0:
            words.append("needle")
        if i % 100 == 0:
            words.append("common")
        at = T0 + dt.timedelta(seconds=i)
        rows.append(
            (
                i,
                GUILD,
                CHANNELS[i % len(CHANNELS)],
                AUTHORS[rnd.randrange(len(AUTHORS))],
                " ".join(words),
                # What botdb's UTCDateTime stores on SQLite: UTC text without offset.
                at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at,
            )
        )
    return rows


async def _database(env: dict[str, Any], backend: str, size: int) -> botdb.Database:
    """The database of ``size`` messages in one guild, built on first use."""
    key = (backend, size)
    if key in _OPEN:
        return _OPEN[key]
    if backend == "sqlite":
        url = f"sqlite:///{env['tmp'] / f'scale_{size}.db'}"
    else:
        # A database of its own per size, beside the run's (dropped at exit).
        base: str = require(env, "pg_url")
        name = f"{base.rsplit('/', 1)[1]}_scale_{size}"
        url = base.rsplit("/", 1)[0] + "/" + name
        await _admin(base, f'CREATE DATABASE "{name}"')
        if not _CREATED:
            atexit.register(_drop_created)
        _CREATED.append((base, name))
    db = await botdb.connect(url)
    await db.create_tables()
    await db.execute("INSERT INTO guilds (id) VALUES ($1)", GUILD)
    async with db.transaction() as conn:
        await conn.execute_many(
            "INSERT INTO channels (id, guild_id) VALUES ($1, $2)", [(c, GUILD) for c in CHANNELS]
        )
        await conn.execute_many("INSERT INTO users (id) VALUES ($1)", [(a,) for a in AUTHORS])
    started = time.perf_counter()
    rows = _rows(size, backend == "sqlite")
    columns = ["id", "guild_id", "channel_id", "author_id", "content", "created_at"]
    for start in range(0, size, BATCH):
        async with db.transaction() as conn:
            await conn.copy_records_to_table(
                "messages", records=rows[start : start + BATCH], columns=columns
            )
    loaded = time.perf_counter() - started
    await db.analyze(MESSAGE_TABLES)
    analyzed = time.perf_counter() - started - loaded
    print(
        f"  {backend}: {size:,} messages loaded in {loaded:.1f} s "
        f"({size / loaded:,.0f}/s), analyzed in {analyzed:.2f} s",
        flush=True,
    )
    _OPEN[key] = db
    return db


Read = Callable[[botdb.Database], Awaitable[Callable[[], Awaitable[int]]]]


async def _first_page(db: botdb.Database) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        for _ in range(PAGES):
            page = await db.messages.find_page(filters={"guild_id": GUILD}, limit=50)
            assert len(page.items) == 50
        return PAGES

    return run


async def _deep_page(db: botdb.Database) -> Callable[[], Awaitable[int]]:
    # A cursor 90% of the way through the guild, as paging there would have left it (made with
    # the repository's own codec: walking 18,000 pages first would take minutes).
    count = int(await db.fetchval("SELECT count(*) FROM messages"))
    codec = db.messages._cursors
    await codec.load()
    cursor = codec.encode([("id", False)], [count * 9 // 10])

    async def run() -> int:
        for _ in range(PAGES):
            page = await db.messages.find_page(after=cursor, filters={"guild_id": GUILD}, limit=50)
            assert len(page.items) == 50
        return PAGES

    return run


def _search(word: str, expected: int) -> Read:
    async def prepare(db: botdb.Database) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            for _ in range(SEARCHES):
                page = await db.messages.search(word, guild_id=GUILD, limit=50)
                assert len(page.items) == min(expected, 50)
            return SEARCHES

        return run

    return prepare


def _case(backend: str, read: Read) -> Callable[[dict[str, Any]], Any]:
    @asynccontextmanager
    async def setup(env: dict[str, Any]) -> AsyncIterator[Pair]:
        try:
            small = await _database(env, backend, SMALL)
            large = await _database(env, backend, LARGE)
            yield await read(small), await read(large)
        finally:
            if read is _LAST:  # the backend's last case: its databases are done
                for size in (SMALL, LARGE):
                    if (db := _OPEN.pop((backend, size), None)) is not None:
                        await db.close()

    return setup


_LAST: Read = _search("common", 50)
_READS: list[tuple[str, Read, float | None]] = [
    ("keyset first page", _first_page, 0.5),
    ("keyset deep page", _deep_page, 0.5),
    ("search, 100 matches", _search("needle", NEEDLES), 0.5),
    ("search, 1% of messages match", _LAST, None),
]

CASES: list[Case] = [
    Case(
        f"{prefix} scale {what}",
        "same read on 10k messages (ratio: 1M rate / 10k rate)",
        target,
        _case(backend, read),
    )
    for backend, prefix in (("sqlite", "sqlite"), ("postgresql", "pg"))
    for what, read, target in _READS
]
