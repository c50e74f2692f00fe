"""``db.scheduler``: scheduling rate, claim-and-complete rate across worker processes, lateness.

Rates (ratio = botdb path / baseline, interleaved rounds), on a SQLite file and on PostgreSQL:

* ``schedule()`` one job per call against a plain ``INSERT`` of the same row through the raw
  API (what the checks, the key's conflict handling and the NOTIFY cost);
* ``schedule_many()`` of 5,000 jobs against ``execute_many`` of the same INSERT (one
  statement per 5,000 rows against one per row);
* claim-and-complete: jobs due now, run by three worker processes against one worker
  process (handlers that do nothing, so the figure is the scheduler's own overhead: claims,
  lease, settling). The clock runs from ``schedule_many`` to the last job marked done.

Latency: firing lateness (a job's due time to its handler's start) of jobs scheduled 30 ms
ahead in the worker's own process, one at a time, p50/p99. The 100 ms bar is the project's
own, not a DESIGN target.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _base import Case, LatencyCase, Pair, require

import botdb
from botdb.scheduler import Job, ScheduleRequest

SINGLE = 500
BULK = 5_000
CLAIMED = 3_000
SAMPLES = 150

_SRC = str(Path(botdb.__file__).resolve().parents[1])
_INSERT = (
    "INSERT INTO scheduled_jobs (kind, key, payload, guild_id, user_id, run_at, state, "
    "attempts, max_attempts, misfire, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, 'scheduled', 0, 5, 'once', $7, $7)"
)


def _url(env: dict[str, Any], backend: str, name: str) -> str:
    if backend == "postgresql":
        return str(require(env, "pg_url"))
    return f"sqlite:///{env['tmp'] / name}"


async def _fresh(url: str) -> botdb.Database:
    db = await botdb.connect(url)
    await db.create_tables()
    await db.execute("DELETE FROM scheduled_jobs")
    return db


def _schedule_rate(backend: str, *, bulk: bool) -> Callable[[dict[str, Any]], Any]:
    @asynccontextmanager
    async def setup(env: dict[str, Any]) -> AsyncIterator[Pair]:
        db = await _fresh(_url(env, backend, "scheduler-rate.db"))
        db.scheduler.register_kind("bench")
        payload = '{"channel": 1, "text": "remind me"}'
        counter = 0

        def later() -> datetime:
            return datetime.now(UTC) + timedelta(days=1)

        async def raw() -> int:
            nonlocal counter
            counter += 1
            now = datetime.now(UTC)
            if bulk:
                rows = [
                    ("bench", f"raw:{counter}:{i}", payload, 1, 2, later(), now)
                    for i in range(BULK)
                ]
                await db.execute_many(
                    _INSERT.replace("$3", "$3::jsonb") if backend == "postgresql" else _INSERT, rows
                )
                return BULK
            query = _INSERT.replace("$3", "$3::jsonb") if backend == "postgresql" else _INSERT
            for i in range(SINGLE):
                await db.execute(query, "bench", f"raw:{counter}:{i}", payload, 1, 2, later(), now)
            return SINGLE

        async def scheduled() -> int:
            nonlocal counter
            counter += 1
            if bulk:
                await db.scheduler.schedule_many(
                    ScheduleRequest(
                        kind="bench",
                        at=later(),
                        key=f"s:{counter}:{i}",
                        guild_id=1,
                        user_id=2,
                        payload={"channel": 1, "text": "remind me"},
                    )
                    for i in range(BULK)
                )
                return BULK
            for i in range(SINGLE):
                await db.scheduler.schedule(
                    "bench",
                    at=later(),
                    key=f"s:{counter}:{i}",
                    guild_id=1,
                    user_id=2,
                    payload={"channel": 1, "text": "remind me"},
                )
            return SINGLE

        try:
            yield raw, scheduled
        finally:
            await db.close()

    return setup


WORKER = r"""
import asyncio, sys
import botdb

async def main(url, kind):
    async with botdb.connect(url, scheduler_batch=200, scheduler_concurrency=100) as db:
        @db.scheduler.handler(kind)
        async def nothing(job):
            pass
        await db.scheduler.start()
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _claim_rate(backend: str) -> Callable[[dict[str, Any]], Any]:
    @asynccontextmanager
    async def setup(env: dict[str, Any]) -> AsyncIterator[Pair]:
        url = _url(env, backend, "scheduler-claim.db")
        db = await _fresh(url)
        db.scheduler.register_kind("one", "three")
        script = Path(env["tmp"]) / "scheduler_worker.py"
        script.write_text(WORKER)
        environ = {**os.environ, "PYTHONPATH": _SRC}
        procs = []
        for kind in ["one"] + ["three"] * 3:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(script),
                url,
                kind,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=environ,
            )
            procs.append(proc)
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line.strip() == b"READY", line

        def run(kind: str) -> Callable[[], Awaitable[int]]:
            async def go() -> int:
                await db.execute("DELETE FROM scheduled_jobs WHERE kind = $1", kind)
                now = datetime.now(UTC)
                await db.scheduler.schedule_many(
                    ScheduleRequest(kind=kind, at=now) for _ in range(CLAIMED)
                )
                query = "SELECT count(*) FROM scheduled_jobs WHERE kind = $1 AND state = 'done'"
                # Another process does the work: poll the table (no event crosses processes).
                while await db.fetchval(query, kind) < CLAIMED:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                return CLAIMED

            return go

        try:
            yield run("one"), run("three")
        finally:
            for proc in procs:
                if proc.stdin is not None:
                    proc.stdin.write(b"stop\n")
            for proc in procs:
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
            await db.close()

    return setup


def _lateness(backend: str) -> Callable[[dict[str, Any]], Any]:
    @asynccontextmanager
    async def setup(env: dict[str, Any]) -> AsyncIterator[Callable[[], Awaitable[list[float]]]]:
        db = await _fresh(_url(env, backend, "scheduler-lateness.db"))
        fired: asyncio.Queue[float] = asyncio.Queue()

        async def handler(job: Job) -> None:
            await fired.put((datetime.now(UTC) - job.run_at).total_seconds())

        db.scheduler.add_handler("late", handler)
        await db.scheduler.start()

        async def sample() -> list[float]:
            latencies = []
            for _ in range(SAMPLES):
                await db.scheduler.schedule("late", delay=0.03)
                latencies.append(await asyncio.wait_for(fired.get(), 30))
            return latencies

        try:
            yield sample
        finally:
            await db.close()

    return setup


CASES: list[Case] = (
    [
        Case(
            f"scheduler {b} schedule() x{SINGLE}",
            "raw INSERT each",
            None,
            _schedule_rate(b, bulk=False),
        )
        for b in ("sqlite", "postgresql")
    ]
    + [
        Case(
            f"scheduler {b} schedule_many({BULK})",
            "raw execute_many",
            None,
            _schedule_rate(b, bulk=True),
        )
        for b in ("sqlite", "postgresql")
    ]
    + [
        Case(
            f"scheduler {b} claim+complete, 3 worker processes",
            "1 worker process",
            None,
            _claim_rate(b),
        )
        for b in ("sqlite", "postgresql")
    ]
)

LATENCIES: list[LatencyCase] = [
    LatencyCase(f"scheduler {b} firing lateness (in-process)", 100.0, _lateness(b))
    for b in ("sqlite", "postgresql")
]
