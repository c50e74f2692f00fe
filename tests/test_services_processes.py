"""The services across processes: one database and one Redis shared by two real processes.

Process A is the test; process B is a child Python process running CHILD below. Everything
runs on a SQLite file and on the real PostgreSQL server, with the real Redis; "Redis is down"
is a closed port, then a throwaway ``redis-server`` started on it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import botdb
from botdb.services import CaseService, GuildConfigService, ScopedConfig, UserService
from tests.helpers import MakeDB, child_env, start_redis_server, wait_until

G, U = 1_150_000_000_000_000_001, 80_351_110_224_678_912

CHILD = r"""
import asyncio, sys
import botdb
from botdb.services import CaseService, GuildConfigService, ScopedConfig

async def main(mode, url, redis_url, prefix, count):
    async with botdb.connect(url, redis_url=redis_url, cache_prefix=prefix) as db:
        if mode == "watch":  # cache guild G's config; report every new prefix seen
            config = GuildConfigService(db)
            last = -1
            while True:
                value = int((await config.get(G)).prefix[1:])
                if value != last:
                    if value < last:
                        print("STALE", value, flush=True)
                    print("SEEN", value, flush=True)
                    last = value
                if value == count:
                    return
                await asyncio.sleep(0.0002)
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if mode == "increment":
            scoped = ScopedConfig(db, namespace="economy")
            scoped.register_member(balance=0)
            member = scoped.member(G, U)
            await asyncio.gather(*(member.increment("balance") for _ in range(count)))
        elif mode == "cases":
            cases = CaseService(db)
            await asyncio.gather(*(cases.create(G, 5, 6, "warn") for _ in range(count)))
        print("DONE", flush=True)

G, U = 1_150_000_000_000_000_001, 80_351_110_224_678_912
asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
"""


def closed_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """Process B: a running CHILD script and its output lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, timeout: float = 30.0) -> list[str]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert raw, "the child process exited early"
        return raw.decode().split()

    async def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()

    async def finish(self) -> None:
        assert await asyncio.wait_for(self.proc.wait(), 30) == 0


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    children: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            *args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
        )
        children.append(proc)
        return Child(proc)

    yield start
    for proc in children:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def db(
    make_db: MakeDB, redis_server_url: str, redis_prefix: str, builtin_tables: None
) -> botdb.Database:
    """The built-in tables, with the real Redis under this test's own key prefix."""
    return await make_db(create_tables=True, redis_url=redis_server_url, cache_prefix=redis_prefix)


async def test_config_written_by_a_reaches_b_and_b_never_returns_the_old_value(
    db: botdb.Database,
    db_url: str,
    redis_server_url: str,
    redis_prefix: str,
    spawn: Callable[..., object],
) -> None:
    """B caches guild G's config; A sets it 60 times; B returns each new value once A's
    invalidation arrives, never an older one again.

    How long that takes (from A's COMMIT to B's read) is measured by ``make bench``
    ("cross-process invalidation, config write -> other process sees it").
    """
    config = GuildConfigService(db)
    await config.set(G, prefix="v0")
    rounds = 60
    child = await spawn("watch", db_url, redis_server_url, redis_prefix, str(rounds))  # type: ignore[misc]
    assert (await child.line())[:2] == ["SEEN", "0"]
    for value in range(1, rounds + 1):
        await config.set(G, prefix=f"v{value}")  # commit, then the invalidation
        words = await child.line()
        assert words[:2] == ["SEEN", str(value)], words  # never STALE, never skipped back
    await child.finish()


