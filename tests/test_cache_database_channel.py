"""Invalidations through the database (PostgreSQL NOTIFY, SQLite's invalidation log).

A process that cannot reach Redis still commits writes; the others must hear of them through
the database. Windows (how long that takes) are measured by ``make bench``
(``bench/cases_notify.py``), never asserted here: a write not heard would leave B stale for
``cache_ttl`` (300 s), far beyond the bounded waits below.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from time import monotonic

import orjson
import pytest

import botdb
from botdb.cache import Cache
from botdb.cache._channel import EVERYTHING, decode, encode
from botdb.cache._notify import MAX_PARTS, PAYLOAD_LIMIT
from botdb.cache._sqlite_log import LOG_TABLE
from botdb.services import GuildConfigService
from tests.helpers import MakeDB, wait_until
from tests.test_services_processes import child_env, closed_port

G = 1_150_000_000_000_000_001

WRITER = r"""
import asyncio, sys
import botdb
from botdb.services import GuildConfigService

async def main(url, redis_url, prefix):
    async with botdb.connect(url, redis_url=redis_url, cache_prefix=prefix) as db:
        assert db.cache.stats()["redis_available"] is False, "A must not reach Redis"
        config = GuildConfigService(db)
        print("READY", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line:
                return
            await config.set(int(line[0]), prefix=line[1])
            print("DONE", line[1], flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


@pytest.fixture
async def writer(
    tmp_path: Path, db_url: str, redis_prefix: str
) -> AsyncIterator[Callable[[int, str], object]]:
    """Process A: a child whose Redis is a closed port; ``await set_prefix(guild, prefix)``."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    down = f"redis://127.0.0.1:{closed_port()}/0"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), db_url, down, redis_prefix,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(),
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def line() -> list[str]:
        raw = await asyncio.wait_for(stdout.readline(), 30)
        assert raw, "the writer process exited early"
        return raw.decode().split()

    async def set_prefix(guild: int, prefix: str) -> None:
        stdin.write(f"{guild} {prefix}\n".encode())
        await stdin.drain()
        assert await line() == ["DONE", prefix]

    try:
        assert await line() == ["READY"]
        yield set_prefix
    finally:
        stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_a_without_redis_writes_and_b_with_redis_returns_the_new_value(
    make_db: MakeDB,
    redis_server_url: str,
    redis_prefix: str,
    writer: Callable[[int, str], object],
) -> None:
    """A cannot reach Redis; B (with Redis, config cached in L1 and L2) returns each new
    value A commits, heard through the database, and never an older one again."""
    b = await make_db(create_tables=True, redis_url=redis_server_url, cache_prefix=redis_prefix)
    assert b.cache.stats()["database_channel_listening"]
    config = GuildConfigService(b)
    await config.set(G, prefix="v0")
    assert (await config.get(G)).prefix == "v0"
    for value in range(1, 6):
        await writer(G, f"v{value}")  # type: ignore[misc]
        seen: list[str] = []

        async def current(seen: list[str] = seen, want: str = f"v{value}") -> bool:
            seen.append((await config.get(G)).prefix)
            return seen[-1] == want

        await wait_until(current, what=f"B to return v{value}")
        assert (await config.get(G)).prefix == f"v{value}"  # L2 was purged: no old value back
        assert all(int(p[1:]) >= value - 1 for p in seen)
    assert b.cache.stats()["invalidations_received"] >= 5


async def test_a_rolled_back_transaction_sends_nothing(make_db: MakeDB, backend: str) -> None:
    """No NOTIFY and no log row for a transaction that rolled back; the next commit's is the
    only message B hears."""
    a = await make_db(create_tables=True, cache_prefix="rb:")
    b = await make_db(cache_prefix="rb:")
    config_a, config_b = GuildConfigService(a), GuildConfigService(b)
    await config_a.set(G, prefix="old")
    await wait_until(lambda: b.cache.stats()["invalidations_received"] == 1)  # A's set heard
    assert (await config_b.get(G)).prefix == "old"
    received = b.cache.stats()["invalidations_received"]
    logged = await _log_rows(a, backend)
    for through in ("transaction", "session"):
        with pytest.raises(RuntimeError, match="abort"):
            if through == "transaction":
                async with a.transaction() as conn:
                    await conn.execute("UPDATE guild_configs SET prefix = 'new'")
                    await a.invalidate(config_a.key(G), within=conn)
                    raise RuntimeError("abort")
            async with a.session() as session:
                await a.invalidate(config_a.key(G), within=session)
                raise RuntimeError("abort")
    assert await _log_rows(a, backend) == logged
    async with a.transaction() as conn:  # a marker: messages arrive in commit order
        await a.invalidate("marker", within=conn)
    await wait_until(lambda: b.cache.stats()["invalidations_received"] > received)
    assert b.cache.stats()["invalidations_received"] == received + 1  # the marker only
    assert b.cache.peek(config_b.key(G)) is not None
    assert (await config_b.get(G)).prefix == "old"


async def _log_rows(db: botdb.Database, backend: str) -> int:
    if backend == "sqlite":
        # The log is created by the first write that needs it.
        exists = await db.fetchval("SELECT count(*) FROM sqlite_master WHERE name = $1", LOG_TABLE)
        return int(await db.fetchval(f"SELECT count(*) FROM {LOG_TABLE}")) if exists else 0
    return 0  # NOTIFY leaves no row; B's count of received messages tells


async def test_a_transaction_without_keys_sends_nothing(make_db: MakeDB, backend: str) -> None:
    a = await make_db(create_tables=True)
    async with a.transaction() as conn:
        await conn.execute("UPDATE guild_configs SET prefix = 'x'")
    async with a.session():
        pass
    if backend == "sqlite":
        assert await _log_rows(a, backend) == 0


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_the_listen_connection_comes_back_after_pg_terminate_backend(
    make_db: MakeDB, pg_url: str
) -> None:
    """B's LISTEN connection is terminated by the server; B reconnects by itself and hears
    A's writes again (A cannot reach Redis, so only the database can tell B)."""
    down = f"redis://127.0.0.1:{closed_port()}/0"
    a = await make_db(url=pg_url, create_tables=True, redis_url=down, cache_prefix="term:")
    b = await make_db(url=pg_url, cache_prefix="term:", application_name="botdb-term-b")
    config_a, config_b = GuildConfigService(a), GuildConfigService(b)

    async def listener_pid() -> int | None:
        pid = await a.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'botdb-term-b listener'"
        )
        return None if pid is None else int(pid)

    first = await listener_pid()
    assert first is not None
    for _ in range(2):
        killed = await a.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid = $1",
            first,
        )
        assert killed is True

        async def replaced(old: int = first) -> bool:
            pid = await listener_pid()
            listening = bool(b.cache.stats()["database_channel_listening"])
            return pid is not None and pid != old and listening

        await wait_until(replaced, what="B's LISTEN connection to come back")
        first = await listener_pid()
        await config_a.set(G, prefix=f"p{first}")
        assert (await config_b.get(G)).prefix == f"p{first}"  # cached in B from here on
        await config_a.set(G, prefix="after")
        await wait_until(lambda: b.cache.peek(config_b.key(G)) is None, what="B to hear A's write")
        assert (await config_b.get(G)).prefix == "after"


