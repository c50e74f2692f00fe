"""``db.scheduler`` across real OS processes, on one SQLite file and on one PostgreSQL database:
three workers share 10,000 jobs and run each once; a worker killed with SIGKILL in the middle
of a job leaves it to another after its lease; jobs scheduled by a process that exited fire
when a worker starts, per their missed-firing policy; and an idle worker makes no query.

Each handler records its job in ``handled``, whose primary key is the job's key and due time:
a second run of the same firing is caught by ``ON CONFLICT DO NOTHING`` (the child counts the
statements that inserted nothing and reports them as duplicates) and by ``runs``, which logs
every run.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import botdb
from botdb.scheduler import Job, ScheduleRequest
from botdb.scheduler import _worker as scheduler_worker
from tests.helpers import MakeDB, child_env, wait_until

pytestmark = pytest.mark.timeout(300)

JOBS = 10_000

CHILD = r"""
import asyncio, os, sys
from pathlib import Path
import botdb

async def main(url, mode, lease, signal_dir):
    async with botdb.connect(
        url, scheduler_lease=float(lease), scheduler_poll_interval=0.05, scheduler_batch=200,
        scheduler_concurrency=50, retry_attempts=10,
    ) as db:
        sched = db.scheduler
        pid = os.getpid()
        duplicates = 0

        if mode == "schedule":  # schedule the restart test's jobs, then exit
            await schedule_restart_jobs(sched)
            print("SCHEDULED", flush=True)
            return

        @sched.handler("work")
        async def work(job):
            nonlocal duplicates
            if mode == "block":  # in the middle of the job: wait for a file that never comes
                print("STARTED", job.key, flush=True)
                while not Path(signal_dir, "never").exists():
                    await asyncio.sleep(0.05)
            await db.execute("INSERT INTO runs (job_key, pid) VALUES ($1, $2)", job.key, pid)
            status = await db.execute(
                "INSERT INTO handled (job_key, run_at, pid) VALUES ($1, $2, $3) "
                "ON CONFLICT (job_key, run_at) DO NOTHING",
                job.key, job.run_at.isoformat(), pid,
            )
            if status.endswith(" 0"):
                duplicates += 1

        await sched.start()
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await sched.stop()
        stats = sched.stats()
        print("DONE", stats["run"], duplicates, stats["lateness_ms"]["p50"],
              stats["lateness_ms"]["p99"], flush=True)

async def schedule_restart_jobs(sched):
    from datetime import UTC, datetime, timedelta
    sched.register_kind("work")
    now = datetime.now(UTC)
    hours_ago = now - timedelta(hours=3, minutes=30)  # firings missed: -3.5 h ... -0.5 h
    await sched.schedule("work", at=now + timedelta(milliseconds=200), key="one-shot")
    for policy in ("once", "all", "skip"):
        await sched.schedule("work", at=hours_ago, every=3600, misfire=policy, key=policy)

