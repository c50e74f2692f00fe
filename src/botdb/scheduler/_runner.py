"""``Runner``: what a worker does with jobs — claim them, run their handlers, settle them,
renew their leases — for ``Scheduler.start()``'s worker and for ``run_until_idle()``.

It holds the statements, the running settings, the handlers (shared with the Scheduler) and
what this process ran (counts and firing lateness, for ``Scheduler.stats()``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from botdb.errors import SchedulingError
from botdb.scheduler._jobs import (
    Job,
    JobState,
    backoff,
    describe_error,
    first_after,
    job_from_row,
    next_fire,
    parse_time,
)
from botdb.scheduler._sql import CHANNEL, statements

if TYPE_CHECKING:
    from botdb._protocols import SchedulerDatabase

__all__ = ["LeaseExpiredError", "Runner", "Settle", "new_worker_id", "utcnow", "wake_text"]

log = logging.getLogger("botdb.scheduler")

#: A job's handler: ``async def handler(job: Job) -> None``.
Handler = Callable[[Job], Awaitable[None]]

#: Firing lateness samples kept for ``Scheduler.stats()``.
_SAMPLES: Final = 10_000


def utcnow() -> datetime:
    """Now, aware UTC (the clock every due time is compared with)."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Settle:
    """How a claimed job ends: its new state, due time, attempts and error."""

    job_id: int
    state: JobState | None  # None: a one-shot job done (batched), or handed back (release)
    run_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    finished_at: datetime | None = None
    release: bool = False