async def test_while_the_channel_is_down_entries_live_at_most_the_degraded_ttl() -> None:
    """A channel that cannot connect bounds staleness like Redis down; once it connects, L1
    starts again empty (what it missed meanwhile is unknown)."""
    opened = asyncio.Event()
    attempts = 0

    async def refuse() -> object:
        nonlocal attempts
        attempts += 1
        if not opened.is_set():
            raise ConnectionRefusedError("no database")
        return _Quiet()

    cache = Cache(ttl=300.0, degraded_ttl=2.0)
    try:
        await cache.listen_to_database("sqlite", refuse, poll_interval=0.01)
        assert cache.stats()["database_channel_listening"] is False
        await cache.set("k", 1)
        expires = cache._data["k"][1]
        assert expires - monotonic() <= 2.0
        opened.set()
        await wait_until(lambda: bool(cache.stats()["database_channel_listening"]))
        assert cache.peek("k") is None
        await cache.set("k", 2)
        assert cache._data["k"][1] - monotonic() > 2.0
    finally:
        await cache.close()


class _Quiet:
    """A stand-in sqlite3 connection on which nothing is ever written."""

    def execute(self, sql: str, *args: object) -> _Quiet:
        return self

    def fetchone(self) -> tuple[int]:
        return (0,)

    def fetchall(self) -> list[object]:
        return []

    def close(self) -> None:
        pass


