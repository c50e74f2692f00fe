"""botdb.cache: L1 TTL/LRU, single flight, versions, cross-process invalidation, Redis faults.

Everything that involves Redis runs against the real server (``redis_server_url``), a closed
port ("Redis is down") or a throwaway ``redis-server`` process (down, then back).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sqlite3
import subprocess
import sys
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from botdb.cache import Cache, cached
from botdb.errors import ConfigurationError, DataError
from tests.helpers import child_env, start_redis_server, wait_until

#: Also runs through pgbouncer in transaction mode with BOTDB_TEST_PGBOUNCER_ALL=1 (conftest).
PGBOUNCER_CONTRACT = "extended"


class Loader:
    """An async loader that counts its calls and returns what ``source`` holds."""

    def __init__(self, value: Any = "v1") -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        await asyncio.sleep(0)
        return self.value


def closed_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def l1() -> AsyncIterator[Cache]:
    async with Cache(max_size=100, ttl=60.0) as cache:
        yield cache


@pytest.fixture
def redis_cache(redis_server_url: str, redis_prefix: str) -> Callable[..., Cache]:
    """Factory of caches on the test's prefix; ``async with`` them."""

    def make(**kwargs: Any) -> Cache:
        return Cache(redis_url=redis_server_url, prefix=redis_prefix, **kwargs)

    return make


@pytest.fixture
async def raw_redis(redis_server_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server_url)
    yield client
    await client.aclose()


# --------------------------------------------------------------------------- L1


async def test_l1_entry_expires_after_its_ttl() -> None:
    async with Cache(ttl=0.05) as cache:
        loader = Loader("a")
        assert await cache.get_or_load("k", loader) == "a"
        assert cache.peek("k") == "a"
        await wait_until(lambda: cache.peek("k") is None)
        assert await cache.get("k") is None
        assert await cache.get_or_load("k", loader) == "a"
        assert loader.calls == 2


async def test_l1_evicts_the_least_recently_used_entry_beyond_max_size() -> None:
    async with Cache(max_size=3) as cache:
        for key in ("a", "b", "c"):
            await cache.set(key, key.upper())
        assert cache.peek("a") == "A"  # "a" is now the most recently used
        await cache.set("d", "D")
        assert cache.peek("b") is None
        assert [cache.peek(k) for k in ("a", "c", "d")] == ["A", "C", "D"]
        assert cache.stats()["size"] == 3


async def test_l1_hit_is_served_without_reading_redis(
    redis_cache: Callable[..., Cache], raw_redis: aioredis.Redis, redis_prefix: str
) -> None:
    async with redis_cache() as cache:
        await cache.set("k", {"x": 1})
        await raw_redis.delete(f"{redis_prefix}val:k")  # L2 gone; an L1 hit must not care
        assert await cache.get("k") == {"x": 1}
        assert cache.peek("k") == {"x": 1}
        assert cache.stats()["l2_hits"] == 0


async def test_get_returns_default_on_a_miss(l1: Cache) -> None:
    assert await l1.get("nope", "dflt") == "dflt"
    assert l1.peek("nope", 7) == 7
    assert l1.stats()["misses"] == 2


async def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="max_size"):
        Cache(max_size=0)
    with pytest.raises(ConfigurationError, match="ttl"):
        Cache(ttl=0)
    with pytest.raises(ConfigurationError, match="redis_url"):
        Cache(redis_url="http://localhost:6379")


async def test_non_json_value_raises_data_error_and_caches_nothing(l1: Cache) -> None:
    with pytest.raises(DataError, match="JSON"):
        await l1.set("k", {1, 2})
    loader = Loader(object())
    with pytest.raises(DataError):
        await l1.get_or_load("k", loader)
    assert l1.peek("k") is None
    assert l1.stats()["size"] == 0


# --------------------------------------------------------------------------- single flight