class Runner:
    """Claims, runs and settles jobs of the handled kinds (see the module docstring)."""

    def __init__(
        self,
        db: SchedulerDatabase,
        handlers: dict[str, Handler],
        poke: Callable[[datetime | None], None],
        open_connection: Callable[[], Awaitable[Any]] | None,
        *,
        in_memory: bool,
    ) -> None:
        self._db = db
        self.handlers = handlers
        self._poke = poke
        self._open_connection = open_connection
        self._in_memory = in_memory
        settings = db.settings
        self.lease = settings.scheduler_lease
        self.poll_interval = settings.scheduler_poll_interval
        self.batch = settings.scheduler_batch
        self.retry_delay = settings.scheduler_retry_delay
        self.retry_max_delay = settings.scheduler_retry_max_delay
        self._sql = statements(db.backend)
        self._postgres = db.backend == "postgresql"
        # Behind pgbouncer in transaction mode LISTEN is not reliable: workers poll instead.
        self.polls = self._postgres and settings.pgbouncer
        self.lateness: deque[float] = deque(maxlen=_SAMPLES)
        self.counts = {"run": 0, "succeeded": 0, "failed": 0, "dead": 0, "skipped": 0}

    def handled_kinds(self) -> list[str]:
        return sorted(self.handlers)

    async def claim(
        self, worker_id: str, limit: int, kinds: list[str], *, expired: bool | None = None
    ) -> list[Job]:
        """Claim up to ``limit`` due jobs for ``worker_id``: jobs whose lease ran out
        (``expired=True``), waiting jobs now due (``False``), or both, expired first
        (``None``)."""
        now = utcnow()
        jobs: list[Job] = []
        queries = {None: (True, False), True: (True,), False: (False,)}[expired]
        for lease_ended in queries:
            if len(jobs) >= limit:
                break
            records = await self._db.fetch(
                self._sql.claim_expired if lease_ended else self._sql.claim,
                worker_id, now + timedelta(seconds=self.lease), now, limit - len(jobs), kinds,
            )  # fmt: skip
            jobs.extend(job_from_row(record) for record in records)
        jobs.sort(key=lambda job: (job.run_at, job.id))
        return jobs

    async def next_due(self, kinds: list[str]) -> tuple[datetime | None, datetime | None]:
        """For jobs of ``kinds``: the earliest due time of a waiting job and the earliest
        lease end of a running one (each None when there is none)."""
        row = await self._db.fetchrow(self._sql.next_due, kinds)
        waiting, lease = row["waiting"], row["lease"]
        return (
            None if waiting is None else parse_time(waiting),
            None if lease is None else parse_time(lease),
        )

    async def renew(self, worker_id: str) -> None:
        now = utcnow()
        await self._db.execute(self._sql.renew, now + timedelta(seconds=self.lease), worker_id, now)

    async def renew_forever(self, worker_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease / 3.0)
            try:
                await self.renew(worker_id)
            except Exception as exc:  # the next renewal tries again; the lease may run out
                log.warning("renewing job leases of %s failed: %s", worker_id, exc)

    async def execute(self, job: Job) -> Settle:
        """Run ``job``'s handler (or skip a missed firing) and say how the job ends."""
        now = utcnow()
        every = None if job.every is None else job.every.total_seconds()
        following: datetime | None = None
        if job.attempts > job.max_attempts:
            # Every try so far ended with its worker gone (lease expired): a job that kills
            # or freezes its process is not run again and again.
            return self.failed(job, LeaseExpiredError(job), every)
        if job.recurring:
            upcoming = next_fire(every, job.cron, job.tz, job.run_at)
            missed = upcoming <= now
            if missed and job.misfire == "skip":
                self.counts["skipped"] += 1
                later = first_after(every, job.cron, job.tz, job.run_at, now)
                return Settle(job.id, "scheduled", later, 0, job.last_error)
            if missed and job.misfire == "once":
                following = first_after(every, job.cron, job.tz, job.run_at, now)
            else:
                following = upcoming
        handler = self.handlers.get(job.kind)
        self.lateness.append(max(0.0, (now - job.run_at).total_seconds()))
        self.counts["run"] += 1
        try:
            if handler is None:
                raise SchedulingError(f"no handler for job kind {job.kind!r}")
            result = handler(job)
            if not inspect.isawaitable(result):
                raise SchedulingError(
                    f"the handler of {job.kind!r} returned {type(result).__name__}, not an "
                    "awaitable: make it an async def"
                )
            await result
        except Exception as exc:
            return self.failed(job, exc, every)
        self.counts["succeeded"] += 1
        if following is not None:
            return Settle(job.id, "scheduled", following, 0, job.last_error)
        return Settle(job.id, None)

    def failed(self, job: Job, exc: Exception, every: float | None) -> Settle:
        now = utcnow()
        error = describe_error(exc)
        self.counts["failed"] += 1
        if job.attempts < job.max_attempts:
            wait = backoff(job.attempts, self.retry_delay, self.retry_max_delay)
            log.warning(
                "job %s (%s) attempt %d/%d failed, retry in %.1fs: %s",
                job.id,
                job.kind,
                job.attempts,
                job.max_attempts,
                wait.total_seconds(),
                error,
                exc_info=exc,
            )
            return Settle(job.id, "failed", now + wait, job.attempts, error)
        if job.recurring:
            later = first_after(every, job.cron, job.tz, job.run_at, now)
            log.error(
                "recurring job %s (%s) failed %d times; skipping to its next firing at %s: %s",
                job.id,
                job.kind,
                job.attempts,
                later.isoformat(),
                error,
                exc_info=exc,
            )
            return Settle(job.id, "scheduled", later, 0, error)
        self.counts["dead"] += 1
        log.error(
            "job %s (%s) is dead after %d attempts: %s",
            job.id,
            job.kind,
            job.attempts,
            error,
            exc_info=exc,
        )
        return Settle(job.id, "dead", job.run_at, job.attempts, error, finished_at=now)

    async def settle(self, worker_id: str, results: Sequence[Settle]) -> None:
        """Write how claimed jobs ended, in one transaction: one statement for the one-shot
        jobs done, one row each for the rest. Jobs whose lease another worker took over
        (``locked_by`` changed) or that were cancelled meanwhile are left alone."""
        if not results:
            return
        now = utcnow()
        done = [result.job_id for result in results if result.state is None and not result.release]
        released = [(r.job_id, worker_id, now) for r in results if r.release]
        rows = [
            (r.job_id, worker_id, r.state, r.run_at, r.attempts, r.last_error, r.finished_at, now)
            for r in results
            if r.state is not None and not r.release
        ]
        # The soonest time a settled job is due again (a retry, a recurring job's next
        # firing, a job handed back): workers sleeping past it must look again.
        again = [r.run_at for r in results if r.state in ("scheduled", "failed") and r.run_at]
        wake = min(again, default=now if released else None)
        async with self._db.transaction() as conn:
            if done:
                await conn.execute(self._sql.done, done, worker_id, now)
            if rows:
                await conn.execute_many(self._sql.settle, rows)
            if released:
                await conn.execute_many(self._sql.release, released)
            if wake is not None and self._postgres:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, wake_text(wake))
        if wake is not None:
            self._poke(wake)

    async def open_listener(self) -> Any:
        """A dedicated driver connection for the worker's wake-ups, or None (in-memory
        SQLite, or polling behind pgbouncer)."""
        if self._open_connection is None or self._in_memory or self.polls:
            return None
        return await self._open_connection()


class LeaseExpiredError(Exception):
    """The error kept for a job whose last tries all lost their worker."""

    def __init__(self, job: Job) -> None:
        super().__init__(
            f"attempt {job.attempts} of {job.max_attempts}: the previous tries ended without a "
            "result (the worker died, stalled past its lease, or lost the database)"
        )


def new_worker_id() -> str:
    """A worker's name in ``locked_by``: host, pid and a random part (unique per start)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"


def wake_text(run_at: datetime) -> str:
    """The NOTIFY payload of a due time: epoch seconds (listeners skip later ones)."""
    return repr(run_at.timestamp())