async def test_rollback_publishes_nothing_and_an_uncommitted_write_is_invisible(
    db: botdb.Database, db_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    """A write inside an open transaction is not seen by B's cache (nor its database reads);
    when the transaction rolls back, nothing is invalidated anywhere."""
    config_a = GuildConfigService(db)
    await config_a.set(G, prefix="old")
    async with botdb.connect(db_url, redis_url=redis_server_url, cache_prefix=redis_prefix) as b:
        config_b = GuildConfigService(b)
        assert (await config_b.get(G)).prefix == "old"
        sent = db.cache.stats()["invalidations_sent"]
        with pytest.raises(RuntimeError, match="abort"):
            async with db.session() as session:
                from sqlalchemy import update

                from botdb.models import GuildConfig

                await session.execute(
                    update(GuildConfig).where(GuildConfig.guild_id == G).values(prefix="new")
                )
                await db.invalidate(config_a.key(G), within=session)
                b.cache.clear()  # force B to read the database while A's write is open
                assert (await config_b.get(G)).prefix == "old"
                raise RuntimeError("abort")
        assert db.cache.stats()["invalidations_sent"] == sent
        # A marker sent after the rollback: messages on the channel arrive in order, so once
        # B has the marker, anything A had sent before it has arrived too.
        await db.cache.invalidate("marker-after-rollback")
        await wait_until(lambda: b.cache.stats()["invalidations_received"] >= 1)
        assert db.cache.stats()["invalidations_sent"] == sent + 1  # the marker only
        assert b.cache.stats()["invalidations_received"] == 1  # the marker only
        assert b.cache.peek(config_b.key(G)) is not None  # B's entry survived
        assert (await config_b.get(G)).prefix == "old"
        assert (await config_a.get(G)).prefix == "old"


async def test_increments_from_two_processes_all_count(
    db: botdb.Database,
    db_url: str,
    redis_server_url: str,
    redis_prefix: str,
    spawn: Callable[..., object],
) -> None:
    """50 increments in A and 50 in B at the same time end at exactly +100."""
    scoped = ScopedConfig(db, namespace="economy")
    scoped.register_member(balance=0)
    child = await spawn("increment", db_url, redis_server_url, redis_prefix, "50")  # type: ignore[misc]
    assert await child.line() == ["READY"]
    await child.go()
    member = scoped.member(G, U)
    mine = await asyncio.gather(*(member.increment("balance") for _ in range(50)))
    assert await child.line() == ["DONE"]
    await child.finish()
    assert len(set(mine)) == 50  # every increment returned a distinct new total
    assert await member.get("balance") == 100
    stored = await db.fetchval("SELECT value FROM kv_store WHERE key = 'balance'")
    assert int(stored) == 100


async def test_case_numbers_from_two_processes_are_consecutive(
    db: botdb.Database,
    db_url: str,
    redis_server_url: str,
    redis_prefix: str,
    spawn: Callable[..., object],
) -> None:
    """30 concurrent tasks in A and 20 in B create cases numbered 1..50, no gap, no repeat."""
    cases = CaseService(db)
    child = await spawn("cases", db_url, redis_server_url, redis_prefix, "20")  # type: ignore[misc]
    assert await child.line() == ["READY"]
    await child.go()
    mine = await asyncio.gather(*(cases.create(G, 7, 6, "note") for _ in range(30)))
    assert await child.line() == ["DONE"]
    await child.finish()
    rows = await db.fetch("SELECT case_number FROM moderation_cases ORDER BY case_number")
    assert [r[0] for r in rows] == list(range(1, 51))
    assert len({c.case_number for c in mine}) == 30


async def test_services_answer_from_the_database_while_redis_is_down_and_resume_after(
    sqlite_url: str, caplog: pytest.LogCaptureFixture, redis_server_binary: str
) -> None:
    """Redis down: every service keeps answering (from the database), one warning is logged;
    when Redis comes back, caching and cross-process invalidation resume by themselves."""
    caplog.set_level(logging.INFO, logger="botdb.cache")
    port = closed_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = None
    try:
        async with botdb.connect(sqlite_url, redis_url=url, cache_prefix="svc-down:") as a:
            await a.create_tables()
            config, users = GuildConfigService(a), UserService(a)
            scoped = ScopedConfig(a, namespace="eco")
            scoped.register_member(balance=0)
            assert (await config.set(G, prefix="?")).prefix == "?"
            assert (await config.get(G)).prefix == "?"
            assert (await users.ensure(id=U, username="u")).username == "u"
            assert await scoped.member(G, U).increment("balance", 2) == 2
            assert await scoped.member(G, U).get("balance") == 2
            assert (await CaseService(a).create(G, U, 6, "warn")).case_number == 1
            assert a.cache.stats()["redis_available"] is False

            server = await start_redis_server(redis_server_binary, port)
            await wait_until(lambda: bool(a.cache.stats()["listening"]))
            async with botdb.connect(sqlite_url, redis_url=url, cache_prefix="svc-down:") as b:
                config_b = GuildConfigService(b)
                assert (await config_b.get(G)).prefix == "?"
                await config.set(G, prefix="%")
                await wait_until(lambda: b.cache.peek(config_b.key(G)) is None)
                assert (await config_b.get(G)).prefix == "%"
                assert b.cache.stats()["invalidations_received"] >= 1
    finally:  # both Databases are closed before the server goes away
        if server is not None:
            server.kill()
            await server.wait()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