async def test_concurrent_misses_call_the_loader_once(l1: Cache) -> None:
    gate = asyncio.Event()
    calls = 0

    async def loader() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return {"n": 42}

    tasks = [asyncio.create_task(l1.get_or_load("k", loader)) for _ in range(20)]
    await wait_until(lambda: calls == 1)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert results == [{"n": 42}] * 20
    assert l1.stats()["loads"] == 1


async def test_loader_exception_reaches_every_waiter_and_caches_nothing(l1: Cache) -> None:
    gate = asyncio.Event()
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise RuntimeError("db is on fire")

    tasks = [asyncio.create_task(l1.get_or_load("k", loader)) for _ in range(20)]
    await wait_until(lambda: calls == 1)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, RuntimeError) and str(r) == "db is on fire" for r in results)
    assert l1.peek("k") is None
    assert await l1.get_or_load("k", Loader("ok")) == "ok"  # the next call loads again


async def test_cancelling_one_waiter_does_not_cancel_the_shared_load(l1: Cache) -> None:
    gate = asyncio.Event()
    loader_calls = 0

    async def loader() -> str:
        nonlocal loader_calls
        loader_calls += 1
        await gate.wait()
        return "v"

    first = asyncio.create_task(l1.get_or_load("k", loader))
    second = asyncio.create_task(l1.get_or_load("k", loader))
    await wait_until(lambda: loader_calls == 1)
    first.cancel()
    gate.set()
    assert await second == "v"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert loader_calls == 1
    assert l1.peek("k") == "v"


async def test_none_is_cached_for_negative_ttl_only() -> None:
    async with Cache(ttl=60.0, negative_ttl=0.05) as cache:
        loader = Loader(None)
        assert await cache.get_or_load("missing", loader) is None
        assert await cache.get_or_load("missing", loader) is None
        assert loader.calls == 1
        positive = Loader("here")
        await cache.get_or_load("present", positive)
        await wait_until(lambda: cache.peek("missing", "expired") == "expired")
        assert await cache.get_or_load("missing", loader) is None
        assert loader.calls == 2
        assert cache.peek("present") == "here"


async def test_none_is_not_cached_when_cache_none_is_false(l1: Cache) -> None:
    loader = Loader(None)
    assert await l1.get_or_load("k", loader, cache_none=False) is None
    assert await l1.get_or_load("k", loader, cache_none=False) is None
    assert loader.calls == 2


async def test_local_invalidation_during_a_load_refuses_the_late_fill(l1: Cache) -> None:
    gate, loading = asyncio.Event(), asyncio.Event()

    async def loader() -> str:
        loading.set()  # "old" is read now, before the invalidation below
        await gate.wait()
        return "old"

    task = asyncio.create_task(l1.get_or_load("k", loader))
    await loading.wait()
    await l1.invalidate("k")
    gate.set()
    assert await task == "old"
    assert l1.peek("k") is None


# --------------------------------------------------------------------------- decorator


async def test_cached_decorator_caches_results_not_coroutines_and_does_not_pin_self(
    l1: Cache,
) -> None:
    class GuildConfigs:
        def __init__(self, cache: Cache) -> None:
            self.cache = cache
            self.calls = 0

        @cached(lambda self, gid: self.cache, key=lambda self, gid: f"guild:{gid}")
        async def get(self, gid: int) -> dict[str, int]:
            self.calls += 1
            return {"guild": gid}

    repo = GuildConfigs(l1)
    assert await repo.get(1) == {"guild": 1}
    assert await repo.get(1) == {"guild": 1}  # a second await works: a result, not a coroutine
    assert await repo.get(2) == {"guild": 2}
    assert repo.calls == 2
    assert l1.peek("guild:1") == {"guild": 1}
    ref = weakref.ref(repo)
    del repo
    gc.collect()
    assert ref() is None


async def test_cached_decorator_refuses_a_sync_function(l1: Cache) -> None:
    with pytest.raises(ConfigurationError, match="async"):
        cached(l1, key=lambda x: str(x))(lambda x: x)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- L2 and versions