asyncio.run(main(*sys.argv[1:]))
"""


class Child:
    """A worker process running CHILD, and its output lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, timeout: float = 60.0) -> list[str]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert raw, "the child process exited early"
        return raw.decode().split()

    async def expect(self, word: str) -> list[str]:
        words = await self.line()
        assert words[:1] == [word], words
        return words

    async def finish(self) -> list[str]:
        """Tell the worker to stop; its DONE line: runs, duplicates, lateness p50, p99."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        words = await self.expect("DONE")
        assert await asyncio.wait_for(self.proc.wait(), 60) == 0
        return words


Spawn = Callable[..., Awaitable[Child]]


@pytest.fixture
async def spawn(tmp_path: Path, db_url: str) -> AsyncIterator[Spawn]:
    script = tmp_path / "worker.py"
    script.write_text(CHILD)
    children: list[asyncio.subprocess.Process] = []

    async def start(mode: str = "work", lease: float = 30.0) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            db_url,
            mode,
            str(lease),
            str(tmp_path),
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
async def db(make_db: MakeDB) -> botdb.Database:
    db = await make_db(create_tables=True)
    await db.execute(
        "CREATE TABLE handled (job_key TEXT NOT NULL, run_at TEXT NOT NULL, pid INTEGER, "
        "PRIMARY KEY (job_key, run_at))"
    )
    await db.execute("CREATE TABLE runs (job_key TEXT NOT NULL, pid INTEGER)")
    db.scheduler.register_kind("work")
    return db


async def count(db: botdb.Database, sql: str, *args: object) -> int:
    return int(await db.fetchval(sql, *args))


@pytest.mark.slow
async def test_three_worker_processes_run_10000_jobs_each_exactly_once(
    db: botdb.Database, spawn: Spawn
) -> None:
    workers = [await spawn() for _ in range(3)]
    for worker in workers:
        await worker.expect("READY")
    # 10,000 jobs due over two seconds, starting a second from now: the workers sleep until
    # the first is due (woken by NOTIFY / data_version), then share the stream.
    start = datetime.now(UTC) + timedelta(seconds=1)
    jobs = await db.scheduler.schedule_many(
        ScheduleRequest(kind="work", at=start + timedelta(microseconds=200 * i), key=f"job:{i}")
        for i in range(JOBS)
    )
    assert len({job.id for job in jobs}) == JOBS

    async def all_done() -> bool:
        return await count(db, "SELECT count(*) FROM scheduled_jobs WHERE state = 'done'") == JOBS

    await wait_until(all_done, timeout=240, interval=0.1, what="every job done")
    reports = [await worker.finish() for worker in workers]
    runs = [int(report[1]) for report in reports]
    duplicates = sum(int(report[2]) for report in reports)
    assert sum(runs) == JOBS
    assert duplicates == 0
    assert await count(db, "SELECT count(*) FROM handled") == JOBS
    assert await count(db, "SELECT count(*) FROM runs") == JOBS  # no job ran twice
    assert await count(db, "SELECT count(DISTINCT pid) FROM handled") >= 2  # shared out
    print(f"\n{db.backend}: runs per worker {runs}, lateness p50/p99 (ms) "
          f"{[(r[3], r[4]) for r in reports]}")  # fmt: skip


async def test_a_job_whose_worker_is_killed_runs_again_after_its_lease_and_once(
    db: botdb.Database, spawn: Spawn
) -> None:
    victim = await spawn("block", lease=1.0)
    await victim.expect("READY")
    job = await db.scheduler.schedule("work", delay=0, key="killed")
    assert await victim.expect("STARTED") == ["STARTED", "killed"]
    victim.proc.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(victim.proc.wait(), 30) == -signal.SIGKILL
    held = await db.scheduler.get(job.id)
    assert held is not None
    assert (held.state, held.attempts) == ("running", 1)  # the lease still names the victim

    rescuer = await spawn(lease=1.0)
    await rescuer.expect("READY")

    async def done() -> bool:
        current = await db.scheduler.get(job.id)
        return current is not None and current.state == "done"

    await wait_until(done, timeout=60, what="the job taken over after the lease")
    report = await rescuer.finish()
    assert report[1:3] == ["1", "0"]  # one run, no duplicate
    finished = await db.scheduler.get(job.id)
    assert finished is not None
    assert finished.attempts == 2  # the victim's try counted
    assert await count(db, "SELECT count(*) FROM handled WHERE job_key = 'killed'") == 1
    assert await count(db, "SELECT count(*) FROM runs WHERE job_key = 'killed'") == 1


async def test_jobs_scheduled_before_a_process_exit_fire_after_a_start_per_policy(
    db: botdb.Database, spawn: Spawn
) -> None:
    scheduler = await spawn("schedule")
    await scheduler.expect("SCHEDULED")
    assert await asyncio.wait_for(scheduler.proc.wait(), 30) == 0
    # Nothing runs while no worker does: the one-shot job comes due, hourly firings pass.
    assert await count(db, "SELECT count(*) FROM handled") == 0
    pending = {job.key: job for job in await db.scheduler.jobs(kind="work")}
    assert set(pending) == {"one-shot", "once", "all", "skip"}

    worker = await spawn()
    await worker.expect("READY")

    async def fired() -> bool:  # one-shot 1 + once 1 + all 4 (3 hours late) + skip 0
        return await count(db, "SELECT count(*) FROM handled") == 6

    await wait_until(fired, timeout=60, what="the missed firings")
    skip = await db.scheduler.get("skip")
    assert skip is not None
    assert skip.run_at == pending["skip"].run_at + timedelta(hours=4)  # in half an hour
    await worker.finish()
    by_key = {
        row["job_key"]: row["n"]
        for row in await db.fetch("SELECT job_key, count(*) AS n FROM handled GROUP BY job_key")
    }
    assert by_key == {"one-shot": 1, "once": 1, "all": 4}
    one_shot = await db.scheduler.get("one-shot")
    assert one_shot is not None
    assert one_shot.state == "done"
    for policy in ("once", "all", "skip"):
        job = await db.scheduler.get(policy)
        assert job is not None
        assert job.state == "scheduled"
        assert job.run_at > datetime.now(UTC)


# -- idle ---------------------------------------------------------------------------------


# The idle window spans 30 of the SQLite watcher's polls and 12 of the LISTEN connection's
# pings, as 30 s did with their defaults (1 s, 30 s), at intervals shortened for the test.
IDLE_WINDOW = 3.0
IDLE_POLL_INTERVAL = 0.1
IDLE_PING_INTERVAL = 0.25


@pytest.mark.timeout(120)
async def test_an_idle_worker_makes_no_query_across_its_polls_and_pings_then_fires_a_job(
    sqlite_url: str, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both backends at once: with a job an hour away, a started worker makes no query
    through the Database (``db.stats()``) while its watchers poll ``PRAGMA data_version``
    (SQLite) and ping the LISTEN connection (PostgreSQL) many times over; a job scheduled
    1 s ahead then fires, and its lateness is reported (no bound asserted: speed lives in
    make bench)."""
    monkeypatch.setattr(scheduler_worker, "PING_INTERVAL", IDLE_PING_INTERVAL)

    async def idle_then_fire(url: str) -> tuple[str, int, float]:
        async with botdb.connect(url, scheduler_poll_interval=IDLE_POLL_INTERVAL) as db:
            await db.create_tables()
            fired: asyncio.Queue[tuple[Job, datetime]] = asyncio.Queue()

            async def handler(job: Job) -> None:
                await fired.put((job, datetime.now(UTC)))

            db.scheduler.add_handler("ping", handler)
            await db.scheduler.schedule("ping", delay=3600, key="far")
            await db.scheduler.start()
            worker = db.scheduler._worker
            assert worker is not None
            await wait_until(lambda: worker.sleeping, what="the worker to look once and sleep")
            before = db.stats()["queries"]
            await asyncio.sleep(IDLE_WINDOW)  # the measured window
            idle_queries = db.stats()["queries"] - before
            job = await db.scheduler.schedule("ping", delay=1.0, key="soon")
            got, started = await asyncio.wait_for(fired.get(), timeout=30)
            assert got.id == job.id
            return db.backend, idle_queries, (started - job.run_at).total_seconds() * 1000

    results = await asyncio.gather(idle_then_fire(sqlite_url), idle_then_fire(pg_url))
    for backend, queries, lateness_ms in results:
        print(
            f"\n{backend}: {queries} queries in {IDLE_WINDOW} s idle; "
            f"1 s job fired {lateness_ms:.1f} ms late"
        )
        assert queries == 0, backend
        assert lateness_ms >= 0
