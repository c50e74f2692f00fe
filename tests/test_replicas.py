"""Read replicas on a real streaming replica: a private primary cluster (``initdb`` on a free
port, never the shared server) and a replica made from it with ``pg_basebackup -R``.

Shown: reads of the raw API, repositories (their sessions included) and services go to the
replica; writes, transactions and read-write sessions to the primary; a write in a read-only
session is refused before it is sent; read-your-writes holds for the writing task; a replica whose
replay is paused beyond ``replica_max_lag`` is skipped; a stopped replica makes reads fall
back to the primary with nothing raised, and it is used again once it is back; health and
statistics report it. SQLite refuses ``replica_urls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

import botdb
from botdb import errors
from botdb.config import Settings
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

PG_BIN = Path("/usr/lib/postgresql/15/bin")
IN_RECOVERY = "SELECT pg_is_in_recovery()"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A PostgreSQL 15 cluster of this module's own, run as ``postgres`` when root."""

    def __init__(self, base: Path, name: str) -> None:
        self.dir = base
        self.data = base / name
        self.log = base / f"{name}.log"
        self.port = _free_port()
        self.url = f"postgresql://root@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def run(*args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log),
            "-w", "-m", "fast", action,
        )  # fmt: skip

    def stop_quietly(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.ctl("stop")


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    """(primary, replica): a streaming pair on loopback."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_basebackup").exists():
        pytest.skip(f"no PostgreSQL 15 binaries in {PG_BIN}")
    base = Path(tempfile.mkdtemp(prefix="botdb-replicas-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    primary, replica = Cluster(base, "primary"), Cluster(base, "replica")
    try:
        Cluster.run(
            str(PG_BIN / "initdb"), "-D", str(primary.data), "-U", "root", "--auth=trust",
            "--no-sync",
        )  # fmt: skip
        primary.ctl("start")
        Cluster.run(
            str(PG_BIN / "pg_basebackup"), "-D", str(replica.data), "-R", "-X", "stream",
            "-h", "127.0.0.1", "-p", str(primary.port), "-U", "root", "--no-sync",
        )  # fmt: skip
        replica.ctl("start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        replica.stop_quietly()
        primary.stop_quietly()
        shutil.rmtree(base, ignore_errors=True)
        stderr = getattr(exc, "stderr", b"") or b""
        pytest.fail(f"cannot start a primary/replica pair: {exc} {stderr.decode()[-500:]}")
    yield primary, replica
    replica.stop_quietly()
    primary.stop_quietly()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def db(clusters: tuple[Cluster, Cluster]) -> AsyncIterator[botdb.Database]:
    """Checked often; a lag bound no replay on a loaded machine comes near."""
    primary, replica = clusters
    database = await botdb.connect(
        primary.url,
        replica_urls=[replica.url],
        replica_check_interval=0.05,
        replica_max_lag=60.0,
        retry_initial_delay=0.01,
    )
    try:
        yield database
    finally:
        await database.close()


async def in_fresh_task(coro_fn: object) -> object:
    """Run ``coro_fn()`` in a task that has not written (an empty context)."""
    assert callable(coro_fn)
    return await asyncio.create_task(coro_fn(), context=contextvars.Context())


async def replicated(db: botdb.Database, query: str, *args: object) -> None:
    """Wait until the replica itself answers ``query`` truthily (replay caught up)."""
    checked = f"SELECT pg_is_in_recovery() AND ({query})"

    async def seen() -> bool:
        return bool(await in_fresh_task(lambda: db.fetchval(checked, *args)))

    await wait_until(seen, timeout=20.0)


async def test_reads_go_to_the_replica_writes_to_the_primary(db: botdb.Database) -> None:
    assert await db.fetchval(IN_RECOVERY) is True
    assert (await db.fetchrow(IN_RECOVERY))[0] is True
    assert (await db.fetch(IN_RECOVERY))[0][0] is True
    # db.primary forces the primary, for one statement or for a block.
    assert await db.primary.fetchval(IN_RECOVERY) is False
    async with db.primary:
        assert await db.fetchval(IN_RECOVERY) is False
    assert await db.fetchval(IN_RECOVERY) is True
    # Inside a transaction everything runs on the primary.
    async with db.transaction(readonly=True) as conn:
        assert await conn.fetchval(IN_RECOVERY) is False
    # A read that locks rows is the primary's.
    assert await db.fetchval(f"{IN_RECOVERY} FOR UPDATE") is False
    reads = db.stats()["reads"]
    assert reads["primary"] >= 2
    assert db._core.replicas is not None
    assert reads[db._core.replicas.replicas[0].name] >= 4
    health = await db.health_check()
    assert health["status"] in ("healthy", "degraded")
    assert [r["status"] for r in health["replicas"]] == ["ok"]


async def test_read_your_writes(db: botdb.Database) -> None:
    await db.execute("CREATE TABLE IF NOT EXISTS ryw (id int PRIMARY KEY)")
    await db.execute("INSERT INTO ryw VALUES (1)")
    # The writing task reads from the primary for replica_read_your_writes seconds: its row
    # is there even if the replica has not replayed it yet.
    assert await db.fetchval("SELECT count(*) FROM ryw WHERE id = 1") == 1
    assert await db.fetchval(IN_RECOVERY) is False
    # Another task, which wrote nothing, reads from the replica.
    assert await in_fresh_task(lambda: db.fetchval(IN_RECOVERY)) is True
    # After a transaction too.
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO ryw VALUES (2)")
    assert await db.fetchval("SELECT count(*) FROM ryw WHERE id = 2") == 1


async def test_repository_and_service_reads_use_the_replica(db: botdb.Database) -> None:
    from botdb.models import User

    await db.create_tables()
    await db.users.get_or_create(id=4242, platform="discord", username="ann")
    replicas = db._core.replicas
    assert replicas is not None
    replica = replicas.replicas[0]
    # Once replayed, a fresh task's repository get finds the row on the replica.
    await replicated(db, "SELECT count(*) = 1 FROM users WHERE id = 4242")

    async def repository_get() -> str | None:
        before = replica.reads
        user = await db.repo(User).get_by_id(4242)
        assert replica.reads == before + 1
        return None if user is None else user.username

    assert await in_fresh_task(repository_get) == "ann"

    async def service_read() -> object:
        before = replica.reads
        missing = await db.reminders.get_event_or_none(777)
        assert replica.reads == before + 1
        return missing

    assert await in_fresh_task(service_read) is None

    async def cache_fill() -> object:
        # What the cache keeps for its TTL is read from the primary (never stale).
        before, primary_before = replica.reads, replicas.primary_reads
        missing = await db.users.get_or_none(777)  # not cached: loaded every time
        assert replica.reads == before
        assert replicas.primary_reads == primary_before + 1
        return missing

    assert await in_fresh_task(cache_fill) is None


async def test_repository_and_session_reads_use_the_replica(
    db: botdb.Database, clusters: tuple[Cluster, Cluster]
) -> None:
    """The repositories' session reads (find_all, count, exists, both kinds of page, search),
    the services' session reads and ``db.session(readonly=True)`` go to the replica, except
    for the task that just wrote and inside ``db.primary``.

    The replica's replay is paused and a row written: a read that misses the row was answered
    by the replica, one that finds it by the primary.
    """
    import asyncpg
    from sqlalchemy import select, text

    from botdb.models import Guild

    _, standby = clusters
    await db.create_tables()
    guilds = db.repo(Guild)
    ours = {"owner_id": 77}
    await guilds.create(id=1001, platform="discord", owner_id=77)
    await db.cases.create(1001, user_id=5, moderator_id=6, action="warn")
    await guilds.find_page(limit=1)  # the cursor secret is made (a write) and read here
    await replicated(db, "SELECT count(*) = 1 FROM moderation_cases WHERE guild_id = 1001")
    replicas = db._core.replicas
    assert replicas is not None
    replica = replicas.replicas[0]
    direct = await asyncpg.connect(standby.url)
    try:
        await direct.execute("SELECT pg_wal_replay_pause()")
        await guilds.create(id=1002, platform="discord", owner_id=77)  # the primary's only
        # The writing task reads its own write, from the primary (read-your-writes).
        assert await guilds.count(ours) == 2
        assert [g.id for g in await guilds.find_all(ours, order_by="id")] == [1001, 1002]

        async def on_replica() -> list[object]:
            before = replica.reads
            reads: list[object] = [
                await guilds.count(ours),
                [g.id for g in await guilds.find_all(ours, order_by="id")],
                await guilds.exists({"id": 1002}),
                [g.id for g in (await guilds.find_page(limit=10, filters=ours)).items],
                (await guilds.paginate(1, 10, ours)).total,
                await guilds.get_one_or_none({"id": 1002}),
                len(await db.cases.list_for_guild(1001)),
            ]
            async with db.session(readonly=True) as session:
                reads.append((await session.execute(text(IN_RECOVERY))).scalar())
                reads.append((await session.scalars(select(Guild.id).filter_by(**ours))).all())
            assert replica.reads == before + 8
            return reads

        assert await in_fresh_task(on_replica) == [
            1,
            [1001],
            False,
            [1001],
            1,
            None,
            1,
            True,
            [1001],
        ]

        async def forced() -> list[object]:
            async with db.primary:
                async with db.session(readonly=True) as session:
                    in_recovery = (await session.execute(text(IN_RECOVERY))).scalar()
                return [await guilds.count(ours), in_recovery]

        assert await in_fresh_task(forced) == [2, False]
        reads = db.stats()["reads"]
        assert reads[replica.name] >= 8
        assert reads["primary"] >= 4
    finally:
        await direct.execute("SELECT pg_wal_replay_resume()")
        await direct.close()


async def test_a_write_in_a_read_only_session_never_reaches_the_replica(
    db: botdb.Database,
) -> None:
    """Refused with ReadOnlyError before it is sent: not run on the replica, not retried on
    the primary, the replica not counted as failed."""
    from sqlalchemy import text

    from botdb.models import Guild

    await db.create_tables()
    await replicated(db, "SELECT to_regclass('guilds') IS NOT NULL")
    replicas = db._core.replicas
    assert replicas is not None
    replica = replicas.replicas[0]

    async def write_in_read_session() -> None:
        async with db.session(readonly=True) as session:
            assert (await session.execute(text(IN_RECOVERY))).scalar() is True
            session.add(Guild(id=99, platform="discord"))

    async def write_in_read_unit() -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(text("INSERT INTO guilds (id, platform) VALUES (98, 'x')"))

        await db.run_in_session(work, readonly=True)

    for attempt in (write_in_read_session, write_in_read_unit):
        with pytest.raises(errors.ReadOnlyError):
            await in_fresh_task(attempt)
    assert replica.fallbacks == 0
    assert replica.status == "ok"
    async with db.primary:
        assert await db.fetchval("SELECT count(*) FROM guilds WHERE id IN (98, 99)") == 0


async def test_a_lagging_replica_is_skipped(clusters: tuple[Cluster, Cluster]) -> None:

    primary, replica = clusters
    async with botdb.connect(
        primary.url, replica_urls=[replica.url], replica_check_interval=0.05, replica_max_lag=0.5
    ) as db:
        await _lagging_replica_is_skipped(db, replica)


async def _lagging_replica_is_skipped(db: botdb.Database, replica: Cluster) -> None:
    import asyncpg

    await db.execute("CREATE TABLE IF NOT EXISTS lag (id int PRIMARY KEY)")
    await replicated(db, "SELECT to_regclass('lag') IS NOT NULL")
    direct = await asyncpg.connect(replica.url)
    try:
        await direct.execute("SELECT pg_wal_replay_pause()")
        await db.execute("INSERT INTO lag VALUES (1)")
        replicas = db._core.replicas
        assert replicas is not None
        # The checker sees the replay fall behind replica_max_lag and takes the replica out.
        await wait_until(lambda: replicas.replicas[0].status == "lagging", timeout=20.0)
        # A task that did not write reads from the primary now, and sees the row.
        assert await in_fresh_task(lambda: db.fetchval(IN_RECOVERY)) is False
        assert await in_fresh_task(lambda: db.fetchval("SELECT count(*) FROM lag")) == 1
        health = await db.health_check()
        assert health["status"] == "degraded"
        assert health["replicas"][0]["status"] == "lagging"
        assert health["replicas"][0]["lag_s"] > 0.5
    finally:
        await direct.execute("SELECT pg_wal_replay_resume()")
        await direct.close()
    await wait_until(lambda: replicas.replicas[0].status == "ok", timeout=20.0)
    assert await in_fresh_task(lambda: db.fetchval(IN_RECOVERY)) is True


async def test_a_stopped_replica_falls_back_to_the_primary(
    db: botdb.Database, clusters: tuple[Cluster, Cluster]
) -> None:
    from sqlalchemy import text

    from botdb.models import Guild

    _, replica = clusters
    await db.create_tables()
    await replicated(db, "SELECT to_regclass('guilds') IS NOT NULL")
    guilds = db.repo(Guild)

    async def session_reads() -> list[object]:
        async with db.session(readonly=True) as session:
            in_recovery = (await session.execute(text(IN_RECOVERY))).scalar()
        found = await guilds.find_all({"id": -1})
        return [in_recovery, await guilds.count({"id": -1}), found]

    assert (await in_fresh_task(session_reads))[0] is True
    await asyncio.to_thread(replica.ctl, "stop")
    try:
        # Whatever the checker has noticed yet: no read raises, every one is answered.
        for _ in range(5):
            assert await in_fresh_task(lambda: db.fetchval(IN_RECOVERY)) is False
            assert (await in_fresh_task(session_reads))[0] is False
        health = await db.health_check()
        assert health["replicas"][0]["status"] == "down"
        assert health["status"] == "degraded"
        assert health["database_available"] is True
    finally:
        await asyncio.to_thread(replica.ctl, "start")
    replicas = db._core.replicas
    assert replicas is not None
    await wait_until(lambda: replicas.replicas[0].status == "ok", timeout=30.0)
    assert await in_fresh_task(lambda: db.fetchval(IN_RECOVERY)) is True


async def test_connect_with_the_replica_down_works(clusters: tuple[Cluster, Cluster]) -> None:
    primary, _ = clusters
    dead = f"postgresql://root@127.0.0.1:{_free_port()}/postgres"
    async with botdb.connect(primary.url, replica_urls=dead, retry_initial_delay=0.01) as db:
        assert await db.fetchval(IN_RECOVERY) is False
        assert (await db.health_check())["replicas"][0]["status"] == "down"


def test_settings() -> None:
    environ = {"BOTDB_REPLICA_URLS": "postgresql://u@r1/db, postgresql://u@r2/db"}
    settings = Settings.from_env("postgresql://u@h/db", environ=environ)
    assert settings.replica_urls == ("postgresql://u@r1/db", "postgresql://u@r2/db")
    with pytest.raises(errors.ConfigurationError, match="SQLite has no read replicas"):
        Settings(database_url="sqlite:///bot.db", replica_urls=("postgresql://u@r1/db",))
    with pytest.raises(errors.ConfigurationError, match="not a PostgreSQL URL"):
        Settings(database_url="postgresql://u@h/db", replica_urls="sqlite:///x.db")