def test_messages_are_split_under_the_payload_limit_and_round_trip() -> None:
    keys = [f"user:{i}" for i in range(1500)] + ['quote"and\\', "nul\x00", "ünï"]
    parts = encode("o" * 16, True, keys, limit=PAYLOAD_LIMIT, max_parts=MAX_PARTS)
    assert len(parts) > 1
    assert all(len(p.encode()) < 8000 for p in parts)
    decoded = [decode(p) for p in parts]
    assert all(origin == "o" * 16 and flags == 1 for origin, flags, _ in decoded)
    assert [k for _, _, ks in decoded for k in ks or []] == keys


def test_a_batch_too_big_becomes_one_everything_message() -> None:
    keys = [f"k{i:06}" + "x" * 90 for i in range(2000)]  # ~200 kB: beyond MAX_PARTS
    (part,) = encode("o", False, keys, limit=PAYLOAD_LIMIT, max_parts=MAX_PARTS)
    assert decode(part) == ("o", EVERYTHING, None)
    assert orjson.loads(part) == ["o", EVERYTHING]


@pytest.mark.parametrize("size", ["split", "everything"])
async def test_a_big_batch_reaches_the_other_process(
    make_db: MakeDB, backend: str, size: str
) -> None:
    """A batch beyond one NOTIFY payload arrives in parts (every key dropped, the rest
    kept) or, far beyond, as "drop everything"."""
    a = await make_db(create_tables=True, cache_prefix="big:")
    b = await make_db(cache_prefix="big:")
    count = 600 if size == "split" else 3000
    keys = [f"member:{i:05}:" + "x" * 40 for i in range(count)]
    for key in (*keys[:3], keys[-1], "unrelated"):
        await b.cache.set(key, 1)
    received = b.cache.stats()["invalidations_received"]
    async with a.transaction() as conn:
        await a.invalidate(*keys, within=conn)
    await wait_until(lambda: b.cache.stats()["invalidations_received"] > received)
    await wait_until(lambda: b.cache.peek(keys[-1]) is None, what="the last key dropped")
    assert all(b.cache.peek(k) is None for k in keys[:3])
    expect_kept = size == "split" or backend == "sqlite"  # the log has no size limit
    assert (b.cache.peek("unrelated") == 1) is expect_kept


async def test_an_invalidation_outside_a_transaction_reaches_the_other_process(
    make_db: MakeDB,
) -> None:
    """``db.invalidate(key)`` with no transaction and no Redis: sent through the database
    channel in a statement of its own."""
    a = await make_db(cache_prefix="now:")
    b = await make_db(cache_prefix="now:")
    await b.cache.set("k", 1)
    await a.invalidate("k")
    await wait_until(lambda: b.cache.peek("k") is None, what="B to drop k")


async def test_a_writer_with_redis_up_leaves_it_to_redis(
    make_db: MakeDB, backend: str, redis_server_url: str, redis_prefix: str
) -> None:
    """With Redis up nothing goes through the database (NOTIFY would serialize commits);
    the other process hears it on Redis."""
    a = await make_db(create_tables=True, redis_url=redis_server_url, cache_prefix=redis_prefix)
    b = await make_db(redis_url=redis_server_url, cache_prefix=redis_prefix)
    config_a, config_b = GuildConfigService(a), GuildConfigService(b)
    await config_a.set(G, prefix="a")
    assert (await config_b.get(G)).prefix == "a"
    await config_a.set(G, prefix="b")
    await wait_until(lambda: b.cache.peek(config_b.key(G)) is None, what="B to hear A")
    assert (await config_b.get(G)).prefix == "b"
    assert a.cache._channel is not None
    assert a.cache._channel.sent == 0
    if backend == "sqlite":
        assert await _log_rows(a, backend) == 0
