"""Invalidations through the database: what NOTIFY / the SQLite log cost, and their windows.

Throughput (ratio = with the database channel / without it, same run, interleaved rounds;
no Redis, so that every transaction with a key goes through the channel):

* PostgreSQL, 8 tasks of scoped increments (``db.scoped("ns").member(g, u).increment``),
  each task its own member: every transaction NOTIFYs, so commits queue on PostgreSQL's
  notification lock;
* PostgreSQL, 8 tasks of plain ``db.transaction()`` writes registering one key;
* SQLite file, ``config.set`` (one process): the extra log row in each write.

Latency from process A's COMMIT of a config write to process B (a subprocess that has the
config cached) returning the new value, 1,000 writes per path:

* PostgreSQL, both with Redis: the Redis path (B leaves the NOTIFY to Redis);
* PostgreSQL, A's Redis unreachable, B with Redis: the NOTIFY path (B also purges L2);
* PostgreSQL, no Redis anywhere: NOTIFY alone;
* SQLite file, A's Redis unreachable: the log, polled every ``cache_poll_interval``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from _base import Case, LatencyCase, Pair, require
from _watcher import config_write_window

import botdb
from botdb.services import GuildConfigService

TASKS = 8
PER_TASK = 60
WRITES = 1_000
SQLITE_SETS = 300
GUILD = 1_150_000_000_000_000_001
DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1: "A cannot reach Redis"


def _increments(through_db: bool) -> Callable[[dict[str, Any]], Any]:
    @asynccontextmanager
    async def setup(env: dict[str, Any]) -> AsyncIterator[Pair]:
        # No Redis: the channel then carries every invalidation (as for a writer whose Redis
        # is away); with Redis up nothing goes through the database at all.
        url = require(env, "pg_url")
        prefix = f"botdb-bench-{secrets.token_hex(4)}:"
        off = await botdb.connect(url, cache_prefix=prefix, cache_via_database=False)
        on = await botdb.connect(url, cache_prefix=prefix)
        await on.create_tables()
        await on.execute(
            "CREATE TABLE IF NOT EXISTS bench_counts (id int PRIMARY KEY, n bigint NOT NULL)"
        )
        await on.execute_many(
            "INSERT INTO bench_counts VALUES ($1, 0) ON CONFLICT DO NOTHING",
            [(i,) for i in range(TASKS)],
        )

        def run(db: botdb.Database) -> Callable[[], Awaitable[int]]:
            if through_db:

                async def one(task: int) -> None:
                    for _ in range(PER_TASK):
                        async with db.transaction() as conn:
                            await conn.execute(
                                "UPDATE bench_counts SET n = n + 1 WHERE id = $1", task
                            )
                            await db.invalidate(f"bench:{task}", within=conn)

            else:
                scoped = db.scoped("bench")
                scoped.register_member(points=0)

                async def one(task: int) -> None:
                    member = scoped.member(GUILD, task + 1)
                    for _ in range(PER_TASK):
                        await member.increment("points")

            async def go() -> int:
                await asyncio.gather(*(one(t) for t in range(TASKS)))
                return TASKS * PER_TASK

            return go

        try:
            yield run(off), run(on)
        finally:
            await on.close()
            await off.close()

    return setup


@asynccontextmanager
async def sqlite_config_set(env: dict[str, Any]) -> AsyncIterator[Pair]:
    url = f"sqlite:///{env['tmp'] / 'notify-config.db'}"
    off = await botdb.connect(url, cache_via_database=False)
    on = await botdb.connect(url)
    await on.create_tables()
    configs = GuildConfigService(off), GuildConfigService(on)

    def run(config: GuildConfigService) -> Callable[[], Awaitable[int]]:
        async def go() -> int:
            for i in range(SQLITE_SETS):
                await config.set(GUILD, prefix=f"p{i % 7}")
            return SQLITE_SETS

        return go

    try:
        yield run(configs[0]), run(configs[1])
    finally:
        await on.close()
        await off.close()


WATCHER = r"""
import asyncio, sys, time
import botdb
from botdb.services import GuildConfigService

async def main(url, redis_url, prefix, final):
    options = {} if redis_url == "-" else {"redis_url": redis_url}
    async with botdb.connect(url, cache_prefix=prefix, **options) as db:
        config = GuildConfigService(db)
        last = -1
        while last != final:
            value = int((await config.get(GUILD)).prefix[1:])
            if value != last:
                if value < last:
                    print("STALE", value, flush=True)
                print("SEEN", value, time.monotonic(), flush=True)
                last = value
            await asyncio.sleep(0.0002)  # a bot reading its config on each message

GUILD = int(sys.argv[5])
asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


def _window(backend: str, writer_redis: str, reader_redis: str) -> Callable[[dict[str, Any]], Any]:
    """A's writes -> B sees them. ``*_redis``: "up", "down" (closed port) or "none"."""

    @asynccontextmanager
    async def setup(env: dict[str, Any]) -> AsyncIterator[Callable[[], Awaitable[list[float]]]]:
        redis_url = require(env, "redis_url")
        if backend == "postgresql":
            url = require(env, "pg_url")
        else:
            url = f"sqlite:///{env['tmp'] / f'notify-window-{secrets.token_hex(3)}.db'}"
        prefix = f"botdb-bench-{secrets.token_hex(4)}:"
        urls = {"up": redis_url, "down": DOWN, "none": None}
        options: dict[str, Any] = {"cache_prefix": prefix}
        if urls[writer_redis] is not None:
            options["redis_url"] = urls[writer_redis]
        db = await botdb.connect(url, **options)
        await db.create_tables()
        script = env["tmp"] / "notify_watcher.py"
        script.write_text(WATCHER)
        async with config_write_window(
            db,
            script,
            url=url,
            reader_redis=urls[reader_redis] or "-",
            prefix=prefix,
            writes=WRITES,
            guild=GUILD,
        ) as sample:
            yield sample

    return setup


CASES: list[Case] = [
    Case(
        "pg scoped increments x8 tasks, NOTIFY on / off",
        "cache_via_database=False",
        None,
        _increments(through_db=False),
    ),
    Case(
        "pg transaction() writes + 1 key x8 tasks, NOTIFY on / off",
        "cache_via_database=False",
        None,
        _increments(through_db=True),
    ),
    Case(
        "sqlite config.set, invalidation log on / off",
        "cache_via_database=False",
        None,
        sqlite_config_set,
    ),
]

LATENCIES: list[LatencyCase] = [
    LatencyCase("window pg, both with Redis (Redis path)", 10.0, _window("postgresql", "up", "up")),
    LatencyCase(
        "window pg, writer's Redis down (NOTIFY path)", 1000.0, _window("postgresql", "down", "up")
    ),
    LatencyCase("window pg, no Redis (NOTIFY only)", 1000.0, _window("postgresql", "none", "none")),
    LatencyCase(
        "window sqlite, writer's Redis down (log poll)", 1000.0, _window("sqlite", "down", "up")
    ),
]
