"""Cached service paths (guild config, users) and cross-process invalidation latency.

* ``config.get`` cache hit beside a plain dict lookup (awaited, as a bot's own dict cache
  would be). DESIGN.md's target is absolute: >= 1M hits/s, read in the ``botdb/s`` column.
* ``users.ensure`` cache hit (the record alone; ``get_or_create`` adds ``created``) beside
  the uncached read a handler does without botdb
  (new ORM session + SELECT by primary key).
* Latency from process A's COMMIT of a config write to process B (a subprocess that had the
  config cached) returning the new value, over 1,000 writes (p99 target < 10 ms).
"""

from __future__ import annotations

import secrets
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from _base import Case, LatencyCase, Pair, require
from _watcher import config_write_window
from sqlalchemy import select

import botdb
from botdb.models import User
from botdb.services import GuildConfigService, UserService

HITS = 200_000
READS = 2_000
WRITES = 1_000
GUILD = 1_150_000_000_000_000_001


@asynccontextmanager
async def config_hits(env: dict[str, Any]) -> AsyncIterator[Pair]:
    db = await botdb.connect(f"sqlite:///{env['tmp'] / 'cache-config.db'}")
    await db.create_tables()
    config = GuildConfigService(db)
    await config.set(GUILD, prefix="?")
    await config.get(GUILD)
    plain = {GUILD: {"prefix": "?"}}

    async def dict_get(key: int) -> Any:
        return plain.get(key)

    async def baseline() -> int:
        for _ in range(HITS):
            await dict_get(GUILD)
        return HITS

    async def subject() -> int:
        get = config.get
        for _ in range(HITS):
            await get(GUILD)
        return HITS

    try:
        yield baseline, subject
    finally:
        await db.close()


def _users_case(backend: str) -> Callable[[dict[str, Any]], Any]:
    @asynccontextmanager
    async def setup(env: dict[str, Any]) -> AsyncIterator[Pair]:
        if backend == "postgresql":
            url = require(env, "pg_url")
        else:
            url = f"sqlite:///{env['tmp'] / 'cache-users.db'}"
        db = await botdb.connect(url)
        await db.create_tables()
        users = UserService(db)
        tg = types.SimpleNamespace(
            id=777_000, is_bot=False, first_name="Ann", last_name="Lee", username="ann",
            language_code="de", is_premium=False,
        )  # fmt: skip
        await users.ensure(tg)
        await users.ensure(tg)  # cached from here on
        statement = select(User).where(User.id == 777_000)

        async def baseline() -> int:
            for _ in range(READS):
                async with db.session() as session:
                    (await session.scalars(statement)).one()
            return READS

        async def subject() -> int:
            for _ in range(READS):
                await users.ensure(tg)
            return READS

        try:
            yield baseline, subject
        finally:
            await db.close()

    return setup


WATCHER = r"""
import asyncio, sys, time
import botdb
from botdb.services import GuildConfigService

async def main(url, redis_url, prefix, final):
    async with botdb.connect(url, redis_url=redis_url, cache_prefix=prefix) as db:
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


@asynccontextmanager
async def invalidation_latency(
    env: dict[str, Any],
) -> AsyncIterator[Callable[[], Awaitable[list[float]]]]:
    redis_url = require(env, "redis_url")
    prefix = f"botdb-bench-{secrets.token_hex(4)}:"
    path = env["tmp"] / "cache-latency.db"
    url = f"sqlite:///{path}"
    script = env["tmp"] / "watcher.py"
    script.write_text(WATCHER)
    db = await botdb.connect(url, redis_url=redis_url, cache_prefix=prefix)
    await db.create_tables()
    async with config_write_window(
        db, script, url=url, reader_redis=redis_url, prefix=prefix, writes=WRITES, guild=GUILD
    ) as sample:
        yield sample


CASES: list[Case] = [
    Case("cached config.get hit (L1), target >= 1M/s", "dict.get (awaited)", None, config_hits),
    Case(
        "cached users.ensure hit, sqlite",
        "ORM session + select by PK",
        None,
        _users_case("sqlite"),
    ),
    Case(
        "cached users.ensure hit, pg",
        "ORM session + select by PK",
        None,
        _users_case("postgresql"),
    ),
]

LATENCIES: list[LatencyCase] = [
    LatencyCase(
        "cross-process invalidation, config write -> other process sees it",
        10.0,
        invalidation_latency,
    ),
]