async def test_second_instance_reads_the_value_from_l2(redis_cache: Callable[..., Cache]) -> None:
    async with redis_cache() as a, redis_cache() as b:
        assert await a.get_or_load("k", Loader({"v": 1})) == {"v": 1}
        never = Loader("must not be called")
        assert await b.get_or_load("k", never) == {"v": 1}
        assert never.calls == 0
        assert b.stats()["l2_hits"] == 1
        assert await b.get("k") == {"v": 1}


async def test_invalidation_by_another_instance_drops_l1_and_the_next_read_reloads(
    redis_cache: Callable[..., Cache],
) -> None:
    async with redis_cache() as a, redis_cache() as b:
        source = Loader("old")
        assert await a.get_or_load("k", source) == "old"
        source.value = "new"
        await b.invalidate("k")
        await wait_until(lambda: a.peek("k") is None)
        assert await a.get_or_load("k", source) == "new"
        assert a.stats()["invalidations_received"] == 1
        assert b.stats()["invalidations_sent"] == 1


async def test_late_fill_loaded_before_a_remote_invalidation_is_refused_in_l1_and_l2(
    redis_cache: Callable[..., Cache], raw_redis: aioredis.Redis, redis_prefix: str
) -> None:
    db = {"k": "old"}
    read_done = asyncio.Event()
    release = asyncio.Event()

    async def slow_loader() -> str:
        value = db["k"]  # read before the write below
        read_done.set()
        await release.wait()
        return value

    async with redis_cache() as a, redis_cache() as b:
        task = asyncio.create_task(a.get_or_load("k", slow_loader))
        await read_done.wait()
        db["k"] = "new"
        await b.invalidate("k")
        await wait_until(lambda: a.stats()["invalidations_received"] == 1)
        release.set()
        assert await task == "old"  # the caller gets what it loaded...
        assert a.peek("k") is None  # ...but it is not cached
        assert await raw_redis.get(f"{redis_prefix}val:k") is None  # not in L2 either
        fresh = Loader(db["k"])
        assert await a.get_or_load("k", fresh) == "new"
        assert await b.get_or_load("k", Loader("unused")) == "new"  # from L2


async def test_late_or_duplicate_message_never_drops_a_fresher_entry(
    redis_cache: Callable[..., Cache], raw_redis: aioredis.Redis, redis_prefix: str
) -> None:
    async with redis_cache() as a, redis_cache() as b:
        await b.invalidate("k")
        await wait_until(lambda: a.stats()["invalidations_received"] == 1)
        version = int(await raw_redis.get(f"{redis_prefix}ver:k"))
        assert await a.get_or_load("k", Loader("fresh")) == "fresh"

        async def publish(v: int) -> None:
            payload = orjson.dumps({"o": "replay", "v": str(v), "k": ["k"]})
            await raw_redis.publish(f"{redis_prefix}invalidate", payload)

        await publish(version)  # duplicate of the invalidation the entry already follows
        await publish(version - 1)  # a late, older one
        await wait_until(lambda: a.stats()["invalidations_received"] == 3)
        assert a.peek("k") == "fresh"
        await publish(version + 1)  # a newer one drops it
        await wait_until(lambda: a.peek("k") is None)


async def test_writer_drops_its_own_l1_entry_when_invalidate_returns(
    redis_cache: Callable[..., Cache],
) -> None:
    async with redis_cache() as a:
        await a.get_or_load("k", Loader("old"))
        await a.invalidate("k")
        assert a.peek("k") is None


async def test_batch_discard_publishes_nothing_and_commit_publishes_all(
    redis_cache: Callable[..., Cache],
) -> None:
    async with redis_cache() as writer, redis_cache() as reader:
        for key in ("a", "b"):
            await reader.get_or_load(key, Loader(key))
            await writer.get_or_load(key, Loader(key))
        rolled_back = writer.batch()
        rolled_back.invalidate("a", "b")
        assert writer.peek("a") == "a"  # collecting does nothing yet
        rolled_back.discard()
        await rolled_back.commit()  # nothing left to commit
        assert writer.stats()["invalidations_sent"] == 0
        assert writer.peek("a") == "a"

        committed = writer.batch()
        committed.invalidate("a")
        committed.invalidate("b", "a")
        assert committed.keys == ["a", "b"]
        await committed.commit()
        assert writer.peek("a") is None  # own process: at once, not via the echo
        assert writer.peek("b") is None
        await wait_until(lambda: reader.peek("a") is None and reader.peek("b") is None)
        assert writer.stats()["invalidations_sent"] == 2
        assert reader.stats()["invalidations_received"] == 2
        assert committed.keys == []


