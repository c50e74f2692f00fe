"""Stats cases: the same ``db.stats`` query on a guild of 1M messages beside one of 10k.

Messages arrive at a steady ~1 per minute from 500 members in 20 channels, so the 10k guild
holds about a week and the 1M guild about two years. "Last week" is the question a bot's
dashboard asks: daily counts, top members, top channels and the heatmap of the last 7 days.
Its cost follows the week's activity, not the table (target: the 1M guild at >= 0.5x the
10k guild's rate). "All time" top members reads every hourly bucket of the guild, so it
grows with the history: shown, no target.

The last case is what the SQLite triggers that keep the summaries cost a writer: the
recorder's path (``executemany`` of message rows in one transaction) with and without them.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _base import Case, Pair, require

import botdb

GUILD = 1
CHANNELS = 20
MEMBERS = 500
SMALL, LARGE = 10_000, 1_000_000
START = datetime(2024, 1, 1, tzinfo=UTC)
#: Queries per timed round (each "query" is the whole dashboard or one top list).
REPEAT = 20
_BUILT: dict[tuple[str, int], str] = {}


def _rows(count: int, seed: int) -> list[tuple[Any, ...]]:
    """``count`` message rows, ~1 per minute, authors skewed (a few members write most)."""
    rng = random.Random(seed)
    at = START
    rows = []
    for i in range(count):
        at += timedelta(seconds=rng.randint(1, 119))
        author = 1000 + min(int(rng.paretovariate(1.2)) - 1, MEMBERS - 1)
        rows.append(
            (10**9 + i, GUILD, 100 + rng.randrange(CHANNELS), author, at, author == 1000, False)
        )
    return rows


async def _fill(db: botdb.Database, count: int) -> None:
    await db.create_tables()
    await db.execute("INSERT INTO guilds (id, name) VALUES ($1, 'bench')", GUILD)
    await db.execute_many(
        "INSERT INTO channels (id, guild_id, name) VALUES ($1, $2, $3)",
        [(100 + c, GUILD, f"channel-{c}") for c in range(CHANNELS)],
    )
    await db.execute_many(
        "INSERT INTO users (id, username) VALUES ($1, $2)",
        [(1000 + u, f"member{u}") for u in range(MEMBERS)],
    )
    rows = _rows(count, seed=count)
    columns = ["id", "guild_id", "channel_id", "author_id", "created_at", "is_bot", "deleted"]
    for start in range(0, count, 50_000):
        await db.copy_records_to_table(
            "messages", records=rows[start : start + 50_000], columns=columns
        )
    await db.stats.refresh()
    if db.backend == "postgresql":
        await db.execute("ANALYZE")


async def _database(env: dict[str, Any], backend: str, count: int) -> str:
    """The URL of a database holding a guild of ``count`` messages (built once per run)."""
    key = (backend, count)
    if key not in _BUILT:
        if backend == "sqlite":
            url = f"sqlite:///{Path(env['tmp']) / f'stats-{count}.db'}"
        else:
            import asyncpg

            base = require(env, "pg_url")
            name = f"{base.rsplit('/', 1)[1]}_stats_{count}"
            admin = await asyncpg.connect(base)
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                await admin.close()
            url = base.rsplit("/", 1)[0] + "/" + name
            atexit.register(_drop_database, base, name)
        async with botdb.connect(url) as db:
            await _fill(db, count)
        _BUILT[key] = url
    return _BUILT[key]


def _drop_database(base: str, name: str) -> None:
    """Drop a database this module made (at exit: several cases share it)."""
    import asyncpg

    async def drop() -> None:
        # The run's own database is gone by now: connect to the server's default one.
        admin = await asyncpg.connect(base.rsplit("/", 1)[0] + "/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(drop())


async def _dashboard(db: botdb.Database, since: datetime, until: datetime) -> None:
    await db.stats.daily(GUILD, since=since, until=until)
    await db.stats.top_members(GUILD, since=since, until=until)
    await db.stats.top_channels(GUILD, since=since, until=until)
    await db.stats.heatmap(GUILD, since=since, until=until)


async def _newest_week(db: botdb.Database) -> tuple[datetime, datetime]:
    """The last 7 days of the guild's history (what "last week" means for it)."""
    rows = await db.stats.daily(GUILD)
    end = datetime.combine(rows[-1].day, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    return end - timedelta(days=7), end


def _scale_case(backend: str, what: str, target: float | None) -> Case:
    @asynccontextmanager
    async def setup(env: dict[str, Any]) -> AsyncIterator[Pair]:
        small = await botdb.connect(await _database(env, backend, SMALL))
        large = await botdb.connect(await _database(env, backend, LARGE))

        async def query_of(db: botdb.Database) -> Callable[[], Awaitable[int]]:
            if what == "week":
                since, until = await _newest_week(db)

                async def run() -> int:
                    for _ in range(REPEAT):
                        await _dashboard(db, since, until)
                    return REPEAT
            else:

                async def run() -> int:
                    for _ in range(REPEAT):
                        await db.stats.top_members(GUILD)
                    return REPEAT

            return run

        try:
            yield await query_of(small), await query_of(large)
        finally:
            await small.close()
            await large.close()

    label = "stats: last week's dashboard" if what == "week" else "stats: all-time top members"
    return Case(
        name=f"{label}, 1M-message guild ({backend})",
        baseline="the same on a 10k-message guild",
        target=target,
        setup=setup,
    )


@asynccontextmanager
async def _trigger_cost(env: dict[str, Any]) -> AsyncIterator[Pair]:
    """Message rows into SQLite in one transaction: the summary triggers on, and off."""
    rows = _rows(20_000, seed=7)
    rounds = itertools.count()
    sql = (
        "INSERT INTO messages (id, guild_id, channel_id, author_id, created_at, is_bot, deleted) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
    with_triggers = await botdb.connect(f"sqlite:///{Path(env['tmp']) / 'trig-on.db'}")
    without = await botdb.connect(f"sqlite:///{Path(env['tmp']) / 'trig-off.db'}")
    for db in (with_triggers, without):
        await _fill(db, 0)
    for (name,) in await without.fetch(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'stats_%'"
    ):
        await without.execute(f"DROP TRIGGER {name}")

    def writer(db: botdb.Database) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            shift = next(rounds) * len(rows)  # fresh ids every round, on both sides
            await db.execute_many(sql, [(r[0] + shift, *r[1:]) for r in rows])
            return len(rows)

        return run

    try:
        yield writer(without), writer(with_triggers)
    finally:
        await with_triggers.close()
        await without.close()


CASES = [
    _scale_case("sqlite", "week", 0.5),
    _scale_case("postgresql", "week", 0.5),
    _scale_case("sqlite", "all", None),
    _scale_case("postgresql", "all", None),
    Case(
        name="SQLite message inserts with the stats triggers",
        baseline="the same inserts without them",
        target=None,
        setup=_trigger_cost,
    ),
]
