"""Replica routing cases: what sending a read to a replica costs beside reading the primary.

A private primary (``initdb`` on a free loopback port, never the shared server) and a
streaming replica made from it with ``pg_basebackup -R``, as ``tests/test_replicas.py`` makes
them; skipped, with the reason in the table, when the PostgreSQL 15 binaries are missing.
Two Databases on the same primary: ``direct`` without ``replica_urls`` and ``routed`` with the
replica. Each side runs in a task of its own that has written nothing (so read-your-writes
keeps nothing on the primary), and the routed side checks that every read went where it
should: a case whose reads went elsewhere is reported as skipped rather than measured.

* ``fetchrow`` by primary key: direct vs routed to the replica, and direct vs ``db.primary``;
* a repository page (``find_all(order_by="id", limit=50)``, a read-only session): direct vs
  routed to the replica;
* the same page on ``direct``, in the read-only session it uses now vs the read-write session
  (``db.session()``) every repository read used before.

Target: routing costs no more than the noise, i.e. routed/direct latency <= 1.1x, a rate
ratio >= 0.9 (the replica is another server on the same 2 cores, so it is no faster).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from _base import Case, Pair
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import botdb
from botdb.models import Guild

T = TypeVar("T")

PG_BIN = Path(os.environ.get("BOTDB_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
GUILDS = 1000
LOOKUPS = 2000
PAGES = 100
PK_SQL = "SELECT id, name, owner_id FROM guilds WHERE id = $1"


#: One side of a comparison: does its reads, returns how many.
Run = Callable[[], Coroutine[Any, Any, int]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*args: str) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=180)


@dataclass
class _Cluster:
    base: Path
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://root@127.0.0.1:{self.port}/postgres"

    def ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.base / self.name), "-o", options,
            "-l", str(self.base / f"{self.name}.log"), "-w", "-m", "fast", action,
        )  # fmt: skip


@dataclass
class _Pair:
    """The running primary/replica and the two Databases on them."""

    base: Path
    clusters: list[_Cluster]
    direct: botdb.Database
    routed: botdb.Database


_STATE: dict[str, Any] = {}


def _make_clusters() -> tuple[Path, _Cluster, _Cluster]:
    missing = [n for n in ("initdb", "pg_ctl", "pg_basebackup") if not (PG_BIN / n).exists()]
    if missing:
        raise RuntimeError(f"no {', '.join(missing)} in {PG_BIN} (set BOTDB_BENCH_PG_BIN)")
    base = Path(tempfile.mkdtemp(prefix="botdb-bench-replicas-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    primary, replica = _Cluster(base, "primary", _free_port()), _Cluster(base, "replica", 0)
    started: list[_Cluster] = []
    try:
        _run(str(PG_BIN / "initdb"), "-D", str(base / "primary"), "-U", "root", "--auth=trust",
             "--no-sync")  # fmt: skip
        primary.ctl("start")
        started.append(primary)
        replica.port = _free_port()
        _run(
            str(PG_BIN / "pg_basebackup"), "-D", str(base / "replica"), "-R", "-X", "stream",
            "-h", "127.0.0.1", "-p", str(primary.port), "-U", "root", "--no-sync",
        )  # fmt: skip
        replica.ctl("start")
        started.append(replica)
    except BaseException:
        _stop(base, started)
        raise
    return base, primary, replica


def _stop(base: Path, clusters: list[_Cluster]) -> None:
    for cluster in reversed(clusters):
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.ctl("stop")
    shutil.rmtree(base, ignore_errors=True)


async def _pair() -> _Pair:
    """The primary/replica pair and its Databases, made on first use (one per run)."""
    if "error" in _STATE:
        raise RuntimeError(_STATE["error"])
    if "pair" in _STATE:
        pair: _Pair = _STATE["pair"]
        return pair
    try:
        base, primary, replica = await asyncio.to_thread(_make_clusters)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        _STATE["error"] = f"cannot start a primary/replica pair: {exc} {stderr.decode()[-300:]}"
        raise RuntimeError(_STATE["error"]) from exc
    atexit.register(_stop, base, [primary, replica])
    direct = await botdb.connect(primary.url)
    routed = await botdb.connect(primary.url, replica_urls=[replica.url])
    await direct.create_tables()
    await direct.execute_many(
        "INSERT INTO guilds (id, name, owner_id) VALUES ($1, $2, $3)",
        [(i, f"guild {i}", i % 97) for i in range(1, GUILDS + 1)],
    )
    await direct.analyze(["guilds"])
    # Wait (bounded) until the replica itself has replayed every row.
    check = "SELECT pg_is_in_recovery() AND (SELECT count(*) FROM guilds) = $1"
    for _ in range(600):
        if await _fresh(lambda: routed.fetchval(check, GUILDS)):
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("the replica did not replay the bench rows within 30 s")
    pair = _STATE["pair"] = _Pair(base, [primary, replica], direct, routed)
    return pair


async def _close_pair() -> None:
    pair: _Pair | None = _STATE.pop("pair", None)
    if pair is None:
        return
    await pair.direct.close()
    await pair.routed.close()
    await asyncio.to_thread(_stop, pair.base, pair.clusters)


def _fresh(fn: Callable[[], Coroutine[Any, Any, T]]) -> Awaitable[T]:
    """Run ``fn()`` in a task that has written nothing (an empty context)."""
    return asyncio.create_task(fn(), context=contextvars.Context())


def _replica_reads(db: botdb.Database) -> int:
    reads: dict[str, int] = db.stats()["reads"]
    return sum(n for target, n in reads.items() if target != "primary")


def _routed(db: botdb.Database, run: Run) -> Run:
    """``run`` in a fresh task, checking that every one of its reads went to the replica."""

    async def subject() -> int:
        before = _replica_reads(db)
        count: int = await _fresh(run)
        if _replica_reads(db) - before != count:
            raise RuntimeError(f"{_replica_reads(db) - before} of {count} reads on the replica")
        return count

    return subject


def _in_fresh_task(
    run: Run,
) -> Run:
    async def side() -> int:
        count: int = await _fresh(run)
        return count

    return side


def _lookups(query: Callable[..., Awaitable[Any]]) -> Run:
    async def run() -> int:
        for i in range(LOOKUPS):
            row = await query(PK_SQL, 1 + i % GUILDS)
            assert row is not None
        return LOOKUPS

    return run


def _pages(db: botdb.Database) -> Run:
    guilds = db.repo(Guild)

    async def run() -> int:
        for _ in range(PAGES):
            page = await guilds.find_all(order_by="id", limit=50)
            assert len(page) == 50
        return PAGES

    return run


def _pages_in_read_write_session(db: botdb.Database) -> Run:
    """What ``find_all`` did before read-only sessions: its own ``db.session()``."""
    statement = select(Guild).order_by(Guild.id).limit(50)

    async def work(session: AsyncSession) -> list[Guild]:
        return list((await session.scalars(statement)).all())

    async def run() -> int:
        for _ in range(PAGES):
            assert len(await db.run_in_session(work)) == 50
        return PAGES

    return run


Build = Callable[[_Pair], Pair]


def _case(build: Build, last: bool = False) -> Callable[[dict[str, Any]], Any]:
    @asynccontextmanager
    async def setup(env: dict[str, Any]) -> AsyncIterator[Pair]:
        try:
            yield build(await _pair())
        finally:
            if last:
                await _close_pair()

    return setup


def _fetchrow_routed(p: _Pair) -> Pair:
    return (
        _in_fresh_task(_lookups(p.direct.fetchrow)),
        _routed(p.routed, _lookups(p.routed.fetchrow)),
    )


def _fetchrow_primary(p: _Pair) -> Pair:
    return (
        _in_fresh_task(_lookups(p.direct.fetchrow)),
        _in_fresh_task(_lookups(p.routed.primary.fetchrow)),
    )


def _page_routed(p: _Pair) -> Pair:
    return _in_fresh_task(_pages(p.direct)), _routed(p.routed, _pages(p.routed))


def _page_sessions(p: _Pair) -> Pair:
    return (
        _in_fresh_task(_pages_in_read_write_session(p.direct)),
        _in_fresh_task(_pages(p.direct)),
    )


CASES: list[Case] = [
    Case(
        "pg replica fetchrow by PK, routed to the replica",
        "same fetchrow, Database without replicas",
        0.9,
        _case(_fetchrow_routed),
    ),
    Case(
        "pg replica fetchrow by PK, through db.primary",
        "same fetchrow, Database without replicas",
        0.9,
        _case(_fetchrow_primary),
    ),
    Case(
        "pg replica repository find_all page of 50, routed to the replica",
        "same page, Database without replicas",
        0.9,
        _case(_page_routed),
    ),
    Case(
        "pg replica repository find_all page of 50, read-only session (no replicas)",
        "the read-write session it used before",
        0.9,
        _case(_page_sessions, last=True),
    ),
]