CHILD_SCRIPT = r"""
import asyncio, sqlite3, sys
from botdb.cache import Cache

def read(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT body FROM notes WHERE id = 1").fetchone()[0]
    finally:
        con.close()

async def main(redis_url, prefix, path, final):
    async with Cache(redis_url=redis_url, prefix=prefix, ttl=300.0) as cache:
        last = -1
        while True:
            value = await cache.get_or_load("note:1", lambda: asyncio.to_thread(read, path))
            if value != last:
                if value < last:
                    print("STALE", value, flush=True)
                print("SEEN", value, flush=True)
                last = value
            if value == final:
                break
            await asyncio.sleep(0.0002)
        print("LOADS", cache.stats()["loads"], flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


async def test_two_processes_invalidation_reaches_the_other_process(
    redis_cache: Callable[..., Cache],
    redis_server_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    """Process B caches a row; A updates the shared SQLite file and invalidates after COMMIT;
    B returns the new value once the message arrives and never the old one again.

    How long the message takes is measured by ``make bench`` ("cross-process invalidation").
    """
    db_path = tmp_path / "shared.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD_SCRIPT)

    def write(value: int) -> None:
        con = sqlite3.connect(db_path)
        try:
            with con:
                con.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body)")
                con.execute("INSERT OR REPLACE INTO notes (id, body) VALUES (1, ?)", (value,))
        finally:
            con.close()

    await asyncio.to_thread(write, 0)
    rounds = 100
    env = child_env()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        redis_server_url,
        redis_prefix,
        str(db_path),
        str(rounds),
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None

    async def line() -> list[str]:
        raw = await asyncio.wait_for(child.stdout.readline(), timeout=10)  # type: ignore[union-attr]
        assert raw, "child exited early"
        return raw.decode().split()

    try:
        assert (await line())[:2] == ["SEEN", "0"]  # B has cached 0 (and is subscribed)
        async with redis_cache() as writer:
            for value in range(1, rounds + 1):
                batch = writer.batch()
                batch.invalidate("note:1")
                await asyncio.to_thread(write, value)  # the transaction commits...
                await batch.commit()  # ...then the invalidation goes out
                words = await line()
                assert words[:2] == ["SEEN", str(value)], words
        assert await line() == ["LOADS", str(rounds + 1)]  # one load per version, no more
        assert await child.wait() == 0
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_invalidation_after_redis_lost_its_keys_still_drops_older_entries(
    redis_server_url: str, redis_prefix: str, raw_redis: aioredis.Redis
) -> None:
    """A FLUSHDB (or eviction) restarts the version clock at 1: entries read before still go."""
    async with (
        Cache(redis_url=redis_server_url, prefix=redis_prefix) as a,
        Cache(redis_url=redis_server_url, prefix=redis_prefix) as b,
    ):
        for _ in range(3):
            await b.invalidate("k")  # the key's version is now 3
        calls = 0

        async def load() -> str:
            nonlocal calls
            calls += 1
            return f"v{calls}"

        assert await a.get_or_load("k", load) == "v1"
        # What FLUSHDB does to this prefix, without flushing the shared server.
        names = [name async for name in raw_redis.scan_iter(match=f"{redis_prefix}*")]
        await raw_redis.delete(*names)
        await b.invalidate("k")  # version 1 again, older than a's entry (3)
        await wait_until(lambda: a.peek("k") is None)  # the message takes a moment to arrive
        assert await a.get_or_load("k", load) == "v2"


# --------------------------------------------------------------------------- Redis down


async def test_redis_down_at_start_keeps_working_on_l1_with_one_warning(
    caplog: pytest.LogCaptureFixture, redis_prefix: str
) -> None:
    caplog.set_level(logging.INFO, logger="botdb.cache")
    url = f"redis://user:s3cret@127.0.0.1:{closed_port()}/0"
    async with Cache(redis_url=url, prefix=redis_prefix, ttl=300.0, degraded_ttl=0.2) as cache:
        assert cache.stats()["redis_available"] is False  # known at once, not after a timeout
        loader = Loader("v")
        assert await cache.get_or_load("k", loader) == "v"
        assert await cache.get("k") == "v"
        await cache.set("k2", [1, 2])
        await cache.invalidate("k2")
        assert cache.peek("k2") is None
        batch = cache.batch()
        batch.invalidate("k")
        await batch.commit()
        assert await cache.get_or_load("k", loader) == "v"
        await wait_until(lambda: cache.peek("k") is None)  # degraded TTL, not 300s
        assert await cache.get_or_load("k", loader) == "v"
        assert loader.calls == 3
        # Part of the behaviour under test, not a synchronization: the listener retries a
        # few times meanwhile (backoff 0.05, 0.1, 0.2 s), and that must not log again.
        await asyncio.sleep(0.4)
        stats = cache.stats()
        assert stats["redis_available"] is False
        assert stats["listening"] is False
        assert stats["pending_invalidations"] == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "s3cret" not in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_cache_recovers_when_redis_comes_back_and_resumes_l2_and_invalidation(
    caplog: pytest.LogCaptureFixture, redis_server_binary: str
) -> None:
    binary = redis_server_binary
    caplog.set_level(logging.INFO, logger="botdb.cache")
    port = closed_port()
    url = f"redis://127.0.0.1:{port}/0"

    def make() -> Cache:
        return Cache(redis_url=url, prefix="recovery:", degraded_ttl=30.0)

    a = make()
    await a.start()  # Redis is not there yet
    assert a.stats()["redis_available"] is False
    server = await start_redis_server(binary, port)
    b = make()
    try:
        await wait_until(lambda: bool(a.stats()["listening"]))
        await b.start()

        async def shared_cache_works(key: str) -> None:
            assert await b.get_or_load(key, Loader("from-b")) == "from-b"
            never = Loader("not-called")
            assert await a.get_or_load(key, never) == "from-b"  # L2 over Redis
            assert never.calls == 0
            await b.invalidate(key)
            await wait_until(lambda: a.peek(key) is None)  # pub/sub over Redis

        await shared_cache_works("k1")

        await stop(server)
        await wait_until(lambda: not a.stats()["listening"] and not b.stats()["listening"])
        loader = Loader("during-outage")
        assert await a.get_or_load("k2", loader) == "during-outage"
        await a.invalidate("k2")  # no exception; published once Redis is back
        assert a.stats()["pending_invalidations"] == 1
        assert await a.get_or_load("k2", loader) == "during-outage"
        assert loader.calls == 2

        server = await start_redis_server(binary, port)
        await wait_until(lambda: bool(a.stats()["listening"] and b.stats()["listening"]))
        assert a.peek("k2") is None  # L1 cleared on reconnect: messages may have been lost
        await wait_until(lambda: a.stats()["pending_invalidations"] == 0)
        await shared_cache_works("k3")
        assert a.stats()["redis_available"] is True
    finally:
        await a.close()
        await b.close()
        await stop(server)
    levels = [r.levelno for r in caplog.records]
    # a: down at start, down at kill; b: down at kill — one warning per cache per outage.
    assert levels.count(logging.WARNING) == 3
    assert levels.count(logging.INFO) == 3


# --------------------------------------------------------------------------- imports


def test_importing_botdb_cache_does_not_import_redis() -> None:
    code = (
        "import sys, botdb; before = 'redis' in sys.modules; import botdb.cache; "
        "assert before or 'redis' not in sys.modules, 'botdb.cache imported redis'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
