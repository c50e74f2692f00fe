"""Cached service paths (guild config, users) and cross-process invalidation latency.

* ``config.get`` cache hit beside a plain dict lookup (awaited, as a bot's own dict cache
  would be). DESIGN.md's target is absolute: >= 1M hits/s, read in the ``botdb/s`` column.
* ``users.get_or_create`` cache hit beside the uncached read a handler does without botdb
  (new ORM session + SELECT by primary key).
* Latency from process A's COMMIT of a config write to process B (a subprocess that had the
  config cached) returning the new value, over 1,000 writes (p99 target < 10 ms).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from _base import Case, LatencyCase, Pair, require
from sqlalchemy import event, select
from sqlalchemy.orm import Session

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
        await users.get_or_create(tg)
        await users.get_or_create(tg)  # cached from here on
        statement = select(User).where(User.id == 777_000)

        async def baseline() -> int:
            for _ in range(READS):
                async with db.session() as session:
                    (await session.scalars(statement)).one()
            return READS

        async def subject() -> int:
            for _ in range(READS):
                await users.get_or_create(tg)
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
    config = GuildConfigService(db)
    await config.set(GUILD, prefix="v0")
    commits: list[float] = []

    def committed(session: Session) -> None:
        commits.append(time.monotonic())

    src = str(Path(botdb.__file__).parents[1])
    child_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), url, redis_url, prefix, str(WRITES), str(GUILD),
        stdout=subprocess.PIPE, env=child_env,
    )  # fmt: skip
    assert child.stdout is not None
    stdout = child.stdout

    async def line() -> list[str]:
        raw = await asyncio.wait_for(stdout.readline(), 30)
        if not raw:
            raise RuntimeError("the watcher process exited early")
        return raw.decode().split()

    async def sample() -> list[float]:
        if (await line())[:2] != ["SEEN", "0"]:
            raise RuntimeError("the watcher did not start")
        delays = []
        event.listen(Session, "after_commit", committed)
        try:
            for value in range(1, WRITES + 1):
                await config.set(GUILD, prefix=f"v{value}")
                words = await line()
                if words[:2] != ["SEEN", str(value)]:
                    raise RuntimeError(f"expected SEEN {value}, got {words}")
                delays.append(float(words[2]) - commits[-1])
        finally:
            event.remove(Session, "after_commit", committed)
        return delays

    try:
        yield sample
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await db.close()


CASES: list[Case] = [
    Case("cached config.get hit (L1), target >= 1M/s", "dict.get (awaited)", None, config_hits),
    Case(
        "cached users.get_or_create hit, sqlite",
        "ORM session + select by PK",
        None,
        _users_case("sqlite"),
    ),
    Case(
        "cached users.get_or_create hit, pg",
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
